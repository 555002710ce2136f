/**
 * Token requests per attested identity: a token bucket per identity (kind, account, instance,
 * role), so one instance in a restart loop cannot keep the issuer (and the cloud's STS behind its
 * attestors) busy. A VM source renews its JWT well before it expires, a few times an hour.
 *
 * Bounded: at most `maxIdentities` buckets. A bucket that has refilled completely is the same as
 * no bucket and is dropped when room is needed; if every bucket is still refilling, a new identity
 * is refused (`full`) rather than the map growing.
 */
export interface RateLimitSettings {
  /** Requests an identity may make at once. */
  readonly burst: number;
  /** Sustained requests per minute per identity. */
  readonly perMinute: number;
  readonly maxIdentities: number;
}

export const DEFAULT_RATE_LIMIT: RateLimitSettings = { burst: 10, perMinute: 6, maxIdentities: 100_000 };

export type RateVerdict = { readonly allowed: true } | { readonly allowed: false; readonly retryAfterSeconds: number; readonly full: boolean };

interface Bucket {
  tokens: number;
  /** Monotonic ms when `tokens` was last brought up to date. */
  at: number;
}

/** How often, at most, a full map is scanned for refilled buckets, in ms. */
const FULL_SWEEP_INTERVAL_MS = 1_000;

export class IdentityRateLimiter {
  readonly #buckets = new Map<string, Bucket>();
  readonly #refillPerMs: number;
  #lastFullSweep = -Infinity;

  constructor(private readonly settings: RateLimitSettings = DEFAULT_RATE_LIMIT) {
    this.#refillPerMs = settings.perMinute / 60_000;
  }

  get size(): number {
    return this.#buckets.size;
  }

  /** Takes one request from `identity`'s bucket, at monotonic time `nowMono` (ms). */
  take(identity: string, nowMono: number): RateVerdict {
    let bucket = this.#buckets.get(identity);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.settings.maxIdentities) this.#makeRoom(nowMono);
      if (this.#buckets.size >= this.settings.maxIdentities) return { allowed: false, retryAfterSeconds: 1, full: true };
      bucket = { tokens: this.settings.burst, at: nowMono };
      this.#buckets.set(identity, bucket);
    } else {
      bucket.tokens = Math.min(this.settings.burst, bucket.tokens + (nowMono - bucket.at) * this.#refillPerMs);
      bucket.at = nowMono;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { allowed: true };
    }
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / this.#refillPerMs / 1000)), full: false };
  }

  #makeRoom(nowMono: number): void {
    if (nowMono - this.#lastFullSweep < FULL_SWEEP_INTERVAL_MS) return;
    this.#lastFullSweep = nowMono;
    for (const [identity, bucket] of this.#buckets) {
      if (bucket.tokens + (nowMono - bucket.at) * this.#refillPerMs >= this.settings.burst) this.#buckets.delete(identity);
    }
  }
}

/**
 * The bucket key of an attested identity: the facts that name one workload. For the role kinds that
 * is the role session (the RAM role's session-derived instance id, the CAM role's session name),
 * not the role alone: a fleet of VMs shares one instance role, and one bucket for all of them would
 * let ten of a thousand booting VMs through and hold the rest for hours. A principal allowed to
 * assume the role can name many sessions, and so hold many buckets; the per-address bucket
 * (clientRateLimit) is what bounds that, and such a principal holds the role's credentials anyway.
 */
export function rateLimitKey(identity: {
  kind: string;
  accountId: string;
  instanceId?: string;
  roleName?: string;
  roleId?: string;
  attributes?: Readonly<Record<string, string>>;
}): string {
  const workload = identity.instanceId ?? identity.attributes?.['session-name'] ?? '';
  return [identity.kind, identity.accountId, workload, identity.roleName ?? identity.roleId ?? ''].join('\u0000');
}
