// Tabs share one connection: the leader tab (Web Locks) holds it, the others reach it over a
// BroadcastChannel; subscriptions counted across tabs, publishes relayed, a takeover that
// resumes every channel from the tabs' cursors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { browser } from './fake-tabs.mjs';
import { setup, record, settle } from './fake-herald.mjs';

const CH = 'project.42.items';
const open = (herald) => herald.sockets.filter((s) => s.readyState === 1);

test('three tabs: one WebSocket, one server subscription per channel, every message once in every tab', async () => {
  const { clock, herald, tab } = browser();
  const tabs = [tab(), tab(), tab()];
  const items = tabs.map((t) => record(t.client, CH));
  const notes = record(tabs[2].client, 'user.alice.notifications');
  await clock.advance(0);
  assert.equal(herald.sockets.length, 1, 'one connection for the three tabs');
  for (const t of tabs) assert.equal(t.client.state, 'open');
  for (const t of tabs) assert.equal(t.client.transport, 'websocket');
  for (const t of tabs) assert.equal(t.client.protocol, 'herald.v2');
  const subscribes = herald.socket.sent.filter((f) => f.type === 'subscribe');
  assert.deepEqual(subscribes.map((f) => f.channel).sort(), [CH, 'user.alice.notifications']);

  herald.publish(CH, 'a');
  herald.publish('user.alice.notifications', 'n');
  herald.publish(CH, 'b');
  await clock.advance(0);
  for (const i of items) assert.deepEqual(i.got.map((m) => m.data), ['a', 'b']);
  assert.deepEqual(notes.got.map((m) => m.data), ['n']);
  assert.deepEqual(items[1].sub.cursor, { epoch: 'e1', offset: 2 });

  // Counted across tabs: the server subscription goes with the last tab.
  items[0].sub.unsubscribe();
  items[1].sub.unsubscribe();
  await clock.advance(0);
  assert.ok(!herald.socket.sent.some((f) => f.type === 'unsubscribe'));
  herald.publish(CH, 'c');
  await clock.advance(0);
  assert.deepEqual(items[2].got.map((m) => m.data), ['a', 'b', 'c']);
  assert.deepEqual(items[0].got.map((m) => m.data), ['a', 'b']);
  items[2].sub.unsubscribe();
  await clock.advance(0);
  assert.deepEqual(herald.socket.sent.filter((f) => f.type === 'unsubscribe'), [{ type: 'unsubscribe', channel: CH }]);
});

test('a follower publishes through the leader: its answer, and a refusal as a HeraldError', async () => {
  const { clock, herald, tab } = browser();
  const [, follower] = [tab(), tab()];
  await clock.advance(0);
  assert.deepEqual(await follower.client.publish(CH, { text: 'hi' }), { epoch: 'e1', offset: 1 });
  herald.forbidden.add('locked');
  await assert.rejects(follower.client.publish('locked', 1), (e) => e.name === 'HeraldError' && e.code === 'forbidden' && e.channel === 'locked');
  assert.equal(herald.sockets.length, 1);
});

test('a new tab joins a followed channel at the head; a tab behind gets what it missed, the others nothing twice', async () => {
  const { clock, herald, tab } = browser();
  const first = tab();
  const a = record(first.client, CH);
  await clock.advance(0);
  herald.publish(CH, 1);
  herald.publish(CH, 2);
  await clock.advance(0);
  const late = record(tab().client, CH);                          // from the head: nothing owed
  const behind = record(tab().client, CH, { since: { epoch: 'e1', offset: 1 } }); // rendered at 1
  await clock.advance(0);
  assert.deepEqual(late.sub.cursor, { epoch: 'e1', offset: 2 });
  assert.deepEqual(late.got, []);
  assert.deepEqual(behind.offsets(), [2], 'replayed from its cursor');
  herald.publish(CH, 3);
  await clock.advance(0);
  assert.deepEqual(a.offsets(), [1, 2, 3]);
  assert.deepEqual(late.offsets(), [3]);
  assert.deepEqual(behind.offsets(), [2, 3]);
  assert.equal(herald.sockets.length, 1);
});

