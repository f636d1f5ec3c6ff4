// herald-doctor against a herald server behind a real nginx in each configuration that
// docs/operations.md discusses: its verdict, the fix it names, and its exit code.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { startServer } from '../protocol/harness.mjs';
import { startNginx } from './nginx.mjs';

const doctorBinary = process.env.HERALD_DOCTOR;
if (!doctorBinary) throw new Error('HERALD_DOCTOR must name the herald-doctor binary');

// Short holds keep the suite quick: the idle check holds 6 s, past the short-timeout mode's 3 s.
const quick = ['--hold', '6', '--poll-hold', '1', '--timeout', '5', '--channel', 'public.doctor'];

/** Runs herald-doctor; resolves with its exit code and output (killed after 60 s). */
function doctor(url, args = quick) {
  return new Promise((resolve, reject) => {
    const child = spawn(doctorBinary, [url, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60000);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal) reject(new Error(`herald-doctor killed (${signal}); output so far:\n${out}${err}`));
      else resolve({ code, out, err });
    });
  });
}

/** Starts nginx in `mode` before `server`, runs the doctor through it, stops nginx. */
async function through(mode, server, args) {
  const nginx = await startNginx(mode, server.port);
  try {
    return await doctor(nginx.url, args);
  } finally {
    await nginx.stop();
  }
}

let server;
before(async () => { server = await startServer(); });
after(async () => { assert.equal((await server.stop()).code, 0); });

test('good nginx: every check passes, "WebSocket: OK", exit 0', async () => {
  const r = await through('good', server);
  assert.equal(r.code, 0, r.out);
  for (const line of ['Server: OK', 'WebSocket: OK', 'Long-poll: OK', 'Idle connections: OK', 'Buffering: OK', 'Headers: OK']) {
    assert.match(r.out, new RegExp(`^${line} — `, 'm'), `${line} in:\n${r.out}`);
  }
  assert.match(r.out, /through nginx\//);
  assert.match(r.out, /Nothing needs fixing\./);
  assert.doesNotMatch(r.out, /To fix:/);
});

test('good nginx, --json: the same findings as machine output', async () => {
  const r = await through('good', server, [...quick, '--json']);
  assert.equal(r.code, 0, r.out);
  const j = JSON.parse(r.out);
  assert.equal(j.exit_code, 0);
  assert.deepEqual(j.checks.map((c) => [c.check, c.status]), [
    ['server', 'OK'], ['websocket', 'OK'], ['longpoll', 'OK'], ['idle', 'OK'], ['buffering', 'OK'], ['headers', 'OK']]);
  assert.ok(j.checks[1].detail.welcome_ms >= 0);
  assert.deepEqual(j.checks[0].detail.info.transports, ['websocket', 'longpoll']);
});

test('stripped nginx: the dropped Upgrade header is named as the cause, long-poll works, exit 3', async () => {
  const r = await through('stripped', server);
  assert.equal(r.code, 3, r.out);
  assert.match(r.out, /^WebSocket: FAIL — .*426.*the Upgrade header was dropped on the way, herald saw a plain GET/m);
  assert.match(r.out, /^Long-poll: OK — /m);
  assert.match(r.out, /herald still works meanwhile: browsers fall back to long-poll/);
  assert.match(r.out, /To fix:\n {2}1\. nginx: .*\n\s+proxy_http_version 1\.1;\n\s+proxy_set_header Upgrade \$http_upgrade;\n\s+proxy_set_header Connection "upgrade";/);
  assert.match(r.out, /Exit code 3: WebSocket fails; herald works over long-poll\./);
  // The headers check shows the evidence: Upgrade never reached herald.
  assert.match(r.out, /^Headers: NOTE — did not arrive: Upgrade/m);
});

test('answering nginx: a 200 to the upgrade is named as the proxy answering instead, exit 3', async () => {
  const r = await through('answering', server);
  assert.equal(r.code, 3, r.out);
  assert.match(r.out, /^WebSocket: FAIL — GET \/herald\/ws with Upgrade: websocket answered 200 OK: the proxy answered instead of passing the upgrade on/m);
  assert.match(r.out, /^Long-poll: OK — /m);
  assert.match(r.out, /herald still works meanwhile/);
});

test('short-timeout nginx: the idle cut and its fix are named, exit 5', async () => {
  const r = await through('short-timeout', server);
  assert.equal(r.code, 5, r.out);
  assert.match(r.out, /^WebSocket: OK — /m);
  assert.match(r.out, /^Idle connections: FAIL — a response held 6 s was cut after (2\.\d|3\.\d) s \(HTTP 504 Gateway Time-out\)/m);
  assert.match(r.out, /held polls wait up to 25 s/);
  assert.match(r.out, /To fix:\n {2}1\. nginx: .*proxy_read_timeout 75s;/);
});

test('buffered nginx: buffering is reported with proxy_buffering off as the recommendation, exit 0', async () => {
  const r = await through('buffered', server);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^WebSocket: OK — /m);
  assert.match(r.out, /^Buffering: NOTE — the first part came only with the last, after 1\.\d s: a proxy buffers answers/m);
  assert.match(r.out, /Recommended:\n(.*\n)*\s+\d\. nginx: `proxy_buffering off;`/);
  assert.match(r.out, /Nothing needs fixing for herald to work/);
});

test('server with --no-websocket: WebSocket is reported switched off on the server, not a network failure, exit 0', async () => {
  const lpOnly = await startServer(['--no-websocket']);
  try {
    const r = await through('good', lpOnly);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^WebSocket: NOTE — switched off on the server: browsers use long-poll \(not a network problem\)/m);
    assert.match(r.out, /^Long-poll: OK — /m);
    assert.match(r.out, /WebSocket is switched off on the server, by its configuration; herald works over long-poll\./);
  } finally {
    await lpOnly.stop();
  }
});

test('nothing listening: "cannot reach", exit 1', async () => {
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
  const r = await doctor(`http://127.0.0.1:${port}`, ['--hold', '0', '--timeout', '2']);
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /^Server: FAIL — cannot reach 127\.0\.0\.1:\d+: connection refused/m);
});

test('a URL the doctor cannot use: exit 64 with the reason', async () => {
  const r = await doctor('ftp://127.0.0.1/', []);
  assert.equal(r.code, 64);
  assert.match(r.err, /the URL must start with http:\/\//);
});
