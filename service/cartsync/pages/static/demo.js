// "The phone": a customer (or a guest) fills a cart, shows a hand-off code to store staff, sees
// who has access, and revokes it.
import { CartsyncClient } from "/static/cartsync.js";
import { $, el, flash, say } from "/static/dom.js";
import { touchedIds } from "/static/events.js";
import { narrate, storeName } from "/static/actors.js";
import { formatMoney, formatTime } from "/static/format.js";
import { hostTokens, listenToHost } from "/static/handover.js";
import { cartTotals } from "/static/totals.js";
import { pendingText, withPending } from "/static/pending.js";
import { cartLineRow, describeLine } from "/static/lines.js";
import { guessDevice, ownDevicesText } from "/static/presence.js";
import { bindCollectForm, collectionOf, collectionText, fillSlots, fillStores, loadStores } from "/static/pickup.js";
import { describeError, runChange, showConnection } from "/static/status.js";
import { claimsOf } from "/static/tokens.js";

const TOKEN_KEY = "cartsync.demo.token";
const DEVICE_ID = "phone";
const DEVICE_KEY = "cartsync.demo.device"; // this device's name, kept across sign-ins
const CART_KEY = "cartsync.demo.cart"; // the last cart the service sent: shown on an offline reload

let client = null;
let grantsTimer = null; // refreshes the list when the next grant expires: no event says so
let handoffTimer = null; // hides the code when it expires
const toFlash = new Set();
const titles = new Map(); // line id -> name, to say what a removal removed
let stores = []; // GET /v1/stores: empty when the shop offers no store choice
let shownCollection = null; // the choice on screen, to tell what a collection change changed
const message = $("#message");
const badge = $("#connection");

// Signing in ------------------------------------------------------------------------------------

async function signIn(token) {
  const claims = claimsOf(token);
  if (!claims) {
    say(message, "That is not a sign-in token: copy the whole token, or try as a guest.", "error");
    return;
  }
  if (claims.role && !["customer", "guest"].includes(claims.role)) {
    say(message, `This is a ${claims.role} token; sign in with a customer token or try as a guest.`, "error");
    return;
  }
  const candidate = new CartsyncClient({ token: hostTokens(token), deviceId: DEVICE_ID });
  // Asked first, so that a refused token never leaves a signed-in screen; offline, the shell
  // goes on with the last cart it has.
  const refused = await candidate.getCart().then(
    () => null,
    (error) => (error.status === 401 ? error : null),
  );
  if (refused) {
    sessionStorage.removeItem(TOKEN_KEY);
    say(message, "The service did not accept this sign-in (expired or mistyped). Sign in again, or try as a guest.", "error");
    $("#token").focus();
    return;
  }
  client = candidate;
  sessionStorage.setItem(TOKEN_KEY, token);
  showConnection(badge, client);
  client.addEventListener("event", (e) => {
    for (const id of touchedIds(e.detail)) toFlash.add(id);
    if (e.detail.actor?.role === "staff") {
      const said = narrate(e.detail, titles, "customer", shownCollection);
      if (said) $("#activity").textContent = `${said[0].toUpperCase()}${said.slice(1)} at ${formatTime(e.detail.at ?? new Date().toISOString())}`;
    }
    if (e.detail.type === "cart.collection_set") toFlash.add("collection");
    queueMicrotask(() => toFlash.clear());
    if (e.detail.type.startsWith("grant.")) refreshGrants();
    if (e.detail.type === "grant.started") hideHandoff(); // the code is used up
    if (e.detail.type === "grant.revoked" && e.detail.actor?.role === "staff") {
      say(message, `${e.detail.actor.id} at ${storeName(e.detail.actor.store)} ended their access to your cart.`);
    }
  });
  client.addEventListener("presence", (e) => ($("#devices").textContent = ownDevicesText(e.detail)));
  const device = JSON.parse(localStorage.getItem(DEVICE_KEY) ?? "null") ?? guessDevice();
  $("#device-name").value = device.label;
  client.device(device.label, device.kind);
  client.addEventListener("cart", (e) => {
    if (!e.detail) return;
    localStorage.setItem(CART_KEY, JSON.stringify({ token: claims?.sub ?? null, cart: e.detail }));
    renderCart();
  });
  client.addEventListener("queue", () => renderCart());
  client.addEventListener("wishlists", (e) => e.detail && renderWishlist(e.detail));
  client.addEventListener("connection", (e) => {
    if (e.detail.state === "closed" && e.detail.error) say(message, describeError(e.detail.error), "error");
  });
  $("#who").textContent = claims ? `${claims.role === "guest" ? "guest" : claims.sub}` : "?";
  $("#signin").hidden = true;
  $("#shop").hidden = false;
  renderCart(); // the last known cart and the changes still waiting, before the network answers
  try {
    await client.connect();
    say(message, "");
    await Promise.all([refreshGrants(), refreshStores()]);
  } catch (error) {
    if (error?.status === 401 || error?.code === "token_invalid") {
      signOut(); // no dead "signed in" screen for a token the service refused
      say(message, "The service did not accept this sign-in (expired or mistyped). Sign in again.", "error");
      return;
    }
    say(message, describeError(error), "error");
  }
}

