// What the browser scenarios share: settings from the environment, Debian's Chromium with a
// phone and a tablet, the steps both pages take to sign in and hand a cart over, and the run.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

import { chromium } from "playwright-core";

export const WAIT = { timeout: 10_000 };

/** A required environment variable; tests/test_browser.py sets them all. */
export function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through tests/test_browser.py`);
  return value;
}

export const BASE_URL = need("CARTSYNC_URL");
export const CUSTOMER_TOKEN = need("CARTSYNC_CUSTOMER_TOKEN");
export const STAFF_TOKEN = need("CARTSYNC_STAFF_TOKEN");
export const SCREENSHOTS = need("CARTSYNC_SCREENSHOTS");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

export function step(text) {
  console.log(`- ${text}`);
}

/** Console errors and uncaught exceptions of a page; a CSP violation shows up here too. */
export function watch(page, name, problems) {
  page.on("pageerror", (error) => problems.push(`${name}: uncaught ${error.message}`));
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    // The browser logs every 4xx it was answered; the flow checks those answers itself.
    if (/^Failed to load resource/.test(msg.text())) return;
    problems.push(`${name}: console error: ${msg.text()}`);
  });
}

export const VIEWPORTS = { phone: { width: 390, height: 844 }, tablet: { width: 1180, height: 820 } };

/**
 * Screenshot `page` as `name` at its own size, and as `name@phone.png` / `name@tablet.png` at
 * the other one: every screen on both viewports (a shopper may use a tablet, staff a phone).
 */
export async function shoot(page, name) {
  const own = page.viewportSize();
  await page.screenshot({ path: join(SCREENSHOTS, name), fullPage: true });
  const other = own.width < 800 ? "tablet" : "phone";
  await page.setViewportSize(VIEWPORTS[other]);
  try {
    await page.screenshot({ path: join(SCREENSHOTS, name.replace(/\.png$/, `@${other}.png`)), fullPage: true });
  } finally {
    await page.setViewportSize(own);
  }
}

/**
 * Run `scenario({browser, phone, tablet, pages, problems})` in a fresh headless Chromium; on a
 * failure, screenshot every page in `pages` as failed-<name>.png. Exits the process: 0 or 1.
 */
export function run(scenario) {
  const problems = [];
  const pages = {};
  main(scenario, pages, problems).then(
    () => process.exit(0),
    (error) => {
      console.error(error?.stack ?? String(error));
      if (problems.length) console.error(`the pages also logged:\n${problems.join("\n")}`);
      process.exit(1);
    },
  );
}

/** Debian's Chromium with the machine's flags, plus `extraArgs` (a fake camera, say). */
export function launch(extraArgs = []) {
  return chromium.launch({
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
      ...extraArgs,
    ],
  });
}

async function main(scenario, pages, problems) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const browser = await launch();
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
    await scenario({ browser, phone, tablet, pages, problems });
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

/** The phone signs in with the customer token and waits for its live connection. */
export async function phoneSignsIn(phone) {
  await phone.goto(`${BASE_URL}/demo`);
  await phone.fill("#token", CUSTOMER_TOKEN);
  await phone.click("#signin-button");
  await phone.locator('#connection[data-state="open"]').waitFor(WAIT);
}

/** The phone adds `sku` to its cart (or with `wish`, to its wishlist) and shows it. */
export async function phoneAdds(phone, sku, { size = "", wish = false } = {}) {
  await phone.fill("#add-sku", sku);
  if (!wish) await phone.fill("#add-qty", "1");
  await phone.fill("#add-size", size);
  await phone.click(wish ? "#wish-button" : "#add-button");
  await phone.locator(`${wish ? "#wishlist" : "#cart"} li[data-sku="${sku}"]`).waitFor(WAIT);
}

/** The phone shows a hand-off code; returns its 8 digits. */
export async function phoneShowsCode(phone) {
  await phone.click("#handoff-button");
  await phone.locator("#handoff-code[data-code]").waitFor(WAIT);
  const code = await phone.locator("#handoff-code").getAttribute("data-code");
  assert.match(code, /^\d{8}$/);
  return code;
}

/** The tablet signs in with the staff token. */
export async function tabletSignsIn(tablet) {
  await tablet.goto(`${BASE_URL}/staff`);
  await tablet.fill("#staff-token", STAFF_TOKEN);
  await tablet.click("#signin-button");
  await tablet.locator("#claim:not([hidden])").waitFor(WAIT);
}

/** The tablet signs in and types the customer's code as the phone shows it ("8417 2257"). */
export async function tabletClaims(tablet, code) {
  await tabletSignsIn(tablet);
  await tablet.fill("#code", `${code.slice(0, 4)} ${code.slice(4)}`);
  await tablet.click("#claim-button");
}

export async function skusOn(page) {
  return page.locator("#cart li[data-sku]").evaluateAll((rows) => rows.map((r) => r.dataset.sku));
}
