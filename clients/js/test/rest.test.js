// Every REST method against the real service, as one customer ("rest") who starts from nothing.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { CartsyncClient, CartsyncError, NetworkError } from "../src/cartsync.js";
import { BASE_URL, client, skus, token } from "../testkit/env.js";

const shop = client("rest", { deviceId: "js-rest" });

before(async () => {
  await shop.erase();
});

after(() => shop.close());

describe("cart", () => {
  test("an empty cart at revision 0", async () => {
    const cart = await shop.getCart();
    assert.equal(cart.rev, 0);
    assert.deepEqual(cart.lines, []);
    assert.match(cart.owner, /^c:/);
  });

  test("add, add the same sku and attrs again, patch, remove", async () => {
    const added = await shop.addLine({ sku: "TSHIRT-1", qty: 2, attrs: { size: "M" }, title: "T-shirt", unit_price: "19.90" });
    assert.equal(added.rev, 1);
    assert.equal(added.line.qty, 2);
    assert.deepEqual(added.line.updated_by, { role: "customer", id: added.line.updated_by.id, device: "js-rest" });

    const again = await shop.addLine({ sku: "TSHIRT-1", qty: 1, attrs: { size: "M" } });
    assert.equal(again.line.id, added.line.id);
    assert.equal(again.line.qty, 3);

    const patched = await shop.patchLine(added.line.id, { qty: 5, attrs: { size: "L" } });
    assert.equal(patched.line.qty, 5);
    assert.deepEqual(patched.line.attrs, { size: "L" });

    const socks = await shop.addLine({ sku: "SOCKS-3" });
    const removed = await shop.removeLine(socks.line.id);
    assert.equal(removed.removed, socks.line.id);

    const cart = await shop.getCart();
    assert.deepEqual(skus(cart), [["TSHIRT-1", 5]]);
    assert.equal(cart.rev, removed.rev);
  });

  test("the note, and If-None-Match answered with null while nothing changed", async () => {
    const set = await shop.setNote("gift wrap, please");
    assert.equal(set.note, "gift wrap, please");
    assert.equal(await shop.getCart({ ifNoneMatch: set.rev }), null);
    const cart = await shop.getCart({ ifNoneMatch: set.rev - 1 });
    assert.equal(cart.note, "gift wrap, please");
  });

  test("If-Match on a stale revision is a CartsyncError 412 with the current revision", async () => {
    const cart = await shop.getCart();
    await shop.setNote("first");
    const error = await shop.setNote("second", { ifMatch: cart.rev }).catch((e) => e);
    assert.ok(error instanceof CartsyncError);
    assert.equal(error.status, 412);
    assert.equal(error.code, "revision_mismatch");
    assert.equal(error.rev, cart.rev + 1);
    assert.equal((await shop.getCart()).note, "first");
  });

  test("errors carry the service's code and field", async () => {
    const missing = await shop.removeLine("L999").catch((e) => e);
    assert.equal(missing.status, 404);
    assert.equal(missing.code, "line_not_found");
    const invalid = await shop.addLine({ sku: "TSHIRT-1", qty: 1000 }).catch((e) => e);
    assert.equal(invalid.status, 422);
    assert.equal(invalid.code, "invalid_field");
    assert.equal(invalid.field, "qty");
  });

  test("the same Idempotency-Key twice is applied once and replayed", async () => {
    const key = `js-rest-${Date.now()}`;
    const first = await shop.addLine({ sku: "MUG-7", qty: 2 }, { idempotencyKey: key });
    const raw = await shop.request("POST", "/v1/cart/lines", { body: { sku: "MUG-7", qty: 2 }, idempotencyKey: key });
    assert.equal(raw.replayed, true);
    assert.deepEqual(raw.body, first);
    const cart = await shop.getCart();
    assert.equal(cart.lines.find((l) => l.sku === "MUG-7").qty, 2);
    assert.equal(cart.rev, first.rev);
    const reused = await shop.addLine({ sku: "MUG-7", qty: 3 }, { idempotencyKey: key }).catch((e) => e);
    assert.equal(reused.code, "idempotency_key_reused");
  });

  test("save for later moves a line to the saved wishlist", async () => {
    const cap = await shop.addLine({ sku: "CAP-1", attrs: { colour: "red" } });
    const saved = await shop.saveForLater(cap.line.id);
    assert.equal(saved.wishlist_id ?? "saved", "saved");
    const list = await shop.getWishlist("saved");
    const wishlist = list.wishlist ?? list;
    assert.deepEqual(
      wishlist.items.map((i) => i.sku),
      ["CAP-1"],
    );
    assert.ok(!(await shop.getCart()).lines.some((l) => l.sku === "CAP-1"));
  });

  test("history lists every change in order", async () => {
    const history = await shop.history({ since: 0 });
    assert.equal(history.complete, true);
    assert.deepEqual(
      history.events.map((e) => e.rev),
      Array.from({ length: history.rev }, (_, i) => i + 1),
    );
    assert.equal(history.events[0].type, "line.added");
    const page = await shop.history({ since: 1, limit: 2 });
    assert.deepEqual(
      page.events.map((e) => e.rev),
      [2, 3],
    );
    const otherEpoch = await shop.history({ since: 0, epoch: "not-this-one" });
    assert.equal(otherEpoch.complete, false);
  });

  test("checkout freezes the cart and starts an empty one; an empty one cannot be checked out", async () => {
    const before = await shop.getCart();
    const done = await shop.checkout();
    assert.equal(done.checkout.cart_id, before.cart_id);
    assert.deepEqual(
      done.checkout.lines.map((l) => l.sku),
      before.lines.map((l) => l.sku),
    );
    assert.notEqual(done.cart_id, before.cart_id);
    assert.deepEqual((await shop.getCart()).lines, []);
    const empty = await shop.checkout().catch((e) => e);
    assert.equal(empty.code, "cart_empty");
  });

  test("clear the cart", async () => {
    await shop.addLine({ sku: "HAT-1" });
    const cleared = await shop.clearCart();
    assert.equal(typeof cleared.rev, "number");
    assert.deepEqual((await shop.getCart()).lines, []);
  });
});

