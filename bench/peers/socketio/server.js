// The Socket.IO peer of cartsync's benchmarks: one instance of a Socket.IO server whose rooms
// span instances through @socket.io/redis-adapter, relaying a JSON payload unchanged.
//
//   PORT=8001 REDIS_URL=redis://127.0.0.1:6379/0 node server.js
//
// A client joins a room with the CONNECT packet's auth payload: 40{"room":"owner-1"}.
// Writes arrive over HTTP, as cartsync's do: POST /rooms/<room>/events with a JSON body is
// emitted to the room as ["event", body] on every instance and answered 201 {"ok":true}.
// A socket may also emit ["event", body] itself; it is relayed to its room the same way.
// GET /healthz answers 200 once both Redis clients are connected.

"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const port = Number(process.env.PORT || 8001);
const redisUrl = process.env.REDIS_URL || "redis://127.0.0.1:6379/0";
const MAX_BODY = 64 * 1024;

const pub = createClient({ url: redisUrl });
const sub = pub.duplicate();
let ready = false;

// With a Content-Length, not chunked: the same plain HTTP/1.1 answers as cartsync sends.
function reply(res, status, body) {
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/healthz") {
    reply(res, ready ? 200 : 503, ready ? '{"ok":true}' : '{"ok":false}');
    return;
  }
  const match = /^\/rooms\/([A-Za-z0-9_.:-]{1,128})\/events$/.exec(req.url || "");
  if (req.method !== "POST" || match === null) {
    reply(res, 404, '{"error":"not found"}');
    return;
  }
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) {
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on("end", () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      reply(res, 400, '{"error":"malformed json"}');
      return;
    }
    io.to(match[1]).emit("event", body);
    reply(res, 201, '{"ok":true}');
  });
});

const io = new Server(server, { serveClient: false, transports: ["websocket"] });

io.on("connection", (socket) => {
  const room = socket.handshake.auth && socket.handshake.auth.room;
  if (typeof room !== "string" || room.length === 0 || room.length > 128) {
    socket.disconnect(true);
    return;
  }
  socket.join(room);
  socket.on("event", (body) => {
    io.to(room).emit("event", body);
  });
});

async function main() {
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
  ready = true;
  server.listen(port, "127.0.0.1", () => {
    console.log(`socket.io peer listening on http://127.0.0.1:${port}`);
  });
}

function stop() {
  io.close();
  Promise.allSettled([pub.quit(), sub.quit()]).finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 3000).unref();
}

process.on("SIGTERM", stop);
process.on("SIGINT", stop);

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
