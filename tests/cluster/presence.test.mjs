// Presence (herald.v2) over the network: herald test servers on one Redis, herald.js clients
// (in Node, with `ws`). Users on two servers see each other join and leave, once each however
// many tabs; the CMS's C++ view (basic_server::presence) agrees on every server; a server
// killed with SIGKILL drops out of every channel within presence_options::ttl +
// sweep_interval (10 s + 2 s by default; the bound stated is 15 s); a herald.v1 client is
// listed but hears no presence frame, and its presence request is an unknown frame.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, WebSocket } from '../protocol/harness.mjs';
import { connect } from '../../clients/js/herald.js';
import { startRedis, waitFor } from './support.mjs';

let redis;
before(async () => { redis = await startRedis(); });
after(async () => { await redis?.stop(); });

// A leave is told `linger` after the last session (1 s here; 5 s by default: the core tests).
const heraldArgs = () => ['--redis', `127.0.0.1:${redis.port}`, '--heartbeat-ms', '2000', '--presence-linger-ms', '1000'];
const BOUND_MS = 15000;

/** A herald.js tab of `user` on `server`, in presence channel `channel`, recording what its app hears. */
async function tab(server, user, channel) {
  const heard = [];
  const members = new Map();
  const h = connect({
    url: server.url, WebSocket, transports: ['websocket'], minDelay: 100, maxDelay: 500,
    accessToken: async () => (await (await fetch(`${server.url}/test/token?user=${user}&ttl_ms=600000`)).json()).token,
  });
  h.on('presence', ({ channel: c, members: m }) => {
    if (c !== channel) return;
    members.clear();
    for (const x of m) members.set(x.user, x.info);
  });
  h.on('join', ({ channel: c, user: u, info }) => { if (c === channel) { heard.push(`join ${u}`); members.set(u, info); } });
  h.on('leave', ({ channel: c, user: u }) => { if (c === channel) { heard.push(`leave ${u}`); members.delete(u); } });
  h.subscribe(channel, () => {});
  await waitFor(() => h.state === 'open', 10000, `${user} open`);
  const first = await h.presence(channel);
  return { h, heard, members, first, users: () => [...members.keys()].sort() };
}

async function cmsView(server, channel) {
  const res = await fetch(`${server.url}/test/presence?channel=${channel}`);
  assert.equal(res.status, 200);
  return (await res.json()).map((m) => m.user);
}

test('two users on two servers see each other join and leave, once per user however many tabs', async () => {
  const [a, b] = [await startServer(heraldArgs()), await startServer(heraldArgs())];
  const tabs = [];
  try {
    const alice = await tab(a, 'alice', 'room.1');
    tabs.push(alice);
    assert.equal(alice.h.protocol, 'herald.v2');
    const bob = await tab(b, 'bob', 'room.1');
    tabs.push(bob);
    assert.deepEqual(bob.first.map((m) => m.user), ['alice', 'bob']);
    assert.deepEqual(bob.first.find((m) => m.user === 'alice').info, { name: 'alice' });
    await waitFor(() => alice.heard.includes('join bob'), 5000, 'alice hears bob join');
    assert.deepEqual(alice.users(), ['alice', 'bob']);

    // Two more tabs of bob, one on each server: no new join.
    const bob2 = await tab(a, 'bob', 'room.1');
    const bob3 = await tab(b, 'bob', 'room.1');
    tabs.push(bob2, bob3);
    for (const s of [a, b]) assert.deepEqual(await cmsView(s, 'room.1'), ['alice', 'bob']);
    bob.h.close();
    bob2.h.close();
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(alice.heard, ['join bob']);
    bob3.h.close();
    await waitFor(() => alice.heard.includes('leave bob'), 5000, 'alice hears bob leave');
    assert.deepEqual(alice.heard, ['join bob', 'leave bob']);
    assert.deepEqual(alice.users(), ['alice']);
    for (const s of [a, b]) assert.deepEqual(await cmsView(s, 'room.1'), ['alice']);
  } finally {
    for (const t of tabs) t.h.close();
    await a.stop();
    await b.stop();
  }
});

