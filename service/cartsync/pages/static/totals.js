// A cart's subtotal and unit count, worked out from the live copy exactly as the service does.

/** A decimal string such as "19.90" in ten-thousandths (BigInt), or null: sums stay exact. */
function tenThousandths(text) {
  const found = /^(\d{1,9})(?:\.(\d{1,4}))?$/.exec(text ?? "");
  return found ? BigInt(found[1] + (found[2] ?? "").padEnd(4, "0")) : null;
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
