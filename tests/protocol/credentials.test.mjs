// Credentials that expire (issue 11, 6), against the real server on both transports: the
// server asks for a refresh before the expiry, takes new credentials in-band (WebSocket) or
// with the next poll (long-poll), and ends the session at the expiry when none came. An editor
// revoked in the CMS (no new token minted) stops receiving within the lifetime of the last
// token; a bystander is still served. Then herald.js does the same by itself, and says so.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, publish, client, sleep, WebSocket } from './harness.mjs';
import { connect } from '../../clients/js/herald.js';

const TTL = 5000;   // ms a token lives: refresh asked at ~2.5 s, the session ended by 5 s
const SLACK = 600;  // network and scheduling, on loopback

let server;
before(async () => { server = await startServer(['--heartbeat-ms', '25000']); });
after(async () => { await server.stop(); });

/** Mints a token for `user` as the CMS would; null once the user is revoked. */
async function mint(user, ttl = TTL) {
  const before = Date.now();
  const res = await fetch(`${server.url}/test/token?user=${user}&ttl_ms=${ttl}`, { method: 'POST' });
  if (res.status !== 200) return null;
  return { token: (await res.json()).token, expires: before + ttl };
}
const revoke = (user) => fetch(`${server.url}/test/revoke?user=${user}`, { method: 'POST' });
const withToken = (url, t) => `${url}?access_token=${encodeURIComponent(t.token)}`;

/** A bystander without expiring credentials: must get a publish within 2 s. */
async function bystanderServed(channel) {
  const c = client(`${server.ws}?user=bob`);
  await c.open();
  c.send({ type: 'subscribe', channel, id: 1 });
  await c.frame((f) => f.type === 'subscribed', 2000);
  await publish(server, channel, { to: 'everyone' });
  await c.untilMessages(channel, 1, 2000);
  c.close();
}

test('WebSocket: refresh asked, renewed in-band, then (revoked) ended with 4003 by the expiry; expired token: 401', async () => {
  const ch = 'user.carol.notifications';
  let t = await mint('carol');
  const c = client(withToken(server.ws, t));
  await c.open();
  c.send({ type: 'subscribe', channel: ch, id: 1 });
  await c.frame((f) => f.type === 'subscribed');

  // Asked before the expiry, once, with the time left.
  const ask = await c.frame((f) => f.type === 'refresh', TTL, 'refresh');
  assert.ok(ask.expires_in > 0 && ask.expires_in <= TTL, `expires_in ${ask.expires_in}`);
  assert.ok(Date.now() < t.expires, 'asked before the expiry');

  // Refused: another user's token, an unknown one. Renewed: carol's new token.
  const dave = await mint('dave');
  c.send({ type: 'refresh', token: dave.token, id: 2 });
  assert.equal((await c.frame((f) => f.id === 2)).code, 'unauthenticated');
  c.send({ type: 'refresh', token: 'forged', id: 3 });
  assert.equal((await c.frame((f) => f.id === 3)).code, 'unauthenticated');
  t = await mint('carol');
  c.send({ type: 'refresh', token: t.token, id: 4 });
  const renewed = await c.frame((f) => f.id === 4);
  assert.equal(renewed.type, 'refreshed');
  assert.ok(renewed.expires_in > TTL - SLACK && renewed.expires_in <= TTL, `expires_in ${renewed.expires_in}`);

  // Past the first token's expiry, still served.
  await sleep(Math.max(0, t.expires - TTL / 2 - Date.now()));
  await publish(server, ch, { n: 1 });
  await c.untilMessages(ch, 1, 2000);

  // Revoked in the CMS: no new token. The session ends by the expiry, with its own error and
  // close code, and nothing more is received.
  await revoke('carol');
  assert.equal(await mint('carol'), null);
  await c.frame((f) => f.type === 'refresh' && f !== ask, TTL, 'the second refresh');
  const closed = await c.untilClosed(TTL + SLACK);
  const at = Date.now();
  assert.equal(closed.code, 4003);
  assert.ok(at <= t.expires + SLACK, `closed ${at - t.expires} ms after the expiry`);
  assert.equal(c.frames.filter((f) => f.type === 'error').at(-1).code, 'credentials_expired');
  await publish(server, ch, { n: 2 });
  await sleep(300);
  assert.equal(c.messages(ch).length, 1);

  // The expired token opens nothing: 401, credentials_expired.
  const again = client(withToken(server.ws, t));
  await assert.rejects(again.open(), (e) => e.status === 401);
  const res = await fetch(withToken(`${server.url}/herald/poll`, t), { method: 'POST', body: '{"channels":{},"timeout":0}' });
  assert.equal(res.status, 401);
  assert.equal((await res.json()).frames[0].code, 'credentials_expired');
  await bystanderServed('public.credentials.ws');
});

