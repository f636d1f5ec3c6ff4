// The long-poll loop (docs/protocol.md, "Long-poll transport") and its failures, and publish
// over both transports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, record, response, hang } from './fake-herald.mjs';

const CH = 'project.42.items';
const NOTES = 'user.alice.notifications';
const longpoll = (options = {}) => setup({ ...options, server: { transports: ['longpoll'], ...options.server } });

test('each poll is a text/plain POST with every channel and its cursor; frames are processed and it polls again at once', async () => {
  const { clock, herald, client } = longpoll({ pollTimeout: 20000 });
  herald.publish(CH, 0);
  const items = record(client, CH);
  await clock.advance(0);
  assert.deepEqual(herald.polls[0], { channels: { [CH]: null }, timeout: 0, protocols: ['herald.v2', 'herald.v1'], method: 'POST', contentType: 'text/plain' });
  assert.deepEqual(herald.polls[1].channels, { [CH]: { epoch: 'e1', offset: 1 } }, 'subscribed set the cursor at the head');
  assert.equal(herald.polls[1].timeout, 20000, 'only the first poll asks for an answer at once');
  assert.equal(herald.heldPolls, 1);

  herald.publish(CH, 'a');
  await clock.advance(0);
  assert.deepEqual(items.got.map((m) => m.data), ['a']);
  assert.deepEqual(herald.polls.at(-1).channels, { [CH]: { epoch: 'e1', offset: 2 } });
  await clock.advance(20000); // the held poll times out empty: the loop simply goes on
  assert.equal(herald.polls.length, 4);
  assert.equal(client.state, 'open');
});

test('a new subscription replaces the held poll; subscriptions made together start one poll', async () => {
  const { clock, herald, client, events } = longpoll();
  record(client, CH);
  await clock.advance(0);
  const before = herald.polls.length;
  assert.equal(herald.heldPolls, 1);
  record(client, NOTES);
  record(client, 'project.7.comments');
  await clock.advance(0);
  assert.equal(herald.polls.length, before + 2, 'one poll for both (then the loop polls again)');
  assert.deepEqual(Object.keys(herald.polls[before].channels), [CH, NOTES, 'project.7.comments']);
  assert.equal(herald.polls[before].channels[NOTES], null);
  assert.equal(herald.heldPolls, 1, 'the replaced poll was aborted');
  assert.deepEqual(events.resync, [], 'replacing a poll is not losing a connection');
});

test('a refused channel is reported and left out of the next polls (no busy loop)', async () => {
  const { clock, herald, client, events } = longpoll();
  herald.forbidden.add('user.bob.notifications');
  record(client, 'user.bob.notifications');
  record(client, NOTES);
  await clock.advance(0);
  assert.deepEqual(events.error.map((e) => [e.code, e.channel]), [['forbidden', 'user.bob.notifications']]);
  assert.deepEqual(Object.keys(herald.polls.at(-1).channels), [NOTES]);
  assert.equal(herald.polls.length, 2);
});

test('429: waits Retry-After seconds, not the backoff', async () => {
  const { clock, herald, events } = longpoll();
  await clock.advance(0);
  herald.pollResponder = () => response(429, { error: { code: 'too_many_polls' } }, { 'Retry-After': '7' });
  await clock.advance(25000); // the held poll ends; the next one is refused
  const polls = herald.polls.length;
  herald.pollResponder = null;
  assert.equal(events.state.at(-1).state, 'reconnecting');
  assert.equal(events.state.at(-1).delay, 7000);
  assert.match(events.state.at(-1).reason, /HTTP 429/);
  await clock.advance(6999);
  assert.equal(herald.polls.length, polls);
  await clock.advance(1);
  assert.equal(herald.polls.length, polls + 2, 'the first poll after it answers at once, then one is held');
  assert.equal(events.state.at(-1).state, 'open');
});

test('503 with a reconnect frame (drain): waits `after`, not counted as a failure', async () => {
  const { clock, herald, client, events } = longpoll();
  const items = record(client, CH);
  await clock.advance(0);
  herald.publish(CH, 1);
  await clock.advance(0);
  herald.pollResponder = () => response(503, { frames: [{ type: 'reconnect', after: 1500, reason: 'shutdown' }] });
  await clock.advance(25000);
  herald.pollResponder = null;
  assert.deepEqual(events.state.at(-1), {
    state: 'reconnecting', transport: 'longpoll', reason: 'server asked to reconnect (shutdown)', attempt: 0, delay: 1500,
  });
  herald.publish(CH, 2);
  await clock.advance(1500);
  assert.equal(client.state, 'open');
  assert.deepEqual(herald.polls.at(-2).channels, { [CH]: { epoch: 'e1', offset: 1 } });
  assert.deepEqual(items.offsets(), [1, 2]);
});

