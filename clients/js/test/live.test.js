// Live sync between two devices of one customer ("live" and its second token "live-2").
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { CartsyncClient } from "../src/cartsync.js";
import { BASE_URL, client, nextEvent, skus, token, until, WebSocket } from "../testkit/env.js";

const phone = client("live", { deviceId: "phone" });
const laptop = client("live-2", { deviceId: "laptop" });

/** Both copies equal what the service returns now. */
async function assertInStep(...copies) {
  const cart = await phone.getCart();
  const { wishlists } = await phone.listWishlists();
  for (const copy of copies) {
    await until(() => copy.rev === cart.rev, `rev ${cart.rev} on ${copy.deviceId} (at ${copy.rev})`);
    assert.deepEqual(copy.cart.lines, cart.lines, `lines on ${copy.deviceId}`);
    assert.equal(copy.cart.note, cart.note);
    assert.deepEqual(copy.wishlists, wishlists, `wishlists on ${copy.deviceId}`);
  }
}

before(async () => {
  await phone.erase();
});

after(() => {
  phone.close();
  laptop.close();
});

test("connect() resolves with a snapshot and reports the connection state", async () => {
  const states = [];
  laptop.addEventListener("connection", (e) => states.push(e.detail.state));
  await phone.addLine({ sku: "TSHIRT-1", qty: 1, attrs: { size: "M" } });
  const state = await laptop.connect();
  assert.equal(state.rev, 1);
  assert.deepEqual(skus(laptop.cart), [["TSHIRT-1", 1]]);
  assert.deepEqual(
    laptop.wishlists.map((w) => w.id),
    ["default"],
  );
  assert.equal(laptop.connection, "open");
  assert.deepEqual(states, ["connecting", "open"]);
});

test("a change on the phone reaches the laptop as an event and a new cart", async () => {
  const event = nextEvent(laptop, "event", (e) => e.type === "line.updated");
  const cart = nextEvent(laptop, "cart", (c) => c.lines[0]?.qty === 3);
  await phone.addLine({ sku: "TSHIRT-1", qty: 2, attrs: { size: "M" } });
  const seen = await event;
  assert.equal(seen.actor.device, "phone");
  assert.equal(seen.data.line.qty, 3);
  assert.deepEqual(skus(await cart), [["TSHIRT-1", 3]]);
});

test("every kind of change keeps both copies equal to the service", async () => {
  await phone.connect();
  const lineChange = nextEvent(phone, "cart", (c) => c.lines.some((l) => l.sku === "CAP-1"));
  const cap = await laptop.addLine({ sku: "CAP-1", attrs: { colour: "red" } });
  await lineChange;
  await laptop.setNote("leave with the neighbour");
  await phone.saveForLater(cap.line.id);
  const { wishlist } = await phone.createWishlist("Birthday");
  const mug = await laptop.addItem(wishlist.id, { sku: "MUG-7", title: "Mug" });
  const bag = await laptop.addItem("default", { sku: "BAG-4" });
  await phone.renameWishlist(wishlist.id, "Birthday 2027");
  await phone.moveToCart(wishlist.id, mug.item.id, 2);
  await laptop.removeItem("default", bag.item.id);
  await assertInStep(phone, laptop);

  await laptop.deleteWishlist(wishlist.id);
  const tshirt = phone.cart.lines.find((l) => l.sku === "TSHIRT-1");
  await phone.patchLine(tshirt.id, { qty: 0 });
  await assertInStep(phone, laptop);

  await laptop.checkout();
  await until(() => phone.cart.lines.length === 0 && phone.rev === laptop.rev, "checkout on the phone");
  await phone.addLine({ sku: "HAT-1" });
  await phone.clearCart();
  await assertInStep(phone, laptop);

  // Customer service puts the cart (and wishlists) back as they were before the clear: a
  // cart.restored event, which each copy takes like a snapshot.
  const customer = (await phone.getCart()).owner.replace(/^c:/, "");
  const restored = await fetch(`${BASE_URL}/v1/customers/${customer}/cart/restore`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token("support")}`, "Content-Type": "application/json" },
    body: JSON.stringify({ rev: phone.rev - 1, reason: "the customer asked", wishlists: true }),
  });
  assert.equal(restored.status, 200, await restored.clone().text());
  await until(() => phone.cart.lines.some((l) => l.sku === "HAT-1"), "the restored line on the phone");
  await assertInStep(phone, laptop);
});

test("a copy that was closed resumes from its revision with events, not a snapshot", async () => {
  laptop.close();
  assert.equal(laptop.connection, "closed");
  const revBefore = laptop.rev;
  await phone.addLine({ sku: "SCARF-2" });
  await phone.setNote("while the laptop was away");
  let snapshots = 0;
  const count = () => snapshots++;
  laptop.addEventListener("snapshot", count);
  const events = [];
  const collect = (e) => events.push(e.detail.rev);
  laptop.addEventListener("event", collect);
  await laptop.connect();
  await until(() => laptop.rev === revBefore + 2, "the two missed revisions");
  laptop.removeEventListener("snapshot", count);
  laptop.removeEventListener("event", collect);
  assert.equal(snapshots, 0);
  assert.deepEqual(events, [revBefore + 1, revBefore + 2]);
  assert.equal(laptop.cart.note, "while the laptop was away");
  await assertInStep(laptop);
});

test("erasing the data restarts both copies from a snapshot at revision 0 in a new epoch", async () => {
  const epoch = laptop.state.epoch;
  const snapshot = nextEvent(laptop, "snapshot", (s) => s.rev === 0);
  await phone.erase();
  await snapshot;
  assert.deepEqual(laptop.cart.lines, []);
  await phone.addLine({ sku: "NEW-1" });
  await until(() => laptop.rev === 1 && laptop.cart.lines.length === 1, "the first change of the new epoch");
  assert.notEqual(laptop.state.epoch, epoch);
});

test("a refused token closes for good: connect() rejects and the state is closed", async () => {
  const stranger = new CartsyncClient({ baseUrl: BASE_URL, token: "not-a-token", WebSocket, storage: null });
  const error = await stranger.connect().catch((e) => e);
  assert.equal(error.code, "session_closed");
  assert.equal(stranger.connection, "closed");
  stranger.close();
});

test("without a WebSocket implementation connect() says what to pass", async () => {
  const bare = new CartsyncClient({ baseUrl: BASE_URL, token: token("live"), storage: null, WebSocket: null });
  if (globalThis.WebSocket) return; // Node 22+ has one of its own
  await assert.rejects(bare.connect(), /WebSocket/);
});
