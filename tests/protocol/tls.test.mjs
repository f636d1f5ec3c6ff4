// herald over TLS on one port: https (/herald/info, long-poll with keep-alive) and wss, with a
// self-signed certificate the test makes with the openssl CLI; plain HTTP, a silent peer and
// an old TLS version on the TLS port are each answered or closed, never left hanging.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import tls from 'node:tls';
import { startServer, client, raw, selfSignedCertificate, httpsRequest, sleep } from './harness.mjs';

let server;
let cert;

before(async () => {
  cert = selfSignedCertificate();
  server = await startServer(['--tls-cert', cert.cert, '--tls-key', cert.key, '--tls-handshake-ms', '1000',
                              '--heartbeat-ms', '1000', '--history', '1000']);
});
after(async () => {
  const { code } = await server.stop();
  cert.remove();
  assert.equal(code, 0, 'the server drains and exits cleanly with TLS connections open');
});

const get = (p, opts = {}) => httpsRequest(`${server.url}${p}`, { ca: cert.ca, ...opts });
const post = (p, body, opts = {}) =>
  httpsRequest(`${server.url}${p}`, { method: 'POST', body, ca: cert.ca, headers: { 'Content-Type': 'text/plain' }, ...opts });
async function publish(channel, data, n = 1) {
  const r = await post(`/test/publish?channel=${channel}&n=${n}`, data === undefined ? '' : JSON.stringify(data));
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body);
}

test('https: /herald/info, the certificate verified against the self-signed CA', async () => {
  const r = await get('/herald/info');
  assert.equal(r.status, 200);
  const info = JSON.parse(r.body);
  assert.equal(info.protocol, 'herald.v2');
  assert.deepEqual(info.transports, ['websocket', 'longpoll']);
});

test('TLS 1.3 by default, ALPN picks http/1.1 when a browser offers h2 first', async () => {
  const sock = tls.connect({ host: '127.0.0.1', port: server.port, ca: cert.ca, servername: 'localhost',
                             ALPNProtocols: ['h2', 'http/1.1'] });
  await new Promise((resolve, reject) => { sock.once('secureConnect', resolve); sock.once('error', reject); });
  assert.equal(sock.alpnProtocol, 'http/1.1');
  assert.equal(sock.getProtocol(), 'TLSv1.3');
  sock.end();
});

test('TLS 1.2 is served, with an ECDHE AEAD cipher', async () => {
  const sock = tls.connect({ host: '127.0.0.1', port: server.port, ca: cert.ca, servername: 'localhost',
                             maxVersion: 'TLSv1.2' });
  await new Promise((resolve, reject) => { sock.once('secureConnect', resolve); sock.once('error', reject); });
  assert.equal(sock.getProtocol(), 'TLSv1.2');
  assert.match(sock.getCipher().name, /^ECDHE-(RSA|ECDSA)-(AES\d+-GCM|CHACHA20-POLY1305)/);
  sock.end();
});

test('TLS 1.1 is refused', async () => {
  const sock = tls.connect({ host: '127.0.0.1', port: server.port, ca: cert.ca, servername: 'localhost',
                             minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
  const outcome = await new Promise((resolve) => {
    sock.once('secureConnect', () => resolve('connected'));
    sock.once('error', (e) => resolve(e.code || e.message));
    sock.once('close', () => resolve('closed'));
  });
  assert.notEqual(outcome, 'connected');
  sock.destroy();
});

test('long-poll over https: a held poll answered by a publish, on one kept-alive TLS connection', async () => {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: cert.ca });
  try {
    const first = await post('/herald/poll', JSON.stringify({ channels: { 'public.tls.lp': null } }), { agent });
    assert.equal(first.status, 200);
    const [sub] = JSON.parse(first.body).frames;
    assert.equal(sub.type, 'subscribed');
    const socket = first.socket;
    const held = post('/herald/poll', JSON.stringify({ channels: { 'public.tls.lp': { epoch: sub.epoch, offset: sub.offset } } }), { agent });
    await sleep(200);
    await publish('public.tls.lp', { over: 'https' });
    const r = await held;
    assert.deepEqual(JSON.parse(r.body).frames.map((f) => [f.type, f.data]), [['message', { over: 'https' }]]);
    assert.equal(r.socket, socket, 'the same TLS connection served both polls (keep-alive)');
  } finally {
    agent.destroy();
  }
});

