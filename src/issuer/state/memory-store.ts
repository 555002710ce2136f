import { timingSafeEqual } from 'node:crypto';
import { type Clock, systemClock } from '../../core/clock.js';
import { digestKey } from './digest.js';
import {
  type BindVerdict,
  type ClaimVerdict,
  checkClaimTtl,
  checkRateLimit,
  DEFAULT_TENANT_BOUNDS,
  type FirstUseStore,
  type RateLimit,
  type RateLimitStore,
  type ReplayStore,
  type ResetVerdict,
  retryAfterSeconds,
  type StateHealth,
  type StateStore,
  type TakeVerdict,
  type TenantBounds,
  type VerifyVerdict,
} from './ports.js';

/**
 * The default state: this process's memory, for a single replica: claims kept until their TTL,
 * token buckets dropped once refilled, every table bounded.
 *
 * Bounds, and what happens at them. Each table holds at most `maxTenants` tenants, each tenant at
 * most its own number of entries, and the replay and rate-limit tables at most `maxClaims` and
 * `maxBuckets` entries in all (the issuer sets a tenant's bound to half of those, so no one tenant
 * can fill a table; first-use records are bounded per tenant only). At a bound:
 * 1. expired entries go first: claims past their TTL, buckets that have refilled completely (the
 *    same as no bucket). The oldest end of a tenant is swept on every insertion (amortised O(1));
 *    a whole tenant is scanned only when it is at its bound and one of its entries is known to
 *    have expired, so a refusal always means every entry is live, as with Redis. The list of
 *    tenants is scanned for empty ones at most once a second (a new tenant may wait that long).
 * 2. If the tenant is still at its bound, only that tenant's new entries are refused (`full`): a
 *    live claim is never evicted (that would let its attestation be replayed) and another tenant's
 *    entries are never touched. At the bound over all tenants, every tenant's spent entries are
 *    dropped (at most once a second), and if none was, the new entry is refused (`full`).
 * 3. A new tenant when every tenant slot holds live entries is refused. Tenants are accounts the
 *    policy already allowed, so this needs more allow-listed accounts active at once than
 *    `maxTenants`: raise it rather than lower a tenant's share.
 *
 * Time is this process's monotonic clock: it is the store's clock here, since nothing shares it.
 */

export interface MemoryStateLimits extends TenantBounds {
  /** Tenants each table keeps at once. */
  readonly maxTenants: number;
  /** Token buckets one tenant may hold (one per attested identity). */
  readonly maxBucketsPerTenant: number;
  /** Live replay claims in all tenants together (the issuer's replayCacheEntries). */
  readonly maxClaims: number;
  /** Token buckets in all tenants together (the issuer's rateLimit.maxIdentities). */
  readonly maxBuckets: number;
}

export const DEFAULT_MEMORY_LIMITS: MemoryStateLimits = {
  ...DEFAULT_TENANT_BOUNDS,
  maxTenants: 1_000,
  maxBucketsPerTenant: 10_000,
  maxClaims: 100_000,
  maxBuckets: 100_000,
};

/** The list of tenants is scanned for empty ones at most this often, in ms, so a full list costs O(1) per request. */
const FULL_SWEEP_INTERVAL_MS = 1_000;

interface Tenant<V> {
  /** Key → entry, in insertion order: roughly expiry order, so the front sweep stops early. */
  readonly entries: Map<string, V>;
  /** No entry is spent before this (monotonic ms): a lower bound, made exact by each full sweep. */
  earliestSpentAt: number;
}

/**
 * A bounded two-level map: tenants, then their entries, with expired entries dropped first. Bounded
 * per tenant (`maxPerTenant`), in tenants (`maxTenants`) and in entries over all tenants
 * (`maxEntries`); a tenant's bound below `maxEntries` is what keeps one tenant from taking it all.
 */
export class TenantTable<V> {
  readonly #tenants = new Map<string, Tenant<V>>();
  #lastTenantSweep = -Infinity;
  #lastTotalSweep = -Infinity;
  #count = 0;

  constructor(
    private readonly maxTenants: number,
    private readonly maxPerTenant: number,
    /** When (monotonic ms) an entry becomes as good as absent: a claim's TTL, a bucket's full refill; Infinity for never. */
    private readonly spentAt: (entry: V) => number,
    private readonly maxEntries = Infinity,
  ) {
    if (!(maxTenants >= 1 && maxPerTenant >= 1 && maxEntries >= 1)) throw new RangeError('table bounds must be at least 1');
  }

  /** Entries held in all tenants (spent ones not yet swept included). */
  get size(): number {
    return this.#count;
  }

  get tenantCount(): number {
    return this.#tenants.size;
  }

