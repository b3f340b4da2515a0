// The shopper on a train, in Debian's headless Chromium: the phone reaches the service through a
// loopback relay (relay.mjs) that the scenario cuts. Offline, the badge says so at once, two taps
// on "+" show 3 with two changes waiting, a reload shows the cart and its waiting changes (the
// service worker's shell), and back online every change is applied once, in order; a second
// device of the same shopper agrees.
import assert from "node:assert/strict";

import { checkA11y } from "./axe.mjs";
import { openRelay } from "./relay.mjs";
import { BASE_URL, CUSTOMER_TOKEN, WAIT, phoneAdds, run, shoot, step } from "./pages.mjs";

const qtyOf = (page, sku) => page.locator(`#cart li[data-sku="${sku}"] output`).innerText();

run(async ({ phone, tablet, problems }) => {
  const relay = await openRelay(BASE_URL);
  try {
    step("the phone signs in through the relay; its offline shell installs");
    await phone.goto(`${relay.url}/demo`);
    await phone.fill("#token", CUSTOMER_TOKEN);
    await phone.click("#signin-button");
    await phone.locator('#connection[data-state="open"]').waitFor(WAIT);
    await phone.evaluate(() => navigator.serviceWorker.ready);
    await phoneAdds(phone, "SOCKS-5");
    await phone.reload(); // the worker now controls the page and has cached its shell
    await phone.locator('#connection[data-state="open"]').waitFor(WAIT);
    assert.ok(await phone.evaluate(() => Boolean(navigator.serviceWorker.controller)), "no service worker");

    step("the network goes: the badge says offline at once, two taps on + count as two");
    await relay.cut();
    await phone.context().setOffline(true);
    await phone.locator('#connection[data-state="offline"]').waitFor({ timeout: 2_000 });
    const plus = phone.locator('#cart li[data-sku="SOCKS-5"] button[aria-label^="One more"]');
    await plus.click();
    await plus.click();
    await phone.locator("#pending", { hasText: "2 changes waiting to be sent" }).waitFor(WAIT);
    assert.equal(await qtyOf(phone, "SOCKS-5"), "3");
    assert.equal(await phone.locator('#cart li[data-sku="SOCKS-5"]').getAttribute("data-pending"), "true");
    await shoot(phone, "phone-offline.png");
    await checkA11y(phone, "phone: offline with waiting changes");

    step("a reload without network shows the cart and its waiting changes");
    await phone.reload();
    await phone.locator("#pending", { hasText: "2 changes waiting to be sent" }).waitFor(WAIT);
    assert.equal(await qtyOf(phone, "SOCKS-5"), "3");
    await shoot(phone, "phone-offline-reloaded.png");

    step("back online: both taps reach the service once, in order; the waiting note clears");
    await relay.restore();
    await phone.context().setOffline(false);
    await phone.locator('#connection[data-state="open"]').waitFor({ timeout: 20_000 });
    await phone.locator("#pending").waitFor({ state: "hidden", timeout: 20_000 });
    assert.equal(await qtyOf(phone, "SOCKS-5"), "3");

    step("a second device of the shopper agrees");
    await tablet.goto(`${BASE_URL}/demo`);
    await tablet.fill("#token", CUSTOMER_TOKEN);
    await tablet.click("#signin-button");
    await tablet.locator('#cart li[data-sku="SOCKS-5"]').waitFor(WAIT);
    assert.equal(await qtyOf(tablet, "SOCKS-5"), "3");
  } finally {
    relay.close();
  }
  // Chromium logs each socket it could not open while the network was cut: expected here.
  const expected = (p) => /^phone: console error: WebSocket connection to .* failed/.test(p);
  problems.splice(0, problems.length, ...problems.filter((p) => !expected(p)));
});