test('long-poll: a held poll is answered with refresh; the next poll renews; revoked: credentials_expired by the expiry, then 401', async () => {
  const ch = 'user.erin.notifications';
  const poll = async (t, channels, timeout = 25000) => {
    const res = await fetch(withToken(`${server.url}/herald/poll`, t), {
      method: 'POST', body: JSON.stringify({ channels, timeout }),
    });
    return { status: res.status, frames: (await res.json()).frames, at: Date.now() };
  };
  let t = await mint('erin');
  let cursor = null;
  const first = await poll(t, { [ch]: null }, 0);
  assert.equal(first.status, 200);
  const sub = first.frames.find((f) => f.type === 'subscribed');
  cursor = { epoch: sub.epoch, offset: sub.offset };

  // A held poll with nothing to deliver is answered before the expiry, with `refresh`.
  const asked = await poll(t, { [ch]: cursor });
  assert.equal(asked.status, 200);
  assert.deepEqual(asked.frames.map((f) => f.type), ['refresh']);
  assert.ok(asked.at < t.expires, 'answered before the expiry');

  // The next poll carries a new token: held as usual, and a message past the old expiry arrives.
  t = await mint('erin', 2 * TTL);  // asked to refresh only 5 s from now
  const held = poll(t, { [ch]: cursor });
  await sleep(TTL / 2 + 500);
  await publish(server, ch, { n: 1 });
  const got = await held;
  assert.deepEqual(got.frames.map((f) => f.type), ['message']);
  cursor = { epoch: got.frames[0].epoch, offset: got.frames[0].offset };

  // Revoked: the client keeps polling with the token it has, asked each time to refresh,
  // until the answer that ends it, by the expiry.
  await revoke('erin');
  let last, polls = 0;
  const revokedAt = Date.now();
  for (let i = 0; i < 40; i++) {
    last = await poll(t, { [ch]: cursor });
    polls++;
    if (last.status !== 200 || last.frames.some((f) => f.code === 'credentials_expired')) break;
  }
  // A refresh alone answers a poll at its first tick: about one poll a second, never a loop.
  assert.ok(polls <= (Date.now() - revokedAt) / 1000 + 2, `${polls} polls in ${Date.now() - revokedAt} ms`);
  // The end: a held poll answered with the error, or (a poll within a second of the
  // expiry) refused with it.
  assert.ok(last.status === 200 || last.status === 401, `status ${last.status}`);
  assert.equal(last.frames.at(-1).code, 'credentials_expired');
  assert.ok(last.at <= t.expires + SLACK, `answered ${last.at - t.expires} ms after the expiry`);
  await publish(server, ch, { n: 2 });
  const after = await poll(t, { [ch]: cursor }, 0);  // within a second of the expiry, or past it
  assert.equal(after.status, 401);
  assert.equal(after.frames[0].code, 'credentials_expired');
  await bystanderServed('public.credentials.lp');
});

for (const transports of [['websocket'], ['longpoll']]) {
  test(`herald.js over ${transports[0]}: renews by itself through accessToken; revoked: state 'expired' by the expiry, nothing after`, async () => {
    const ch = `user.frank-${transports[0]}.notifications`;
    const user = `frank-${transports[0]}`;
    let expires = 0, asked = 0;
    const states = [];
    const herald = connect({
      url: server.url, transports, WebSocket, minDelay: 50,
      accessToken: async () => {
        asked++;
        const t = await mint(user);
        if (t) expires = t.expires;
        return t?.token ?? null;
      },
    });
    herald.on('state', ({ state, reason }) => states.push({ state, reason, at: Date.now() }));
    const got = [];
    herald.subscribe(ch, (data) => got.push(data.n));
    try {
      const deadline = Date.now() + 10000;
      while (herald.state !== 'open' && Date.now() < deadline) await sleep(50);
      assert.equal(herald.state, 'open');
      await sleep(200);  // subscribed

      // Two lifetimes of tokens: renewed by itself, delivery goes on.
      for (let n = 1; n <= 4; n++) {
        await sleep(TTL / 2);
        await publish(server, ch, { n });
      }
      const until = Date.now() + 3000;
      while (got.length < 4 && Date.now() < until) await sleep(50);
      assert.deepEqual(got, [1, 2, 3, 4]);
      assert.ok(asked >= 3, `accessToken asked ${asked} times`);
      assert.deepEqual(states.map((s) => s.state), ['connecting', 'open'], `renewed without a reconnect: ${JSON.stringify(states)}`);

      // Revoked: the client goes 'expired' by the last token's expiry, and receives nothing;
      // meanwhile it asks the app about once a second at most (a refresh per poll answer).
      await revoke(user);
      const askedBefore = asked, revokedAt = Date.now();
      const end = Date.now() + TTL + 2 * SLACK;
      while (herald.state !== 'expired' && Date.now() < end) await sleep(50);
      assert.equal(herald.state, 'expired', JSON.stringify(states.slice(-3)));
      assert.ok(asked - askedBefore <= (Date.now() - revokedAt) / 1000 + 3, `accessToken asked ${asked - askedBefore} times`);
      const expiredAt = states.find((s) => s.state === 'expired').at;
      assert.ok(expiredAt <= expires + SLACK, `expired ${expiredAt - expires} ms after the expiry`);
      await publish(server, ch, { n: 5 });
      await sleep(500);
      assert.deepEqual(got, [1, 2, 3, 4]);
      await assert.rejects(herald.publish('public.chat', { text: 'hi' }), (e) => e.code === 'expired');
    } finally {
      herald.close();
    }
    await bystanderServed(`public.credentials.js-${transports[0]}`);
  });
}
