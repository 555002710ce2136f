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
 * the token endpoint answers those with 503 and Retry-After.
 */
export type ReplayVerdict = 'fresh' | 'replayed' | 'full' | 'window-too-long' | 'stale';

export const DEFAULT_REPLAY_ENTRIES = 100_000;
/**
 * An attestation that claims to stay presentable for longer than this is refused: the set would
 * have to keep it for that long. Attestors' windows are minutes; a day leaves ample room.
 */
export const MAX_REPLAY_WINDOW_MS = 24 * 3600_000;
/** A full scan for expired entries runs at most this often, in ms, so a full set costs O(1) per request. */
const FULL_SWEEP_INTERVAL_MS = 1_000;

export class ReplayGuard {
  /** Digest of replayKey → until (epoch ms). A Map iterates in insertion order, roughly expiry order. */
  readonly #seen = new Map<string, number>();
  #lastFullSweepWall = -Infinity;

  constructor(private readonly maxEntries: number = DEFAULT_REPLAY_ENTRIES) {}

  get size(): number {
    return this.#seen.size;
  }

  /** Records `replayKey` if it is new and in date; says why not otherwise. */
  check(replayKey: string, untilWall: number, nowWall: number): ReplayVerdict {
    if (!(untilWall > nowWall)) return 'stale';
    if (untilWall - nowWall > MAX_REPLAY_WINDOW_MS) return 'window-too-long';
    // A fixed-size digest: memory per entry does not depend on what an attestor uses as key.
    const digest = createHash('sha256').update(replayKey).digest('base64url');
    const until = this.#seen.get(digest);
    if (until !== undefined && until > nowWall) return 'replayed';
    this.#sweepFront(nowWall);
    if (this.#seen.size >= this.maxEntries) {
      if (nowWall - this.#lastFullSweepWall >= FULL_SWEEP_INTERVAL_MS) {
        this.#lastFullSweepWall = nowWall;
        for (const [key, keepUntil] of this.#seen) if (keepUntil <= nowWall) this.#seen.delete(key);
      }
      if (this.#seen.size >= this.maxEntries) return 'full';
    }
    this.#seen.delete(digest);
    this.#seen.set(digest, untilWall);
    return 'fresh';
  }

  /** Drops expired entries from the oldest end: amortised O(1) per insertion. */
  #sweepFront(nowWall: number): void {
    for (const [key, until] of this.#seen) {
      if (until > nowWall) return;
      this.#seen.delete(key);
    }
  }
}