describe("wishlists", () => {
  test("create, rename, add items, move one to the cart, remove one, delete", async () => {
    const created = await shop.createWishlist("Birthday");
    const id = created.wishlist.id;
    const renamed = await shop.renameWishlist(id, "Birthday 2027");
    assert.equal(renamed.wishlist.name, "Birthday 2027");
    const taken = await shop.createWishlist("birthday 2027").catch((e) => e);
    assert.equal(taken.code, "wishlist_name_taken");

    const mug = await shop.addItem(id, { sku: "MUG-9", title: "Mug", note: "the blue one" });
    assert.equal(mug.created, true);
    const twice = await shop.addItem(id, { sku: "MUG-9" });
    assert.equal(twice.created, false);
    assert.equal(twice.item.id, mug.item.id);
    const scarf = await shop.addItem(id, { sku: "SCARF-2" });

    const moved = await shop.moveToCart(id, mug.item.id, 2);
    assert.equal(moved.line.sku, "MUG-9");
    assert.equal(moved.line.qty, 2);
    await shop.removeItem(id, scarf.item.id);
    const list = await shop.getWishlist(id);
    assert.deepEqual((list.wishlist ?? list).items, []);

    const all = await shop.listWishlists();
    assert.ok(all.wishlists.some((w) => w.id === id));
    assert.equal(all.wishlists[0].id, "default");

    await shop.deleteWishlist(id);
    const gone = await shop.getWishlist(id).catch((e) => e);
    assert.equal(gone.code, "wishlist_not_found");
    const protectedOne = await shop.deleteWishlist("default").catch((e) => e);
    assert.equal(protectedOne.code, "wishlist_protected");
    assert.deepEqual(
      (await shop.getCart()).lines.map((l) => l.sku),
      ["MUG-9"],
    );
  });
});

