// Click-and-collect on the pages: the stores (GET /v1/stores), the pick-up slot selects, and how
// a choice reads. Times are shown on the store's wall clock: the service sends each pick-up time
// in the store's own offset, so its date and hour are read as written, whatever the device's zone.
import { $, el } from "/static/dom.js";

/** Store id -> name, for "emma at Oslo Sentrum" (filled by `loadStores`). */
export const storeNames = new Map();

/** The stores with their next slots; [] when the shop offers no store choice. */
export async function loadStores(client) {
  const stores = await client.listStores();
  storeNames.clear();
  for (const s of stores) storeNames.set(s.id, s.name);
  return stores;
}

const DAY = new Intl.DateTimeFormat("en-GB", { weekday: "short", day: "numeric", month: "short", timeZone: "UTC" });

/** "Tue 1 Dec 15:00" from "2026-12-01T15:00:00+01:00": the store's own local time. */
export function pickupTime(iso) {
  const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)/.exec(iso ?? "");
  if (!m) return iso ?? "";
  const parts = Object.fromEntries(DAY.formatToParts(Date.UTC(+m[1], +m[2] - 1, +m[3])).map((p) => [p.type, p.value]));
  return `${parts.weekday} ${parts.day} ${parts.month} ${m[4]}:${m[5]}`;
}

/** "Oslo Sentrum, Tue 1 Dec 15:00", or null when no store is chosen. */
export function pickupText(collection) {
  if (!collection?.store_id) return null;
  const name = collection.store_name ?? storeNames.get(collection.store_id) ?? collection.store_id;
  return `${name}, ${pickupTime(collection.pickup_at)}`;
}

/** The cart's choice; an older service sends only the flag. */
export const collectionOf = (cart) => cart?.collection ?? { store_id: null, store_name: null, pickup_at: null, ready: Boolean(cart?.ready_for_collection) };

/** One line for people: "Pick-up: Oslo Sentrum, Tue 1 Dec 15:00 · ready for collection". */
export function collectionText(collection) {
  const where = pickupText(collection);
  const ready = collection?.ready ? "ready for collection" : "not ready yet";
  return where ? `Pick-up: ${where} · ${ready}` : collection?.ready ? "Ready for collection · no pick-up time chosen" : "No pick-up store and time chosen";
}

/**
 * What a `cart.collection_set` did, as words after the actor's name: "set pick-up at Oslo
 * Sentrum, Tue 1 Dec 15:00", "marked your order ready for collection", or both. `before` is the
 * choice before the event, when known (the event carries the whole choice after it).
 */
export function collectionChange(d, before, whose = "your order") {
  const where = pickupText(d);
  const moved = !before || before.store_id !== (d.store_id ?? null) || before.pickup_at !== (d.pickup_at ?? null);
  const readied = before ? Boolean(before.ready) !== Boolean(d.ready) : Boolean(d.ready) || !where;
  const parts = [];
  if (moved && where) parts.push(`set pick-up at ${where}`);
  else if (moved && before) parts.push("cleared the pick-up store and time");
  if (readied || !parts.length) parts.push(d.ready ? `marked ${whose} ready for collection` : `marked ${whose} not ready for collection`);
  return parts.join(" and ");
}

/** Fill the store select (keeping `chosen` selected) and return the store it shows. */
export function fillStores(select, stores, chosen) {
  select.replaceChildren(...stores.map((s) => el("option", { value: s.id, selected: s.id === chosen }, `${s.name} – ${s.address}`)));
  return stores.find((s) => s.id === select.value) ?? null;
}

/** Fill the slot select with `store`'s next slots; a chosen time no longer offered stays first. */
export function fillSlots(select, store, chosenAt) {
  const slots = store ? [...store.next_slots] : [];
  if (chosenAt && store && !slots.includes(chosenAt)) slots.unshift(chosenAt);
  select.replaceChildren(...slots.map((at) => el("option", { value: at, selected: at === chosenAt }, pickupTime(at))));
  select.disabled = !slots.length;
}

/**
 * The store and slot controls both pages share (#collect-store, #collect-slot, #collect-form):
 * a store change offers its slots; submitting sends the choice through `change`, and a slot
 * refused as passed (`invalid_pickup`) reloads the stores so the next ones are offered.
 */
export function bindCollectForm({ stores, change, refreshStores }) {
  $("#collect-store").addEventListener("change", () => {
    fillSlots($("#collect-slot"), stores().find((s) => s.id === $("#collect-store").value) ?? null, null);
  });
  $("#collect-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const storeId = $("#collect-store").value;
    const pickupAt = $("#collect-slot").value;
    if (!storeId || !pickupAt) return;
    change(async (c) => {
      try {
        return await c.setCollection({ storeId, pickupAt });
      } catch (error) {
        if (error?.code === "invalid_pickup") refreshStores().catch(() => {});
        throw error;
      }
    });
  });
}
