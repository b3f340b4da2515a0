// Types of @cartsync/client (src/cartsync.js). The wire shapes follow docs/api.md.

/** This client's version; its major is the protocol's (1.x speaks `cartsync.v1`). */
export declare const VERSION: string;
/** The protocol this client speaks: the websocket subprotocol and the `/v1` routes. */
export declare const PROTOCOL: "cartsync.v1";
export declare const SUBPROTOCOL: "cartsync.v1";
/** Every event type the client applies; another type makes it ask for a snapshot. */
export declare const EVENT_TYPES: readonly EventType[];
export declare const REVOKED_CLOSE_CODE: 4403;
/** The socket's token ran out: with a token provider the client reconnects with its next token. */
export declare const TOKEN_EXPIRED_CLOSE_CODE: 4401;
export declare const FATAL_CLOSE_CODES: readonly number[];

// Wire types ----------------------------------------------------------------------------------

export type Attrs = Record<string, string>;

export interface Actor {
  role: "customer" | "guest" | "service" | "staff";
  id: string;
  device?: string;
  store?: string;
}

export interface Line {
  id: string;
  sku: string;
  qty: number;
  attrs: Attrs;
  title?: string;
  unit_price?: string;
  /** The unit price's currency (absent on lines stored before lines recorded one). */
  currency?: string;
  image?: string;
  /** Whether the line has a unit price (false: the shop's catalogue could not be asked). */
  priced?: boolean;
  /** Who set title and price; "client" prices must be re-priced by the shop at checkout. */
  priced_by?: "catalog" | "staff" | "service" | "client";
  added_at: string;
  updated_at: string;
  updated_by: Actor;
}

/** Click-and-collect: the store and pick-up time chosen (null: none) and whether it is ready. */
export interface Collection {
  store_id: string | null;
  store_name: string | null;
  /** ISO 8601 in the store's local time, with its offset. */
  pickup_at: string | null;
  ready: boolean;
}

export interface PickupStore {
  id: string;
  name: string;
  address: string;
  /** IANA timezone: hours and slots are in this local time. */
  timezone: string;
  hours: Record<string, { open: string; close: string }>;
  slot_minutes: number;
  lead_minutes: number;
  days_ahead: number;
  next_slots: string[];
}

export interface Cart {
  owner: string;
  rev: number;
  cart_id: string | null;
  currency: string;
  lines: Line[];
  note: string;
  updated_at: string | null;
  epoch?: string | null;
  /** The same as `collection.ready`, kept for older code. */
  ready_for_collection?: boolean;
  collection?: Collection;
  /**
   * Sum of unit_price x qty when every line has a price in `currency`, else null; as the
   * service read the cart: the live copy applies events to lines and does not recompute it.
   */
  subtotal?: string | null;
  item_count?: number | null;
}

export interface WishItem {
  id: string;
  sku: string;
  attrs: Attrs;
  title?: string;
  note?: string;
  added_at: string;
  added_by: Actor;
}

export interface Wishlist {
  id: string;
  name: string;
  items: WishItem[];
  created_at?: string;
  updated_at?: string;
}

export type EventType =
  | "line.added"
  | "line.updated"
  | "line.removed"
  | "line.saved_for_later"
  | "cart.cleared"
  | "cart.note_set"
  | "cart.checked_out"
  | "cart.merged"
  | "cart.restored"
  | "cart.collection_set"
  | "owner.erased"
  | "wishlist.created"
  | "wishlist.renamed"
  | "wishlist.deleted"
  | "wishlist.item_added"
  | "wishlist.item_removed"
  | "wishlist.item_moved_to_cart"
  | "grant.started"
  | "grant.revoked";

export interface CartEvent {
  rev: number;
  type: EventType | (string & {});
  data: Record<string, any>;
  actor: Actor;
  at: string;
  epoch?: string | null;
}

export interface History {
  rev: number;
  epoch: string | null;
  since: number;
  complete: boolean;
  events: CartEvent[];
}

