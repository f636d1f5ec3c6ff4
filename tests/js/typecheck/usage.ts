// Compiled (not run) by the CTest "js: herald.d.ts type-checks": the public API as an app uses
// it must type-check, and the misuses marked @ts-expect-error must not.
import { connect, HeraldError, VERSION } from '../../../clients/js/herald.js';
import type { Client, Cursor, State, StateEvent, Subscription, TransportName } from '../../../clients/js/herald.js';

const version: string = VERSION;
const herald: Client = connect({
  url: 'https://cms.example',
  transports: ['websocket', 'longpoll'],
  minDelay: 500,
  maxDelay: 30000,
  maxAttempts: Infinity,
  giveUpAfter: 5 * 60000,
  warnAfterAttempts: 3,
  connectTimeout: 10000,
  probeInterval: 30000,
  pollTimeout: 25000,
  credentials: 'include',
  random: Math.random,
  now: Date.now,
  fetch: (input, init) => fetch(input, init),
  WebSocket,
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
  shareConnection: true,
  shareKey: 'alice',
});
const solo: Client = connect({ shareConnection: false, locks: null, BroadcastChannel: null });

interface Item { id: number; title: string }
const items: Subscription = herald.subscribe<Item>('project.42.items', (item, meta) => {
  const title: string = item.title;
  const at: number = meta.offset;
  const epoch: string = meta.epoch;
  void [title, at, epoch, meta.channel];
}, { since: { epoch: '0k3v9x2m1q8zt', offset: 17 } });
const cursor: Cursor | null = items.cursor;
items.unsubscribe();

const off: () => void = herald.on('state', (e: StateEvent) => {
  const s: State = e.state;
  const t: TransportName | null = e.transport;
  const waits: number | undefined = e.delay;
  void [s, t, waits, e.reason, e.attempt];
});
off();
herald.on('transport', ({ transport, previous, reason }) => void [transport, previous, reason]);
herald.on('resync', ({ channel, epoch, offset }) => void [channel, epoch, offset]);
herald.on('error', (err) => {
  const code: string = err.code;
  const channel: string | undefined = err.channel;
  void [code, channel, err instanceof HeraldError, err.message];
});

async function comment(): Promise<Cursor> {
  try {
    return await herald.publish('project.42.comments', { text: 'Looks good' });
  } catch (e) {
    if (e instanceof HeraldError && e.code === 'forbidden') throw e;
    throw e;
  }
}
void [version, cursor, comment];
const where: State = herald.state;
const how: TransportName | null = herald.transport;
void [where, how];
herald.reconnect();
herald.close();

// @ts-expect-error: not an event
herald.on('message', () => {});
// @ts-expect-error: not a transport
connect({ transports: ['sse'] });
// @ts-expect-error: a cursor needs an epoch
herald.subscribe('x', () => {}, { since: { offset: 3 } });
// @ts-expect-error: 'opened' is not a state
const wrong: State = 'opened';
void wrong;
