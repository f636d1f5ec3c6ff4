// Tabs of one browser for the client's tests: a fake Web Locks (navigator.locks: exclusive,
// first come first served, abortable waits) and a BroadcastChannel that delivers to every
// other channel of the same name, a microtask later, as a structured clone.

import { FakeClock, FakeHerald, recorded } from './fake-herald.mjs';

export class FakeLocks {
  #names = new Map(); // name -> {holder, waiting: []}
  #paused = false;

  /** Grants nothing (a browser slow to hand the lock over) until resume(). */
  pause() { this.#paused = true; }
  resume() {
    this.#paused = false;
    for (const [name, q] of this.#names) this.#grant(q, name);
  }

  request(name, options, fn) {
    if (typeof options === 'function') [fn, options] = [options, {}];
    let q = this.#names.get(name);
    if (!q) this.#names.set(name, (q = { holder: null, waiting: [] }));
    return new Promise((resolve, reject) => {
      const waiter = { fn, resolve, reject };
      if (options.signal?.aborted) return reject(abortError());
      options.signal?.addEventListener('abort', () => {
        const i = q.waiting.indexOf(waiter);
        if (i < 0) return;
        q.waiting.splice(i, 1);
        reject(abortError());
      });
      q.waiting.push(waiter);
      this.#grant(q, name);
    });
  }

  /** How many wait for `name` (the holder not counted). */
  waiting(name) { return this.#names.get(name)?.waiting.length ?? 0; }

  #grant(q, name) {
    if (this.#paused || q.holder || !q.waiting.length) return;
    const w = (q.holder = q.waiting.shift());
    queueMicrotask(async () => {
      try {
        w.resolve(await w.fn({ name, mode: 'exclusive' }));
      } catch (e) {
        w.reject(e);
      }
      q.holder = null;
      this.#grant(q, name);
    });
  }
}

function abortError() {
  const e = new Error('The request was aborted');
  e.name = 'AbortError';
  return e;
}

/** A BroadcastChannel class of its own browser: channels of another class never hear it. */
export function fakeBroadcastChannel() {
  const all = new Set();
  return class FakeBroadcastChannel {
    onmessage = null;
    closed = false;
    static posted = 0;
    constructor(name) {
      this.name = name;
      all.add(this);
    }
    postMessage(data) {
      if (this.closed) throw new Error('InvalidStateError: closed');
      FakeBroadcastChannel.posted++;
      const copy = structuredClone(data);
      for (const other of all) {
        if (other !== this && other.name === this.name) queueMicrotask(() => { if (!other.closed) other.onmessage?.({ data: structuredClone(copy) }); });
      }
    }
    close() {
      this.closed = true;
      all.delete(this);
    }
  };
}

/** A page: pagehide/pageshow on it, freeze/resume on its document. */
export function fakeWindow() {
  const win = new EventTarget();
  win.document = new EventTarget();
  return win;
}

/**
 * A browser with one fake server and clock; `tab()` opens a tab (a client sharing the
 * connection), recording its events.
 */
export function browser({ server, ...options } = {}) {
  const clock = new FakeClock();
  const herald = new FakeHerald(clock, server);
  const locks = new FakeLocks();
  const BroadcastChannel = fakeBroadcastChannel();
  const tab = (more = {}) => {
    const window = fakeWindow();
    return { window, ...recorded(clock, herald, { locks, BroadcastChannel, window, ...options, ...more }) };
  };
  return { clock, herald, locks, BroadcastChannel, tab };
}
