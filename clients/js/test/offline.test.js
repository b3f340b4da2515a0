// The offline queue: changes made while the service process is stopped are kept (in memory and
// in storage) with their Idempotency-Keys and sent in order once it is back, each applied once;
// and tokens that run out while the app runs. tests/test_js_client.py runs a service of its own
// for this file at CARTSYNC_RESTARTABLE_URL (no clock leeway: a token expires on time), and
// stops and starts that process when asked at CARTSYNC_CONTROL_URL.
import assert from "node:assert/strict";
import { after, test } from "node:test";

import { client, control, MemoryStorage, nextEvent, token, until } from "../testkit/env.js";

const RESTARTABLE_URL = process.env.CARTSYNC_RESTARTABLE_URL;
assert.ok(RESTARTABLE_URL, "CARTSYNC_RESTARTABLE_URL is not set");

const storage = new MemoryStorage();
const tablet = client("offline", { baseUrl: RESTARTABLE_URL, deviceId: "tablet", storage });
let second = null;

after(async () => {
  tablet.close();
  second?.close();
});

test("changes made while the service is down are replayed in order, once, when it is back", async () => {
  await tablet.erase();
  await tablet.connect();
  const baseline = tablet.rev;

  const offline = nextEvent(tablet, "connection", (c) => c.state === "offline", 30_000);
  await control("stop");
  try {
    await offline;

    const results = [
      await tablet.addLine({ sku: "OFF-1", qty: 1 }),
      await tablet.addLine({ sku: "OFF-1", qty: 1 }),
      await tablet.setNote("first"),
      await tablet.setNote("second"),
    ];
    for (const r of results) {
      assert.equal(r.queued, true);
      assert.match(r.idempotencyKey, /^[0-9a-f-]{36}$/);
    }
    assert.equal(tablet.pending, 4);
    assert.deepEqual(
      tablet.queued.map((op) => op.key),
      results.map((r) => r.idempotencyKey),
    );

    // A second copy of the app (a reloaded page) finds the same changes in storage and sends
    // them too: the keys make every change count once however often it arrives.
    second = client("offline", { baseUrl: RESTARTABLE_URL, deviceId: "tablet", storage });
    assert.equal(second.pending, 4);
    assert.deepEqual(
      second.queued.map((op) => op.key),
      results.map((r) => r.idempotencyKey),
    );

    await control("start");
    const answers = await Promise.all(results.map((r) => r.settled));
    assert.equal(answers[1].line.qty, 2);
    assert.equal(answers[3].note, "second");
  } finally {
    await control("start").catch(() => {}); // started already, unless a step above failed
  }

  await until(() => second.pending === 0, "the second copy's queue to drain", 30_000);
  await until(() => tablet.connection === "open", "the live socket to reconnect", 30_000);
  await until(() => tablet.rev === baseline + 4, `revision ${baseline + 4} on the live copy`, 30_000);
  assert.deepEqual(
    tablet.cart.lines.map((l) => [l.sku, l.qty]),
    [["OFF-1", 2]],
  );
  assert.equal(tablet.cart.note, "second");
  assert.equal(tablet.pending, 0);
  assert.equal(storage.length, 0, "the drained queue is removed from storage");

  const history = await tablet.history({ since: baseline });
  assert.deepEqual(
    history.events.map((e) => e.type),
    ["line.added", "line.updated", "cart.note_set", "cart.note_set"],
  );
  assert.equal(history.rev, baseline + 4);
});

test("two taps on + while the service is down add two, each once", async () => {
  const { line } = await tablet.addLine({ sku: "TAP-1", qty: 1 });
  const offline = nextEvent(tablet, "connection", (c) => c.state === "offline", 30_000);
  await control("stop");
  let taps;
  try {
    await offline;
    // Both taps are made from a screen that says 1: as deltas, neither undoes the other.
    taps = [await tablet.changeQty(line.id, 1), await tablet.changeQty(line.id, 1)];
    for (const tap of taps) assert.equal(tap.queued, true);
    assert.deepEqual(
      tablet.queued.map((op) => op.body),
      [{ qty_delta: 1 }, { qty_delta: 1 }],
    );
  } finally {
    await control("start");
  }
  const answers = await Promise.all(taps.map((t) => t.settled));
  assert.deepEqual(
    answers.map((a) => a.line.qty),
    [2, 3],
  );
  await until(() => tablet.pending === 0, "the queue to drain", 30_000);
  const cart = await tablet.getCart();
  assert.equal(cart.lines.find((l) => l.id === line.id).qty, 3);
});

test("a queued change the service refuses is dropped from the queue and its promise rejects", async () => {
  await until(() => tablet.connection === "open", "the live socket", 30_000);
  await control("stop");
  let queued;
  try {
    await until(() => tablet.connection === "offline", "the socket to notice", 30_000);
    queued = await tablet.removeLine("L999");
    assert.equal(queued.queued, true);
    const after = await tablet.addLine({ sku: "OFF-2" });
    assert.equal(after.queued, true);
    await control("start");
    await assert.rejects(queued.settled, (e) => e.code === "line_not_found");
    const added = await after.settled;
    assert.equal(added.line.sku, "OFF-2");
  } finally {
    await control("start").catch(() => {});
  }
  assert.equal(tablet.pending, 0);
});

