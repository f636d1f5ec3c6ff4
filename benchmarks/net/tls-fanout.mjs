// The cost of TLS in herald: the same fan-out to N WebSocket subscribers over ws and over wss,
// servers interleaved in one run, herald-test-server's CPU read from /proc (the Node client's
// own decryption is not counted). Also the server CPU of N TLS handshakes.
//   HERALD_TEST_SERVER=build/tests/protocol/herald-test-server node benchmarks/net/tls-fanout.mjs [clients] [messages] [rounds] [burst]
// burst: messages per publish request (50: bursts, frames share records; 1: one frame per
// record per subscriber, TLS's worst case).
import fs from 'node:fs';
import os from 'node:os';
import { startServer, client, selfSignedCertificate, httpsRequest } from '../../tests/protocol/harness.mjs';

const clients = Number(process.argv[2] || 1000);
const messages = Number(process.argv[3] || 1000);
const rounds = Number(process.argv[4] || 2);
const burst = Number(process.argv[5] || 50);
const tick = 100;  // USER_HZ
const cpu = (pid) => { const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) / tick; };
const cert = selfSignedCertificate();

async function run(tls) {
  // Every client is on 127.0.0.1: no per-address cap (as behind a proxy).
  const server = await startServer(['--queue', String(messages + 100), '--history', '10', '--max-connections-per-address', '0',
                                    ...(tls ? ['--tls-cert', cert.cert, '--tls-key', cert.key] : [])]);
  const pid = server.child.pid;
  const opts = tls ? { ca: cert.ca, perMessageDeflate: false } : { perMessageDeflate: false };
  const c0 = cpu(pid);
  const subs = [];
  for (let i = 0; i < clients; i += 50) {
    const batch = Array.from({ length: Math.min(50, clients - i) }, () => client(`${server.ws}?user=u`, opts));
    await Promise.all(batch.map((c) => c.open()));
    subs.push(...batch);
  }
  const c1 = cpu(pid);
  let got = 0;
  for (const c of subs) c.ws.on('message', () => { got++; });
  for (const c of subs) c.send({ type: 'subscribe', channel: 'public.bench' });
  await Promise.all(subs.map((c) => c.frame((f) => f.type === 'subscribed', 20000)));
  got = 0;
  const pub = (p) => tls ? httpsRequest(`${server.url}${p}`, { method: 'POST', body: '', ca: cert.ca })
                         : fetch(`${server.url}${p}`, { method: 'POST', body: '' });
  const c2 = cpu(pid);
  const t0 = process.hrtime.bigint();
  for (let sent = 0; sent < messages; sent += burst) await pub(`/test/publish?channel=public.bench&n=${burst}`);
  const want = clients * messages;
  while (got < want) {
    await new Promise((r) => setTimeout(r, 20));
    if (Number(process.hrtime.bigint() - t0) > 120e9) throw new Error(`only ${got} of ${want} delivered`);
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const c3 = cpu(pid);
  for (const c of subs) c.ws.terminate();
  await server.stop();
  return { tls, handshakeCpuMs: (c1 - c0) * 1000, secs, perSec: want / secs, cpu: c3 - c2, usPerDelivery: ((c3 - c2) * 1e6) / want };
}

const results = { ws: [], wss: [] };
for (let r = 0; r < rounds; r++) for (const tls of [false, true]) results[tls ? 'wss' : 'ws'].push(await run(tls));
cert.remove();
const med = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
console.log(`# ${clients} subscribers, ${messages} messages of ~60 bytes each in bursts of ${burst}, ${rounds} rounds; ${os.cpus().length} cores, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
console.log('| transport | deliveries/s | server CPU µs per delivery | server CPU s | connect CPU ms (all) |');
console.log('|---|---:|---:|---:|---:|');
for (const k of ['ws', 'wss']) {
  const rs = results[k];
  console.log(`| ${k} | ${(med(rs.map((x) => x.perSec)) / 1000).toFixed(1)} k | ${med(rs.map((x) => x.usPerDelivery)).toFixed(2)} | ${med(rs.map((x) => x.cpu)).toFixed(2)} | ${med(rs.map((x) => x.handshakeCpuMs)).toFixed(0)} |`);
}
process.exit(0);
