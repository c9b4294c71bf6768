// The Worker console: the transcript's latest page (with "load earlier"), the live reply,
// the composer, Cancel/Stop, the overview, profile info and diagnostics.
//
// Streaming: the view reads the latest transcript page, then streams from that page's cursor
// (or from the cursor of the entry that started the turn in flight, so the live reply shows
// all of its text), so nothing is missed. Events are applied once per animation frame; a turn
// is settled only by the server's terminal event. A resync re-reads everything, visibly.

import { get, post, errorText } from '../api.js';
import {
  h, clear, fill, formatTime, randomKey, BlockText, textNodes,
} from '../dom.js';
import { tabStream } from '../stream.js';

const PAGE = 100;
const DIAGNOSTICS = 50;
const TERMINAL = new Set(['turn_completed', 'turn_failed', 'turn_cancelled', 'turn_interrupted']);
const OUTCOME_TEXT = {
  turn_failed: 'Turn failed', turn_cancelled: 'Turn cancelled', turn_interrupted: 'Turn interrupted',
};

export class WorkerView extends HTMLElement {
  constructor(runtimeId, workerId) {
    super();
    this.runtimeId = runtimeId;
    this.workerId = workerId;
    this.generation = 0;
    this.pending = [];
    this.unclaimed = new Set();
  }

  connectedCallback() {
    if (!this.built) this.build();
    this.onKey = (event) => {
      if (event.key !== 'Escape') return;
      if (!this.stopPanel.hidden) {
        this.hideStop();
      } else if (this.status === 'running') {
        event.preventDefault();
        this.cancel();
      }
    };
    document.addEventListener('keydown', this.onKey);
    this.reload();
  }

  disconnectedCallback() {
    document.removeEventListener('keydown', this.onKey);
    this.generation += 1;
  }

