// A cart line or a wishlist item as a row: name, sku, attributes, price and its buttons.

import { el } from "/static/dom.js";
import { actorName } from "/static/actors.js";
import { attrsText, formatMoney, formatTime } from "/static/format.js";

/** Title (or sku) over sku and attributes, for a cart line or a wishlist item. */
export function describeLine(thing, extra = null) {
  return el(
    "span",
    { class: "what" },
    el("span", { class: "sku" }, thing.title ?? thing.sku),
    el("span", { class: "muted" }, [thing.title ? thing.sku : null, attrsText(thing.attrs)].filter(Boolean).join(" · ")),
    extra,
  );
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

/** The catalogue's picture of a line: https only (the pages' CSP allows https images, no scripts). */
function lineImage(line) {
  if (typeof line.image !== "string" || !line.image.startsWith("https://")) return null;
  return el("img", { class: "thumb", src: line.image, alt: "", loading: "lazy", referrerpolicy: "no-referrer" });
}

/** qty x unit price, exactly (ten-thousandths), or null without a price. */
function lineTotal(line, currency) {
  const found = /^(\d{1,9})(?:\.(\d{1,4}))?$/.exec(line.unit_price ?? "");
  if (!found) return null;
  const cents = BigInt(found[1] + (found[2] ?? "").padEnd(4, "0")) * BigInt(line.qty);
  return el("span", { class: "line-total", "aria-label": `Line total` }, formatMoney(Number(cents) / 10_000, line.currency ?? currency ?? "EUR"));
}

/**
 * A cart line: picture, name, price, who changed it last and when, line total, −/+ and Remove;
 * `change` runs what the buttons ask for; `viewer` is "customer" or "staff" (says "you" right).
 */
export function cartLineRow(line, change, currency, viewer = "customer") {
  const name = line.title ?? line.sku;
  const who = line.updated_by ? actorName(line.updated_by, viewer) : null;
  const local = line.id.startsWith("pending-"); // added offline: the service has no id for it yet
  return el(
    "li",
    { dataset: { id: line.id, sku: line.sku, pending: line.pending ? "true" : null } },
    lineImage(line),
    describeLine(
      line,
      line.pending
        ? el("span", { class: "changed-by pending" }, "Waiting to be sent")
        : who
          ? el("span", { class: "changed-by" }, `${line.added_at === line.updated_at ? "Added" : "Changed"} by ${who} at ${formatTime(line.updated_at)}`)
          : null,
    ),
    linePrice(line, currency),
    el(
      "span",
      { class: "qty" },
      el("button", { type: "button", class: "secondary", "aria-label": `One less ${name}`, disabled: local || line.qty <= 1, onclick: () => change((c) => c.changeQty(line.id, -1)) }, "−"),
      el("output", { "aria-label": `Quantity of ${name}` }, String(line.qty)),
      el("button", { type: "button", class: "secondary", "aria-label": `One more ${name}`, disabled: local || line.qty >= 999, onclick: () => change((c) => c.changeQty(line.id, 1)) }, "+"),
    ),
    lineTotal(line, currency),
    el("button", { type: "button", class: "danger", "aria-label": `Remove ${name}`, disabled: local, onclick: () => change((c) => c.removeLine(line.id)) }, "Remove"),
  );
}
