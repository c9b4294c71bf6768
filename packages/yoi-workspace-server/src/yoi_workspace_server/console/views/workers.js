// Workers: every Worker of every source, with live status, runtime, profile and last
// activity; filters by runtime, status and text. An unavailable runtime says why.

import { get, errorText } from '../api.js';
import { h, clear, fill, append, onFrame, formatTime, workerPath } from '../dom.js';
import { tabStream } from '../stream.js';

const WATCHED = 'worker_created,turn_started,turn_completed,turn_failed,turn_cancelled,' +
  'turn_interrupted,worker_stopped,input_accepted,message_completed';

export class WorkersView extends HTMLElement {
  connectedCallback() {
    this.workers = new Map(); // `${runtime_id}\n${worker_id}` -> summary
    this.runtimes = [];
    this.runtimeSelect = h('select', { id: 'filter-runtime', 'data-testid': 'filter-runtime' },
      h('option', { value: '' }, 'All runtimes'));
    this.statusSelect = h('select', { id: 'filter-status', 'data-testid': 'filter-status' },
      ['', 'idle', 'running', 'stopped'].map((s) => h('option', { value: s }, s || 'Any status')));
    this.textInput = h('input', {
      id: 'filter-text', type: 'search', 'data-testid': 'filter-text',
      placeholder: 'name, id or profile',
    });
    for (const input of [this.runtimeSelect, this.statusSelect, this.textInput]) {
      input.addEventListener('input', () => this.render());
    }
    this.error = h('p', { class: 'error', role: 'alert' });
    this.unavailable = h('div', { class: 'unavailable-list' });
    this.list = h('ul', { class: 'rows', 'aria-label': 'Workers' });
    this.empty = h('p', { class: 'muted' });
    fill(this,
      h('div', { class: 'title-row' }, h('h1', {}, 'Workers'),
        h('a', { class: 'button', href: '/new' }, 'New Worker')),
      h('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
        h('label', { for: 'filter-runtime' }, 'Runtime'), this.runtimeSelect,
        h('label', { for: 'filter-status' }, 'Status'), this.statusSelect,
        h('label', { for: 'filter-text' }, 'Search'), this.textInput),
      this.error, this.unavailable, this.list, this.empty,
    );
    this.reload();
    this.poll = setInterval(() => this.refreshRuntimes(), 3000);
  }

  disconnectedCallback() {
    clearInterval(this.poll);
    clearTimeout(this.refetch);
  }

  async reload() {
    tabStream.open({
      params: { kinds: WATCHED },
      onEvent: (event) => this.onEvent(event),
      onResync: () => this.reload(),
    });
    await Promise.all([this.refreshRuntimes(), this.refreshWorkers()]);
  }

  async refreshWorkers() {
    try {
      const body = await get('/api/workers');
      const next = new Map();
      for (const w of body.workers) {
        const key = `${w.runtime_id}\n${w.worker_id}`;
        // The summary's last_activity_at (its newest event's at), unless a live event
        // seen since is newer.
        const old = this.workers.get(key);
        const seen = old ? old.last_activity_at : '';
        next.set(key, seen > w.last_activity_at ? { ...w, last_activity_at: seen } : w);
      }
      this.workers = next;
      this.error.textContent = '';
    } catch (error) {
      this.error.textContent = `The Workers could not be listed: ${errorText(error)}`;
    }
    onFrame(() => this.render());
  }

  async refreshRuntimes() {
    try {
      const body = await get('/api/runtimes');
      const before = JSON.stringify(this.runtimes.map((r) => [r.runtime_id, r.status]));
      this.runtimes = body.runtimes;
      const after = JSON.stringify(this.runtimes.map((r) => [r.runtime_id, r.status]));
      if (before !== after) {
        this.renderRuntimes();
        if (before !== '[]') this.refreshWorkers();
      }
    } catch (error) {
      this.error.textContent = `The runtimes could not be listed: ${errorText(error)}`;
    }
  }

  renderRuntimes() {
    const selected = this.runtimeSelect.value;
    fill(this.runtimeSelect, h('option', { value: '' }, 'All runtimes'),
      this.runtimes.map((r) => h('option', { value: r.runtime_id }, r.display_name)));
    this.runtimeSelect.value = selected;
    clear(this.unavailable);
    for (const r of this.runtimes.filter((x) => x.status === 'unavailable')) {
      const reason = r.diagnostics.map((d) => d.code).join(', ') || 'unavailable';
      this.unavailable.append(h('p', {
        class: 'diagnostic severity-error', 'data-testid': 'diagnostic',
        'data-runtime-id': r.runtime_id, role: 'status',
      }, `Runtime ${r.display_name} (${r.runtime_id}) is unavailable: ${reason}. `,
      'Its Workers are not listed.'));
    }
  }

  onEvent(event) {
    const key = `${event.runtime_id}\n${event.worker_id}`;
    const w = this.workers.get(key);
    if (!w) {
      if (event.kind === 'worker_created' || event.worker_id) {
        clearTimeout(this.refetch);
        this.refetch = setTimeout(() => this.refreshWorkers(), 150);
      }
      return;
    }
    if (event.cursor && event.at > w.last_activity_at) w.last_activity_at = event.at;
    if (event.kind === 'turn_started') {
      w.status = 'running';
      w.active_turn_id = event.turn_id;
    } else if (event.kind.startsWith('turn_') && w.status === 'running') {
      w.status = 'idle';
      w.active_turn_id = null;
    } else if (event.kind === 'worker_stopped') {
      w.status = 'stopped';
    }
    onFrame(() => this.render());
  }

  render() {
    const runtime = this.runtimeSelect.value;
    const status = this.statusSelect.value;
    const text = this.textInput.value.trim().toLowerCase();
    const rows = [];
    for (const w of this.workers.values()) {
      if (runtime && w.runtime_id !== runtime) continue;
      if (status && w.status !== status) continue;
      const hay = `${w.name || ''} ${w.worker_id} ${w.profile} ${w.runtime_id}`.toLowerCase();
      if (text && !hay.includes(text)) continue;
      rows.push(w);
    }
    rows.sort((a, b) => String(b.last_activity_at).localeCompare(String(a.last_activity_at)));
    fill(this.list, rows.map((w) => h('li', {},
      h('a', {
        class: 'row worker-row', href: workerPath(w.runtime_id, w.worker_id),
        'data-testid': 'worker-row', 'data-runtime-id': w.runtime_id,
        'data-worker-id': w.worker_id, 'data-status': w.status,
      },
      h('span', { class: 'name' }, w.name || w.worker_id),
      h('span', { class: `status status-${w.status}` }, w.status),
      h('span', { class: 'meta' }, `runtime ${w.runtime_id}`),
      h('span', { class: 'meta' }, `profile ${w.profile}`),
      h('span', { class: 'meta', 'data-testid': 'last-activity',
        'data-at': w.last_activity_at }, `last activity ${formatTime(w.last_activity_at)}`)))));
    this.empty.textContent = rows.length ? '' :
      (this.workers.size ? 'No Worker matches the filters.' : 'No Workers yet.');
  }
}

customElements.define('yoi-workers', WorkersView);
