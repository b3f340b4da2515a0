// The pure helpers: backoff, Retry-After, URLs, keys. No service needed.
import assert from "node:assert/strict";
import { test } from "node:test";

import { backoffDelay, CartsyncClient, newIdempotencyKey, parseRetryAfter, websocketUrl } from "../src/cartsync.js";

test("backoff draws below an exponential ceiling capped at cap, never under Retry-After", () => {
  for (let attempt = 0; attempt < 40; attempt++) {
    const ceiling = Math.min(1000, 100 * 2 ** attempt);
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(attempt, { base: 100, cap: 1000 });
      assert.ok(d >= 0 && d < ceiling, `${d} for attempt ${attempt}`);
    }
  }
  assert.ok(backoffDelay(0, { base: 100, cap: 1000 }, 3000) >= 3000);
  // Full jitter: the draws spread over the whole range instead of clustering at the ceiling.
  const draws = Array.from({ length: 200 }, () => backoffDelay(5, { base: 100, cap: 1000 }));
  assert.ok(Math.min(...draws) < 250 && Math.max(...draws) > 750);
});

test("Retry-After in seconds or as an HTTP date", () => {
  assert.equal(parseRetryAfter("3"), 3000);
  assert.equal(parseRetryAfter(null), null);
  assert.equal(parseRetryAfter("soon"), null);
  const now = Date.parse("2026-11-23T10:00:00Z");
  assert.equal(parseRetryAfter("Mon, 23 Nov 2026 10:00:05 GMT", now), 5000);
  assert.equal(parseRetryAfter("Mon, 23 Nov 2026 09:00:00 GMT", now), 0);
});

test("the websocket URL follows the service URL's scheme", () => {
  assert.equal(websocketUrl("http://127.0.0.1:8000/"), "ws://127.0.0.1:8000/v1/ws");
  assert.equal(websocketUrl("https://cart.example.com"), "wss://cart.example.com/v1/ws");
  assert.throws(() => websocketUrl("ftp://x"), TypeError);
});

test("idempotency keys are distinct UUIDs", () => {
  const keys = new Set(Array.from({ length: 100 }, newIdempotencyKey));
  assert.equal(keys.size, 100);
  for (const k of keys) assert.match(k, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test("a grant's client uses the grant's routes; path ids are escaped", async () => {
  const staff = new CartsyncClient({ baseUrl: "http://127.0.0.1:1/", token: "t", storage: null });
  assert.equal(staff.baseUrl, "http://127.0.0.1:1");
  assert.equal(staff.prefix, "/v1");
  const tablet = staff.forGrant("g/1");
  assert.equal(tablet.prefix, "/v1/grants/g%2F1");
  assert.equal(tablet.grantId, "g/1");
  await assert.rejects(staff.removeLine(""), TypeError);
});
