// DOM helpers. Every piece of text goes in as a Text node (textContent): model and user
// text is never parsed as HTML.

/** h('div', {class: 'x', 'data-testid': 'y', onclick: fn}, 'text', child) */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else if (key === 'value') {
      node.value = value;
    } else if (value === true) {
      node.setAttribute(key, '');
    } else {
      node.setAttribute(key, String(value));
    }
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

// Stream updates are applied at most once per animation frame: callers queue work here. The
// first update after an idle frame is applied at once (it is that frame's one update), so the
// first delta of a reply costs no frame of latency; the rest wait for the next frame.
const queue = [];
let scheduled = false;
let updatedThisFrame = false;

function nextFrame(fn) {
  // A hidden tab gets no animation frames: fall back to a slow timer there.
  if (document.visibilityState === 'hidden') setTimeout(fn, 100);
  else requestAnimationFrame(fn);
}

function flush() {
  scheduled = false;
  updatedThisFrame = true;
  nextFrame(() => { updatedThisFrame = false; });
  const work = queue.splice(0, queue.length);
  for (const fn of work) fn();
}

export function onFrame(fn) {
  queue.push(fn);
  if (scheduled) return;
  if (!updatedThisFrame) {
    flush();
    return;
  }
  scheduled = true;
  nextFrame(flush);
}

export function formatTime(at) {
  if (!at) return '';
  const date = new Date(at);
  return Number.isNaN(date.getTime()) ? String(at) : date.toLocaleString();
}

/** A random key for idempotent commands. crypto.getRandomValues works over plain HTTP;
 * the UUID helper of crypto needs a secure context (HTTPS) and is not used. */
export function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return 'ui-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function workerPath(runtimeId, workerId) {
  return `/runtimes/${encodeURIComponent(runtimeId)}/workers/${encodeURIComponent(workerId)}`;
}

export function navigate(path) {
  if (path !== location.pathname) history.pushState(null, '', path);
  window.dispatchEvent(new CustomEvent('yoi:navigate'));
}

/** Replace a node's children (arrays are flattened; strings become Text nodes). */
export function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}
