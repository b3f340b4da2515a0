// The store tablet shows the names, prices and subtotal the shop's catalogue gives, in Debian's
// headless Chromium: the phone adds bare SKUs, the tablet opens the cart with a hand-off code,
// adds and moves lines, and the subtotal follows every change live.
//
// Env: as flow.mjs; the service behind CARTSYNC_URL prices from a catalogue that knows
// TSHIRT-1 (19.90), JEANS-2 (49.00) and MUG-7 (7.50), all EUR. Run by tests/test_browser.py.
import assert from "node:assert/strict";

import { checkA11y } from "./axe.mjs";
import { WAIT, phoneAdds, phoneShowsCode, phoneSignsIn, run, shoot, step, tabletClaims } from "./pages.mjs";

const row = (page, sku) => page.locator(`#cart li[data-sku="${sku}"]`);

async function subtotalReads(tablet, amount, units) {
  const subtotal = tablet.locator("#cart-subtotal:not([hidden])", { hasText: `${units} item` });
  await subtotal.waitFor(WAIT);
  const text = await tablet.locator("#cart-subtotal-amount").textContent();
  assert.ok(text.includes(amount), `subtotal ${text}, wanted ${amount}`);
}

run(async ({ phone, tablet }) => {
  step("the phone adds a bare SKU to the cart and one to its wishlist");
  await phoneSignsIn(phone);
  await phoneAdds(phone, "TSHIRT-1", { size: "M" });
  await phoneAdds(phone, "MUG-7", { wish: true });

  step("the tablet opens the cart: the catalogue's name and price, and a subtotal");
  const code = await phoneShowsCode(phone);
  await tabletClaims(tablet, code);
  await row(tablet, "TSHIRT-1").waitFor(WAIT);
  const tee = await row(tablet, "TSHIRT-1").innerText();
  assert.match(tee, /Organic T-shirt/);
  assert.match(tee, /19\.90/);
  await subtotalReads(tablet, "19.90", "1");

  step("the tablet adds two jeans: named, priced, and the subtotal follows");
  await tablet.fill("#add-sku", "JEANS-2");
  await tablet.fill("#add-qty", "2");
  await tablet.fill("#add-size", "32");
  await tablet.click("#add-button");
  await row(tablet, "JEANS-2").locator(".what", { hasText: "Slim jeans" }).waitFor(WAIT);
  assert.match(await row(tablet, "JEANS-2").innerText(), /49\.00/);
  await subtotalReads(tablet, "117.90", "3");

  step("the tablet moves the wishlist mug to the cart; the phone shows the name too");
  await tablet.locator('#wishlists li[data-sku="MUG-7"] button', { hasText: "Move to cart" }).click();
  await row(tablet, "MUG-7").locator(".what", { hasText: "Blue mug" }).waitFor(WAIT);
  await subtotalReads(tablet, "125.40", "4");
  await row(phone, "MUG-7").locator(".what", { hasText: "Blue mug" }).waitFor(WAIT);

  step("who changed what, line totals, and the subtotal on the phone");
  assert.match(await row(tablet, "JEANS-2").locator(".changed-by").innerText(), /^Added by carol \(staff\) at /);
  assert.match(await row(tablet, "JEANS-2").locator(".line-total").innerText(), /98\.00/);
  assert.match(await row(phone, "JEANS-2").locator(".changed-by").innerText(), /^Added by carol at store s1 at /);
  assert.match(await row(phone, "TSHIRT-1").locator(".changed-by").innerText(), /^Added by you at /);
  await phone.locator("#activity", { hasText: "Carol at store s1 moved Blue mug to the cart, 1" }).waitFor(WAIT);
  await phone.locator("#cart-subtotal", { hasText: "4 items" }).waitFor(WAIT);
  assert.match(await phone.locator("#cart-subtotal").innerText(), /125\.40/);

  await shoot(tablet, "tablet-catalogue.png");
  await shoot(phone, "phone-catalogue.png");

  step("the shopper leaves a note and checks out; the tablet's cart empties");
  await phone.fill("#note", "Gift wrap, please");
  await phone.click("#note-button");
  await tablet.locator("#cart-note", { hasText: "Gift wrap, please" }).waitFor(WAIT);
  await phone.click("#checkout-button");
  await phone.locator("#checkout-summary", { hasText: "4 items" }).waitFor(WAIT);
  assert.match(await phone.locator("#checkout-summary").innerText(), /125\.40/);
  await shoot(phone, "phone-checkout.png");
  await checkA11y(phone, "phone: checkout review");
  await phone.click("#checkout-place");
  await phone.locator("#checkout-done", { hasText: "Order placed: 3 lines" }).waitFor(WAIT);
  await tablet.locator("#cart li.empty").waitFor(WAIT);
  await shoot(phone, "phone-ordered.png");
  await checkA11y(phone, "phone: order placed");
  await checkA11y(tablet, "tablet: catalogue cart after checkout");
});
