// What the cluster's network tests share: a throwaway Redis on loopback, publishing through
// a test server, waiting for a condition.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { sleep, freePort } from '../protocol/harness.mjs';

const redisBinary = process.env.HERALD_REDIS || '/usr/bin/redis-server';

export async function startRedis(port) {
  port ??= await freePort();
  const child = spawn(redisBinary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' });
  const exited = new Promise((r) => child.on('exit', r));
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) break;
    await sleep(50);
  }
  return { port, async stop() { child.kill('SIGKILL'); await exited; } };
}

export async function publishVia(url, channel, data) {
  const res = await fetch(`${url}/test/publish?channel=${channel}`, { method: 'POST', body: JSON.stringify(data) });
  if (!res.ok) throw Object.assign(new Error(`publish ${res.status}`), { status: res.status });
  return res.json();
}

export async function waitFor(pred, ms, what) {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export const range = (n) => Array.from({ length: n }, (_, i) => i + 1);
