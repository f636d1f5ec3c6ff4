// docs/protocol.md against the real server: every example frame in the document is sent (client
// frames) or compared with what the server sends (server frames: the same fields, the same JSON
// types), and every server frame's row in the document's table names exactly the fields the
// server sends. A change to either that the other does not follow fails here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startServer, publish, client, sleep } from './harness.mjs';

const doc = fs.readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');

/** The ```json blocks of the section under `heading`, each as its text. */
function jsonBlocks(heading) {
  const start = doc.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `docs/protocol.md has a section "${heading}"`);
  const end = doc.indexOf('\n## ', start + 4);
  const section = doc.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1]);
}
const lines = (block) => block.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));

/** The server frames' table: type -> { required: [...], optional: [...] }. */
function serverFrameTable() {
  const start = doc.indexOf('\n## Frames, server → client\n');
  const table = {};
  for (const row of doc.slice(start, doc.indexOf('```json', start)).split('\n')) {
    const cells = row.split('|').map((c) => c.trim());
    const type = /^`(\w+)`$/.exec(cells[1] ?? '')?.[1];
    if (!type) continue;
    const required = [], optional = [];
    // A field is a backticked bare name; "optional" before it makes it optional. Backticked
    // values (`"herald.v1"`, `["websocket",...]`) and parentheses are not fields.
    const fields = cells[2].replace(/\([^)]*\)/g, '');
    for (const m of fields.matchAll(/(optional )?`([a-z_]+)`/g)) (m[1] ? optional : required).push(m[2]);
    table[type] = { required, optional };
  }
  return table;
}

const typeOf = (v) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);
/** Same fields, same JSON types; values differ (ids, epochs, offsets). */
function assertSameShape(real, example, what) {
  assert.deepEqual(Object.keys(real).sort(), Object.keys(example).sort(), `${what}: the fields`);
  for (const k of Object.keys(example)) assert.equal(typeOf(real[k]), typeOf(example[k]), `${what}: the type of ${k}`);
}

// A presence member's leave is told 200 ms after its last session (5 s by default).
const serverArgs = ['--heartbeat-ms', '1000', '--drain-spread-ms', '3000', '--presence-linger-ms', '200'];
let server;
before(async () => {
  server = await startServer(serverArgs);
});
after(async () => { await server.stop(); });

test('client frames: each example is understood (answered by its documented answer, never malformed_frame)', async () => {
  const [block] = jsonBlocks('Frames, client → server');
  const examples = lines(block);
  assert.deepEqual(examples.map((f) => f.type), ['subscribe', 'unsubscribe', 'publish', 'refresh', 'pong']);
  const c = client(server.ws + '?user=alice');
  await c.open();
  for (const f of examples) c.send(f);
  // The examples' channels are not alice's: the rules refuse them, after parsing them.
  const answerTo = (id) => c.frame((f) => f.id === id, 3000, `the answer to id ${id}`);
  assert.equal((await answerTo(1)).code, 'forbidden');
  assert.equal((await answerTo(2)).code, 'not_subscribed');
  assert.equal((await answerTo(3)).code, 'forbidden');
  assert.equal((await answerTo(5)).code, 'unauthenticated');  // not a token the server minted
  await sleep(200);
  assert.ok(!c.frames.some((f) => f.type === 'error' && f.id === undefined), 'pong has no answer');
  c.close();
});

test('server frames: each example has the fields and types the server sends', async () => {
  const [block] = jsonBlocks('Frames, server → client');
  const examples = Object.fromEntries(lines(block).map((f) => [f.type, f]));
  const c = client(server.ws + '?user=alice');
  await c.open();
  const welcome = await c.frame((f) => f.type === 'welcome');
  const { server: _id, ...welcomeSansOptional } = welcome;  // `server` is optional: the example leaves it out
  assertSameShape(welcomeSansOptional, examples.welcome, 'welcome');

  const p = await publish(server, 'public.doc', { item: 'Hero image' }, 2);
  c.send({ type: 'subscribe', channel: 'public.doc', since: { epoch: p.epoch, offset: 1 }, id: 1 });
  assertSameShape(await c.frame((f) => f.type === 'subscribed'), examples.subscribed, 'subscribed');
  assertSameShape(await c.frame((f) => f.type === 'message'), examples.message, 'message');
  c.send({ type: 'subscribe', channel: 'user.bob.notifications', id: 4 });
  assertSameShape(await c.frame((f) => f.type === 'error'), examples.error, 'error');

  const stopped = server.stop();  // a drain: every connection gets `reconnect`
  assertSameShape(await c.frame((f) => f.type === 'reconnect', 5000), examples.reconnect, 'reconnect');
  await stopped;
  server = await startServer(serverArgs);
});

