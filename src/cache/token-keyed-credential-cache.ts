import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { Clock, RandomSource, TimerHandle } from '../core/clock.js';
import type { CloudCredentials, CredentialExchange } from '../exchange/credentials.js';
import type { Turns } from '../util/turns.js';
import { type CachedCredentials, type ExchangeObserver, RoleCredentialCache } from './role-credential-cache.js';

/**
 * The node agent's cache: one RoleCredentialCache per (role ARN, exact token) pair, so refresh,
 * single flight, "never serve expired" and the clock handling are the serve daemon's, reused.
 *
 * Keyed by the SHA-256 of the token's exact bytes, never by pod or `sub`: a hit needs a token
 * byte for byte identical to one STS accepted. A forged token naming the same pod is another key,
 * goes to STS and is refused there; it never sees the cached credentials.
 */

/** Why an entry left the cache: a metric label, so a fixed set. */
export type EvictionCause = 'idle' | 'size' | 'token_expired';

/** What asking for a key found, before anything is fetched. */
export type Lookup =
  | { readonly kind: 'hit'; readonly credentials: CachedCredentials }
  /** STS refused this exact token for this role a short while ago: answered from memory. */
  | { readonly kind: 'refused'; readonly code: string }
  /** A fetch for this key is in flight: wait for it instead of starting another (single flight). */
  | { readonly kind: 'pending'; readonly outcome: Promise<FetchOutcome> }
  | { readonly kind: 'miss' };

/** How a fetch ended. */
export type FetchOutcome =
  | { readonly kind: 'credentials'; readonly credentials: CachedCredentials }
  /** STS refused terminally (trust policy, signature, audience): remembered in the negative cache. */
  | { readonly kind: 'refused'; readonly code: string }
  /** STS says the token expired: the pod's to replace, not ours. */
  | { readonly kind: 'token-expired' }
  /** Transient (throttling, 5xx, network): nothing is remembered, the client retries. */
  | { readonly kind: 'unavailable'; readonly code: string; readonly retryAfterSeconds: number };

export interface TokenKeyedFetch {
  /** The token's `exp`, in epoch ms: the entry is never renewed past it, and dropped at it. */
  readonly tokenExpiresAtWall: number;
  /** Bytes the entry keeps alive besides the credentials (the token itself, which renewals need). */
  readonly tokenLength: number;
  /** Trades the entry's token for the role's credentials (it holds the token). */
  readonly exchange: CredentialExchange;
}

export interface TokenKeyedCacheOptions {
  /** Most entries held (lru-cache `max`). */
  readonly maxEntries: number;
  /** Most bytes held, by the estimate of entryBytes(). */
  readonly maxBytes: number;
  /** An entry unread this long is dropped, and never renewed, in ms. */
  readonly idleMs: number;
  readonly clock: Clock;
  readonly random: RandomSource;
  readonly logger: Logger;
  readonly observer?: ExchangeObserver;
  readonly turns?: Turns;
  readonly exchangeTimeoutMs?: number;
  readonly onEviction?: (cause: EvictionCause) => void;
}

/**
 * A renewal is started only for a token that is still valid this long after it starts: STS
 * would refuse a token expiring mid-call, and the kubelet has long since written the pod a new
 * one (it rotates at 80% of the lifetime), which is a new key anyway.
 */
export const RENEWAL_MIN_TOKEN_LIFE_MS = 60_000;

/** A token STS refused is refused from memory for at most this long, so a trust-policy fix is seen within it. */
export const NEGATIVE_TTL_MS = 5 * 60_000;

/**
 * Fixed bytes per entry beyond the token and the credential strings: the key (a role ARN and 64 hex
 * characters), the entry and its RoleCredentialCache (its abort controller, its refresh timer), the
 * exchange's closure, lru-cache's slots. Measured, not guessed: V8's live heap after forced
 * collections grew by 7.4 KB per entry over 2,000 entries with 576-byte tokens, of which the
 * strings counted below are about 1.5 KB (Node 20), and by 5.5 KB once only the container document
 * was rendered (bench/results/cluster/ reports the growth at each run); 6 KiB keeps to the safe
 * side. A first estimate of 1 KB let `maxBytes` admit three times the memory it named.
 */
export const ENTRY_OVERHEAD_BYTES = 6 * 1024;

/**
 * The credentials are not known when an entry is made (the fetch has not answered); this is
 * counted for them until they are. Real STS session tokens are about 1 KiB.
 */
const UNKNOWN_CREDENTIALS_BYTES = 2_048;

/** The idle sweep runs this often at most, so idle entries go within a minute of their window. */
const MAX_PURGE_INTERVAL_MS = 60_000;

interface Entry {
  readonly cache: RoleCredentialCache;
  readonly tokenExpiresAtWall: number;
  readonly tokenLength: number;
  lastReadMono: number;
  /** The first fetch, while it is in flight; every request for the key waits on this one. */
  first: Promise<FetchOutcome> | undefined;
}

