// Transport choice: /herald/info first, WebSocket up only after welcome, fallback to long-poll
// with the reason exposed, background probes, and the switch back with no loss and no duplicate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, record } from './fake-herald.mjs';

const CH = 'project.42.items';

test('info says websocket is off: straight to long-poll, no WebSocket constructed at all', async () => {
  const { clock, herald, client, events } = setup({ server: { transports: ['longpoll'] } });
  const items = record(client, CH);
  await clock.advance(0);
  assert.equal(herald.sockets.length, 0);
  assert.equal(client.transport, 'longpoll');
  assert.deepEqual(events.transport, [{
    transport: 'longpoll', previous: null, reason: 'websocket is switched off on the server', explanation: 'the server offers no WebSocket',
  }]);
  assert.deepEqual(events.state.at(-1), {
    state: 'open', transport: 'longpoll', reason: 'websocket is switched off on the server', explanation: 'the server offers no WebSocket', attempt: 0,
  });
  herald.publish(CH, 'a');
  await clock.advance(0);
  assert.deepEqual(items.offsets(), [1]);
  await clock.advance(5 * 60000);
  assert.equal(herald.sockets.length, 0, 'no probes either: the server said websocket is off');
});

test('transports: [\'longpoll\'] in the options: no WebSocket, and the reason says so', async () => {
  const { clock, herald, client, events } = setup({ transports: ['longpoll'], WebSocket: undefined });
  await clock.advance(0);
  assert.equal(herald.sockets.length, 0);
  assert.equal(client.state, 'open');
  assert.equal(events.transport[0].reason, 'websocket is not in options.transports');
  assert.equal(events.transport[0].explanation, 'this page does not use WebSocket');
});

test('a WebSocket is up only after welcome; on WebSocket the transport is reported without excuse', async () => {
  const { clock, herald, client, events } = setup();
  herald.wsMode = 'silent';
  await clock.advance(0);
  assert.equal(herald.socket.readyState, 1, 'the socket is open');
  assert.equal(client.state, 'connecting', '... but without welcome it is not up');
  herald.socket.onmessage({ data: '<html>proxy says hello</html>' });
  herald.socket.deliver({ type: 'ping' });
  assert.equal(client.state, 'connecting', 'nor with anything else first');
  herald.socket.deliver(herald.welcome(herald.socket.protocol));
  assert.equal(client.state, 'open');
  assert.deepEqual(events.transport, [{ transport: 'websocket', previous: null, reason: undefined }]);
  assert.equal(herald.socket.url, 'ws://cms.test/herald/ws');
  assert.equal(herald.socket.protocol, 'herald.v2', 'the newest version both speak');
});

test('WebSocket closes before welcome: long-poll at once, no backoff, and the reason is exposed', async () => {
  const { clock, herald, client, events, states } = setup();
  herald.wsMode = 'refuse';
  const items = record(client, CH);
  await clock.advance(0);
  const reason = 'websocket closed before welcome (code 1006; proxy dropped Upgrade?)';
  const explanation = 'a proxy on the way does not pass WebSockets through';
  assert.deepEqual(events.transport, [
    { transport: 'websocket', previous: null, reason: undefined },
    { transport: 'longpoll', previous: 'websocket', reason, explanation },
  ]);
  assert.deepEqual(states(), ['connecting', 'connecting', 'open']);
  assert.deepEqual(events.state.at(-1), { state: 'open', transport: 'longpoll', reason, explanation, attempt: 0 });
  assert.equal(clock.now, 0, 'no wait between the failed upgrade and the first poll');
  assert.deepEqual(herald.polls[0].channels, { [CH]: null });
  herald.publish(CH, 'a');
  await clock.advance(0);
  assert.deepEqual(items.offsets(), [1]);
  assert.equal(client.transport, 'longpoll');
});

test('WebSocket opens but stays silent (a proxy answering and holding): long-poll after connectTimeout', async () => {
  const { clock, herald, client, events } = setup({ connectTimeout: 4000 });
  herald.wsMode = 'silent';
  await clock.advance(3999);
  assert.equal(client.state, 'connecting');
  assert.equal(herald.polls.length, 0);
  await clock.advance(1);
  assert.equal(herald.socket.closedByClient, 1000, 'the silent socket is closed');
  assert.equal(client.transport, 'longpoll');
  assert.equal(client.state, 'open');
  assert.match(events.transport.at(-1).reason, /no welcome within 4000 ms/);
  assert.equal(events.state.at(-1).explanation, 'a proxy on the way holds WebSocket connections without passing them on');
});

