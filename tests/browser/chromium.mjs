// Debian's headless Chromium, driven by playwright-core, as every browser test launches it.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../js/package.json', import.meta.url));
const { chromium } = require('playwright-core');

/** Launches Chromium with the flags that keep it quiet and offline; `args`: more flags. */
export function launchChromium(args = []) {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
           '--no-first-run', '--disable-component-update', '--disable-sync', ...args],
  });
}

/**
 * Opens the CMS demo at `base` as `user` in a new browser context, and waits until its herald
 * connection is open. Returns the page, its context, and what its console said.
 */
export async function openDemo(browser, base, user = 'alice') {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  await page.goto(`${base}/login?user=${user}`);
  await page.waitForFunction(() => window.demo?.state === 'open', null, { timeout: 10000 });
  return { page, context, logs };
}