describe("account", () => {
  test("a guest's cart merges into the customer's, once", async () => {
    const guest = await CartsyncClient.createGuest({ baseUrl: BASE_URL });
    assert.ok(guest.token && guest.guest_id && guest.expires_at);
    const guestShop = new CartsyncClient({ baseUrl: BASE_URL, token: guest.token, storage: null });
    await guestShop.addLine({ sku: "MUG-9", qty: 1 });
    await guestShop.addLine({ sku: "BAG-4", qty: 1 });

    const merged = await shop.merge(guest.token, "sum");
    assert.equal(merged.already_merged, false);
    assert.deepEqual(skus(merged.cart), [
      ["MUG-9", 3],
      ["BAG-4", 1],
    ]);
    const again = await shop.merge(guest.token);
    assert.equal(again.already_merged, true);
    const closed = await guestShop.addLine({ sku: "HAT-1" }).catch((e) => e);
    assert.equal(closed.code, "guest_merged");
  });

  test("export holds everything; erase starts again from revision 0", async () => {
    const exported = await shop.exportData();
    assert.equal(exported.owner, (await shop.getCart()).owner);
    assert.ok(exported.events.length > 0);
    assert.deepEqual(await shop.erase(), { erased: true });
    const cart = await shop.getCart();
    assert.equal(cart.rev, 0);
    assert.deepEqual(cart.lines, []);
  });

  test("no token is a 401 CartsyncError, and nothing is retried", async () => {
    const anonymous = new CartsyncClient({ baseUrl: BASE_URL, token: null, storage: null });
    const error = await anonymous.getCart().catch((e) => e);
    assert.equal(error.status, 401);
    assert.equal(error.code, "unauthenticated");
  });
});

describe("retries", () => {
  test("429s are retried after Retry-After until the service takes the request", async () => {
    const limitedUrl = process.env.CARTSYNC_LIMITED_URL;
    assert.ok(limitedUrl, "CARTSYNC_LIMITED_URL is not set");
    const eager = new CartsyncClient({ baseUrl: limitedUrl, token: token("rest"), storage: null, retries: 0 });
    const patient = new CartsyncClient({ baseUrl: limitedUrl, token: token("rest"), storage: null, retries: 8 });
    // The limited service takes 5 requests a second from one caller: 12 at once cannot all pass.
    const refused = (await Promise.allSettled(Array.from({ length: 12 }, () => eager.getCart()))).filter(
      (r) => r.status === "rejected",
    );
    assert.ok(refused.length > 0, "the limited service refused nothing");
    for (const r of refused) {
      assert.equal(r.reason.status, 429);
      assert.equal(r.reason.code, "rate_limited");
      assert.ok(r.reason.retryAfter >= 1000);
    }
    const key = `js-retry-${Date.now()}`;
    const results = await Promise.all([
      ...Array.from({ length: 11 }, () => patient.getCart()),
      patient.addLine({ sku: "RETRY-1" }, { idempotencyKey: key }),
    ]);
    assert.equal(results.length, 12);
    const cart = await patient.getCart();
    assert.deepEqual(
      cart.lines.filter((l) => l.sku === "RETRY-1").map((l) => l.qty),
      [1],
    );
  });

  test("a service that is not listening is a NetworkError after the retries", async () => {
    const nowhere = new CartsyncClient({
      baseUrl: "http://127.0.0.1:9",
      token: token("rest"),
      storage: null,
      retries: 2,
      backoff: { base: 10, cap: 20 },
    });
    const error = await nowhere.getCart().catch((e) => e);
    assert.ok(error instanceof NetworkError);
    assert.equal(error.status, 0);
    assert.equal(error.code, "network_error");
  });
});
