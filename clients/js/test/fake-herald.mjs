// The server side of herald.v1 for the client's tests, as docs/protocol.md describes it: a
// fake WebSocket class and a fake fetch backed by per-channel histories, and a fake clock.
// The "network" is promise hops: a test advances the clock and everything due runs, in order.

import { connect } from '../herald.js';

/** Lets every pending promise chain run (they only ever wait on each other and the clock). */
export const settle = () => new Promise((resolve) => setImmediate(resolve));

export class FakeClock {
  now = 0;
  #timers = [];
  #seq = 0;

  setTimeout = (fn, ms = 0) => {
    const id = ++this.#seq;
    this.#timers.push({ id, at: this.now + Math.max(0, ms), fn });
    return id;
  };

  clearTimeout = (id) => {
    this.#timers = this.#timers.filter((t) => t.id !== id);
  };

  /** Moves time on by `ms`, running each timer due on the way, earliest first. */
  async advance(ms = 0) {
    const end = this.now + ms;
    await settle();
    for (;;) {
      const due = this.#timers.filter((t) => t.at <= end);
      if (!due.length) break;
      const next = due.reduce((a, b) => (b.at < a.at || (b.at === a.at && b.id < a.id) ? b : a));
      this.#timers.splice(this.#timers.indexOf(next), 1);
      this.now = next.at;
      next.fn();
      await settle();
    }
    this.now = end;
  }
}

/** A fetch Response as far as the client reads one. */
export function response(status, body, headers = {}) {
  const h = new Map(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), String(v)]));
  return {
    status,
    ok: status >= 200 && status < 300,
    headers: { get: (name) => h.get(name.toLowerCase()) ?? null },
    text: async () => (typeof body === 'string' ? body : JSON.stringify(body)),
  };
}

/** A request the network swallows: it never answers, until the client aborts it. */
export function hang(signal) {
  return new Promise((resolve, reject) => signal.addEventListener('abort', () => reject(abortError())));
}

function abortError() {
  const e = new Error('The operation was aborted');
  e.name = 'AbortError';
  return e;
}

export class FakeHerald {
  sockets = [];        // every WebSocket the client constructed, in order
  polls = [];          // every POST /herald/poll body, parsed, with its Content-Type
  publishes = [];      // every POST /herald/publish body, parsed
  infoRequests = 0;
  pongs = 0;
  forbidden = new Set();
  presenceAsked = [];  // herald.v2 presence requests, {socket, frame}: the test answers them
  // How the next WebSocket is met: 'accept' (open + welcome), 'refuse' (error + close before
  // open, as a proxy that drops the Upgrade), 'silent' (opens, then says nothing).
  wsMode = 'accept';
  infoDown = false;    // /herald/info fails like a refused TCP connection
  pings = true;        // ping a welcomed socket after `heartbeat` ms of quiet, as the server does
  versions = ['herald.v2', 'herald.v1'];  // the protocol versions this server speaks, newest first
  // (body, signal) -> a response, a promise of one, or an Error to throw; undefined: as usual.
  pollResponder = null;
  #channels = new Map();
  #held = [];
  #pollTime = 0;
  #pollsAtOnce = 0;
  #epochs = 0;

  constructor(clock, { transports = ['websocket', 'longpoll'], heartbeat = 25000 } = {}) {
    this.clock = clock;
    this.transports = transports;
    this.heartbeat = heartbeat;
    const herald = this;
    this.WebSocket = class extends FakeWebSocket {
      constructor(url, protocol) { super(herald, url, protocol); }
    };
  }

  /** The live socket (the last one constructed). */
  get socket() { return this.sockets[this.sockets.length - 1]; }

  channel(name) {
    let ch = this.#channels.get(name);
    if (!ch) this.#channels.set(name, (ch = { epoch: `e${++this.#epochs}`, head: 0, log: [] }));
    return ch;
  }