  build() {
    this.built = true;
    this.titleNode = h('h1', {}, this.workerId);
    this.statusNode = h('span', { class: 'status', 'data-testid': 'worker-status',
      role: 'status', 'aria-live': 'polite' }, '…');
    this.error = h('p', { class: 'error', role: 'alert' });
    this.earlier = h('button', { type: 'button', class: 'secondary', 'data-testid': 'load-earlier',
      hidden: true, onclick: () => this.loadEarlier() }, 'Load earlier');
    this.list = h('ol', { class: 'transcript-list', 'aria-label': 'Transcript' });
    this.scroller = h('div', { class: 'transcript', tabindex: '0', 'aria-label': 'Transcript' },
      this.earlier, this.list);
    this.scroller.addEventListener('scroll', () => {
      const s = this.scroller;
      this.atEnd = s.scrollHeight - s.scrollTop - s.clientHeight < 80;
    }, { passive: true });
    this.composer = h('textarea', {
      id: 'composer', 'data-testid': 'composer', rows: 3,
      'aria-describedby': 'composer-help',
      placeholder: 'Message the Worker',
    });
    this.composer.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send('reject');
      }
    });
    this.sendButton = h('button', { type: 'submit', 'data-testid': 'send' }, 'Send');
    this.cancelButton = h('button', { type: 'button', class: 'secondary', 'data-testid': 'cancel',
      disabled: true, onclick: () => this.cancel() }, 'Cancel turn');
    this.stopButton = h('button', { type: 'button', class: 'danger', 'data-testid': 'stop',
      onclick: () => this.askStop() }, 'Stop…');
    this.busy = h('div', { class: 'busy', hidden: true, role: 'alert',
      'data-testid': 'composer-error' });
    this.stopPanel = h('div', { class: 'confirm', hidden: true, role: 'alertdialog',
      'aria-labelledby': 'stop-question' },
      h('p', { id: 'stop-question' }, 'Stop this Worker for good? The turn in flight is ' +
        'cancelled and queued inputs are discarded.'),
      h('button', { type: 'button', class: 'danger', 'data-testid': 'stop-confirm',
        onclick: () => this.stop() }, 'Stop Worker'),
      h('button', { type: 'button', class: 'secondary', 'data-testid': 'stop-dismiss',
        onclick: () => this.hideStop() }, 'Keep it'));
    const form = h('form', { class: 'composer', 'aria-label': 'Send input' },
      h('label', { for: 'composer' }, 'Input'), this.composer,
      h('p', { id: 'composer-help', class: 'muted' },
        'Enter sends, Shift+Enter adds a line, Esc cancels the running turn.'),
      h('div', { class: 'actions' }, this.sendButton, this.cancelButton, this.stopButton),
      this.busy, this.stopPanel);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.send('reject');
    });
    this.overview = h('dl', { class: 'overview' });
    this.profileNode = h('dl', { class: 'overview' });
    this.diagnostics = h('ul', { class: 'diagnostics', 'aria-label': 'Diagnostics' });
    fill(this,
      h('div', { class: 'title-row' }, this.titleNode, this.statusNode),
      h('p', { class: 'meta' }, `runtime ${this.runtimeId} · worker ${this.workerId}`),
      this.error,
      h('div', { class: 'worker-layout' },
        h('section', { class: 'conversation', 'aria-label': 'Conversation' }, this.scroller, form),
        h('aside', { class: 'side' },
          h('h2', {}, 'Overview'), this.overview,
          h('h2', {}, 'Profile'), this.profileNode,
          h('h2', {}, 'Diagnostics'), this.diagnostics)),
    );
  }

  base() {
    return `/api/runtimes/${encodeURIComponent(this.runtimeId)}/workers/` +
      encodeURIComponent(this.workerId);
  }

  /** Read everything again and stream from the page's cursor (first open and every resync). */
  async reload() {
    const generation = ++this.generation;
    this.pending = [];
    try {
      // The runtime's capabilities are read alongside (they do not depend on the page).
      const runtimeRead = get(`/api/runtimes/${encodeURIComponent(this.runtimeId)}`)
        .then((body) => body.runtime, () => null);
      const first = await get(`${this.base()}`);
      const total = first.worker.transcript_len;
      let start = Math.max(0, total - PAGE);
      const items = [];
      let page = (await get(`${this.base()}/transcript?start=${start}&limit=${PAGE}`)).transcript;
      items.push(...page.items);
      while (page.next_start !== null && items.length < 4 * PAGE) {
        page = (await get(`${this.base()}/transcript?start=${page.next_start}&limit=${PAGE}`))
          .transcript;
        items.push(...page.items);
      }
      if (items.length > 0) start = items[0].sequence - 1;
      // The diagnostics the Runtime holds, read after the page's cursor (one that comes in
      // between is shown once); a source that has none to give (a read-only store) shows the
      // live ones only. Read alongside the detail.
      const storedRead = get(`/api/runtimes/${encodeURIComponent(this.runtimeId)}` +
        `/diagnostics?limit=${DIAGNOSTICS}`).then((body) => body.diagnostics, () => []);
      const detail = (await get(this.base())).worker;
      const stored = await storedRead;
      const runtime = await runtimeRead;
      if (generation !== this.generation) return;
      this.error.textContent = '';
      this.capabilities = runtime ? runtime.capabilities : null;
      this.firstStart = start;
      this.entries = new Map();
      this.live = null;
      this.activeTurn = detail.active_turn_id;
      clear(this.list);
      for (const item of items) this.addEntry(item);
      this.earlier.hidden = start <= 0;
      this.applyDetail(detail);
      this.setStatus(detail.status);
      this.showDiagnostics(stored);
      let cursor = page.cursor;
      if (detail.active_turn_id) {
        const opener = items.find((i) => i.turn_id === detail.active_turn_id && i.role === 'user');
        if (opener) cursor = opener.cursor;
        this.startLive(detail.active_turn_id);
      }
      this.scrollToEnd();
      tabStream.open({
        params: { runtime_id: this.runtimeId, worker_id: this.workerId },
        cursor,
        onEvent: (event) => this.pending.push(event),
        onBatch: () => this.applyPending(),
        onResync: () => this.reload(),
      });
    } catch (error) {
      if (generation !== this.generation) return;
      this.error.textContent = `This Worker could not be read: ${errorText(error)}`;
    }
  }

  applyDetail(detail) {
    this.titleNode.textContent = detail.name || detail.worker_id;
    const o = detail.overview;
    const rows = [
      ['Turns', `${o.turns.total} (${o.turns.completed} completed, ${o.turns.failed} failed, ` +
        `${o.turns.cancelled} cancelled, ${o.turns.interrupted} interrupted)`],
      ['Usage', `${o.usage.input_tokens} input / ${o.usage.output_tokens} output tokens`],
      ['Transcript', `${o.transcript_len} entries`],
      ['Queued inputs', String(detail.queued_inputs)],
      ['Last activity', formatTime(o.last_activity_at)],
      ['Created', formatTime(detail.created_at)],
    ];
    fill(this.overview, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    const p = detail.profile_info || { name: detail.profile, provider: '?', model: null };
    fill(this.profileNode,
      h('dt', {}, 'Name'), h('dd', {}, p.name),
      h('dt', {}, 'Provider'), h('dd', {}, p.provider),
      h('dt', {}, 'Model'), h('dd', {}, p.model || '—'));
  }

  setStatus(status) {
    this.status = status;
    this.statusNode.textContent = status;
    this.statusNode.className = `status status-${status}`;
    const can = this.capabilities;
    const stopped = status === 'stopped';
    this.cancelButton.disabled = status !== 'running' || (can && !can.can_cancel);
    this.stopButton.disabled = stopped || (can && !can.can_stop);
    this.composer.disabled = stopped || (can && !can.can_input);
    this.sendButton.disabled = this.composer.disabled;
    if (stopped) this.composer.placeholder = 'This Worker is stopped.';
  }

  // -- transcript -----------------------------------------------------------------------

  entryNode(item) {
    const labels = { user: 'You', system: 'System', assistant: 'Assistant', error: 'Error' };
    const flags = [];
    if (item.partial) flags.push('cancelled: partial reply');
    if (item.queued) flags.push('queued');
    return h('li', {
      class: `entry role-${item.role}${item.partial ? ' partial' : ''}`,
      'data-testid': 'transcript-entry', 'data-role': item.role,
      'data-sequence': item.sequence, 'data-partial': item.partial ? 'true' : null,
      'data-streamed': item.streamed || null,
    },
    h('div', { class: 'entry-head' }, h('span', { class: 'who' }, labels[item.role] || item.role),
      flags.map((f) => h('span', { class: 'flag' }, f)),
      h('time', { datetime: item.at || '' }, formatTime(item.at))),
    h('div', { class: 'content' }, textNodes(item.content)));
  }

  addEntry(item) {
    if (this.entries.has(item.sequence)) return;
    const node = this.entryNode(item);
    this.entries.set(item.sequence, node);
    // Keep sequence order: before the first later entry, else before the live reply.
    let next = null;
    for (const seq of this.entries.keys()) {
      if (seq > item.sequence && (next === null || seq < next)) next = seq;
    }
    const before = next !== null ? this.entries.get(next) : (this.live ? this.live.node : null);
    this.list.insertBefore(node, before);
  }

  async loadEarlier() {
    const end = this.firstStart;
    if (end <= 0) return;
    const start = Math.max(0, end - PAGE);
    this.earlier.disabled = true;
    try {
      const page = (await get(`${this.base()}/transcript?start=${start}&limit=${end - start}`))
        .transcript;
      const height = this.scroller.scrollHeight;
      const top = this.scroller.scrollTop;
      for (const item of page.items) this.addEntry(item);
      this.firstStart = start;
      this.earlier.hidden = start <= 0;
      this.scroller.scrollTop = top + (this.scroller.scrollHeight - height);
    } catch (error) {
      this.error.textContent = errorText(error);
    } finally {
      this.earlier.disabled = false;
    }
  }

  /** Whether the transcript is scrolled to its end: noted on scroll events (layout is clean
   * then), so a stream update never forces a layout just to ask. */
  nearEnd() {
    return this.atEnd !== false;
  }

  scrollToEnd() {
    this.scroller.scrollTop = Number.MAX_SAFE_INTEGER; // clamped to the end
    // Off-screen text blocks have an estimated height (content-visibility): as the blocks
    // now on screen get their real one, the end moves. Follow it for a few frames, unless
    // the reader scrolls away meanwhile.
    this.settleFrames = 3;
    if (this.settling) return;
    this.settling = true;
    const again = () => {
      if (this.atEnd === false || this.settleFrames-- <= 0) {
        this.settling = false;
        return;
      }
      this.scroller.scrollTop = Number.MAX_SAFE_INTEGER;
      requestAnimationFrame(again);
    };
    requestAnimationFrame(again);
  }

  startLive(turnId) {
    if (this.live && this.live.turnId === turnId) return;
    this.endLive();
    const content = h('div', { class: 'content', 'data-testid': 'live-reply',
      'data-turn-id': turnId });
    const node = h('li', { class: 'entry role-assistant live', 'aria-live': 'off' },
      h('div', { class: 'entry-head' }, h('span', { class: 'who' }, 'Assistant'),
        h('span', { class: 'flag' }, 'streaming')),
      content);
    this.list.append(node);
    this.live = { turnId, node, content, text: new BlockText(content) };
  }

  /** The live reply becomes its transcript entry in place: its text, already laid out, is
   * neither moved nor laid out again (only the entry's attributes and head change). */
  commitLive(item) {
    const { node, content } = this.live;
    const entry = this.entryNode({ ...item, content: '' });
    for (const name of node.getAttributeNames()) node.removeAttribute(name);
    for (const { name, value } of entry.attributes) node.setAttribute(name, value);
    node.replaceChild(entry.querySelector('.entry-head'), node.querySelector('.entry-head'));
    content.removeAttribute('data-testid');
    content.removeAttribute('data-turn-id');
    this.live = null;
    this.entries.set(item.sequence, node);
  }

  endLive() {
    if (this.live) this.live.node.remove();
    this.live = null;
  }

  note(kind, text) {
    this.list.insertBefore(h('li', { class: `note note-${kind}`, 'data-testid': 'turn-note',
      'data-outcome': kind }, text), this.live ? this.live.node : null);
  }

  // -- diagnostics ----------------------------------------------------------------------

  /** The stored diagnostics of this Worker and of its runtime (no worker_id), oldest first. */
  showDiagnostics(stored) {
    clear(this.diagnostics);
    this.unclaimed = new Set();
    for (const d of stored) {
      if (d.worker_id !== null && d.worker_id !== this.workerId) continue;
      this.unclaimed.add(`${d.code}\n${d.message}`);
      this.addDiagnostic(d);
    }
  }

  addDiagnostic(d) {
    this.diagnostics.append(h('li', {
      class: `diagnostic severity-${d.severity}`, 'data-testid': 'diagnostic',
      'data-code': d.code, 'data-scope': d.worker_id ? 'worker' : 'runtime',
    }, h('strong', {}, d.code), ` ${d.message} `,
    h('time', { class: 'muted', datetime: d.at || '' }, formatTime(d.at))));
    while (this.diagnostics.childElementCount > DIAGNOSTICS) {
      this.diagnostics.firstElementChild.remove();
    }
  }

  // -- events ---------------------------------------------------------------------------

  /** The events the stream delivered this frame (it calls this at most once a frame). */
  applyPending() {
    const events = this.pending;
    if (events.length === 0) return;
    this.pending = [];
    const follow = this.nearEnd();
    let delta = '';
    const flush = () => {
      if (delta && this.live) this.live.text.append(delta);
      delta = '';
    };
    let refresh = false;
    for (const event of events) {
      if (event.worker_id !== this.workerId || event.runtime_id !== this.runtimeId) continue;
      const data = event.data || {};
      if (event.kind === 'output_delta') {
        if (!this.live || this.live.turnId !== event.turn_id) {
          flush();
          this.startLive(event.turn_id);
        }
        delta += data.text;
        continue;
      }
      flush();
      switch (event.kind) {
        case 'input_accepted':
          this.addEntry({ sequence: data.transcript_sequence, role: data.input_kind,
            content: data.content, at: event.at, turn_id: event.turn_id, queued: data.queued });
          break;
        case 'input_discarded': {
          const node = this.entries.get(data.transcript_sequence);
          if (node) node.classList.add('discarded');
          break;
        }
        case 'turn_started':
          this.activeTurn = event.turn_id;
          this.setStatus('running');
          this.startLive(event.turn_id);
          for (const node of this.list.querySelectorAll('.flag')) {
            if (node.textContent === 'queued' && node.closest('.role-user')) node.remove();
          }
          break;
        case 'message_completed': {
          // data-streamed says whether the deltas rendered live add up to the committed text.
          let streamed = null;
          const item = { sequence: data.transcript_sequence, role: 'assistant',
            content: data.content, partial: data.partial, at: event.at, turn_id: event.turn_id };
          if (this.live && this.live.turnId === event.turn_id) {
            streamed = this.live.text.text === data.content ? 'match' : 'mismatch';
            if (streamed === 'match' && !this.entries.has(item.sequence)) {
              // The live reply becomes the entry: its text is already laid out, and a long
              // reply is not laid out a second time.
              this.commitLive({ ...item, streamed });
              break;
            }
            this.endLive();
          }
          this.addEntry({ ...item, streamed });
          break;
        }
        case 'turn_failed':
          if (this.live && this.live.turnId === event.turn_id) this.endLive();
          if (data.transcript_sequence) {
            this.addEntry({ sequence: data.transcript_sequence, role: 'error',
              content: `${data.error.code}: ${data.error.message}`, at: event.at });
          }
          break;
        case 'worker_stopped':
          this.endLive();
          this.setStatus('stopped');
          refresh = true;
          break;
        case 'diagnostic':
          if (event.cursor) {
            const key = `${data.code}\n${data.message}`;
            // Already listed when it was read with the stored ones (it came after the
            // transcript's cursor but before the diagnostics were read).
            if (this.unclaimed.has(key)) this.unclaimed.delete(key);
            else this.addDiagnostic({ ...data, worker_id: event.worker_id, at: event.at });
          }
          break;
        default:
          break;
      }
      if (TERMINAL.has(event.kind)) {
        if (this.live && this.live.turnId === event.turn_id) this.endLive();
        if (OUTCOME_TEXT[event.kind]) {
          const reason = data.reason || (data.error && data.error.code) || '';
          this.note(event.kind.slice(5), `${OUTCOME_TEXT[event.kind]}${reason ? `: ${reason}` : ''}`);
        }
        if (this.activeTurn === event.turn_id) this.activeTurn = null;
        if (this.status === 'running') this.setStatus('idle');
        refresh = true;
      }
    }
    flush();
    if (follow) this.scrollToEnd();
    if (refresh) this.refreshDetail();
  }

  async refreshDetail() {
    try {
      this.applyDetail((await get(this.base())).worker);
    } catch {
      // The overview refreshes on the next turn; a 401 already asked for sign-in.
    }
  }

  // -- commands -------------------------------------------------------------------------

  async send(onBusy) {
    const content = this.composer.value;
    if (!content.trim() || this.composer.disabled) return;
    this.busy.hidden = true;
    this.sendButton.disabled = true;
    try {
      await post(`${this.base()}/input`, { content, on_busy: onBusy,
        idempotency_key: randomKey() });
      if (this.composer.value === content) this.composer.value = '';
    } catch (error) {
      this.showBusy(error);
    } finally {
      this.sendButton.disabled = this.composer.disabled;
    }
  }

  showBusy(error) {
    fill(this.busy, h('p', {}, errorText(error)));
    if (error.code === 'worker_busy') {
      this.busy.append(
        h('p', {}, 'The Worker is busy with a turn. Queue this input to run after it?'),
        h('button', { type: 'button', 'data-testid': 'queue',
          onclick: () => this.send('enqueue') }, 'Queue it'),
        h('button', { type: 'button', class: 'secondary',
          onclick: () => { this.busy.hidden = true; this.composer.focus(); } }, 'Dismiss'));
    }
    this.busy.hidden = false;
  }

  async cancel() {
    if (this.status !== 'running') return;
    try {
      await post(`${this.base()}/cancel`, this.activeTurn ? { turn_id: this.activeTurn } : {});
    } catch (error) {
      this.error.textContent = errorText(error);
    }
  }

  askStop() {
    this.stopPanel.hidden = false;
    this.stopPanel.querySelector('[data-testid="stop-confirm"]').focus();
  }

  hideStop() {
    this.stopPanel.hidden = true;
    this.stopButton.focus();
  }

  async stop() {
    this.stopPanel.hidden = true;
    try {
      await post(`${this.base()}/stop`, {});
    } catch (error) {
      this.error.textContent = errorText(error);
    }
  }
}

customElements.define('yoi-worker', WorkerView);
