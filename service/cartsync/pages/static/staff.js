// The store tablet: a staff member signs in, types the customer's code, and works on that
// customer's cart and wishlists live until the customer ends the access.
import { CartsyncClient, handoffCode } from "/static/cartsync.js";
import { $, el, flash, say } from "/static/dom.js";
import { touchedIds } from "/static/events.js";
import { attrsText, formatMoney, formatTime } from "/static/format.js";
import { cartLineRow } from "/static/lines.js";
import { customerOnlineText } from "/static/presence.js";
import { bindCollectForm, collectionOf, collectionText, fillSlots, fillStores, loadStores } from "/static/pickup.js";
import { scanQr } from "/static/scanner.js";
import { StaffSession } from "/static/session.js";
import { finishSignIn, idleTimer, signInSettings, startSignIn } from "/static/signin.js";
import { describeError, runChange, showConnection } from "/static/status.js";
import { claimsOf } from "/static/tokens.js";
import { cartTotals } from "/static/totals.js";

const TOKEN_KEY = "cartsync.staff.token";
const GRANT_KEY = "cartsync.staff.grant"; // the open grant: a reload of the tablet resumes it
const DEVICE_ID = "staff-tablet";
// The server closes the socket when a grant expires; this much later the page ends it itself,
// for a tablet that was offline at that moment.
const EXPIRY_GRACE_MS = 5_000;

let staff = null; // the staff member's own client: claims codes
let session = null; // the sign-in's tokens, renewed before they run out
let signInWith = { provider: null, idle_seconds: 600 }; // from /staff/sign-in.json
let stopIdle = null;
let tablet = null; // the client of one grant: the customer's data
let grant = null;
let expiryTimer = null;
const toFlash = new Set(); // ids the change being shown touched
let stores = []; // GET /v1/stores: empty when the shop offers no store choice
let shownCollection = null; // the choice on screen

const message = $("#message");
const badge = $("#connection");

function show(section) {
  for (const id of ["signin", "claim", "ended", "customer"]) $(`#${id}`).hidden = id !== section;
}

// Signing in ------------------------------------------------------------------------------------

/**
 * A token from the provider (with `tokens`, its refresh token and lifetime) or the development
 * box: checked by the service before use.
 */
async function signIn(token, tokens = { token }) {
  const claims = claimsOf(token);
  if (!claims) {
    say(message, "That is not a sign-in token: copy the whole token and try again.", "error");
    return;
  }
  if (claims.role && claims.role !== "staff") {
    say(message, `This is a ${claims.role} token; the tablet needs a staff token.`, "error");
    return;
  }
  const candidate = new CartsyncClient({ token, deviceId: DEVICE_ID });
  // Staff have no cart of their own: any answer but 401 means the service accepted the token.
  const refused = await candidate.getCart().then(() => null, (error) => (error.status === 401 || error.code === "network_error" ? error : null));
  if (refused) {
    sessionStorage.removeItem(TOKEN_KEY);
    say(message, refused.status === 401 ? "The service did not accept this sign-in (expired or not a staff token). Sign in again." : describeError(refused), "error");
    show("signin");
    return;
  }
  session?.end();
  session = new StaffSession(tokens, signInExpired, (fresh) => sessionStorage.setItem(TOKEN_KEY, fresh));
  staff = new CartsyncClient({ token: session.tokenProvider(), deviceId: DEVICE_ID });
  sessionStorage.setItem(TOKEN_KEY, token); // this tab only; never in the URL
  $("#staff-name").textContent = claims.preferred_username ?? claims.name ?? claims.sub ?? "staff";
  $("#staff-store").textContent = claims.store ?? claims.store_id ?? "your store";
  stopIdle?.();
  stopIdle = idleTimer(signInWith.idle_seconds, () => {
    signOut();
    say(message, `Signed out after ${Math.round(signInWith.idle_seconds / 60) || 1} minutes without use; any open cart was closed.`);
  });
  say(message, "");
  show("claim");
  $("#code").focus();
  const linked = handoffCode(location.hash);
  if (linked) {
    history.replaceState(null, "", location.pathname); // the code is used up either way
    claimCode(linked);
    return;
  }
  const open = JSON.parse(sessionStorage.getItem(GRANT_KEY) ?? "null");
  if (open?.idle) {
    // The tablet went idle while signed out: what the idle limit would have ended, end now.
    sessionStorage.removeItem(GRANT_KEY);
    staff.endGrant(open.id).catch(() => {});
  } else if (open && Date.parse(open.expires_at) > Date.now()) openGrant(open);
}

