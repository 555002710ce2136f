import type { Clock } from '../core/clock.js';
import type { WebIdentityToken } from './token-source.js';

/** After a failed renewal, a held JWT valid for at least this long (ms) is still handed out… */
export const MIN_REMAINING_ON_FAILURE_MS = 60_000;
/** …and for this long (ms, monotonic) no new attempt is made, so a failing backend is not hammered. */
export const RENEWAL_RETRY_HOLDOFF_MS = 10_000;

/** A fetched JWT and when (epoch ms) to fetch the next one. */
export interface RenewableToken {
  readonly token: WebIdentityToken;
  readonly renewAtWall: number;
}

/**
 * The JWT a fetching source holds (Kubernetes TokenRequest, the VM sources' issuer exchange):
 * handed out until its renewal time, then renewed once for every concurrent caller (single
 * flight); when a renewal fails, the held JWT is still handed out while it has a minute left, and
 * no new attempt is made for ten seconds.
 */
export class RenewingToken {
  #held: RenewableToken | undefined;
  #inFlight: Promise<WebIdentityToken> | undefined;
  #retryNotBeforeMono: number | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly fetch: () => Promise<RenewableToken>,
    /** True once the source is closed: a failed renewal then hands out nothing. */
    private readonly isClosed: () => boolean = () => false,
  ) {}

  get(): Promise<WebIdentityToken> {
    const held = this.#held;
    if (held) {
      const now = this.clock.wallNow();
      if (now < held.renewAtWall) return Promise.resolve(held.token);
      const holdingOff = this.#retryNotBeforeMono !== undefined && this.clock.monotonicNow() < this.#retryNotBeforeMono;
      if (holdingOff && stillUsable(held, now)) return Promise.resolve(held.token);
    }
    // Assigned before any await, so every caller arriving meanwhile shares this one renewal.
    this.#inFlight ??= this.#renew().finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  /** Forgets the held JWT: the next get() fetches a new one. */
  invalidate(): void {
    this.#held = undefined;
    this.#retryNotBeforeMono = undefined;
  }

  async #renew(): Promise<WebIdentityToken> {
    try {
      const fresh = await this.fetch();
      this.#held = fresh;
      this.#retryNotBeforeMono = undefined;
      return fresh.token;
    } catch (err) {
      const held = this.#held;
      if (held && !this.isClosed() && stillUsable(held, this.clock.wallNow())) {
        this.#retryNotBeforeMono = this.clock.monotonicNow() + RENEWAL_RETRY_HOLDOFF_MS;
        return held.token;
      }
      throw err;
    }
  }
}

function stillUsable(held: RenewableToken, nowWall: number): boolean {
  return held.token.expiresAtWall - nowWall >= MIN_REMAINING_ON_FAILURE_MS;
}
