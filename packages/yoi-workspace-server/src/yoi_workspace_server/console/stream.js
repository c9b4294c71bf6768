// The tab's one event-stream connection (GET /api/events). A view asks for what it shows
// (runtime, Worker, kinds) and the cursor it has read up to; opening another view closes the
// previous connection first, so a tab never holds more than one.
//
// Connection state is the connection's, never the Worker's:
//   live          the stream is open
//   reconnecting  the connection dropped; the reader retries with Last-Event-ID (the
//                 Backend's composite cursor), so nothing is lost or repeated
//   resync        the stream cannot resume (cursor_expired, resync_required, a refused
//                 reconnect): the view re-reads what it shows and opens again from there

import { onFrame } from './dom.js';
import { FetchEventSource } from './sse.js';

const KINDS = [
  'runtime_started', 'worker_created', 'input_accepted', 'input_discarded', 'turn_started',
  'output_delta', 'message_completed', 'turn_completed', 'turn_failed', 'turn_cancelled',
  'turn_interrupted', 'worker_stopped', 'diagnostic',
];
const RESYNC_CODES = new Set(['resync_required', 'cursor_expired', 'cursor_unknown']);
const SEEN_MAX = 20000;
// The stream is read through fetch() (sse.js), which hands over the messages of one network
// chunk at a time; the handler only queues the message's text (O(1) per message). The queue is drained once per animation frame (the
// first message after an idle frame at once), for at most DRAIN_MS a frame: parsing, dedup
// and the view's work never make one long task, however many messages arrive together.
const DRAIN_MS = 8;

export class TabStream {
  constructor() {
    this.source = null;
    this.state = 'reconnecting';
    this.reason = ''; // why the last resync happened (a stream notice's code)
    this.listeners = new Set();
    this.seen = new Set();
    this.seenOrder = [];
    this.view = null;
    this.retryTimer = null;
    this.queue = []; // [source, data] pairs, in arrival order
    this.head = 0; // the next one to drain
  }

  onState(fn) {
    this.listeners.add(fn);
    fn(this.state, this.reason);
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    for (const fn of this.listeners) fn(state, this.reason);
  }

  /** view: {params: {runtime_id?, worker_id?, kinds?}, cursor?, onEvent(event), onBatch()?,
   * onResync(why)}; onBatch is called after the events a frame delivered. */
  open(view) {
    this.close();
    this.view = view;
    // What was seen is remembered for this view's connection only (a reconnect resumes it).
    // Another screen's stream may have delivered an event that this view, streaming from its
    // own cursor, has not shown yet: it must not be skipped as seen.
    this.seen = new Set();
    this.seenOrder = [];
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(view.params || {})) {
      if (value) query.set(key, value);
    }
    if (view.cursor) query.set('cursor', view.cursor);
    const source = new FetchEventSource(`/api/events?${query}`);
    this.source = source;
    this.setState('reconnecting'); // until the Backend answers
    source.onopen = () => {
      if (this.source !== source) return;
      this.setState('live');
    };
    source.onerror = () => {
      if (this.source !== source) return;
      if (source.readyState === FetchEventSource.CLOSED) {
        // Refused (HTTP error: cursor_expired, unauthorized, …): re-read, then open again.
        this.resync('stream_refused');
      } else {
        this.setState('reconnecting');
      }
    };
    const handle = (message) => {
      if (this.source !== source) return;
      this.queue.push(source, message.data);
      if (this.queue.length - this.head === 2) onFrame(this.drain);
    };
    for (const kind of KINDS) source.addEventListener(kind, handle);
  }

  drain = () => {
    const queue = this.queue;
    const until = performance.now() + DRAIN_MS;
    let i = this.head;
    let view = null;
    for (; i < queue.length; i += 2) {
      if (i > this.head && (i & 63) === 0 && performance.now() > until) break;
      const source = queue[i];
      if (source !== this.source) continue; // a closed connection's leftovers
      view = this.view;
      this.apply(view, queue[i + 1]);
    }
    if (i >= queue.length) {
      this.queue = [];
      this.head = 0;
    } else {
      this.head = i;
      onFrame(this.drain); // the rest in the next frame
    }
    if (view && view.onBatch) view.onBatch();
  };

  apply(view, data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    if (event.source_cursor) {
      if (this.seen.has(event.source_cursor)) return; // delivered before a reconnect
      this.remember(event.source_cursor);
    }
    if (this.state !== 'live' && event.cursor) this.setState('live');
    if (event.kind === 'diagnostic' && !event.cursor) {
      const code = event.data && event.data.code;
      if (RESYNC_CODES.has(code)) {
        this.resync(code);
        return;
      }
      // One runtime's outage: the connection of a view of that runtime is not live; a
      // view over every source stays live (the runtime's row shows the outage).
      if ((code === 'runtime_unavailable' || code === 'runtime_shutdown')
        && (view.params || {}).runtime_id) {
        this.setState('reconnecting');
      }
    }
    view.onEvent(event);
  }

  remember(cursor) {
    this.seen.add(cursor);
    this.seenOrder.push(cursor);
    if (this.seenOrder.length > SEEN_MAX) {
      for (const old of this.seenOrder.splice(0, SEEN_MAX / 2)) this.seen.delete(old);
    }
  }

  resync(why) {
    const view = this.view;
    if (this.source) this.source.close();
    this.source = null;
    this.reason = why;
    this.setState('resync');
    if (view && view.onResync) {
      clearTimeout(this.retryTimer);
      // A short pause, so a Backend that refuses every stream is not hammered.
      this.retryTimer = setTimeout(() => {
        if (this.view === view) view.onResync(why);
      }, 300);
    }
  }

  close() {
    clearTimeout(this.retryTimer);
    if (this.source) this.source.close();
    this.source = null;
    this.view = null;
  }
}

export const tabStream = new TabStream();