test("server frames: the table's fields are the fields the server sends, for every frame type", async () => {
  const table = serverFrameTable();
  assert.deepEqual(Object.keys(table).sort(),
    ['error', 'message', 'ping', 'published', 'reconnect', 'refresh', 'refreshed', 'subscribed', 'unsubscribed', 'welcome']);
  const c = client(server.ws + '?user=alice');
  await c.open();
  const seen = [await c.frame((f) => f.type === 'welcome')];
  c.send({ type: 'subscribe', channel: 'public.chat', id: 1 });
  seen.push(await c.frame((f) => f.type === 'subscribed'));
  c.send({ type: 'publish', channel: 'public.chat', data: { text: 'hi' }, id: 2 });
  seen.push(await c.frame((f) => f.type === 'published'));
  seen.push(await c.frame((f) => f.type === 'message'));
  c.send({ type: 'unsubscribe', channel: 'public.chat', id: 3 });
  seen.push(await c.frame((f) => f.type === 'unsubscribed'));
  c.send({ type: 'subscribe', channel: 'user.bob.notifications', id: 4 });
  seen.push(await c.frame((f) => f.type === 'error'));
  seen.push(await c.frame((f) => f.type === 'ping', 3000));  // heartbeat 1 s
  // A session whose token expires in 3 s is asked to refresh at ~1.5 s, and renews.
  const examples = Object.fromEntries(lines(jsonBlocks('Frames, server → client')[0]).map((f) => [f.type, f]));
  const token = async () => (await (await fetch(`${server.url}/test/token?user=alice&ttl_ms=3000`, { method: 'POST' })).json()).token;
  const expiring = client(`${server.ws}?access_token=${await token()}`);
  await expiring.open();
  const refresh = await expiring.frame((f) => f.type === 'refresh', 4000);
  expiring.send({ type: 'refresh', token: await token(), id: 5 });
  const refreshed = await expiring.frame((f) => f.type === 'refreshed');
  assertSameShape(refresh, examples.refresh, 'refresh');
  assertSameShape(refreshed, examples.refreshed, 'refreshed');
  seen.push(refresh, refreshed);
  expiring.close();
  const stopped = server.stop();
  seen.push(await c.frame((f) => f.type === 'reconnect', 5000));
  await stopped;
  server = await startServer(serverArgs);

  for (const f of seen) {
    const { required, optional } = table[f.type];
    const keys = Object.keys(f).filter((k) => k !== 'type');
    for (const k of required) assert.ok(keys.includes(k), `${f.type}: the server sends ${k}`);
    for (const k of keys) assert.ok(required.includes(k) || optional.includes(k), `${f.type}: ${k} is in the table`);
  }
});

test('long-poll: the example body is served as documented (timeout 0 here, not to wait 25 s)', async () => {
  const [block] = jsonBlocks('Long-poll transport');
  const body = JSON.parse(block);
  assert.equal(body.timeout, 25000);
  body.timeout = 0;
  const res = await fetch(`${server.url}/herald/poll?user=alice`, {
    method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: JSON.stringify(body),
  });
  assert.equal(res.status, 200);
  const { frames } = await res.json();
  const of = (ch) => frames.find((f) => f.channel === ch);
  assert.equal(of('project.42.items').code, 'forbidden');          // not alice's
  assert.equal(of('user.alice.notifications').type, 'subscribed');  // null: a new subscription
  assert.equal(of('user.alice.notifications').recovered, true);
});

