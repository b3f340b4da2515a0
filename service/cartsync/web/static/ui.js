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

/** A cart line with its −/+ and Remove buttons; `change` runs what they ask for. */
export function cartLineRow(line, change) {
  return el(
    "li",
    { dataset: { id: line.id, sku: line.sku } },
    describeLine(line),
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
