// Presence in the CMS demo, in headless Chromium: alice and bob in two browser contexts, on two
// demo servers sharing one Redis, see "also here" on every project, live: each other's arrival,
// and bob's departure (his page closed).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../protocol/harness.mjs';
import { startRedis } from '../cluster/support.mjs';
import { launchChromium, openDemo } from './chromium.mjs';

let browser, redis;
before(async () => {
  redis = await startRedis();
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await redis?.stop();
});

const demo = () => startServer(['--interval-ms', '0', '--heartbeat-ms', '2000', '--redis', `127.0.0.1:${redis.port}`],
  process.env.HERALD_DEMO);

const open = (base, user) => openDemo(browser, base, user);

/** The "also here" line of every project on `page`, '' where it is hidden. */
const alsoHere = (page) => page.$$eval('.project .here', (els) => els.map((e) => (e.hidden ? '' : e.textContent)));

test('two editors on two servers on one Redis see each other join and leave, on every project', async () => {
  const [a, b] = [await demo(), await demo()];
  let alice, bob;
  try {
    alice = await open(a.url, 'alice');
    const projects = (await alsoHere(alice.page)).length;
    assert.ok(projects >= 3, `the demo shows its projects (${projects})`);
    assert.deepEqual(await alsoHere(alice.page), Array(projects).fill(''), 'alone: no line');

    const t0 = Date.now();
    bob = await open(b.url, 'bob');
    const everywhere = (text) => [...document.querySelectorAll('.project .here')].every((e) => !e.hidden && e.textContent === text);
    await alice.page.waitForFunction(everywhere, 'also here: Bob', { timeout: 5000 });
    await bob.page.waitForFunction(everywhere, 'also here: Alice', { timeout: 5000 });
    console.log(`# presence: bob's page open → "also here: Bob" on alice's page in ${Date.now() - t0} ms (two servers, one Redis)`);
    assert.equal(await alice.page.evaluate(() => window.demo.herald.protocol), 'herald.v2');

    const t1 = Date.now();
    await bob.context.close();
    bob = null;
    // He may be back in a moment (a reload, a blip): he is told gone once the linger (5 s by
    // default, presence_options::linger) is over, at the next sweep (1 s).
    await alice.page.waitForFunction(() => [...document.querySelectorAll('.project .here')].every((e) => e.hidden), null, { timeout: 9000 });
    const gone = Date.now() - t1;
    console.log(`# presence: bob's page closed → gone from alice's page in ${gone} ms (linger 5 s)`);
    assert.ok(gone >= 4500, `not before the linger (${gone} ms)`);
    assert.deepEqual(alice.logs.filter((l) => /^(error|warning|pageerror)/.test(l)), [], 'a clean console');
  } finally {
    await alice?.context.close();
    await bob?.context.close();
    await a.stop();
    await b.stop();
  }
});
