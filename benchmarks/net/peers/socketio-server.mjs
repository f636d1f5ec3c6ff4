// Socket.IO restricted to its polling transport (Engine.IO long-poll), the long-poll peer.
// A client joins the room named in its handshake query; a `publish` event
// {channel, data} is emitted to that room as `message`.
//   node socketio-server.mjs PORT
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const port = Number(process.argv[2] || 9004);
const http = createServer();
http.keepAliveTimeout = 60000;
const io = new Server(http, { transports: ['polling'], allowUpgrades: false, serveClient: false,
                              pingInterval: 25000, pingTimeout: 20000, maxHttpBufferSize: 1e6 });
io.on('connection', (socket) => {
  const room = socket.handshake.query.room;
  if (room) socket.join(room);
  socket.on('publish', (m) => io.to(m.channel).emit('message', m.data));
});
http.listen(port, '127.0.0.1', 4096, () => console.log(`port ${port}`));
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => process.exit(0));
