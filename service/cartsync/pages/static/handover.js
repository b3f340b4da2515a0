// The shop's app hands the shopper page its token by postMessage when it embeds the page in an
// iframe or opens it in a window of its own (docs/store-guide.md has the messages). The page
// says `{type: "cartsync:ready"}` to the window that embedded or opened it, and takes
// `{type: "cartsync:token", token}` from that window only, and only when its origin is one the
// shop listed (CARTSYNC_PAGES_HOST_ORIGINS, served as /demo/hand-over.json). Anything else is
// ignored. A later token for the same shopper is a refresh: the JS client takes it from
// `hostTokens`; a token for someone else signs that shopper in instead.
import { claimsOf } from "/static/tokens.js";

const MAX_TOKEN_CHARS = 8192; // what the service accepts
/** A client whose token runs out within this long waits for the host's next one... */
const WAIT_WHEN_LEFT_MS = 60_000;
/** ...at most this long; then it goes on with what it has (the service decides). */
const WAIT_AT_MOST_MS = 10_000;

const newest = new Map(); // shopper (sub) -> the newest token the host handed for them
let waiting = []; // clients waiting for the host's next token
let hostThere = false; // an allowed host window was found: a newer token may come

/** The window that embedded or opened this page, or null. */
function hostWindow() {
  if (window.parent !== window) return window.parent;
  return window.opener ?? null;
}

/** The host's origin as the browser tells it (the embedding page, or the referrer), or null. */
function hostOriginHint() {
  if (window.parent !== window && location.ancestorOrigins?.length) return location.ancestorOrigins[0];
  try {
    return document.referrer ? new URL(document.referrer).origin : null;
  } catch {
    return null;
  }
}

/** Where the ready message goes: the host's origin when known and listed, else every listed one. */
function readyTargets(origins) {
  const hinted = hostOriginHint();
  if (hinted !== null) return origins.includes(hinted) ? [hinted] : [];
  return origins; // postMessage delivers to the one that matches, if any
}

const subjectOf = (token) => claimsOf(token)?.sub ?? null;

/**
 * Take tokens from the host app. `signedInAs()` is the token the page uses now (or null);
 * `signIn(token)` signs a new shopper in, after `after` (a sign-in already under way) and any
 * earlier one. Resolves once listening (or when there is no host or no allowed origin).
 */
export async function listenToHost({ signedInAs, signIn, after = Promise.resolve() }) {
  const host = hostWindow();
  if (host === null) return;
  const answer = await fetch("/demo/hand-over.json").catch(() => null);
  const origins = answer?.ok ? ((await answer.json().catch(() => null))?.host_origins ?? []) : [];
  if (!Array.isArray(origins) || origins.length === 0) return; // nothing is accepted
  let queue = after.catch(() => {});
  window.addEventListener("message", (event) => {
    if (event.source !== host || !origins.includes(event.origin)) return;
    const { type, token } = event.data ?? {};
    if (type !== "cartsync:token" || typeof token !== "string" || !token || token.length > MAX_TOKEN_CHARS) return;
    const subject = subjectOf(token);
    if (subject === null) return;
    newest.set(subject, token);
    for (const wake of waiting) wake();
    waiting = [];
    queue = queue
      .then(() => {
        const current = signedInAs();
        if (current === null || subjectOf(current) !== subject) return signIn(token);
      })
      .catch(() => {});
  });
  hostThere = true;
  for (const origin of readyTargets(origins)) host.postMessage({ type: "cartsync:ready" }, origin);
}

/**
 * A token provider for the JS client signed in with `token`: that token first, then the newest
 * one the host handed for the same shopper. Asked again while it has nothing newer and the
 * token runs out soon, it waits (a little) for the host's next one.
 */
export function hostTokens(token) {
  const subject = subjectOf(token);
  let handed = null;
  return async () => {
    let next = newest.get(subject) ?? token;
    const exp = claimsOf(next)?.exp;
    const runsOut = Number.isFinite(exp) && exp * 1000 - Date.now() < WAIT_WHEN_LEFT_MS;
    if (next === handed && hostThere && runsOut) {
      await new Promise((resolve) => {
        waiting.push(resolve);
        setTimeout(resolve, WAIT_AT_MOST_MS);
      });
      next = newest.get(subject) ?? token;
    }
    handed = next;
    return next;
  };
}
