// Type declarations for herald.js 0.1.0, the browser client of herald (herald.v1).
// README.md beside this file is the reference; docs/protocol.md is the wire protocol.

/** The client's version, e.g. '0.1.0'. */
export const VERSION: string;

/** Opens a client. It connects at once and keeps reconnecting until `close()`. */
export function connect(options?: ConnectOptions): Client;

export type TransportName = 'websocket' | 'longpoll';

/**
 * - `connecting`: first connection under way.
 * - `open`: connected; subscriptions are live.
 * - `reconnecting`: connection lost; waiting `delay` ms, then trying again.
 * - `warning`: as reconnecting, after `warnAfterAttempts` failed attempts in a row.
 * - `offline`: gave up (only with `maxAttempts` or `giveUpAfter`); `reconnect()` starts again.
 * - `expired`: the credentials expired and `accessToken` gave no new ones (the user was signed
 *   out or revoked); nothing is received. `reconnect()` starts again, e.g. after signing in.
 * - `closed`: `close()` was called.
 */
export type State = 'connecting' | 'open' | 'reconnecting' | 'warning' | 'offline' | 'expired' | 'closed';

/** A place in a channel's stream: the last message seen. Offsets compare within one epoch. */
export interface Cursor {
  epoch: string;
  offset: number;
}

export interface ConnectOptions {
  /** Base URL of the herald server; default: the page's origin. A path is kept as a prefix. */
  url?: string;
  /** Transports to use, in order of preference. Default ['websocket', 'longpoll']. */
  transports?: TransportName[];
  /** Backoff: the first retry waits random(0, minDelay) ms. Default 500. */
  minDelay?: number;
  /** Backoff cap: retry n waits random(0, min(maxDelay, minDelay * 2^n)) ms. Default 30000. */
  maxDelay?: number;
  /** Give up ('offline') after this many failed attempts in a row. Default Infinity. */
  maxAttempts?: number;
  /** Give up ('offline') after this many ms without a connection. Default Infinity. */
  giveUpAfter?: number;
  /** 'warning' instead of 'reconnecting' from this many failed attempts in a row. Default 3. */
  warnAfterAttempts?: number;
  /** How long /herald/info and a WebSocket's welcome may take. Default 10000. */
  connectTimeout?: number;
  /** While on long-poll after a WebSocket failure: try WebSocket again this often (ms); 0: never. Default 30000. */
  probeInterval?: number;
  /** How long the server may hold a poll (ms; the server caps it). Default 25000. */
  pollTimeout?: number;
  /** fetch credentials mode for /herald/info, poll and publish. Default 'same-origin'. */
  credentials?: RequestCredentials;
  /**
   * Credentials that expire: returns an access token (or a Promise of one), which is sent as
   * the `access_token` query parameter of the WebSocket, of each poll and of each publish.
   * Called before each connection, when the server asks for a refresh (the new token goes
   * in-band on WebSocket, with the next poll on long-poll), and once when the credentials
   * expired; returning nothing (null, '') or throwing means "none": the state becomes
   * `expired`. Default: none (cookies or headers identify the user).
   */
  accessToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /**
   * Share one connection with the other tabs of this browser on the same server (and
   * `shareKey`): one tab, elected with Web Locks, holds it; the others reach it over a
   * BroadcastChannel. The page API is the same. Without Web Locks or BroadcastChannel, or
   * false: this client connects on its own. Default true.
   */
  shareConnection?: boolean;
  /**
   * Tabs share a connection only with tabs of the same key: the signed-in user's id, where
   * tabs of one browser may be signed in as different users without a shared cookie. Default ''.
   */
  shareKey?: string;
  /** Injectable environment, for tests and non-browser hosts. Defaults: the globals. */
  WebSocket?: { new (url: string, protocols?: string | string[]): WebSocket };
  fetch?: (input: string, init?: RequestInit) => Promise<Response>;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (id: any) => void;
  /** Returns [0, 1): the jitter of the backoff. Default Math.random. */
  random?: () => number;
  /** Returns the time in ms. Default Date.now. */
  now?: () => number;
  /** Web Locks, for electing the tab that holds the shared connection. Default navigator.locks. */
  locks?: { request(name: string, options: { signal?: AbortSignal }, callback: (lock: unknown) => Promise<unknown> | unknown): Promise<unknown> } | null;
  /** The channel between tabs. Default the global BroadcastChannel. */
  BroadcastChannel?: { new (name: string): BroadcastChannel } | null;
  /** Where pagehide/pageshow (and, on its document, freeze/resume) are heard. Default the global window. */
  window?: EventTarget & { document?: EventTarget };
}

/** Where a delivered message stands in its channel's stream. */
export interface MessageMeta {
  channel: string;
  epoch: string;
  offset: number;
}

export type MessageHandler<T = unknown> = (data: T, meta: MessageMeta) => void;