test("a copy that resumes where a failover lost changes is given the server's state, not deltas", async () => {
  // The laptop saw revision 3; Redis failed over to a replica that never had it, and the phone's
  // next change took number 3. The client resumes with when its revision 3 was made (`at`).
  const phone = client("lost", { deviceId: "phone" });
  const laptop = client("lost", { baseUrl: RESTARTABLE_URL, deviceId: "laptop" });
  try {
    await laptop.connect();
    await phone.addLine({ sku: "KEPT-1" });
    await phone.addLine({ sku: "KEPT-2" });
    await control("save");
    await phone.addLine({ sku: "LOST-3" });
    await until(() => laptop.rev === 3, "revision 3 on the laptop", 30_000);

    await control("stop");
    try {
      await until(() => laptop.connection === "offline", "the laptop to notice", 30_000);
      await control("rewind");
      await phone.addLine({ sku: "NEW-3" });
      await phone.addLine({ sku: "NEW-4" });
    } finally {
      await control("start");
    }

    const server = await phone.getCart();
    assert.equal(server.rev, 4);
    await until(() => laptop.connection === "open" && laptop.rev === 4, "revision 4 on the laptop", 30_000);
    assert.deepEqual(
      laptop.cart.lines.map((l) => l.sku),
      ["KEPT-1", "KEPT-2", "NEW-3", "NEW-4"],
    );
    assert.deepEqual(laptop.cart.lines, server.lines);
  } finally {
    phone.close();
    laptop.close();
  }
});

test("changes queued under a token the service refuses are sent with the provider's next token, same keys", async () => {
  // The app's first token turns out refused (as an expired one would be) only once the service
  // is back; the provider's next token sends the queued changes, each applied once.
  const asked = [];
  const provider = async () => {
    asked.push(asked.length === 0 ? "offline-refused" : "offline");
    return token(asked.at(-1));
  };
  const app = client("offline", { baseUrl: RESTARTABLE_URL, deviceId: "app", storage: new MemoryStorage(), token: provider });
  const sent = [];
  app.addEventListener("queue", (e) => e.detail.key && sent.push([e.detail.key, e.detail.replayed]));
  const before = (await tablet.getCart()).rev;
  await control("stop");
  let queued;
  try {
    queued = [await app.addLine({ sku: "TOK-1" }), await app.setNote("queued under an old token")];
    assert.deepEqual(
      queued.map((q) => q.queued),
      [true, true],
    );
    assert.deepEqual(
      app.queued.map((op) => op.key),
      queued.map((q) => q.idempotencyKey),
    );
  } finally {
    await control("start");
  }
  const [added, noted] = await Promise.all(queued.map((q) => q.settled));
  app.close();
  assert.deepEqual(asked, ["offline-refused", "offline"]);
  assert.deepEqual(
    sent,
    queued.map((q) => [q.idempotencyKey, false]),
  );
  assert.equal(added.line.sku, "TOK-1");
  assert.equal(noted.rev, before + 2);
  const history = await tablet.history({ since: before });
  assert.deepEqual(
    history.events.map((e) => e.type),
    ["line.added", "cart.note_set"],
  );
});

test("the live socket is sent the provider's next token before its own runs out, and stays open", async () => {
  const short = await control("short-token"); // expires in 4 s
  const handed = [];
  const provider = () => {
    handed.push(handed.length === 0 ? "short" : "long");
    return handed.at(-1) === "short" ? short : token("offline");
  };
  const app = client("offline", { baseUrl: RESTARTABLE_URL, deviceId: "renewing", token: provider });
  const closes = [];
  app.addEventListener("connection", (e) => e.detail.code != null && closes.push(e.detail.code));
  try {
    await app.connect();
    await new Promise((resolve) => setTimeout(resolve, 5_500)); // past the short token's expiry
    const added = await tablet.addLine({ sku: "RENEW-1" });
    await until(() => app.rev === added.rev, `revision ${added.rev} on the renewed socket`);
    assert.deepEqual(handed, ["short", "long"]);
    assert.deepEqual(closes, []);
    assert.equal(app.connection, "open");
  } finally {
    app.close();
  }
});

test("a socket whose token ran out (4401) reconnects with the provider's next token and resumes", async () => {
  const short = await control("short-token");
  const handed = [];
  const provider = async () => {
    handed.push(handed.length < 2 ? "short" : "long"); // nothing newer when first asked to renew
    return handed.at(-1) === "short" ? short : token("offline");
  };
  const app = client("offline", { baseUrl: RESTARTABLE_URL, deviceId: "expiring", token: provider });
  const closes = [];
  let snapshots = 0;
  app.addEventListener("connection", (e) => e.detail.code != null && closes.push(e.detail.code));
  app.addEventListener("snapshot", () => snapshots++);
  try {
    await app.connect();
    const reopened = nextEvent(app, "connection", (c) => c.state === "open", 15_000);
    await until(() => closes.includes(4401), "the service to close the socket at expiry", 15_000);
    await reopened;
    const added = await tablet.addLine({ sku: "EXPIRED-1" });
    await until(() => app.rev === added.rev, `revision ${added.rev} after the reconnect`);
    assert.deepEqual(handed, ["short", "short", "long"]);
    assert.deepEqual(closes, [4401]);
    assert.equal(snapshots, 1, "resumed from its revision, not from a new snapshot");
  } finally {
    app.close();
  }
});
