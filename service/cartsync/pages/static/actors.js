// Who did something, in words, from an event's or a line's actor ({role, id, store}).
import { collectionChange, storeNames } from "/static/pickup.js";

/** "you", "the customer", "emma at s1" or "the shop", as `viewer` ("customer" or "staff") reads it. */
export function actorName(actor, viewer = "customer") {
  if (!actor) return "someone";
  const store = storeName(actor.store);
  if (actor.role === "staff") return viewer === "staff" ? `${actor.id} (staff)` : `${actor.id} at ${store}`;
  if (actor.role === "service") return "the shop";
  return viewer === "customer" ? "you" : "the customer";
}

/** "Oslo Sentrum" for a listed store id, else "store <id>" (no stores file, or one not listed). */
export function storeName(id) {
  return storeNames.get(id) ?? `store ${id ?? "?"}`;
}

const DID = {
  "line.added": (name) => `added ${name}`,
  "line.updated": (name) => `changed ${name}`,
  "line.removed": (name) => `removed ${name}`,
  "wishlist.item_moved_to_cart": (name) => `moved ${name} to the cart`,
};

/**
 * A sentence for an event someone else made ("emma at store s1 added Organic T-shirt, 2"), or
 * null for events not worth a word; `titles` maps line ids to names (a removal carries only the
 * id); `before` is the cart's click-and-collect choice before the event, when known.
 */
export function narrate(event, titles, viewer = "customer", before = null) {
  const d = event.data ?? {};
  const who = actorName(event.actor, viewer);
  const line = d.line;
  if (event.type === "cart.collection_set") return `${who} ${collectionChange(d, before)}`;
  if (event.type === "cart.note_set") return `${who} changed the note`;
  if (event.type === "cart.checked_out") return `${who} checked the cart out`;
  if (!(event.type in DID)) return null;
  const name = line ? (line.title ?? line.sku) : (titles.get(d.line_id) ?? "an item");
  const qty = line && event.type !== "line.removed" ? `, ${line.qty}` : "";
  return `${who} ${DID[event.type](name)}${qty}`;
}
