// herald.v1 over WebSocket, against the real server, with a client that is not herald's own
// (Node's `ws`) and raw TCP where a broken client is needed. Every bad input of the security
// list gets its expected answer, and the other clients are unaffected.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, publish, client, raw, sleep } from './harness.mjs';

let server;
let bystander;  // a well-behaved client that must see every message while others misbehave

before(async () => {
  server = await startServer(['--heartbeat-ms', '1000', '--max-bytes', '4096', '--queue', '1000', '--history', '100000']);
  bystander = client(server.ws + '?user=carol');
  await bystander.open();
  bystander.send({ type: 'subscribe', channel: 'public.bystander' });
  await bystander.frame((f) => f.type === 'subscribed');
});

after(async () => {
  // The bystander saw every message published to its channel during the whole run, in order.
  const r = await publish(server, 'public.bystander', { last: true });
  const got = await bystander.untilMessages('public.bystander', r.offset);
  assert.deepEqual(got.map((m) => m.offset), Array.from({ length: r.offset }, (_, i) => i + 1));
  bystander.close();
  const { code } = await server.stop();
  assert.equal(code, 0, 'the server exits cleanly after a drain');
});

const tick = () => publish(server, 'public.bystander', { at: Date.now() });

test('handshake: herald.v1 is negotiated and welcome comes first, naming the transports', async () => {
  const c = client(server.ws);
  await c.open();
  assert.equal(c.ws.protocol, 'herald.v1');
  const welcome = await c.frame((f) => f.type === 'welcome');
  assert.equal(c.frames[0].type, 'welcome');
  assert.equal(welcome.protocol, 'herald.v1');
  assert.equal(welcome.heartbeat, 1000);
  assert.ok(welcome.transports.includes('websocket'));
  assert.match(welcome.session, /^[0-9a-z]+$/);
  c.close();
});

test('a client offering no subprotocol is served too, in herald.v1', async () => {
  const c = client(server.ws, { protocols: [] });
  await c.open();
  assert.equal(c.ws.protocol, '');
  assert.equal((await c.frame((f) => f.type === 'welcome')).protocol, 'herald.v1');
  c.close();
});

test('versions: the newest the client offers and the server speaks, in any order of the offer', async () => {
  for (const [offered, expected] of [[['herald.v2', 'herald.v1'], 'herald.v2'], [['herald.v1', 'herald.v2'], 'herald.v2'],
    [['herald.v9', 'herald.v1'], 'herald.v1'], [['herald.v2'], 'herald.v2']]) {
    const c = client(server.ws, { protocols: offered });
    await c.open();
    assert.equal(c.ws.protocol, expected, String(offered));
    assert.equal((await c.frame((f) => f.type === 'welcome')).protocol, expected);
    c.close();
  }
});

test('versions: an offer of none this server knows is refused with 400 naming the ones it speaks; a bystander is served', async () => {
  const bystander = client(server.ws, { protocols: ['herald.v2', 'herald.v1'] });
  await bystander.open();
  bystander.send({ type: 'subscribe', channel: 'public.bystander', id: 1 });
  await bystander.frame((f) => f.type === 'subscribed' && f.id === 1);
  const c = client(server.ws, { protocols: ['herald.v9', 'chat'] });
  let headers;
  c.ws.once('unexpected-response', (req, res) => { headers = res.headers; });
  await assert.rejects(c.open(), (e) => e.status === 400);
  assert.equal(headers['sec-websocket-protocol'], 'herald.v2, herald.v1');
  await tick();
  await bystander.untilMessages('public.bystander', 1);
  bystander.close();
});

test('subscribe, then messages in offset order, each once; unsubscribe stops them', async () => {
  const c = client(server.ws);
  await c.open();
  c.send({ type: 'subscribe', channel: 'public.order', id: 1 });
  const sub = await c.frame((f) => f.type === 'subscribed' && f.id === 1);
  assert.equal(sub.recovered, true);
  await publish(server, 'public.order', undefined, 200);
  const msgs = await c.untilMessages('public.order', 200);
  assert.deepEqual(msgs.map((m) => m.offset), Array.from({ length: 200 }, (_, i) => sub.offset + i + 1));
  assert.deepEqual(msgs[5].data, { i: 5 });
  assert.ok(msgs.every((m) => m.epoch === sub.epoch));
  c.send({ type: 'unsubscribe', channel: 'public.order', id: 2 });
  await c.frame((f) => f.type === 'unsubscribed' && f.id === 2);
  await publish(server, 'public.order', { after: true });
  await tick();
  await sleep(100);
  assert.equal(c.messages('public.order').length, 200);
  c.close();
});