test('GET /herald/info: the documented fields', async () => {
  const m = /`GET \/herald\/info`: `(\{.*?\})`/.exec(doc);
  assert.ok(m, 'docs/protocol.md shows /herald/info');
  const example = JSON.parse(m[1].replace('"..."', '"x"'));
  const info = await (await fetch(`${server.url}/herald/info`)).json();
  assertSameShape(info, example, '/herald/info');
});

test("long-poll: the table of what refuses the whole poll and what only a channel", async () => {
  const poll = async (body) => {
    const res = await fetch(`${server.url}/herald/poll?user=alice`, { method: 'POST', body });
    return { status: res.status, frames: (await res.json()).frames };
  };
  for (const bad of ['not json', '[]', '{"channels":[]}', '{"channels":{},"timeout":-1}', '{"channels":{},"timeout":"1"}',
    JSON.stringify({ channels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`public.c${i}`, null])), timeout: 0 })]) {
    const { status, frames } = await poll(bad);
    assert.equal(status, 400, bad.slice(0, 40));
    assert.equal(frames.length, 1);
    assert.equal(frames[0].code, 'malformed_frame');
  }
  const { status, frames } = await poll(JSON.stringify({
    channels: { 'public.ok': null, 'public.typo': { epoch: 'e', ofset: 3 }, 'bad..name': null, 'user.bob.x': null },
    timeout: 0,
  }));
  assert.equal(status, 200);
  const of = (ch) => frames.find((f) => f.channel === ch);
  assert.equal(of('public.ok').type, 'subscribed');
  assert.equal(of('public.typo').code, 'malformed_frame');
  assert.equal(of('user.bob.x').code, 'forbidden');
  assert.ok(frames.some((f) => f.code === 'invalid_channel' && f.channel === undefined), 'invalid_channel, the name not echoed');
});

test('presence (herald.v2): the examples and the table are what the server sends', async () => {
  const [asked, answered] = jsonBlocks('Presence (herald.v2)').map(lines);
  assert.deepEqual(asked.map((f) => f.type), ['presence']);
  const examples = Object.fromEntries(answered.map((f) => [f.type, f]));
  const ask = asked[0];
  const v2 = (user) => client(`${server.ws}?user=${user}`, { protocols: ['herald.v2', 'herald.v1'] });
  const alice = v2('alice'), bob = v2('bob');
  await Promise.all([alice.open(), bob.open()]);
  alice.send({ type: 'subscribe', channel: ask.channel, id: 1 });
  await alice.frame((f) => f.type === 'subscribed');
  bob.send({ type: 'subscribe', channel: ask.channel, id: 1 });
  const join = await alice.frame((f) => f.type === 'join' && f.user === 'bob');
  alice.send(ask);
  const answer = await alice.frame((f) => f.type === 'presence' && f.id === ask.id);
  assert.deepEqual(answer, examples.presence);  // the test server's info is {"name": user}
  assert.deepEqual(join, examples.join);
  bob.close();
  const leave = await alice.frame((f) => f.type === 'leave');
  assert.deepEqual(leave, examples.leave);

  // The section's server table names exactly the fields sent.
  const section = doc.slice(doc.indexOf('\n## Presence (herald.v2)\n'));
  const rows = section.slice(section.indexOf('Server → client:'), section.indexOf('```json', section.indexOf('Server → client:')));
  const table = {};
  for (const row of rows.split('\n')) {
    const cells = row.split('|').map((c) => c.trim());
    const type = /^`(\w+)`$/.exec(cells[1] ?? '')?.[1];
    if (!type) continue;
    const fields = cells[2].replace(/\([^)]*\)/g, '');
    table[type] = [...fields.matchAll(/(optional )?`([a-z_]+)`/g)].map((m) => m[2]);
  }
  assert.deepEqual(Object.keys(table).sort(), ['join', 'leave', 'presence']);
  for (const f of [answer, join, leave]) {
    assert.deepEqual(Object.keys(f).filter((k) => k !== 'type').sort(), [...table[f.type]].sort(), `${f.type}: the table's fields`);
  }
  alice.close();
});
