// Runtimes: each source's kind, status, capabilities, counts and typed diagnostics; add a
// remote (URL and token: the token is sent once and never shown back) and remove one.

import { get, post, del, errorText } from '../api.js';
import { h, clear, fill } from '../dom.js';
import { tabStream } from '../stream.js';

const CAPABILITIES = [
  ['can_create', 'create'], ['can_input', 'input'], ['can_cancel', 'cancel'],
  ['can_stop', 'stop'], ['can_read_transcript', 'transcript'], ['can_stream_events', 'events'],
];

export class RuntimesView extends HTMLElement {
  connectedCallback() {
    this.error = h('p', { class: 'error', role: 'alert' });
    this.list = h('ul', { class: 'rows', 'aria-label': 'Runtimes' });
    this.formError = h('p', { class: 'error', role: 'alert', 'data-testid': 'form-error' });
    const field = (id, label, attrs = {}) => [
      h('label', { for: id }, label), h('input', { id, name: id, ...attrs }),
    ];
    this.form = h('form', { class: 'card stack', 'aria-labelledby': 'add-remote-title' },
      h('h2', { id: 'add-remote-title' }, 'Add a remote runtime'),
      h('p', { class: 'muted' }, 'A yoi-runtime process this Backend reaches for you. ' +
        'Its URL and token stay in the Backend; the token is never shown again.'),
      field('remote-id', 'Runtime id', { required: true, 'data-testid': 'remote-id',
        pattern: '[A-Za-z0-9_:\\-][A-Za-z0-9._:\\-]{0,119}' }),
      field('remote-name', 'Display name (optional)', { 'data-testid': 'remote-name' }),
      field('remote-url', 'URL (http or https, with the port yoi-runtime listens on)',
        { required: true, type: 'url', 'data-testid': 'remote-url' }),
      field('remote-token', 'Token', { type: 'password', autocomplete: 'off',
        'data-testid': 'remote-token' }),
      h('button', { type: 'submit', 'data-testid': 'remote-add' }, 'Add runtime'),
      this.formError);
    this.form.addEventListener('submit', (event) => this.add(event));
    fill(this, h('h1', {}, 'Runtimes'), this.error, this.list, this.form);
    this.reload();
    this.poll = setInterval(() => this.refresh(), 1000);
  }

  disconnectedCallback() {
    clearInterval(this.poll);
  }

  reload() {
    tabStream.open({
      params: { kinds: 'worker_created,worker_stopped,runtime_started' },
      onEvent: () => this.refresh(),
      onResync: () => this.reload(),
    });
    return this.refresh();
  }

  async refresh() {
    let body;
    try {
      body = await get('/api/runtimes');
    } catch (error) {
      this.error.textContent = `The runtimes could not be listed: ${errorText(error)}`;
      return;
    }
    this.error.textContent = '';
    // Rows are updated in place: a row whose report did not change keeps its DOM (and the
    // focus, and a button under the pointer).
    const rows = this.rows || (this.rows = new Map());
    const wanted = new Set();
    let previous = null;
    for (const r of body.runtimes) {
      wanted.add(r.runtime_id);
      const text = JSON.stringify({ ...r, diagnostics: r.diagnostics
        .map((d) => [d.code, d.message, d.severity]) });
      let known = rows.get(r.runtime_id);
      if (!known || known.text !== text) {
        const node = this.row(r);
        if (known) known.node.replaceWith(node);
        known = { text, node };
        rows.set(r.runtime_id, known);
      }
      const after = previous ? previous.nextSibling : this.list.firstChild;
      if (known.node !== after) this.list.insertBefore(known.node, after);
      previous = known.node;
    }
    for (const [id, known] of rows) {
      if (!wanted.has(id)) {
        known.node.remove();
        rows.delete(id);
      }
    }
  }

  row(r) {
    const counts = r.counts
      ? `${r.counts.workers} Workers: ${r.counts.idle} idle, ${r.counts.running} running, ` +
        `${r.counts.stopped} stopped`
      : 'counts not known yet';
    const remove = r.kind === 'remote'
      ? h('button', {
        type: 'button', class: 'secondary', 'data-testid': 'remote-remove',
        'data-focus-key': `remove:${r.runtime_id}`,
        'aria-label': `Remove runtime ${r.runtime_id}`,
        onclick: () => this.remove(r.runtime_id),
      }, 'Remove')
      : null;
    return h('li', {
      class: 'card runtime-row', 'data-testid': 'runtime-row',
      'data-runtime-id': r.runtime_id, 'data-status': r.status,
    },
    h('div', { class: 'title-row' },
      h('h2', {}, r.display_name),
      h('span', { class: `status status-${r.status}`, 'data-testid': 'runtime-status' }, r.status)),
    h('p', { class: 'meta' }, `id ${r.runtime_id} · ${r.kind} · ${r.implementation}`),
    h('p', { class: 'meta' }, counts),
    h('ul', { class: 'capabilities', 'aria-label': 'Capabilities' },
      CAPABILITIES.map(([key, label]) => h('li', { class: r.capabilities[key] ? 'yes' : 'no' },
        `${label}: ${r.capabilities[key] ? 'yes' : 'no'}`))),
    r.diagnostics.length ? h('ul', { class: 'diagnostics', 'aria-label': 'Diagnostics' },
      r.diagnostics.map((d) => h('li', {
        class: `diagnostic severity-${d.severity}`, 'data-testid': 'diagnostic',
        'data-code': d.code,
      }, h('strong', {}, d.code), ` ${d.message}`))) : null,
    remove);
  }

  async add(event) {
    event.preventDefault();
    const value = (id) => this.form.querySelector(`#${id}`).value.trim();
    const body = { runtime_id: value('remote-id'), base_url: value('remote-url') };
    if (value('remote-name')) body.display_name = value('remote-name');
    if (value('remote-token')) body.token = value('remote-token');
    this.formError.textContent = '';
    const button = this.form.querySelector('button');
    button.disabled = true;
    try {
      await post('/api/runtimes', body);
      this.form.reset();
    } catch (error) {
      this.formError.textContent = errorText(error);
    } finally {
      this.form.querySelector('#remote-token').value = '';
      button.disabled = false;
    }
    await this.refresh();
  }

  async remove(runtimeId) {
    try {
      await del(`/api/runtimes/${encodeURIComponent(runtimeId)}`);
    } catch (error) {
      this.error.textContent = errorText(error);
    }
    await this.refresh();
  }
}

customElements.define('yoi-runtimes', RuntimesView);
