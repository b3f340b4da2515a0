// Signing in as a store and a shopper would, in Debian's headless Chromium: the tablet signs in
// through the store's identity provider (a loopback OpenID provider: authorization code with
// PKCE, no token box); a tablet opened from the phone's QR link signs in and then opens that
// cart; left alone, the tablet signs out and ends the grant; the shopper's page takes its token
// from the host app in the fragment, and refuses a mistyped token in plain words.
//
// Env as pages.mjs, plus CARTSYNC_BAD_TOKEN (a customer token with a broken signature).
import assert from "node:assert/strict";
import { join } from "node:path";

import { checkA11y } from "./axe.mjs";
import { filmQr } from "./camera.mjs";
import { BASE_URL, CUSTOMER_TOKEN, WAIT, launch, need, phoneAdds, run, shoot, step, watch } from "./pages.mjs";

const BAD_TOKEN = need("CARTSYNC_BAD_TOKEN");
const IDLE_S = Number(need("CARTSYNC_STAFF_IDLE_SECONDS"));

run(async ({ browser, phone, tablet, pages, problems }) => {
  step("the shopper's page takes its token from the host app, in the fragment");
  await phone.goto(`${BASE_URL}/demo#token=${CUSTOMER_TOKEN}`);
  await phone.locator('#connection[data-state="open"]').waitFor(WAIT);
  assert.equal(new URL(phone.url()).hash, "", "the token stayed in the address bar");
  await phoneAdds(phone, "TSHIRT-1", { size: "M" });

  step("the tablet offers the store's sign-in only, and signs in through the provider");
  await tablet.goto(`${BASE_URL}/staff`);
  await tablet.locator("#provider-button").waitFor(WAIT);
  assert.equal(await tablet.locator("#staff-token").isVisible(), false, "the token box shows with a provider");
  await shoot(tablet, "tablet-signin.png");
  await checkA11y(tablet, "tablet: sign-in through the store's provider");
  await tablet.click("#provider-button");
  await tablet.locator("#claim:not([hidden])").waitFor(WAIT);
  assert.equal(await tablet.locator("#staff-name").textContent(), "emma");
  assert.equal(new URL(tablet.url()).search, "", "the authorization code stayed in the address bar");
  await shoot(tablet, "tablet-code.png");
  await checkA11y(tablet, "tablet: enter or scan a code");

  step("a tablet opened from the phone's QR link signs in, then opens that cart");
  await phone.click("#handoff-button");
  await phone.locator("#handoff-code[data-code]").waitFor(WAIT);
  const code = await phone.locator("#handoff-code").getAttribute("data-code");
  const linked = await (await browser.newContext({ viewport: { width: 1180, height: 820 } })).newPage();
  Object.assign(pages, { linked });
  watch(linked, "linked", problems);
  await linked.goto(`${BASE_URL}/staff#code=${code}`);
  await linked.click("#provider-button");
  await linked.locator('#cart li[data-sku="TSHIRT-1"]').waitFor(WAIT);
  assert.equal(new URL(linked.url()).hash, "", "the code stayed in the address bar");
  await phone.locator("#grants li[data-id]").waitFor(WAIT);

  step(`left alone for ${IDLE_S} s, the tablet signs out and ends the grant`);
  await linked.locator("#signin:not([hidden])").waitFor({ timeout: (IDLE_S + 10) * 1000 });
  await linked.locator("#message", { hasText: "Signed out after" }).waitFor(WAIT);
  await phone.locator("#grants li.empty").waitFor(WAIT);
  await shoot(linked, "tablet-idle.png");
  await checkA11y(linked, "tablet: signed out when idle");

  step("the whole scene: a tablet with a camera signs in through the provider and scans the QR");
  await phone.click("#handoff-button");
  await phone.locator("#handoff-code[data-code]").waitFor(WAIT);
  const video = join(need("CARTSYNC_WORKDIR"), "qr.y4m");
  await filmQr(phone, "#handoff-qr", video);
  const camera = await launch(["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", `--use-file-for-fake-video-capture=${video}`]);
  try {
    const scanner = await (await camera.newContext({ viewport: { width: 1180, height: 820 }, hasTouch: true })).newPage();
    Object.assign(pages, { scanner });
    watch(scanner, "scanner", problems);
    await scanner.goto(`${BASE_URL}/staff`);
    await scanner.click("#provider-button");
    await scanner.locator("#claim:not([hidden])").waitFor(WAIT);
    await scanner.click("#scan-button");
    await scanner.locator('#cart li[data-sku="TSHIRT-1"]').waitFor({ timeout: 30_000 });
    await scanner.locator('#customer-presence[data-online="yes"]').waitFor(WAIT);
    await scanner.click("#done-button");
    await phone.locator("#grants li.empty").waitFor(WAIT);
  } finally {
    delete pages.scanner;
    await camera.close();
  }

  step("a mistyped token on the shopper's page is refused in plain words");
  const other = await (await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true })).newPage();
  Object.assign(pages, { other });
  watch(other, "other", problems);
  await other.goto(`${BASE_URL}/demo`);
  await other.fill("#token", CUSTOMER_TOKEN.slice(0, 30));
  await other.click("#signin-button");
  await other.locator("#message.error", { hasText: "not a sign-in token" }).waitFor(WAIT);
  assert.equal(await other.locator("#signin").isVisible(), true);
  await other.fill("#token", BAD_TOKEN);
  await other.click("#signin-button");
  await other.locator("#message.error", { hasText: "did not accept" }).waitFor(WAIT);
  assert.equal(await other.locator("#signin").isVisible(), true, "a refused token left a signed-in screen");
  assert.equal(await other.locator("#shop").isVisible(), false);
  await shoot(other, "phone-bad-token.png");
  await checkA11y(other, "phone: a refused token");
});
