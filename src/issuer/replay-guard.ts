import { createHash } from 'node:crypto';

/**
 * The seen-set that refuses an attestation presented a second time. Each accepted attestation's
 * `replayKey` is kept until its `replayUntilWall` (after which the attestation is stale and its
 * attestor refuses it anyway), so the set holds only attestations still inside their validity
 * window.
 *
 * It lives in this process's memory only. Replicas behind a load balancer each keep their own
 * set, and a restart empties it: an attestation could then be accepted once per replica (or once
 * more after a restart) within its validity window, which is what bounds that exposure. The
 * attestors keep those windows to minutes.
 *
 * Bounded: beyond `maxEntries` live entries it refuses new attestations (`full`) rather than grow;
 * the token endpoint answers those with 503 and Retry-After. No tenant (cloud account) may hold
 * more than MAX_TENANT_SHARE of the set (`tenant-full`, answered 429 to that tenant only), and
 * the token endpoint enters only attestations that passed the policy and the rate limit, so an
 * account outside the policy holds nothing here.
 */
export type ReplayVerdict = 'fresh' | 'replayed' | 'full' | 'tenant-full' | 'window-too-long' | 'stale';

export const DEFAULT_REPLAY_ENTRIES = 100_000;
/**
 * An attestation that claims to stay presentable for longer than this is refused: the set would
 * have to keep it for that long. Attestors' windows are minutes; a day leaves ample room.
 */
export const MAX_REPLAY_WINDOW_MS = 24 * 3600_000;
/** A full scan for expired entries runs at most this often, in ms, so a full set costs O(1) per request. */
const FULL_SWEEP_INTERVAL_MS = 1_000;
/**
 * The most of the set one tenant (a cloud account) may hold, as a fraction of maxEntries: one
 * tenant alone can never fill the set, so the rest always stays for the others.
 */
export const MAX_TENANT_SHARE = 0.5;

/** The tenant an attested identity's seen-set entries count against: its cloud account. */
export function replayTenant(identity: { cloud: string; accountId: string }): string {
  return `${identity.cloud}:${identity.accountId}`;
}

interface SeenEntry {
  readonly until: number;
  readonly tenant: string | undefined;
}

export class ReplayGuard {
  /** Digest of replayKey → until (epoch ms) and tenant. A Map iterates in insertion order, roughly expiry order. */
  readonly #seen = new Map<string, SeenEntry>();
  /** Live entries per tenant; a tenant with none has no key. */
  readonly #perTenant = new Map<string, number>();
  readonly #maxPerTenant: number;
  #lastFullSweepWall = -Infinity;

  constructor(private readonly maxEntries: number = DEFAULT_REPLAY_ENTRIES) {
    this.#maxPerTenant = Math.max(1, Math.floor(maxEntries * MAX_TENANT_SHARE));
  }

  get size(): number {
    return this.#seen.size;
  }

  /** Entries `tenant` holds now. */
  sizeOf(tenant: string): number {
    return this.#perTenant.get(tenant) ?? 0;
  }

  /**
   * Records `replayKey` for `tenant` if it is new and in date; says why not otherwise. Call it
   * only for attestations the issuer otherwise accepts (policy and rate limit passed). Without a
   * tenant the entry counts against the whole set only.
   */
  check(replayKey: string, untilWall: number, nowWall: number, tenant?: string): ReplayVerdict {
    if (!(untilWall > nowWall)) return 'stale';
    if (untilWall - nowWall > MAX_REPLAY_WINDOW_MS) return 'window-too-long';
    // A fixed-size digest: memory per entry does not depend on what an attestor uses as key.
    const digest = createHash('sha256').update(replayKey).digest('base64url');
    const seen = this.#seen.get(digest);
    if (seen !== undefined && seen.until > nowWall) return 'replayed';
    this.#sweepFront(nowWall);
    const overShare = () => tenant !== undefined && this.sizeOf(tenant) >= this.#maxPerTenant;
    if (this.#seen.size >= this.maxEntries || overShare()) this.#sweepAll(nowWall);
    if (overShare()) return 'tenant-full';
    if (this.#seen.size >= this.maxEntries) return 'full';
    this.#delete(digest);
    this.#seen.set(digest, { until: untilWall, tenant });
    if (tenant !== undefined) this.#perTenant.set(tenant, this.sizeOf(tenant) + 1);
    return 'fresh';
  }

  /** Drops every expired entry, at most once per FULL_SWEEP_INTERVAL_MS. */
  #sweepAll(nowWall: number): void {
    if (nowWall - this.#lastFullSweepWall < FULL_SWEEP_INTERVAL_MS) return;
    this.#lastFullSweepWall = nowWall;
    for (const [key, entry] of this.#seen) if (entry.until <= nowWall) this.#delete(key);
  }

  /** Drops expired entries from the oldest end: amortised O(1) per insertion. */
  #sweepFront(nowWall: number): void {
    for (const [key, entry] of this.#seen) {
      if (entry.until > nowWall) return;
      this.#delete(key);
    }
  }

  #delete(digest: string): void {
    const entry = this.#seen.get(digest);
    if (entry === undefined) return;
    this.#seen.delete(digest);
    if (entry.tenant === undefined) return;
    const left = this.sizeOf(entry.tenant) - 1;
    if (left > 0) this.#perTenant.set(entry.tenant, left);
    else this.#perTenant.delete(entry.tenant);
  }
}
