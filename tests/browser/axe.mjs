// Accessibility of a screen, by axe-core (npm, run in the page): WCAG 2.1 A and AA rules.
// The source is evaluated through the DevTools protocol, which the pages' CSP does not govern,
// so the pages need no exception for it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];

/** Fails on any serious or critical violation on `page` now; prints the screen's tally. */
export async function checkA11y(page, screen) {
  const loaded = await page.evaluate(() => typeof globalThis.axe !== "undefined");
  if (!loaded) await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(
    (tags) => globalThis.axe.run(document, { runOnly: { type: "tag", values: tags } }).then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) }))),
    TAGS,
  );
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  console.log(`axe ${screen}: ${bad.length} serious or critical, ${violations.length - bad.length} other`);
  assert.deepEqual(bad, [], `axe found serious or critical violations on ${screen}`);
}
