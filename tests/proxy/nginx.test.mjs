// What a browser gets through nginx: behind the common misconfiguration (`stripped`) the
// WebSocket upgrade fails and long-poll works, so the browser tests can rely on a real
// fallback path; behind the recommended one (`good`) both work.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startServer, client, publish } from '../protocol/harness.mjs';
import { startNginx } from './nginx.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { assert.equal((await server.stop()).code, 0); });

async function poll(url, channels, timeout) {
  const res = await fetch(`${url}/herald/poll`, {
    method: 'POST', headers: { 'Content-Type': 'text/plain', Origin: url },
    body: JSON.stringify({ channels, ...(timeout === undefined ? {} : { timeout }) }),
  });
  return { status: res.status, body: await res.json() };
}

/** GET with headers that fetch() refuses to send (Upgrade, Connection). */
function getJson(url, headers) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(JSON.parse(body)));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('diagnose: no answer in 5 s')));
  });
}

/** A long-poll round trip through `url`: subscribe at the head, then a held poll gets a publish. */
async function longPollRoundTrip(url, channel) {
  const first = await poll(url, { [channel]: null });
  assert.equal(first.status, 200);
  const [sub] = first.body.frames;
  assert.equal(sub.type, 'subscribed');
  const held = poll(url, { [channel]: { epoch: sub.epoch, offset: sub.offset } }, 10000);
  await new Promise((r) => setTimeout(r, 300));
  await publish(server, channel, { via: 'nginx' });
  const r = await held;
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.frames.map((f) => [f.type, f.offset, f.data]), [['message', sub.offset + 1, { via: 'nginx' }]]);
}

test('stripped nginx: the ws upgrade fails with herald\'s 426, long-poll round trips work', async () => {
  const nginx = await startNginx('stripped', server.port);
  try {
    const c = client(nginx.ws, { origin: nginx.url });
    const failed = await c.open().then(() => null, (e) => e);
    assert.ok(failed, 'the upgrade must not succeed through the stripped nginx');
    assert.equal(failed.status, 426);
    assert.equal(c.frames.length, 0);
    await longPollRoundTrip(nginx.url, 'public.proxy.stripped');
    // herald saw a plain GET: the diagnose endpoint, through the same nginx, says so.
    const d = await getJson(`${nginx.url}/herald/diagnose`, { Upgrade: 'websocket', Connection: 'Upgrade' });
    assert.equal(d.request.version, 'HTTP/1.0');
    assert.equal(Object.keys(d.request.headers).find((k) => k.toLowerCase() === 'upgrade'), undefined);
  } finally {
    await nginx.stop();
  }
});

test('good nginx: the ws upgrade works (welcome, then messages) and long-poll too', async () => {
  const nginx = await startNginx('good', server.port);
  try {
    const c = client(nginx.ws, { origin: nginx.url });
    await c.open();
    await c.frame((f) => f.type === 'welcome', 5000, 'welcome');
    c.send({ type: 'subscribe', channel: 'public.proxy.good', id: 1 });
    await c.frame((f) => f.type === 'subscribed', 5000, 'subscribed');
    await publish(server, 'public.proxy.good', { n: 1 });
    const [m] = await c.untilMessages('public.proxy.good', 1);
    assert.deepEqual(m.data, { n: 1 });
    c.close();
    await longPollRoundTrip(nginx.url, 'public.proxy.good-lp');
  } finally {
    await nginx.stop();
  }
});
