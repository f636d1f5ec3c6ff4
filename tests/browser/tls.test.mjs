// The CMS demo over https in headless Chromium (a self-signed certificate, so
// --ignore-certificate-errors): updates arrive over wss, and over long-poll on https when
// WebSocket is switched off.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium } from './chromium.mjs';
import { startServer, selfSignedCertificate, httpsRequest } from '../protocol/harness.mjs';


const demoBinary = process.env.HERALD_DEMO;
let browser;
let cert;

before(async () => {
  cert = selfSignedCertificate();
  browser = await launchChromium(['--ignore-certificate-errors']);
});
after(async () => { await browser?.close(); cert?.remove(); });

const demo = (args = []) => startServer(['--interval-ms', '0', '--heartbeat-ms', '2000', '--port', '0',
                                         '--tls-cert', cert.cert, '--tls-key', cert.key, ...args], demoBinary);

async function setStatus(base, project, item, status, user = 'bob') {
  const res = await httpsRequest(`${base}/api/status`, {
    method: 'POST', ca: cert.ca, headers: { Cookie: `cms_user=${user}` }, body: JSON.stringify({ project, item, status }),
  });
  assert.equal(res.status, 200, res.body);
}

async function seesUpdate(args, transport, urlScheme) {
  const server = await demo(args);
  assert.match(server.url, /^https:/);
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('websocket', (ws) => requests.push(ws.url()));
  try {
    await page.goto(`${server.url}/login?user=alice`);
    await page.waitForFunction(() => window.demo?.state === 'open', null, { timeout: 10000 });
    assert.equal(await page.evaluate(() => location.protocol), 'https:');
    assert.equal(await page.evaluate(() => window.demo.transport), transport);
    const next = (await page.$eval('#item-1-2 .status', (e) => e.textContent)) === 'approved' ? 'published' : 'approved';
    await setStatus(server.url, 1, 2, next);
    await page.waitForFunction(([s]) => document.querySelector('#item-1-2 .status')?.textContent === s, [next], { timeout: 2000 });
    assert.ok(requests.some((u) => u.startsWith(urlScheme)), `the page used ${urlScheme} (${requests.slice(-5).join(' ')})`);
    assert.ok(!requests.some((u) => /^(http|ws):/.test(u)), 'nothing in the clear');
  } finally {
    await context.close();
    assert.equal((await server.stop()).code, 0);
  }
}

test('the demo over https: updates arrive over wss', () => seesUpdate([], 'websocket', 'wss://'));
test('the demo over https with WebSocket off: updates arrive over long-poll on https', () =>
  seesUpdate(['--no-websocket'], 'longpoll', 'https://'));
