// Several herald servers on one Redis, behind a round-robin nginx with no sticky sessions, as
// editors meet them in production: clients are herald.js itself (in Node, with `ws`).
// Publish anywhere reaches everyone in one order; long-poll clients whose every poll may land
// on another server see each message once; a drained server and a killed one lose nothing
// for clients that resume within the history; a Redis restart is survived and told.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, WebSocket, sleep } from '../protocol/harness.mjs';
import { startNginx } from '../proxy/nginx.mjs';
import { connect } from '../../clients/js/herald.js';
import { startRedis, publishVia, waitFor, range } from './support.mjs';

let redis;
before(async () => { redis = await startRedis(); });
after(async () => { await redis?.stop(); });

const heraldArgs = () => ['--redis', `127.0.0.1:${redis.port}`, '--history', '100000', '--heartbeat-ms', '2000',
                          '--drain-spread-ms', '800', '--drain-timeout-ms', '3000'];

async function cluster(n) {
  const servers = [];
  for (let i = 0; i < n; i++) servers.push(await startServer(heraldArgs()));
  return servers;
}

/** A herald.js client that records what its app would see. */
function editor(url, channel, transports) {
  const seen = [];
  const events = { resync: 0, states: [] };
  const h = connect({ url, WebSocket, transports, minDelay: 100, maxDelay: 1000, probeInterval: 0 });
  h.on('resync', () => { events.resync++; });
  h.on('state', (s) => events.states.push(s.state));
  h.subscribe(channel, (data, meta) => seen.push(meta.offset));
  return { h, seen, events, open: () => waitFor(() => h.state === 'open', 10000, 'open') };
}

test('a publish on any server reaches subscribers on every server, in one order', async () => {
  const [a, b, c] = await cluster(3);
  try {
    const subs = [];
    for (const s of [a, b, c]) {
      const x = client(s.ws);
      await x.open();
      x.send({ type: 'subscribe', channel: 'public.order' });
      await x.frame((f) => f.type === 'subscribed');
      subs.push(x);
    }
    // Two publishers at once, on two servers, to one channel.
    await Promise.all([a, b].map(async (s, k) => {
      for (let i = 0; i < 100; i++) await publishVia(s.url, 'public.order', { from: k, i });
    }));
    const lists = await Promise.all(subs.map((x) => x.untilMessages('public.order', 200, 10000)));
    for (const l of lists) assert.deepEqual(l.map((m) => m.offset), range(200));
    const order = (l) => l.map((m) => `${m.data.from}:${m.data.i}`).join(',');
    assert.equal(order(lists[1]), order(lists[0]));
    assert.equal(order(lists[2]), order(lists[0]));
    assert.ok(lists.every((l) => l.every((m) => m.epoch === lists[0][0].epoch)), 'one epoch everywhere');
    subs.forEach((x) => x.close());
  } finally {
    await Promise.all([a, b, c].map((s) => s.stop()));
  }
});

test('long-poll with timeout 0 on Redis: the answer waits for the subscribes, whose fetch is a round trip to Redis', async () => {
  const [a] = await cluster(1);
  try {
    await publishVia(a.url, 'public.zero.old', { n: 1 });
    for (let i = 0; i < 20; i++) {
      const channels = { [`public.zero.${i}`]: null, 'public.zero.old': { epoch: 'not-this-one', offset: 0 } };
      const res = await fetch(`${a.url}/herald/poll`, { method: 'POST', body: JSON.stringify({ channels, timeout: 0 }) });
      assert.equal(res.status, 200);
      const { frames } = await res.json();
      const of = (ch) => frames.find((f) => f.channel === ch);
      assert.equal(of(`public.zero.${i}`)?.type, 'subscribed', 'a new channel: subscribed, in this answer');
      assert.equal(of('public.zero.old')?.recovered, false, 'a failed resume: told in this answer');
    }
  } finally {
    await a.stop();
  }
});

