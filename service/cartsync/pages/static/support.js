// The customer service page: look a customer up (each look is audited with its reason), read
// the cart, wishlists and the story of every change in plain words, and put the cart back as
// it was at an earlier revision. Talks to the service's HTTP API with a support token.

import { $, el, say } from "/static/dom.js";
import { describeLine } from "/static/lines.js";
import { claimsOf } from "/static/tokens.js";
import { collectionChange } from "/static/pickup.js";

const PAGE = 20;
const ALL = "";
const state = { token: "", customer: "", reason: "", cart: null, events: [], page: 0 };

const message = $("#message");
const show = (text, kind = "info") => say(message, text, kind);

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `the service answered ${status}`);
    this.status = status;
    this.code = body?.error?.code;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${state.token}` };
  // Percent-encoded: a header carries Latin-1 only, and reasons are written in any language.
  if (method === "GET") headers["X-Support-Reason"] = encodeURIComponent(state.reason);
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, { error: { message: "The service cannot be reached. Check the connection and try again." } });
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function explain(error) {
  if (error.status === 401) return "The token was not accepted (expired or invalid). Sign in again.";
  if (error.status === 403) return `Not allowed: ${error.message}.`;
  return error.message;
}

// Words -----------------------------------------------------------------------------------------

const when = (iso) => {
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? iso : at.toLocaleString([], { weekday: "short", hour: "2-digit", minute: "2-digit" });
};

const day = (iso) => new Date(iso).toLocaleString([], { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });

function who(actor) {
  if (!actor) return "someone";
  if (actor.role === "staff") return `${actor.id} at ${actor.store ?? "a store"}`;
  if (actor.role === "service") return `the shop (${actor.id})`;
  if (actor.role === "support") return `${actor.id} (customer service)`;
  return "the customer";
}

const device = (actor) => actor?.device ?? "";

/** "added Socks ×2" and the like; `names` knows lines and items by id for removals. */
function what(event, names, before) {
  const d = event.data ?? {};
  const name = (thing, id) => (thing ? (thing.title ?? thing.sku) : (names.get(id) ?? "an item"));
  switch (event.type) {
    case "line.added":
      return `added ${name(d.line)} ×${d.line.qty}`;
    case "line.updated":
      return `changed ${name(d.line)} to ${d.line.qty}`;
    case "line.removed":
      return `removed ${name(null, d.line_id)}`;
    case "line.saved_for_later":
      return `saved ${name(d.item)} for later`;
    case "cart.cleared":
      return "emptied the cart";
    case "cart.note_set":
      return d.note ? `set the note to “${d.note}”` : "removed the note";
    case "cart.checked_out":
      return "checked out";
    case "cart.merged":
      return `merged guest cart (${d.strategy})`;
    case "cart.restored":
      return `restored the cart to revision ${d.restored_rev}${d.wishlists_restored ? " with wishlists" : ""} (“${d.reason}”)`;
    case "cart.collection_set":
      return collectionChange(d, before, "the cart");
    case "grant.started":
      return `let ${d.grant?.staff ?? "staff"} at ${d.grant?.store ?? "a store"} open the cart`;
    case "grant.revoked":
      return "ended a store's access";
    case "wishlist.created":
      return `created the wishlist “${d.wishlist.name}”`;
    case "wishlist.renamed":
      return `renamed a wishlist to “${d.wishlist.name}”`;
    case "wishlist.deleted":
      return "deleted a wishlist";
    case "wishlist.item_added":
      return `added ${name(d.item)} to a wishlist`;
    case "wishlist.item_removed":
      return `removed ${name(null, d.item_id)} from a wishlist`;
    case "wishlist.item_moved_to_cart":
      return `moved ${name(d.line)} from a wishlist to the cart`;
    default:
      return event.type;
  }
}

/** Each event with its sentence, oldest first; names of lines and items are learnt on the way. */
function narrate(events) {
  const names = new Map();
  let collection = null; // the click-and-collect choice so far; unknown before the first change
  return events.map((event) => {
    const d = event.data ?? {};
    for (const thing of [d.line, d.item, ...(d.lines ?? [])]) if (thing) names.set(thing.id, thing.title ?? thing.sku);
    const text = [device(event.actor), `${who(event.actor)} ${what(event, names, collection)}`].filter(Boolean).join(" · ");
    if (event.type === "cart.collection_set") collection = { store_id: d.store_id ?? null, pickup_at: d.pickup_at ?? null, ready: Boolean(d.ready) };
    if (event.type === "cart.checked_out") collection = { store_id: null, pickup_at: null, ready: false };
    return { event, text };
  });
}

// Rendering -------------------------------------------------------------------------------------

function renderNow(cart, wishlists) {
  const units = cart.lines.reduce((n, line) => n + line.qty, 0);
  $("#cart-summary").textContent = cart.lines.length
    ? `${cart.lines.length} line(s), ${units} unit(s) · revision ${cart.rev}`
    : `The cart is empty · revision ${cart.rev}`;
  $("#cart").replaceChildren(
    ...cart.lines.map((line) => el("li", { dataset: { sku: line.sku } }, describeLine(line), el("span", { class: "qty" }, `×${line.qty}`))),
  );
  $("#cart-note").hidden = !cart.note;
  $("#cart-note").textContent = cart.note ? `Note: ${cart.note}` : "";
  const lists = wishlists.filter((w) => w.items.length || w.created_at);
  $("#wishlists").replaceChildren(
    ...(lists.length
      ? lists.map((w) => el("li", { dataset: { wishlist: w.id } }, el("span", { class: "what" }, el("span", { class: "sku" }, w.name), el("span", { class: "muted" }, w.items.map((i) => i.title ?? i.sku).join(", ") || "no items"))))
      : [el("li", { class: "empty" }, "No wishlists")]),
  );
}

function options(select, values) {
  const current = select.value;
  select.replaceChildren(el("option", { value: ALL }, "All"), ...values.map((v) => el("option", { value: v }, v)));
  select.value = values.includes(current) ? current : ALL;
}

function renderStory() {
  const told = narrate(state.events);
  options($("#filter-device"), [...new Set(state.events.map((e) => device(e.actor)).filter(Boolean))]);
  options($("#filter-actor"), [...new Set(state.events.map((e) => who(e.actor)))]);
  const byDevice = $("#filter-device").value;
  const byActor = $("#filter-actor").value;
  const shown = told
    .filter(({ event }) => (!byDevice || device(event.actor) === byDevice) && (!byActor || who(event.actor) === byActor))
    .reverse(); // newest first
  const pages = Math.max(1, Math.ceil(shown.length / PAGE));
  state.page = Math.min(state.page, pages - 1);
  const slice = shown.slice(state.page * PAGE, (state.page + 1) * PAGE);
  const newest = state.cart?.rev;
  $("#timeline").replaceChildren(
    ...(slice.length
      ? slice.map(({ event, text }) =>
          el(
            "li",
            { dataset: { rev: event.rev, type: event.type } },
            el("span", {}, el("span", { class: "when" }, when(event.at)), " · ", text),
            event.rev < newest
              ? el("button", { type: "button", class: "secondary", "aria-label": `Restore to here: revision ${event.rev}, ${when(event.at)}`, onclick: () => pick(event, text) }, "Restore to here")
              : el("span", { class: "muted" }, "now"),
          ),
        )
      : [el("li", { class: "empty" }, "No changes match")]),
  );
  $("#page-info").textContent = shown.length ? `${state.page * PAGE + 1}–${state.page * PAGE + slice.length} of ${shown.length}` : "";
  $("#newer-button").disabled = state.page === 0;
  $("#older-button").disabled = state.page >= pages - 1;
  const first = state.events[0];
  const boundary = $("#boundary");
  boundary.hidden = !(first && first.rev > 1);
  boundary.textContent = boundary.hidden ? "" : `History before ${day(first.at)} is gone (older changes are no longer kept).`;
}

function pick(event, text) {
  $("#restore-rev").value = String(event.rev);
  $("#restore-what").textContent = `Back to how it was right after: ${when(event.at)} · ${text}`;
  $("#restore-reason").focus();
}

// Actions ---------------------------------------------------------------------------------------

async function lookUp() {
  const customer = $("#customer-id").value.trim();
  const reason = $("#reason").value.trim();
  if (!customer) return show("Enter the customer's id.", "error");
  if (!reason) return show("Say why you are looking: it is recorded, and the customer can see it.", "error");
  Object.assign(state, { customer, reason });
  const base = `/v1/customers/${encodeURIComponent(customer)}`;
  try {
    const cart = await api(`${base}/cart`);
    if (cart.rev === 0) {
      $("#customer").hidden = true;
      return show(`No customer with the id “${customer}” has a cart, wishlists or history.`, "error");
    }
    const lists = await api(`${base}/wishlists`);
    const history = await api(`${base}/cart/history?since=0&limit=1000`);
    Object.assign(state, { cart, events: history.events, page: 0 });
    renderNow(cart, lists.wishlists);
    renderStory();
    $("#customer").hidden = false;
    show("");
  } catch (error) {
    show(explain(error), "error");
  }
}

async function restore() {
  const raw = $("#restore-rev").value.trim();
  const reason = $("#restore-reason").value.trim();
  if (!/^\d{1,15}$/.test(raw)) return show("Choose a change to go back to, or type its revision number.", "error");
  if (!reason) return show("Say why you are restoring: it is recorded in the cart's history.", "error");
  const rev = Number(raw);
  try {
    const done = await api(`/v1/customers/${encodeURIComponent(state.customer)}/cart/restore`, {
      method: "POST",
      body: { rev, reason, wishlists: $("#restore-wishlists").checked, epoch: state.cart.epoch },
    });
    $("#restore-reason").value = "";
    await lookUp();
    show(`Restored: the cart is as it was at revision ${done.restored_rev}. The customer's devices show it now.`);
  } catch (error) {
    show(explain(error), "error");
  }
}

