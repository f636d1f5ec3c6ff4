// Starts herald-test-server for a test and talks to it: shared by the protocol, browser, cluster
// and proxy tests.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(new URL('../js/package.json', import.meta.url));
export const WebSocket = require('ws');

export const serverBinary = process.env.HERALD_TEST_SERVER;
if (!serverBinary) throw new Error('HERALD_TEST_SERVER must name the herald-test-server binary');

/**
 * Starts a server with the given flags; resolves once it listens, and on Redis once
 * /herald/health says ready (the server listens at once and connects to Redis in the
 * background), as a load balancer would wait.
 */
export async function startServer(args = [], binary = serverBinary, { waitReady = args.includes('--redis') } = {}) {
  const portArgs = args.includes('--port') ? [] : ['--port', '0'];
  // HERALD_TEST_THREADS: the same tests against a server with that many I/O threads.
  const threadArgs = process.env.HERALD_TEST_THREADS && binary === serverBinary && !args.includes('--threads')
    ? ['--threads', process.env.HERALD_TEST_THREADS] : [];
  const child = spawn(binary, [...portArgs, ...threadArgs, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('server did not start in 10 s')), 10000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /port (\d+)|127\.0\.0\.1:(\d+)\//.exec(out);
      if (m) { clearTimeout(timer); resolve(Number(m[1] || m[2])); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited ${code}`)); });
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const tls = args.includes('--tls-cert');
  if (waitReady) {
    const until = Date.now() + 10000;
    for (;;) {
      const res = await fetch(`http://127.0.0.1:${port}/herald/health`).catch(() => null);
      if (res?.status === 200) break;
      if (Date.now() > until) { child.kill('SIGKILL'); throw new Error('server not ready in 10 s (/herald/health)'); }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    port,
    child,
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    ws: `${tls ? 'wss' : 'ws'}://127.0.0.1:${port}/herald/ws`,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), 15000);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
}

/** A TCP port free on 127.0.0.1 now (another process may take it before you bind it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export async function publish(server, channel, data, n = 1) {
  const res = await fetch(`${server.url}/test/publish?channel=${channel}&n=${n}`, {
    method: 'POST', body: data === undefined ? '' : JSON.stringify(data),
  });
  if (!res.ok) throw new Error(`publish: ${res.status} ${await res.text()}`);
  return res.json();
}

/** A TCP proxy on loopback that the test can cut (every socket dropped, new ones refused) and
 *  restore: a network blip between a browser and herald, without restarting the server. */
export async function tcpProxy(targetPort) {
  const sockets = new Set();
  let server = null;
  let port = 0;
  const listen = () => new Promise((resolve) => {
    server = net.createServer((client) => {
      const upstream = net.connect(targetPort, '127.0.0.1');
      for (const s of [client, upstream]) { sockets.add(s); s.on('close', () => sockets.delete(s)); s.on('error', () => {}); }
      client.pipe(upstream).pipe(client);
    });
    server.listen(port, '127.0.0.1', () => { port = server.address().port; resolve(); });
  });
  await listen();
  return {
    get port() { return port; },
    get url() { return `http://127.0.0.1:${port}`; },
    async cut() {
      const closed = new Promise((r) => server.close(r));
      for (const s of sockets) s.destroy();
      await closed;
    },
    async restore() { await listen(); },
    async close() { await this.cut(); },
  };
}

/** A WebSocket client that records frames, with waits on them. */
export function client(url, { protocols = ['herald.v1'], headers = {}, origin, ...options } = {}) {
  const ws = new WebSocket(url, protocols, { headers, origin, ...options });
  const frames = [];
  const waiters = [];
  let closed = null;
  ws.on('message', (data, isBinary) => {
    const f = isBinary ? { binary: data } : JSON.parse(data.toString());
    frames.push(f);
    if (f.type === 'ping') ws.send(JSON.stringify({ type: 'pong' }));
    check();
  });
  ws.on('close', (code, reason) => { closed = { code, reason: reason.toString() }; check(); });
  ws.on('error', () => {});
  function check() {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i];
      const r = w.test();
      if (r) { waiters.splice(i, 1); clearTimeout(w.timer); w.resolve(r); }
    }
  }
  function until(test, ms = 5000, what = 'condition') {
    const r = test();
    if (r) return Promise.resolve(r);
    return new Promise((resolve, reject) => {
      const w = { test, resolve };
      w.timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        reject(new Error(`timed out waiting for ${what}; frames: ${JSON.stringify(frames.slice(-5))}; closed: ${JSON.stringify(closed)}`));
      }, ms);
      waiters.push(w);
    });
  }
  return {
    ws,
    frames,
    get closed() { return closed; },
    send: (obj) => ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)),
    open: () => new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('unexpected-response', (req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
      ws.once('error', reject);
    }),
    frame: (pred, ms, what) => until(() => frames.find(pred), ms, what),
    messages: (channel) => frames.filter((f) => f.type === 'message' && f.channel === channel),
    untilMessages: (channel, n, ms = 5000) => until(() => {
      const m = frames.filter((f) => f.type === 'message' && f.channel === channel);
      return m.length >= n ? m : null;
    }, ms, `${n} messages on ${channel}`),
    untilClosed: (ms = 5000) => until(() => closed, ms, 'close'),
    close: () => ws.close(),
  };
}

/** Raw TCP: sends bytes, collects the answer. */
export function raw(port) {
  const sock = net.connect(port, '127.0.0.1');
  let data = Buffer.alloc(0);
  sock.on('data', (d) => { data = Buffer.concat([data, d]); });
  const ended = new Promise((resolve) => sock.on('close', resolve));
  sock.on('error', () => {});
  return {
    sock,
    ended,
    get data() { return data; },
    write: (b) => sock.write(b),
    async until(pred, ms = 5000) {
      const t0 = Date.now();
      while (!pred(data)) {
        if (Date.now() - t0 > ms) throw new Error(`raw: timed out; got ${JSON.stringify(data.toString('latin1').slice(0, 300))}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      return data;
    },
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A self-signed certificate for localhost and 127.0.0.1, made by the `openssl` CLI in a new
 *  temp dir: { dir, cert, key, ca (the PEM text, to trust it), remove() }. */
export function selfSignedCertificate() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-tls-'));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore', timeout: 10000 });
  return { dir, cert, key, ca: fs.readFileSync(cert, 'utf8'), remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** An HTTPS request trusting `ca` (fetch cannot be told to): resolves { status, headers, body, socket }. */
export function httpsRequest(url, { method = 'GET', headers = {}, body, ca, agent } = {}) {
  return new Promise((resolve, reject) => {
    if (body !== undefined) headers = { ...headers, 'Content-Length': Buffer.byteLength(body) };
    const req = https.request(url, { method, headers, ca, agent, timeout: 10000 }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data, socket: res.socket }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timed out`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}
