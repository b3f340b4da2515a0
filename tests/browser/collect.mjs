// Click-and-collect with a store and a pick-up time, as a shopper and a store employee do it:
// the phone (/demo) picks a store and a slot, the tablet (/staff) opens the cart with the
// hand-off code, shows the choice, moves the time, and marks the order ready; the phone says so.
//
// Env: as flow.mjs, with a service that has CARTSYNC_STORES_FILE (tests/support/stores.py) and
// a staff token of "emma" at store oslo-sentrum.
import assert from "node:assert/strict";

import { checkA11y } from "./axe.mjs";
import { BASE_URL, WAIT, phoneAdds, phoneShowsCode, phoneSignsIn, run, shoot, step, tabletClaims } from "./pages.mjs";

/** "Tue 1 Dec 15:00" as the option of `iso` reads on the page. */
const optionText = (page, iso) => page.locator(`#collect-slot option[value="${iso}"]`).textContent();

run(async ({ phone, tablet }) => {
  step("the phone signs in and fills its cart; the store choice waits for a line");
  await phoneSignsIn(phone);
  await phone.locator("#collect-form:not([hidden])").waitFor(WAIT);
  assert.equal(await phone.locator("#collect-button").isDisabled(), true);
  await phoneAdds(phone, "TSHIRT-1", { size: "M" });
  await phone.locator("#collect-button:enabled").waitFor(WAIT);

  step("the phone picks Oslo Sentrum and the second slot offered");
  const stores = await (await fetch(`${BASE_URL}/v1/stores`)).json();
  const oslo = stores.stores.find((s) => s.id === "oslo-sentrum");
  await phone.selectOption("#collect-store", "oslo-sentrum");
  const slot = oslo.next_slots[1];
  await phone.selectOption("#collect-slot", slot);
  const shown = (await optionText(phone, slot)).trim();
  assert.match(shown, /^[A-Z][a-z]{2} \d{1,2} [A-Z][a-z]{2,3} \d\d:\d\d$/, "the slot reads like Tue 1 Dec 15:00");
  assert.equal(shown.slice(-5), slot.slice(11, 16), "the slot is shown in the store's local time");
  await phone.click("#collect-button");
  const chosen = `Pick-up: Oslo Sentrum, ${shown} · not ready yet`;
  await phone.locator("#collect-chosen", { hasText: chosen }).waitFor(WAIT);
  assert.equal(await phone.locator("#collect-chosen").getAttribute("role"), "status");
  await checkA11y(phone, "phone: click and collect chosen");
  await shoot(phone, "phone-collect.png");

  step("the tablet opens the cart with the code and shows the store and time chosen");
  const code = await phoneShowsCode(phone);
  await tabletClaims(tablet, code);
  await tablet.locator("#collect-chosen", { hasText: chosen }).waitFor(WAIT);
  await tablet.locator("#collect-form:not([hidden])").waitFor(WAIT);
  assert.equal(await tablet.locator("#collect-store").inputValue(), "oslo-sentrum");
  assert.equal(await tablet.locator("#collect-slot").inputValue(), slot);
  await checkA11y(tablet, "tablet: click and collect");
  // The phone names who has access by the store's name, not its id.
  await phone.locator("#grants li", { hasText: "emma · Oslo Sentrum" }).waitFor(WAIT);
  await phone.getByRole("button", { name: "Revoke the access of emma at Oslo Sentrum" }).waitFor(WAIT);

  step("the tablet moves the pick-up to the next slot; the phone shows it and says who did it");
  const later = oslo.next_slots[2];
  await tablet.selectOption("#collect-slot", later);
  const laterText = (await optionText(tablet, later)).trim();
  await tablet.click("#collect-button");
  const moved = `Pick-up: Oslo Sentrum, ${laterText} · not ready yet`;
  await phone.locator("#collect-chosen", { hasText: moved }).waitFor(WAIT);
  await phone.locator("#activity", { hasText: `Emma at Oslo Sentrum set pick-up at Oslo Sentrum, ${laterText}` }).waitFor(WAIT);
  assert.equal(await phone.locator("#collect-slot").inputValue(), later);

  step("staff mark the order ready; the phone announces it");
  await tablet.click("#ready-button");
  const ready = `Pick-up: Oslo Sentrum, ${laterText} · ready for collection`;
  await phone.locator("#collect-chosen.ready", { hasText: ready }).waitFor(WAIT);
  await phone.locator("#collection-state:not([hidden])").waitFor(WAIT);
  await phone.locator("#activity", { hasText: "Emma at Oslo Sentrum marked your order ready for collection" }).waitFor(WAIT);
  await tablet.locator("#collect-chosen.ready", { hasText: ready }).waitFor(WAIT);
  await checkA11y(phone, "phone: ready for collection");
  await checkA11y(tablet, "tablet: ready for collection");
  await shoot(phone, "phone-collect-ready.png");
  await shoot(tablet, "tablet-collect.png");

  step("the phone clears the choice; the order stays ready and the tablet shows it");
  await phone.click("#collect-clear");
  await tablet.locator("#collect-chosen", { hasText: "Ready for collection · no pick-up time chosen" }).waitFor(WAIT);
});