export interface Grant {
  id: string;
  owner: string;
  staff: string;
  store: string;
  created_at?: string;
  expires_at: string;
}

export interface Handoff {
  code: string;
  expires_at: string;
  qr_svg: string;
}

export interface GuestToken {
  token: string;
  guest_id: string;
  expires_at: string;
}

export interface NewLine {
  sku: string;
  qty?: number;
  attrs?: Attrs;
  title?: string;
  unit_price?: string;
}

export interface LinePatch {
  /** Added to the stored quantity, instead of `qty`. */
  qty_delta?: number;
  qty?: number;
  attrs?: Attrs;
}

export interface NewWishItem {
  sku: string;
  attrs?: Attrs;
  title?: string;
  note?: string;
}

export type MergeStrategy = "sum" | "max" | "replace" | "keep";

export interface MergeResult {
  rev: number;
  cart: Cart;
  wishlists: Wishlist[];
  already_merged: boolean;
  dropped_lines: number;
  capped_lines: number;
  dropped_items: number;
}

export interface Checkout {
  rev: number;
  cart_id: string;
  checkout: { cart_id: string; owner: string; currency: string; note: string; lines: Line[]; [k: string]: unknown };
}

// Errors ----------------------------------------------------------------------------------------

export declare class CartsyncError extends Error {
  constructor(
    status: number,
    code: string,
    message: string,
    extra?: { field?: string; retryAfter?: number; idempotencyKey?: string; rev?: number },
  );
  /** HTTP status; 0 when there was no answer. */
  readonly status: number;
  /** The service's stable error code (`line_not_found`, `revision_mismatch`, ...). */
  readonly code: string;
  readonly field: string | null;
  /** Milliseconds from `Retry-After` (429, 503). */
  readonly retryAfter: number | null;
  readonly idempotencyKey: string | null;
  /** The owner's revision from `ETag` (on 412: the current one). */
  readonly rev: number | null;
}

/** No answer at all: network down, service not listening, timeout. */
export declare class NetworkError extends CartsyncError {
  constructor(message: string, cause?: unknown);
}

// Helpers ---------------------------------------------------------------------------------------

export declare function backoffDelay(
  attempt: number,
  backoff?: { base?: number; cap?: number },
  retryAfterMs?: number | null,
): number;
export declare function parseRetryAfter(value: string | null | undefined, now?: number): number | null;
export declare function websocketUrl(baseUrl: string): string;
export declare function newIdempotencyKey(): string;
/** The 8 digits in what a person typed ("8417 2257", "8417-2257") or a hand-off QR held (a link). */
export declare function handoffCode(text: string | null | undefined): string | null;
export type DeviceKind = "phone" | "tablet" | "desktop" | "other";
export declare const DEVICE_KINDS: readonly DeviceKind[];

// The client ------------------------------------------------------------------------------------

/** The part of the Web Storage API the offline queue uses (`localStorage` fits). */
export interface QueueStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export type TokenProvider = () => string | Promise<string>;

export interface ClientOptions {
  /** `http(s)://host[:port]`; in a browser, defaults to the page's origin. */
  baseUrl?: string;
  /**
   * A customer, guest or staff JWT, or a provider returning one (sync or async): asked on first
   * use and again after a 401 or a live socket closed 1008 for its token.
   */
  token?: string | TokenProvider | null;
  /** Sent as `X-Device-Id` on every request. */
  deviceId?: string | null;
  /** Act on a customer's data through this staff grant (`/v1/grants/{grantId}/...`). */
  grantId?: string | null;
  /** A WebSocket implementation; defaults to the global one (none in Node 20: pass `ws`). */
  WebSocket?: unknown;
  /** Defaults to the global `fetch`. */
  fetch?: typeof fetch;
  /** Where the offline queue is kept across reloads; defaults to `localStorage`; null: memory only. */
  storage?: QueueStorage | null;
  /** The storage key of the queue; defaults to one per service, caller and grant. */
  storageKey?: string;
  /** Retries after the first attempt (network errors, 429, 503). Default 4. */
  retries?: number;
  /** Backoff in ms: full jitter under min(cap, base * 2^attempt). Default {base: 250, cap: 10000}. */
  backoff?: { base?: number; cap?: number };
  requestTimeoutMs?: number;
  /** How often the live socket pings the service; 3 silent intervals mean a dead connection. */
  pingIntervalMs?: number;
  /** Keep changes that got no answer and send them when the service is back. Default true. */
  offlineQueue?: boolean;
}