interface NegativeEntry {
  readonly untilMono: number;
  readonly code: string;
}

/** The cache key for a role and a token: the role ARN and the SHA-256 of the token's exact bytes. */
export function tokenKey(roleArn: string, token: string): string {
  return `${roleArn}\n${createHash('sha256').update(token, 'utf8').digest('hex')}`;
}

/** The bytes an entry is counted for: the token, the credential strings, the fixed overhead. */
export function entryBytes(tokenLength: number, credentials: CachedCredentials | undefined): number {
  const c = credentials?.credentials;
  const credentialBytes = c ? credentialStringsLength(c) + c.roleArn.length : UNKNOWN_CREDENTIALS_BYTES;
  // The rendered container document repeats the credential strings once more.
  return tokenLength + 2 * credentialBytes + ENTRY_OVERHEAD_BYTES;
}

/** The length of the credentials' secret strings, whichever cloud issued them. */
function credentialStringsLength(c: CloudCredentials): number {
  switch (c.cloud) {
    case 'aws':
      return c.accessKeyId.length + c.secretAccessKey.length + c.sessionToken.length;
    case 'alibaba':
      return c.accessKeyId.length + c.accessKeySecret.length + c.securityToken.length;
    case 'tencent':
      return c.secretId.length + c.secretKey.length + c.token.length;
  }
}

/**
 * The narrow port the node agent's request handler sees (as serve's routes see CredentialResolver):
 * look a key up, and start the one fetch for a miss the caller has admitted.
 */
export interface TokenKeyedCredentials {
  lookup(key: string): Lookup;
  fetch(key: string, request: TokenKeyedFetch): Promise<FetchOutcome>;
}

export class TokenKeyedCredentialCache implements TokenKeyedCredentials {
  readonly #options: TokenKeyedCacheOptions;
  readonly #clock: Clock;
  readonly #entries: LRUCache<string, Entry>;
  /** Keys of tokens STS refused terminally; no token is kept, only its hash in the key. */
  readonly #refused: LRUCache<string, NegativeEntry>;
  /** Set while this class deletes an entry itself, so dispose() can count the cause. */
  #deleting: EvictionCause | 'failed' | 'closed' | undefined;
  #purgeTimer: TimerHandle | undefined;
  #closed = false;