test('resume: since a cursor replays what was missed, with no gap and no duplicate', async () => {
  const a = client(server.ws);
  await a.open();
  a.send({ type: 'subscribe', channel: 'public.resume' });
  await a.frame((f) => f.type === 'subscribed');
  await publish(server, 'public.resume', undefined, 10);
  const seen = await a.untilMessages('public.resume', 10);
  const cursor = { epoch: seen[9].epoch, offset: seen[9].offset };
  a.close();
  await publish(server, 'public.resume', undefined, 15);  // missed while away

  const b = client(server.ws);
  await b.open();
  b.send({ type: 'subscribe', channel: 'public.resume', since: cursor });
  const sub = await b.frame((f) => f.type === 'subscribed');
  assert.equal(sub.recovered, true);
  await publish(server, 'public.resume', undefined, 5);  // live after the replay
  const msgs = await b.untilMessages('public.resume', 20);
  assert.deepEqual(msgs.map((m) => m.offset), Array.from({ length: 20 }, (_, i) => cursor.offset + i + 1));
  // `subscribed` comes before the replayed messages.
  assert.ok(b.frames.indexOf(sub) < b.frames.indexOf(msgs[0]));
  b.close();
});

test('resume from another epoch (history lost) answers recovered:false and replays nothing', async () => {
  const c = client(server.ws);
  await c.open();
  c.send({ type: 'subscribe', channel: 'public.epoch', since: { epoch: 'gone', offset: 3 } });
  const sub = await c.frame((f) => f.type === 'subscribed');
  assert.equal(sub.recovered, false);
  assert.notEqual(sub.epoch, 'gone');
  c.close();
});

test('origin not on the allowlist: 403 before the upgrade', async () => {
  const c = client(server.ws, { origin: 'http://evil.example' });
  await assert.rejects(c.open(), (e) => e.status === 403);
  // The server's own origin is allowed.
  const ok = client(server.ws, { origin: `http://127.0.0.1:${server.port}` });
  await ok.open();
  ok.close();
});

test('origin compared by scheme, host and port: https vs http, another port, null get 403', async () => {
  for (const origin of [`https://127.0.0.1:${server.port}`, `http://127.0.0.1:${server.port + 1}`, 'http://127.0.0.1', 'null',
    `ftp://127.0.0.1:${server.port}`]) {
    const c = client(server.ws, { origin });
    await assert.rejects(c.open(), (e) => e.status === 403, origin);
  }
  // Case of scheme and host does not matter.
  const ok = client(server.ws, { origin: `HTTP://127.0.0.1:${server.port}` });
  await ok.open();
  ok.close();
});

test('an anonymous page publishing into another user\'s channel gets forbidden; that user is still served', async () => {
  const bob = client(server.ws + '?user=bob');
  await bob.open();
  bob.send({ type: 'subscribe', channel: 'user.bob.notifications', id: 1 });
  await bob.frame((f) => f.type === 'subscribed');
  const page = client(server.ws);
  await page.open();
  page.send({ type: 'publish', channel: 'user.bob.notifications', data: { text: 'forged' }, id: 9 });
  const err = await page.frame((f) => f.type === 'error');
  assert.deepEqual([err.code, err.channel, err.id], ['forbidden', 'user.bob.notifications', 9]);
  await publish(server, 'user.bob.notifications', { text: 'real' });
  const [m] = await bob.untilMessages('user.bob.notifications', 1);
  assert.deepEqual(m.data, { text: 'real' });
  await sleep(100);
  assert.equal(bob.messages('user.bob.notifications').length, 1);
  page.close();
  bob.close();
});

test('authentication refused: 401 before the upgrade', async () => {
  const c = client(server.ws + '?user=nobody');
  await assert.rejects(c.open(), (e) => e.status === 401);
});

