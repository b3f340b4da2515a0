// The hand-off as two people do it, in Debian's headless Chromium (never a downloaded browser):
// a phone (/demo) fills a cart and shows a code; a store tablet (/staff) opens the cart with it,
// both change it and see each other's changes live; the phone revokes and the tablet loses it.
//
// Env: CARTSYNC_URL, CARTSYNC_CUSTOMER_TOKEN, CARTSYNC_STAFF_TOKEN (store s1),
// CARTSYNC_SCREENSHOTS (a folder), CHROMIUM (default /usr/bin/chromium).
// Run by tests/test_browser.py; exits non-zero with the reason on any failure.
import assert from "node:assert/strict";
import { join } from "node:path";

import { checkA11y } from "./axe.mjs";
import {
  BASE_URL,
  SCREENSHOTS,
  WAIT,
  phoneAdds,
  phoneShowsCode,
  phoneSignsIn,
  run,
  shoot,
  skusOn,
  step,
  tabletClaims,
  watch,
} from "./pages.mjs";

run(async ({ browser, phone, tablet, pages, problems }) => {
  step("the phone signs in and fills its cart");
  await phoneSignsIn(phone);
  await phoneAdds(phone, "TSHIRT-1", { size: "M" });
  await phoneAdds(phone, "MUG-7", { wish: true });
  await checkA11y(phone, "phone: the cart");

  step("the phone shows a hand-off code");
  const code = await phoneShowsCode(phone);
  const qrDrawn = await phone
    .locator("#handoff-qr")
    .evaluate((img) => img.decode().then(() => img.naturalWidth > 0, () => false));
  assert.ok(qrDrawn, "the QR code image did not load");
  await phone.locator("#handoff").screenshot({ path: join(SCREENSHOTS, "phone-code.png") });
  await checkA11y(phone, "phone: the hand-off code");

  await tablet.goto(`${BASE_URL}/staff`);
  await tablet.locator("#staff-token").waitFor(WAIT);
  await checkA11y(tablet, "tablet: development sign-in");
  await shoot(tablet, "tablet-dev-signin.png");

  step("the tablet signs in, enters the code, and shows the cart within a second");
  await tabletClaims(tablet, code);
  await tablet.locator('#cart li[data-sku="TSHIRT-1"]').waitFor({ timeout: 1_000 });
  await tablet.locator('#wishlists li[data-sku="MUG-7"]').waitFor(WAIT);
  await tablet.locator('#connection[data-state="open"]').waitFor(WAIT);
  await phone.locator("#grants li button", { hasText: "Revoke" }).waitFor(WAIT);
  await checkA11y(tablet, "tablet: the customer's cart");
  await checkA11y(phone, "phone: helped by staff");

  step("the tablet adds an item; the phone shows it, highlighted");
  await tablet.fill("#add-sku", "JEANS-2");
  await tablet.fill("#add-qty", "1");
  await tablet.fill("#add-size", "32");
  await tablet.click("#add-button");
  await phone.locator('#cart li.flash[data-sku="JEANS-2"]').waitFor(WAIT);

  step("the phone changes a quantity; the tablet shows it, highlighted");
  await phone.locator('#cart li[data-sku="TSHIRT-1"] button[aria-label^="One more"]').click();
  await tablet.locator('#cart li.flash[data-sku="TSHIRT-1"] output', { hasText: "2" }).waitFor(WAIT);

  step("the tablet moves the wishlist item to the cart and marks it ready for collection");
  await tablet.locator('#wishlists li[data-sku="MUG-7"] button', { hasText: "Move to cart" }).click();
  await phone.locator('#cart li[data-sku="MUG-7"]').waitFor(WAIT);
  await tablet.click("#ready-button");
  await phone.locator("#collection-state:not([hidden])").waitFor(WAIT);
  await tablet.locator("#collection-state.ready").waitFor(WAIT);
  assert.deepEqual(await skusOn(phone), await skusOn(tablet));
  assert.deepEqual(await skusOn(tablet), ["TSHIRT-1", "JEANS-2", "MUG-7"]);

  for (const [name, page] of [["phone", phone], ["tablet", tablet]]) {
    const small = await page.locator("button:visible, input:visible").evaluateAll((controls) =>
      controls
        .filter((c) => c.getBoundingClientRect().height < 44 || c.getBoundingClientRect().width < 44)
        .map((c) => c.id || c.textContent.trim()),
    );
    assert.deepEqual(small, [], `controls on the ${name} smaller than 44 px`);
  }

  await shoot(phone, "phone.png");
  await shoot(tablet, "tablet.png");

  step("the phone revokes; the tablet says so and no longer shows the cart");
  await phone.locator("#grants li button", { hasText: "Revoke" }).click();
  await tablet.locator("#ended:not([hidden])").waitFor(WAIT);
  assert.equal((await tablet.locator("#ended-text").textContent()).trim(), "Access ended by the customer");
  assert.equal(await tablet.locator("#ended").getAttribute("data-reason"), "revoked");
  assert.equal(await tablet.locator("#customer").isHidden(), true);
  assert.equal(await tablet.locator("#cart li").count(), 0);
  assert.equal(await tablet.locator("#wishlists li").count(), 0);
  await phone.locator("#grants li.empty").waitFor(WAIT);

  await shoot(tablet, "tablet-ended.png");
  await checkA11y(tablet, "tablet: access ended");
  await checkA11y(phone, "phone: access revoked");
  await shoot(phone, "phone-revoked.png");

  step("a guest tries the demo without a token");
  const guest = await (await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true })).newPage();
  Object.assign(pages, { guest });
  watch(guest, "guest", problems);
  await guest.goto(`${BASE_URL}/demo`);
  await checkA11y(guest, "phone: sign-in");
  await shoot(guest, "phone-signin.png");
  await guest.click("#guest-button");
  await guest.locator('#connection[data-state="open"]').waitFor(WAIT);
  assert.equal(await guest.locator("#who").textContent(), "guest");
  await guest.click("#add-button");
  await guest.locator('#cart li[data-sku="TSHIRT-1"]').waitFor(WAIT);
});
