// herald.v1 over long-poll HTTP against the real server: held polls, resume by cursor,
// every bad input and its answer, publish, the enabled flags, and drain.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, publish, sleep } from './harness.mjs';

let server;
before(async () => { server = await startServer(['--history', '1000', '--max-bytes', '4096']); });
after(async () => { assert.equal((await server.stop()).code, 0); });

async function poll(body, { user, origin, raw, headers: more = {}, on = server } = {}) {
  const headers = { 'Content-Type': 'text/plain', ...more };
  if (origin) headers.Origin = origin;
  const res = await fetch(`${on.url}/herald/poll${user ? `?user=${user}` : ''}`, {
    method: 'POST', headers, body: raw ?? JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}

test('a new channel is answered at once with subscribed at the head', async () => {
  await publish(server, 'public.lp.a', { n: 1 });
  const r = await poll({ channels: { 'public.lp.a': null } });
  assert.equal(r.status, 200);
  assert.equal(r.body.frames.length, 1);
  const [sub] = r.body.frames;
  assert.equal(sub.type, 'subscribed');
  assert.equal(sub.offset, 1);
  assert.equal(sub.recovered, true);
});

test('a poll at the head is held until a message arrives, then answered at once', async () => {
  const head = await publish(server, 'public.lp.b', { n: 0 });
  const t0 = Date.now();
  const pending = poll({ channels: { 'public.lp.b': { epoch: head.epoch, offset: head.offset } } });
  await sleep(300);
  await publish(server, 'public.lp.b', { n: 1 });
  const r = await pending;
  const elapsed = Date.now() - t0;
  assert.ok(elapsed >= 300 && elapsed < 1500, `held, then answered promptly (${elapsed} ms)`);
  assert.deepEqual(r.body.frames.map((f) => [f.type, f.offset, f.data]), [['message', head.offset + 1, { n: 1 }]]);
});

test('a quiet poll ends after its timeout with no frames', async () => {
  const head = await publish(server, 'public.lp.c', {});
  const t0 = Date.now();
  const r = await poll({ channels: { 'public.lp.c': head }, timeout: 300 });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.frames, []);
  assert.ok(Date.now() - t0 < 2500);
});

test('timeout 0 answers at once even when nothing is waiting', async () => {
  const head = await publish(server, 'public.lp.zero', {});
  const t0 = Date.now();
  const r = await poll({ channels: { 'public.lp.zero': head }, timeout: 0 });
  assert.deepEqual(r.body.frames, []);
  assert.ok(Date.now() - t0 < 300, `answered in ${Date.now() - t0} ms`);
});

test('resume: messages after the cursor come at once, in order, with no gap', async () => {
  const first = await publish(server, 'public.lp.d', {});
  await publish(server, 'public.lp.d', undefined, 20);
  const r = await poll({ channels: { 'public.lp.d': first } });
  assert.deepEqual(r.body.frames.map((f) => f.offset), Array.from({ length: 20 }, (_, i) => first.offset + i + 1));
  assert.ok(r.body.frames.every((f) => f.type === 'message'), 'a resume that worked sends no `subscribed`');
});

test('a cursor from a lost history (other epoch) gets subscribed with recovered:false', async () => {
  await publish(server, 'public.lp.e', {});
  const r = await poll({ channels: { 'public.lp.e': { epoch: 'old', offset: 9 } } });
  assert.deepEqual(r.body.frames.map((f) => [f.type, f.recovered]), [['subscribed', false]]);
});

test('a forbidden channel gets an error frame; the other channels are served in the same poll', async () => {
  const r = await poll({ channels: { 'user.bob.x': null, 'user.alice.x': null } }, { user: 'alice' });
  const err = r.body.frames.find((f) => f.type === 'error');
  assert.deepEqual([err.code, err.channel], ['forbidden', 'user.bob.x']);
  assert.ok(r.body.frames.some((f) => f.type === 'subscribed' && f.channel === 'user.alice.x'));
});

// Every answer of /herald/poll and /herald/publish is {"frames":[...]}, refusals included:
// one error frame with the code and a readable message.
test('versions: a poll that offers versions is answered in the newest both know, and names it', async () => {
  const r = await poll({ channels: { 'public.lp.v': null }, timeout: 0, protocols: ['herald.v1', 'herald.v2'] });
  assert.equal(r.status, 200);
  assert.equal(r.body.protocol, 'herald.v2');
  assert.equal(r.body.frames[0].type, 'subscribed');
  const old = await poll({ channels: { 'public.lp.v': null }, timeout: 0, protocols: ['herald.v1'] });
  assert.equal(old.body.protocol, 'herald.v1');
  const none = await poll({ channels: { 'public.lp.v': null }, timeout: 0 });
  assert.deepEqual(Object.keys(none.body), ['frames'], 'no offer: the answer of a herald.v1 server, unchanged');
});

test('versions: a bad offer is refused with 400 and says why', async () => {
  for (const protocols of ['herald.v2', [2], Array(9).fill('herald.v1')])
    refusal(await poll({ channels: {}, protocols }), 400, 'malformed_frame');
  const unknown = await poll({ channels: {}, protocols: ['herald.v9'] });
  refusal(unknown, 400, 'malformed_frame');
  assert.match(unknown.body.frames[0].message, /no protocol version in common: this server speaks herald\.v2, herald\.v1/);
});

function refusal(r, status, code) {
  assert.equal(r.status, status);
  assert.equal(r.body.frames.length, 1, JSON.stringify(r.body));
  const [f] = r.body.frames;
  assert.deepEqual([f.type, f.code], ['error', code]);
  assert.ok(f.message.length > 0);
}

test('bad input: each gets its status and a readable error, and the server goes on', async () => {
  assert.equal((await poll(null, { raw: '{oops' })).status, 400);
  assert.equal((await poll(null, { raw: '[]' })).status, 400);
  assert.equal((await poll({ nochannels: true })).status, 400);
  assert.equal((await poll({ channels: {}, timeout: -5 })).status, 400);
  refusal(await poll(null, { raw: '{oops' }), 400, 'malformed_frame');
  refusal(await poll({ nochannels: true }), 400, 'malformed_frame');
  const bad = await poll({ channels: { 'bad name': null, 'public.ok': { epoch: 1 } } });
  assert.deepEqual(bad.body.frames.map((f) => f.code), ['invalid_channel', 'malformed_frame']);
  const tooMany = {};
  for (let i = 0; i < 65; i++) tooMany[`public.c${i}`] = null;
  assert.equal((await poll({ channels: tooMany })).status, 400);
  assert.equal((await poll(null, { raw: JSON.stringify({ channels: { 'public.x': null }, pad: 'x'.repeat(5000) }) })).status, 413);
  assert.equal((await poll({ channels: {} }, { origin: 'http://evil.example' })).status, 403);
  assert.equal((await poll({ channels: {} }, { user: 'nobody' })).status, 401);
  assert.equal((await fetch(`${server.url}/herald/poll`)).status, 405);
  refusal(await poll({ channels: {} }, { origin: 'http://evil.example' }), 403, 'forbidden');
  refusal(await poll({ channels: {} }, { user: 'nobody' }), 401, 'unauthenticated');
  const get = await fetch(`${server.url}/herald/poll`);
  refusal({ status: get.status, body: await get.json() }, 405, 'malformed_frame');
  const ok = await poll({ channels: { 'public.lp.after': null } });
  assert.equal(ok.status, 200);
});

test('origin compared by scheme, host and port: https vs http, another port, null get 403', async () => {
  for (const origin of [`https://127.0.0.1:${server.port}`, `http://127.0.0.1:${server.port + 1}`, 'http://127.0.0.1', 'null']) {
    const r = await poll({ channels: {}, timeout: 0 }, { origin });
    assert.equal(r.status, 403, origin);
  }
  const ok = await poll({ channels: { 'public.lp.origin': null } }, { origin: `http://127.0.0.1:${server.port}` });
  assert.equal(ok.status, 200);
  // X-Forwarded-Proto is believed only when the server is told to trust it.
  const https = `https://127.0.0.1:${server.port}`, proto = { 'X-Forwarded-Proto': 'https' };
  assert.equal((await poll({ channels: {}, timeout: 0 }, { origin: https, headers: proto })).status, 403);
  const trusting = await startServer(['--trust-forwarded-proto']);
  try {
    const httpsThere = `https://127.0.0.1:${trusting.port}`;
    assert.equal((await poll({ channels: {}, timeout: 0 }, { on: trusting, origin: httpsThere, headers: proto })).status, 200);
    assert.equal((await poll({ channels: {}, timeout: 0 }, { on: trusting, origin: httpsThere })).status, 403);
    assert.equal((await poll({ channels: {}, timeout: 0 }, { on: trusting, origin: `http://127.0.0.1:${trusting.port}`, headers: proto })).status, 403);
  } finally {
    assert.equal((await trusting.stop()).code, 0);
  }
});

test('publish over HTTP: published with the position, or forbidden', async () => {
  const res = await fetch(`${server.url}/herald/publish?user=alice`, { method: 'POST', body: JSON.stringify({ channel: 'public.chat', data: { t: 1 }, id: 4 }) });
  assert.equal(res.status, 200);
  const [ack] = (await res.json()).frames;
  assert.deepEqual([ack.type, ack.channel, ack.id], ['published', 'public.chat', 4]);
  const denied = await fetch(`${server.url}/herald/publish`, { method: 'POST', body: JSON.stringify({ channel: 'public.other', data: 1 }) });
  assert.equal(denied.status, 403);
  assert.deepEqual((await denied.json()).frames.map((f) => [f.type, f.code, f.channel]), [['error', 'forbidden', 'public.other']]);
  const invalid = await fetch(`${server.url}/herald/publish`, { method: 'POST', body: JSON.stringify({ channel: 'public.chat' }) });
  assert.equal(invalid.status, 400);
  assert.deepEqual((await invalid.json()).frames.map((f) => [f.type, f.code]), [['error', 'malformed_frame']]);
  for (const body of ['{}', ' { } ']) {
    const empty = await fetch(`${server.url}/herald/publish`, { method: 'POST', body });
    assert.equal(empty.status, 400);
    assert.equal((await empty.json()).frames[0].code, 'malformed_frame');
  }
  // Nested past the limit (64 levels in the payload): refused before anything is built.
  const deep = await fetch(`${server.url}/herald/publish`, {
    method: 'POST', body: `{"channel":"public.chat","data":${'['.repeat(2000)}${']'.repeat(2000)}}`,
  });
  assert.equal(deep.status, 400);
  assert.equal((await deep.json()).frames[0].code, 'malformed_frame');
  const atLimit = await fetch(`${server.url}/herald/publish`, {
    method: 'POST', body: ` {"channel":"public.chat" , "data":${'['.repeat(64)}${']'.repeat(64)}}`,
  });
  assert.equal(atLimit.status, 200);
  const typed = await fetch(`${server.url}/herald/publish`, { method: 'POST', body: JSON.stringify({ type: 'publish', channel: 'public.chat', data: 2 }) });
  assert.equal(typed.status, 200);
  const other = await fetch(`${server.url}/herald/publish`, { method: 'POST', body: JSON.stringify({ type: 'subscribe', channel: 'public.chat' }) });
  assert.equal(other.status, 400);
  const nobody = await fetch(`${server.url}/herald/publish?user=nobody`, { method: 'POST', body: JSON.stringify({ channel: 'public.chat', data: 1 }) });
  assert.equal(nobody.status, 401);
  assert.deepEqual((await nobody.json()).frames.map((f) => f.code), ['unauthenticated']);
});

async function serverPublish(s, channel, data, secret) {
  const headers = secret === undefined ? {} : { Authorization: `Bearer ${secret}` };
  const res = await fetch(`${s.url}/herald/publish`, { method: 'POST', headers, body: JSON.stringify({ channel, data, id: 9 }) });
  return { status: res.status, frames: (await res.json()).frames };
}

test('server-to-server publish: off without a publish secret, 403 naming the option', async () => {
  // `server` has no --publish-secret: a Bearer publish is refused, even to a channel that
  // browsers may publish to.
  const r = await serverPublish(server, 'public.chat', { from: 'cms' }, 'anything');
  assert.equal(r.status, 403);
  assert.deepEqual(r.frames.map((f) => [f.type, f.code]), [['error', 'forbidden']]);
  assert.match(r.frames[0].message, /publish_secret/);
});

test('server-to-server publish: the right secret publishes as the server (no authorizer check), another is 401', async () => {
  const s = await startServer(['--publish-secret', 's3cret-token']);
  try {
    const head = await (await fetch(`${s.url}/test/publish?channel=internal.jobs`, { method: 'POST', body: '{}' })).json();
    // The authorizer lets no browser publish to internal.jobs ...
    const browser = await serverPublish(s, 'internal.jobs', { n: 1 });
    assert.equal(browser.status, 403);
    // ... the server, with its secret, may: published with the next offset, id echoed.
    const ok = await serverPublish(s, 'internal.jobs', { n: 1 }, 's3cret-token');
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.frames.map((f) => [f.type, f.channel, f.epoch, f.offset, f.id]),
      [['published', 'internal.jobs', head.epoch, head.offset + 1, 9]]);
    for (const wrong of ['s3cret-toke', 's3cret-token2', 'S3cret-token', 'x']) {
      const r = await serverPublish(s, 'internal.jobs', { n: 2 }, wrong);
      assert.equal(r.status, 401, `secret ${JSON.stringify(wrong)}`);
      assert.deepEqual(r.frames.map((f) => f.code), ['unauthenticated']);
    }
    // The refused publishes took no offset.
    const after = await (await fetch(`${s.url}/test/publish?channel=internal.jobs`, { method: 'POST', body: '{}' })).json();
    assert.equal(after.offset, head.offset + 2);
  } finally { await s.stop(); }
});