for (const how of ['close()', 'pagehide', 'freeze']) {
  test(`the leader goes (${how}): another tab takes over and resumes every channel, nothing lost or twice, no resync`, async () => {
    const { clock, herald, tab } = browser();
    const tabs = [tab(), tab(), tab()];
    const items = tabs.map((t) => record(t.client, CH));
    await clock.advance(0);
    herald.publish(CH, 'before');
    await clock.advance(0);
    const [leader, ...rest] = tabs;
    if (how === 'close()') leader.client.close();
    else if (how === 'pagehide') leader.window.dispatchEvent(new Event('pagehide'));
    else leader.window.document.dispatchEvent(new Event('freeze'));
    herald.publish(CH, 'during');  // the old connection is gone, the new one not there yet
    await clock.advance(0);
    herald.publish(CH, 'after');
    await clock.advance(0);
    assert.equal(open(herald).length, 1, 'one connection again');
    assert.equal(herald.sockets.length, 2);
    assert.deepEqual(herald.socket.sent.filter((f) => f.type === 'subscribe'), [{ type: 'subscribe', channel: CH, since: { epoch: 'e1', offset: 1 } }]);
    for (const [i, t] of rest.entries()) {
      assert.deepEqual(items[i + 1].got.map((m) => m.data), ['before', 'during', 'after']);
      assert.deepEqual(t.events.resync, []);
      assert.equal(t.client.state, 'open');
    }
    assert.deepEqual(items[0].got.map((m) => m.data), ['before']);
    if (how === 'close()') return;
    // Shown again (back/forward cache, or resumed): it follows the new leader, and catches up.
    leader.window.dispatchEvent(new Event('pageshow'));
    leader.window.document.dispatchEvent(new Event('resume'));
    await clock.advance(0);
    assert.deepEqual(items[0].got.map((m) => m.data), ['before', 'during', 'after']);
    herald.publish(CH, 'later');
    await clock.advance(0);
    for (const i of items) assert.deepEqual(i.got.map((m) => m.data).slice(-2), ['after', 'later']);
    assert.equal(open(herald).length, 1);
    assert.deepEqual(leader.events.resync, []);
  });
}

test('a follower behind the new leader: the connection resumes from the earliest cursor', async () => {
  const { clock, herald, tab } = browser();
  const leader = tab();
  const ahead = tab();
  const behind = tab();
  record(leader.client, CH);
  const a = record(ahead.client, CH);
  await clock.advance(0);
  herald.publish(CH, 1);
  herald.publish(CH, 2);
  await clock.advance(0);
  // `behind` subscribes only now, rendered at offset 1, and the leader goes before any
  // answer: the new leader (`ahead`, at 2) must resume from 1.
  const b = record(behind.client, CH, { since: { epoch: 'e1', offset: 1 } });
  leader.client.close();
  herald.publish(CH, 3);
  await clock.advance(0);
  assert.deepEqual(a.offsets(), [1, 2, 3]);
  assert.deepEqual(b.offsets(), [2, 3]);
  assert.deepEqual([...ahead.events.resync, ...behind.events.resync], []);
});

test('the leader goes with a follower\'s publish in flight: the publish rejects (disconnected), never silence', async () => {
  const { clock, tab } = browser();
  const [leader, follower] = [tab(), tab()];
  await clock.advance(0);
  const outcome = follower.client.publish(CH, 'x').then(() => 'published', (e) => e.code); // on its way to the leader
  leader.client.close();                       // which goes before it answers
  await clock.advance(0);
  assert.equal(await outcome, 'disconnected');
  // The next publish goes through the new leader (the follower itself).
  assert.deepEqual(await follower.client.publish(CH, 'y'), { epoch: 'e1', offset: 1 });
});

test('a follower\'s subscription not yet answered when the leader goes: resync, never a silent gap', async () => {
  const { clock, herald, tab } = browser();
  const [leader, follower] = [tab(), tab()];
  await clock.advance(0);
  const items = record(follower.client, CH);  // on its way to the leader
  leader.client.close();                      // which goes before it answers
  herald.publish(CH, 'published meanwhile');
  await clock.advance(0);
  assert.deepEqual(follower.events.resync, [{ channel: CH, epoch: 'e1', offset: 1 }]);
  herald.publish(CH, 'live');
  await clock.advance(0);
  assert.deepEqual(items.got.map((m) => m.data), ['live']);
});

test('a publish made while the leader hands over waits for the next leader, and is made once', async () => {
  const { clock, herald, locks, tab } = browser();
  const [leader, follower] = [tab(), tab()];
  await clock.advance(0);
  locks.pause();
  leader.client.close();            // it says so before it lets the lock go
  await settle();
  const p = follower.client.publish(CH, 'during the handover');
  await settle();
  assert.equal(herald.sockets.filter((s) => s.readyState === 1).length, 0);
  locks.resume();                   // the follower leads now
  await clock.advance(0);
  assert.deepEqual(await p, { epoch: 'e1', offset: 1 });
  assert.equal(herald.channel(CH).head, 1, 'made once');
});