  constructor(options: TokenKeyedCacheOptions) {
    this.#options = options;
    this.#clock = options.clock;
    this.#entries = new LRUCache<string, Entry>({
      max: options.maxEntries,
      maxSize: options.maxBytes,
      dispose: (entry, _key, reason) => {
        entry.cache.close();
        const cause = reason === 'evict' ? 'size' : this.#deleting;
        if (cause === 'idle' || cause === 'size' || cause === 'token_expired') options.onEviction?.(cause);
      },
    });
    this.#refused = new LRUCache<string, NegativeEntry>({ max: Math.max(16, Math.ceil(options.maxEntries / 4)) });
    this.#schedulePurge();
  }

  /** Entries held. */
  get size(): number {
    return this.#entries.size;
  }

  /** Bytes held, by entryBytes()'s estimate. */
  get bytes(): number {
    return this.#entries.calculatedSize;
  }

  /** Entries with a fetch on the wire (a first fetch or a renewal). Walks every entry: for tests and diagnostics. */
  get fetching(): number {
    let n = 0;
    for (const entry of this.#entries.values()) if (entry.cache.refreshing) n++;
    return n;
  }

  /** Token hashes remembered as refused. */
  get refusedSize(): number {
    return this.#refused.size;
  }

  /** What is held for `key`, without fetching. A hit is synchronous: the hot path. */
  lookup(key: string): Lookup {
    const nowMono = this.#clock.monotonicNow();
    const refused = this.#refused.get(key);
    if (refused !== undefined) {
      if (refused.untilMono > nowMono) return { kind: 'refused', code: refused.code };
      this.#refused.delete(key);
    }
    const entry = this.#entries.get(key);
    if (entry === undefined) return { kind: 'miss' };
    if (entry.tokenExpiresAtWall <= this.#clock.wallNow()) {
      this.#delete(key, 'token_expired');
      return { kind: 'miss' };
    }
    entry.lastReadMono = nowMono;
    if (entry.first !== undefined) return { kind: 'pending', outcome: entry.first };
    const credentials = entry.cache.current();
    if (credentials !== undefined) return { kind: 'hit', credentials };
    if (entry.cache.refreshing) {
      // A renewal is on the wire after the last credentials ran out: wait for it, as for a first fetch.
      return { kind: 'pending', outcome: entry.cache.settled().then(() => this.#outcomeOf(key, entry)) };
    }
    // Its credentials ran out and nobody renewed them (nobody read it in time): start over, as a
    // miss, so the caller's limiter counts the STS call this will cost.
    this.#delete(key, 'failed');
    return { kind: 'miss' };
  }

  /**
   * Starts the one fetch for `key` (the caller has found a miss and admitted its cost). Requests
   * for the key that arrive meanwhile find it pending and wait for the same outcome.
   */
  fetch(key: string, request: TokenKeyedFetch): Promise<FetchOutcome> {
    const existing = this.#entries.get(key);
    if (existing?.first !== undefined) return existing.first;
    const clock = this.#clock;
    const idleMs = this.#options.idleMs;
    const entry: Entry = {
      tokenExpiresAtWall: request.tokenExpiresAtWall,
      tokenLength: request.tokenLength,
      lastReadMono: clock.monotonicNow(),
      first: undefined,
      cache: new RoleCredentialCache({
        exchange: request.exchange,
        clock,
        random: this.#options.random,
        logger: this.#options.logger,
        ...(this.#options.observer ? { observer: this.#options.observer } : {}),
        ...(this.#options.turns ? { turns: this.#options.turns } : {}),
        ...(this.#options.exchangeTimeoutMs ? { exchangeTimeoutMs: this.#options.exchangeTimeoutMs } : {}),
        // Renew only what a pod still reads, with a token that outlives the call (agent#171).
        renewWhile: () => clock.monotonicNow() - entry.lastReadMono <= idleMs && entry.tokenExpiresAtWall - clock.wallNow() > RENEWAL_MIN_TOKEN_LIFE_MS,
      }),
    };
    this.#entries.set(key, entry, { size: entryBytes(request.tokenLength, undefined) });
    const first = entry.cache.start().then(() => {
      entry.first = undefined;
      const outcome = this.#outcomeOf(key, entry);
      // Evicted while its first fetch was on the wire (or never stored): it answers the requests
      // that waited for it, and then nothing of it may keep running.
      if (this.#entries.peek(key) !== entry) entry.cache.close();
      return outcome;
    });
    entry.first = first;
    return first;
  }

  /** Stops every entry's timers and the sweep; the cache answers nothing afterwards. */
  close(): void {
    this.#closed = true;
    if (this.#purgeTimer !== undefined) this.#clock.clearTimeout(this.#purgeTimer);
    this.#purgeTimer = undefined;
    this.#deleting = 'closed';
    this.#entries.clear();
    this.#deleting = undefined;
    this.#refused.clear();
  }

  /** Drops idle entries and those whose token has expired. Runs on its own timer; public for tests. */
  purge(): void {
    const nowMono = this.#clock.monotonicNow();
    const nowWall = this.#clock.wallNow();
    const idle: string[] = [];
    const expired: string[] = [];
    for (const [key, entry] of this.#entries.entries()) {
      if (entry.tokenExpiresAtWall <= nowWall) expired.push(key);
      else if (entry.first === undefined && nowMono - entry.lastReadMono > this.#options.idleMs) idle.push(key);
    }
    for (const key of expired) this.#delete(key, 'token_expired');
    for (const key of idle) this.#delete(key, 'idle');
    const stale: string[] = [];
    for (const [key, refused] of this.#refused.entries()) if (refused.untilMono <= nowMono) stale.push(key);
    for (const key of stale) this.#refused.delete(key);
  }

  /** What the entry's last fetch came to; anything but credentials removes the entry. */
  #outcomeOf(key: string, entry: Entry): FetchOutcome {
    const credentials = entry.cache.current();
    if (credentials !== undefined) {
      // Now that the credentials are known, count the entry for what it really holds.
      if (this.#entries.peek(key) === entry) this.#entries.set(key, entry, { size: entryBytes(entry.tokenLength, credentials) });
      return { kind: 'credentials', credentials };
    }
    const status = entry.cache.status();
    const retryAfterSeconds = entry.cache.retryAfterSeconds();
    if (this.#entries.peek(key) === entry) this.#delete(key, 'failed');
    const failure = status.lastError;
    if (failure?.kind === 'terminal') {
      const lifeMs = Math.max(0, entry.tokenExpiresAtWall - this.#clock.wallNow());
      this.#refused.set(key, { untilMono: this.#clock.monotonicNow() + Math.min(lifeMs, NEGATIVE_TTL_MS), code: failure.code });
      return { kind: 'refused', code: failure.code };
    }
    if (failure?.kind === 'token-expired') return { kind: 'token-expired' };
    return { kind: 'unavailable', code: failure?.code ?? 'Unavailable', retryAfterSeconds };
  }

  #delete(key: string, cause: EvictionCause | 'failed'): void {
    this.#deleting = cause;
    try {
      this.#entries.delete(key);
    } finally {
      this.#deleting = undefined;
    }
  }

  #schedulePurge(): void {
    if (this.#closed) return;
    const interval = Math.max(1_000, Math.min(this.#options.idleMs, MAX_PURGE_INTERVAL_MS));
    this.#purgeTimer = this.#clock.setTimeout(() => {
      this.purge();
      this.#schedulePurge();
    }, interval);
    this.#purgeTimer.unref?.();
  }
}
