// Presence (herald.v2, docs/protocol.md "Presence"): presence(channel) resolves with the members,
// join/leave come as events, a join that crosses the answer is told after it, each
// (re)subscribe reads the members again, and without a herald.v2 WebSocket it is 'unsupported'.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup } from './fake-herald.mjs';

const CH = 'project.7';
const member = (user) => ({ user, info: { name: user } });

function listen(client) {
  const heard = [];
  for (const name of ['presence', 'join', 'leave']) client.on(name, (d) => heard.push({ name, ...d }));
  return heard;
}

test('presence(): asked after subscribed, resolves with the members; join and leave are events', async () => {
  const { clock, herald, client } = setup();
  const heard = listen(client);
  client.subscribe(CH, () => {});
  const members = client.presence(CH);
  await clock.advance(0);
  assert.equal(herald.presenceAsked.length, 1, 'asked once the subscription was answered');
  const { socket, frame } = herald.presenceAsked[0];
  assert.deepEqual({ type: frame.type, channel: frame.channel }, { type: 'presence', channel: CH });
  // bob joins while the members are being read: told after the answer, not before.
  socket.deliver({ type: 'join', channel: CH, user: 'bob', info: { name: 'bob' } });
  await clock.advance(0);
  assert.deepEqual(heard, []);
  socket.deliver({ type: 'presence', channel: CH, members: [member('alice')], id: frame.id });
  assert.deepEqual(await members, [member('alice')]);
  await clock.advance(0);
  assert.deepEqual(heard.map((e) => `${e.name} ${e.user ?? e.members.map((m) => m.user)}`), ['presence alice', 'join bob']);
  socket.deliver({ type: 'leave', channel: CH, user: 'bob' });
  await clock.advance(0);
  assert.deepEqual(heard.at(-1), { name: 'leave', channel: CH, user: 'bob' });
});

test('a reconnect reads the members again (event presence); a refusal rejects with its code', async () => {
  const { clock, herald, client } = setup({ minDelay: 10, maxDelay: 10 });
  const heard = listen(client);
  client.subscribe(CH, () => {});
  client.presence(CH);
  await clock.advance(0);
  const first = herald.presenceAsked[0];
  first.socket.deliver({ type: 'presence', channel: CH, members: [member('alice')], id: first.frame.id });
  await clock.advance(0);
  first.socket.drop(1006);
  await clock.advance(1000);
  assert.equal(client.state, 'open');
  assert.equal(herald.presenceAsked.length, 2, 'asked again after the resubscribe');
  const again = herald.presenceAsked[1];
  again.socket.deliver({ type: 'presence', channel: CH, members: [member('alice'), member('bob')], id: again.frame.id });
  await clock.advance(0);
  assert.deepEqual(heard.filter((e) => e.name === 'presence').at(-1).members.map((m) => m.user), ['alice', 'bob']);

  const refused = client.presence('project.8');
  await clock.advance(0);
  const ask = herald.presenceAsked.at(-1);
  ask.socket.deliver({ type: 'error', code: 'forbidden', message: 'forbidden', channel: 'project.8', id: ask.frame.id });
  await assert.rejects(refused, { code: 'forbidden' });
});

test("long-poll, or a herald.v1 server: presence() rejects with 'unsupported' and asks nothing", async () => {
  for (const opts of [{ server: { transports: ['longpoll'] } }, {}]) {
    const { clock, herald, client } = setup(opts);
    if (!opts.server) herald.versions = ['herald.v1'];
    client.subscribe(CH, () => {});
    await clock.advance(0);
    await assert.rejects(client.presence(CH), { code: 'unsupported' });
    assert.equal(herald.presenceAsked.length, 0);
    client.close();
  }
});

test('shared tabs: a follower asks presence through the leader; join and leave reach every tab that follows the channel', async () => {
  const { browser } = await import('./fake-tabs.mjs');
  const { clock, herald, tab } = browser();
  const [leader, follower, other] = [tab(), tab(), tab()];
  const heard = [listen(leader.client), listen(follower.client), listen(other.client)];
  leader.client.subscribe(CH, () => {});
  follower.client.subscribe(CH, () => {});
  other.client.subscribe('project.9', () => {});
  const members = follower.client.presence(CH);
  await clock.advance(0);
  assert.equal(herald.sockets.length, 1, 'one connection for the tabs');
  assert.equal(herald.presenceAsked.length, 1, 'asked over the one connection');
  const { socket, frame } = herald.presenceAsked[0];
  socket.deliver({ type: 'presence', channel: CH, members: [member('alice')], id: frame.id });
  assert.deepEqual(await members, [member('alice')]);
  socket.deliver({ type: 'join', channel: CH, user: 'bob', info: { name: 'bob' } });
  await clock.advance(0);
  assert.deepEqual(heard[1].map((e) => e.name), ['presence', 'join']);
  assert.deepEqual(heard[0].map((e) => e.name), ['join'], 'the leader tab follows the channel: it hears the join');
  assert.deepEqual(heard[2], [], 'a tab that follows another channel hears nothing of it');
});
