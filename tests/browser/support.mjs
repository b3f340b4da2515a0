// Customer service in Debian's headless Chromium: an agent looks a customer up on /support,
// reads the story in plain words (filtered, paged), gets clear messages for bad input that
// change nothing, and restores the cart, which the customer's phone shows live. axe-core finds
// no serious or critical violation on the page.
//
// Env: as flow.mjs, plus CARTSYNC_SUPPORT_TOKEN and CARTSYNC_CUSTOMER_ID (the customer whose
// story tests/test_support_page.py wrote: SOCKS x2 on the phone, HAT on the laptop, SCARF by
// the shop's tablet-oslo, 22 notes from the laptop, then the phone emptied the cart).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

import { BASE_URL, WAIT, need, phoneSignsIn, run, shoot, skusOn, step } from "./pages.mjs";

const SUPPORT_TOKEN = need("CARTSYNC_SUPPORT_TOKEN");
const CUSTOMER_ID = need("CARTSYNC_CUSTOMER_ID");
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

const alert = (page, text) => page.locator("#message.error", { hasText: text }).waitFor(WAIT);

async function axeFindsNothingSerious(page, name) {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern.
  if (!(await page.evaluate(() => "axe" in window))) await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  const words = bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  assert.deepEqual(words, [], `axe-core on ${name}`);
  console.log(`axe-core ${name}: ${result.violations.length} violation(s), 0 serious or critical`);
}

async function lookUp(desk, customer, reason) {
  await desk.fill("#customer-id", customer);
  await desk.fill("#reason", reason);
  await desk.click("#lookup-button");
}

run(async ({ phone, tablet: desk }) => {
  step("the customer's phone is open on the emptied cart");
  await phoneSignsIn(phone);
  assert.deepEqual(await skusOn(phone), []);

  step("the agent signs in on /support");
  await desk.goto(`${BASE_URL}/support`);
  await axeFindsNothingSerious(desk, "sign-in");
  await desk.fill("#support-token", SUPPORT_TOKEN);
  await desk.click("#signin-button");
  await desk.locator("#lookup:not([hidden])").waitFor(WAIT);

  step("bad input gets a clear message: no reason, an unknown customer");
  await lookUp(desk, CUSTOMER_ID, "");
  await alert(desk, "Say why you are looking");
  await lookUp(desk, "nobody-here", "ticket 4711");
  await alert(desk, "No customer with the id “nobody-here”");
  assert.ok(await desk.locator("#customer").isHidden());

  step("the agent looks the customer up: the cart now and the story in plain words");
  const started = Date.now();
  await lookUp(desk, CUSTOMER_ID, "ticket 4711: “my cart is empty”");
  await desk.locator("#customer:not([hidden])").waitFor(WAIT);
  await desk.locator("#cart-summary", { hasText: "The cart is empty" }).waitFor(WAIT);
  const newest = desk.locator("#timeline li").first();
  assert.match(await newest.innerText(), /phone · the customer emptied the cart/);
  await desk.locator("#timeline li", { hasText: "laptop · the customer set the note to “note 21”" }).waitFor(WAIT);
  await shoot(desk, "support-lookup.png");
  await axeFindsNothingSerious(desk, "the customer's story");

  step("paging: 26 changes, 20 a page; the first ones are on the second page");
  assert.match(await desk.locator("#page-info").innerText(), /1–20 of 26/);
  assert.ok(await desk.locator("#newer-button").isDisabled());
  await desk.click("#older-button");
  await desk.locator("#timeline li", { hasText: "phone · the customer added Socks ×2" }).waitFor(WAIT);
  await desk.locator("#timeline li", { hasText: "tablet-oslo · the shop (shop-backend) added Scarf ×1" }).waitFor(WAIT);
  await shoot(desk, "support-older.png");
  assert.match(await desk.locator("#page-info").innerText(), /21–26 of 26/);
  await desk.click("#newer-button");

  step("filters: by device, by who");
  await desk.selectOption("#filter-device", "phone");
  assert.equal(await desk.locator("#timeline li").count(), 2);
  await desk.selectOption("#filter-device", "");
  await desk.selectOption("#filter-actor", "the shop (shop-backend)");
  assert.equal(await desk.locator("#timeline li").count(), 1);
  await desk.selectOption("#filter-actor", "");
  await shoot(desk, "support-filtered.png");

  step("a restore out of range or without a reason is refused and changes nothing");
  await desk.fill("#restore-rev", "999");
  await desk.fill("#restore-reason", "customer asked");
  await desk.click("#restore-button");
  await alert(desk, "the cart is at revision 26");
  await desk.locator('#timeline li[data-rev="25"] button').click();
  assert.equal(await desk.inputValue("#restore-rev"), "25");
  await desk.fill("#restore-reason", "");
  await desk.click("#restore-button");
  await alert(desk, "Say why you are restoring");
  await desk.locator("#cart-summary", { hasText: "revision 26" }).waitFor(WAIT);
  assert.deepEqual(await skusOn(phone), []);

  step("the agent restores the cart to just before it was emptied; the phone shows it live");
  await desk.fill("#restore-reason", "customer emptied the cart by mistake");
  await desk.click("#restore-button");
  await desk.locator("#message:not(.error)", { hasText: "Restored" }).waitFor(WAIT);
  await desk.locator("#cart-summary", { hasText: "revision 27" }).waitFor(WAIT);
  await phone.locator('#cart li[data-sku="SCARF"]').waitFor(WAIT);
  assert.deepEqual((await skusOn(phone)).sort(), ["HAT", "SCARF", "SOCKS"]);
  console.log(`looked up and restored in ${((Date.now() - started) / 1000).toFixed(1)} s of scripted agent time`);
  assert.match(await newest.innerText(), /emma \(customer service\) restored the cart to revision 25/);
  await shoot(desk, "support-restored.png");
  await shoot(phone, "phone-restored.png");
  await axeFindsNothingSerious(desk, "after the restore");
});
