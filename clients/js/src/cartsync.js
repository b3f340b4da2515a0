/**
 * cartsync JS client: one method per REST route, retries that never apply a change twice, an
 * offline queue, and a live copy of the cart and wishlists kept current over the websocket.
 *
 * One ES module with no dependencies, for browsers and Node 20+. Node 20 has `fetch` but no
 * global `WebSocket`: pass one (e.g. the `ws` package) as the `WebSocket` option.
 *
 * Errors: every failed request rejects with a `CartsyncError` (`status`, `code`, `message`,
 * `field`), or its subclass `NetworkError` (status 0) when no answer came back at all.
 *
 * Versions: the client speaks protocol `PROTOCOL` (`cartsync.v1`, the websocket subprotocol and
 * the `/v1` routes); its major `VERSION` is that protocol's version.
 */

export const VERSION = "1.0.0";
export const PROTOCOL = "cartsync.v1";
export const SUBPROTOCOL = PROTOCOL;
/** The close code the service uses when a staff member's grant is revoked or expires. */
export const REVOKED_CLOSE_CODE = 4403;
/** The close code the service uses when the socket's token ran out (no fresh `auth` in time). */
export const TOKEN_EXPIRED_CLOSE_CODE = 4401;
/** Closes that another connection would only repeat: a refused token, a message we got wrong. */
export const FATAL_CLOSE_CODES = Object.freeze([1003, 1007, 1008, 1009]);

const RETRYABLE_STATUS = new Set([429, 503]);
const SYSTEM_WISHLISTS = ["default", "saved"];
/** Event types that change no cart or wishlist state but still take a revision. */
const STATELESS_EVENTS = new Set(["grant.started", "grant.revoked"]);
/**
 * Every event type of `cartsync.v1` this client applies (tests/test_js_client.py holds it equal
 * to the service's list). Another type (a newer service) makes the client ask for a snapshot.
 */
export const EVENT_TYPES = Object.freeze([
  "line.added",
  "line.updated",
  "line.removed",
  "line.saved_for_later",
  "cart.cleared",
  "cart.note_set",
  "cart.checked_out",
  "cart.merged",
  "cart.restored",
  "cart.collection_set",
  "owner.erased",
  "wishlist.created",
  "wishlist.renamed",
  "wishlist.deleted",
  "wishlist.item_added",
  "wishlist.item_removed",
  "wishlist.item_moved_to_cart",
  ...STATELESS_EVENTS,
]);
const HELLO_TIMEOUT_MS = 15_000;
/** A fresh token goes to the socket this long before its own expires (or a quarter of the rest). */
const RENEW_BEFORE_MS = 60_000;
const RESYNC_AFTER_MS = 5_000;

// Errors ------------------------------------------------------------------------------------

export class CartsyncError extends Error {
  /**
   * @param {number} status HTTP status (0 when there was no answer)
   * @param {string} code the stable error code of the service (`line_not_found`, ...)
   * @param {string} message for people
   * @param {{field?: string, retryAfter?: number, idempotencyKey?: string, rev?: number}} [extra]
   */
  constructor(status, code, message, extra = {}) {
    super(message);
    this.name = "CartsyncError";
    this.status = status;
    this.code = code;
    this.field = extra.field ?? null;
    this.retryAfter = extra.retryAfter ?? null;
    this.idempotencyKey = extra.idempotencyKey ?? null;
    /** On 412: the owner's current revision (from `ETag`). */
    this.rev = extra.rev ?? null;
  }
}

/** The request got no answer: the network is down, the service is not listening, a timeout. */
export class NetworkError extends CartsyncError {
  constructor(message, cause) {
    super(0, "network_error", message);
    this.name = "NetworkError";
    if (cause !== undefined) this.cause = cause;
  }
}

// Small pure helpers --------------------------------------------------------------------------

/**
 * Exponential backoff with full jitter: a uniform draw in [0, min(cap, base * 2^attempt)) ms,
 * never shorter than `retryAfterMs`. Full jitter spreads the retries of many clients that failed
 * together (every tablet of a store when the service restarts) instead of sending them in waves.
 */
export function backoffDelay(attempt, { base = 250, cap = 10_000 } = {}, retryAfterMs = null) {
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 30));
  const jitter = Math.random() * ceiling;
  return retryAfterMs == null ? jitter : Math.max(retryAfterMs, jitter);
}

/** Milliseconds from a `Retry-After` header: delta-seconds or an HTTP date (RFC 9110 10.2.3). */
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null) return null;
  const text = String(value).trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const when = Date.parse(text);
  return Number.isNaN(when) ? null : Math.max(0, when - now);
}

/** `ws(s)://host/v1/ws` for an `http(s)://` service URL; the token never goes in it. */
export function websocketUrl(baseUrl) {
  const base = String(baseUrl).replace(/\/+$/, "");
  if (base.startsWith("https://")) return "wss://" + base.slice(8) + "/v1/ws";
  if (base.startsWith("http://")) return "ws://" + base.slice(7) + "/v1/ws";
  throw new TypeError(`the service URL must start with http:// or https://: ${baseUrl}`);
}

/** A random UUID; `crypto.randomUUID` only exists in secure contexts (https, localhost). */
/** The kinds of device a socket may say it is (`device()`), as the service accepts them. */
export const DEVICE_KINDS = Object.freeze(["phone", "tablet", "desktop", "other"]);

/**
 * The 8-digit hand-off code in what a person typed or a QR held: "8417 2257", "8417-2257", or
 * the tablet link `…/staff#code=84172257`. null when there is no such code in it.
 */