  /** The live entry, or undefined (a spent one is dropped on the way). */
  get(tenant: string, key: string, now: number): V | undefined {
    const t = this.#tenants.get(tenant);
    const entry = t?.entries.get(key);
    if (t === undefined || entry === undefined) return undefined;
    if (this.spentAt(entry) > now) return entry;
    this.#remove(tenant, t, key);
    return undefined;
  }

  /** Stores `entry` at the end of the tenant's order, if there is room; false at a bound (nothing stored). */
  put(tenant: string, key: string, entry: V, now: number): boolean {
    const t = this.#tenantWithRoom(tenant, key, now);
    if (t === undefined) return false;
    if (t.entries.delete(key)) this.#count -= 1;
    if (this.#count >= this.maxEntries) {
      this.#dropSpent(now, tenant);
      if (this.#count >= this.maxEntries) {
        if (t.entries.size === 0) this.#tenants.delete(tenant);
        return false;
      }
    }
    t.entries.set(key, entry);
    this.#count += 1;
    t.earliestSpentAt = Math.min(t.earliestSpentAt, this.spentAt(entry));
    return true;
  }

  delete(tenant: string, key: string): boolean {
    const t = this.#tenants.get(tenant);
    if (t === undefined || !t.entries.has(key)) return false;
    this.#remove(tenant, t, key);
    return true;
  }

  #remove(tenant: string, t: Tenant<V>, key: string): void {
    if (t.entries.delete(key)) this.#count -= 1;
    if (t.entries.size === 0) this.#tenants.delete(tenant);
  }

  #tenantWithRoom(tenant: string, key: string, now: number): Tenant<V> | undefined {
    let t = this.#tenants.get(tenant);
    if (t === undefined) {
      if (this.#tenants.size >= this.maxTenants) this.#dropIdleTenants(now);
      if (this.#tenants.size >= this.maxTenants) return undefined;
      t = { entries: new Map(), earliestSpentAt: Infinity };
      this.#tenants.set(tenant, t);
      return t;
    }
    // Replacing an entry the tenant already holds needs no room of the tenant's.
    if (t.entries.has(key)) return t;
    this.#sweepFront(t, now);
    // A full scan only when some entry is known to be spent, so every scan frees at least one
    // slot (or corrects the bound): a tenant at its bound costs nothing while all its entries live.
    if (t.entries.size >= this.maxPerTenant && t.earliestSpentAt <= now) this.#sweepAll(t, now);
    return t.entries.size < this.maxPerTenant ? t : undefined;
  }

  #sweepAll(t: Tenant<V>, now: number): void {
    let earliest = Infinity;
    for (const [k, v] of t.entries) {
      const at = this.spentAt(v);
      if (at <= now) {
        t.entries.delete(k);
        this.#count -= 1;
      } else earliest = Math.min(earliest, at);
    }
    t.earliestSpentAt = earliest;
  }

  /** Drops spent entries from the oldest end: amortised O(1) per insertion. */
  #sweepFront(t: Tenant<V>, now: number): void {
    for (const [k, v] of t.entries) {
      if (this.spentAt(v) > now) return;
      t.entries.delete(k);
      this.#count -= 1;
    }
  }

  /**
   * At the bound over all tenants: drops every spent entry of every tenant, at most once a second
   * (so a table full of live entries costs O(1) per refused put). Tenants left empty go too, except
   * `writing`, the one a put is about to store into: dropping it would store the entry in a tenant
   * no longer in the table, and a replay claim stored there would be forgotten at once.
   */
  #dropSpent(now: number, writing: string): void {
    if (now - this.#lastTotalSweep < FULL_SWEEP_INTERVAL_MS) return;
    this.#lastTotalSweep = now;
    for (const [name, t] of this.#tenants) {
      if (t.earliestSpentAt <= now) this.#sweepAll(t, now);
      if (t.entries.size === 0 && name !== writing) this.#tenants.delete(name);
    }
  }

  /** Frees the slots of tenants left with no live entry; at most once a second. */
  #dropIdleTenants(now: number): void {
    if (now - this.#lastTenantSweep < FULL_SWEEP_INTERVAL_MS) return;
    this.#lastTenantSweep = now;
    for (const [name, t] of this.#tenants) {
      this.#sweepFront(t, now);
      if (t.entries.size === 0) this.#tenants.delete(name);
    }
  }
}

interface Bucket {
  tokens: number;
  /** Monotonic ms when `tokens` was last brought up to date. */
  at: number;
  readonly burst: number;
  /** Tokens per ms. */
  readonly refillPerMs: number;
}

const refilled = (b: Bucket, now: number): number => Math.min(b.burst, b.tokens + (now - b.at) * b.refillPerMs);

class MemoryReplayStore implements ReplayStore {
  /** Digest of the key → until (monotonic ms). */
  readonly table: TenantTable<number>;

