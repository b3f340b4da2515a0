// Staff sign-in through the store's identity provider, in the browser: OpenID Connect
// authorization code with PKCE (a public client, no secret), as RFC 7636 and RFC 9700 ask of
// browser apps. The page learns the provider from /staff/sign-in.json and the endpoints from
// the provider's discovery document.

const FLOW_KEY = "cartsync.staff.signin"; // this tab's sign-in in flight: verifier and state

const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const random = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));

/** `{provider: {issuer, client_id, offline_access} | null, idle_seconds}` from the service. */
export async function signInSettings() {
  const response = await fetch("/staff/sign-in.json");
  if (!response.ok) throw new Error("The tablet's settings could not be read. Reload the page.");
  return response.json();
}

async function discover(issuer) {
  const response = await fetch(`${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`).catch(() => null);
  if (!response?.ok) throw new Error("The store's sign-in service cannot be reached. Try again in a moment.");
  return response.json();
}

/** Send the browser to the provider; `carry` (say a hand-off code in the fragment) comes back. */
export async function startSignIn(provider, carry = "") {
  const meta = await discover(provider.issuer);
  const verifier = random(32);
  const state = random(16);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  const redirect = `${location.origin}/staff`;
  // Some providers (Auth0, Okta) issue a refresh token only for `offline_access`; Keycloak gives
  // one tied to the sign-in session without it, and with it a token that outlives the session.
  // A provider that lists its scopes and leaves it out would refuse the request: not asked then.
  const listed = meta.scopes_supported;
  const offline = provider.offline_access && (!Array.isArray(listed) || listed.includes("offline_access"));
  sessionStorage.setItem(FLOW_KEY, JSON.stringify({ verifier, state, redirect, tokenEndpoint: meta.token_endpoint, carry }));
  const query = new URLSearchParams({
    response_type: "code",
    client_id: provider.client_id,
    redirect_uri: redirect,
    scope: offline ? "openid offline_access" : "openid",
    state,
    code_challenge: b64url(new Uint8Array(digest)),
    code_challenge_method: "S256",
  });
  location.assign(`${meta.authorization_endpoint}?${query}`);
}

/**
 * When the provider has sent the browser back (`?code&state`): the tokens (`{token,
 * refreshToken, expiresIn, tokenEndpoint, clientId}`) and `carry`; null when this load is not
 * such a return. Throws an Error whose message can be shown as it is.
 */
export async function finishSignIn(provider) {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return null;
  const flow = JSON.parse(sessionStorage.getItem(FLOW_KEY) ?? "null");
  sessionStorage.removeItem(FLOW_KEY);
  history.replaceState(null, "", location.pathname); // the code works once; keep it off the screen
  if (params.has("error")) throw new Error(`The sign-in was not completed (${params.get("error")}). Try again.`);
  if (!flow || flow.state !== params.get("state")) throw new Error("That sign-in was not started on this tablet. Sign in again.");
  const response = await fetch(flow.tokenEndpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: params.get("code"),
      redirect_uri: flow.redirect,
      client_id: provider.client_id,
      code_verifier: flow.verifier,
    }),
  }).catch(() => null);
  const body = await response?.json().catch(() => ({}));
  if (!response?.ok || !body?.access_token) throw new Error("The store's sign-in service refused the sign-in. Try again.");
  return { ...tokensOf(body, flow.tokenEndpoint, provider.client_id), carry: flow.carry ?? "" };
}

/** What a token response gives the tablet: the refresh token is null when none was issued. */
function tokensOf(body, tokenEndpoint, clientId, refreshToken = null) {
  return {
    token: body.access_token,
    // A provider that rotates refresh tokens sends a new one; one that does not, none.
    refreshToken: typeof body.refresh_token === "string" ? body.refresh_token : refreshToken,
    expiresIn: Number.isFinite(body.expires_in) ? body.expires_in : null,
    tokenEndpoint,
    clientId,
  };
}

/** The provider said no to a refresh token (revoked, expired, signed out): no retry helps. */
export class RefreshRefused extends Error {}

/**
 * A fresh access token for `tokens` (as `finishSignIn` returned them), by the refresh_token
 * grant of a public client (no secret; RFC 6749 section 6). Throws `RefreshRefused` when the
 * provider refuses it, any other Error when the provider could not be reached or failed.
 */
export async function refreshTokens(tokens) {
  const response = await fetch(tokens.tokenEndpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: tokens.refreshToken, client_id: tokens.clientId }),
  });
  const body = await response.json().catch(() => ({}));
  if (response.ok && body?.access_token) return tokensOf(body, tokens.tokenEndpoint, tokens.clientId, tokens.refreshToken);
  if (response.status === 400 || response.status === 401) throw new RefreshRefused(body?.error ?? `HTTP ${response.status}`);
  throw new Error(`the token endpoint answered ${response.status}`);
}

/** Calls `onIdle()` once after `seconds` without a touch, click or key on the page. */
export function idleTimer(seconds, onIdle) {
  let timer = null;
  const reset = () => {
    clearTimeout(timer);
    timer = setTimeout(onIdle, seconds * 1000);
  };
  const events = ["pointerdown", "keydown", "wheel", "touchstart"];
  for (const type of events) document.addEventListener(type, reset, { passive: true });
  reset();
  return () => {
    clearTimeout(timer);
    for (const type of events) document.removeEventListener(type, reset);
  };
}
