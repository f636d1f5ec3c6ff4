// Reconnecting: backoff with full jitter, warning and giving up, what the server asks for
// (reconnect frame, close codes 4001 and 4008), and the heartbeat.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, record } from './fake-herald.mjs';

const CH = 'project.42.items';
const waits = (events) => events.state.filter((s) => s.delay !== undefined).map((s) => s.delay);

test('backoff: delay = random(0, min(maxDelay, minDelay * 2^attempt)), full jitter', async () => {
  // random() just below 1 gives each cap; 0 gives 0: the whole range is used.
  const draws = [0.999999, 0, 0.999999, 0.25, 0.999999, 0.999999, 0.999999, 0.999999, 0.999999];
  const { clock, herald, events } = setup({ minDelay: 500, maxDelay: 30000, random: () => draws.shift() });
  herald.infoDown = true;
  await clock.advance(200000);
  const caps = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
  assert.deepEqual(waits(events).slice(0, 9), [499, 0, 1999, 1000, 7999, 15999, 29999, 29999, 29999]);
  for (const [i, d] of waits(events).slice(0, 9).entries()) assert.ok(d >= 0 && d < caps[i], `attempt ${i}: ${d}`);
  assert.ok(waits(events).length > 9, 'keeps retrying at maxDelay: the default is never to give up');
});

test('backoff resets after a successful open', async () => {
  const { clock, herald, events } = setup({ random: () => 0.999999 });
  herald.infoDown = true;
  await clock.advance(499 + 999 + 1999); // three failures: the next wait would be 4000
  herald.infoDown = false;
  await clock.advance(3999);
  assert.equal(events.state.at(-1).state, 'open');
  assert.equal(events.state.at(-1).attempt, 0);
  herald.socket.drop(1006);
  await clock.advance(0);
  assert.equal(events.state.at(-1).delay, 499, 'the first retry after an open waits at most minDelay');
});

test('state goes reconnecting, then warning after warnAfterAttempts failures in a row, still retrying', async () => {
  const { clock, herald, events, states } = setup({ warnAfterAttempts: 3 });
  herald.infoDown = true;
  await clock.advance(10000);
  assert.deepEqual(states().slice(0, 5), ['connecting', 'reconnecting', 'reconnecting', 'warning', 'warning']);
  const warning = events.state.find((s) => s.state === 'warning');
  assert.equal(warning.attempt, 3);
  assert.match(warning.reason, /server unreachable \(fetch failed\)/);
  herald.infoDown = false;
  await clock.advance(30000);
  assert.equal(states().at(-1), 'open');
});

test('maxAttempts: gives up as offline, publishes reject, reconnect() starts again', async () => {
  const { clock, herald, client, events, states } = setup({ maxAttempts: 4 });
  herald.infoDown = true;
  await clock.advance(60000);
  assert.deepEqual(states(), ['connecting', 'reconnecting', 'reconnecting', 'warning', 'offline']);
  assert.equal(herald.infoRequests, 4);
  assert.equal(events.state.at(-1).attempt, 4);
  await assert.rejects(client.publish(CH, 1), { name: 'HeraldError', code: 'offline' });
  await clock.advance(60000);
  assert.equal(herald.infoRequests, 4, 'offline means no more attempts');

  herald.infoDown = false;
  client.reconnect();
  await clock.advance(0);
  assert.equal(client.state, 'open');
});

test('giveUpAfter: gives up once that many ms passed without a connection', async () => {
  const { clock, herald, client, states } = setup({ giveUpAfter: 10000 });
  const queued = assert.rejects(client.publish(CH, 'never sent'), { code: 'offline' });
  herald.infoDown = true;
  await clock.advance(9000);
  assert.notEqual(client.state, 'offline');
  await clock.advance(20000);
  assert.equal(states().at(-1), 'offline');
  await queued;
});

test('a reconnect frame (drain) is honoured: wait `after`, not the backoff, then resume', async () => {
  const { clock, herald, client, events } = setup();
  const items = record(client, CH);
  await clock.advance(0);
  herald.publish(CH, 1);
  const drained = herald.socket;
  drained.deliver({ type: 'reconnect', after: 2375, reason: 'shutdown' });
  drained.drop(4001, 'drain');
  herald.publish(CH, 2); // on another server, say: the cursor is the client's
  await clock.advance(0);
  assert.equal(drained.closedByClient, 1000, 'the client closes a drained connection itself');
  assert.deepEqual(events.state.at(-1), {
    state: 'reconnecting', transport: 'websocket', reason: 'server asked to reconnect (shutdown)', attempt: 0, delay: 2375,
  });
  await clock.advance(2374);
  assert.equal(herald.sockets.length, 1);
  await clock.advance(1);
  assert.equal(herald.sockets.length, 2);
  assert.deepEqual(herald.socket.sent[0].since, { epoch: 'e1', offset: 1 });
  assert.deepEqual(items.offsets(), [1, 2]);
});

test('close 4008 (slow consumer): reconnect at once and resume, not counted as a failure', async () => {
  const { clock, herald, client, events } = setup();
  const items = record(client, CH);
  await clock.advance(0);
  herald.publish(CH, 1);
  herald.socket.drop(4008, 'slow consumer');
  herald.publish(CH, 2);
  await clock.advance(0);
  assert.equal(events.state.at(-1).state, 'open');
  assert.equal(herald.sockets.length, 2);
  assert.deepEqual(herald.socket.sent[0].since, { epoch: 'e1', offset: 1 });
  assert.deepEqual(items.offsets(), [1, 2]);
  const wait = events.state.find((s) => s.state === 'reconnecting');
  assert.equal(wait.delay, 0);
  assert.equal(wait.attempt, 0);
  assert.equal(client.state, 'open');
});

test('heartbeat: ping is answered with pong; silence for 2 x heartbeat + slack means dead', async () => {
  const { clock, herald, client, events } = setup({ server: { heartbeat: 1000 } });
  herald.pings = false; // the test sends the one ping by hand, then the line goes quiet
  record(client, CH);
  await clock.advance(0);
  const first = herald.socket;
  await clock.advance(2000);
  first.deliver({ type: 'ping' });
  await clock.advance(0);
  assert.deepEqual(first.sent.at(-1), { type: 'pong' });
  assert.equal(herald.pongs, 1);
  // Anything received restarts the watchdog: 2 x 1000 + 5000 ms from the ping.
  await clock.advance(6999);
  assert.equal(first.closedByClient, null);
  await clock.advance(1);
  assert.equal(first.closedByClient, 1000);
  assert.match(events.state.at(-1).reason, /no frame for 7000 ms \(heartbeat lost\)/);
  await clock.advance(1000);
  assert.equal(herald.sockets.length, 2);
  assert.equal(client.state, 'open');
});

test('close() stops everything: no reconnect, pending publishes reject, state closed', async () => {
  const { clock, herald, client, states } = setup();
  await clock.advance(0);
  herald.socket.deliver = () => {}; // the server never answers the publish
  const pending = client.publish(CH, 'x');
  await clock.advance(0);
  client.close();
  await assert.rejects(pending, { code: 'closed' });
  await assert.rejects(client.publish(CH, 'y'), { code: 'closed' });
  await clock.advance(100000);
  assert.equal(herald.sockets.length, 1);
  assert.equal(herald.socket.closedByClient, 1000);
  assert.deepEqual(states(), ['connecting', 'open', 'closed']);
});
