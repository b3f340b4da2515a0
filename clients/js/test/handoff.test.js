// Hand-off to store staff: a customer ("handoff") shows a code, a staff member ("staff", store s1)
// claims it and works on the customer's cart through the grant, live, until the customer revokes.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { handoffCode } from "../src/cartsync.js";
import { client, nextEvent, skus, until } from "../testkit/env.js";

const phone = client("handoff", { deviceId: "phone" });
const staff = client("staff", { deviceId: "tablet-s1" });
let tablet = null;
let grant = null;

before(async () => {
  await phone.erase();
  await phone.addLine({ sku: "TSHIRT-1", qty: 1, attrs: { size: "M" } });
  await phone.addItem("default", { sku: "MUG-7", title: "Mug" });
  await phone.connect();
});

after(() => {
  phone.close();
  staff.close();
  tablet?.close();
});

test("a hand-off code is 8 digits with a QR code", async () => {
  const handoff = await phone.createHandoff();
  assert.match(handoff.code, /^\d{8}$/);
  assert.match(handoff.qr_svg, /^\s*(<\?xml[^>]*>\s*)?<svg[\s>]/);
  assert.ok(Date.parse(handoff.expires_at) > Date.now());

  const started = nextEvent(phone, "event", (e) => e.type === "grant.started");
  const claimed = await staff.claimHandoff(handoff.code);
  grant = claimed.grant;
  assert.equal(grant.owner, phone.cart.owner);
  assert.equal(grant.store, "s1");
  assert.ok(grant.id);
  assert.equal((await started).data.grant.id, grant.id);

  const reused = await staff.claimHandoff(handoff.code).catch((e) => e);
  assert.equal(reused.status, 404);
  const unknown = await staff.claimHandoff("00000000").catch((e) => e);
  assert.equal(unknown.status, 404);
});

test("the owner lists the grant", async () => {
  const listed = await phone.listGrants();
  const grants = listed.grants ?? listed;
  assert.ok(grants.some((g) => g.id === grant.id));
});

test("staff read and change the customer's cart and wishlists through the grant", async () => {
  tablet = staff.forGrant(grant.id);
  assert.equal(tablet.prefix, `/v1/grants/${grant.id}`);
  const cart = await tablet.getCart();
  assert.deepEqual(skus(cart), [["TSHIRT-1", 1]]);
  const { wishlists } = await tablet.listWishlists();
  assert.deepEqual(
    wishlists[0].items.map((i) => i.sku),
    ["MUG-7"],
  );

  await tablet.connect();
  assert.deepEqual(skus(tablet.cart), [["TSHIRT-1", 1]]);

  const onPhone = nextEvent(phone, "event", (e) => e.type === "line.added");
  const added = await tablet.addLine({ sku: "JEANS-2", qty: 1, attrs: { size: "32" } });
  const event = await onPhone;
  assert.equal(event.actor.role, "staff");
  assert.equal(event.actor.store, "s1");
  assert.equal(event.data.line.id, added.line.id);

  await tablet.patchLine(added.line.id, { qty: 2 });
  const mug = tablet.wishlists[0].items[0];
  const moved = await tablet.moveToCart("default", mug.id, 1);
  await until(() => phone.rev === moved.rev && tablet.rev === moved.rev, `both copies at ${moved.rev}`);
  assert.deepEqual(skus(phone.cart), skus(tablet.cart));
  assert.deepEqual(skus(phone.cart), [
    ["TSHIRT-1", 1],
    ["JEANS-2", 2],
    ["MUG-7", 1],
  ]);
  const history = await tablet.history({ since: 0 });
  assert.ok(history.events.some((e) => e.actor.role === "staff"));
});