export interface SubscribeOptions {
  /** Resume after this position (e.g. the head the page was rendered at) instead of at the head. */
  since?: Cursor;
}

export interface Subscription {
  readonly channel: string;
  /** The channel's cursor: the last message delivered (or the head subscribed at); null until the server answered. */
  readonly cursor: Cursor | null;
  /** Stops this handler; the channel is left when its last subscription goes. Idempotent. */
  unsubscribe(): void;
}

export interface StateEvent {
  state: State;
  /** The transport in use, being opened, or last used. */
  transport: TransportName | null;
  /** Why: the cause of a failure, the server's drain reason, or (when open on long-poll) why not WebSocket. */
  reason?: string;
  /** On long-poll: why not WebSocket, in words for the page's user, e.g. 'a proxy on the way does not pass WebSockets through'. */
  explanation?: string;
  /** Failed attempts in a row (0 once open). */
  attempt: number;
  /** reconnecting / warning: ms until the next attempt. */
  delay?: number;
}

export interface TransportEvent {
  transport: TransportName;
  previous: TransportName | null;
  /** Why this transport: e.g. 'websocket closed before welcome (code 1006; proxy dropped Upgrade?)'. */
  reason?: string;
  /** On long-poll: the same in words for the page's user (see StateEvent.explanation). */
  explanation?: string;
}

/** The app must refetch what it shows from `channel`: messages may have been missed. The cursor is now {epoch, offset}. */
export interface ResyncEvent {
  channel: string;
  epoch: string;
  offset: number;
}

/** herald.v2 presence: one user in a channel (however many tabs); `info` is what the server's authenticate hook set (e.g. a display name). */
export interface PresenceMember<I = unknown> {
  user: string;
  info: I | null;
}

/** The members of `channel`, read again after each (re)subscribe of a channel whose presence was asked. */
export interface PresenceEvent {
  channel: string;
  members: PresenceMember[];
}

/** A user joined `channel` (its first tab anywhere) or left it (its last). `info` comes with `join` only. */
export interface JoinLeaveEvent {
  channel: string;
  user: string;
  info?: unknown;
}

export interface Events {
  state: StateEvent;
  transport: TransportEvent;
  resync: ResyncEvent;
  presence: PresenceEvent;
  join: JoinLeaveEvent;
  leave: JoinLeaveEvent;
  /** A request the server refused, e.g. a subscribe (`forbidden`): that channel is dropped. */
  error: HeraldError;
}

export interface Client {
  readonly state: State;
  readonly transport: TransportName | null;
  /** The protocol version the server answered with ('herald.v2' from a current server, 'herald.v1' from an older one); null while not connected. */
  readonly protocol: 'herald.v2' | 'herald.v1' | null;
  /** Calls `handler` for every message of `channel`, in offset order, each once. Throws TypeError on an invalid channel name. */
  subscribe<T = unknown>(channel: string, handler: MessageHandler<T>, options?: SubscribeOptions): Subscription;
  /**
   * Publishes `data` (any JSON value) to `channel`; resolves with its position. Waits for a
   * connection if there is none. Rejects with HeraldError: a server code (forbidden, ...),
   * 'disconnected' (the connection dropped, or the tab holding the shared connection went,
   * before the answer: it may have been made),
   * 'offline', 'closed' or 'http_error'.
   */
  publish(channel: string, data: unknown): Promise<Cursor>;
  /**
   * herald.v2: who is in `channel` now. From then on the client emits 'presence' after each
   * (re)subscribe, and 'join'/'leave' as users come and go. Rejects with HeraldError:
   * 'forbidden' (the server's authorizer), 'unsupported' (not on a WebSocket to a herald.v2
   * server), 'disconnected', 'closed'.
   */
  presence(channel: string): Promise<PresenceMember[]>;
  /** Listens to an event; returns a function that stops listening. */
  on<K extends keyof Events>(name: K, listener: (detail: Events[K]) => void): () => void;
  /** Connects now: skips a backoff wait, or starts again after 'offline'. No-op when open or closed. */
  reconnect(): void;
  /** Disconnects for good; waiting publishes reject with 'closed'. */
  close(): void;
}

export type ServerErrorCode =
  | 'malformed_frame' | 'unknown_frame_type' | 'invalid_channel' | 'forbidden' | 'not_subscribed'
  | 'too_many_subscriptions' | 'invalid_payload' | 'payload_too_large' | 'backplane_unavailable' | 'internal_error';
export type ClientErrorCode = 'disconnected' | 'offline' | 'closed' | 'http_error' | 'unsupported';

export class HeraldError extends Error {
  constructor(code: string, message?: string, channel?: string);
  readonly name: 'HeraldError';
  readonly code: ServerErrorCode | ClientErrorCode | (string & {});
  /** The channel the failed request concerned, when there is one. */
  readonly channel?: string;
}