test('the flags: with WebSocket off, info lists only long-poll and polls still work', async () => {
  const lp = await startServer(['--no-websocket']);
  try {
    const info = await (await fetch(`${lp.url}/herald/info`)).json();
    assert.deepEqual(info.transports, ['longpoll']);
    const res = await fetch(`${lp.url}/herald/poll`, { method: 'POST', body: JSON.stringify({ channels: { 'public.a': null } }) });
    assert.equal(res.status, 200);
    // The switched-off endpoint answers herald's own 404, never the CMS's catch-all page:
    // a client or herald-doctor can tell it from a proxy's answer.
    const off = await fetch(`${lp.url}/herald/ws`);
    assert.equal(off.status, 404);
    assert.equal((await off.json()).error.code, 'not_found');
  } finally { await lp.stop(); }
  const ws = await startServer(['--no-longpoll']);
  try {
    const info = await (await fetch(`${ws.url}/herald/info`)).json();
    assert.deepEqual(info.transports, ['websocket']);
  } finally { await ws.stop(); }
});

test('drain: a held poll is answered 503 with a reconnect frame; new polls are refused until exit', async () => {
  const s = await startServer(['--drain-spread-ms', '500']);
  const head = await (await fetch(`${s.url}/test/publish?channel=public.d`, { method: 'POST', body: '{}' })).json();
  const pending = fetch(`${s.url}/herald/poll`, { method: 'POST', body: JSON.stringify({ channels: { 'public.d': head } }) });
  await sleep(200);
  s.child.kill('SIGTERM');
  const res = await pending;
  assert.equal(res.status, 503);
  const [f] = (await res.json()).frames;
  assert.equal(f.type, 'reconnect');
  assert.ok(f.after >= 0 && f.after <= 500);
  assert.ok(res.headers.get('retry-after'));
  // A new poll while the server drains: the same answer, from the admission gate.
  const refused = await fetch(`${s.url}/herald/poll`, { method: 'POST', body: JSON.stringify({ channels: { 'public.d': head } }) })
    .catch(() => null);  // the server may be gone already
  if (refused) {
    assert.equal(refused.status, 503);
    assert.equal((await refused.json()).frames.at(-1).type, 'reconnect');
    assert.ok(refused.headers.get('retry-after'));
  }
  assert.equal((await s.exited).code, 0);
});
