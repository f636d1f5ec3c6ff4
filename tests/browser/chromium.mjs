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