test(`a server killed with SIGKILL drops out within ${BOUND_MS / 1000} s; its users' leave reaches the others`, async () => {
  const [a, b] = [await startServer(heraldArgs()), await startServer(heraldArgs())];
  let alice;
  try {
    alice = await tab(a, 'alice', 'room.2');
    const carol = await tab(b, 'carol', 'room.2');
    await waitFor(() => alice.heard.includes('join carol'), 5000, 'alice hears carol join');
    b.child.kill('SIGKILL');
    const killed = Date.now();
    await b.exited;
    carol.h.close();
    await waitFor(() => alice.heard.includes('leave carol'), BOUND_MS + 2000, 'alice hears carol leave');
    const took = Date.now() - killed;
    console.log(`# presence: a SIGKILLed server's user dropped out after ${took} ms (bound ${BOUND_MS} ms)`);
    assert.ok(took <= BOUND_MS, `dropped out after ${took} ms`);
    assert.deepEqual(await cmsView(a, 'room.2'), ['alice']);
  } finally {
    alice?.h.close();
    await a.stop();
    await b.stop();
  }
});

test('a herald.v1 client is listed but hears no presence frame, and its presence request is an unknown frame', async () => {
  const a = await startServer(heraldArgs());
  let alice;
  try {
    const v1 = client(`${a.ws}?user=dave`, { protocols: ['herald.v1'] });
    await v1.open();
    await v1.frame((f) => f.type === 'welcome');
    v1.send({ type: 'subscribe', channel: 'room.3', id: 1 });
    await v1.frame((f) => f.type === 'subscribed');
    alice = await tab(a, 'alice', 'room.3');
    assert.deepEqual(alice.first.map((m) => m.user), ['alice', 'dave']);
    v1.send({ type: 'presence', channel: 'room.3', id: 2 });
    const refused = await v1.frame((f) => f.id === 2);
    assert.equal(refused.type, 'error');
    assert.equal(refused.code, 'unknown_frame_type');
    assert.equal(v1.frames.filter((f) => f.type === 'join' || f.type === 'leave' || f.type === 'presence').length, 0);
    v1.close();
    await waitFor(() => alice.heard.includes('leave dave'), 5000, 'alice hears the v1 client leave');
  } finally {
    alice?.h.close();
    await a.stop();
  }
});

test('a long-poll user whose polls alternate between two servers is one member: one join, no flicker, one leave after the linger', async () => {
  const [a, b] = [await startServer(heraldArgs()), await startServer(heraldArgs())];
  let alice;
  try {
    alice = await tab(a, 'alice', 'room.4');
    // erin's page polls (herald.v2) through a balancer with no sticky sessions: a, b, a, b…
    let cursor = null;
    const t0 = Date.now();
    for (let i = 0; i < 8; i++) {
      const server = i % 2 ? b : a;
      const res = await fetch(`${server.url}/herald/poll?user=erin`, {
        method: 'POST', body: JSON.stringify({ channels: { 'room.4': cursor }, timeout: 200, protocols: ['herald.v2', 'herald.v1'] }),
      });
      assert.equal(res.status, 200);
      const body = await res.json();
      for (const f of body.frames) if (f.type === 'subscribed' || f.type === 'message') cursor = { epoch: f.epoch, offset: f.offset };
      assert.equal(body.frames.filter((f) => f.type === 'join' || f.type === 'leave').length, 0, 'a poller hears no presence');
    }
    await waitFor(() => alice.heard.includes('join erin'), 5000, 'alice hears erin join');
    assert.deepEqual(await cmsView(b, 'room.4'), ['alice', 'erin']);
    assert.deepEqual(alice.heard, ['join erin'], `one join over ${Date.now() - t0} ms of polls on two servers, no leave between them`);
    // erin's page closes: her last poll is answered, and she leaves once the linger (1 s) is over.
    await waitFor(() => alice.heard.includes('leave erin'), 6000, 'alice hears erin leave');
    assert.deepEqual(alice.heard, ['join erin', 'leave erin']);
    assert.deepEqual(await cmsView(a, 'room.4'), ['alice']);
  } finally {
    alice?.h.close();
    await a.stop();
    await b.stop();
  }
});