test('WebSocket opens, then is cut before welcome: long-poll, and the page is told in plain words', async () => {
  const { clock, herald, client, events } = setup();
  herald.wsMode = 'silent';
  await clock.advance(0);
  herald.socket.drop(1006);
  await clock.advance(0);
  assert.equal(client.transport, 'longpoll');
  assert.equal(client.state, 'open');
  assert.equal(events.state.at(-1).explanation, 'something on the way (a proxy, a firewall) cuts WebSocket connections');
});

test('long-poll keeps the WebSocket fallback across reconnects, and probes every probeInterval', async () => {
  const { clock, herald, client } = setup({ probeInterval: 30000 });
  herald.wsMode = 'refuse';
  await clock.advance(0);
  assert.equal(herald.sockets.length, 1);
  await clock.advance(29999);
  assert.equal(herald.sockets.length, 1);
  await clock.advance(1);
  assert.equal(herald.sockets.length, 2, 'a probe');
  assert.equal(client.transport, 'longpoll', 'a failed probe changes nothing');
  await clock.advance(30000);
  assert.equal(herald.sockets.length, 3, 'probes go on');
  // A long-poll failure reconnects over long-poll again: no failed upgrade per reconnect.
  herald.pollResponder = () => new TypeError('fetch failed');
  await clock.advance(1);
  herald.pollResponder = null;
  await clock.advance(1000);
  assert.equal(client.state, 'open');
  assert.equal(client.transport, 'longpoll');
  assert.equal(herald.sockets.length, 3);
});

// The switch back. Messages are published before, during and after it, in two orders: the
// last poll's answer processed before the probe's welcome, and the welcome arriving while that
// answer is still on its way. Either way each message is seen once, in order.
for (const order of ['poll answer first', 'welcome first']) {
  test(`a probe that gets its welcome switches back to WebSocket with no loss and no duplicate (${order})`, async () => {
    const { clock, herald, client, events } = setup({ probeInterval: 30000 });
    herald.wsMode = 'refuse';
    const items = record(client, CH);
    const notes = record(client, 'user.alice.notifications');
    await clock.advance(0);
    herald.publish(CH, 1);
    herald.publish(CH, 2);
    await clock.advance(1000);
    assert.deepEqual(items.offsets(), [1, 2]);

    herald.wsMode = 'silent'; // the network got fixed; we hand over the welcome by hand
    await clock.advance(29000);
    const probe = herald.socket;
    assert.equal(herald.sockets.length, 2);
    assert.equal(herald.heldPolls, 1, 'long-poll goes on while the probe connects');
    herald.publish(CH, 3); // answers the held poll
    if (order === 'poll answer first') await clock.advance(0);
    probe.deliver(herald.welcome());
    herald.publish(CH, 4);
    await clock.advance(0);
    herald.publish(CH, 5);
    herald.publish('user.alice.notifications', 'n1');
    await clock.advance(0);

    assert.equal(client.transport, 'websocket');
    assert.deepEqual(events.transport.at(-1), { transport: 'websocket', previous: 'longpoll', reason: 'a websocket probe got its welcome' });
    assert.deepEqual(events.state.at(-1), { state: 'open', transport: 'websocket', reason: undefined, attempt: 0 });
    assert.deepEqual(items.offsets(), [1, 2, 3, 4, 5]);
    assert.deepEqual(notes.offsets(), [1]);
    const cursorAtWelcome = order === 'poll answer first' ? 3 : 2;
    assert.deepEqual(probe.sent.find((f) => f.channel === CH).since, { epoch: 'e1', offset: cursorAtWelcome });
    const polls = herald.polls.length;
    assert.equal(herald.heldPolls, 0, 'long-poll stopped once the WebSocket was up');
    await clock.advance(120000);
    assert.equal(herald.polls.length, polls, 'and stays stopped');
    assert.equal(herald.sockets.length, 2, 'no more probes');
  });
}

test('the client derives every endpoint from url, keeping a path prefix', async () => {
  const { clock, herald } = setup({ url: 'https://cms.test/app/' });
  await clock.advance(0);
  assert.equal(herald.socket.url, 'wss://cms.test/app/herald/ws');
});

test('no transport in common: retried with a reason that names both sides', async () => {
  const { clock, client, events } = setup({ transports: ['websocket'], server: { transports: ['longpoll'] } });
  await clock.advance(0);
  assert.equal(client.state, 'reconnecting');
  assert.equal(events.state.at(-1).reason, 'no transport in common (server: longpoll; client: websocket)');
});
