// A hand-off whose time runs out, in Debian's headless Chromium: the phone shows a code, the
// tablet opens the cart, nobody revokes; when the grant expires the tablet says so (not "ended
// by the customer"), shows nothing of the customer's any more, and the phone stops listing it.
//
// Env: as flow.mjs, plus CARTSYNC_GRANT_TTL_SECONDS (the service's, a few seconds).
// Prints "grant <id>" so that tests/test_browser.py can check the service refuses it afterwards.
import assert from "node:assert/strict";

import { checkA11y } from "./axe.mjs";
import { WAIT, need, phoneAdds, phoneShowsCode, phoneSignsIn, run, shoot, skusOn, step, tabletClaims } from "./pages.mjs";

const TTL_MS = Number(need("CARTSYNC_GRANT_TTL_SECONDS")) * 1000;
const EXPIRED_TEXT = "Access expired: ask the customer for a new code";
// expires_at is whole seconds, so the grant may end up to a second before TTL_MS has passed.
const EARLIEST_END_MS = TTL_MS - 1_000;
// The service closes the socket on time; slack for a loaded machine, never an open-ended wait.
const LATEST_END_MS = TTL_MS + 15_000;

run(async ({ phone, tablet }) => {
  step("the phone signs in, fills its cart and shows a hand-off code");
  await phoneSignsIn(phone);
  await phoneAdds(phone, "TSHIRT-1", { size: "M" });
  await phoneAdds(phone, "MUG-7", { wish: true });
  const code = await phoneShowsCode(phone);

  step("the tablet opens the cart with the code");
  await tabletClaims(tablet, code);
  const claimed = Date.now(); // the claim is sent after this, so the grant ends later than TTL from here
  await tablet.locator('#cart li[data-sku="TSHIRT-1"]').waitFor(WAIT);
  await tablet.locator('#wishlists li[data-sku="MUG-7"]').waitFor(WAIT);
  await tablet.locator('#connection[data-state="open"]').waitFor(WAIT);
  const grant = phone.locator("#grants li[data-id]", { has: phone.locator("button", { hasText: "Revoke" }) });
  await grant.waitFor(WAIT);
  const grantId = await grant.getAttribute("data-id");
  console.log(`grant ${grantId}`);

  step("the employee starts adding an item as the time runs out");
  await tablet.fill("#add-sku", "LATE-9");
  await tablet.fill("#add-qty", "3");

  step(`nobody revokes; the grant expires (about ${TTL_MS / 1000} s after the claim)`);
  await tablet.locator("#ended:not([hidden])").waitFor({ timeout: Math.max(1, claimed + LATEST_END_MS - Date.now()) });
  const ended = Date.now() - claimed;
  assert.ok(ended >= EARLIEST_END_MS, `the tablet lost access after ${ended} ms, before the grant's ${TTL_MS} ms`);
  console.log(`the tablet showed the expiry ${ended} ms after the claim`);

  step("the tablet says the access expired and shows nothing of the customer's");
  assert.equal(await tablet.locator("#ended").getAttribute("data-reason"), "expired");
  assert.equal((await tablet.locator("#ended-text").textContent()).trim(), EXPIRED_TEXT);
  assert.equal(await tablet.locator("#customer").isHidden(), true);
  assert.equal(await tablet.locator("#cart li").count(), 0);
  assert.equal(await tablet.locator("#wishlists li").count(), 0);
  assert.equal(await tablet.locator("#connection").getAttribute("data-state"), "closed");
  const visible = await tablet.locator("button:visible, input:visible, textarea:visible").evaluateAll((cs) => cs.map((c) => c.id));
  assert.deepEqual(visible, ["ended-button"], "controls left on the tablet after the expiry");
  const text = await tablet.locator("main").innerText();
  for (const gone of ["TSHIRT-1", "MUG-7"]) assert.ok(!text.includes(gone), `the tablet still shows ${gone}`);
  await shoot(tablet, "tablet-expired.png");
  await checkA11y(tablet, "tablet: access expired");

  step("the hidden controls do nothing: the add form and the ready button");
  await tablet.locator("#add-form").evaluate((form) => form.requestSubmit());
  await tablet.locator("#ready-button").evaluate((button) => button.click());
  await tablet.locator("#ended:not([hidden])").waitFor(WAIT);

  step("the phone no longer lists the grant, and its own cart is as it was");
  await phone.locator("#grants li.empty").waitFor(WAIT);
  assert.equal(await phone.locator("#grants li[data-id]").count(), 0);
  await phone.locator('#connection[data-state="open"]').waitFor(WAIT);
  assert.deepEqual(await skusOn(phone), ["TSHIRT-1"]);
  await shoot(phone, "phone-expired.png");

  step("the employee can go on to the next customer");
  await tablet.click("#ended-button");
  await tablet.locator("#claim:not([hidden])").waitFor(WAIT);
});