$("#device-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const label = $("#device-name").value.trim();
  if (!client || !label) return;
  const device = { label, kind: guessDevice().kind };
  localStorage.setItem(DEVICE_KEY, JSON.stringify(device));
  client.device(device.label, device.kind);
});

function signOut() {
  localStorage.removeItem(CART_KEY); // nothing of this shopper stays on a shared device
  clearTimeout(grantsTimer);
  hideHandoff();
  client?.close();
  client = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("#cart").replaceChildren();
  $("#wishlist").replaceChildren();
  $("#grants").replaceChildren();
  $("#handoff").hidden = true;
  $("#token").value = "";
  showConnection(badge, null);
  $("#shop").hidden = true;
  $("#signin").hidden = false;
}

$("#signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const token = $("#token").value.trim();
  if (token) signIn(token);
  else say(message, "Paste a customer token, or try as a guest.", "error");
});

$("#guest-button").addEventListener("click", async () => {
  try {
    const guest = await CartsyncClient.createGuest();
    await signIn(guest.token);
  } catch (error) {
    say(message, describeError(error), "error");
  }
});

$("#signout-button").addEventListener("click", signOut);

// The cart and the wishlist ---------------------------------------------------------------------

const change = (action) => runChange(client, message, action);

/** The live copy, else the last one this browser saw of this shopper, with waiting changes on top. */
function currentCart() {
  let cart = client?.cart;
  if (!cart) {
    const saved = JSON.parse(localStorage.getItem(CART_KEY) ?? "null");
    const who = claimsOf(sessionStorage.getItem(TOKEN_KEY) ?? "")?.sub ?? null;
    if (saved && saved.token === who) cart = saved.cart;
  }
  return cart && client ? withPending(cart, client.queued, client.prefix) : null;
}

function renderCart() {
  const cart = currentCart();
  const waiting = pendingText(client?.pending ?? 0);
  const pending = $("#pending");
  pending.textContent = waiting;
  pending.hidden = !waiting;
  if (!cart) return;
  const list = $("#cart");
  for (const line of cart.lines) titles.set(line.id, line.title ?? line.sku);
  const rows = cart.lines.map((line) => cartLineRow(line, change, cart.currency, "customer"));
  list.replaceChildren(...(rows.length ? rows : [el("li", { class: "empty" }, "Your cart is empty")]));
  const ready = $("#collection-state");
  ready.hidden = !cart.ready_for_collection;
  renderCollection(cart);
  const totals = cartTotals(cart);
  const subtotal = $("#cart-subtotal");
  subtotal.hidden = !cart.lines.length;
  subtotal.textContent = totals ? `Subtotal ${formatMoney(totals.subtotal, cart.currency)} · ${totals.units} ${totals.units === 1 ? "item" : "items"}` : "Some items have no price yet";
  if (document.activeElement !== $("#note")) $("#note").value = cart.note ?? "";
  $("#checkout-button").disabled = !cart.lines.length;
  for (const id of toFlash) flash(id === "collection" ? ready : list.querySelector(`li[data-id="${CSS.escape(id)}"]`));
}

// Click and collect ----------------------------------------------------------------------------

