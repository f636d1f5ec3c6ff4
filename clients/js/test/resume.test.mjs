// Resume by cursor: what the client keeps per channel, what it sends on every (re)subscribe,
// what it drops, and when it tells the app to resync.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, record } from './fake-herald.mjs';

const CH = 'project.42.items';

test('a new subscription starts at the head; every resubscribe sends the cursor as since', async () => {
  const { clock, herald, client } = setup();
  herald.publish(CH, 'before'); // published before the page subscribed: not owed
  const items = record(client, CH);
  await clock.advance(0);
  assert.deepEqual(herald.socket.sent, [{ type: 'subscribe', channel: CH }]);
  assert.deepEqual(items.sub.cursor, { epoch: 'e1', offset: 1 });

  herald.publish(CH, 'a');
  herald.publish(CH, 'b');
  assert.deepEqual(items.got.map((m) => [m.data, m.channel, m.epoch, m.offset]), [['a', CH, 'e1', 2], ['b', CH, 'e1', 3]]);
  assert.deepEqual(items.sub.cursor, { epoch: 'e1', offset: 3 });

  herald.socket.drop(1006);
  herald.publish(CH, 'missed while away');
  await clock.advance(1000);
  assert.equal(herald.sockets.length, 2);
  assert.deepEqual(herald.socket.sent, [{ type: 'subscribe', channel: CH, since: { epoch: 'e1', offset: 3 } }]);
  assert.deepEqual(items.offsets(), [2, 3, 4], 'the missed message is replayed, once');
  assert.equal(client.state, 'open');
});

test('a subscribe cut off before its answer resumes from an unknown position: recovered:false, resync', async () => {
  const { clock, herald, client, events } = setup();
  await clock.advance(0);
  const items = record(client, CH);
  herald.socket.drop(1006); // before the server's answer was on its way
  herald.publish(CH, 'published meanwhile');
  assert.equal(items.sub.cursor, null);
  await clock.advance(1000);
  assert.deepEqual(herald.socket.sent, [{ type: 'subscribe', channel: CH, since: { epoch: '', offset: 0 } }]);
  assert.deepEqual(events.resync, [{ channel: CH, epoch: 'e1', offset: 1 }], 'never a silent gap');
  assert.deepEqual(items.sub.cursor, { epoch: 'e1', offset: 1 });
  herald.publish(CH, 'live');
  assert.deepEqual(items.got.map((m) => m.data), ['live']);
});

test('messages at or below the cursor in the same epoch are dropped as duplicates', async () => {
  const { clock, herald, client, events } = setup();
  const items = record(client, CH);
  await clock.advance(0);
  const message = (offset) => ({ type: 'message', channel: CH, epoch: 'e1', offset, data: offset });
  // A resume that overlaps what was delivered, as a server replaying from an older cursor would.
  for (const offset of [1, 2, 2, 1, 3, 2]) herald.socket.deliver(message(offset));
  assert.deepEqual(items.offsets(), [1, 2, 3]);
  assert.deepEqual(events.resync, []);
});

test('subscribed with recovered:false sets the cursor to the head and emits resync, once per channel', async () => {
  const { clock, herald, client, events } = setup();
  const items = record(client, CH);
  const other = record(client, 'user.alice.notifications');
  await clock.advance(0);
  herald.publish(CH, 1);
  herald.publish(CH, 2);
  herald.socket.drop(1006);
  herald.publish(CH, 3);
  herald.publish(CH, 4);
  herald.forget(CH); // the history no longer holds 3 and 4
  await clock.advance(1000);

  assert.deepEqual(events.resync, [{ channel: CH, epoch: 'e1', offset: 4 }]);
  assert.deepEqual(items.sub.cursor, { epoch: 'e1', offset: 4 });
  assert.deepEqual(items.offsets(), [1, 2], 'nothing is replayed: the app refetches');
  herald.publish(CH, 5);
  assert.deepEqual(items.offsets(), [1, 2, 5], 'live messages continue from the new cursor');
  assert.deepEqual(other.got, []);
});

test('a new epoch (history lost) on resubscribe means resync at the new head', async () => {
  const { clock, herald, client, events } = setup();
  const items = record(client, CH);
  await clock.advance(0);
  herald.publish(CH, 1);
  herald.socket.drop(1001);
  herald.newEpoch(CH); // the server restarted with an empty history
  herald.publish(CH, 'after restart');
  await clock.advance(1000);
  assert.deepEqual(events.resync, [{ channel: CH, epoch: 'e2', offset: 1 }]);
  assert.deepEqual(items.sub.cursor, { epoch: 'e2', offset: 1 });
});

test('a message in another epoch than the cursor emits resync, then is delivered', async () => {
  const { clock, herald, client, events } = setup();
  const items = record(client, CH);
  await clock.advance(0);
  herald.publish(CH, 1);
  const order = [];
  client.on('resync', () => order.push('resync'));
  client.subscribe(CH, () => order.push('message'));
  herald.socket.deliver({ type: 'message', channel: CH, epoch: 'e9', offset: 7, data: 'x' });
  assert.deepEqual(events.resync, [{ channel: CH, epoch: 'e9', offset: 7 }]);
  assert.deepEqual(order, ['resync', 'message']);
  assert.deepEqual(items.sub.cursor, { epoch: 'e9', offset: 7 });
  herald.socket.deliver({ type: 'message', channel: CH, epoch: 'e9', offset: 7, data: 'x' });
  assert.deepEqual(items.offsets(), [1, 7], 'the new epoch is now the cursor: its duplicates drop');
});

