// The CMS demo in headless Chromium, as an editor sees it: live updates, a network blip, a
// server restart, WebSocket switched off, and a screenshot checked pixel by pixel.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { launchChromium, openDemo } from './chromium.mjs';
import { startServer, tcpProxy, sleep, freePort } from '../protocol/harness.mjs';
import { decodePng, countPixels } from './png.mjs';
import { startNginx } from '../proxy/nginx.mjs';


const demoBinary = process.env.HERALD_DEMO;
const artifacts = process.env.HERALD_ARTIFACTS || '.';
let browser;

before(async () => {
  browser = await launchChromium();
});
after(async () => { await browser?.close(); });

// HERALD_DEMO_ARGS: more arguments for every demo, e.g. "--postgres postgresql://..." to run
// these tests on the CMS's PostgreSQL store and herald's outbox (by hand: CTest runs the default).
const extraArgs = (process.env.HERALD_DEMO_ARGS || '').split(' ').filter(Boolean);
const demo = (args = []) => startServer(['--interval-ms', '0', '--heartbeat-ms', '2000', ...extraArgs, ...args], demoBinary);

const open = (base, user) => openDemo(browser, base, user);

/** Another editor's change, made through the CMS's API on `base`. */
async function setStatus(base, project, item, status, user = 'bob') {
  const res = await fetch(`${base}/api/status`, {
    method: 'POST', headers: { Cookie: `cms_user=${user}` }, body: JSON.stringify({ project, item, status }),
  });
  assert.equal(res.status, 200);
}

const statusOf = (page, project, item) => page.$eval(`#item-${project}-${item} .status`, (e) => e.textContent);

test('a change published on the server shows on the page within 1 s', async () => {
  const server = await demo();
  const { page, context, logs } = await open(server.url);
  try {
    assert.equal(await page.evaluate(() => window.demo.transport), 'websocket');
    assert.deepEqual(logs.filter((l) => /^(error|warning|pageerror)/.test(l)), [], 'a clean console (the favicon is there)');
    const next = (await statusOf(page, 1, 2)) === 'approved' ? 'published' : 'approved';
    const t0 = Date.now();
    await setStatus(server.url, 1, 2, next);
    await page.waitForFunction(([s]) => document.querySelector('#item-1-2 .status')?.textContent === s, [next], { timeout: 1000 });
    const ms = Date.now() - t0;
    // bob's edit notifies alice: her own channel, which bob's page does not follow.
    await page.waitForFunction(() => document.querySelector('#notifications li')?.textContent.includes('bob set'), null, { timeout: 1000 });
    console.log(`# publish → page: ${ms} ms`);
  } finally {
    await context.close();
    await server.stop();
  }
});

test('a network blip: the page reconnects by itself and shows what it missed, without a resync', async () => {
  const server = await demo();
  const proxy = await tcpProxy(server.port);
  const { page, context } = await open(proxy.url);
  try {
    await proxy.cut();
    await page.waitForFunction(() => window.demo.state !== 'open', null, { timeout: 10000 });
    const statuses = ['draft', 'in review', 'approved'];
    for (const [i, s] of statuses.entries()) await setStatus(server.url, 3, i + 1, s);
    await sleep(300);
    await proxy.restore();
    await page.waitForFunction(() => window.demo.state === 'open', null, { timeout: 15000 });
    for (const [i, s] of statuses.entries())
      await page.waitForFunction(([id, st]) => document.querySelector(`#item-3-${id} .status`)?.textContent === st, [i + 1, s], { timeout: 3000 });
    assert.equal(await page.evaluate(() => window.demo.resyncs), 0, 'resumed from the cursor (same epoch), not resynced');
  } finally {
    await context.close();
    await proxy.close();
    await server.stop();
  }
});

test('a server restart: the page reconnects by itself and resyncs (new epoch)', async () => {
  const port = await freePort();
  let server = await demo(['--port', String(port)]);
  const { page, context } = await open(server.url);
  try {
    const { code } = await server.stop();  // drains: the page is told to come back later
    assert.equal(code, 0);
    server = await demo(['--port', String(port)]);
    await page.waitForFunction(() => window.demo.state === 'open' && window.demo.resyncs > 0, null, { timeout: 20000 });
    await setStatus(server.url, 2, 1, 'in review');
    await page.waitForFunction(() => document.querySelector('#item-2-1 .status')?.textContent === 'in review', null, { timeout: 2000 });
  } finally {
    await context.close();
    await server.stop();
  }
});