test('a refused subscription is an error in the tabs that follow the channel only', async () => {
  const { clock, herald, tab } = browser();
  herald.forbidden.add('user.bob.notifications');
  const [a, b] = [tab(), tab()];
  record(a.client, 'user.bob.notifications');
  const other = record(b.client, CH);
  await clock.advance(0);
  assert.deepEqual(a.events.error.map((e) => [e.code, e.channel]), [['forbidden', 'user.bob.notifications']]);
  assert.deepEqual(b.events.error, []);
  herald.publish(CH, 'still live');
  await clock.advance(0);
  assert.deepEqual(other.offsets(), [1]);
});

test('long-poll: one poll held for every tab, carrying every tab\'s channels; state and explanation relayed', async () => {
  const { clock, herald, tab } = browser({ server: { transports: ['longpoll'] } });
  const tabs = [tab(), tab(), tab()];
  const items = tabs.map((t, i) => record(t.client, i === 2 ? 'user.bob.notifications' : CH));
  await clock.advance(0);
  assert.equal(herald.heldPolls, 1);
  assert.deepEqual(Object.keys(herald.polls.at(-1).channels).sort(), [CH, 'user.bob.notifications']);
  for (const t of tabs) {
    const open = t.events.state.findLast((s) => s.state === 'open');
    assert.equal(open.transport, 'longpoll');
    assert.equal(open.explanation, 'the server offers no WebSocket');
    assert.equal(t.events.transport.at(-1).explanation, 'the server offers no WebSocket');
  }
  herald.publish(CH, 'a');
  herald.publish('user.bob.notifications', 'n');
  await clock.advance(0);
  assert.equal(herald.heldPolls, 1);
  assert.deepEqual(items.map((i) => i.got.map((m) => m.data)), [['a'], ['a'], ['n']]);
  assert.equal(herald.infoRequests, 1);
  tabs[0].client.close();
  herald.publish(CH, 'b');
  await clock.advance(0);
  assert.equal(herald.heldPolls, 1);
  assert.deepEqual(items[1].got.map((m) => m.data), ['a', 'b']);
  assert.deepEqual(tabs[1].events.resync, []);
});

test('a resync in a shared connection reaches the tabs whose cursor was lost, not a tab at the head', async () => {
  const { clock, herald, tab } = browser();
  const t1 = tab();
  const a = record(t1.client, CH);
  await clock.advance(0);
  herald.publish(CH, 1);
  await clock.advance(0);
  herald.forget(CH);
  herald.publish(CH, 2);
  await clock.advance(0);
  const t2 = tab();
  const old = record(t2.client, CH, { since: { epoch: 'e1', offset: 0 } }); // not in history any more
  await clock.advance(0);
  assert.deepEqual(t2.events.resync, [{ channel: CH, epoch: 'e1', offset: 2 }]);
  assert.deepEqual(t1.events.resync, [], 'at the head: nothing missed');
  assert.deepEqual(a.offsets(), [1, 2]);
  assert.deepEqual(old.offsets(), []);
});

test('shareConnection: false, or no Web Locks: each tab connects on its own, as before', async () => {
  for (const more of [{ shareConnection: false }, { locks: null }]) {
    const { clock, herald, tab } = browser();
    const tabs = [tab(more), tab(more)];
    for (const t of tabs) record(t.client, CH);
    await clock.advance(0);
    assert.equal(herald.sockets.length, 2, JSON.stringify(more));
  }
});

test('tabs with another shareKey (another user) keep to their own connection', async () => {
  const { clock, herald, tab } = browser();
  const alice = [tab({ shareKey: 'alice' }), tab({ shareKey: 'alice' })];
  const bob = tab({ shareKey: 'bob' });
  const got = [...alice, bob].map((t) => record(t.client, CH));
  await clock.advance(0);
  assert.equal(herald.sockets.length, 2);
  herald.publish(CH, 'x');
  await clock.advance(0);
  for (const g of got) assert.deepEqual(g.offsets(), [1]);
});

test('unshared clients are unchanged by the relay (the setup of the other tests)', async () => {
  const { clock, herald, client } = setup();
  record(client, CH);
  await clock.advance(0);
  assert.equal(herald.sockets.length, 1);
});
