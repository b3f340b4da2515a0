// A cart line or a wishlist item as a row: name, sku, attributes, price and its buttons.

import { el } from "/static/dom.js";
import { attrsText, formatMoney } from "/static/format.js";

/** Title (or sku) over sku and attributes, for a cart line or a wishlist item. */
export function describeLine(thing) {
  return el(
    "span",
    { class: "what" },
    el("span", { class: "sku" }, thing.title ?? thing.sku),
    el("span", { class: "muted" }, [thing.title ? thing.sku : null, attrsText(thing.attrs)].filter(Boolean).join(" · ")),
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
