// What a long-lived app meets: a newer service with an event type this client does not know, and
// a token that stops being accepted. Neither throws, and neither loses the live copy.
import assert from "node:assert/strict";
import { after, test } from "node:test";

import { client, control, nextEvent, token, until } from "../testkit/env.js";

const open = [];
after(() => {
  for (const c of open) c.close();
});

function tracked(name, options) {
  const c = client(name, options);
  open.push(c);
  return c;
}

test("an event of a type this client does not know ends in a snapshot of the server's state", async () => {
  const phone = tracked("newer", { deviceId: "phone" });
  await phone.connect();
  const added = await phone.addLine({ sku: "CAP-1", qty: 2 });
  await until(() => phone.rev === added.rev, `revision ${added.rev} on the live copy`);
  const applied = [];
  phone.addEventListener("event", (e) => applied.push(e.detail.type));
  const snapshot = nextEvent(phone, "snapshot", (s) => s.rev > added.rev);

  await control("unknown-event"); // revision added.rev + 1, type cart.gift_wrapped
  const noted = await phone.setNote("after the new kind of event");
  await snapshot;
  await until(() => phone.rev === noted.rev, `revision ${noted.rev} on the live copy`);

  const server = await phone.getCart();
  assert.equal(noted.rev, added.rev + 2);
  assert.deepEqual(phone.cart.lines, server.lines);
  assert.equal(phone.cart.note, server.note);
  assert.ok(!applied.includes("cart.gift_wrapped"), applied.join(", "));
  assert.equal(phone.connection, "open");
});

test("a socket refused for its token connects with the provider's next token", async () => {
  const asked = [];
  const provider = () => {
    asked.push(asked.length === 0 ? "refresh-refused" : "refresh");
    return token(asked.at(-1));
  };
  const app = tracked("refresh", { deviceId: "app", token: provider });
  const closes = [];
  app.addEventListener("connection", (e) => e.detail.code && closes.push([e.detail.code, e.detail.reason]));
  const state = await app.connect();
  assert.deepEqual(asked, ["refresh-refused", "refresh"]);
  assert.deepEqual(closes, [[1008, "token has a bad signature"]]);
  assert.equal(app.connection, "open");
  assert.equal(state.cart.owner, (await app.getCart()).owner);
  assert.equal(app.token, token("refresh"));
});

test("an async provider: a request refused with 401 is sent again with its next token, same key", async () => {
  const asked = [];
  const provider = async () => {
    asked.push(asked.length === 0 ? "refresh-refused" : "refresh");
    return token(asked.at(-1));
  };
  const app = tracked("refresh", { deviceId: "app", token: provider });
  const added = await app.addLine({ sku: "TOK-2" }, { idempotencyKey: "tok-2-once" });
  assert.deepEqual(asked, ["refresh-refused", "refresh"]);
  const again = await app.request("POST", "/v1/cart/lines", {
    body: { sku: "TOK-2" },
    idempotencyKey: "tok-2-once",
  });
  assert.equal(again.replayed, true);
  assert.equal(again.body.rev, added.rev);
});

test("a provider with nothing better than the refused token ends the socket; nothing loops", async () => {
  let asked = 0;
  const app = tracked("refresh", {
    token: () => {
      asked++;
      return token("refresh-refused");
    },
  });
  await assert.rejects(app.connect(), (e) => e.code === "session_closed");
  assert.equal(asked, 2);
  assert.equal(app.connection, "closed");
  await assert.rejects(app.getCart(), (e) => e.status === 401);
  assert.equal(asked, 3);
});