async function refreshStores() {
  try {
    stores = await loadStores(client);
  } catch (error) {
    stores = [];
    say(message, describeError(error), "error");
  }
  const collection = collectionOf(currentCart());
  fillSlots($("#collect-slot"), fillStores($("#collect-store"), stores, collection.store_id), collection.pickup_at);
  renderCart();
}

/** The choice and its status line (a live region: it speaks only when the text changes). */
function renderCollection(cart) {
  const collection = collectionOf(cart);
  const text = collectionText(collection);
  const chosen = $("#collect-chosen");
  if (chosen.textContent !== text) chosen.textContent = text;
  chosen.classList.toggle("ready", collection.ready);
  const moved = shownCollection?.store_id !== collection.store_id || shownCollection?.pickup_at !== collection.pickup_at;
  if (moved && collection.store_id && !$("#collect-form").contains(document.activeElement)) {
    // Chosen on another device (or the tablet): the selects show it, unless someone is using them.
    fillSlots($("#collect-slot"), fillStores($("#collect-store"), stores, collection.store_id), collection.pickup_at);
  }
  shownCollection = collection;
  $("#collect-form").hidden = !stores.length;
  const empty = !cart.lines.length;
  $("#collect-button").disabled = empty;
  $("#collect-clear").disabled = !collection.store_id;
  $("#collect-hint").textContent = !stores.length
    ? "The store tells you here when your order is ready."
    : empty
      ? "Add something to your cart to choose a store and a pick-up time."
      : "Times are the store's local time. The store tells you here when your order is ready.";
}

bindCollectForm({ stores: () => stores, change, refreshStores });

$("#collect-clear").addEventListener("click", () => change((c) => c.setCollection({ storeId: null })));

function renderWishlist(wishlists) {
  const wishlist = wishlists.find((w) => w.id === "default") ?? { items: [] };
  const list = $("#wishlist");
  const rows = wishlist.items.map((item) =>
    el(
      "li",
      { dataset: { id: item.id, sku: item.sku } },
      describeLine(item),
      el("button", { type: "button", "aria-label": `Move to cart: ${item.title ?? item.sku}`, onclick: () => change((c) => c.moveToCart("default", item.id, 1)) }, "Move to cart"),
      el("button", { type: "button", class: "danger", "aria-label": `Remove ${item.title ?? item.sku} from the wishlist`, onclick: () => change((c) => c.removeItem("default", item.id)) }, "Remove"),
    ),
  );
  list.replaceChildren(...(rows.length ? rows : [el("li", { class: "empty" }, "Nothing on your wishlist")]));
  for (const id of toFlash) flash(list.querySelector(`li[data-id="${CSS.escape(id)}"]`));
}

function formValues() {
  const sku = $("#add-sku").value.trim();
  const qty = Number($("#add-qty").value) || 1;
  const size = $("#add-size").value.trim();
  return { sku, qty, attrs: size ? { size } : {} };
}

$("#add-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const { sku, qty, attrs } = formValues();
  if (sku) change((c) => c.addLine({ sku, qty, attrs }));
});

$("#wish-button").addEventListener("click", () => {
  const { sku, attrs } = formValues();
  if (sku) change((c) => c.addItem("default", { sku, attrs }));
});

// Note and checkout ------------------------------------------------------------------------------

$("#note-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const note = $("#note").value.trim();
  change((c) => c.setNote(note));
});

$("#checkout-button").addEventListener("click", () => {
  const cart = client?.cart;
  if (!cart?.lines.length) return;
  const totals = cartTotals(cart);
  $("#checkout-summary").textContent = totals
    ? `${totals.units} ${totals.units === 1 ? "item" : "items"}, ${formatMoney(totals.subtotal, cart.currency)}. Place the order? The cart is then emptied for your next visit.`
    : `${cart.lines.length} lines, some without a price yet. Place the order?`;
  $("#checkout-confirm").hidden = false;
  $("#checkout-done").hidden = true;
  $("#checkout-place").focus();
});

$("#checkout-cancel").addEventListener("click", () => {
  $("#checkout-confirm").hidden = true;
  $("#checkout-button").focus();
});

