// /herald/diagnose, which herald-doctor reads: the request as it arrived, `?hold=MS` answered
// after MS without blocking the I/O thread, `?stream=1` in two parts 1.5 s apart (chunked to
// HTTP/1.1, close-delimited to HTTP/1.0), and 400 for bad parameters. It echoes no
// credentials, answers only allowed origins, and holds at most 8 answers at once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, raw, sleep } from './harness.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { assert.equal((await server.stop()).code, 0); });

const get = (path, headers = {}) => fetch(`${server.url}${path}`, { headers });

test('diagnose shows the request as it arrived', async () => {
  const res = await get('/herald/diagnose?x=1', { 'X-Forwarded-For': '10.1.2.3', Cookie: 'a=b' });
  assert.equal(res.status, 200);
  const d = await res.json();
  assert.equal(d.request.target, '/herald/diagnose?x=1');
  assert.equal(d.request.headers['X-Forwarded-For'] ?? d.request.headers['x-forwarded-for'], '10.1.2.3');
  assert.equal(d.server.protocol, 'herald.v2');
  assert.ok('connections' in d.stats);
});

test('diagnose echoes no credentials: Cookie, Authorization, Proxy-Authorization show their length only', async () => {
  const secret = 'session=s3cr3t-value';
  const res = await get('/herald/diagnose', { Cookie: secret, Authorization: 'Bearer tok3n', 'Proxy-Authorization': 'Basic eA==' });
  assert.equal(res.status, 200);
  const text = await res.text();
  assert.ok(!text.includes('s3cr3t') && !text.includes('tok3n') && !text.includes('eA=='), text);
  const h = Object.fromEntries(Object.entries(JSON.parse(text).request.headers).map(([k, v]) => [k.toLowerCase(), v]));
  assert.equal(h.cookie, `<redacted, ${secret.length} bytes>`);
  assert.equal(h.authorization, '<redacted, 12 bytes>');
  assert.equal(h['proxy-authorization'], '<redacted, 10 bytes>');
  // herald.js's access token, in the query: its length only, the rest of the target as sent.
  const t = await (await get('/herald/diagnose?x=1&access_token=tok-s3cr3t&y=2')).json();
  assert.equal(t.request.target, '/herald/diagnose?x=1&access_token=<redacted, 10 bytes>&y=2');
});

test('diagnose answers allowed origins only: another site, another scheme, null get 403', async () => {
  for (const origin of ['http://evil.example', `https://127.0.0.1:${server.port}`, 'null']) {
    const r = await get('/herald/diagnose', { Origin: origin });
    assert.equal(r.status, 403, origin);
    assert.ok(!(await r.text()).includes('"request"'));
  }
  assert.equal((await get('/herald/diagnose', { Origin: `http://127.0.0.1:${server.port}` })).status, 200);
});

test('at most 8 held diagnose answers at once: the next gets 429 with Retry-After; others are still served', async () => {
  const held = [];
  for (let i = 0; i < 8; i++) {
    const c = raw(server.port);
    c.write('GET /herald/diagnose?hold=3000 HTTP/1.1\r\nHost: x\r\n\r\n');
    held.push(c);
  }
  await sleep(300);
  const busy = await get('/herald/diagnose?hold=10');
  assert.equal(busy.status, 429);
  assert.ok(Number(busy.headers.get('retry-after')) > 0);
  const stream = await get('/herald/diagnose?stream=1');
  assert.equal(stream.status, 429);
  assert.equal((await get('/herald/diagnose')).status, 200);  // an immediate answer holds nothing
  assert.equal((await get('/herald/info')).status, 200);
  for (const c of held) c.sock.destroy();  // leaving gives the places back
  await sleep(300);
  const again = await get('/herald/diagnose?hold=10');
  assert.equal(again.status, 200);
});

test('hold=MS answers after MS, and the single I/O thread serves others meanwhile', async () => {
  const t0 = Date.now();
  const held = get('/herald/diagnose?hold=1500').then(async (r) => ({ status: r.status, body: await r.json(), at: Date.now() - t0 }));
  const info = await get('/herald/info');
  assert.equal(info.status, 200);
  assert.ok(Date.now() - t0 < 500, 'another request is answered during the hold');
  const r = await held;
  assert.equal(r.status, 200);
  assert.equal(r.body.held_ms, 1500);
  assert.ok(r.at >= 1450 && r.at < 3000, `answered after the hold (${r.at} ms)`);
});

test('stream=1 over HTTP/1.1: chunked, the first part at once, the second 1.5 s later, keep-alive', async () => {
  const c = raw(server.port);
  const t0 = Date.now();
  c.write('GET /herald/diagnose?stream=1 HTTP/1.1\r\nHost: x\r\n\r\n');
  await c.until((d) => d.includes('"part":1'), 1000);
  const first = Date.now() - t0;
  assert.ok(first < 500, `first part at once (${first} ms)`);
  assert.match(c.data.toString(), /Transfer-Encoding: chunked/);
  assert.ok(!c.data.includes('"part":2'));
  await c.until((d) => d.includes('\r\n0\r\n\r\n'), 4000);
  const second = Date.now() - t0;
  assert.ok(second >= 1400, `second part after the gap (${second} ms)`);
  const body = c.data.toString().split('\r\n\r\n')[1];
  const lines = body.split('\r\n').filter((_, i) => i % 2 === 1).join('').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => l.part), [1, 2]);
  assert.equal(lines[1].diagnose.request.target, '/herald/diagnose?stream=1');
  // The connection goes on to the next request.
  c.write('GET /herald/info HTTP/1.1\r\nHost: x\r\n\r\n');
  await c.until((d) => d.includes('"protocol":"herald.v2"'), 2000);
  c.sock.destroy();
});

test('stream=1 over HTTP/1.0: no chunks, the body ends with the connection', async () => {
  const c = raw(server.port);
  c.write('GET /herald/diagnose?stream=1 HTTP/1.0\r\nHost: x\r\n\r\n');
  await c.ended;
  const text = c.data.toString();
  assert.doesNotMatch(text, /Transfer-Encoding/);
  assert.match(text, /Connection: close/);
  const lines = text.split('\r\n\r\n')[1].trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => l.part), [1, 2]);
});

test('bad parameters get 400 with a readable error', async () => {
  for (const q of ['hold=abc', 'hold=120001', 'hold=99999999999999999999', 'stream=2', 'stream=1&hold=5']) {
    const r = await get(`/herald/diagnose?${q}`);
    assert.equal(r.status, 400, q);
    assert.equal((await r.json()).error.code, 'malformed_request');
  }
});

test('a held diagnose whose client leaves is dropped, and the server goes on', async () => {
  const connections = async () => (await (await get('/test/stats')).json()).connections;
  const before = await connections();
  const c = raw(server.port);
  c.write('GET /herald/diagnose?hold=60000 HTTP/1.1\r\nHost: x\r\n\r\n');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(await connections(), before + 1, 'the held diagnose is connected');
  c.sock.destroy();
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(await connections(), before, 'and gone once its client left');
});