test('wss: welcome, subscribe, a publish received; a burst and a large message arrive whole and in order', async () => {
  const c = client(`${server.ws}?user=alice`, { ca: cert.ca });
  await c.open();
  await c.frame((f) => f.type === 'welcome');
  c.send({ type: 'subscribe', channel: 'public.tls.ws', id: 1 });
  const sub = await c.frame((f) => f.type === 'subscribed' && f.id === 1);
  await publish('public.tls.ws', { hello: 'wss' });
  const [m] = await c.untilMessages('public.tls.ws', 1);
  assert.deepEqual(m.data, { hello: 'wss' });

  await publish('public.tls.ws', undefined, 500);  // gathered into records
  const big = 'x'.repeat(60000);
  await publish('public.tls.ws', { big });          // several records
  const msgs = await c.untilMessages('public.tls.ws', 502, 10000);
  assert.deepEqual(msgs.map((f) => f.offset), Array.from({ length: 502 }, (_, i) => sub.offset + i + 1));
  assert.equal(msgs[501].data.big, big);
  c.close();
  await c.untilClosed();
});

test('wss with a certificate the client does not trust fails the handshake, cleanly', async () => {
  const c = client(server.ws);
  await assert.rejects(c.open(), /self.signed|certificate/i);
  // The server is unaffected.
  assert.equal((await get('/herald/info')).status, 200);
});

test('plain HTTP on the TLS port gets a plain 400 saying so, then the connection closes', async () => {
  const r = raw(server.port);
  r.write('GET /herald/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  await Promise.race([r.ended, sleep(3000).then(() => { throw new Error('plain HTTP on the TLS port: no close in 3 s'); })]);
  const text = r.data.toString('latin1');
  assert.ok(text === '' || text.startsWith('HTTP/1.1 400'), text);
  assert.match(text, /use https:\/\//);
});

test('a peer that never starts its handshake is closed after the handshake deadline', async () => {
  const r = raw(server.port);
  const t0 = Date.now();
  await Promise.race([r.ended, sleep(5000).then(() => { throw new Error('silent peer: not closed in 5 s'); })]);
  const ms = Date.now() - t0;
  assert.ok(ms >= 900, `closed after the deadline, not before (${ms} ms)`);
});

test('garbage instead of a ClientHello is closed at once', async () => {
  const r = raw(server.port);
  r.write(Buffer.alloc(512, 0x16));
  await Promise.race([r.ended, sleep(3000).then(() => { throw new Error('garbage: not closed in 3 s'); })]);
  assert.equal(r.data.length === 0 || r.data[0] === 0x15, true, 'nothing, or a TLS alert');
  assert.equal((await get('/herald/info')).status, 200);
});

test('an asio::ssl::context the CMS owns serves https and wss the same', async () => {
  const other = await startServer(['--tls-cert', cert.cert, '--tls-key', cert.key, '--tls-asio-context']);
  try {
    const r = await httpsRequest(`${other.url}/herald/info`, { ca: cert.ca });
    assert.equal(r.status, 200);
    const c = client(`${other.ws}?user=bob`, { ca: cert.ca });
    await c.open();
    await c.frame((f) => f.type === 'welcome');
    c.close();
  } finally {
    assert.equal((await other.stop()).code, 0);
  }
});

test('herald-doctor on https: refuses the self-signed certificate, passes with --insecure and says so', { skip: !process.env.HERALD_DOCTOR }, async () => {
  const { execFile } = await import('node:child_process');
  const doctor = (args) => new Promise((resolve) => {
    execFile(process.env.HERALD_DOCTOR, [server.url, '--hold', '0', '--timeout', '3', ...args], { timeout: 30000 },
      (err, stdout) => resolve({ code: err ? err.code : 0, stdout }));
  });
  const strict = await doctor(['--json']);
  assert.equal(strict.code, 1, strict.stdout);
  assert.match(JSON.parse(strict.stdout).checks[0].summary, /TLS .* failed: certificate verify failed/);
  const loose = await doctor(['--insecure', '--channel', 'public.doctor']);
  assert.equal(loose.code, 0, loose.stdout);
  assert.match(loose.stdout, /NOT verified/);
  assert.match(loose.stdout, /WebSocket: OK/);
  assert.match(loose.stdout, /Long-poll: OK/);
});