test('subscribe refused by the authorizer: an error frame naming the channel; the connection stays up', async () => {
  const c = client(server.ws + '?user=alice');
  await c.open();
  c.send({ type: 'subscribe', channel: 'user.bob.notifications', id: 7 });
  const err = await c.frame((f) => f.type === 'error');
  assert.deepEqual([err.code, err.channel, err.id], ['forbidden', 'user.bob.notifications', 7]);
  c.send({ type: 'subscribe', channel: 'user.alice.notifications', id: 8 });
  await c.frame((f) => f.type === 'subscribed' && f.id === 8);
  await publish(server, 'user.alice.notifications', { text: 'hi alice' });
  await publish(server, 'user.bob.notifications', { text: 'hi bob' });
  const [m] = await c.untilMessages('user.alice.notifications', 1);
  assert.deepEqual(m.data, { text: 'hi alice' });
  assert.equal(c.messages('user.bob.notifications').length, 0);
  c.close();
});

test('malformed JSON, unknown type, invalid channel, bad since: an error frame each, the connection stays up', async () => {
  const c = client(server.ws);
  await c.open();
  const cases = [
    ['{not json', 'malformed_frame'],
    ['[1,2,3]', 'malformed_frame'],
    ['{"type":"shout"}', 'unknown_frame_type'],
    ['{"type":"subscribe","channel":"has space"}', 'invalid_channel'],
    ['{"type":"subscribe","channel":"public.x","since":{"epoch":1}}', 'malformed_frame'],
    ['{"type":"unsubscribe","channel":"public.never"}', 'not_subscribed'],
    ['{"type":"publish","channel":"public.locked","data":1}', 'forbidden'],
    // Nested past the limit: refused before anything is built (it used to overflow the stack).
    [`{"type":"publish","channel":"public.locked","data":${'['.repeat(2000)}${']'.repeat(2000)}}`, 'malformed_frame'],
  ];
  for (const [text] of cases) c.send(text);
  await c.frame(() => c.frames.filter((f) => f.type === 'error').length >= cases.length ? true : null);
  assert.deepEqual(c.frames.filter((f) => f.type === 'error').map((f) => f.code), cases.map(([, code]) => code));
  c.send({ type: 'publish', channel: 'public.chat', data: { text: 'allowed' }, id: 3 });
  const ack = await c.frame((f) => f.type === 'published');
  assert.equal(ack.id, 3);
  assert.equal(c.closed, null);
  c.close();
});

test('a frame over the inbound limit closes with 1009', async () => {
  const c = client(server.ws);
  await c.open();
  c.send(JSON.stringify({ type: 'publish', channel: 'public.chat', data: 'x'.repeat(5000) }));
  const { code } = await c.untilClosed();
  assert.equal(code, 1009);
  await tick();
});

test('a binary frame closes with 1003', async () => {
  const c = client(server.ws);
  await c.open();
  c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
  assert.equal((await c.untilClosed()).code, 1003);
});

test('invalid UTF-8 in a text frame closes with 1007', async () => {
  const c = client(server.ws);
  await c.open();
  c.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
  assert.equal((await c.untilClosed()).code, 1007);
});

function frame(opcode, payload, { mask = true } = {}) {
  const len = payload.length;
  const head = [0x80 | opcode, (mask ? 0x80 : 0) | (len < 126 ? len : 126)];
  const ext = len < 126 ? [] : [len >> 8, len & 0xff];
  const key = mask ? [1, 2, 3, 4] : [];
  const body = Buffer.from(payload).map((b, i) => (mask ? b ^ key[i % 4] : b));
  return Buffer.concat([Buffer.from([...head, ...ext, ...key]), body]);
}

