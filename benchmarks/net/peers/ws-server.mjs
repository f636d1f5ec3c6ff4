// The Node `ws` broadcast server a user would write: a Set of sockets per channel, the
// message encoded once and sent to each. Speaks the benchmark's subset of herald.v1.
//   node ws-server.mjs PORT
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2] || 9003);
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false, backlog: 4096 });
const channels = new Map();

wss.on('connection', (ws) => {
  ws.followed = [];
  ws.on('message', (buf) => {
    let m;
    try { m = JSON.parse(buf); } catch { return; }
    if (m.type === 'subscribe') {
      let set = channels.get(m.channel);
      if (!set) channels.set(m.channel, (set = new Set()));
      set.add(ws);
      ws.followed.push(m.channel);
      ws.send(JSON.stringify({ type: 'subscribed', channel: m.channel }));
    } else if (m.type === 'publish') {
      const text = Buffer.from(JSON.stringify({ type: 'message', channel: m.channel, data: m.data }));
      const set = channels.get(m.channel);
      if (set) for (const c of set) c.send(text, { binary: false });
      ws.send(JSON.stringify({ type: 'published', channel: m.channel }));
    }
  });
  ws.on('close', () => {
    for (const c of ws.followed) channels.get(c)?.delete(ws);
  });
});
wss.on('listening', () => console.log(`port ${port}`));
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => process.exit(0));
