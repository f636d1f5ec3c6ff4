// A rolling upgrade, half done: a server that speaks only herald.v1 beside one that speaks
// herald.v2, on one Redis, behind a round-robin nginx with no sticky sessions. Old pages
// (clients that offer only herald.v1) and new ones (herald.js, which offers both) are served by
// either server, each in the newest version both know, and every client sees every message
// once, in order, with no resync — also a long-poll client whose polls alternate between the
// two servers, so that its protocol changes from one poll to the next.
//
// The v1-only server is the test server with `--max-protocol 1`. HERALD_OLD_TEST_SERVER names a
// test server built from a commit before the negotiation, to run the same test against a
// really old server (by hand: `git worktree add /tmp/old <commit>` and build herald-test-server).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, client, WebSocket, sleep } from '../protocol/harness.mjs';
import { startNginx } from '../proxy/nginx.mjs';
import { connect } from '../../clients/js/herald.js';
import { startRedis, publishVia, waitFor, range } from './support.mjs';

const oldBinary = process.env.HERALD_OLD_TEST_SERVER;

let redis, v2, v1;
before(async () => {
  redis = await startRedis();
  const args = ['--redis', `127.0.0.1:${redis.port}`, '--history', '10000', '--heartbeat-ms', '2000'];
  v2 = await startServer(args);
  v1 = oldBinary ? await startServer(args, oldBinary) : await startServer([...args, '--max-protocol', '1']);
});
after(async () => {
  await v2?.stop();
  await v1?.stop();
  await redis?.stop();
});

test('/herald/info says which versions each server speaks', async () => {
  const info2 = await (await fetch(`${v2.url}/herald/info`)).json();
  assert.equal(info2.protocol, 'herald.v2');
  assert.deepEqual(info2.protocols, ['herald.v2', 'herald.v1']);
  const info1 = await (await fetch(`${v1.url}/herald/info`)).json();
  assert.equal(info1.protocol, 'herald.v1');
  if (!oldBinary) assert.deepEqual(info1.protocols, ['herald.v1']);
});

test('WebSocket: each side gets the newest version both know', async () => {
  const cases = [
    [v2, ['herald.v2', 'herald.v1'], 'herald.v2'],
    [v2, ['herald.v1'], 'herald.v1'],          // an old page on a new server
    [v1, ['herald.v2', 'herald.v1'], 'herald.v1'],  // a new page on an old server
    [v1, ['herald.v1'], 'herald.v1'],
  ];
  for (const [server, offered, expected] of cases) {
    const c = client(server.ws, { protocols: offered });
    await c.open();
    assert.equal(c.ws.protocol, expected, `${offered} on ${server === v2 ? 'v2' : 'v1'}`);
    const welcome = await c.frame((f) => f.type === 'welcome');
    assert.equal(welcome.protocol, expected);
    c.close();
  }
});

test('old and new clients on both servers, publishes on both: every message once, in order', async () => {
  const proxy = await startNginx('good', [v2.port, v1.port]);
  const channel = 'public.upgrade';
  const editors = [];
  const editor = (url, transports) => {
    const e = { seen: [], resyncs: 0, protocols: new Set() };
    e.h = connect({ url, WebSocket, transports, minDelay: 100, maxDelay: 1000, probeInterval: 0 });
    e.h.on('resync', () => { e.resyncs++; });
    e.h.subscribe(channel, (data, meta) => { e.seen.push(meta.offset); e.protocols.add(e.h.protocol); });
    editors.push(e);
    return e;
  };
  const onV2 = editor(v2.url, ['websocket']);
  const onV1 = editor(v1.url, ['websocket']);
  const polling = editor(proxy.url, ['longpoll']);  // each poll may reach either server
  const oldPages = [v2, v1].map((s) => client(s.ws, { protocols: ['herald.v1'] }));
  const opened = oldPages.map((c) => c.open());
  try {
    await waitFor(() => editors.every((e) => e.h.state === 'open'), 10000, 'every herald.js client open');
    await Promise.all(opened);
    for (const c of oldPages) {
      assert.equal(c.ws.protocol, 'herald.v1');
      c.send({ type: 'subscribe', channel, id: 1 });
      await c.frame((f) => f.type === 'subscribed' && f.id === 1);
    }
    await sleep(300);
    const n = 60;
    for (let i = 1; i <= n; i++) {
      await publishVia(i % 2 ? v2.url : v1.url, channel, { i });
      await sleep(i % 10 === 0 ? 150 : 10);
    }
    await waitFor(() => editors.every((e) => e.seen.length >= n), 20000,
      `every message at every herald.js client (have ${editors.map((e) => e.seen.length)})`);
    for (const c of oldPages) await c.untilMessages(channel, n, 10000);
    await sleep(300);
    for (const e of editors) {
      assert.deepEqual(e.seen, range(n), 'herald.js: exactly once, in order');
      assert.equal(e.resyncs, 0, 'no resync');
    }
    for (const c of oldPages) assert.deepEqual(c.messages(channel).map((m) => m.offset), range(n), 'an old page: exactly once, in order');
    assert.deepEqual([...onV2.protocols], ['herald.v2']);
    assert.deepEqual([...onV1.protocols], ['herald.v1']);
    assert.deepEqual([...polling.protocols].sort(), ['herald.v1', 'herald.v2'],
      'the polling client spoke each server\'s version as its polls alternated');
  } finally {
    for (const e of editors) e.h.close();
    for (const c of oldPages) c.close();
    await proxy.stop();
  }
});

test('long-poll: a poll offering versions is answered in the newest both know; none known is a 400', async () => {
  const poll = (server, body) => fetch(`${server.url}/herald/poll`, { method: 'POST', body: JSON.stringify(body) })
    .then(async (r) => ({ status: r.status, body: await r.json() }));
  const both = ['herald.v2', 'herald.v1'];
  assert.equal((await poll(v2, { channels: {}, timeout: 0, protocols: both })).body.protocol, 'herald.v2');
  const onOld = await poll(v1, { channels: {}, timeout: 0, protocols: both });
  assert.equal(onOld.status, 200);
  assert.equal(onOld.body.protocol ?? 'herald.v1', 'herald.v1');
  assert.equal((await poll(v2, { channels: {}, timeout: 0 })).body.protocol, undefined, 'no offer: a v1 answer, as before');
  const unknown = await poll(v2, { channels: {}, timeout: 0, protocols: ['herald.v9'] });
  assert.equal(unknown.status, 400);
  assert.match(unknown.body.frames[0].message, /this server speaks herald\.v2, herald\.v1/);
});
