// The hand-off as a shopper and an employee do it, with presence: the shopper's phone ("iPhone")
// and laptop; the tablet refuses a mistyped code, takes one typed as the phone shows it, and
// "Done with this customer" ends the grant on both screens; a second tablet with a camera scans
// the phone's QR (Chromium's fake camera films the phone's own QR image), both screens see each
// other live, and a reload of the tablet resumes the open cart.
//
// Env as pages.mjs, plus CARTSYNC_WORKDIR (a folder for the camera's video).
import assert from "node:assert/strict";
import { join } from "node:path";

import { checkA11y } from "./axe.mjs";
import { filmQr } from "./camera.mjs";
import { BASE_URL, CUSTOMER_TOKEN, WAIT, launch, need, phoneAdds, phoneShowsCode, phoneSignsIn, run, shoot, skusOn, step, tabletSignsIn, watch } from "./pages.mjs";

const WORKDIR = need("CARTSYNC_WORKDIR");

async function nameDevice(page, label) {
  await page.fill("#device-name", label);
  await page.click("#device-button");
}

run(async ({ browser, phone, tablet, pages, problems }) => {
  step("the shopper signs in on the phone and on a laptop, and names both");
  await phoneSignsIn(phone);
  await nameDevice(phone, "iPhone");
  const laptop = await (await browser.newContext({ viewport: { width: 1180, height: 820 } })).newPage();
  Object.assign(pages, { laptop });
  watch(laptop, "laptop", problems);
  await phoneSignsIn(laptop);
  await nameDevice(laptop, "Laptop");
  await phone.locator("#devices", { hasText: "Your devices: iPhone (this one), Laptop" }).waitFor(WAIT);
  await laptop.locator("#devices", { hasText: "Laptop (this one)" }).waitFor(WAIT);
  await phoneAdds(phone, "TSHIRT-1", { size: "M" });

  step("a mistyped code is refused in plain words; the code typed with a dash opens the cart");
  const code = await phoneShowsCode(phone);
  assert.equal(await phone.locator("#handoff-code").textContent(), `${code.slice(0, 4)} ${code.slice(4)}`);
  await tabletSignsIn(tablet);
  await tablet.fill("#code", `${code.slice(0, 4)} ${code.slice(4, 7)}`);
  await tablet.click("#claim-button");
  await tablet.locator("#message.error", { hasText: "Type the 8 digits" }).waitFor(WAIT);
  await checkA11y(tablet, "tablet: a mistyped code");
  await shoot(tablet, "tablet-mistyped.png");
  await tablet.fill("#code", `${code.slice(0, 4)}-${code.slice(4)}`);
  assert.equal(await tablet.locator("#message").isHidden(), true, "the old error stays while typing");
  await tablet.click("#claim-button");
  await tablet.locator('#cart li[data-sku="TSHIRT-1"]').waitFor(WAIT);
  await phone.locator("#handoff").waitFor({ state: "hidden", ...WAIT });
  await tablet.locator('#customer-presence[data-online="yes"]', { hasText: "iPhone" }).waitFor(WAIT);
  await phone.locator("#devices", { hasText: "store staff connected: Store tablet at s1" }).waitFor(WAIT);
  await shoot(phone, "phone-helped.png");
  await checkA11y(phone, "phone: devices and staff connected");
  await shoot(tablet, "tablet-typed.png");

  step('"Done with this customer" ends the grant on both screens');
  await tablet.click("#done-button");
  await tablet.locator("#claim:not([hidden])").waitFor(WAIT);
  await phone.locator("#grants li.empty").waitFor(WAIT);
  await phone.locator("#message", { hasText: "ended their access" }).waitFor(WAIT);
  await phone.waitForFunction(() => !document.querySelector("#devices").textContent.includes("store staff"), null, WAIT);
  assert.equal(await tablet.evaluate(() => document.activeElement?.id), "code", "focus after Done");

  step("a tablet with a camera scans the phone's QR code");
  const again = await phoneShowsCode(phone);
  const video = join(WORKDIR, "qr.y4m");
  await filmQr(phone, "#handoff-qr", video);
  await shoot(phone, "phone-code.png");
  const camera = await launch(["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", `--use-file-for-fake-video-capture=${video}`]);
  try {
    const scanner = await (await camera.newContext({ viewport: { width: 1180, height: 820 }, hasTouch: true })).newPage();
    Object.assign(pages, { scanner });
    watch(scanner, "scanner", problems);
    await tabletSignsIn(scanner);
    await scanner.click("#scan-button");
    await scanner.locator("#scanner:not([hidden])").waitFor(WAIT);
    await shoot(scanner, "tablet-scanning.png");
    await checkA11y(scanner, "tablet: scanning");
    await scanner.locator('#cart li[data-sku="TSHIRT-1"]').waitFor({ timeout: 30_000 });
    console.log(`scanned with ${await scanner.locator("#scan-video").getAttribute("data-reader")}`);
    const granted = await phone.locator("#grants li[data-id]").getAttribute("data-id");
    assert.ok(granted, "the phone lists the scanning tablet's grant");
    assert.ok(again);

    step("presence both ways; edits flow both ways");
    await scanner.locator('#customer-presence[data-online="yes"]', { hasText: "iPhone" }).waitFor(WAIT);
    await phone.locator("#devices", { hasText: "store staff connected: Store tablet at s1" }).waitFor(WAIT);
    await scanner.fill("#add-sku", "JEANS-2");
    let clicked = Date.now();
    await scanner.click("#add-button");
    await phone.locator('#cart li[data-sku="JEANS-2"]').waitFor(WAIT);
    console.log(`latency tablet -> phone: ${Date.now() - clicked} ms (click to row shown, through the service)`);
    await phone.fill("#add-sku", "MUG-7");
    clicked = Date.now();
    await phone.click("#add-button");
    await scanner.locator('#cart li[data-sku="MUG-7"]').waitFor(WAIT);
    console.log(`latency phone -> tablet: ${Date.now() - clicked} ms (click to row shown, through the service)`);

    step("a reload of the tablet resumes the open cart");
    await scanner.reload();
    await scanner.locator('#cart li[data-sku="MUG-7"]').waitFor(WAIT);
    assert.deepEqual(await skusOn(scanner), await skusOn(phone));
    await shoot(scanner, "tablet-resumed.png");

    step("the phone goes away: the tablet says the customer is offline");
    await phone.close();
    await laptop.close();
    delete pages.phone;
    delete pages.laptop;
    await scanner.locator('#customer-presence[data-online="no"]').waitFor(WAIT);

    step('"Done with this customer" on the scanning tablet');
    await scanner.click("#done-button");
    await scanner.locator("#claim:not([hidden])").waitFor(WAIT);
    const left = await fetch(`${BASE_URL}/v1/grants`, { headers: { Authorization: `Bearer ${CUSTOMER_TOKEN}` } }).then((r) => r.json());
    assert.deepEqual(left.grants, [], "the grant outlived Done");
  } finally {
    await camera.close();
  }
});