test('a reconnect frame inside a 200 answer is honoured the same way', async () => {
  const { clock, herald, events } = longpoll();
  await clock.advance(0);
  herald.pollResponder = () => response(200, { frames: [{ type: 'reconnect', after: 800, reason: 'rebalance' }] });
  await clock.advance(25000);
  herald.pollResponder = null;
  assert.equal(events.state.at(-1).delay, 800);
  assert.equal(events.state.at(-1).reason, 'server asked to reconnect (rebalance)');
});

test('network failure, proxy error page and a lost poll: backoff with the cause as reason', async () => {
  const { clock, herald, client, events } = longpoll({ pollTimeout: 20000, random: () => 0.999999 });
  await clock.advance(0);
  herald.pollResponder = () => new TypeError('Failed to fetch');
  await clock.advance(20000);
  assert.deepEqual([events.state.at(-1).state, events.state.at(-1).reason, events.state.at(-1).delay],
    ['reconnecting', 'poll failed (Failed to fetch)', 499]);

  herald.pollResponder = () => response(502, '<html>Bad Gateway</html>');
  await clock.advance(499);
  assert.deepEqual([events.state.at(-1).reason, events.state.at(-1).attempt], ['poll answered HTTP 502', 2]);

  // The first poll asks for an answer at once: 0 + 10 s of slack, then it is given up.
  herald.pollResponder = (body, signal) => hang(signal);
  await clock.advance(999);
  await clock.advance(9999);
  assert.equal(events.state.at(-1).attempt, 2);
  await clock.advance(1);
  assert.deepEqual([events.state.at(-1).reason, events.state.at(-1).state], ['poll got no answer within 10000 ms', 'warning']);
  herald.pollResponder = null;
  await clock.advance(2000);
  assert.equal(client.state, 'open');
});

test('publish over long-poll: POST /herald/publish, resolves with the position, rejects with the error frame', async () => {
  const { clock, herald, client } = longpoll();
  const items = record(client, CH);
  await clock.advance(0);
  assert.deepEqual(await client.publish(CH, { text: 'Looks good' }), { epoch: 'e1', offset: 1 });
  assert.deepEqual(herald.publishes[0], { channel: CH, data: { text: 'Looks good' }, id: 1, method: 'POST', contentType: 'text/plain' });
  await clock.advance(0);
  assert.deepEqual(items.got.map((m) => m.data), [{ text: 'Looks good' }], 'it comes back like any message');

  herald.forbidden.add('user.bob.notifications');
  await assert.rejects(client.publish('user.bob.notifications', 1), { name: 'HeraldError', code: 'forbidden', channel: 'user.bob.notifications' });
  assert.throws(() => client.publish(CH, undefined), TypeError);
});

test('publish over WebSocket: a publish frame with an id, answered by published or error', async () => {
  const { clock, herald, client } = setup();
  await clock.advance(0);
  const published = await client.publish(CH, [1, 2]);
  assert.deepEqual(published, { epoch: 'e1', offset: 1 });
  assert.deepEqual(herald.socket.sent.at(-1), { type: 'publish', channel: CH, data: [1, 2], id: 1 });
  herald.forbidden.add(NOTES);
  await assert.rejects(client.publish(NOTES, 'x'), { code: 'forbidden', channel: NOTES });
  assert.equal(herald.publishes.length, 0, 'nothing went over HTTP');
});

test('a publish still unanswered when its WebSocket drops rejects as disconnected (it may have been made)', async () => {
  const { clock, herald, client } = setup();
  await clock.advance(0);
  herald.socket.deliver = () => {}; // the answer never comes
  const pending = assert.rejects(client.publish(CH, 'x'), { code: 'disconnected' });
  await clock.advance(0);
  herald.socket.drop(1006);
  await pending;
});

test('publishes made before the connection is up wait for it', async () => {
  const { clock, herald, client } = setup();
  herald.infoDown = true;
  const first = client.publish(CH, 'queued 1');
  const second = client.publish(CH, 'queued 2');
  await clock.advance(100);
  assert.equal(herald.sockets.length, 0);
  herald.infoDown = false;
  await clock.advance(1000);
  assert.deepEqual(await first, { epoch: 'e1', offset: 1 });
  assert.deepEqual(await second, { epoch: 'e1', offset: 2 });
});
