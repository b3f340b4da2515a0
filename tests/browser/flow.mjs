// The hand-off as two people do it, in Debian's headless Chromium (never a downloaded browser):
// a phone (/demo) fills a cart and shows a code; a store tablet (/staff) opens the cart with it,
// both change it and see each other's changes live; the phone revokes and the tablet loses it.
//
// Env: CARTSYNC_URL, CARTSYNC_CUSTOMER_TOKEN, CARTSYNC_STAFF_TOKEN (store s1),
// CARTSYNC_SCREENSHOTS (a folder), CHROMIUM (default /usr/bin/chromium).
// Run by tests/test_browser.py; exits non-zero with the reason on any failure.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

import { chromium } from "playwright-core";

const BASE_URL = need("CARTSYNC_URL");
const CUSTOMER_TOKEN = need("CARTSYNC_CUSTOMER_TOKEN");
const STAFF_TOKEN = need("CARTSYNC_STAFF_TOKEN");
const SCREENSHOTS = need("CARTSYNC_SCREENSHOTS");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const WAIT = { timeout: 10_000 };
const problems = [];
const pages = {};

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through tests/test_browser.py`);
  return value;
}

function step(text) {
  console.log(`- ${text}`);
}

/** Console errors and uncaught exceptions of a page; a CSP violation shows up here too. */
function watch(page, name, problems) {
  page.on("pageerror", (error) => problems.push(`${name}: uncaught ${error.message}`));
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    // The browser logs every 4xx it was answered; the flow checks those answers itself.
    if (/^Failed to load resource/.test(msg.text())) return;
    problems.push(`${name}: console error: ${msg.text()}`);
  });
}

async function main() {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    const phoneContext = await browser.newContext({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
    });
    const tabletContext = await browser.newContext({ viewport: { width: 1180, height: 820 }, hasTouch: true });
    const phone = await phoneContext.newPage();
    const tablet = await tabletContext.newPage();
    Object.assign(pages, { phone, tablet });
    watch(phone, "phone", problems);
    watch(tablet, "tablet", problems);

    step("the phone signs in and fills its cart");
    await phone.goto(`${BASE_URL}/demo`);
    await phone.fill("#token", CUSTOMER_TOKEN);
    await phone.click("#signin-button");
    await phone.locator('#connection[data-state="open"]').waitFor(WAIT);
    await phone.fill("#add-sku", "TSHIRT-1");
    await phone.fill("#add-qty", "1");
    await phone.fill("#add-size", "M");
    await phone.click("#add-button");
    await phone.locator('#cart li[data-sku="TSHIRT-1"]').waitFor(WAIT);
    await phone.fill("#add-sku", "MUG-7");
    await phone.fill("#add-size", "");
    await phone.click("#wish-button");
    await phone.locator('#wishlist li[data-sku="MUG-7"]').waitFor(WAIT);

    step("the phone shows a hand-off code");
    await phone.click("#handoff-button");
    await phone.locator("#handoff-code[data-code]").waitFor(WAIT);
    const code = await phone.locator("#handoff-code").getAttribute("data-code");
    assert.match(code, /^\d{8}$/);
    const qrDrawn = await phone
      .locator("#handoff-qr")
      .evaluate((img) => img.decode().then(() => img.naturalWidth > 0, () => false));
    assert.ok(qrDrawn, "the QR code image did not load");
    await phone.locator("#handoff").screenshot({ path: join(SCREENSHOTS, "phone-code.png") });

    step("the tablet signs in, enters the code, and shows the cart within a second");
    await tablet.goto(`${BASE_URL}/staff`);
    await tablet.fill("#staff-token", STAFF_TOKEN);
    await tablet.click("#signin-button");
    await tablet.fill("#code", code);
    await tablet.click("#claim-button");
    await tablet.locator('#cart li[data-sku="TSHIRT-1"]').waitFor({ timeout: 1_000 });
    await tablet.locator('#wishlists li[data-sku="MUG-7"]').waitFor(WAIT);
    await tablet.locator('#connection[data-state="open"]').waitFor(WAIT);
    await phone.locator("#grants li button", { hasText: "Revoke" }).waitFor(WAIT);

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

    await phone.screenshot({ path: join(SCREENSHOTS, "phone.png"), fullPage: true });
    await tablet.screenshot({ path: join(SCREENSHOTS, "tablet.png"), fullPage: true });

    step("the phone revokes; the tablet says so and no longer shows the cart");
    await phone.locator("#grants li button", { hasText: "Revoke" }).click();
    await tablet.locator("#ended:not([hidden])").waitFor(WAIT);
    assert.equal((await tablet.locator("#ended-text").textContent()).trim(), "Access ended by the customer");
    assert.equal(await tablet.locator("#customer").isHidden(), true);
    assert.equal(await tablet.locator("#cart li").count(), 0);
    assert.equal(await tablet.locator("#wishlists li").count(), 0);
    await phone.locator("#grants li.empty").waitFor(WAIT);

    await tablet.screenshot({ path: join(SCREENSHOTS, "tablet-ended.png"), fullPage: true });
    await phone.screenshot({ path: join(SCREENSHOTS, "phone-revoked.png"), fullPage: true });
    step("a guest tries the demo without a token");
    const guest = await (await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true })).newPage();
    Object.assign(pages, { guest });
    watch(guest, "guest", problems);
    await guest.goto(`${BASE_URL}/demo`);
    await guest.click("#guest-button");
    await guest.locator('#connection[data-state="open"]').waitFor(WAIT);
    assert.equal(await guest.locator("#who").textContent(), "guest");
    await guest.click("#add-button");
    await guest.locator('#cart li[data-sku="TSHIRT-1"]').waitFor(WAIT);

    assert.deepEqual(problems, [], "the pages logged errors");
    step("done");
  } catch (error) {
    for (const [name, page] of Object.entries(pages)) {
      await page.screenshot({ path: join(SCREENSHOTS, `failed-${name}.png`), fullPage: true }).catch(() => {});
    }
    throw error;
  } finally {
    await browser.close();
  }
}

async function skusOn(page) {
  return page.locator("#cart li[data-sku]").evaluateAll((rows) => rows.map((r) => r.dataset.sku));
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error?.stack ?? String(error));
    if (problems.length) console.error(`the pages also logged:\n${problems.join("\n")}`);
    process.exit(1);
  },
);
