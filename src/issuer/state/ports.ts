/**
 * The issuer's state ports: what must be shared by every replica behind one load balancer so that
 * an attestation is accepted once (not once per replica), a rate limit is one limit (not one per
 * replica), and an instance's first-use secret is bound once. The issuer chooses a backend from its
 * `state` setting (create-state-store.ts) and sees only these interfaces; one conformance suite
 * (test/support/state-conformance.ts) runs every backend.
 *
 * Rules every backend keeps:
 * - **Fail closed.** A backend that cannot answer says `unavailable`; it never throws for that and
 *   never answers `accepted`, `allowed` or `matches` without having recorded or checked it.
 * - **Time comes from the store.** TTLs and refills are measured by the store's own clock (Redis
 *   `TIME` inside the script), never by the calling process, whose monotonic clock replicas cannot
 *   share.
 * - **Tenants.** Every call names a tenant: the attested account (kind and account id), known
 *   only after the policy allowed it. Bounds are per tenant, so a tenant that reaches its bound is
 *   refused (`full`) and no other tenant is: one account never spends another's capacity.
 * - **No secrets stored.** Keys are stored as SHA-256 digests; first-use records hold a hash the
 *   caller made, never the secret.
 */

export type StateBackend = 'memory' | 'redis';

/** The longest a replay claim may be kept, in ms: attestors' windows are minutes; a day is ample. */
export const MAX_CLAIM_TTL_MS = 24 * 3600_000;

/**
 * `accepted`: this caller is the first to claim the key within its TTL, and the claim is recorded.
 * `replayed`: someone claimed it before and the claim has not expired.
 * `full`: the tenant holds as many live claims as its bound allows; nothing was recorded.
 * `unavailable`: the store could not answer in time; nothing can be said (fail closed: refuse).
 */
export type ClaimVerdict = 'accepted' | 'replayed' | 'full' | 'unavailable';

export interface ReplayStore {
  /**
   * Atomically: the first caller to claim `key` for `tenant` within `ttlMs` wins. `ttlMs` is a
   * whole number from 1 to MAX_CLAIM_TTL_MS (a caller's bug otherwise: it throws RangeError).
   */
  claim(tenant: string, key: string, ttlMs: number): Promise<ClaimVerdict>;
}

/** A token bucket: `burst` requests at once, refilled at `perMinute` requests per minute. */
export interface RateLimit {
  readonly burst: number;
  readonly perMinute: number;
}

export type TakeVerdict =
  | { readonly outcome: 'allowed' }
  /** The key's bucket is empty; a token is back after `retryAfterSeconds` (whole seconds, at least 1). */
  | { readonly outcome: 'limited'; readonly retryAfterSeconds: number }
  /** The tenant has as many buckets as its bound allows and none has refilled (memory backend). */
  | { readonly outcome: 'full'; readonly retryAfterSeconds: number }
  | { readonly outcome: 'unavailable'; readonly retryAfterSeconds: number };

export interface RateLimitStore {
  /** Atomically takes one token from `key`'s bucket, refilled by the store's own clock. */
  take(tenant: string, key: string, limit: RateLimit): Promise<TakeVerdict>;
}

/**
 * `bound`: no record existed and `secretHash` is now bound to the instance. `matches`: the record
 * holds this hash. `mismatch`: it holds another. `full`: the tenant has as many records as its
 * bound allows and nothing was recorded.
 */
export type BindVerdict = 'bound' | 'matches' | 'mismatch' | 'full' | 'unavailable';
export type VerifyVerdict = 'matches' | 'mismatch' | 'unknown' | 'unavailable';
export type ResetVerdict = 'reset' | 'absent' | 'unavailable';

/**
 * First use: the first attestation of an instance binds a secret's hash to its instance id; later
 * ones must present the same (issue #11, item 6). Records do not expire: `reset` removes one when
 * an operator says the instance was rebuilt.
 */
export interface FirstUseStore {
  /** Atomically binds `secretHash` to `instanceId` if nothing is bound, else compares. */
  bind(tenant: string, instanceId: string, secretHash: string): Promise<BindVerdict>;
  verify(tenant: string, instanceId: string, secretHash: string): Promise<VerifyVerdict>;
  reset(tenant: string, instanceId: string): Promise<ResetVerdict>;
}

export interface StateHealth {
  readonly backend: StateBackend;
  /** False while the store would answer `unavailable`. */
  readonly ready: boolean;
  /**
   * Why not, as a short code safe for logs and metric labels (`ECONNREFUSED`, `OOM`, `timeout`):
   * never an error message, a URL or a password.
   */
  readonly problem?: string;
}

/** A change of health, for the server's log line and metric (wired by the server, not here). */
export type StateHealthListener = (health: StateHealth) => void;

export interface StateStore {
  readonly replay: ReplayStore;
  readonly rateLimits: RateLimitStore;
  readonly firstUse: FirstUseStore;
  health(): StateHealth;
  /** Where the state lives, safe to log: `memory`, or the Redis URL without its user and password. */
  readonly description: string;
  /** Releases connections and timers; calls after close answer `unavailable`. */
  close(): Promise<void>;
}

/** Bounds shared by every backend (per tenant; see each backend for what it does at the bound). */
export interface TenantBounds {
  /** Live replay claims one tenant may hold. */
  readonly maxClaimsPerTenant: number;
  /** First-use records one tenant may hold. */
  readonly maxFirstUsePerTenant: number;
}

export const DEFAULT_TENANT_BOUNDS: TenantBounds = { maxClaimsPerTenant: 10_000, maxFirstUsePerTenant: 10_000 };

/** Throws RangeError for a TTL no caller should pass: a bug, not untrusted input. */
export function checkClaimTtl(ttlMs: number): void {
  if (!Number.isInteger(ttlMs) || ttlMs < 1 || ttlMs > MAX_CLAIM_TTL_MS) throw new RangeError(`claim TTL must be 1 to ${MAX_CLAIM_TTL_MS} ms`);
}

/** Throws RangeError for a limit no caller should pass (the config checks the ranges first). */
export function checkRateLimit(limit: RateLimit): void {
  if (!(Number.isInteger(limit.burst) && limit.burst >= 1 && limit.perMinute > 0 && Number.isFinite(limit.perMinute)))
    throw new RangeError('rate limit needs a whole burst of at least 1 and a positive perMinute');
}

/** Whole seconds until one token is back in a bucket holding `tokens`, at least 1. */
export function retryAfterSeconds(tokens: number, perMinute: number): number {
  return Math.max(1, Math.ceil(((1 - tokens) * 60) / perMinute));
}