function signIn(token) {
  const claims = claimsOf(token);
  if (!claims || claims.role !== "support") return show("This is not a support token.", "error");
  state.token = token;
  sessionStorage.setItem("cartsync.support", token);
  $("#agent").textContent = `Signed in as ${claims.sub}`;
  $("#agent").dataset.state = "open";
  $("#signin").hidden = true;
  $("#lookup").hidden = false;
  show("");
}

function signOut() {
  sessionStorage.removeItem("cartsync.support");
  Object.assign(state, { token: "", customer: "", reason: "", cart: null, events: [], page: 0 });
  $("#agent").textContent = "Not signed in";
  $("#agent").dataset.state = "closed";
  $("#customer").hidden = true;
  $("#lookup").hidden = true;
  $("#signin").hidden = false;
}

$("#signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  signIn($("#support-token").value.trim());
});
$("#lookup-form").addEventListener("submit", (e) => {
  e.preventDefault();
  lookUp();
});
$("#restore-form").addEventListener("submit", (e) => {
  e.preventDefault();
  restore();
});
$("#signout-button").addEventListener("click", signOut);
$("#filter-device").addEventListener("change", () => ((state.page = 0), renderStory()));
$("#filter-actor").addEventListener("change", () => ((state.page = 0), renderStory()));
$("#newer-button").addEventListener("click", () => ((state.page -= 1), renderStory()));
$("#older-button").addEventListener("click", () => ((state.page += 1), renderStory()));

const kept = sessionStorage.getItem("cartsync.support");
if (kept) signIn(kept);
