// What the tests run against, handed in by tests/test_js_client.py (the tests mint nothing):
//   CARTSYNC_URL          a running service
//   CARTSYNC_TOKENS       JSON {name: token}: one customer per test file ("rest", "live", "offline",
//                         "handoff"), a second device's token of some of them ("live-2",
//                         "handoff-2") and a staff token ("staff", store s1)
//   CARTSYNC_LIMITED_URL  the same Redis behind a service with a low request rate limit
//   CARTSYNC_RESTARTABLE_URL  the same Redis behind a service process that the tests may stop:
//   CARTSYNC_CONTROL_URL  POST /stop and /start stop and start that process; POST /unknown-event
//                         gives the "newer" customer an event of a type no client knows; POST
//                         /short-token answers a token of the "offline" customer that expires in
//                         4 s (the restartable service allows no clock leeway)
import assert from "node:assert/strict";
import WebSocket from "ws";

import { CartsyncClient } from "../src/cartsync.js";

export { WebSocket };

function required(name) {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: run these tests through tests/test_js_client.py`);
  return value;
}

export const BASE_URL = required("CARTSYNC_URL");
const TOKENS = JSON.parse(required("CARTSYNC_TOKENS"));

export function token(name) {
  assert.ok(TOKENS[name], `CARTSYNC_TOKENS has no token named ${name}`);
  return TOKENS[name];
}

/** Ask tests/test_js_client.py's control endpoint to do `action` (see the list above); its answer. */
export async function control(action) {
  const url = required("CARTSYNC_CONTROL_URL");
  const response = await fetch(`${url}/${action}`, { method: "POST", signal: AbortSignal.timeout(60_000) });
  const text = await response.text();
  assert.equal(response.status, 200, `${action}: ${text}`);
  return text;
}

/** Fast backoff so that reconnects and retries in tests take milliseconds, not seconds. */
export const FAST = { backoff: { base: 50, cap: 500 } };

export function client(name, options = {}) {
  return new CartsyncClient({ baseUrl: BASE_URL, token: token(name), WebSocket, storage: null, ...FAST, ...options });
}

/** Wait until `check()` is truthy (polled every 20 ms), at most `timeoutMs`. */
export async function until(check, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The next `type` event on `target` whose detail passes `match`, at most `timeoutMs`. */
export function nextEvent(target, type, match = () => true, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      target.removeEventListener(type, listener);
      reject(new Error(`no matching ${type} event within ${timeoutMs} ms`));
    }, timeoutMs);
    function listener(event) {
      if (!match(event.detail)) return;
      clearTimeout(timer);
      target.removeEventListener(type, listener);
      resolve(event.detail);
    }
    target.addEventListener(type, listener);
  });
}

/** A Storage of the Web Storage API kept in memory (Node has no localStorage). */
export class MemoryStorage {
  #items = new Map();
  getItem(key) {
    return this.#items.has(key) ? this.#items.get(key) : null;
  }
  setItem(key, value) {
    this.#items.set(key, String(value));
  }
  removeItem(key) {
    this.#items.delete(key);
  }
  get length() {
    return this.#items.size;
  }
}

/** Lines as (sku, qty) pairs, the part of a cart a person compares. */
export const skus = (cart) => cart.lines.map((l) => [l.sku, l.qty]);
