// herald.js — the browser client of herald: live updates from a herald server over WebSocket,
// with automatic fallback to long-poll HTTP where a proxy, CDN or IIS breaks WebSockets.
//
// One dependency-free ES module, served by the server at /herald/client.js. It speaks herald.v1
// (docs/protocol.md); README.md beside this file is its reference, herald.d.ts its types.
//
//   import { connect } from '/herald/client.js';
//   const herald = connect();
//   herald.subscribe('project.42.items', (item) => render(item));
//   herald.on('resync', ({ channel }) => refetch(channel));
//
// The tabs of one browser share one connection (README.md, "Tabs share one connection"): the
// tab holding a Web Lock runs it, the others reach it over a BroadcastChannel.
//
// Why it is built the way it is:
// - The client owns the cursor ({epoch, offset}) of every channel. Each (re)subscribe sends it,
//   any server can resume from it, and anything at or below it is a duplicate. That one rule
//   makes reconnects, server moves and transport switches lossless and duplicate-free.
// - A WebSocket counts as up only once the server's `welcome` arrived: proxies that swallow the
//   Upgrade, or answer 200 and hold, otherwise look like a working connection.
// - A failed upgrade does not count as a failed attempt: it switches to long-poll at once and
//   probes WebSocket in the background, switching back when a probe gets its welcome.
// - Shared by tabs, the connection is the leader tab's; every tab keeps its own cursors and
//   applies the server's frames itself, as if they had come from its own connection. So a tab
//   behind or ahead of the others, or of a new leader, is the same case as a resume.

export const VERSION = '0.1.0';

// The protocol versions this client speaks, newest first: offered on every connection (the
// WebSocket's subprotocols, a poll's `protocols`); the server answers with the newest both know.
const PROTOCOLS = ['herald.v2', 'herald.v1'];
const TRANSPORTS = ['websocket', 'longpoll'];
const EVENTS = ['state', 'transport', 'resync', 'error', 'presence', 'join', 'leave'];
const CHANNEL = /^[A-Za-z0-9_:-]+(?:\.[A-Za-z0-9_:-]+)*$/;
// The server pings after `heartbeat` ms of quiet; two missed beats plus this much network
// delay and the connection is dead, even if the browser has not noticed.
const HEARTBEAT_SLACK = 5000;
// The server answers a held poll within its `timeout`; this much later, the answer is lost.
const POLL_SLACK = 10000;
// A position no history stream has: resuming from it is answered with recovered:false.
const UNKNOWN = Object.freeze({ epoch: '', offset: 0 });

const DEFAULTS = {
  transports: TRANSPORTS,
  minDelay: 500,
  maxDelay: 30000,
  maxAttempts: Infinity,
  giveUpAfter: Infinity,
  warnAfterAttempts: 3,
  connectTimeout: 10000,
  probeInterval: 30000,
  pollTimeout: 25000,
  credentials: 'same-origin',
  accessToken: null,
  shareConnection: true,
  shareKey: '',
};

/** A failed request: `code` is a herald.v1 error code or one of the client's own (README). */
export class HeraldError extends Error {
  constructor(code, message, channel) {
    super(message || code);
    this.name = 'HeraldError';
    this.code = code;
    if (channel !== undefined) this.channel = channel;
  }
}

/** Opens a client; it connects at once and keeps reconnecting until `close()`. */
export function connect(options = {}) {
  return new Client(options);
}

/** Whether the tabs of this browser can share a connection: Web Locks and BroadcastChannel. */
function canShare(o) {
  return o.shareConnection && typeof o.locks?.request === 'function' && typeof o.BroadcastChannel === 'function';
}

class Client {
  #o;
  // name -> { cursor: {epoch, offset} | null, subs: Map(subscription -> handler), asked: bool }
  #channels = new Map();
  #listeners = new Map(EVENTS.map((e) => [e, new Set()]));
  #state = 'connecting';
  #active = null;     // the transport in use, or the one being opened
  #current = null;    // its name; kept while waiting to reconnect
  #probe = null;      // a WebSocket tried in the background while on long-poll
  #allowed = [];      // transports enabled on both sides, in the client's order of preference
  #why = undefined;   // while on long-poll: why, {reason, plain}
  #wsTrouble = null;  // why WebSocket failed, {reason, plain}; while set: connect over long-poll, and probe
  #failures = 0;      // failed attempts in a row since the last open
  #downSince = null;
  #gen = 0;           // attempt generation: a newer attempt, a switch or close() voids older ones
  #retryTimer = null;
  #probeTimer = null;
  #nextId = 1;
  #outbox = [];       // publishes waiting for an open transport
  #closed = false;
  #token = null;      // from options.accessToken: sent with every request, renewed on `refresh`
  #fresh = false;     // #token was just given: the next attempt uses it without asking again
  #asking = null;     // the accessToken call under way, if any
  #tab = null;        // shared: this tab's link to the leader's connection (#active too)
  #tap = null;        // the leader's connection (see Hub): hears every frame from the server
  // presence (herald.v2): channels whose members the app asked for -> {waiting: [{resolve,
  // reject}], held: join/leave frames that came while the members were being read, or null}
  #present = new Map();

