// Protocol versions (docs/protocol.md, "Versions"): the client offers every version it speaks
// on each connection and each poll, and speaks what the server answered: herald.v2 with a new
// server, herald.v1 with an old one, whichever transport, whichever server a poll reaches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, record, response } from './fake-herald.mjs';

const CH = 'project.42.items';

test('WebSocket: the client offers herald.v2 and herald.v1; a new server answers herald.v2', async () => {
  const { clock, herald, client } = setup();
  assert.equal(client.protocol, null, 'not up yet: no version');
  await clock.advance(0);
  assert.equal(client.state, 'open');
  assert.equal(client.protocol, 'herald.v2');
  assert.equal(herald.socket.protocol, 'herald.v2');
});

test('WebSocket: an old server that speaks only herald.v1 serves the new client in herald.v1', async () => {
  const { clock, herald, client } = setup();
  herald.versions = ['herald.v1'];
  const items = record(client, CH);
  await clock.advance(0);
  assert.equal(client.state, 'open');
  assert.equal(client.protocol, 'herald.v1');
  herald.publish(CH, 'a');
  await clock.advance(0);
  assert.deepEqual(items.offsets(), [1], 'and messages flow as before');
});

test('long-poll: every poll offers the versions; the answer names the one it speaks', async () => {
  const { clock, herald, client } = setup({ server: { transports: ['longpoll'] } });
  record(client, CH);
  await clock.advance(0);
  assert.equal(client.state, 'open');
  assert.ok(herald.polls.length >= 1);
  for (const p of herald.polls) assert.deepEqual(p.protocols, ['herald.v2', 'herald.v1']);
  assert.equal(client.protocol, 'herald.v2');
});

test('long-poll: an answer that names no version (a server from before the negotiation) is herald.v1', async () => {
  const { clock, herald, client } = setup({ server: { transports: ['longpoll'] } });
  const items = record(client, CH);
  // An old server ignores `protocols` and answers {"frames":[…]} as it always did.
  herald.pollResponder = () => {
    herald.pollResponder = null;
    return response(200, { frames: herald.resume(CH, null) });
  };
  await clock.advance(0);
  assert.equal(client.state, 'open');
  assert.equal(client.protocol, 'herald.v1');
  herald.publish(CH, 'a');
  await clock.advance(0);
  assert.deepEqual(items.offsets(), [1]);
  assert.equal(client.protocol, 'herald.v2', 'the next poll reached a new server: it names herald.v2');
});
