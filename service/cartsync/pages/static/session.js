// The staff member's sign-in on the tablet: the access token the service checks, renewed with
// the provider's refresh token before it runs out, so a cart being worked on outlives it. The
// refresh token stays in this module's memory only (docs/store-guide.md says why).
import { RefreshRefused, refreshTokens } from "/static/signin.js";
import { claimsOf } from "/static/tokens.js";

/** A provider that does not answer is asked again after 1, 2 and 4 s, then the sign-in ends. */
const RETRY_DELAYS_MS = [1_000, 2_000, 4_000];

/** setTimeout's longest wait; a token that lives longer is renewed when the service refuses it. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Renew this long before the access token runs out: a third of its life, at most a minute. */
const renewAhead = (lifetimeMs) => Math.min(60_000, lifetimeMs / 3);

export class StaffSession {
  #tokens;
  #timer = null;
  #refreshing = null;
  #ended = false;
  #onExpired;
  #onRenewed;

  /**
   * `tokens`: `{token, refreshToken?, expiresIn?, tokenEndpoint?, clientId?}` (a typed
   * development token has only `token`). `onExpired()` is called once when the sign-in can no
   * longer be renewed: refused, the provider unreachable, or no refresh token and time is up;
   * `onRenewed(token)` after each renewal.
   */
  constructor(tokens, onExpired, onRenewed = () => {}) {
    this.#onExpired = onExpired;
    this.#onRenewed = onRenewed;
    this.#take(tokens);
  }

  /** The access token in use now. */
  get token() {
    return this.#tokens.token;
  }

  /**
   * A token provider for one JS client. Its first call gets the current token; a later call
   * means the client needs a newer one than it has (its socket's token runs out, or the service
   * answered 401), so it gets the one renewed since, or the session renews it now.
   */
  tokenProvider() {
    let handed = null;
    return async () => {
      if (handed !== null && handed === this.#tokens.token) await this.#renew();
      if (this.#ended) throw new Error("signed out");
      handed = this.#tokens.token;
      return handed;
    };
  }

  /** Forget the tokens and stop renewing (sign-out, the idle limit). Calls no `onExpired`. */
  end() {
    this.#ended = true;
    clearTimeout(this.#timer);
    this.#tokens = { token: this.#tokens.token };
  }

  #take(tokens) {
    const now = Date.now();
    const exp = claimsOf(tokens.token)?.exp;
    this.#tokens = tokens;
    const expiresAt = tokens.expiresIn != null ? now + tokens.expiresIn * 1000 : Number.isFinite(exp) ? exp * 1000 : null;
    clearTimeout(this.#timer);
    this.#timer = null;
    if (expiresAt === null) return;
    const left = expiresAt - now;
    const [delay, then] = tokens.refreshToken ? [left - renewAhead(left), () => this.#renew()] : [left, () => this.#expire()];
    if (delay <= MAX_TIMER_MS) this.#timer = setTimeout(then, Math.max(0, delay));
  }

  /** One renewal at a time, however many clients ask at once. */
  #renew() {
    if (this.#ended) return Promise.resolve();
    this.#refreshing ??= this.#refresh().finally(() => (this.#refreshing = null));
    return this.#refreshing;
  }

  async #refresh() {
    if (!this.#tokens.refreshToken) {
      this.#expire();
      return;
    }
    for (let attempt = 0; ; attempt++) {
      try {
        const fresh = await refreshTokens(this.#tokens);
        if (this.#ended) return;
        this.#take(fresh);
        this.#onRenewed(fresh.token);
        return;
      } catch (error) {
        if (this.#ended) return;
        if (error instanceof RefreshRefused || attempt >= RETRY_DELAYS_MS.length) {
          this.#expire();
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, RETRY_DELAYS_MS[attempt]));
      }
    }
  }

  #expire() {
    if (this.#ended) return;
    this.end();
    this.#onExpired();
  }
}
