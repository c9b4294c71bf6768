// New Worker: runtime, profile, name and an optional first input. A rejected create shows
// the typed error inline (the Runtime creates nothing then).

import { get, post, errorText } from '../api.js';
import { h, clear, fill, append, navigate, randomKey, workerPath } from '../dom.js';
import { tabStream } from '../stream.js';

export class NewWorkerView extends HTMLElement {
  connectedCallback() {
    this.runtime = h('select', { id: 'new-runtime', 'data-testid': 'new-runtime', required: true });
    this.profile = h('select', { id: 'new-profile', 'data-testid': 'new-profile', required: true });
    this.name = h('input', { id: 'new-name', 'data-testid': 'new-name', maxlength: 200 });
    this.input = h('textarea', { id: 'new-input', 'data-testid': 'new-input', rows: 4 });
    this.error = h('p', { class: 'error', role: 'alert', 'data-testid': 'form-error' });
    this.submit = h('button', { type: 'submit', 'data-testid': 'create' }, 'Create Worker');
    this.form = h('form', { class: 'card stack', 'aria-labelledby': 'new-title' },
      h('h1', { id: 'new-title' }, 'New Worker'),
      h('label', { for: 'new-runtime' }, 'Runtime'), this.runtime,
      h('label', { for: 'new-profile' }, 'Profile'), this.profile,
      h('label', { for: 'new-name' }, 'Name (optional)'), this.name,
      h('label', { for: 'new-input' }, 'First input (optional)'), this.input,
      this.submit, this.error);
    this.runtime.addEventListener('change', () => this.loadProfiles());
    this.form.addEventListener('submit', (event) => this.create(event));
    fill(this, this.form);
    this.reload();
  }

  async reload() {
    tabStream.open({ params: { kinds: 'worker_created' }, onEvent: () => {},
      onResync: () => this.reload() });
    try {
      const body = await get('/api/runtimes');
      const usable = body.runtimes.filter((r) => r.capabilities.can_create);
      const selected = this.runtime.value;
      fill(this.runtime, usable.map((r) => h('option', {
        value: r.runtime_id, disabled: r.status !== 'running',
      }, `${r.display_name} (${r.runtime_id})${r.status === 'running' ? '' : ` — ${r.status}`}`)));
      if (selected) this.runtime.value = selected;
      await this.loadProfiles();
    } catch (error) {
      this.error.textContent = errorText(error);
    }
  }

  async loadProfiles() {
    clear(this.profile);
    if (!this.runtime.value) return;
    try {
      const body = await get(`/api/runtimes/${encodeURIComponent(this.runtime.value)}/profiles`);
      append(this.profile, body.profiles.map((p) => h('option', {
        value: `${p.kind}:${p.name}`, selected: p.is_default,
      }, `${p.name} — ${p.provider}${p.model ? ` ${p.model}` : ''}${p.is_default ? ' (default)' : ''}`)));
      this.error.textContent = '';
    } catch (error) {
      this.error.textContent = errorText(error);
    }
  }

  async create(event) {
    event.preventDefault();
    const runtimeId = this.runtime.value;
    const [kind, ...rest] = this.profile.value.split(':');
    const body = { profile: { kind, name: rest.join(':') }, idempotency_key: randomKey() };
    if (this.name.value.trim()) body.name = this.name.value.trim();
    if (this.input.value.trim()) body.initial_input = { content: this.input.value };
    this.submit.disabled = true;
    this.error.textContent = '';
    try {
      const created = await post(`/api/runtimes/${encodeURIComponent(runtimeId)}/workers`, body);
      navigate(workerPath(runtimeId, created.worker.worker_id));
    } catch (error) {
      this.error.textContent = errorText(error);
      this.submit.disabled = false;
    }
  }
}

customElements.define('yoi-new-worker', NewWorkerView);