export interface MutationOptions {
  /** Apply only if the owner is still at this revision (412 `revision_mismatch` otherwise). */
  ifMatch?: number;
  /** Defaults to a new UUID; the same key is sent on every retry and replay. */
  idempotencyKey?: string;
  /** `false`: never queue this change; fail with `NetworkError` instead. */
  queue?: boolean;
}

/** What a change resolves to when it went into the offline queue instead. */
export interface Queued<T> {
  queued: true;
  idempotencyKey: string;
  /** Resolves with the service's answer once sent; rejects if the service refuses it. */
  settled: Promise<T>;
}

export type Mutation<T> = Promise<T | Queued<T>>;

export interface RawResponse<T = any> {
  status: number;
  body: T;
  /** The owner's revision from `ETag`, when sent. */
  rev: number | null;
  /** `Idempotent-Replayed: true`: an earlier request with this key already made the change. */
  replayed: boolean;
}

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, string | number | undefined | null>;
  headers?: Record<string, string>;
  idempotencyKey?: string;
  ifMatch?: number | null;
  auth?: boolean;
  retries?: number;
  networkRetries?: number;
}

export type ConnectionState = "connecting" | "open" | "offline" | "closed";

export interface LiveState {
  rev: number;
  epoch: string | null;
  /** When the change at `rev` was made; sent on resume so a failover's lost tail is noticed. */
  at: string | null;
  cart: Cart;
  wishlists: Wishlist[];
}

export interface QueuedOp {
  key: string;
  method: string;
  path: string;
  body?: unknown;
  ifMatch: number | null;
}

/** One live socket of the owner, as a `presence` frame lists it. */
export interface PresentDevice {
  id: string;
  label: string | null;
  kind: DeviceKind;
  role: "customer" | "guest" | "staff" | "service";
  store: string | null;
  /** This socket. */
  you: boolean;
}

export interface ClientEventMap {
  /** The owner's live devices; null when this client's socket closed (it cannot know). */
  presence: CustomEvent<PresentDevice[] | null>;
  cart: CustomEvent<Cart | null>;
  wishlists: CustomEvent<Wishlist[] | null>;
  event: CustomEvent<CartEvent>;
  snapshot: CustomEvent<LiveState>;
  connection: CustomEvent<{ state: ConnectionState; code?: number; reason?: string; error?: CartsyncError }>;
  revoked: CustomEvent<{ code: number; reason: string }>;
  queue: CustomEvent<{ pending: number; key?: string; sent?: unknown; replayed?: boolean; error?: CartsyncError }>;
}

export declare class CartsyncClient extends EventTarget {
  constructor(options?: ClientOptions);

  static createGuest(options?: Pick<ClientOptions, "baseUrl" | "fetch" | "retries" | "backoff">): Promise<GuestToken>;

  baseUrl: string;
  /** The token in use (null before a provider was first asked). */
  readonly token: string | null;
  deviceId: string | null;
  readonly grantId: string | null;
  retries: number;
  backoff: { base: number; cap: number };
  requestTimeoutMs: number;
  pingIntervalMs: number;
  offlineQueue: boolean;

  /** `/v1`, or `/v1/grants/{grantId}`. */
  readonly prefix: string;
  forGrant(grantId: string, options?: ClientOptions): CartsyncClient;

