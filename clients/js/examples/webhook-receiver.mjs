// A cartsync webhook receiver (docs/events.md): verifies each delivery with the
// `standardwebhooks` package, drops repeats by webhook-id, prints one JSON line per event.
//   WEBHOOK_SECRET=whsec_... PORT=9000 node examples/webhook-receiver.mjs
import http from "node:http";
import { Webhook } from "standardwebhooks";

const secret = process.env.WEBHOOK_SECRET ?? "";
const hook = new Webhook(secret.replace(/^whsec_/, "")); // the base64 after whsec_
const seen = new Set(); // use your database: ids repeat on retries

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    let event;
    try {
      event = hook.verify(Buffer.concat(chunks).toString("utf8"), req.headers);
    } catch {
      res.writeHead(400).end();
      return;
    }
    if (!seen.has(event.id)) {
      seen.add(event.id);
      console.log(JSON.stringify({ id: event.id, type: event.type, customer_id: event.customer_id }));
    }
    res.writeHead(204).end();
  });
});
server.listen(Number(process.env.PORT ?? 9000), "127.0.0.1", () => {
  console.log(JSON.stringify({ listening: server.address().port }));
});