  // `port`: given by a Hub, for the connection it runs on behalf of every tab. The client then
  // has no handlers of its own: it fills in `port.follow` and `port.leave`, and calls
  // `port.tap(frame, cursorBefore)` for every frame from the server.
  constructor(options, port = null) {
    this.#o = resolveOptions(options);
    this.#downSince = this.#o.now(); // giveUpAfter counts from here until the first open
    if (port) {
      this.#tap = port.tap;
      port.follow = (channel, cursor, answer) => this.#follow(channel, cursor, answer);
      port.leave = (channel) => this.#leave(channel);
    }
    const shared = !port && canShare(this.#o);
    // Start after the caller had a chance to attach listeners: they see 'connecting' too.
    queueMicrotask(() => {
      if (this.#closed) return;
      this.#setState('connecting');
      if (!shared) return this.#attempt();
      this.#active = this.#tab = new TabLink(this.#o, {
        cursors: () => this.#cursors(),
        frame: (f) => this.#frame(f),
        state: (d) => this.#mirror(d),
        transport: (d) => { this.#current = d.transport; this.#emit('transport', d); },
        leaderChanged: () => this.#unknownIfAsked(),
      });
    });
  }

  /** 'connecting' | 'open' | 'reconnecting' | 'warning' | 'offline' | 'expired' | 'closed' */
  get state() { return this.#state; }
  /** 'websocket' | 'longpoll' | null: the transport in use or being opened. */
  get transport() { return this.#current; }
  /** 'herald.v2' | 'herald.v1' | null: the protocol version the server answered with. */
  get protocol() { return this.#active?.up ? this.#active.protocol : null; }

  subscribe(channel, handler, { since } = {}) {
    checkChannel(channel);
    if (typeof handler !== 'function') throw new TypeError('herald: subscribe needs a handler function');
    const cursor = since ? checkCursor(since) : null;
    let ch = this.#channels.get(channel);
    const added = !ch;
    if (added) {
      ch = { cursor, subs: new Map(), asked: false };
      this.#channels.set(channel, ch);
    }
    const sub = {
      channel,
      get cursor() { return ch.cursor?.epoch ? { ...ch.cursor } : null; },
      unsubscribe: () => {
        if (!ch.subs.delete(sub) || ch.subs.size || this.#channels.get(channel) !== ch) return;
        this.#channels.delete(channel);
        this.#active?.unsubscribe(channel);
      },
    };
    ch.subs.set(sub, handler);
    // Later subscriptions to a followed channel share its cursor; their `since` is not used.
    if (added && !this.#closed && this.#active) {
      this.#active.subscribe(channel, ch.cursor);
      ch.asked = this.#active.up;
    }
    return sub;
  }

  publish(channel, data) {
    checkChannel(channel);
    if (data === undefined) throw new TypeError('herald: publish needs data (any JSON value)');
    if (this.#closed) return Promise.reject(new HeraldError('closed', 'the client is closed', channel));
    if (this.#state === 'offline') return Promise.reject(offline(channel));
    if (this.#state === 'expired') return Promise.reject(new HeraldError('expired', 'the credentials expired', channel));
    return new Promise((resolve, reject) => {
      this.#outbox.push({ channel, data, resolve, reject });
      this.#flush();
    });
  }

  /**
   * herald.v2: who is in `channel` now, a Promise of `[{user, info}]` (one per user, however
   * many tabs). From then on the client keeps asking after each (re)subscribe and emits
   * 'presence' ({channel, members}); 'join' and 'leave' ({channel, user, info}) tell the
   * changes. Needs a WebSocket to a herald.v2 server; the server's authorizer decides.
   */
  presence(channel) {
    checkChannel(channel);
    if (this.#closed) return Promise.reject(new HeraldError('closed', 'the client is closed', channel));
    let p = this.#present.get(channel);
    if (!p) this.#present.set(channel, p = { waiting: [], held: null });
    return new Promise((resolve, reject) => {
      p.waiting.push({ resolve, reject });
      // A followed channel not yet answered is asked once its `subscribed` arrives.
      const ch = this.#channels.get(channel);
      if (!ch || ch.cursor || !ch.asked) this.#askPresence(channel);
    });
  }

  #askPresence(channel) {
    const p = this.#present.get(channel);
    const t = this.#active;
    if (!p || !t?.up || !t.protocol) return; // asked again at the next `subscribed` (or open)
    if (!t.presence || t.protocol !== 'herald.v2') {
      for (const w of p.waiting.splice(0)) w.reject(new HeraldError('unsupported', 'presence needs a WebSocket to a herald.v2 server', channel));
      return;
    }
    p.held ??= [];
    t.presence(channel, this.#nextId++).then((f) => {
      const held = p.held ?? [];
      p.held = null;
      if (f.type !== 'presence') {
        const err = new HeraldError(f.code, f.message, f.channel ?? channel);
        for (const w of p.waiting.splice(0)) w.reject(err);
        if (f.code === 'forbidden' || f.code === 'unknown_frame_type') this.#present.delete(channel);
        return;
      }
      for (const w of p.waiting.splice(0)) w.resolve(f.members);
      this.#emit('presence', { channel, members: f.members });
      for (const e of held) this.#presenceEvent(e);
    }, (err) => { p.held = null; for (const w of p.waiting.splice(0)) w.reject(err); });
  }

  // Channels whose presence was asked but that this tab does not follow: no `subscribed`
  // will come for them, so they are asked when the connection opens.
  #askUnfollowed() {
    for (const c of this.#present.keys()) if (!this.#channels.has(c)) this.#askPresence(c);
  }

  // join/leave: told to the app, or held while the members are being read (the answer may
  // have been read before the change: it is told after the answer).
  #presenceEvent(f) {
    const p = this.#present.get(f.channel);
    if (!p && !this.#channels.has(f.channel)) return; // shared: another tab's channel
    if (p?.held) return void p.held.push(f);
    const detail = { channel: f.channel, user: f.user };
    if (f.type === 'join') detail.info = f.info ?? null;
    this.#emit(f.type, detail);
  }

  on(name, fn) {
    const set = this.#listeners.get(name);
    if (!set) throw new TypeError(`herald: unknown event '${name}' (one of ${EVENTS.join(', ')})`);
    set.add(fn);
    return () => set.delete(fn);
  }

  /** Tries to connect now: skips a backoff wait, or starts again after 'offline'. */
  reconnect() {
    if (this.#closed || this.#state === 'open') return;
    if (this.#tab) return this.#tab.reconnect();
    this.#failures = 0;
    this.#downSince = null;
    this.#halt(null);
    this.#setState(this.#state === 'offline' || this.#state === 'expired' ? 'connecting' : this.#state);
    this.#attempt();
  }

  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#halt(new HeraldError('closed', 'the client is closed'));
    this.#setState('closed');
  }

  // ---- connection management -----------------------------------------------------------

  // One attempt: ask the server which transports it runs, then open the preferred one.
  async #attempt() {
    const gen = ++this.#gen;
    let info;
    try {
      info = await this.#fetchInfo();
    } catch (e) {
      if (gen === this.#gen) this.#retry({ failure: true, reason: `server unreachable (${e.message})` });
      return;
    }
    if (gen !== this.#gen) return;
    // Fresh credentials for each connection (a token may have expired while offline).
    if (this.#o.accessToken && !this.#fresh) {
      const token = await this.#askToken();
      if (gen !== this.#gen) return;
      if (!token) return this.#expired('the accessToken option gave no credentials');
      this.#token = token;
    }
    this.#fresh = false;
    const offered = Array.isArray(info.transports) ? info.transports : [];
    this.#allowed = this.#o.transports.filter((t) => offered.includes(t));
    const ws = this.#allowed.includes('websocket');
    if (ws && !this.#wsTrouble) return this.#use(new WebSocketTransport(this.#context()));
    if (!this.#allowed.includes('longpoll')) {
      return this.#retry({
        failure: true,
        reason: `no transport in common (server: ${offered.join(', ') || 'none'}; client: ${this.#o.transports.join(', ')})`,
      });
    }
    // Going straight to long-poll when WebSocket is off spares the browser a failed upgrade
    // (and its console error).
    this.#use(new LongPollTransport(this.#context()),
      ws ? this.#wsTrouble
        : offered.includes('websocket') ? { reason: 'websocket is not in options.transports', plain: 'this page does not use WebSocket' }
        : { reason: 'websocket is switched off on the server', plain: 'the server offers no WebSocket' });
  }

  async #fetchInfo() {
    const o = this.#o;
    const ctl = new AbortController();
    const timer = o.setTimeout(() => ctl.abort(), o.connectTimeout);
    try {
      const res = await o.fetch(o.urls.info, { signal: ctl.signal, credentials: o.credentials });
      const info = await readJson(res);
      if (res.status !== 200 || !info) throw new Error(`/herald/info answered HTTP ${res.status}`);
      return info;
    } catch (e) {
      throw ctl.signal.aborted ? new Error(`/herald/info: no answer within ${o.connectTimeout} ms`) : e;
    } finally {
      o.clearTimeout(timer);
    }
  }

  // `why`: why this transport now, {reason (technical), plain (in an editor's words)}. While
  // on long-poll it is also what 'open' reports, so that a page can say why it is not on
  // WebSocket.
  #use(t, why) {
    const previous = this.#current;
    this.#active = t;
    this.#current = t.name;
    this.#why = t.name === 'longpoll' ? why : undefined;
    if (t.name === previous) return;
    const detail = { transport: t.name, previous, reason: why?.reason };
    if (why?.plain) detail.explanation = why.plain;
    this.#emit('transport', detail);
  }

  // Every transport reports here; a report from one that is no longer ours is stale.
  #context() {
    return {
      o: this.#o,
      // The current credentials, and an endpoint's URL carrying them (`access_token`).
      token: () => this.#token,
      url: (base, token) => (token ? `${base}?access_token=${encodeURIComponent(token)}` : base),
      cursors: () => this.#cursors(),
      up: (t) => {
        if (t === this.#probe) this.#promote(t);
        else if (t === this.#active) this.#opened(t);
      },
      down: (t, d) => {
        if (t === this.#probe) { this.#probe = null; this.#scheduleProbe(); }
        else if (t === this.#active) this.#lost(t, d);
      },
      frame: (f) => this.#frame(f),
    };
  }

  // What a transport asks the server for: every channel, from its cursor.
  #cursors() {
    const all = {};
    for (const [name, ch] of this.#channels) {
      ch.asked = true;
      all[name] = ch.cursor;
    }
    return all;
  }

  // A channel asked for but not yet answered when the connection went: what was published
  // meanwhile is unknown. Resuming from a position no stream has gets recovered:false, so
  // the app resyncs instead of living with a silent gap (the in-memory client does the same).
  #unknownIfAsked() {
    for (const ch of this.#channels.values()) if (ch.asked && !ch.cursor) ch.cursor = UNKNOWN;
  }

  #opened(t) {
    this.#failures = 0;
    this.#downSince = null;
    this.#setState('open', { reason: this.#why?.reason, explanation: this.#why?.plain });
    this.#flush();
    this.#askUnfollowed();
    if (t.name === 'longpoll') this.#scheduleProbe();
  }

  #lost(t, d) {
    this.#active = null;
    if (d.expired) return this.#credentialsEnded(d.reason, d.token);
    this.#unknownIfAsked();
    if (t.name === 'websocket' && !t.up && this.#allowed.includes('longpoll')) {
      // The upgrade never completed: something on the way does not pass WebSockets. Plain
      // HTTP may still get through; that is not a failed attempt, so no backoff.
      this.#wsTrouble = { reason: d.reason, plain: d.plain ?? 'WebSocket does not get through to the server' };
      this.#use(new LongPollTransport(this.#context()), this.#wsTrouble);
      this.#setState(this.#state, { reason: d.reason, explanation: this.#wsTrouble.plain });
      return;
    }
    this.#retry(d);
  }

  // A down transport: wait (the server's delay, or backoff with full jitter), then try again.
  #retry({ failure, delay, reason }) {
    if (this.#closed) return;
    this.#active = null;
    if (failure) this.#failures++;
    this.#downSince ??= this.#o.now();
    const o = this.#o;
    if (failure && (this.#failures >= o.maxAttempts || o.now() - this.#downSince >= o.giveUpAfter)) {
      this.#halt(offline());
      this.#setState('offline', { reason });
      return;
    }
    if (delay === undefined) {
      const cap = Math.min(o.maxDelay, o.minDelay * 2 ** Math.max(0, this.#failures - 1));
      delay = Math.floor(o.random() * cap);
    }
    this.#setState(this.#failures >= o.warnAfterAttempts ? 'warning' : 'reconnecting', { reason, delay });
    this.#retryTimer = o.setTimeout(() => { this.#retryTimer = null; this.#attempt(); }, delay);
  }

  // Stops every transport and timer; `err` rejects the publishes still waiting.
  #halt(err) {
    this.#gen++;
    this.#o.clearTimeout(this.#retryTimer);
    this.#o.clearTimeout(this.#probeTimer);
    this.#retryTimer = this.#probeTimer = null;
    for (const t of [this.#active, this.#probe]) t?.stop(err);
    this.#active = this.#probe = null;
    if (err) for (const p of this.#outbox.splice(0)) p.reject(err);
  }

  #scheduleProbe() {
    const o = this.#o;
    if (this.#probeTimer || this.#probe || !this.#wsTrouble || !o.probeInterval || this.#closed) return;
    if (!this.#allowed.includes('websocket')) return;
    this.#probeTimer = o.setTimeout(() => {
      this.#probeTimer = null;
      if (this.#active?.name !== 'websocket' && this.#state !== 'offline') {
        this.#probe = new WebSocketTransport(this.#context());
      }
    }, o.probeInterval);
  }

  // A probe got its welcome and has resubscribed every channel from its cursor. Only now is
  // long-poll stopped: whatever the last poll would have brought, the WebSocket replays, and
  // whatever both bring is dropped as a duplicate by cursor.
  #promote(ws) {
    this.#probe = null;
    this.#gen++;
    this.#o.clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#active?.stop();
    this.#wsTrouble = null;
    this.#use(ws, { reason: 'a websocket probe got its welcome' });
    this.#opened(ws);
  }

  #flush() {
    const t = this.#active;
    if (!t?.up || this.#state !== 'open') return;
    for (const { channel, data, resolve, reject } of this.#outbox.splice(0)) {
      t.publish(channel, data, this.#nextId++).then((f) => {
        if (f.type === 'published') resolve({ epoch: f.epoch, offset: f.offset });
        else reject(new HeraldError(f.code, f.message, f.channel ?? channel));
      }, reject);
    }
  }

  // ---- credentials that expire (options.accessToken) -------------------------------------

  // Asks the app for credentials, one call at a time. @returns a token, or null: none given
  // (the hook returned nothing, or threw).
  #askToken() {
    this.#asking ??= Promise.resolve()
      .then(() => this.#o.accessToken())
      .then((t) => (typeof t === 'string' && t ? t : null), () => null)
      .finally(() => { this.#asking = null; });
    return this.#asking;
  }

  // The server asked for new credentials before the current ones expire: the WebSocket sends
  // them in-band, long-poll with its next poll. None to be had: the current ones stay in use,
  // and the server ends the session when they expire.
  async #refresh() {
    if (!this.#o.accessToken || this.#closed) return;
    const token = await this.#askToken();
    if (!token || this.#closed) return;
    this.#token = token;
    this.#active?.refresh?.(token);
  }

  // The server ended a session whose credentials (`expired`, as that connection sent them)
  // expired. Newer ones (renewed meanwhile, or from the app now): reconnect at once; none:
  // stop, in state 'expired'.
  async #credentialsEnded(reason, expired) {
    const gen = ++this.#gen;
    let token = this.#token;
    if (!token || token === expired) token = this.#o.accessToken ? await this.#askToken() : null;
    if (gen !== this.#gen || this.#closed) return;
    if (token && token !== expired) {
      this.#token = token;
      this.#fresh = true;
      return this.#retry({ failure: false, delay: 0, reason: `${reason}: reconnecting with new credentials` });
    }
    this.#expired(reason);
  }

  #expired(reason) {
    this.#halt(new HeraldError('expired', 'the credentials expired (call reconnect() after signing in again)'));
    this.#setState('expired', { reason });
  }

  // ---- frames (the same from every transport) --------------------------------------------

  #frame(f) {
    const before = this.#tap && (this.#channels.get(f.channel)?.cursor ?? null);
    if (f.type === 'message') this.#message(f);
    else if (f.type === 'subscribed') this.#subscribed(f);
    else if (f.type === 'refresh') return this.#tab || this.#refresh(); // the leader's to renew
    else if (f.type === 'join' || f.type === 'leave') this.#presenceEvent(f);
    else if (f.type === 'error' && f.code !== 'credentials_expired') this.#refused(f);
    this.#tap?.(f, before);
  }

  #message(f) {
    const ch = this.#channels.get(f.channel);
    if (!ch) return;
    const at = ch.cursor;
    // A resume may overlap what was already delivered, and two transports may both carry a
    // message during a switch: at or below the cursor, in the same epoch, it was seen.
    if (at && at.epoch === f.epoch && f.offset <= at.offset) return;
    ch.cursor = { epoch: f.epoch, offset: f.offset };
    // A new epoch means the history the cursor pointed into is gone: what came between is
    // unknown, so the app refetches. The message itself is delivered too.
    if (at && at.epoch !== f.epoch) this.#emit('resync', { channel: f.channel, epoch: f.epoch, offset: f.offset });
    const meta = { channel: f.channel, epoch: f.epoch, offset: f.offset };
    for (const handler of [...ch.subs.values()]) call(handler, f.data, meta);
  }

  #subscribed(f) {
    const ch = this.#channels.get(f.channel);
    if (!ch) return;
    const head = { epoch: f.epoch, offset: f.offset };
    if (!ch.cursor) {
      ch.cursor = head; // a new subscription starts at the head: nothing was owed before it
      // ...unless the shared connection had lost track of it (it resumed from UNKNOWN).
      if (f.recovered === false && f.since?.epoch === '') this.#emit('resync', { channel: f.channel, ...head });
    } else if (f.recovered === false) {
      // Shared: another tab's resume failed; this tab was at the head, and missed nothing.
      if (ch.cursor.epoch === head.epoch && ch.cursor.offset === head.offset) return;
      ch.cursor = head;
      this.#emit('resync', { channel: f.channel, ...head });
    } else if (ch.cursor.epoch !== f.epoch) {
      // recovered in another epoch: the stream was renamed (a Redis failover); the cursor's
      // offset holds in it.
      ch.cursor = { epoch: f.epoch, offset: ch.cursor.offset };
    }
    // recovered: the missed messages follow and move the cursor up to the head themselves.
    // Members may have come and gone while this subscription was not live: read them again.
    // (The leader's connection does not: each tab asks for itself, through it.)
    if (this.#present.has(f.channel) && !this.#tap) this.#askPresence(f.channel);
  }

  // An error frame not answering a publish: a subscribe was refused (forbidden, invalid
  // channel, too many subscriptions). The channel is dropped, or every reconnect and every
  // poll would ask again.
  #refused(f) {
    if (f.code === 'not_subscribed') return; // an unsubscribe crossed a drop: nothing to undo
    if (this.#tab && f.channel && !this.#channels.has(f.channel)) return; // another tab's
    if (f.channel) this.#channels.delete(f.channel);
    this.#emit('error', new HeraldError(f.code, f.message, f.channel));
  }

  // ---- the connection shared by tabs (see TabLink and Hub) -------------------------------

  // The leader's connection state, as this tab sees it: the same, less `closed` (the leader's
  // own). Publishes wait for 'open' as they do on a connection of the tab's own.
  #mirror(d) {
    this.#current = d.transport;
    this.#state = d.state;
    this.#emit('state', { ...d });
    if (d.state === 'open') {
      this.#flush();
      this.#askUnfollowed();
    } else if (d.state === 'offline') for (const p of this.#outbox.splice(0)) p.reject(offline(p.channel));
    else if (d.state === 'expired') {
      for (const p of this.#outbox.splice(0)) p.reject(new HeraldError('expired', 'the credentials expired', p.channel));
    }
  }

  // The leader's connection: a tab follows `channel` from `cursor`. A tab behind the
  // connection's cursor (or in another epoch) moves it back, and the server replays from there
  // to every tab (those ahead drop what they saw, by cursor); a new subscription is told the
  // head, which `answer` sends to that tab alone.
  #follow(name, cursor, answer) {
    const ch = this.#channels.get(name);
    if (!ch) {
      this.#channels.set(name, { cursor, subs: new Map(), asked: false });
    } else if (!cursor) {
      if (ch.cursor?.epoch) answer({ type: 'subscribed', channel: name, ...ch.cursor, recovered: true });
      return;
    } else {
      const at = ch.cursor;
      if (at && at.epoch === cursor.epoch && at.offset <= cursor.offset) return; // nothing owed
      ch.cursor = !at || at.epoch === cursor.epoch ? cursor : UNKNOWN; // two epochs: which is current is unknown
    }
    if (this.#closed || !this.#active) return;
    this.#active.subscribe(name, this.#channels.get(name).cursor);
    this.#channels.get(name).asked = this.#active.up;
  }

  #leave(name) {
    if (this.#channels.delete(name)) this.#active?.unsubscribe(name);
  }

  // ---- events ----------------------------------------------------------------------------

  #setState(state, { reason, explanation, delay } = {}) {
    this.#state = state;
    const detail = { state, transport: this.#current, reason, attempt: this.#failures };
    if (explanation !== undefined) detail.explanation = explanation;
    if (delay !== undefined) detail.delay = delay;
    this.#emit('state', detail);
  }

  #emit(name, detail) {
    for (const fn of [...this.#listeners.get(name)]) call(fn, detail);
  }
}

// ---- one connection for every tab ---------------------------------------------------------
// Browsers allow 6 HTTP/1.1 connections per origin, and a held poll takes one: eight tabs on
// long-poll would stall each other and the CMS's own requests. So the tabs of a browser share
// one connection. The tab holding a Web Lock (the leader) runs it, in a Hub; every tab,
// the leader's own included, reaches it through a TabLink over a BroadcastChannel, with:
//   requests  {t:'req', from, to?, id?, op, args}   a tab -> the leader (OPS below); `id`: answered
//   answers   {t:'res', from, to, id, ok, value | error}
//   events    {t:'ev', from, to?, name, detail, protocol}  the leader -> every tab, or one (TAB_EVENTS)
//   a leader  {t:'leader', from, to?}               broadcast when it takes over; `to`: a hello's answer
//   no leader {t:'resign', from}                     it hands over: wait for the next one
// The server's frames are relayed as they came; each tab applies them to its own cursors, as
// if from a connection of its own, so a tab ahead drops what it saw and a tab behind asks the
// leader to move the connection back (Client.#follow). When the leader goes (closed, frozen,
// hidden), the next tab in the lock's queue leads: every tab says where it is (`hello`), and
// the new connection resumes each channel from the earliest cursor.

// What a tab may ask the leader (TabLink.request); `hub.engine` is the leader's Client. A new
// request is a line here (as `presence`); a new server frame (join, leave) needs nothing:
// every frame reaches every tab's #frame.
const OPS = {
  hello: (hub, tab, { channels }) => hub.hello(tab, channels),
  subscribe: (hub, tab, { channel, cursor }) => hub.follow(tab, channel, cursor),
  unsubscribe: (hub, tab, { channel }) => hub.drop(tab, channel),
  bye: (hub, tab) => hub.bye(tab),
  publish: (hub, tab, { channel, data }) => hub.engine.publish(channel, data).then(
    (at) => ({ type: 'published', ...at }),
    (e) => ({ type: 'error', code: e.code, message: e.message, channel: e.channel ?? channel })),
  reconnect: (hub) => hub.engine.reconnect(),
  presence: (hub, tab, { channel }) => hub.engine.presence(channel).then(
    (members) => ({ type: 'presence', channel, members }),
    (e) => ({ type: 'error', code: e.code, message: e.message, channel: e.channel ?? channel })),
};

// What the leader tells the tabs, and what each does with it (`c`: the tab's Client).
const TAB_EVENTS = {
  frame: (c, f) => c.frame(f),
  state: (c, d) => c.state(d),
  transport: (c, d) => c.transport(d),
};

/** This tab's side: elects the leader, follows it, and is the Client's transport meanwhile. */
class TabLink {
  name = 'shared';
  up = false;         // a leader answers this tab
  protocol = null;    // the version the leader's connection speaks, as its last event said
  #o;
  #c;
  #id = tabId();
  #name;
  #bc;
  #leader = null;     // the leading tab's id
  #hub = null;        // this tab leads
  #release = null;    // gives the lock back
  #queue = null;      // aborts the wait for the lock
  #pending = new Map(); // request id -> {resolve, reject}
  #nextId = 1;
  #away = false;      // the page is hidden or frozen
  #stopped = false;
  #unlisten = [];

  constructor(o, c) {
    this.#o = o;
    this.#c = c;
    // Scoped by server and key (Web Locks and BroadcastChannel are already per origin), and
    // by the envelope's version: tabs loaded before and after a deploy do not mix.
    this.#name = `herald.tabs.1 ${o.urls.info.slice(0, -'info'.length)} ${o.shareKey}`;
    this.#bc = new o.BroadcastChannel(this.#name);
    this.#bc.onmessage = (ev) => this.#receive(ev.data);
    this.#listenToPage();
    this.#join();
  }

  subscribe(channel, cursor) { this.#tell('subscribe', { channel, cursor }); }
  unsubscribe(channel) { this.#tell('unsubscribe', { channel }); }
  reconnect() { this.#tell('reconnect'); }
  refresh() {} // the leader renews its own credentials

  // -> Promise<published or error frame>
  publish(channel, data) { return this.request('publish', { channel, data }); }
  // -> Promise<presence or error frame>, from the leader's connection
  presence(channel) { return this.request('presence', { channel }); }

  /** Asks the leader (OPS): a Promise of its answer; rejects (disconnected) if it goes first. */
  request(op, args) {
    return new Promise((resolve, reject) => {
      const id = this.#nextId++;
      this.#pending.set(id, { resolve, reject });
      this.#tell(op, args, id);
    });
  }

  stop(err) {
    if (this.#stopped) return;
    this.#leave(err);
    this.#stopped = true;
    for (const off of this.#unlisten) off();
    this.#bc.close();
  }

  // Queues for the lock, and asks whichever tab leads now to count this one in.
  #join() {
    const queue = (this.#queue = new AbortController());
    this.#o.locks.request(this.#name, { signal: queue.signal }, () => {
      if (queue.signal.aborted) return undefined;
      return new Promise((release) => {
        this.#release = release;
        this.#lead();
      });
    }).catch(() => {}); // aborted: this tab left
    this.#send({ t: 'req', op: 'hello', args: { channels: this.#c.cursors() } });
  }

  #lead() {
    this.#send({ t: 'leader' }); // first: every tab knows the new leader before its events
    this.#hub = new Hub(this.#o, (m) => this.#send(m));
  }

  // This tab neither leads nor follows any more (page hidden or frozen, or closed).
  #leave(err) {
    if (this.#leader && this.#leader !== this.#id) this.#send({ t: 'req', to: this.#leader, op: 'bye' });
    // Said before the lock goes: the others hold their publishes for the next leader instead
    // of sending them to this one.
    if (this.#hub) this.#send({ t: 'resign' });
    this.#hub?.stop();
    this.#hub = null;
    this.#release?.();
    this.#release = null;
    this.#queue?.abort();
    this.#following(null, err);
  }

  #following(id, err) {
    const had = this.#leader;
    this.#leader = id;
    this.up = id !== null;
    if (had === null || had === id) return;
    // The previous leader will not answer: the publish may or may not have been made.
    err ??= new HeraldError('disconnected', 'the tab holding the connection went away before the publish was acknowledged');
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    this.#c.leaderChanged();
  }

  #tell(op, args, id) {
    if (this.#leader) this.#send({ t: 'req', to: this.#leader, op, args, id });
    else if (id !== undefined) this.#pending.get(id).reject(new HeraldError('disconnected', 'no tab holds the connection'));
  }

  // To every tab, this one included (a BroadcastChannel does not deliver to its sender).
  #send(m) {
    m.from = this.#id;
    this.#bc.postMessage(m);
    queueMicrotask(() => this.#receive(m));
  }

  #receive(m) {
    if (this.#stopped || this.#away || !m || (m.to && m.to !== this.#id)) return;
    if (m.t === 'req') {
      this.#hub?.request(m);
    } else if (m.t === 'resign') {
      if (m.from === this.#leader && m.from !== this.#id) this.#following(null);
    } else if (m.t === 'leader') {
      if (m.from === this.#leader) return;
      this.#following(m.from);
      // Announced to all: tell the new leader where this tab is. A hello's answer: it knows.
      if (!m.to) this.#send({ t: 'req', to: m.from, op: 'hello', args: { channels: this.#c.cursors() } });
    } else if (m.t === 'res') {
      const p = m.from === this.#leader && this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (m.ok) p.resolve(m.value);
      else p.reject(new HeraldError(m.error?.code ?? 'internal_error', m.error?.message, m.error?.channel));
    } else if (m.t === 'ev') {
      // Frames from any tab: cursors drop what was seen. The state only from the leader.
      if (m.from === this.#leader) this.protocol = m.protocol ?? null;
      if (m.name === 'frame' || m.from === this.#leader) TAB_EVENTS[m.name]?.(this.#c, m.detail);
    }
  }

  // A hidden (maybe for the back/forward cache) or frozen page must not hold the connection
  // for the others: it hands over, and joins again when it is shown or resumed.
  #listenToPage() {
    const win = this.#o.window ?? globalThis;
    const away = () => {
      if (this.#away || this.#stopped) return;
      this.#leave();
      this.#away = true;
    };
    const back = () => {
      if (!this.#away || this.#stopped) return;
      this.#away = false;
      this.#join();
    };
    for (const [target, name, fn] of [[win, 'pagehide', away], [win, 'pageshow', back],
      [win.document, 'freeze', away], [win.document, 'resume', back]]) {
      if (typeof target?.addEventListener !== 'function') continue;
      target.addEventListener(name, fn);
      this.#unlisten.push(() => target.removeEventListener(name, fn));
    }
  }
}

/** The leader's side: the one connection (a Client of its own), and which tab follows what. */
class Hub {
  engine;
  #send;
  #port = {};
  #tabs = new Map();  // tab id -> Set of channels it follows
  #last = {};         // the last state and transport events, for tabs that join
  #stopped = false;

  constructor(o, send) {
    this.#send = send;
    this.#port.tap = (f, before) => this.#frame(f, before);
    this.engine = new Client({ ...o, shareConnection: false }, this.#port);
    for (const name of ['transport', 'state']) {
      this.engine.on(name, (d) => {
        this.#last[name] = d;
        this.#event(name, d);
      });
    }
  }

  request(m) {
    const op = Object.hasOwn(OPS, m.op) && OPS[m.op];
    if (!op || this.#stopped) return;
    let value;
    try {
      value = op(this, m.from, m.args ?? {});
    } catch (e) {
      value = Promise.reject(e);
    }
    if (m.id === undefined) return;
    Promise.resolve(value).then((v) => ({ ok: true, value: v }), (e) => ({ ok: false, error: { code: e.code, message: e.message, channel: e.channel } }))
      .then((r) => { if (!this.#stopped) this.#send({ t: 'res', to: m.from, id: m.id, ...r }); });
  }

  // A tab (new, or after a change of leader) says what it follows and from where.
  hello(tab, channels) {
    const had = this.#tabs.get(tab) ?? new Set();
    this.#tabs.set(tab, new Set());
    for (const [channel, cursor] of Object.entries(channels ?? {})) this.follow(tab, channel, cursor);
    for (const channel of had) this.#unused(channel);
    this.#send({ t: 'leader', to: tab });
    for (const name of ['transport', 'state']) if (this.#last[name]) this.#event(name, this.#last[name], tab);
  }

  follow(tab, channel, cursor) {
    checkChannel(channel);
    if (!this.#tabs.has(tab)) this.#tabs.set(tab, new Set());
    this.#tabs.get(tab).add(channel);
    this.#port.follow(channel, cursor ? checkCursor(cursor) : null, (f) => this.#event('frame', f, tab));
  }

  drop(tab, channel) {
    this.#tabs.get(tab)?.delete(channel);
    this.#unused(channel);
  }

  bye(tab) {
    const had = this.#tabs.get(tab) ?? [];
    this.#tabs.delete(tab);
    for (const channel of had) this.#unused(channel);
  }

  stop() {
    this.#stopped = true; // what it still had to answer, the tabs take as 'disconnected'
    this.engine.close();
  }

  // The server subscription goes with the last tab that follows the channel.
  #unused(channel) {
    for (const set of this.#tabs.values()) if (set.has(channel)) return;
    this.#port.leave(channel);
  }

  // Every frame from the server. A `subscribed` carries the cursor the connection resumed
  // from, so that a tab can tell whether the answer is about its position.
  #frame(f, before) {
    if (f.type === 'error' && f.channel) for (const set of this.#tabs.values()) set.delete(f.channel);
    this.#event('frame', f.type === 'subscribed' ? { ...f, since: before } : f);
  }

  #event(name, detail, to) {
    if (!this.#stopped) this.#send({ t: 'ev', name, detail, to, protocol: this.engine.protocol });
  }
}

function tabId() {
  return globalThis.crypto?.randomUUID?.() ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

// ---- transports ----------------------------------------------------------------------------
// Both offer: `name`, `up`, subscribe(channel, cursor), unsubscribe(channel),
// publish(channel, data, id) -> Promise<published or error frame>, stop(err?). They report to
// the client through the context: up(t), down(t, {failure, delay?, reason}), frame(f).

class WebSocketTransport {
  name = 'websocket';
  up = false;
  protocol = null;    // the version the welcome named
  #c;
  #token;             // the credentials this connection was opened with, or last sent
  #ws = null;
  #opened = false;    // the upgrade succeeded (whether or not the welcome followed)
  #timer = null;
  #heartbeat = 0;
  #done = false;
  #pending = new Map(); // publish or presence id -> {resolve, reject}

  constructor(c) {
    this.#c = c;
    const { o } = c;
    // One timer covers an upgrade that hangs and a socket that opens and then carries
    // nothing (proxies that answer 200 and hold): no welcome in time, no WebSocket.
    this.#arm(o.connectTimeout, `websocket got no welcome within ${o.connectTimeout} ms (a proxy holding the connection?)`,
      'a proxy on the way holds WebSocket connections without passing them on');
    try {
      this.#token = c.token();
      this.#ws = new o.WebSocket(c.url(o.urls.ws, this.#token), PROTOCOLS);
    } catch (e) { // e.g. a ws: URL from an https: page
      o.setTimeout(() => this.#end({
        failure: true, reason: `websocket could not be opened (${e.message})`, plain: 'this browser cannot open a WebSocket to the server',
      }), 0);
      return;
    }
    this.#ws.onopen = () => { this.#opened = true; };
    this.#ws.onmessage = (ev) => this.#receive(ev.data);
    this.#ws.onclose = (ev) => this.#closed(ev.code, ev.reason);
    this.#ws.onerror = () => {}; // the close event that follows says what happened
  }

  subscribe(channel, cursor) {
    if (this.up) this.#send(cursor ? { type: 'subscribe', channel, since: cursor } : { type: 'subscribe', channel });
  }

  unsubscribe(channel) {
    if (this.up) this.#send({ type: 'unsubscribe', channel });
  }

  publish(channel, data, id) {
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#send({ type: 'publish', channel, data, id });
    });
  }

  presence(channel, id) {
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#send({ type: 'presence', channel, id });
    });
  }

  refresh(token) {
    if (!this.up) return;
    this.#token = token;
    this.#send({ type: 'refresh', token });
  }

  stop(err) {
    if (this.#done) return;
    this.#done = true;
    this.#c.o.clearTimeout(this.#timer);
    // The publish may have reached the server: the app decides whether to send it again.
    err ??= new HeraldError('disconnected', 'the connection closed before the publish was acknowledged');
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    const ws = this.#ws;
    if (!ws) return;
    ws.onmessage = ws.onclose = null;
    try { ws.close(1000); } catch { /* already closing */ }
  }

  #end(down) {
    if (this.#done) return;
    this.stop();
    this.#c.down(this, down);
  }

  #send(frame) {
    if (this.#ws?.readyState === 1) this.#ws.send(JSON.stringify(frame));
  }

  #arm(ms, reason, plain) {
    this.#c.o.clearTimeout(this.#timer);
    this.#timer = this.#c.o.setTimeout(() => this.#end({ failure: true, reason, plain }), ms);
  }

  // Anything received proves the connection alive; the server pings when it has nothing else.
  #alive() {
    if (this.#heartbeat > 0) {
      const ms = 2 * this.#heartbeat + HEARTBEAT_SLACK;
      this.#arm(ms, `no frame for ${ms} ms (heartbeat lost)`);
    }
  }

  #receive(text) {
    if (this.#done) return;
    let f;
    try { f = JSON.parse(text); } catch { return; }
    if (!f || typeof f.type !== 'string') return;
    if (!this.up) {
      if (f.type !== 'welcome') return;
      this.up = true;
      this.protocol = typeof f.protocol === 'string' ? f.protocol : 'herald.v1';
      this.#heartbeat = Number(f.heartbeat) || 0;
      this.#c.o.clearTimeout(this.#timer);
      this.#alive();
      for (const [channel, cursor] of Object.entries(this.#c.cursors())) this.subscribe(channel, cursor);
      this.#c.up(this);
      return;
    }
    this.#alive();
    const p = f.id !== undefined && (f.type === 'published' || f.type === 'error' || f.type === 'presence') && this.#pending.get(f.id);
    if (p) {
      this.#pending.delete(f.id);
      p.resolve(f);
    } else if (f.type === 'ping') {
      this.#send({ type: 'pong' });
    } else if (f.type === 'reconnect') {
      this.#end({ failure: false, delay: Math.max(0, Number(f.after) || 0), reason: `server asked to reconnect (${f.reason})` });
    } else {
      this.#c.frame(f);
    }
  }

  #closed(code, reason) {
    if (this.#done) return;
    const said = reason ? `: ${reason}` : '';
    if (!this.up) {
      return this.#end({
        failure: true,
        reason: `websocket closed before welcome (code ${code}${said}; proxy dropped Upgrade?)`,
        // Refused before it opened: the upgrade did not reach the server (a proxy answered
        // itself, or dropped the Upgrade header). Opened, then cut: something on the way
        // ends WebSocket connections.
        plain: this.#opened ? 'something on the way (a proxy, a firewall) cuts WebSocket connections'
          : 'a proxy on the way does not pass WebSockets through',
      });
    }
    switch (code) {
      case 4008: return this.#end({ failure: false, delay: 0, reason: 'slow consumer (close 4008): resuming at once' });
      case 4000: return this.#end({ failure: false, delay: 0, reason: 'the server found the connection idle (close 4000)' });
      case 4001: return this.#end({ failure: false, reason: 'the server is draining (close 4001)' });
      case 4003: return this.#end({ failure: false, expired: true, token: this.#token, reason: 'the credentials expired (close 4003)' });
      default: return this.#end({ failure: true, reason: `websocket closed (code ${code}${said})` });
    }
  }
}

class LongPollTransport {
  name = 'longpoll';
  up = false;
  protocol = null;    // the version the last answer named (none named: herald.v1)
  #c;
  #ctl = null;
  #gen = 0;
  #dirty = false;
  #done = false;

  constructor(c) {
    this.#c = c;
    this.#poll();
  }

  // Every poll carries every channel with its cursor, so a change of channels only needs a
  // new poll: the held one carries the old set. Coalesced: a page subscribing to five
  // channels at once starts one poll, not five.
  subscribe() { this.#changed(); }
  unsubscribe() { this.#changed(); }
  // New credentials: the held poll carries the old ones, which the server will end at their
  // expiry; a new poll carries these.
  refresh() { this.#changed(); }

  async publish(channel, data, id) {
    const { o } = this.#c;
    let res;
    try {
      res = await o.fetch(this.#c.url(o.urls.publish, this.#c.token()), post({ channel, data, id }, o));
    } catch (e) {
      throw new HeraldError('disconnected', `publish failed (${e.message})`, channel);
    }
    // The answer is {"frames":[published or error]}, refusals (401, 403, 503...) included.
    const body = await readJson(res);
    const f = frames(body).find((x) => x?.type === 'published' || x?.type === 'error');
    if (f) return f;
    if (body?.error) return { type: 'error', ...body.error }; // the host's own refusals (413)
    return { type: 'error', code: 'http_error', message: `publish answered HTTP ${res.status}` };
  }

  stop() {
    this.#done = true;
    this.#ctl?.abort();
  }

  #changed() {
    if (this.#dirty) return;
    this.#dirty = true;
    queueMicrotask(() => { if (this.#dirty && !this.#done) this.#poll(); });
  }

  #end(down) {
    if (this.#done) return;
    this.stop();
    this.#c.down(this, down);
  }

  async #poll() {
    this.#dirty = false;
    this.#ctl?.abort();
    const gen = ++this.#gen;
    const ctl = (this.#ctl = new AbortController());
    const { o } = this.#c;
    const token = this.#c.token();  // what this poll carries: if it expired, these did
    // The first poll asks for an answer at once: it proves the path works, so the client is
    // 'open' now, not after a held poll's timeout.
    const timeout = this.up ? o.pollTimeout : 0;
    const limit = timeout + POLL_SLACK;
    let timedOut = false;
    const timer = o.setTimeout(() => { timedOut = true; ctl.abort(); }, limit);
    let res, body;
    try {
      res = await o.fetch(this.#c.url(o.urls.poll, token), post({ channels: this.#c.cursors(), timeout, protocols: PROTOCOLS }, o, ctl.signal));
      body = await readJson(res);
    } catch (e) {
      if (gen !== this.#gen || this.#done) return; // replaced or stopped: the cursors still say what is owed
      return this.#end({ failure: true, reason: timedOut ? `poll got no answer within ${limit} ms` : `poll failed (${e.message})` });
    } finally {
      o.clearTimeout(timer);
    }
    if (gen !== this.#gen || this.#done) return;

    if (res.status === 200 && Array.isArray(body?.frames)) {
      // Each poll may reach another server (no sticky sessions): each answer names its version.
      this.protocol = typeof body.protocol === 'string' ? body.protocol : 'herald.v1';
      if (!this.up) {
        this.up = true;
        this.#c.up(this);
      }
      for (const f of body.frames) {
        if (this.#done) return;
        if (f?.type === 'reconnect') return this.#drain(f);
        if (f && typeof f.type === 'string') this.#c.frame(f);
        if (f?.code === 'credentials_expired') return this.#end({ failure: false, expired: true, token, reason: 'the credentials expired' });
      }
      if (!this.#done) this.#poll();
      return;
    }
    const drain = res.status === 503 && frames(body).find((f) => f?.type === 'reconnect');
    if (drain) return this.#drain(drain);
    if (res.status === 429) {
      const header = res.headers.get('Retry-After');
      const secs = header === null ? NaN : Number(header);
      return this.#end({
        failure: true,
        delay: secs >= 0 ? secs * 1000 : undefined,
        reason: 'the server holds too many polls (HTTP 429)',
      });
    }
    const code = frames(body).find((f) => f?.type === 'error')?.code ?? body?.error?.code;
    if (code === 'credentials_expired') return this.#end({ failure: false, expired: true, token, reason: 'the credentials expired (HTTP 401)' });
    this.#end({ failure: true, reason: `poll answered HTTP ${res.status}${code ? ` (${code})` : ''}` });
  }

  #drain(f) {
    this.#end({ failure: false, delay: Math.max(0, Number(f.after) || 0), reason: `server asked to reconnect (${f.reason})` });
  }
}

// ---- helpers -------------------------------------------------------------------------------

// The frames of a long-poll or publish answer, `{"frames":[...]}` (none for another body).
function frames(body) {
  return Array.isArray(body?.frames) ? body.frames : [];
}

function resolveOptions(options) {
  const o = { ...DEFAULTS };
  for (const [k, v] of Object.entries(options)) if (v !== undefined) o[k] = v;
  for (const t of o.transports) {
    if (!TRANSPORTS.includes(t)) throw new TypeError(`herald: unknown transport '${t}' (one of ${TRANSPORTS.join(', ')})`);
  }
  // Browser built-ins throw "Illegal invocation" when called as methods of another object:
  // keep them as free functions.
  const wrap = (f, name) => {
    if (typeof f !== 'function') throw new TypeError(`herald: no ${name} in this environment; pass options.${name}`);
    return (...args) => f(...args);
  };
  o.fetch = wrap(o.fetch ?? globalThis.fetch, 'fetch');
  o.setTimeout = wrap(o.setTimeout ?? globalThis.setTimeout, 'setTimeout');
  o.clearTimeout = wrap(o.clearTimeout ?? globalThis.clearTimeout, 'clearTimeout');
  o.random = wrap(o.random ?? Math.random, 'random');
  o.now = wrap(o.now ?? Date.now, 'now');
  o.WebSocket ??= globalThis.WebSocket;
  if (o.transports.includes('websocket') && typeof o.WebSocket !== 'function') {
    throw new TypeError('herald: no WebSocket in this environment; pass options.WebSocket or transports: [\'longpoll\']');
  }
  o.urls = endpoints(o.url);
  // Sharing a connection between tabs needs both; without either, each tab connects alone.
  o.locks ??= globalThis.navigator?.locks;
  o.BroadcastChannel ??= globalThis.BroadcastChannel;
  if (typeof o.shareKey !== 'string') throw new TypeError('herald: shareKey must be a string');
  return o;
}

// The server's endpoints under `base` (default: this page's origin). A path in `base` is kept,
// for a server mounted under a prefix.
function endpoints(base) {
  const u = new URL(base ?? globalThis.location?.origin ?? '', globalThis.location?.href);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`herald: url must be http(s): ${base}`);
  const root = `${u.origin}${u.pathname.replace(/\/+$/, '')}/herald/`;
  return { info: `${root}info`, poll: `${root}poll`, publish: `${root}publish`, ws: `${root.replace(/^http/, 'ws')}ws` };
}

// text/plain keeps a cross-origin POST "simple": no CORS preflight per poll.
function post(body, o, signal) {
  return { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: JSON.stringify(body), signal, credentials: o.credentials };
}

// A proxy's HTML error page is not an exception: it is "no herald.v1 answer".
async function readJson(res) {
  try { return JSON.parse(await res.text()); } catch { return null; }
}

function checkChannel(channel) {
  if (typeof channel !== 'string' || channel.length > 200 || !CHANNEL.test(channel)) {
    throw new TypeError(`herald: invalid channel name: ${JSON.stringify(channel)}`);
  }
}

function checkCursor(since) {
  if (typeof since.epoch !== 'string' || !Number.isSafeInteger(since.offset) || since.offset < 0) {
    throw new TypeError('herald: since must be {epoch: string, offset: non-negative integer}');
  }
  return { epoch: since.epoch, offset: since.offset };
}

function offline(channel) {
  return new HeraldError('offline', 'the client gave up reconnecting (call reconnect())', channel);
}

// An app's handler that throws must not break delivery to the others, nor herald's state:
// report it as uncaught (the console shows it, window 'error' listeners get it) and go on.
function call(fn, ...args) {
  try {
    fn(...args);
  } catch (e) {
    if (typeof globalThis.reportError === 'function') globalThis.reportError(e);
    else queueMicrotask(() => { throw e; });
  }
}
