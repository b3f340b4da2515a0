// Small DOM helpers shared by staff.js and demo.js. Text is always set as text, never as HTML.

/** An element with attributes (`on*` functions become listeners) and children (strings are text). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** Replay the flash animation on a node that just changed. */
export function flash(node) {
  if (!node) return;
  node.classList.remove("flash");
  void node.offsetWidth; // restart the CSS animation
  node.classList.add("flash");
  node.addEventListener("animationend", () => node.classList.remove("flash"), { once: true });
}

const CONNECTION_TEXT = {
  connecting: "Connecting…",
  open: "Live",
  offline: "Offline – reconnecting",
  closed: "Not connected",
};

/** Keep a badge showing the client's connection state (`data-state` for the colour). */
export function showConnection(badge, client) {
  const show = (state) => {
    badge.dataset.state = state;
    badge.textContent = CONNECTION_TEXT[state] ?? state;
  };
  show(client ? client.connection : "closed");
  client?.addEventListener("connection", (e) => show(e.detail.state));
}

/** The claims of a JWT, for display only (the service checks the token, not this page). */
export function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
  } catch {
    return null;
  }
}

export function describeError(error) {
  if (error?.code === "network_error") return "The service cannot be reached. Check the connection and try again.";
  if (error?.status === 401) return "The token was not accepted (expired or invalid). Sign in again.";
  if (error?.status === 429) return "Too many attempts. Wait a moment and try again.";
  return error?.message || String(error);
}

/** A message in `box` (an element with role=status or alert); empty text hides it. */
export function say(box, text, kind = "info") {
  box.textContent = text ?? "";
  box.hidden = !text;
  box.classList.toggle("error", kind === "error");
}

export const attrsText = (attrs) =>
  Object.entries(attrs ?? {})
    .map(([k, v]) => `${k}: ${v}`)
    .join(", ");

export function formatTime(iso) {
  const when = new Date(iso);
  return Number.isNaN(when.getTime()) ? iso : when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** The ids an event touched, to flash their rows: a line, an item, a wishlist. */
export function touchedIds(event) {
  const d = event.data ?? {};
  return [d.line?.id, d.item?.id, d.wishlist?.id].filter(Boolean);
}

/** Run `action(client)`; say in `box` when the change was kept offline or refused. */
export async function runChange(client, box, action) {
  if (!client) return;
  try {
    const result = await action(client);
    if (result?.queued) {
      say(box, "Offline: the change is kept and will be sent when the connection is back.");
      result.settled.then(
        () => say(box, ""),
        (error) => say(box, describeError(error), "error"),
      );
    } else {
      say(box, "");
    }
  } catch (error) {
    say(box, describeError(error), "error");
  }
}

/** Title (or sku) over sku and attributes, for a cart line or a wishlist item. */
export function describeLine(thing) {
  return el(
    "span",
    { class: "what" },
    el("span", { class: "sku" }, thing.title ?? thing.sku),
    el("span", { class: "muted" }, [thing.title ? thing.sku : null, attrsText(thing.attrs)].filter(Boolean).join(" · ")),
  );
}

/** A decimal string such as "19.90" in ten-thousandths (BigInt), or null: sums stay exact. */
function tenThousandths(text) {
  const found = /^(\d{1,9})(?:\.(\d{1,4}))?$/.exec(text ?? "");
  return found ? BigInt(found[1] + (found[2] ?? "").padEnd(4, "0")) : null;
}

/** An amount as the reader's locale writes money in `currency`. */
export function formatMoney(amount, currency) {
  const value = typeof amount === "string" ? Number(amount) : amount;
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(value);
  } catch {
    return `${value.toFixed(2)} ${currency}`; // not an ISO 4217 code the browser knows
  }
}

/**
 * Subtotal and units when every line has a price in the cart's currency, else null: the
 * service's rule (domain/pricing.py), applied to the live copy, whose lines events change.
 */
export function cartTotals(cart) {
  let sum = 0n;
  let units = 0;
  for (const line of cart.lines) {
    const price = tenThousandths(line.unit_price);
    if (price === null || (line.currency ?? cart.currency) !== cart.currency) return null;
    sum += price * BigInt(line.qty);
    units += line.qty;
  }
  return { subtotal: Number(sum) / 10_000, units };
}

const PRICED_BY = { staff: "price set by staff", service: "price set by the shop", client: "price from the customer's device" };

/** A line's unit price and who set it, or that it has none. */
function linePrice(line, currency) {
  if (line.unit_price == null) return el("span", { class: "price muted" }, "no price");
  return el(
    "span",
    { class: "price" },
    el("span", { class: "amount" }, formatMoney(line.unit_price, line.currency ?? currency ?? "EUR")),
    PRICED_BY[line.priced_by] ? el("span", { class: "muted" }, PRICED_BY[line.priced_by]) : null,
  );
}

/** A cart line with its price, −/+ and Remove buttons; `change` runs what they ask for. */
export function cartLineRow(line, change, currency) {
  return el(
    "li",
    { dataset: { id: line.id, sku: line.sku } },
    describeLine(line),
    linePrice(line, currency),
    el(
      "span",
      { class: "qty" },
      el("button", { type: "button", class: "secondary", "aria-label": `One less ${line.sku}`, disabled: line.qty <= 1, onclick: () => change((c) => c.patchLine(line.id, { qty: line.qty - 1 })) }, "−"),
      el("output", { "aria-label": "quantity" }, String(line.qty)),
      el("button", { type: "button", class: "secondary", "aria-label": `One more ${line.sku}`, disabled: line.qty >= 999, onclick: () => change((c) => c.patchLine(line.id, { qty: line.qty + 1 })) }, "+"),
    ),
    el("button", { type: "button", class: "danger", onclick: () => change((c) => c.removeLine(line.id)) }, "Remove"),
  );
}