/** The provider no longer renews the sign-in (revoked, or it stayed unreachable). */
function signInExpired() {
  const open = grant;
  signOut({ expired: true });
  say(message, `Your sign-in expired, sign in again.${open ? " The customer's cart opens again once you are back." : ""}`, "error");
}

/**
 * Sign-out ends the open grant: a shared tablet leaves none behind. An expired sign-in cannot
 * end it (no token): the grant is kept for the next sign-in, and the idle timer runs on, so
 * that an abandoned tablet still ends it then.
 */
function signOut({ expired = false } = {}) {
  const open = grant;
  if (open && !expired) staff.endGrant(open.id).catch(() => {});
  endAccess(null);
  if (expired && open) sessionStorage.setItem(GRANT_KEY, JSON.stringify(open));
  const kept = JSON.parse(sessionStorage.getItem(GRANT_KEY) ?? "null");
  if (!expired && kept) sessionStorage.setItem(GRANT_KEY, JSON.stringify({ ...kept, idle: true }));
  if (!expired) {
    stopIdle?.();
    stopIdle = null;
  }
  session?.end();
  session = null;
  staff = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("#staff-token").value = "";
  show("signin");
  $(signInWith.provider ? "#provider-button" : "#staff-token").focus();
}

$("#provider-button").addEventListener("click", () => {
  startSignIn(signInWith.provider, location.hash).catch((error) => say(message, error.message, "error"));
});

$("#signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const token = $("#staff-token").value.trim();
  if (token) signIn(token);
});

$("#signout-button").addEventListener("click", signOut);

// Claiming a code -------------------------------------------------------------------------------

$("#claim-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const code = handoffCode($("#code").value);
  if (!code) {
    say(message, "Type the 8 digits the customer's phone shows, for example 8417 2257.", "error");
    $("#code").focus();
    return;
  }
  claimCode(code);
});

$("#code").addEventListener("input", () => {
  if (message.classList.contains("error")) say(message, ""); // the old error no longer applies
});

async function claimCode(code) {
  const button = $("#claim-button");
  button.disabled = true;
  try {
    const claimed = await staff.claimHandoff(code);
    $("#code").value = "";
    say(message, "");
    await openGrant(claimed.grant);
  } catch (error) {
    say(message, claimError(error), "error");
  } finally {
    button.disabled = false;
  }
}

let scanning = null; // the AbortController of a running scan

$("#scan-button").addEventListener("click", async () => {
  if (scanning) return;
  scanning = new AbortController();
  $("#scanner").hidden = false;
  $("#scan-status").textContent = "Hold the customer's QR code in front of the camera.";
  try {
    const text = await scanQr($("#scan-video"), (t) => handoffCode(t) !== null, scanning.signal);
    if (text) claimCode(handoffCode(text));
    else if (!scanning.signal.aborted) say(message, "No QR code was seen. Try again, or type the code.", "error");
  } catch (error) {
    say(message, error?.name === "NotAllowedError" ? "The camera may not be used on this tablet. Type the code instead." : `The camera could not be started (${error?.message ?? error}). Type the code instead.`, "error");
  } finally {
    scanning = null;
    $("#scanner").hidden = true;
    $("#scan-button").focus();
  }
});

$("#scan-stop").addEventListener("click", () => scanning?.abort());

function claimError(error) {
  if (error.status === 404) return "That code is unknown, was used already or has expired. Ask the customer for a new one.";
  if (error.status === 403) return "This token cannot open carts: it needs to be a staff token of a store.";
  return describeError(error);
}

