// An EventSource read through fetch(): the same readyState, onopen, onerror and named-event
// listeners, the same reconnect with Last-Event-ID after the server's `retry:` pause, and a
// refused (non-200) answer closes it for good. The difference is who dispatches: a browser's
// EventSource delivers every message of a network chunk in one task (hundreds of messages,
// one long task); here each chunk is split into messages by this reader, and a listener only
// queues them (see stream.js), so no task grows with the size of a chunk.

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 2;

export class FetchEventSource {
  static CONNECTING = CONNECTING;
  static OPEN = OPEN;
  static CLOSED = CLOSED;

  constructor(url) {
    this.url = url;
    this.readyState = CONNECTING;
    this.onopen = null;
    this.onerror = null;
    this.listeners = new Map();
    this.lastEventId = '';
    this.retryMs = 1000;
    this.abort = null;
    this.timer = null;
    this.connect();
  }

  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(fn);
  }

  close() {
    this.readyState = CLOSED;
    clearTimeout(this.timer);
    if (this.abort) this.abort.abort();
    this.abort = null;
  }

  async connect() {
    const abort = new AbortController();
    this.abort = abort;
    const headers = { Accept: 'text/event-stream' };
    if (this.lastEventId) headers['Last-Event-ID'] = this.lastEventId;
    let response;
    try {
      response = await fetch(this.url, {
        headers, signal: abort.signal, credentials: 'same-origin', cache: 'no-store',
      });
    } catch {
      this.lost(abort);
      return;
    }
    if (this.abort !== abort) return;
    if (!response.ok || !response.body) {
      this.readyState = CLOSED; // refused: an EventSource does not retry either
      if (this.onerror) this.onerror();
      return;
    }
    this.readyState = OPEN;
    if (this.onopen) this.onopen();
    try {
      await this.read(response.body.getReader(), abort);
    } catch {
      // the connection dropped mid-stream
    }
    this.lost(abort);
  }

  lost(abort) {
    if (this.abort !== abort || this.readyState === CLOSED) return;
    this.readyState = CONNECTING;
    if (this.onerror) this.onerror();
    if (this.readyState === CLOSED) return; // the handler closed it
    this.timer = setTimeout(() => {
      if (this.abort === abort && this.readyState !== CLOSED) this.connect();
    }, this.retryMs);
  }

  async read(reader, abort) {
    const decoder = new TextDecoder();
    let buffer = '';
    let type = '';
    let data = [];
    let id = null;
    for (;;) {
      const { done, value } = await reader.read();
      if (done || this.abort !== abort) return;
      buffer += decoder.decode(value, { stream: true });
      let start = 0;
      for (;;) {
        const end = buffer.indexOf('\n', start);
        if (end < 0) break;
        let line = buffer.slice(start, end);
        start = end + 1;
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') { // the end of a message: dispatch it
          if (id !== null) this.lastEventId = id;
          if (data.length) this.dispatch(type || 'message', data.join('\n'));
          type = '';
          data = [];
          id = null;
          continue;
        }
        const colon = line.indexOf(':');
        if (colon === 0) continue; // a comment (the heartbeat)
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? '' : line.slice(colon + 1);
        if (text.startsWith(' ')) text = text.slice(1);
        if (field === 'data') data.push(text);
        else if (field === 'event') type = text;
        else if (field === 'id' && !text.includes('\0')) id = text;
        else if (field === 'retry' && /^\d+$/.test(text)) this.retryMs = Number(text);
      }
      buffer = buffer.slice(start);
    }
  }

  dispatch(type, data) {
    const fns = this.listeners.get(type);
    if (!fns) return;
    const message = { type, data, lastEventId: this.lastEventId };
    for (const fn of fns) fn(message);
  }
}
