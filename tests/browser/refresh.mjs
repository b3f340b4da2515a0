// The tablet's sign-in outlives its access token, in Debian's headless Chromium: the loopback
// provider issues access tokens of a few seconds and refresh tokens (for offline_access); the
// tablet renews before each runs out and hands the new one to the open socket, so a customer's
// cart stays live both ways with no sign-in prompt and no close 4401. When the provider stays
// down through the retries, or revokes the refresh token, the tablet says the sign-in expired;
// the grant stays open and comes back after the next sign-in. Renewals never beat the idle limit.
//
// Env as pages.mjs, plus CARTSYNC_ACCESS_TTL_SECONDS, CARTSYNC_STAFF_IDLE_SECONDS,
// CARTSYNC_OIDC_REVOKE_URL (a POST there revokes every refresh token) and
// CARTSYNC_OIDC_OUTAGE_URL (a POST of refreshes=N there fails the next N refreshes with 503).
import assert from "node:assert/strict";

import { checkA11y } from "./axe.mjs";
import { BASE_URL, WAIT, need, phoneAdds, phoneShowsCode, phoneSignsIn, run, shoot, step } from "./pages.mjs";

const TTL_S = Number(need("CARTSYNC_ACCESS_TTL_SECONDS"));
const IDLE_S = Number(need("CARTSYNC_STAFF_IDLE_SECONDS"));
const REVOKE_URL = need("CARTSYNC_OIDC_REVOKE_URL");
const OUTAGE_URL = need("CARTSYNC_OIDC_OUTAGE_URL");
const ATTEMPTS = 4; // the tablet's first try and its three retries (session.js)

/** The tablet shows the sign-in again, saying why; the grant is still open on the phone. */
async function signInExpired(tablet, phone, waitS) {
  await tablet.locator("#signin:not([hidden])").waitFor({ timeout: waitS * 1000 });
  await tablet.locator("#message", { hasText: "Your sign-in expired, sign in again" }).waitFor(WAIT);
  assert.equal(await phone.locator("#grants li[data-id]").count(), 1, "the expired sign-in ended the grant");
}

/** Every websocket `page` opens: the `auth` frames sent on it, and whether it closed. */
function sockets(page) {
  const seen = [];
  page.on("websocket", (ws) => {
    const socket = { auths: 0, closed: false };
    seen.push(socket);
    ws.on("framesent", (frame) => {
      if (typeof frame.payload === "string" && JSON.parse(frame.payload).type === "auth") socket.auths++;
    });
    ws.on("close", () => (socket.closed = true));
  });
  return seen;
}

async function tabletAdds(tablet, sku) {
  await tablet.fill("#add-sku", sku);
  await tablet.click("#add-button");
  await tablet.locator(`#cart li[data-sku="${sku}"]`).waitFor(WAIT);
}

run(async ({ phone, tablet }) => {
  const opened = sockets(tablet);

  step("the tablet signs in through the provider and opens the customer's cart");
  await phoneSignsIn(phone);
  await phoneAdds(phone, "TSHIRT-1", { size: "M" });
  await tablet.goto(`${BASE_URL}/staff`);
  await tablet.click("#provider-button");
  await tablet.locator("#claim:not([hidden])").waitFor(WAIT);
  await tablet.fill("#code", await phoneShowsCode(phone));
  await tablet.click("#claim-button");
  await tablet.locator('#cart li[data-sku="TSHIRT-1"]').waitFor(WAIT);
  await tablet.locator('#connection[data-state="open"]').waitFor(WAIT);

  const rounds = 3;
  step(`the access token (${TTL_S} s) runs out ${rounds} times over; edits flow both ways`);
  for (let round = 1; round <= rounds; round++) {
    await tablet.waitForTimeout(TTL_S * 1000);
    await phoneAdds(phone, `PHONE-${round}`);
    await tablet.locator(`#cart li[data-sku="PHONE-${round}"]`).waitFor(WAIT);
    await tabletAdds(tablet, `TABLET-${round}`);
    await phone.locator(`#cart li[data-sku="TABLET-${round}"]`).waitFor(WAIT);
  }
  assert.equal(await tablet.locator("#signin").isVisible(), false, "the tablet asked to sign in again");
  assert.equal(await tablet.locator("#connection").getAttribute("data-state"), "open");
  assert.equal(opened.length, 1, `the tablet opened ${opened.length} sockets: one was closed (4401?) and reopened`);
  assert.equal(opened[0].closed, false, "the tablet's socket closed");
  assert.ok(opened[0].auths >= rounds, `only ${opened[0].auths} fresh tokens reached the socket`);
  console.log(`auth frames ${opened[0].auths}`);

  step("the provider stays down through the retries: the sign-in expired, the grant stays");
  const down = await fetch(OUTAGE_URL, { method: "POST", body: new URLSearchParams({ refreshes: String(ATTEMPTS) }) });
  assert.equal(down.status, 200);
  await signInExpired(tablet, phone, TTL_S + 1 + 2 + 4 + 10);
  await tablet.click("#provider-button");
  await tablet.locator('#cart li[data-sku="TABLET-3"]').waitFor(WAIT);

  step("the provider revokes the refresh token: the tablet says the sign-in expired");
  const revoked = await fetch(REVOKE_URL, { method: "POST" });
  assert.equal(revoked.status, 200);
  await signInExpired(tablet, phone, TTL_S + 10);
  await shoot(tablet, "tablet-signin-expired.png");
  await checkA11y(tablet, "tablet: the sign-in expired");

  step("the next sign-in resumes the cart, with what the phone added meanwhile");
  await phoneAdds(phone, "WHILE-AWAY");
  await tablet.click("#provider-button");
  await tablet.locator('#cart li[data-sku="WHILE-AWAY"]').waitFor(WAIT);
  await tablet.locator('#connection[data-state="open"]').waitFor(WAIT);
  const resumed = opened.at(-1);

  step(`left alone for ${IDLE_S} s, the tablet signs out although its token is renewed meanwhile`);
  await tablet.locator("#signin:not([hidden])").waitFor({ timeout: (IDLE_S + 10) * 1000 });
  await tablet.locator("#message", { hasText: "Signed out after" }).waitFor(WAIT);
  await phone.locator("#grants li.empty").waitFor(WAIT);
  assert.ok(resumed.auths >= 1, "no renewal while the tablet sat idle: the test proves nothing");
});