async function openGrant(newGrant) {
  grant = newGrant;
  sessionStorage.setItem(GRANT_KEY, JSON.stringify(grant));
  tablet = staff.forGrant(grant.id, { deviceId: DEVICE_ID, token: session.tokenProvider() });
  showConnection(badge, tablet);
  tablet.addEventListener("event", (e) => {
    for (const id of touchedIds(e.detail)) toFlash.add(id);
    if (e.detail.type === "cart.collection_set") toFlash.add("collection");
    if (e.detail.type === "cart.note_set") toFlash.add("note");
    // The cart and wishlists events of this change follow at once; they flash what it touched.
    queueMicrotask(() => toFlash.clear());
  });
  tablet.addEventListener("cart", (e) => e.detail && renderCart(e.detail));
  tablet.addEventListener("wishlists", (e) => e.detail && renderWishlists(e.detail));
  tablet.addEventListener("revoked", (e) => endAccess(e.detail.reason));
  tablet.addEventListener("presence", (e) => showCustomerPresence(e.detail));
  tablet.device("Store tablet", "tablet");
  tablet.addEventListener("connection", (e) => {
    if (e.detail.state === "closed" && e.detail.error) say(message, describeError(e.detail.error), "error");
  });
  showCustomerPresence(null);
  $("#customer-presence").textContent = "Checking whether the customer's phone is online…";
  $("#customer-name").textContent = grant.owner.replace(/^[cg]:/, "");
  $("#grant-expires").textContent = formatTime(grant.expires_at);
  const left = Date.parse(grant.expires_at) - Date.now();
  if (left >= 0) expiryTimer = setTimeout(() => endAccess("grant expired"), left + EXPIRY_GRACE_MS);
  $("#cart").replaceChildren();
  $("#wishlists").replaceChildren();
  show("customer");
  shownCollection = null;
  try {
    await tablet.connect();
    await refreshStores();
  } catch (error) {
    if (tablet) say(message, describeError(error), "error");
  }
}

/** The stores and their next slots; the store of this tablet's staff member comes first. */
async function refreshStores() {
  stores = await loadStores(tablet);
  const own = claimsOf(sessionStorage.getItem(TOKEN_KEY) ?? "")?.store ?? null;
  const collection = collectionOf(tablet?.cart);
  const store = fillStores($("#collect-store"), stores, collection.store_id ?? own);
  fillSlots($("#collect-slot"), store, collection.store_id === store?.id ? collection.pickup_at : null);
  $("#collect-form").hidden = !stores.length;
}

/** Access is over: revoked or expired (`reason`), or the staff member closed the cart (null). */
function endAccess(reason) {
  // A tablet that reconnects after the end hears only "grant ended or not yours": the time tells.
  const expired = reason === "grant expired" || (reason !== "grant revoked" && grant !== null && Date.now() >= Date.parse(grant.expires_at));
  clearTimeout(expiryTimer);
  expiryTimer = null;
  sessionStorage.removeItem(GRANT_KEY);
  tablet?.close();
  tablet = null;
  grant = null;
  toFlash.clear();
  $("#cart").replaceChildren();
  $("#wishlists").replaceChildren();
  $("#cart-note").hidden = true;
  showConnection(badge, null);
  if (reason === null) {
    show(staff ? "claim" : "signin");
    $(staff ? "#code" : "#staff-token").focus(); // never leave focus on a control that vanished
    return;
  }
  $("#ended").dataset.reason = expired ? "expired" : "revoked";
  $("#ended-text").textContent = expired ? "Access expired: ask the customer for a new code" : "Access ended by the customer";
  show("ended");
  $("#ended-button").focus();
}

$("#ended-button").addEventListener("click", () => {
  show("claim");
  $("#code").focus();
});

function showCustomerPresence(devices) {
  const { online, text } = customerOnlineText(devices);
  const box = $("#customer-presence");
  box.dataset.online = online;
  box.textContent = text;
}

$("#done-button").addEventListener("click", async () => {
  const ending = grant;
  const ender = staff;
  endAccess(null);
  say(message, "");
  try {
    await ender?.endGrant(ending.id);
  } catch (error) {
    if (error.status !== 404) say(message, `The customer's access could not be ended: ${describeError(error)}`, "error"); // 404: ended already
  }
});

// The customer's data -----------------------------------------------------------------------

const change = (action) => runChange(tablet, message, action);