  /** Publishes as the CMS would: appends to the history, fans out to sockets and held polls. */
  publish(name, data) {
    const ch = this.channel(name);
    ch.log.push({ offset: ++ch.head, data });
    const frame = { type: 'message', channel: name, epoch: ch.epoch, offset: ch.head, data };
    for (const s of this.sockets) if (s.readyState === 1 && s.subscriptions.has(name)) s.deliver(frame);
    for (const held of [...this.#held]) if (name in held.channels) held.answer([frame]);
    return { epoch: ch.epoch, offset: ch.head };
  }

  /** The history is lost (a single server restarted): a new epoch, offsets from 1 again. */
  newEpoch(name) {
    Object.assign(this.channel(name), { epoch: `e${++this.#epochs}`, head: 0, log: [] });
  }

  /** The history no longer holds what was published so far (ring buffer wrapped). */
  forget(name) {
    this.channel(name).log = [];
  }

  /** What subscribing from `since` gets: `subscribed` at the head, then the missed messages. */
  resume(name, since, id) {
    const ch = this.channel(name);
    let replay = [];
    let recovered = true;
    if (since) {
      replay = ch.log.filter((m) => m.offset > since.offset);
      recovered = since.epoch === ch.epoch && replay.length === ch.head - since.offset;
      if (!recovered) replay = [];
    }
    const subscribed = { type: 'subscribed', channel: name, epoch: ch.epoch, offset: ch.head, recovered };
    if (id !== undefined) subscribed.id = id;
    return [subscribed, ...replay.map((m) => ({ type: 'message', channel: name, epoch: ch.epoch, offset: m.offset, data: m.data }))];
  }

  /** The newest of `offered` this server speaks (none offered: herald.v1; none known: null). */
  negotiate(offered) {
    const list = offered === undefined ? [] : [offered].flat();
    return list.length ? this.versions.find((v) => list.includes(v)) ?? null : 'herald.v1';
  }

  welcome(protocol = 'herald.v1') {
    return { type: 'welcome', protocol, session: `s${this.sockets.length}`, heartbeat: this.heartbeat, transports: this.transports };
  }

  fetch = async (url, init = {}) => {
    const pathname = new URL(url).pathname.replace(/^.*\/herald\//, '/herald/');
    if (pathname === '/herald/info') {
      this.infoRequests++;
      if (this.infoDown) throw new TypeError('fetch failed');
      return response(200, { protocol: this.versions[0], protocols: this.versions, transports: this.transports, heartbeat: this.heartbeat });
    }
    const body = JSON.parse(init.body);
    if (pathname === '/herald/poll') {
      // A client polling in a loop without time passing would starve the test runner itself:
      // fail those polls instead, and let the test's assertions tell.
      if (this.clock.now !== this.#pollTime) [this.#pollTime, this.#pollsAtOnce] = [this.clock.now, 0];
      if (++this.#pollsAtOnce > 100) throw new Error('busy poll loop: 100 polls without time passing');
      this.polls.push({ ...body, method: init.method, contentType: init.headers?.['Content-Type'] });
      const special = this.pollResponder?.(body, init.signal);
      if (special instanceof Error) throw special;
      if (special) return special;
      return this.#poll(body, init.signal);
    }
    if (pathname === '/herald/publish') {
      this.publishes.push({ ...body, method: init.method, contentType: init.headers?.['Content-Type'] });
      const answer = this.#publishFrame(body);
      return response(answer.type === 'error' ? 403 : 200, { frames: [answer] });
    }
    return response(404, 'not found');
  };

  // The long-poll endpoint: answer at once when something is waiting, else hold.
  #poll(body, signal) {
    const frames = [];
    for (const [name, since] of Object.entries(body.channels)) {
      if (this.forbidden.has(name)) {
        frames.push({ type: 'error', code: 'forbidden', message: 'forbidden', channel: name });
        continue;
      }
      const [subscribed, ...replay] = this.resume(name, since);
      if (since === null || !subscribed.recovered) frames.push(subscribed);
      frames.push(...replay);
    }
    const named = body.protocols ? { protocol: this.negotiate(body.protocols) } : {};
    if (frames.length || !body.timeout) return response(200, { ...named, frames });
    return new Promise((resolve, reject) => {
      const held = {
        channels: body.channels,
        answer: (fs) => {
          this.#held.splice(this.#held.indexOf(held), 1);
          this.clock.clearTimeout(timer);
          resolve(response(200, { ...named, frames: fs }));
        },
      };
      const timer = this.clock.setTimeout(() => held.answer([]), body.timeout);
      signal?.addEventListener('abort', () => {
        if (!this.#held.includes(held)) return;
        this.#held.splice(this.#held.indexOf(held), 1);
        this.clock.clearTimeout(timer);
        reject(abortError());
      });
      this.#held.push(held);
    });
  }

  /** How many polls the server holds right now. */
  get heldPolls() { return this.#held.length; }

  #publishFrame({ channel, data, id }) {
    if (this.forbidden.has(channel)) return { type: 'error', code: 'forbidden', message: 'forbidden', channel, id };
    return { type: 'published', channel, ...this.publish(channel, data), id };
  }

  // A frame from a client socket, answered a network hop later.
  receive(socket, f) {
    queueMicrotask(() => {
      if (socket.readyState !== 1) return;
      if (f.type === 'pong') this.pongs++;
      else if (f.type === 'subscribe') {
        if (this.forbidden.has(f.channel)) {
          socket.deliver({ type: 'error', code: 'forbidden', message: 'forbidden', channel: f.channel, id: f.id });
          return;
        }
        socket.subscriptions.add(f.channel);
        for (const frame of this.resume(f.channel, f.since, f.id)) socket.deliver(frame);
      } else if (f.type === 'unsubscribe') {
        socket.subscriptions.delete(f.channel);
        socket.deliver({ type: 'unsubscribed', channel: f.channel, id: f.id });
      } else if (f.type === 'publish') {
        socket.deliver(this.#publishFrame(f));
      } else if (f.type === 'presence') {
        this.presenceAsked.push({ socket, frame: f });
      }
    });
  }
}

/** The browser WebSocket as far as herald.js uses it, with a server-side handle for tests. */
class FakeWebSocket {
  readyState = 0;
  sent = [];                  // frames the client sent, parsed
  subscriptions = new Set();  // server side: channels this connection follows
  closedByClient = null;      // the code the client closed with
  #welcomed = false;
  #quiet = null;              // the server's heartbeat timer
  onopen = null;
  onmessage = null;
  onclose = null;
  onerror = null;

  constructor(herald, url, protocol) {
    this.herald = herald;
    this.url = url;
    this.protocol = herald.negotiate(protocol) ?? '';  // what the server chose, as a browser's says
    herald.sockets.push(this);
    const mode = herald.wsMode;
    queueMicrotask(() => {
      if (this.readyState !== 0) return;
      if (mode === 'refuse') this.refuse();
      else if (mode === 'accept') this.accept();
      else if (mode === 'silent') this.open();
    });
  }

  // ---- the server's side
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  accept() {
    this.open();
    this.deliver(this.herald.welcome(this.protocol));
  }
  refuse(code = 1006) {
    this.onerror?.({});
    this.#close(code, '');
  }
  deliver(frame) {
    if (this.readyState !== 1) return;
    const { clock } = this.herald;
    if (frame.type === 'welcome') this.#welcomed = true;
    clock.clearTimeout(this.#quiet);
    if (this.#welcomed && this.herald.pings) {
      this.#quiet = clock.setTimeout(() => this.deliver({ type: 'ping' }), this.herald.heartbeat);
    }
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  drop(code, reason = '') {
    this.#close(code, reason);
  }
  #close(code, reason) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.herald.clock.clearTimeout(this.#quiet);
    this.onclose?.({ code, reason });
  }

  // ---- the client's side
  send(text) {
    if (this.readyState !== 1) throw new Error('InvalidStateError: not open');
    const f = JSON.parse(text);
    this.sent.push(f);
    this.herald.receive(this, f);
  }
  close(code = 1000) {
    this.closedByClient = code;
    queueMicrotask(() => this.#close(code, ''));
  }
}

/**
 * A client wired to a fake server and clock, with every event it emits recorded.
 * `server` goes to FakeHerald; the rest to connect().
 */
export function setup({ server, ...options } = {}) {
  const clock = new FakeClock();
  const herald = new FakeHerald(clock, server);
  return { clock, herald, ...recorded(clock, herald, options) };
}

/** A client of `herald` on `clock`, its events recorded: what setup() returns besides them. */
export function recorded(clock, herald, options = {}) {
  const client = connect({
    url: 'http://cms.test',
    WebSocket: herald.WebSocket,
    fetch: herald.fetch,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: () => clock.now,
    random: () => 0.5,
    locks: null, // alone, whatever the Node version offers (fake-tabs.mjs shares)
    ...options,
  });
  const events = { state: [], transport: [], resync: [], error: [] };
  for (const name of Object.keys(events)) client.on(name, (detail) => events[name].push(detail));
  return { client, events, states: () => events.state.map((s) => s.state) };
}

/** Subscribes and records what the handler gets: data, and the offsets seen. */
export function record(client, channel, options) {
  const got = [];
  const sub = client.subscribe(channel, (data, meta) => got.push({ data, ...meta }), options);
  return { sub, got, offsets: () => got.map((m) => m.offset) };
}
