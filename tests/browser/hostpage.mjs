// The shop's app hands the shopper page its token by postMessage, in Debian's headless Chromium.
// The app (a loopback page on its own origin, the one CARTSYNC_PAGES_HOST_ORIGINS lists) embeds
// the page in an iframe: the page says it is ready, takes the token and shows the cart, and
// takes a refreshed token later so its socket outlives the first token. A stranger's frame on
// another loopback origin posts a token too: ignored. A window the app opens takes a token the
// same way; one a stranger opens stays signed out.
//
// Env as pages.mjs (CARTSYNC_CUSTOMER_TOKEN is short-lived here), plus CARTSYNC_SHOP_URL,
// CARTSYNC_STRANGER_URL, CARTSYNC_FRESH_TOKEN (the same shopper, later), CARTSYNC_OTHER_TOKEN
// (a second shopper) and CARTSYNC_THIRD_TOKEN (a third, the stranger's).
import assert from "node:assert/strict";

import { BASE_URL, CUSTOMER_TOKEN, WAIT, need, run, shoot, step, watch } from "./pages.mjs";

const SHOP = need("CARTSYNC_SHOP_URL");
const STRANGER = need("CARTSYNC_STRANGER_URL");
const FRESH = need("CARTSYNC_FRESH_TOKEN");
const OTHER = need("CARTSYNC_OTHER_TOKEN");
const THIRD = need("CARTSYNC_THIRD_TOKEN");
const SERVICE_ORIGIN = new URL(BASE_URL).origin;

const claims = (token) => JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());

/** What the app's page hears by postMessage, kept in `heard` in every frame and window. */
const listen = () => {
  window.heard = [];
  window.addEventListener("message", (e) => window.heard.push({ origin: e.origin, data: e.data }));
};

run(async ({ phone: app, pages, problems }) => {
  const context = app.context();
  await context.addInitScript(listen);
  const sockets = [];
  app.on("websocket", (ws) => {
    const socket = { auths: 0, closed: false };
    sockets.push(socket);
    ws.on("framesent", (f) => typeof f.payload === "string" && JSON.parse(f.payload).type === "auth" && socket.auths++);
    ws.on("close", () => (socket.closed = true));
  });

  step("the app embeds the shopper page: the page says it is ready, to the app's origin only");
  await app.goto(`${SHOP}/app`);
  const frame = app.frameLocator("#cart-frame");
  await frame.locator("#signin").waitFor(WAIT);
  await app.waitForFunction(() => window.heard.length > 0, null, WAIT);
  assert.deepEqual(await app.evaluate(() => window.heard), [{ origin: SERVICE_ORIGIN, data: { type: "cartsync:ready" } }]);
  const post = (token) => app.evaluate(([t, to]) => document.querySelector("#cart-frame").contentWindow.postMessage({ type: "cartsync:token", token: t }, to), [token, SERVICE_ORIGIN]);

  step("the app posts the shopper's token: the cart shows");
  await post(CUSTOMER_TOKEN);
  await frame.locator('#cart li[data-sku="TSHIRT-1"]').waitFor(WAIT);
  await frame.locator('#connection[data-state="open"]').waitFor(WAIT);
  assert.equal(await frame.locator("#who").textContent(), claims(CUSTOMER_TOKEN).sub);
  await shoot(app, "app-embeds-shopper-page.png");
  const demo = app.frames().find((f) => f.url().startsWith(`${BASE_URL}/demo`));
  await demo.evaluate(() => {
    window.whoSeen = [];
    new MutationObserver(() => window.whoSeen.push(document.querySelector("#who").textContent)).observe(document.querySelector("#who"), { childList: true, characterData: true, subtree: true });
  });

  step("the app posts a refreshed token: the socket lives on past the first token's end");
  await post(FRESH);
  const end = claims(CUSTOMER_TOKEN).exp * 1000;
  await app.waitForTimeout(Math.max(0, end - Date.now()) + 2_000);
  await frame.locator("#add-sku").fill("AFTER-EXPIRY");
  await frame.locator("#add-size").fill("");
  await frame.locator("#add-button").click();
  await frame.locator('#cart li[data-sku="AFTER-EXPIRY"]').waitFor(WAIT);
  const added = await fetch(`${BASE_URL}/v1/cart/lines`, {
    method: "POST",
    headers: { Authorization: `Bearer ${FRESH}`, "Content-Type": "application/json" },
    body: JSON.stringify({ sku: "FROM-APP", qty: 1 }),
  });
  assert.equal(added.status, 201, await added.text());
  await frame.locator('#cart li[data-sku="FROM-APP"]').waitFor(WAIT);
  assert.equal(sockets.length, 1, `the page opened ${sockets.length} sockets: the first was closed (4401?)`);
  assert.equal(sockets[0].closed, false);
  assert.ok(sockets[0].auths >= 1, "the refreshed token never reached the socket");

  step("a stranger's frame posts a third shopper's token: ignored; the app's next token is taken");
  const stranger = app.frames().find((f) => f.url().startsWith(STRANGER));
  await stranger.evaluate((token) => parent.frames[0].postMessage({ type: "cartsync:token", token }, "*"), THIRD);
  await post(OTHER); // posted after the stranger's: the page handles them in that order
  await frame.locator("#who", { hasText: claims(OTHER).sub }).waitFor(WAIT);
  await frame.locator('#connection[data-state="open"]').waitFor(WAIT);
  const seen = await demo.evaluate(() => window.whoSeen);
  assert.ok(!seen.includes(claims(THIRD).sub), `the stranger's token signed its shopper in: ${seen}`);

  step("a window the app opens takes the token the same way");
  const [opened] = await Promise.all([context.waitForEvent("page"), app.evaluate((url) => (window.child = window.open(url)), `${BASE_URL}/demo`)]);
  Object.assign(pages, { opened });
  watch(opened, "opened", problems);
  await app.waitForFunction(() => window.heard.length > 1, null, WAIT);
  assert.deepEqual((await app.evaluate(() => window.heard)).at(-1), { origin: SERVICE_ORIGIN, data: { type: "cartsync:ready" } });
  await app.evaluate(([token, to]) => window.child.postMessage({ type: "cartsync:token", token }, to), [FRESH, SERVICE_ORIGIN]);
  await opened.locator('#cart li[data-sku="FROM-APP"]').waitFor(WAIT);

  step("a window a stranger opens hears nothing it should take, and says nothing to it");
  const elsewhere = await context.newPage();
  Object.assign(pages, { elsewhere });
  watch(elsewhere, "elsewhere", problems);
  await elsewhere.goto(`${STRANGER}/app`);
  const [lured] = await Promise.all([context.waitForEvent("page"), elsewhere.evaluate((url) => (window.child = window.open(url)), `${BASE_URL}/demo`)]);
  Object.assign(pages, { lured });
  watch(lured, "lured", problems);
  await lured.locator("#signin").waitFor(WAIT);
  await lured.waitForLoadState("networkidle");
  await elsewhere.evaluate((token) => window.child.postMessage({ type: "cartsync:token", token }, "*"), CUSTOMER_TOKEN);
  await lured.waitForTimeout(2_000); // long enough for a sign-in to show; none may
  assert.equal(await lured.locator("#shop").isVisible(), false, "a stranger's token signed the page in");
  assert.equal(await lured.locator("#signin").isVisible(), true);
  assert.deepEqual(await elsewhere.evaluate(() => window.heard), [], "the page told a stranger it was ready");
});