  getCart(options?: { ifNoneMatch?: number }): Promise<Cart | null>;
  addLine(line: NewLine, options?: MutationOptions): Mutation<{ rev: number; line: Line }>;
  patchLine(lineId: string, patch: LinePatch, options?: MutationOptions): Mutation<{ rev: number; line?: Line; removed?: string }>;
  /** Add `delta` to the stored quantity (every tap counts; 0 or less removes the line). */
  changeQty(lineId: string, delta: number, options?: MutationOptions): Mutation<{ rev: number; line?: Line; removed?: string }>;
  removeLine(lineId: string, options?: MutationOptions): Mutation<{ rev: number; removed: string }>;
  clearCart(options?: MutationOptions): Mutation<{ rev: number }>;
  setNote(note: string, options?: MutationOptions): Mutation<{ rev: number; note: string }>;
  saveForLater(lineId: string, options?: MutationOptions): Mutation<{ rev: number; [k: string]: unknown }>;
  checkout(options?: MutationOptions): Mutation<Checkout>;
  setReadyForCollection(ready?: boolean, options?: MutationOptions): Mutation<{ rev: number; ready: boolean; collection: Collection }>;
  /** Choose (storeId null: clear) the store and pick-up time, and/or mark it ready. */
  setCollection(
    choice: { storeId?: string | null; pickupAt?: string; ready?: boolean },
    options?: MutationOptions,
  ): Mutation<{ rev: number; ready: boolean; collection: Collection }>;
  listStores(): Promise<PickupStore[]>;
  merge(guestToken: string, strategy?: MergeStrategy): Promise<MergeResult>;
  history(options?: { since?: number; limit?: number; epoch?: string }): Promise<History>;

  listWishlists(): Promise<{ rev: number; wishlists: Wishlist[] }>;
  getWishlist(wishlistId: string): Promise<{ rev: number; wishlist: Wishlist }>;
  createWishlist(name: string, options?: MutationOptions): Mutation<{ rev: number; wishlist: Wishlist }>;
  renameWishlist(wishlistId: string, name: string, options?: MutationOptions): Mutation<{ rev: number; wishlist: Wishlist }>;
  deleteWishlist(wishlistId: string, options?: MutationOptions): Mutation<{ rev: number; removed: string }>;
  addItem(wishlistId: string, item: NewWishItem, options?: MutationOptions): Mutation<{ rev: number; item: WishItem; created: boolean }>;
  removeItem(wishlistId: string, itemId: string, options?: MutationOptions): Mutation<{ rev: number; removed: string }>;
  moveToCart(wishlistId: string, itemId: string, qty?: number, options?: MutationOptions): Mutation<{ rev: number; line: Line }>;

  exportData(): Promise<{ owner: string; exported_at: string; cart: Cart; wishlists: Wishlist[]; events: CartEvent[] }>;
  erase(): Promise<{ erased: true }>;

  createHandoff(): Promise<Handoff>;
  claimHandoff(code: string): Promise<{ grant: Grant }>;
  listGrants(): Promise<{ grants: Grant[] }>;
  revokeGrant(grantId: string): Promise<{ rev: number; removed: string }>;
  /** Staff: end your own grant now ("Done with this customer"). */
  endGrant(grantId: string): Promise<{ rev: number; removed: string }>;

  request<T = any>(method: string, path: string, options?: RequestOptions): Promise<RawResponse<T>>;

  /** Changes waiting in the offline queue. */
  readonly pending: number;
  readonly queued: QueuedOp[];
  flush(): Promise<void>;

  readonly state: LiveState | null;
  readonly cart: Cart | null;
  readonly wishlists: Wishlist[] | null;
  readonly rev: number | null;
  readonly connection: ConnectionState;
  /** The owner's live devices from the last `presence` frame; null without an open socket. */
  readonly presence: PresentDevice[] | null;
  /** Name this device for the owner's other devices; sent now when live and on every reconnect. */
  device(label: string, kind?: DeviceKind): void;
  /** Open the live socket; resolves once the local copy is current. */
  connect(): Promise<LiveState>;
  close(): void;

  addEventListener<K extends keyof ClientEventMap>(
    type: K,
    listener: (event: ClientEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof ClientEventMap>(
    type: K,
    listener: (event: ClientEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

export default CartsyncClient;