test('long-poll behind round-robin nginx: every message exactly once while polls land on any server', async () => {
  const servers = await cluster(3);
  const proxy = await startNginx('good', servers.map((s) => s.port));
  const editors = Array.from({ length: 5 }, () => editor(proxy.url, 'public.poll', ['longpoll']));
  try {
    await Promise.all(editors.map((e) => e.open()));
    const n = 150;
    for (let i = 0; i < n; i++) {
      await publishVia(servers[i % 3].url, 'public.poll', { i });
      if (i % 10 === 0) await sleep(15);
    }
    await waitFor(() => editors.every((e) => e.seen.length >= n), 20000, 'every message at every editor');
    await sleep(300);
    for (const e of editors) assert.deepEqual(e.seen, range(n), 'exactly once, in order');
    const upstreams = new Set(proxy.accessLog().split('\n').filter((l) => l.startsWith('/herald/poll'))
      .map((l) => l.split(' ')[2]));
    assert.equal(upstreams.size, 3, `polls were answered by every server (${[...upstreams]})`);
  } finally {
    editors.forEach((e) => e.h.close());
    await proxy.stop();
    await Promise.all(servers.map((s) => s.stop()));
  }
});

test('rolling restart under load: one server drained, another killed — 0 messages lost', async () => {
  const servers = await cluster(3);
  const proxy = await startNginx('good', servers.map((s) => s.port));
  const editors = [
    ...Array.from({ length: 6 }, () => editor(proxy.url, 'public.load', ['websocket', 'longpoll'])),
    ...Array.from({ length: 4 }, () => editor(proxy.url, 'public.load', ['longpoll'])),
  ];
  let published = 0, failures = 0, running = true;
  try {
    await Promise.all(editors.map((e) => e.open()));
    const survivor = servers[0];
    const publisher = (async () => {
      while (running) {
        try {
          const r = await publishVia(survivor.url, 'public.load', { at: Date.now() });
          published = Math.max(published, r.offset);
        } catch { failures++; }
        await sleep(10);
      }
    })();
    await sleep(700);
    await servers[1].stop('SIGTERM');  // drain: its clients are told to come back later
    await sleep(700);
    await servers[2].stop('SIGKILL');  // crash: its clients find out by themselves
    await sleep(1500);
    running = false;
    await publisher;
    await waitFor(() => editors.every((e) => e.seen.length >= published), 30000,
      `all ${published} messages at every editor (have ${editors.map((e) => e.seen.length)})`);
    await sleep(300);
    for (const e of editors) {
      assert.deepEqual(e.seen, range(published), 'every message once, in order');
      assert.equal(e.events.resync, 0, 'resumed within the history: no resync');
    }
    assert.equal(failures, 0, 'the publisher, on a live server, never failed');
    console.log(`# rolling restart: ${published} messages, ${editors.length} editors, 0 lost`);
  } finally {
    running = false;
    editors.forEach((e) => e.h.close());
    await proxy.stop();
    await Promise.all(servers.map((s) => s.stop()));
  }
});

test('Redis restarted mid-run: publishes fail loudly while it is down, clients stay up and resync', async () => {
  const r2 = await startRedis();
  const s = await startServer(['--redis', `127.0.0.1:${r2.port}`, '--history', '1000']);
  const e = editor(s.url, 'public.r', ['websocket']);
  let restarted;
  try {
    await e.open();
    for (let i = 0; i < 5; i++) await publishVia(s.url, 'public.r', { i });
    await waitFor(() => e.seen.length === 5, 5000, 'before');
    await r2.stop();
    await assert.rejects(publishVia(s.url, 'public.r', { lost: true }), (err) => err.status === 400 || err.status === 503);
    const body = await (await fetch(`${s.url}/test/publish?channel=public.r`, { method: 'POST', body: '{}' })).json();
    assert.equal(body.error, 'backplane_unavailable');
    assert.equal(e.h.state, 'open', 'the browser connection stays up while Redis is down');
    restarted = await startRedis(r2.port);  // same port, empty: the history is gone
    await waitFor(() => e.events.resync > 0, 15000, 'a resync after Redis lost the history');
    let after;
    for (let i = 0; i < 50 && !after; i++) {
      try { after = await publishVia(s.url, 'public.r', { again: true }); } catch { await sleep(200); }
    }
    assert.ok(after, 'publishes work again once Redis is back');
    await waitFor(() => e.seen.includes(after.offset), 5000, 'the new message');
  } finally {
    e.h.close();
    await s.stop();
    await restarted?.stop();
  }
});