test('subscribed recovered:true in another epoch renames the stream (a Redis failover): the cursor keeps its offset, no resync', async () => {
  const { clock, herald, client, events } = setup();
  const items = record(client, CH);
  await clock.advance(0);
  herald.publish(CH, 1);
  herald.publish(CH, 2);
  herald.socket.deliver({ type: 'subscribed', channel: CH, epoch: 'e7', offset: 2, recovered: true });
  assert.deepEqual(items.sub.cursor, { epoch: 'e7', offset: 2 });
  herald.socket.deliver({ type: 'message', channel: CH, epoch: 'e7', offset: 3, data: 'x' });
  assert.deepEqual(events.resync, [], 'what the new primary holds keeps its offsets');
  assert.deepEqual(items.offsets(), [1, 2, 3]);
});

test('subscribe with {since} resumes from a position the page was rendered at', async () => {
  const { clock, herald, client, events } = setup();
  herald.publish(CH, 1);
  herald.publish(CH, 2); // published between rendering and subscribing
  const items = record(client, CH, { since: { epoch: 'e1', offset: 1 } });
  assert.deepEqual(items.sub.cursor, { epoch: 'e1', offset: 1 });
  await clock.advance(0);
  assert.deepEqual(herald.socket.sent, [{ type: 'subscribe', channel: CH, since: { epoch: 'e1', offset: 1 } }]);
  assert.deepEqual(items.got.map((m) => m.data), [2]);
  assert.deepEqual(events.resync, []);
  assert.throws(() => client.subscribe(CH, () => {}, { since: { epoch: 'e1', offset: -1 } }), TypeError);
});

test('unsubscribe stops one handler; the channel is left when its last subscription goes', async () => {
  const { clock, herald, client } = setup();
  const a = record(client, CH);
  const b = record(client, CH);
  await clock.advance(0);
  assert.equal(herald.socket.sent.filter((f) => f.type === 'subscribe').length, 1, 'one subscribe per channel');
  herald.publish(CH, 1);
  a.sub.unsubscribe();
  herald.publish(CH, 2);
  assert.deepEqual(a.offsets(), [1]);
  assert.deepEqual(b.offsets(), [1, 2]);
  b.sub.unsubscribe();
  b.sub.unsubscribe(); // idempotent
  await clock.advance(0);
  assert.deepEqual(herald.socket.sent.at(-1), { type: 'unsubscribe', channel: CH });
  assert.equal(herald.socket.sent.filter((f) => f.type === 'unsubscribe').length, 1);
  herald.publish(CH, 3);
  assert.deepEqual(b.offsets(), [1, 2]);
  herald.socket.drop(1006);
  await clock.advance(1000);
  assert.deepEqual(herald.socket.sent, [], 'a left channel is not resubscribed');
});

test('a refused subscribe emits error with the channel and is not asked again', async () => {
  const { clock, herald, client, events } = setup();
  herald.forbidden.add('user.bob.notifications');
  const bob = record(client, 'user.bob.notifications');
  const mine = record(client, 'user.alice.notifications');
  await clock.advance(0);
  assert.equal(events.error.length, 1);
  const [err] = events.error;
  assert.equal(err.name, 'HeraldError');
  assert.equal(err.code, 'forbidden');
  assert.equal(err.channel, 'user.bob.notifications');
  herald.socket.drop(1006);
  await clock.advance(1000);
  assert.deepEqual(herald.socket.sent.map((f) => f.channel), ['user.alice.notifications']);
  herald.publish('user.alice.notifications', 'hi');
  assert.deepEqual(mine.offsets(), [1]);
  assert.deepEqual(bob.got, []);
});

test('channel names are checked before anything is sent', () => {
  const { client } = setup();
  for (const bad of ['', 'a..b', '.a', 'a.', 'with space', 'x'.repeat(201), 42]) {
    assert.throws(() => client.subscribe(bad, () => {}), TypeError, String(bad));
  }
  assert.throws(() => client.subscribe('ok', 'not a function'), TypeError);
  assert.throws(() => client.on('mesage', () => {}), TypeError);
  client.close();
});

test('a handler that throws is reported as uncaught; the other handlers still get the message', async (t) => {
  const reported = [];
  const saved = globalThis.reportError;
  globalThis.reportError = (e) => reported.push(e);
  t.after(() => { globalThis.reportError = saved; });
  const { clock, herald, client } = setup();
  client.subscribe(CH, () => { throw new Error('app bug'); });
  const items = record(client, CH);
  await clock.advance(0);
  herald.publish(CH, 1);
  herald.publish(CH, 2);
  assert.deepEqual(items.offsets(), [1, 2]);
  assert.deepEqual(reported.map((e) => e.message), ['app bug', 'app bug']);
});