test("the tablet chooses a store and pick-up time; the phone's copy shows it, ready or not", async () => {
  const stores = await tablet.listStores();
  const store = stores.find((s) => s.id === "oslo-sentrum");
  assert.ok(store.next_slots.length > 0);
  const [slot] = store.next_slots;
  const onPhone = nextEvent(phone, "cart", (c) => c.collection?.pickup_at === slot);
  const chosen = await tablet.setCollection({ storeId: store.id, pickupAt: slot });
  const expected = { store_id: "oslo-sentrum", store_name: "Oslo Sentrum", pickup_at: slot, ready: false };
  assert.deepEqual(chosen.collection, expected);
  assert.deepEqual((await onPhone).collection, expected);
  await until(() => tablet.cart.collection?.pickup_at === slot, "the choice on the tablet");

  const refused = await phone.setCollection({ storeId: store.id, pickupAt: "tomorrow" }).catch((e) => e);
  assert.equal(refused.status, 422);
  assert.equal(refused.code, "invalid_pickup");

  await phone.setReadyForCollection(true);
  await until(() => tablet.cart.collection?.ready === true && tablet.cart.collection.store_id === store.id, "ready, same store");
  await tablet.setCollection({ storeId: null, ready: false });
  await until(() => phone.cart.collection?.store_id === null && phone.cart.ready_for_collection === false, "cleared on the phone");
  assert.deepEqual((await phone.getCart()).collection, { store_id: null, store_name: null, pickup_at: null, ready: false });
});

test("ready for collection shows on the customer's cart", async () => {
  const onPhone = nextEvent(phone, "cart", (c) => c.ready_for_collection === true);
  await tablet.setReadyForCollection(true);
  await onPhone;
  assert.equal((await phone.getCart()).ready_for_collection, true);
  await until(() => tablet.cart.ready_for_collection === true, "the flag on the tablet");
  await phone.setReadyForCollection(false);
  await until(() => tablet.cart.ready_for_collection === false, "the owner's change on the tablet");
});

test("revoking closes the staff socket with 4403 and ends access", async () => {
  const revoked = nextEvent(tablet, "revoked");
  const logged = nextEvent(phone, "event", (e) => e.type === "grant.revoked");
  await phone.revokeGrant(grant.id);
  const detail = await revoked;
  assert.equal(detail.code, 4403);
  assert.equal(detail.reason, "grant revoked");
  assert.equal((await logged).data.grant_id, grant.id);
  assert.equal(tablet.cart, null);
  assert.equal(tablet.connection, "closed");
  const refused = await tablet.getCart().catch((e) => e);
  assert.ok([403, 404].includes(refused.status), `status ${refused.status}`);
  const listed = await phone.listGrants();
  assert.ok(!(listed.grants ?? listed).some((g) => g.id === grant.id));
});

test("a code is read as the phone shows it or as its QR link holds it", () => {
  for (const shown of ["8417 2257", "8417-2257", " 8417\u00a02257 ", "http://127.0.0.1:8000/staff#code=84172257"]) {
    assert.equal(handoffCode(shown), "84172257", shown);
  }
  for (const wrong of ["8417 225", "8417 22577", "abcd efgh", "", null]) assert.equal(handoffCode(wrong), null, String(wrong));
});

test("presence: the phone and the tablet see each other live; the tablet's end shows on the phone", async () => {
  phone.device("iPhone", "phone");
  await until(() => phone.presence?.some((d) => d.you && d.label === "iPhone" && d.kind === "phone"), "the phone named in its presence");

  const handoff = await phone.createHandoff();
  const shown = `${handoff.code.slice(0, 4)}-${handoff.code.slice(4)}`;
  const { grant: second } = await staff.claimHandoff(shown);
  const desk = staff.forGrant(second.id);
  desk.device("Store tablet", "tablet");
  await desk.connect();
  await until(() => desk.presence?.some((d) => !d.you && d.label === "iPhone" && d.role === "customer"), "the phone on the tablet");
  await until(() => phone.presence?.some((d) => !d.you && d.role === "staff" && d.store === "s1" && d.label === "Store tablet"), "the tablet on the phone");

  const revoked = nextEvent(desk, "revoked");
  const ended = nextEvent(phone, "event", (e) => e.type === "grant.revoked" && e.data.grant_id === second.id);
  assert.equal((await staff.endGrant(second.id)).removed, second.id);
  assert.equal((await revoked).code, 4403);
  const event = await ended;
  assert.equal(event.actor.role, "staff");
  assert.equal(event.actor.store, "s1");
  await until(() => phone.presence && !phone.presence.some((d) => d.role === "staff"), "the tablet gone from the phone's presence");
  assert.equal(desk.presence, null);
  assert.throws(() => phone.device("", "phone"), TypeError);
  assert.throws(() => phone.device("Fridge", "fridge"), TypeError);
});