function renderCart(cart) {
  const list = $("#cart");
  const rows = cart.lines.map((line) => cartLineRow(line, change, cart.currency, "staff"));
  list.replaceChildren(...(rows.length ? rows : [el("li", { class: "empty" }, "The cart is empty")]));

  const totals = cartTotals(cart);
  const subtotal = $("#cart-subtotal");
  subtotal.hidden = !cart.lines.length;
  subtotal.replaceChildren(
    ...(totals
      ? [
          "Subtotal ",
          el("strong", { id: "cart-subtotal-amount" }, formatMoney(totals.subtotal, cart.currency)),
          ` · ${totals.units} ${totals.units === 1 ? "item" : "items"}`,
        ]
      : ["No subtotal: not every line has a price in ", cart.currency]),
  );

  const note = $("#cart-note");
  note.hidden = !cart.note;
  note.textContent = cart.note ? `Note: ${cart.note}` : "";

  const collection = collectionOf(cart);
  const chosen = $("#collect-chosen");
  const text = collectionText(collection);
  if (chosen.textContent !== text) chosen.textContent = text;
  chosen.classList.toggle("ready", collection.ready);
  const moved = shownCollection?.store_id !== collection.store_id || shownCollection?.pickup_at !== collection.pickup_at;
  if (moved && collection.store_id && stores.length && !$("#collect-form").contains(document.activeElement)) {
    fillSlots($("#collect-slot"), fillStores($("#collect-store"), stores, collection.store_id), collection.pickup_at);
  }
  shownCollection = collection;
  $("#collect-button").disabled = !cart.lines.length;

  const ready = Boolean(cart.ready_for_collection);
  const state = $("#collection-state");
  state.textContent = ready ? "Ready for collection" : "Not ready for collection";
  state.classList.toggle("ready", ready);
  const button = $("#ready-button");
  button.textContent = ready ? "Not ready after all" : "Ready for collection";
  button.classList.toggle("ready", !ready);
  button.classList.toggle("secondary", ready);

  for (const id of toFlash) {
    if (id === "collection") {
      flash(state);
      flash(chosen);
    } else if (id === "note") flash(note);
    else flash(list.querySelector(`li[data-id="${CSS.escape(id)}"]`));
  }
}

function renderWishlists(wishlists) {
  const box = $("#wishlists");
  const blocks = wishlists.map((w) =>
    el(
      "div",
      { class: "stack", dataset: { id: w.id } },
      el("h3", {}, w.name === "default" ? "Wishlist" : w.name === "saved" ? "Saved for later" : w.name),
      el(
        "ul",
        { class: "items" },
        w.items.length
          ? w.items.map((item) =>
              el(
                "li",
                { dataset: { id: item.id, sku: item.sku } },
                el("span", { class: "what" }, el("span", { class: "sku" }, item.title ?? item.sku), el("span", { class: "muted" }, [item.title ? item.sku : null, attrsText(item.attrs), item.note].filter(Boolean).join(" · "))),
                el("button", { type: "button", "aria-label": `Move to cart: ${item.title ?? item.sku}`, onclick: () => change((c) => c.moveToCart(w.id, item.id, 1)) }, "Move to cart"),
              ),
            )
          : el("li", { class: "empty" }, "Nothing here"),
      ),
    ),
  );
  box.replaceChildren(...blocks);
  for (const id of toFlash) flash(box.querySelector(`li[data-id="${CSS.escape(id)}"]`));
}

$("#add-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const sku = $("#add-sku").value.trim();
  const qty = Number($("#add-qty").value) || 1;
  const size = $("#add-size").value.trim();
  if (!sku) return;
  change(async (c) => {
    const result = await c.addLine({ sku, qty, attrs: size ? { size } : {} });
    $("#add-sku").value = "";
    $("#add-qty").value = "1";
    $("#add-size").value = "";
    return result;
  });
});

bindCollectForm({ stores: () => stores, change, refreshStores });

$("#ready-button").addEventListener("click", () => {
  const ready = !tablet?.cart?.ready_for_collection;
  change((c) => c.setReadyForCollection(ready));
});

// Start ---------------------------------------------------------------------------------------

async function start() {
  showConnection(badge, null);
  try {
    signInWith = await signInSettings();
  } catch (error) {
    say(message, error.message, "error");
  }
  $("#provider-signin").hidden = !signInWith.provider;
  $("#signin-form").hidden = Boolean(signInWith.provider);
  if (signInWith.provider) {
    try {
      const back = await finishSignIn(signInWith.provider);
      if (back) {
        if (back.carry) history.replaceState(null, "", `${location.pathname}${back.carry}`);
        await signIn(back.token, back);
        return;
      }
    } catch (error) {
      say(message, error.message, "error");
    }
  }
  const remembered = sessionStorage.getItem(TOKEN_KEY);
  if (remembered) {
    $("#staff-token").value = remembered;
    await signIn(remembered);
  } else {
    show("signin");
  }
}

start();