test('WebSocket switched off: the page goes straight to long-poll, with no WebSocket error anywhere', async () => {
  const server = await demo(['--no-websocket']);
  const { page, context, logs } = await open(server.url);
  try {
    assert.equal(await page.evaluate(() => window.demo.transport), 'longpoll');
    await setStatus(server.url, 1, 1, 'approved');
    await page.waitForFunction(() => document.querySelector('#item-1-1 .status')?.textContent === 'approved', null, { timeout: 1500 });
    assert.equal(await page.textContent('#connection-text'), 'Live · Long-poll — the server offers no WebSocket');
    assert.deepEqual(logs.filter((l) => /websocket|ws:\/\//i.test(l)), []);
  } finally {
    await context.close();
    await server.stop();
  }
});

for (const transport of ['websocket', 'longpoll']) {
  test(`signed out in another tab (${transport}): the open page stops receiving by its token's expiry, and says so`, async () => {
    const ttl = 4000;
    const server = await demo(['--token-ttl-ms', String(ttl), ...(transport === 'longpoll' ? ['--no-websocket'] : [])]);
    const { page, context } = await open(server.url);
    try {
      assert.equal(await page.evaluate(() => window.demo.transport), transport);
      // Two token lifetimes: the page renews by itself and stays live.
      await sleep(2 * ttl);
      await setStatus(server.url, 1, 2, 'in review');
      await page.waitForFunction(() => document.querySelector('#item-1-2 .status')?.textContent === 'in review', null, { timeout: 1500 });
      assert.equal(await page.evaluate(() => window.demo.state), 'open');

      // Sign out in a second tab of the same browser: the CMS gives this editor no new token.
      const other = await context.newPage();
      await other.goto(`${server.url}/logout`);
      const t0 = Date.now();
      await page.waitForFunction(() => window.demo.state === 'expired', null, { timeout: ttl + 2000 });
      assert.ok(Date.now() - t0 <= ttl + 1000, `expired ${Date.now() - t0} ms after the sign-out`);
      assert.match(await page.textContent('#connection-text'), /^Signed out/);
      await setStatus(server.url, 1, 2, 'approved');
      await sleep(1000);
      assert.equal(await statusOf(page, 1, 2), 'in review', 'nothing arrives after the expiry');
      const file = path.join(artifacts, `cms-demo-signed-out-${transport}.png`);
      await page.screenshot({ path: file });
      const pill = decodePng(await page.locator('#connection').screenshot());
      const red = countPixels(pill, ([r, g, b]) => r > 180 && g < 80 && b < 80);
      assert.ok(red >= 20, `red dot in the indicator (${red} px)`);
    } finally {
      await context.close();
      await server.stop();
    }
  });
}

test('the screenshot shows the demo: three projects, notifications, and a green "Live" indicator', async () => {
  const server = await demo();
  const { page, context } = await open(server.url);
  try {
    await setStatus(server.url, 1, 3, 'published');
    await page.waitForFunction(() => document.querySelectorAll('#notifications li').length > 0, null, { timeout: 2000 });
    const file = path.join(artifacts, 'cms-demo.png');
    await page.screenshot({ path: file });
    const shot = decodePng(fs.readFileSync(file));
    assert.deepEqual([shot.width, shot.height], [1280, 800]);
    // The page is not blank: a good part of it is neither background nor white.
    const ink = countPixels(shot, ([r, g, b]) => r < 120 && g < 120 && b < 140);
    assert.ok(ink > 5000, `text on the page (${ink} dark pixels)`);
    // The connection pill: its dot is green (#1fa855) once live.
    const pill = decodePng(await page.locator('#connection').screenshot());
    const green = countPixels(pill, ([r, g, b]) => g > 140 && r < 80 && b < 120);
    assert.ok(green >= 20, `green dot in the indicator (${green} px)`);
    assert.match(await page.textContent('#connection-text'), /^Live · WebSocket$/);
    assert.equal(await page.locator('.project').count(), 3);
  } finally {
    await context.close();
    await server.stop();
  }
});

test('behind an nginx that drops Upgrade: every update over long-poll, 0 lost; a restart is recovered by itself', async () => {
  const port = await freePort();
  let server = await demo(['--port', String(port)]);
  const proxy = await startNginx('stripped', port);
  const { page, context } = await open(proxy.url);
  try {
    await page.waitForFunction(() => window.demo.transport === 'longpoll' && window.demo.state === 'open', null, { timeout: 15000 });
    assert.match(await page.evaluate(() => window.demo.reason || ''), /.+/, 'the page says why it is not on WebSocket');
    // …in words an editor understands, on the connection pill.
    assert.equal(await page.textContent('#connection-text'), 'Live · Long-poll — a proxy on the way does not pass WebSockets through');
    const before = await page.evaluate(() => window.demo.updates);
    const statuses = ['draft', 'in review', 'approved', 'published'];
    for (let i = 0; i < 20; i++) await setStatus(server.url, 1 + (i % 3), 1 + (i % 2), statuses[i % 4]);
    // Each of bob's edits is a project update and a notification for alice: 40 updates.
    await page.waitForFunction((n) => window.demo.updates >= n, before + 40, { timeout: 10000 });
    await sleep(500);
    assert.equal(await page.evaluate(() => window.demo.updates), before + 40, 'every update once');

    await server.stop();                                  // (c) the server restarts behind the proxy
    server = await demo(['--port', String(port)]);
    await page.waitForFunction(() => window.demo.state === 'open' && window.demo.resyncs > 0, null, { timeout: 20000 });
    await setStatus(server.url, 3, 3, 'draft');
    await page.waitForFunction(() => document.querySelector('#item-3-3 .status')?.textContent === 'draft', null, { timeout: 3000 });
  } finally {
    await context.close();
    await proxy.stop();
    await server.stop();
  }
});
