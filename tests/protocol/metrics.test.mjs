// /herald/metrics and /herald/health against the real server: who may read the metrics, what
// they say after real traffic, `promtool check metrics` on the text, and a real Prometheus
// scraping the server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, client, publish, freePort, sleep } from './harness.mjs';

const token = 'scrape-secret-0123456789';
let server;
before(async () => { server = await startServer(['--metrics-token', token, '--metrics-allow', '::1']); });
after(async () => { assert.equal((await server.stop()).code, 0); });

const scrape = (on = server, headers = { Authorization: `Bearer ${token}` }) =>
  fetch(`${on.url}/herald/metrics`, { headers });

/** The value of one sample (`name{labels}` as written) in Prometheus' text format. */
function sample(text, series) {
  for (const line of text.split('\n'))
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  return undefined;
}

test('metrics: off by default (404), refused without the token or an allowed address (403)', async () => {
  const plain = await startServer();
  try {
    const off = await fetch(`${plain.url}/herald/metrics`);
    assert.equal(off.status, 404);
    assert.match((await off.json()).error.message, /metrics are off/);
  } finally {
    await plain.stop();
  }
  // 127.0.0.1 is not in --metrics-allow (only ::1 is): the token is needed.
  for (const headers of [{}, { Authorization: 'Bearer wrong' }, { Authorization: token }]) {
    const res = await scrape(server, headers);
    assert.equal(res.status, 403, JSON.stringify(headers));
    assert.equal((await res.json()).error.code, 'forbidden');
  }
  const ok = await scrape();
  assert.equal(ok.status, 200);
  assert.match(ok.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
});

test('metrics: what real traffic shows, and promtool finds the text valid', async () => {
  const channel = 'public.metrics-secret-name';
  const c = client(`${server.ws}?user=ann`);
  await c.open();
  c.send({ type: 'subscribe', channel });
  await c.frame((f) => f.type === 'subscribed');
  c.send({ type: 'subscribe', channel: 'room.metrics', id: 7 });  // a presence channel: ann is listed
  await c.frame((f) => f.type === 'subscribed' && f.id === 7);
  c.send({ type: 'subscribe', channel: 'user.someone-else.private' });  // forbidden: an error frame
  await c.frame((f) => f.type === 'error' && f.code === 'forbidden');
  const before = await (await scrape()).text();
  await publish(server, channel, { n: 1 }, 5);
  await c.untilMessages(channel, 5);
  const text = await (await scrape()).text();

  assert.ok(!text.includes('metrics-secret-name'), 'no channel name in the metrics');
  assert.equal(sample(text, 'herald_clients{transport="websocket"}'), 1);
  assert.ok(sample(text, 'herald_subscriptions') >= 1);
  assert.equal(sample(text, 'herald_presence_members'), 1);
  assert.equal(sample(text, 'herald_presence_channels'), 1);
  assert.ok(sample(text, 'herald_channels') >= 1);
  assert.equal(sample(text, 'herald_messages_published_total') - sample(before, 'herald_messages_published_total'), 5);
  assert.ok(sample(text, 'herald_messages_delivered_total') - sample(before, 'herald_messages_delivered_total') >= 5);
  assert.ok(sample(text, 'herald_written_bytes_total') > sample(before, 'herald_written_bytes_total'));
  assert.ok(sample(text, 'herald_delivery_latency_seconds_count') >= 1, 'the deliveries were timed');
  assert.ok(sample(text, 'herald_delivery_latency_seconds_bucket{le="+Inf"}') >= 1);
  assert.ok(sample(text, 'herald_client_errors_total{code="forbidden"}') >= 1);
  assert.equal(sample(text, 'herald_backplane_up'), 1);
  assert.equal(sample(text, 'herald_draining'), 0);
  assert.ok(sample(text, 'herald_connections_accepted_total') >= 3);

  const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(check.status, 0, `promtool check metrics: ${check.stdout}${check.stderr}`);

  c.ws.close(1000);
  await c.untilClosed();
  await sleep(100);
  const after = await (await scrape()).text();
  assert.equal(sample(after, 'herald_clients{transport="websocket"}'), 0, 'a closed WebSocket is not counted');
  assert.ok(sample(after, 'herald_websocket_closes_total{code="1000"}') >= 1, 'the close herald echoed');
});

test('metrics: a slow consumer and a held poll are counted', async () => {
  const small = await startServer(['--queue', '4', '--metrics-token', token]);
  try {
    const head = await publish(small, 'public.m-held', { n: 0 });
    const poll = fetch(`${small.url}/herald/poll`, {
      method: 'POST', body: JSON.stringify({ channels: { 'public.m-held': { epoch: head.epoch, offset: head.offset } }, timeout: 5000 }),
    });
    await sleep(300);
    let text = await (await scrape(small)).text();
    assert.equal(sample(text, 'herald_longpoll_held_polls'), 1);
    assert.equal(sample(text, 'herald_clients{transport="longpoll"}'), 1);
    await publish(small, 'public.m-held', { n: 1 });
    assert.equal((await poll).status, 200);
    text = await (await scrape(small)).text();
    assert.equal(sample(text, 'herald_longpoll_held_polls'), 0);
    assert.ok(sample(text, 'herald_longpoll_polls_answered_total') >= 1);
  } finally {
    await small.stop();
  }
});

test('health: ready (200) on the local backplane, starting (503) until Redis first answers', async () => {
  const ready = await fetch(`${server.url}/herald/health`);
  assert.equal(ready.status, 200);
  const body = await ready.json();
  assert.equal(body.status, 'ready');
  assert.deepEqual(body.backplane, { name: 'local', up: true, state: 'up' });

  // Nothing listens at this Redis address: the server listens all the same, not ready.
  const t0 = Date.now();
  const nowhere = await startServer(['--redis', `127.0.0.1:${await freePort()}`], undefined, { waitReady: false });
  try {
    assert.ok(Date.now() - t0 < 3000, `listens at once, not after Redis (${Date.now() - t0} ms)`);
    const res = await fetch(`${nowhere.url}/herald/health`);
    assert.equal(res.status, 503);
    const b = await res.json();
    assert.equal(b.status, 'starting');
    assert.equal(b.backplane.name, 'redis');
    assert.equal(b.backplane.up, false);
    const diag = await (await fetch(`${nowhere.url}/herald/diagnose`)).json();
    assert.equal(diag.backplane.up, false);
  } finally {
    await nowhere.stop('SIGKILL');
  }
});

test('prometheus: a real Prometheus scrapes the server with its token', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-prom-'));
  const port = await freePort();
  fs.writeFileSync(path.join(dir, 'prometheus.yml'), [
    'global: {scrape_interval: 1s, scrape_timeout: 1s}',
    'scrape_configs:',
    '  - job_name: herald',
    '    metrics_path: /herald/metrics',
    `    authorization: {credentials: ${token}}`,
    `    static_configs: [{targets: ['127.0.0.1:${server.port}']}]`,
    '',
  ].join('\n'));
  const prom = spawn('prometheus', [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  prom.stderr.on('data', (d) => { log += d; });
  const c = client(`${server.ws}?user=ann`);
  try {
    await c.open();
    const query = async (q) => {
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`).catch(() => null);
      const r = res?.ok ? await res.json() : null;
      return r?.data?.result?.[0]?.value?.[1];
    };
    let up, clients;
    const until = Date.now() + 30000;
    while (Date.now() < until) {
      up = await query('up{job="herald"}');
      clients = await query('herald_clients{job="herald",transport="websocket"}');
      if (up === '1' && clients === '1') break;
      await sleep(250);
    }
    assert.equal(up, '1', `Prometheus scraped herald (up); its log:\n${log.slice(-2000)}`);
    assert.equal(clients, '1', 'the scraped value is the open WebSocket');
  } finally {
    c.close();
    prom.kill('SIGTERM');
    await new Promise((r) => { const t = setTimeout(() => { prom.kill('SIGKILL'); r(); }, 5000); prom.on('exit', () => { clearTimeout(t); r(); }); });
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