$("#checkout-place").addEventListener("click", async () => {
  try {
    const result = await client.checkout();
    if (result?.queued) throw new Error("offline");
    const done = $("#checkout-done");
    done.textContent = `Order placed: ${result.checkout.lines.length} ${result.checkout.lines.length === 1 ? "line" : "lines"}. Thank you!`;
    done.hidden = false;
    say(message, "");
  } catch (error) {
    say(message, error?.message === "offline" ? "You are offline: the order will be placed when the connection is back." : `The order was not placed: ${describeError(error)}`, "error");
  } finally {
    $("#checkout-confirm").hidden = true;
    $("#checkout-button").focus();
  }
});

// Hand-off and grants ----------------------------------------------------------------------------

$("#handoff-button").addEventListener("click", async () => {
  try {
    const handoff = await client.createHandoff();
    const code = $("#handoff-code");
    code.dataset.code = handoff.code;
    code.textContent = `${handoff.code.slice(0, 4)} ${handoff.code.slice(4)}`;
    // As an image, the SVG is only drawn: nothing in it can run in this page.
    $("#handoff-qr").src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(handoff.qr_svg)}`;
    $("#handoff-expires").textContent = formatTime(handoff.expires_at);
    $("#handoff").hidden = false;
    clearTimeout(handoffTimer);
    const left = Math.min(Math.max(0, Date.parse(handoff.expires_at) - Date.now()), 86_400_000);
    handoffTimer = setTimeout(() => {
      hideHandoff();
      say(message, "The code expired. Show a new one when you are with a member of staff.");
    }, left);
    say(message, "");
  } catch (error) {
    say(message, describeError(error), "error");
  }
});

/** The code is gone from the screen once used or expired: nobody should read an old one. */
function hideHandoff() {
  clearTimeout(handoffTimer);
  handoffTimer = null;
  const code = $("#handoff-code");
  delete code.dataset.code;
  code.textContent = "";
  $("#handoff-qr").removeAttribute("src");
  $("#handoff").hidden = true;
}

async function refreshGrants() {
  if (!client) return;
  let grants;
  try {
    grants = (await client.listGrants()).grants;
  } catch (error) {
    say(message, describeError(error), "error");
    return;
  }
  const rows = grants.map((g) =>
    el(
      "li",
      { dataset: { id: g.id } },
      el("span", { class: "what" }, el("span", { class: "sku" }, `${g.staff} · ${storeName(g.store)}`), el("span", { class: "muted" }, `until ${formatTime(g.expires_at)}`)),
      el("button", { type: "button", class: "danger", "aria-label": `Revoke the access of ${g.staff} at ${storeName(g.store)}`, onclick: () => revoke(g.id) }, "Revoke"),
    ),
  );
  $("#grants").replaceChildren(...(rows.length ? rows : [el("li", { class: "empty" }, "Nobody but you")]));
  clearTimeout(grantsTimer);
  const next = Math.min(...grants.map((g) => Date.parse(g.expires_at)).filter(Number.isFinite));
  // A second late, so that the service no longer lists it; at most a day ahead (timers overflow).
  if (Number.isFinite(next)) grantsTimer = setTimeout(refreshGrants, Math.min(Math.max(0, next - Date.now()) + 1_000, 86_400_000));
}

async function revoke(grantId) {
  try {
    await client.revokeGrant(grantId);
  } catch (error) {
    if (error.status !== 404) say(message, describeError(error), "error"); // 404: ended already
  }
  await refreshGrants();
}

// Start ---------------------------------------------------------------------------------------

showConnection(badge, null);
// The offline shell; a browser without service workers (or a page not on https or localhost) works online only.
navigator.serviceWorker?.register("/sw.js").catch(() => {});
// The shop's app hands its token over in the fragment (/demo#token=...), which browsers never
// send to a server; it is taken off the address bar at once.
const handed = new URLSearchParams(location.hash.slice(1)).get("token");
if (handed) history.replaceState(null, "", location.pathname);
const remembered = handed ?? sessionStorage.getItem(TOKEN_KEY);
const started = remembered ? signIn(remembered) : Promise.resolve();
// Or by postMessage, from a shop's app that embeds or opens this page (handover.js).
listenToHost({ after: started, signedInAs: () => client?.token ?? null, signIn: (token) => (client && signOut(), signIn(token)) });
