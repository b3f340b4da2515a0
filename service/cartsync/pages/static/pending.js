// Changes kept in the client's offline queue, shown on the cart at once: the screen a shopper
// sees offline already holds their taps, marked as waiting, until the service acknowledges them.

const attrsKey = (attrs) => JSON.stringify(Object.entries(attrs ?? {}).sort(([a], [b]) => (a < b ? -1 : 1)));

/**
 * The cart as it will be once `queued` (the client's `queued`, oldest first) is applied; lines
 * the queue touches get `pending: true`. `prefix` is the client's (`/v1` or a grant's).
 */
export function withPending(cart, queued, prefix) {
  if (!cart || !queued.length) return cart;
  let lines = cart.lines.map((line) => ({ ...line }));
  let note = cart.note;
  const linePath = new RegExp(`^${prefix.replace(/[/.]/g, "\\$&")}/cart/lines/([^/]+)$`);
  for (const op of queued) {
    const body = op.body ?? {};
    const lineId = linePath.exec(op.path)?.[1];
    const line = lineId ? lines.find((l) => l.id === decodeURIComponent(lineId)) : null;
    if (op.method === "POST" && op.path === `${prefix}/cart/lines`) {
      const same = lines.find((l) => l.sku === body.sku && attrsKey(l.attrs) === attrsKey(body.attrs));
      if (same) Object.assign(same, { qty: same.qty + (body.qty ?? 1), pending: true });
      else lines.push({ id: `pending-${op.key}`, sku: body.sku, qty: body.qty ?? 1, attrs: body.attrs ?? {}, title: body.title, pending: true });
    } else if (op.method === "PATCH" && line) {
      const qty = body.qty_delta !== undefined ? line.qty + body.qty_delta : (body.qty ?? line.qty);
      if (qty <= 0) lines = lines.filter((l) => l !== line);
      else Object.assign(line, { qty: Math.min(qty, 999), pending: true });
    } else if (op.method === "DELETE" && line) {
      lines = lines.filter((l) => l !== line);
    } else if (op.method === "PUT" && op.path === `${prefix}/cart/note`) {
      note = body.note;
    }
  }
  return { ...cart, lines, note };
}

/** "2 changes waiting to be sent", or "" when none wait. */
export function pendingText(count) {
  if (!count) return "";
  return `${count} ${count === 1 ? "change" : "changes"} waiting to be sent`;
}
