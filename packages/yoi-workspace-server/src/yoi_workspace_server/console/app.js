// The yoi console: the app shell (<yoi-app>), the router and sign-in.
//
// Routes (stable, see docs/console.md): / Workers, /runtimes Runtimes, /new New Worker,
// /runtimes/{runtime_id}/workers/{worker_id} the Worker console. Every one is served the same
// shell by the Backend, so a deep link survives a reload.

import { api, errorText } from './api.js';
import { h, clear, fill, append, navigate } from './dom.js';
import { tabStream } from './stream.js';
import { WorkersView } from './views/workers.js';
import { RuntimesView } from './views/runtimes.js';
import { NewWorkerView } from './views/new.js';
import { WorkerView } from './views/worker.js';

const ROUTES = [
  [/^\/$/, () => new WorkersView()],
  [/^\/runtimes\/?$/, () => new RuntimesView()],
  [/^\/new\/?$/, () => new NewWorkerView()],
  [
    /^\/runtimes\/([^/]+)\/workers\/([^/]+)\/?$/,
    (m) => new WorkerView(decodeURIComponent(m[1]), decodeURIComponent(m[2])),
  ],
];

const STATE_TEXT = { live: 'live', reconnecting: 'reconnecting…', resync: 'resync' };

class YoiApp extends HTMLElement {
  connectedCallback() {
    this.view = null;
    const nav = h('nav', { 'aria-label': 'Main' },
      h('a', { href: '/', 'data-nav': '/' }, 'Workers'),
      h('a', { href: '/runtimes', 'data-nav': '/runtimes' }, 'Runtimes'),
      h('a', { href: '/new', 'data-nav': '/new' }, 'New Worker'),
    );
    this.connection = h('span', {
      class: 'connection', 'data-testid': 'connection-state', 'data-state': 'live',
      role: 'status', 'aria-live': 'polite', title: 'Connection to the Backend',
    }, 'live');
    this.main = h('main', { id: 'main', tabindex: '-1' });
    this.signin = h('div', { class: 'signin-layer', hidden: true });
    fill(this,
      h('a', { class: 'skip', href: '#main' }, 'Skip to content'),
      h('header', {}, h('a', { class: 'brand', href: '/' }, 'yoi'), nav,
        h('span', { class: 'connection-wrap' }, 'Connection: ', this.connection),
        h('button', { type: 'button', class: 'secondary', 'data-testid': 'signout',
          onclick: () => this.signOut() }, 'Sign out')),
      this.main, this.signin,
    );
    tabStream.onState((state, reason) => {
      this.connection.dataset.state = state;
      const resync = state === 'resync' && reason;
      if (resync) this.connection.dataset.reason = reason;
      this.connection.textContent = (STATE_TEXT[state] || state) + (resync ? ` (${reason})` : '');
    });
    this.addEventListener('click', (event) => this.onClick(event));
    window.addEventListener('popstate', () => this.route());
    window.addEventListener('yoi:navigate', () => this.route());
    window.addEventListener('yoi:unauthorized', () => this.showSignIn());
    this.start();
  }

  async start() {
    const token = tokenFromFragment();
    if (token !== null) {
      try {
        await api('POST', '/api/session', { token });
      } catch (error) {
        this.showSignIn(`The sign-in link did not work: ${errorText(error)}`);
        return;
      }
    }
    let session = null;
    try {
      session = await api('GET', '/api/session');
    } catch {
      session = null;
    }
    if (session && session.authenticated === false) {
      this.showSignIn();
      return;
    }
    this.route();
  }

  async signOut() {
    try {
      await api('DELETE', '/api/session');
    } catch {
      // Signed out either way: the form comes next.
    }
    this.showSignIn('Signed out.');
  }

  onClick(event) {
    const link = event.target.closest('a[href]');
    if (!link || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const url = new URL(link.href, location.href);
    if (url.origin !== location.origin || url.hash) return;
    event.preventDefault();
    navigate(url.pathname);
  }

  route() {
    const path = location.pathname;
    let view = null;
    for (const [pattern, make] of ROUTES) {
      const match = path.match(pattern);
      if (match) {
        view = make(match);
        break;
      }
    }
    if (view === null) {
      view = h('section', {}, h('h1', {}, 'Not found'),
        h('p', {}, 'No console page has that address. '), h('a', { href: '/' }, 'Go to Workers'));
      tabStream.close();
    }
    for (const link of this.querySelectorAll('nav a')) {
      if (link.dataset.nav === path) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    this.view = view;
    fill(this.main, view);
  }

  showSignIn(message) {
    if (!this.signin.hidden) return;
    tabStream.close();
    const input = h('input', {
      id: 'signin-token', type: 'password', autocomplete: 'current-password',
      'data-testid': 'signin-token', required: true,
    });
    const error = h('p', { class: 'error', role: 'alert' }, message || '');
    const submit = h('button', { type: 'submit', 'data-testid': 'signin-submit' }, 'Sign in');
    const form = h('form', { class: 'signin', 'aria-labelledby': 'signin-title' },
      h('h2', { id: 'signin-title' }, 'Sign in to this yoi Backend'),
      h('p', {}, 'Open the link that “yoi up” printed, or paste its browser token.'),
      h('label', { for: 'signin-token' }, 'Browser token'), input, submit, error);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      submit.disabled = true;
      error.textContent = '';
      try {
        await api('POST', '/api/session', { token: input.value.trim() });
      } catch (failure) {
        error.textContent = `Sign-in failed: ${errorText(failure)}`;
        submit.disabled = false;
        input.focus();
        return;
      }
      input.value = '';
      this.signin.hidden = true;
      clear(this.signin);
      // The view (and what was typed in it) stays; it re-reads what it shows.
      if (this.view && this.view.isConnected && typeof this.view.reload === 'function') {
        this.view.reload();
      } else {
        this.route();
      }
    });
    fill(this.signin, h('div', { class: 'signin-backdrop' }), form);
    this.signin.hidden = false;
    input.focus();
  }
}

/** The token of a `/#token=…` sign-in link, removed from the address bar and the history
 * (the entry is replaced, so Back never shows it again). */
function tokenFromFragment() {
  const hash = location.hash;
  if (!hash.startsWith('#token=')) return null;
  const token = decodeURIComponent(hash.slice('#token='.length));
  history.replaceState(history.state, '', location.pathname + location.search);
  return token;
}

customElements.define('yoi-app', YoiApp);
