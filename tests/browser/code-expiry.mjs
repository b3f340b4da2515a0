// A hand-off code the shopper never showed to anyone disappears from the phone when it expires,
// with a word on what to do; a new one can be shown at once. Env as pages.mjs, plus
// CARTSYNC_HANDOFF_TTL_SECONDS (short, set on the service too).
import assert from "node:assert/strict";

import { checkA11y } from "./axe.mjs";
import { WAIT, need, phoneShowsCode, phoneSignsIn, run, shoot, step } from "./pages.mjs";

const TTL_S = Number(need("CARTSYNC_HANDOFF_TTL_SECONDS"));

run(async ({ phone }) => {
  step("the phone shows a code and nobody claims it");
  await phoneSignsIn(phone);
  const first = await phoneShowsCode(phone);
  step(`after ${TTL_S} s the code is gone from the screen, and the phone says why`);
  await phone.locator("#handoff").waitFor({ state: "hidden", timeout: (TTL_S + 10) * 1000 });
  assert.equal(await phone.locator("#handoff-code").getAttribute("data-code"), null);
  await phone.locator("#message", { hasText: "The code expired" }).waitFor(WAIT);
  await shoot(phone, "phone-code-expired.png");
  await checkA11y(phone, "phone: the code expired");
  step("a new code can be shown at once");
  const second = await phoneShowsCode(phone);
  assert.notEqual(second, first);
});
