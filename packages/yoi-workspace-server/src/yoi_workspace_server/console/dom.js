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

// Long text is laid out in blocks of at most BLOCK_CHARS, each its own block box with
// `contain: content` and `content-visibility: auto` (style.css, `.block`): the browser lays
// out only the blocks on screen, and appending to the last block never lays out the others
// again. A block ends after a newline when it can, else after a space, so that the text reads
// as it would in one piece; the blocks' text, in order, is the text.
export const BLOCK_CHARS = 2048;

function cutAt(text, room) {
  if (text.length <= room) return text.length;
  const head = text.slice(0, room);
  const newline = head.lastIndexOf('\n');
  if (newline >= room / 4) return newline + 1;
  const space = Math.max(head.lastIndexOf(' '), head.lastIndexOf('\t'));
  if (space >= room / 4) return space + 1;
  return -1; // no good place in this block
}

/** Text that grows at its end (the live reply), appended in O(appended text). */
export class BlockText {
  constructor(container) {
    this.container = container;
    this.chunks = [];
    this.tail = null; // the Text node of the last block
    this.tailChars = 0;
  }

  append(text) {
    if (!text) return;
    this.chunks.push(text);
    while (text) {
      if (this.tail === null) {
        this.tail = document.createTextNode('');
        this.tailChars = 0;
        this.container.append(h('div', { class: 'block' }, this.tail));
      }
      const room = BLOCK_CHARS - this.tailChars;
      let cut = cutAt(text, room);
      if (cut < 0) cut = this.tailChars > BLOCK_CHARS / 2 ? 0 : room;
      if (cut > 0) {
        this.tail.appendData(cut === text.length ? text : text.slice(0, cut));
        this.tailChars += cut;
      }
      if (cut === text.length) break;
      text = text.slice(cut);
      this.tail = null; // this block is finished: it is never touched again
    }
  }

  /** The whole text (joined once, when asked). */
  get text() {
    if (this.chunks.length > 1) this.chunks = [this.chunks.join('')];
    return this.chunks[0] || '';
  }
}

/** A text's nodes: the text itself when short, else its blocks. */
export function textNodes(text) {
  if (text.length <= BLOCK_CHARS) return [text];
  const holder = document.createDocumentFragment();
  new BlockText(holder).append(text);
  return [holder];
}