async function rawUpgrade() {
  const r = raw(server.port);
  r.write(`GET /herald/ws HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  await r.until((d) => d.includes('\r\n\r\n'));
  assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 101 /);
  assert.match(r.data.toString('latin1'), /Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/);
  return r;
}

function closeCode(data) {
  // Finds the server's close frame (opcode 8) after the HTTP head and returns its status code.
  for (let i = data.indexOf('\r\n\r\n') + 4; i > 3 && i + 3 < data.length;) {
    const op = data[i] & 0x0f;
    let len = data[i + 1] & 0x7f, off = 2;
    if (len === 126) { len = data.readUInt16BE(i + 2); off = 4; }
    if (op === 8) return data.readUInt16BE(i + off);
    i += off + len;
  }
  return null;
}

test('an unmasked client frame (protocol violation) closes with 1002', async () => {
  const r = await rawUpgrade();
  r.write(frame(1, '{"type":"pong"}', { mask: false }));
  await r.until((d) => closeCode(d) !== null);
  assert.equal(closeCode(r.data), 1002);
});

test('a silent client gets herald pings, then is closed with 4000 after two heartbeats', async () => {
  const r = await rawUpgrade();
  const t0 = Date.now();
  await r.until((d) => d.includes('"type":"ping"'), 4000);
  await r.until((d) => closeCode(d) !== null, 6000);
  assert.equal(closeCode(r.data), 4000);
  assert.ok(Date.now() - t0 >= 2000, 'not before two heartbeats');
});

test('a heartbeat below the 1 s tick is raised to 1 s, and welcome announces what the server keeps', async () => {
  const fast = await startServer(['--heartbeat-ms', '400']);
  try {
    const c = client(fast.ws);
    await c.open();
    assert.equal((await c.frame((f) => f.type === 'welcome')).heartbeat, 1000);
    c.close();
  } finally {
    await fast.stop();
  }
});

test('a client that only listens is kept alive by WebSocket pings (browsers answer them)', async () => {
  const c = client(server.ws);  // `ws` answers WebSocket pings, like a browser
  await c.open();
  c.ws.removeAllListeners('message');  // ...but never sends a herald pong
  await sleep(3500);                   // > 2 heartbeats + 1 s
  assert.equal(c.closed, null);
  c.close();
});

test('a plain GET without Upgrade (a proxy dropped it) gets 426 saying so', async () => {
  const res = await fetch(`${server.url}/herald/ws`);
  assert.equal(res.status, 426);
  // Refusals of the protocol endpoints are herald.v1 answers: {"frames":[error]}.
  const [err] = (await res.json()).frames;
  assert.equal(err.type, 'error');
  assert.match(err.message, /Upgrade/);
});

test('HTTP/1.1 keep-alive: several requests on one connection; client.js and info are served', async () => {
  const r = raw(server.port);
  r.write(`GET /herald/info HTTP/1.1\r\nHost: x\r\n\r\nGET /herald/client.js HTTP/1.1\r\nHost: x\r\n\r\n`);
  await r.until((d) => (d.toString().match(/HTTP\/1\.1 200/g) || []).length === 2);
  assert.match(r.data.toString(), /"protocol":"herald.v2"/);
  assert.match(r.data.toString(), /Content-Type: text\/javascript/);
  r.sock.destroy();
  const bad = raw(server.port);
  bad.write('NONSENSE\r\n\r\n');
  await bad.until((d) => d.includes('\r\n\r\n'));
  assert.match(bad.data.toString(), /^HTTP\/1\.1 400 /);
  await bad.ended;
});

test('a slow consumer is closed with 4008 and resumes from its cursor without loss', async () => {
  const c = client(server.ws);
  await c.open();
  c.send({ type: 'subscribe', channel: 'public.flood' });
  const first = await c.frame((f) => f.type === 'subscribed');
  c.ws._socket.pause();  // stops reading: the server's writes back up
  const big = { pad: 'y'.repeat(2000) };
  let published = 0;
  for (let round = 0; round < 40; round++) {
    await publish(server, 'public.flood', big, 500);
    published += 500;
    const s = await (await fetch(`${server.url}/test/stats`)).json();
    if (s.slow_consumers > 0) break;
  }
  c.ws._socket.resume();
  const { code } = await c.untilClosed(20000);
  assert.equal(code, 4008);
  const got = c.messages('public.flood');
  const cursor = got.length ? got[got.length - 1] : first;  // the client's cursor
  const d = client(server.ws);
  await d.open();
  d.send({ type: 'subscribe', channel: 'public.flood', since: { epoch: cursor.epoch, offset: cursor.offset } });
  const sub = await d.frame((f) => f.type === 'subscribed');
  if (sub.recovered) {
    const rest = await d.untilMessages('public.flood', published - got.length, 20000);
    const offsets = [...got, ...rest].map((m) => m.offset);
    assert.deepEqual(offsets, Array.from({ length: published }, (_, i) => i + 1), 'every message once, in order');
  } else {
    // The replay counts in the session's queue (1000 here) and did not fit: announced, not sent.
    assert.equal(sub.offset, published, 'recovered:false at the head');
    await sleep(200);
    assert.equal(d.messages('public.flood').length, 0, 'no partial replay');
  }
  d.close();
  await tick();
});
