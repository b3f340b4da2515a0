// What the pages read from the service's events.

/** The ids an event touched, to flash their rows: a line, an item, a wishlist. */
export function touchedIds(event) {
  const d = event.data ?? {};
  return [d.line?.id, d.item?.id, d.wishlist?.id].filter(Boolean);
}