  constructor(
    limits: MemoryStateLimits,
    private readonly clock: Clock,
    private readonly isClosed: () => boolean,
  ) {
    this.table = new TenantTable<number>(limits.maxTenants, limits.maxClaimsPerTenant, (until) => until, limits.maxClaims);
  }

  async claim(tenant: string, key: string, ttlMs: number): Promise<ClaimVerdict> {
    checkClaimTtl(ttlMs);
    if (this.isClosed()) return 'unavailable';
    const now = this.clock.monotonicNow();
    const digest = digestKey(key);
    if (this.table.get(tenant, digest, now) !== undefined) return 'replayed';
    return this.table.put(tenant, digest, now + ttlMs, now) ? 'accepted' : 'full';
  }
}

class MemoryRateLimitStore implements RateLimitStore {
  readonly table: TenantTable<Bucket>;

  constructor(
    limits: MemoryStateLimits,
    private readonly clock: Clock,
    private readonly isClosed: () => boolean,
  ) {
    this.table = new TenantTable<Bucket>(limits.maxTenants, limits.maxBucketsPerTenant, (b) => b.at + (b.burst - b.tokens) / b.refillPerMs, limits.maxBuckets);
  }

  async take(tenant: string, key: string, limit: RateLimit): Promise<TakeVerdict> {
    checkRateLimit(limit);
    if (this.isClosed()) return { outcome: 'unavailable', retryAfterSeconds: 1 };
    const now = this.clock.monotonicNow();
    const digest = digestKey(key);
    const old = this.table.get(tenant, digest, now);
    const bucket: Bucket = { tokens: old ? refilled(old, now) : limit.burst, at: now, burst: limit.burst, refillPerMs: limit.perMinute / 60_000 };
    const allowed = bucket.tokens >= 1;
    if (allowed) bucket.tokens -= 1;
    // Re-inserted on every take, so the table's order is the order buckets were last touched.
    if (!this.table.put(tenant, digest, bucket, now)) return { outcome: 'full', retryAfterSeconds: 1 };
    return allowed ? { outcome: 'allowed' } : { outcome: 'limited', retryAfterSeconds: retryAfterSeconds(bucket.tokens, limit.perMinute) };
  }
}

class MemoryFirstUseStore implements FirstUseStore {
  /** Digest of the instance id → the caller's hash. Records never expire. */
  readonly table: TenantTable<Buffer>;

  constructor(
    limits: MemoryStateLimits,
    private readonly clock: Clock,
    private readonly isClosed: () => boolean,
  ) {
    this.table = new TenantTable<Buffer>(limits.maxTenants, limits.maxFirstUsePerTenant, () => Infinity);
  }

  async bind(tenant: string, instanceId: string, secretHash: string): Promise<BindVerdict> {
    if (this.isClosed()) return 'unavailable';
    const digest = digestKey(instanceId);
    const given = Buffer.from(secretHash);
    const held = this.table.get(tenant, digest, this.clock.monotonicNow());
    if (held !== undefined) return sameBytes(held, given) ? 'matches' : 'mismatch';
    return this.table.put(tenant, digest, given, this.clock.monotonicNow()) ? 'bound' : 'full';
  }

  async verify(tenant: string, instanceId: string, secretHash: string): Promise<VerifyVerdict> {
    if (this.isClosed()) return 'unavailable';
    const held = this.table.get(tenant, digestKey(instanceId), this.clock.monotonicNow());
    if (held === undefined) return 'unknown';
    return sameBytes(held, Buffer.from(secretHash)) ? 'matches' : 'mismatch';
  }

  async reset(tenant: string, instanceId: string): Promise<ResetVerdict> {
    if (this.isClosed()) return 'unavailable';
    return this.table.delete(tenant, digestKey(instanceId)) ? 'reset' : 'absent';
  }
}

/** Constant time for equal lengths; only the length can leak, and these are hashes of one length. */
function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export class MemoryStateStore implements StateStore {
  readonly replay: MemoryReplayStore;
  readonly rateLimits: MemoryRateLimitStore;
  readonly firstUse: MemoryFirstUseStore;
  readonly description = 'memory';
  #closed = false;

  constructor(limits: Partial<MemoryStateLimits> = {}, clock: Clock = systemClock) {
    const l: MemoryStateLimits = { ...DEFAULT_MEMORY_LIMITS, ...limits };
    const isClosed = () => this.#closed;
    this.replay = new MemoryReplayStore(l, clock, isClosed);
    this.rateLimits = new MemoryRateLimitStore(l, clock, isClosed);
    this.firstUse = new MemoryFirstUseStore(l, clock, isClosed);
  }

  health(): StateHealth {
    return this.#closed ? { backend: 'memory', ready: false, problem: 'closed' } : { backend: 'memory', ready: true };
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}