export function handoffCode(text) {
  const raw = String(text ?? "").trim();
  const linked = /[#?&]code=([\d\s-]+)/.exec(raw);
  const digits = (linked ? linked[1] : raw).replace(/[\s\u00a0-]/g, "");
  return /^\d{8}$/.test(digits) ? digits : null;
}

export function newIdempotencyKey() {
  const c = globalThis.crypto;
  if (typeof c?.randomUUID === "function") return c.randomUUID();
  const b = c.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Ids are a letter and a per-owner sequence number (`L3`, `w2`, `i7`); the service lists by it. */
function seq(id) {
  const n = Number(String(id).slice(1));
  return Number.isInteger(n) ? n : -1;
}

const bySeq = (a, b) => seq(a.id) - seq(b.id);
const wishlistRank = (w) => (w.id === "default" ? 0 : w.id === "saved" ? 1 : 2);
const byWishlistOrder = (a, b) => wishlistRank(a) - wishlistRank(b) || seq(a.id) - seq(b.id);

function clone(value) {
  return value == null ? value : JSON.parse(JSON.stringify(value));
}

function segment(value) {
  const text = String(value);
  if (text === "") throw new TypeError("an id in a path must not be empty");
  return encodeURIComponent(text);
}

/** A close the token caused: it ran out (4401), or was refused (1008, and the reason says so). */
function refusedToken(code, reason) {
  return code === TOKEN_EXPIRED_CLOSE_CODE || (code === 1008 && /^token\b/.test(String(reason ?? "")));
}

/** `role:subject` from a JWT, without checking it; only names this caller's offline queue. */
function tokenIdentity(token) {
  try {
    const part = String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    return `${claims.role ?? "?"}:${claims.sub ?? "?"}`;
  } catch {
    return "anonymous";
  }
}

function defaultStorage() {
  try {
    // Reading localStorage throws where storage is blocked (some private modes, sandboxes).
    const storage = globalThis.localStorage;
    return storage && typeof storage.getItem === "function" ? storage : null;
  } catch {
    return null;
  }
}

// Applying events: the same change the service's mutation script made --------------------------

function putById(list, entity, order = bySeq) {
  return [...list.filter((x) => x.id !== entity.id), entity].sort(order);
}

function withDefaultWishlist(wishlists) {
  const list = wishlists.map((w) => ({ ...w, items: [...w.items].sort(bySeq) }));
  if (!list.some((w) => w.id === "default")) list.push({ id: "default", name: "default", items: [] });
  return list.sort(byWishlistOrder);
}

class StaleCopy extends Error {}

/** A cart's click-and-collect when nothing is chosen (also what checkout leaves). */
const NO_COLLECTION = Object.freeze({ store_id: null, store_name: null, pickup_at: null, ready: false });

/** The wishlist an event changed; a system one is stored (timestamped) on first use. */
function openWishlist(wishlists, id, at) {
  const found = wishlists.find((w) => w.id === id);
  if (found && (found.created_at != null || !SYSTEM_WISHLISTS.includes(id))) return found;
  if (!SYSTEM_WISHLISTS.includes(id)) throw new StaleCopy(`no wishlist ${id} in this copy`);
  return { id, name: id, items: found ? found.items : [], created_at: at, updated_at: at };
}

function changeWishlist(wishlists, id, at, change) {
  const w = openWishlist(wishlists, id, at);
  return putById(wishlists, { ...w, items: change(w.items), updated_at: at }, byWishlistOrder);
}

const dropLine = (lines, lineId) => lines.filter((l) => l.id !== lineId);

/**
 * The new `{cart, wishlists}` after one event, or throws `StaleCopy` when this copy cannot apply
 * it (an unknown type, a wishlist it lacks): the remedy is a fresh snapshot.
 */
function applyEvent(cart, wishlists, event) {
  const d = event.data ?? {};
  const at = event.at;
  const lines = cart.lines;
  switch (event.type) {
    case "line.added":
    case "line.updated":
      return { cart: { ...cart, lines: putById(lines, d.line) }, wishlists };
    case "line.removed":
      return { cart: { ...cart, lines: dropLine(lines, d.line_id) }, wishlists };
    case "line.saved_for_later":
      return {
        cart: { ...cart, lines: dropLine(lines, d.line_id) },
        wishlists: changeWishlist(wishlists, d.wishlist_id, at, (items) => putById(items, d.item)),
      };
    case "cart.cleared":
      return { cart: { ...cart, lines: [] }, wishlists };
    case "cart.note_set":
      return { cart: { ...cart, note: d.note }, wishlists };
    case "cart.checked_out":
      // The event does not name the new cart: its id is known again from the next snapshot.
      return {
        cart: { ...cart, lines: [], note: "", cart_id: null, ready_for_collection: false, collection: { ...NO_COLLECTION } },
        wishlists,
      };
    case "cart.collection_set": {
      // The event carries the whole choice after the change: store (null: none), time, ready.
      const collection = {
        store_id: d.store_id ?? null,
        store_name: d.store_name ?? null,
        pickup_at: d.pickup_at ?? null,
        ready: Boolean(d.ready),
      };
      return { cart: { ...cart, ready_for_collection: collection.ready, collection }, wishlists };
    }
    case "cart.merged":
      return {
        cart: { ...cart, lines: [...d.lines].sort(bySeq) },
        wishlists: withDefaultWishlist(d.wishlists),
      };
    case "cart.restored":
      // Support put the cart back as it was at an earlier revision: the whole state, like a snapshot.
      return {
        cart: { ...cart, note: d.note, lines: [...d.lines].sort(bySeq) },
        wishlists: withDefaultWishlist(d.wishlists),
      };
    case "owner.erased":
      // Never logged and numbered 0: everything is gone; the snapshot that follows says so.
      throw new StaleCopy("the owner's data was erased");
    case "wishlist.created":
    case "wishlist.renamed":
      return {
        cart,
        wishlists: putById(wishlists, { ...d.wishlist, items: [...d.wishlist.items].sort(bySeq) }, byWishlistOrder),
      };
    case "wishlist.deleted":
      return { cart, wishlists: wishlists.filter((w) => w.id !== d.wishlist_id) };
    case "wishlist.item_added":
      return { cart, wishlists: changeWishlist(wishlists, d.wishlist_id, at, (items) => putById(items, d.item)) };
    case "wishlist.item_removed":
      return {
        cart,
        wishlists: changeWishlist(wishlists, d.wishlist_id, at, (items) => items.filter((i) => i.id !== d.item_id)),
      };
    case "wishlist.item_moved_to_cart":
      return {
        cart: { ...cart, lines: putById(lines, d.line) },
        wishlists: changeWishlist(wishlists, d.wishlist_id, at, (items) => items.filter((i) => i.id !== d.item_id)),
      };
    default:
      if (STATELESS_EVENTS.has(event.type)) return { cart, wishlists };
      throw new StaleCopy(`unknown event type ${event.type}`);
  }
}

// The client ---------------------------------------------------------------------------------

/**
 * A client of one owner's cart and wishlists: the token's own (`/v1/...`), or, with `grantId`,
 * a customer's that a staff member was handed (`/v1/grants/{grantId}/...`).
 *
 * Events (an `EventTarget`): `cart` and `wishlists` (detail: the new value), `event` (detail:
 * the applied event), `connection` (detail: `{state, code?, reason?}`; state is `connecting`,
 * `open`, `offline` or `closed`), `revoked` (detail: `{code, reason}`), `queue` (detail:
 * `{pending, sent?, error?}`), `snapshot` (detail: the new state).
 *
 * `token` is a token or a provider: a function (sync or async) returning one. The client asks
 * the provider when it first needs a token, shortly before the live socket's token runs out
 * (`hello.expires_at`; the new one goes to the open socket as `auth`), and when the service
 * refuses the one it has (401, or the socket closed 4401 or 1008 for its token), then repeats
 * that request or connection once. The live copy, its revision and the offline queue (with its
 * Idempotency-Keys) stay.
 */
export class CartsyncClient extends EventTarget {
  #provider = null;
  #token = null;
  #tokenAsked = null;
  #socketToken = null;
  #refusedSocketToken = null;
  #queueRestored = false;
  #fetch;
  #WebSocket;
  #storage;
  #queueKey;
  #queue = [];
  #flushing = false;
  #flushTimer = null;
  #flushAttempt = 0;
  #ws = null;
  #live = false;
  #attempt = 0;
  #reconnectTimer = null;
  #heartbeatTimer = null;
  #helloTimer = null;
  #renewTimer = null;
  #lastHeard = 0;
  #syncSentAt = null;
  #ready = null;
  #state = null;
  #connection = "closed";
  #onOnline = null;
  #closedByUser = false;
  #device = null;
  #presence = null;

  /**
   * @param {import("./cartsync").ClientOptions} options
   */
  constructor(options = {}) {
    super();
    const baseUrl = options.baseUrl ?? globalThis.location?.origin;
    if (!baseUrl) throw new TypeError("baseUrl is required");
    this.baseUrl = String(baseUrl).replace(/\/+$/, "");
    if (typeof options.token === "function") this.#provider = options.token;
    else this.#token = options.token ?? null;
    this.deviceId = options.deviceId ?? null;
    this.grantId = options.grantId ?? null;
    this.retries = options.retries ?? 4;
    this.backoff = { base: 250, cap: 10_000, ...options.backoff };
    this.requestTimeoutMs = options.requestTimeoutMs ?? 15_000;
    this.pingIntervalMs = options.pingIntervalMs ?? 20_000;
    this.offlineQueue = options.offlineQueue ?? true;
    this.#fetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
    if (typeof this.#fetch !== "function") throw new TypeError("no fetch: pass the fetch option");
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket ?? null;
    this.#storage = options.storage === undefined ? defaultStorage() : options.storage;
    this.#queueKey = options.storageKey ?? null;
    // With a provider the queue's owner is known from its first token (see #currentToken).
    if (this.#provider === null || this.#queueKey !== null) this.#restoreQueue();
  }

  /** The token in use (null before a provider was first asked). */
  get token() {
    return this.#token;
  }

  /** The token to send: a provider is asked on first use (and the caller's queue restored). */
  async #currentToken() {
    if (this.#token !== null || this.#provider === null) return this.#token;
    this.#tokenAsked ??= this.#askProvider();
    return this.#tokenAsked;
  }

  async #askProvider() {
    try {
      const token = await this.#provider();
      if (typeof token !== "string" || token === "") {
        throw new TypeError(`the token provider returned ${typeof token}, not a token`);
      }
      this.#token = token;
      if (!this.#queueRestored) this.#restoreQueue();
      return token;
    } finally {
      this.#tokenAsked = null;
    }
  }

  /** A token other than `refused` from the provider, or null when it has none. */
  async #refreshToken(refused) {
    if (this.#provider === null) return null;
    if (this.#token === refused) {
      this.#token = null;
      this.#tokenAsked ??= this.#askProvider();
    }
    const fresh = await this.#currentToken();
    return fresh === refused ? null : fresh;
  }

  /** Ask the service for a guest token (no `Authorization`): `{token, guest_id, expires_at}`. */
  static async createGuest(options = {}) {
    const client = new CartsyncClient({ ...options, token: null, storage: null, offlineQueue: false });
    return (await client.request("POST", "/v1/guest", { auth: false })).body;
  }

  /** A client for the customer data of a grant, with this client's token and options. */
  forGrant(grantId, options = {}) {
    return new CartsyncClient({
      baseUrl: this.baseUrl,
      token: this.#provider ?? this.#token,
      deviceId: this.deviceId,
      retries: this.retries,
      backoff: this.backoff,
      requestTimeoutMs: this.requestTimeoutMs,
      pingIntervalMs: this.pingIntervalMs,
      offlineQueue: this.offlineQueue,
      fetch: this.#fetch,
      WebSocket: this.#WebSocket,
      storage: this.#storage,
      ...options,
      grantId,
    });
  }

  /** Path prefix of the owner's data: `/v1`, or `/v1/grants/{id}` for a staff member's grant. */
  get prefix() {
    return this.grantId ? `/v1/grants/${segment(this.grantId)}` : "/v1";
  }

  // REST: the owner's data -----------------------------------------------------------------

  /** The active cart; `null` for a 304 when `ifNoneMatch` is the current revision. */
  async getCart({ ifNoneMatch } = {}) {
    const headers = ifNoneMatch == null ? {} : { "If-None-Match": `"${ifNoneMatch}"` };
    return (await this.request("GET", `${this.prefix}/cart`, { headers })).body;
  }

  async addLine(line, opts) {
    return this.#mutate("POST", `${this.prefix}/cart/lines`, line, opts);
  }

  async patchLine(lineId, patch, opts) {
    return this.#mutate("PATCH", `${this.prefix}/cart/lines/${segment(lineId)}`, patch, opts);
  }

  /**
   * Add `delta` (say +1 or -1) to a line's quantity on the server, against what it stores then:
   * unlike `patchLine(id, {qty})` worked out from a screen, every tap counts, queued or not.
   */
  async changeQty(lineId, delta, opts) {
    return this.#mutate("PATCH", `${this.prefix}/cart/lines/${segment(lineId)}`, { qty_delta: delta }, opts);
  }

  async removeLine(lineId, opts) {
    return this.#mutate("DELETE", `${this.prefix}/cart/lines/${segment(lineId)}`, undefined, opts);
  }

  async clearCart(opts) {
    return this.#mutate("DELETE", `${this.prefix}/cart`, undefined, opts);
  }

  async setNote(note, opts) {
    return this.#mutate("PUT", `${this.prefix}/cart/note`, { note }, opts);
  }

  async saveForLater(lineId, opts) {
    return this.#mutate("POST", `${this.prefix}/cart/lines/${segment(lineId)}/save-for-later`, undefined, opts);
  }

  async checkout(opts) {
    return this.#mutate("POST", `${this.prefix}/cart/checkout`, undefined, opts);
  }

  /** Mark the cart ready (or not) for click-and-collect. */
  async setReadyForCollection(ready = true, opts) {
    return this.#mutate("PUT", `${this.prefix}/cart/collection`, { ready: Boolean(ready) }, opts);
  }

  /**
   * Click-and-collect: choose a store and pick-up time (a slot of `listStores()`; `storeId:
   * null` clears the choice) and/or mark it ready. What is left out stays as it is.
   */
  async setCollection({ storeId, pickupAt, ready } = {}, opts) {
    const body = {};
    if (storeId !== undefined) {
      body.store_id = storeId;
      body.pickup_at = storeId === null ? null : pickupAt;
    }
    if (ready !== undefined) body.ready = Boolean(ready);
    return this.#mutate("PUT", `${this.prefix}/cart/collection`, body, opts);
  }

  /** The stores that take click-and-collect orders, with their next pick-up slots (public). */
  async listStores() {
    return (await this.request("GET", "/v1/stores", { auth: false })).body.stores;
  }

  /** Fold a guest's cart and wishlists into this customer's; idempotent by the guest token. */
  async merge(guestToken, strategy = "sum") {
    const body = { guest_token: guestToken, strategy };
    return (await this.request("POST", `${this.prefix}/cart/merge`, { body })).body;
  }

  /** Events after revision `since` (`{rev, epoch, since, complete, events}`). */
  async history({ since = 0, limit, epoch } = {}) {
    const query = { since, limit, epoch };
    return (await this.request("GET", `${this.prefix}/cart/history`, { query })).body;
  }

  async listWishlists() {
    return (await this.request("GET", `${this.prefix}/wishlists`)).body;
  }

  async getWishlist(wishlistId) {
    return (await this.request("GET", `${this.prefix}/wishlists/${segment(wishlistId)}`)).body;
  }

  async createWishlist(name, opts) {
    return this.#mutate("POST", `${this.prefix}/wishlists`, { name }, opts);
  }

  async renameWishlist(wishlistId, name, opts) {
    return this.#mutate("PATCH", `${this.prefix}/wishlists/${segment(wishlistId)}`, { name }, opts);
  }

  async deleteWishlist(wishlistId, opts) {
    return this.#mutate("DELETE", `${this.prefix}/wishlists/${segment(wishlistId)}`, undefined, opts);
  }

  async addItem(wishlistId, item, opts) {
    return this.#mutate("POST", `${this.prefix}/wishlists/${segment(wishlistId)}/items`, item, opts);
  }

  async removeItem(wishlistId, itemId, opts) {
    const path = `${this.prefix}/wishlists/${segment(wishlistId)}/items/${segment(itemId)}`;
    return this.#mutate("DELETE", path, undefined, opts);
  }

  async moveToCart(wishlistId, itemId, qty = 1, opts) {
    const path = `${this.prefix}/wishlists/${segment(wishlistId)}/items/${segment(itemId)}/move-to-cart`;
    return this.#mutate("POST", path, { qty }, opts);
  }

  /** Everything held for the token's owner. */
  async exportData() {
    return (await this.request("GET", "/v1/me/export")).body;
  }

  /** Erase everything held for the token's owner. */
  async erase() {
    return (await this.request("DELETE", "/v1/me")).body;
  }

  // REST: hand-off to store staff ----------------------------------------------------------

  /** A one-time code (and its QR code as SVG) that lets a store's staff open this cart. */
  async createHandoff() {
    return (await this.request("POST", "/v1/handoffs", { idempotencyKey: newIdempotencyKey() })).body;
  }

  /** Staff: turn a customer's code into a grant, `{grant: {id, owner, staff, store, expires_at}}`. */
  async claimHandoff(code) {
    // What the phone shows ("8417 2257") or its QR holds (a link) is as good as the digits.
    const path = `/v1/handoffs/${segment(handoffCode(code) ?? code)}/claim`;
    return (await this.request("POST", path, { idempotencyKey: newIdempotencyKey() })).body;
  }

  /** Staff: end your own grant now ("Done with this customer"); the customer's devices hear it. */
  async endGrant(grantId) {
    return (await this.request("POST", `/v1/grants/${segment(grantId)}/end`)).body;
  }

  /** The owner's active grants. */
  async listGrants() {
    return (await this.request("GET", "/v1/grants")).body;
  }

  /** End a staff member's access now; their live socket is closed with 4403. */
  async revokeGrant(grantId) {
    const path = `/v1/grants/${segment(grantId)}`;
    return (await this.request("DELETE", path, { idempotencyKey: newIdempotencyKey() })).body;
  }

  // REST: the transport ------------------------------------------------------------------------

  /**
   * One request with retries on network errors, 429 and 503 (backoff with full jitter, at least
   * `Retry-After`); the same `Idempotency-Key` on every attempt. Resolves to
   * `{status, body, etag, replayed}`, rejects with `CartsyncError` for any other non-2xx.
   */
  async request(method, path, opts = {}) {
    const retries = opts.retries ?? this.retries;
    const networkRetries = Math.min(retries, opts.networkRetries ?? retries);
    let networkFailures = 0;
    let refreshed = false;
    let token = opts.auth === false ? null : await this.#currentToken();
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#send(method, path, { ...opts, token });
      } catch (error) {
        if (error.status === 401 && token !== null && !refreshed) {
          refreshed = true;
          const fresh = await this.#refreshToken(token);
          if (fresh !== null) {
            token = fresh;
            attempt--; // the same request with a new token, not a retry of a failure
            continue;
          }
        }
        const network = error instanceof NetworkError;
        if (network) networkFailures++;
        const retryable = network ? networkFailures <= networkRetries : RETRYABLE_STATUS.has(error.status);
        if (!retryable || attempt >= retries) throw error;
        await sleep(backoffDelay(attempt, this.backoff, error.retryAfter));
      }
    }
  }

  async #send(method, path, { body, query, headers = {}, idempotencyKey, ifMatch, token }) {
    const url = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v != null) url.searchParams.set(k, String(v));
    const h = { Accept: "application/json", ...headers };
    if (token) h.Authorization = `Bearer ${token}`;
    if (this.deviceId) h["X-Device-Id"] = this.deviceId;
    if (idempotencyKey) h["Idempotency-Key"] = idempotencyKey;
    if (ifMatch != null) h["If-Match"] = `"${ifMatch}"`;
    if (body !== undefined) h["Content-Type"] = "application/json";
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.requestTimeoutMs);
    let response;
    let text;
    try {
      response = await this.#fetch(url, {
        method,
        headers: h,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: abort.signal,
        cache: "no-store",
      });
      text = await response.text();
    } catch (error) {
      throw new NetworkError(`${method} ${path}: no answer (${error?.message ?? error})`, error);
    } finally {
      clearTimeout(timer);
    }
    let parsed = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = null; // a proxy's HTML error page: the status still tells what happened
      }
    }
    const etag = response.headers.get("etag");
    const rev = etag ? Number(etag.replace(/^W\//, "").replaceAll('"', "")) : null;
    if (response.ok || response.status === 304) {
      return {
        status: response.status,
        body: response.status === 304 ? null : parsed,
        rev,
        replayed: response.headers.get("idempotent-replayed") === "true",
      };
    }
    const detail = parsed?.error ?? {};
    throw new CartsyncError(response.status, detail.code ?? `http_${response.status}`, detail.message ?? response.statusText, {
      field: detail.field,
      retryAfter: parseRetryAfter(response.headers.get("retry-after")),
      idempotencyKey,
      rev,
    });
  }

  /**
   * A change of the owner's data. With the queue on, a change whose request got no answer is
   * kept (with its Idempotency-Key) and sent again, in order, until the service answers; so is
   * every change made while earlier ones still wait. Those resolve to `{queued: true, ...}`.
   */
  async #mutate(method, path, body, opts = {}) {
    const op = {
      key: opts.idempotencyKey ?? newIdempotencyKey(),
      method,
      path,
      body,
      ifMatch: opts.ifMatch ?? null,
    };
    const queueable = this.offlineQueue && opts.queue !== false;
    if (!this.#queueRestored) await this.#currentToken(); // it names the queue to restore first
    if (queueable && this.#queue.length > 0) return this.#enqueue(op);
    try {
      const res = await this.request(method, path, {
        body,
        idempotencyKey: op.key,
        ifMatch: op.ifMatch,
        // A queued change is retried by the queue: after a quick second try, queue it.
        networkRetries: queueable ? 1 : undefined,
      });
      return res.body;
    } catch (error) {
      if (queueable && error instanceof NetworkError) return this.#enqueue(op);
      throw error;
    }
  }

  // The offline queue --------------------------------------------------------------------------

  /** How many changes wait to be sent. */
  get pending() {
    return this.#queue.length;
  }

  /** The waiting changes, oldest first: `{key, method, path, body, ifMatch}`. */
  get queued() {
    return this.#queue.map(({ key, method, path, body, ifMatch }) => ({ key, method, path, body: clone(body), ifMatch }));
  }

  #enqueue(op) {
    let resolve;
    let reject;
    const settled = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    settled.catch(() => {}); // whoever cares awaits it; nobody else gets an unhandled rejection
    this.#queue.push({ ...op, resolve, reject });
    this.#persistQueue();
    this.#emit("queue", { pending: this.#queue.length });
    this.#scheduleFlush(0);
    return { queued: true, idempotencyKey: op.key, settled };
  }

  /** Send the waiting changes now (also done by itself: on a timer, on reconnect, when online). */
  async flush() {
    if (this.#flushing) return;
    this.#flushing = true;
    clearTimeout(this.#flushTimer);
    this.#flushTimer = null;
    try {
      while (this.#queue.length > 0) {
        const op = this.#queue[0];
        let res;
        try {
          res = await this.request(op.method, op.path, {
            body: op.body,
            idempotencyKey: op.key,
            ifMatch: op.ifMatch,
            retries: 0,
          });
        } catch (error) {
          if (error instanceof NetworkError || RETRYABLE_STATUS.has(error.status)) {
            this.#scheduleFlush(backoffDelay(this.#flushAttempt++, this.backoff, error.retryAfter));
            return;
          }
          // Refused (a line removed meanwhile, a stale If-Match...): it never will succeed.
          this.#queue.shift();
          this.#persistQueue();
          op.reject?.(error);
          this.#emit("queue", { pending: this.#queue.length, error, key: op.key });
          continue;
        }
        this.#flushAttempt = 0;
        this.#queue.shift();
        this.#persistQueue();
        op.resolve?.(res.body);
        this.#emit("queue", { pending: this.#queue.length, sent: res.body, key: op.key, replayed: res.replayed });
      }
    } finally {
      this.#flushing = false;
    }
  }

  #scheduleFlush(delayMs) {
    if (this.#flushTimer !== null || this.#queue.length === 0 || this.#closedByUser) return;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = null;
      this.flush();
    }, delayMs);
    this.#watchOnline();
  }

  #watchOnline() {
    if (this.#onOnline || typeof globalThis.addEventListener !== "function") return;
    this.#onOnline = () => this.flush();
    globalThis.addEventListener("online", this.#onOnline);
  }

  #persistQueue() {
    if (!this.#storage || this.#queueKey === null) return;
    try {
      if (this.#queue.length === 0) {
        this.#storage.removeItem(this.#queueKey);
      } else {
        const plain = this.#queue.map(({ key, method, path, body, ifMatch }) => ({ key, method, path, body, ifMatch }));
        this.#storage.setItem(this.#queueKey, JSON.stringify(plain));
      }
    } catch {
      // Storage full or blocked: the queue still lives in memory for this page.
    }
  }

  #restoreQueue() {
    this.#queueRestored = true;
    if (this.#queueKey === null) {
      const scope = this.grantId ? `grant:${this.grantId}` : "own";
      this.#queueKey = `cartsync:queue:${this.baseUrl}:${tokenIdentity(this.#token)}:${scope}`;
    }
    if (!this.#storage || !this.offlineQueue) return;
    try {
      const raw = this.#storage.getItem(this.#queueKey);
      const ops = raw ? JSON.parse(raw) : [];
      if (Array.isArray(ops)) this.#queue = [...ops.filter((op) => op && op.key && op.method && op.path), ...this.#queue];
    } catch {
      this.#queue = [];
    }
    if (this.#queue.length > 0) queueMicrotask(() => this.#scheduleFlush(0));
  }

  #clearQueue(error) {
    const dropped = this.#queue;
    this.#queue = [];
    this.#persistQueue();
    for (const op of dropped) op.reject?.(error);
  }

  // Live ---------------------------------------------------------------------------------------

  /** `{rev, epoch, cart, wishlists}` as last applied, or null before the first snapshot. */
  get state() {
    return this.#state;
  }

  get cart() {
    return this.#state?.cart ?? null;
  }

  get wishlists() {
    return this.#state?.wishlists ?? null;
  }

  get rev() {
    return this.#state?.rev ?? null;
  }

  /** `connecting`, `open`, `offline` or `closed`. */
  get connection() {
    return this.#connection;
  }

  /**
   * The owner's live devices as the last `presence` frame listed them (each `{id, label, kind,
   * role, store, you}`), or null while this client has no open socket: it cannot know then.
   */
  get presence() {
    return this.#presence;
  }

  /**
   * Name this device for the owner's other devices (`label` 1-64 characters, `kind` one of
   * DEVICE_KINDS); sent now when live, and again on every reconnect.
   */
  device(label, kind = "other") {
    const text = String(label ?? "").trim();
    if (text.length < 1 || text.length > 64) throw new TypeError("a device label has 1 to 64 characters");
    if (!DEVICE_KINDS.includes(kind)) throw new TypeError(`a device kind is one of ${DEVICE_KINDS.join(", ")}`);
    this.#device = { label: text, kind };
    if (this.#ws && this.#connection === "open") this.#sendFrame(this.#ws, { type: "device", ...this.#device });
  }

  /**
   * Open the live socket and keep it open: reconnect with backoff after any close but a fatal
   * one (1003, 1007, 1008, 1009) or a revoked grant (4403), and resume from the last applied
   * revision. Resolves once the local copy is current (after the first snapshot).
   */
  connect() {
    if (!this.#WebSocket) {
      return Promise.reject(new TypeError("no WebSocket: pass the WebSocket option (in Node 20, the ws package)"));
    }
    if (this.#live) return this.#ready.promise;
    this.#live = true;
    this.#closedByUser = false;
    this.#ready = deferred();
    this.#open();
    return this.#ready.promise;
  }

  /** Stop the live socket and every timer; the local copy and the queue stay. */
  close() {
    this.#live = false;
    this.#closedByUser = true;
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#flushTimer);
    this.#flushTimer = null;
    this.#stopTimers();
    const ws = this.#ws;
    this.#ws = null;
    if (ws && ws.readyState <= 1) ws.close(1000, "client closed");
    if (this.#onOnline) globalThis.removeEventListener?.("online", this.#onOnline);
    this.#onOnline = null;
    this.#ready?.reject(new CartsyncError(0, "closed", "the client was closed"));
    this.#setConnection("closed");
  }

  #open() {
    this.#setConnection("connecting");
    this.#currentToken().then(
      (token) => {
        if (this.#live && this.#ws === null) this.#openWith(token);
      },
      (error) => {
        // The provider failed (offline, its server down): try again later, like a failed socket.
        if (this.#live) this.#onClose(1006, `no token: ${error?.message ?? error}`);
      },
    );
  }

  #openWith(token) {
    this.#socketToken = token;
    const protocols = [SUBPROTOCOL, `bearer.${token}`];
    if (this.grantId) protocols.push(`grant.${this.grantId}`);
    let ws;
    try {
      ws = new this.#WebSocket(websocketUrl(this.baseUrl), protocols);
    } catch (error) {
      this.#fail(new CartsyncError(0, "invalid_url", String(error?.message ?? error)));
      return;
    }
    this.#ws = ws;
    this.#lastHeard = Date.now();
    this.#helloTimer = setTimeout(() => ws.close(4000, "no hello"), HELLO_TIMEOUT_MS);
    ws.onmessage = (message) => {
      if (ws === this.#ws) this.#onMessage(ws, message.data);
    };
    ws.onerror = () => {}; // a close event follows with the code
    ws.onclose = (event) => {
      if (ws === this.#ws) this.#onClose(event.code, event.reason);
    };
  }

  #onClose(code, reason) {
    this.#ws = null;
    this.#stopTimers();
    if (!this.#live) return;
    if (refusedToken(code, reason) && this.#provider !== null && this.#refusedSocketToken === null) {
      // Once per refusal: a token refused again right after a refresh is final (no loop).
      const refused = (this.#refusedSocketToken = this.#socketToken);
      this.#setConnection("connecting", { code, reason });
      this.#refreshToken(refused).then(
        (fresh) => {
          if (!this.#live) return;
          if (fresh === null) this.#fail(new CartsyncError(0, "session_closed", reason), code, reason);
          else this.#openWith(fresh);
        },
        (error) => {
          if (this.#live) this.#fail(new CartsyncError(0, "session_closed", String(error?.message ?? error)), code, reason);
        },
      );
      return;
    }
    if (code === REVOKED_CLOSE_CODE) {
      this.#revoked(code, reason);
    } else if (FATAL_CLOSE_CODES.includes(code)) {
      this.#fail(new CartsyncError(0, "session_closed", reason || `closed with ${code}`), code, reason);
    } else {
      this.#setConnection("offline", { code, reason });
      const delay = backoffDelay(this.#attempt++, this.backoff);
      this.#reconnectTimer = setTimeout(() => {
        if (this.#live) this.#open();
      }, delay);
    }
  }

  #revoked(code, reason) {
    this.#live = false;
    this.#state = null;
    this.#clearQueue(new CartsyncError(403, "grant_revoked", reason || "access ended"));
    this.#ready?.reject(new CartsyncError(0, "grant_revoked", reason || "access ended"));
    this.#emit("cart", null);
    this.#emit("wishlists", null);
    this.#emit("revoked", { code, reason });
    this.#setConnection("closed", { code, reason });
  }

  #fail(error, code, reason) {
    this.#live = false;
    this.#ready?.reject(error);
    this.#setConnection("closed", { code, reason, error });
  }

  #stopTimers() {
    clearTimeout(this.#helloTimer);
    clearInterval(this.#heartbeatTimer);
    clearTimeout(this.#renewTimer);
    this.#helloTimer = null;
    this.#heartbeatTimer = null;
    this.#renewTimer = null;
  }

  /** Send the provider's next token before the socket's runs out at `expiresAt` (Unix s). */
  #renewBefore(ws, expiresAt) {
    clearTimeout(this.#renewTimer);
    this.#renewTimer = null;
    if (this.#provider === null || typeof expiresAt !== "number") return;
    const left = expiresAt * 1000 - Date.now();
    const delay = Math.max(0, left - Math.min(RENEW_BEFORE_MS, left / 4));
    this.#renewTimer = setTimeout(async () => {
      this.#renewTimer = null;
      let fresh = null;
      try {
        fresh = await this.#refreshToken(this.#socketToken);
      } catch {
        return; // the provider failed: at expiry (4401) the socket reconnects and asks again
      }
      if (fresh === null || ws !== this.#ws) return;
      this.#socketToken = fresh;
      this.#sendFrame(ws, { type: "auth", token: fresh });
    }, delay);
  }

  #setConnection(state, extra = {}) {
    const changed = state !== this.#connection;
    this.#connection = state;
    if (changed || extra.code != null) this.#emit("connection", { state, ...extra });
    if (state !== "open" && this.#presence !== null) {
      this.#presence = null; // a socket that is gone hears no more leaves
      this.#emit("presence", null);
    }
  }

  #emit(type, detail) {
    this.dispatchEvent(detailEvent(type, detail));
  }

  #sendFrame(ws, frame) {
    if (ws.readyState === 1) ws.send(JSON.stringify(frame));
  }

  #sync(ws, { fresh = false } = {}) {
    const frame = { type: "sync" };
    if (this.#state && !fresh) {
      frame.since = this.#state.rev;
      if (this.#state.epoch != null) frame.epoch = this.#state.epoch;
      // Lets the server tell our revision from another change a failover gave the same number.
      if (this.#state.at != null) frame.at = this.#state.at;
    }
    this.#syncSentAt = Date.now();
    this.#sendFrame(ws, frame);
  }

  #onMessage(ws, data) {
    this.#lastHeard = Date.now();
    let frame;
    try {
      frame = JSON.parse(typeof data === "string" ? data : String(data));
    } catch {
      return; // not ours to fix: the server only sends JSON
    }
    switch (frame.type) {
      case "hello":
        clearTimeout(this.#helloTimer);
        this.#refusedSocketToken = null; // this socket's token was accepted
        this.#renewBefore(ws, frame.expires_at);
        this.#sync(ws);
        if (this.#device) this.#sendFrame(ws, { type: "device", ...this.#device });
        this.#attempt = 0;
        this.#heartbeatTimer = setInterval(() => this.#heartbeat(ws), this.pingIntervalMs);
        this.#setConnection("open");
        if (this.#state) this.#ready?.resolve(this.#state);
        this.flush();
        break;
      case "snapshot":
        this.#onSnapshot(frame);
        break;
      case "event":
        this.#onEvent(ws, frame.event);
        break;
      case "ping":
        this.#sendFrame(ws, { type: "pong" });
        break;
      case "authenticated":
        this.#renewBefore(ws, frame.expires_at);
        break;
      case "presence":
        this.#presence = Array.isArray(frame.devices) ? frame.devices : [];
        this.#emit("presence", this.#presence);
        break;
      default:
        break; // pong, ack, nack, and frames of newer servers
    }
  }

  #heartbeat(ws) {
    if (Date.now() - this.#lastHeard > 3 * this.pingIntervalMs) {
      ws.close(4000, "server silent"); // a half-open connection: reconnect and resume
      return;
    }
    this.#sendFrame(ws, { type: "ping" });
  }

  #onSnapshot(frame) {
    const cart = { ...frame.cart, rev: frame.rev };
    this.#syncSentAt = null;
    this.#state = {
      rev: frame.rev,
      epoch: cart.epoch ?? null,
      at: cart.updated_at ?? null,
      cart,
      wishlists: withDefaultWishlist(frame.wishlists ?? []),
    };
    this.#emit("cart", this.#state.cart);
    this.#emit("wishlists", this.#state.wishlists);
    this.#emit("snapshot", this.#state);
    this.#ready?.resolve(this.#state);
  }

  #onEvent(ws, event) {
    const state = this.#state;
    if (!state || event.rev <= state.rev) return; // before the first snapshot, or seen already
    if (event.rev > state.rev + 1) {
      // A revision went missing: ask once, then wait for the log to fill the gap.
      const asked = this.#syncSentAt !== null && Date.now() - this.#syncSentAt < RESYNC_AFTER_MS;
      if (!asked) this.#sync(ws);
      return;
    }
    let next;
    try {
      next = applyEvent(state.cart, state.wishlists, event);
    } catch {
      // An unknown type (a newer service), a wishlist this copy lacks, data it cannot read:
      // this copy cannot follow, so it starts again from a snapshot instead of throwing.
      this.#sync(ws, { fresh: true });
      return;
    }
    this.#syncSentAt = null;
    const cartChanged = next.cart !== state.cart;
    const cart = { ...next.cart, rev: event.rev, epoch: event.epoch ?? state.epoch };
    if (cartChanged) cart.updated_at = event.at;
    this.#state = {
      rev: event.rev,
      epoch: event.epoch ?? state.epoch,
      at: event.at ?? null,
      cart,
      wishlists: next.wishlists,
    };
    this.#emit("event", event);
    if (cartChanged) this.#emit("cart", this.#state.cart);
    if (next.wishlists !== state.wishlists) this.#emit("wishlists", this.#state.wishlists);
  }
}

function deferred() {
  let resolve;
  let reject;
  let done = false;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {}); // connect()'s caller sees the rejection; nobody else is warned
  const settle = (fn) => (value) => {
    if (done) return;
    done = true;
    fn(value);
  };
  return { promise, resolve: settle(resolve), reject: settle(reject) };
}

/** A `CustomEvent`; Node 18 has `Event` but no global `CustomEvent`. */
function detailEvent(type, detail) {
  if (typeof CustomEvent === "function") return new CustomEvent(type, { detail });
  const event = new Event(type);
  Object.defineProperty(event, "detail", { value: detail, enumerable: true });
  return event;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export default CartsyncClient;
