import { LRUCache } from 'lru-cache';

export interface TokenBucketOptions {
  /** Tokens added per second, per key. */
  readonly ratePerSecond: number;
  /** Most tokens a key can hold: how many requests a quiet key may make at once. */
  readonly burst: number;
  /**
   * Most keys remembered. The least recently used is forgotten beyond it, which only ever gives
   * that key a full bucket again: the bound costs some precision under a flood of addresses,
   * never memory.
   */
  readonly maxKeys: number;
}

export type TakeResult = { readonly allowed: true } | { readonly allowed: false; readonly retryAfterSeconds: number };

interface Bucket {
  tokens: number;
  /** Monotonic ms when `tokens` was last brought up to date. */
  atMs: number;
}

const ALLOWED: TakeResult = { allowed: true };

/**
 * One token bucket per key (a client address), refilled continuously at `ratePerSecond` up to
 * `burst`. Time is passed in (monotonic ms), so the buckets can be driven by a fake clock.
 */
export class TokenBuckets {
  readonly #options: TokenBucketOptions;
  readonly #buckets: LRUCache<string, Bucket>;

  constructor(options: TokenBucketOptions) {
    if (!(options.ratePerSecond > 0) || !(options.burst >= 1) || !(options.maxKeys >= 1)) {
      throw new RangeError('token buckets need a positive rate, a burst of at least 1 and room for at least one key');
    }
    this.#options = options;
    this.#buckets = new LRUCache({ max: options.maxKeys });
  }

  /** Takes one token from `key`'s bucket at `nowMs`, or says how long until one is there. */
  take(key: string, nowMs: number): TakeResult {
    const { ratePerSecond, burst } = this.#options;
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      bucket = { tokens: burst, atMs: nowMs };
      this.#buckets.set(key, bucket);
    } else {
      // A monotonic clock never goes back; max() keeps a caller's mistake from minting tokens.
      const elapsedMs = Math.max(0, nowMs - bucket.atMs);
      bucket.tokens = Math.min(burst, bucket.tokens + (elapsedMs * ratePerSecond) / 1000);
      bucket.atMs = Math.max(bucket.atMs, nowMs);
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return ALLOWED;
    }
    const missing = 1 - bucket.tokens;
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(missing / ratePerSecond)) };
  }

  /** Keys currently remembered. */
  get size(): number {
    return this.#buckets.size;
  }
}
