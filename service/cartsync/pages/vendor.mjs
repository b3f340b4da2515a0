// Copies the pages' third-party browser code from node_modules (installed by `npm ci` from
// package-lock.json) into static/vendor/, which is checked in: the wheel and the image then need
// no npm, and tests/test_pages_vendor.py checks the copy is the locked package's file.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const VENDORED = [
  // The QR decoder for browsers without BarcodeDetector (Chromium on Linux and Windows, Firefox).
  ["node_modules/jsqr/dist/jsQR.js", "static/vendor/jsQR.js"],
  ["node_modules/jsqr/LICENSE", "static/vendor/jsQR.LICENSE.txt"],
];

mkdirSync(join(here, "static", "vendor"), { recursive: true });
for (const [from, to] of VENDORED) {
  copyFileSync(join(here, from), join(here, to));
  console.log(`${from} -> ${to}`);
}
