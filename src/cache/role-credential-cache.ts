import type { Logger } from 'pino';
import type { Clock, RandomSource, TimerHandle } from '../core/clock.js';
import { CrosscredError } from '../core/errors.js';
import type { Cloud, CloudCredentials, CredentialExchange } from '../exchange/credentials.js';
import { type ClassifiedFailure, classifyFailure } from '../exchange/failure.js';
import type { Turns } from '../util/turns.js';
import {
  CLOCK_SKEW_WARNING_MS,
  MAX_LIFETIME_MS,
  MAX_TIMER_DELAY_MS,
  MIN_LIFETIME_MS,
  MIN_REMAINING_TO_SERVE_MS,
  refreshDelayMs,
  retryDelayMs,
} from './refresh-policy.js';

/** One set of credentials as the cache holds it. Immutable: a refresh replaces the whole object. */
export interface CachedCredentials {
  readonly credentials: CloudCredentials;
  /** When crosscred received them (epoch ms), served as IMDS `LastUpdated`. */
  readonly receivedAtWall: number;
  /**
   * They are served only while both clocks are before these instants (expiry minus a safety
   * margin). The monotonic one survives the wall clock being stepped back; the wall one catches
   * what the monotonic clock misses (a VM suspended, a host clock corrected by NTP), and it is the
   * clock every client judges `Expiration` by.
   */
  readonly serveUntilMono: number;
  readonly serveUntilWall: number;
}

/** Cached credentials of one cloud: what `ofCloud` narrows an entry to. */
export type CachedCredentialsOf<C extends Cloud> = CachedCredentials & { readonly credentials: Extract<CloudCredentials, { readonly cloud: C }> };

/**
 * The entry, when its credentials are `cloud`'s: an endpoint serves only its own cloud's documents
 * (an Alibaba role has no IMDS document; an AWS role no Alibaba one).
 */
export function ofCloud<C extends Cloud>(entry: CachedCredentials, cloud: C): entry is CachedCredentialsOf<C> {
  return entry.credentials.cloud === cloud;
}

export interface RoleStatus {
  readonly role: string;
  readonly ready: boolean;
  /** Seconds until the served credentials expire (by STS's Expiration), or null when none are held. */
  readonly expiresInSeconds: number | null;
  readonly refreshing: boolean;
  readonly consecutiveFailures: number;
  readonly lastError: { readonly kind: string; readonly code: string; readonly message: string; readonly hint?: string } | null;
  /** Seconds until the next scheduled refresh or retry, or null when none is scheduled. */
  readonly nextAttemptInSeconds: number | null;
}

/** What the cache reports about each exchange, for metrics. */
export interface ExchangeObserver {
  exchangeSucceeded(role: string, durationSeconds: number): void;
  exchangeFailed(role: string, failure: ClassifiedFailure, durationSeconds: number): void;
}

export interface RoleCredentialCacheOptions {
  readonly exchange: CredentialExchange;
  /**
   * Longest an exchange may hold the single-flight slot, in ms, whatever the transport does
   * (a proxy that accepts and never answers, a token source that hangs). Default 60 s.
   */
  readonly exchangeTimeoutMs?: number;
  readonly clock: Clock;
  readonly random: RandomSource;
  readonly logger: Logger;
  readonly observer?: ExchangeObserver;
  /**
   * Shared by the roles of one STS client: an exchange waits for a turn before its deadline
   * starts, so a burst of many roles queues instead of timing out in the queue (10,000 roles at
   * start-up made 10,003 STS calls when the deadline counted the wait).
   */
  readonly turns?: Turns;
  /**
   * Asked when a scheduled refresh or retry falls due: false skips it and schedules nothing more,
   * so the credentials are left to run out. The node agent renews an entry only while a pod
   * still reads it and its token outlives the attempt (the EKS agent renewed for pods long gone,
   * agent#171). Explicit calls (start, refreshNow) are not asked. Default: always renew.
   */
  readonly renewWhile?: () => boolean;
}

/**
 * Credentials for one role, always answered from memory. It fetches when started, refreshes in the
 * background before expiry, makes at most one STS call at a time however many requests miss
 * (single flight), keeps serving the last good credentials while a refresh fails, and never hands
 * out expired or empty credentials.
 *
 * Every decision about validity and scheduling uses the monotonic clock; STS's wall-clock
 * Expiration is translated once, when the credentials arrive (by STS's own clock when its answer
 * is dated, so a wrong host clock cannot stretch it).
 */
export class RoleCredentialCache {
  readonly role: string;
  readonly #exchange: CredentialExchange;
  readonly #clock: Clock;
  readonly #random: RandomSource;
  readonly #log: Logger;
  readonly #observer: ExchangeObserver | undefined;
  readonly #exchangeTimeoutMs: number;
  readonly #renewWhile: (() => boolean) | undefined;

  #current: CachedCredentials | undefined;
  #inflight: Promise<void> | undefined;
  #timer: TimerHandle | undefined;
  #nextAttemptMono: number | undefined;
  #failures = 0;
  #lastFailure: ClassifiedFailure | undefined;
  #closed = false;
  /** Aborted by close(): releases an attempt still waiting for its turn. */
  readonly #closing = new AbortController();

  constructor(options: RoleCredentialCacheOptions) {
    this.role = options.exchange.roleName;
    this.#exchange = options.exchange;
    this.#clock = options.clock;
    this.#random = options.random;
    // The role goes into each line rather than into a child logger: the node agent holds
    // thousands of these caches, and a child logger each would cost memory for nothing.
    this.#log = options.logger;
    this.#renewWhile = options.renewWhile;
    this.#observer = options.observer;
    this.#exchangeTimeoutMs = options.exchangeTimeoutMs ?? 60_000;
    this.#turns = options.turns;
  }

  readonly #turns: Turns | undefined;

  /**
   * Starts the first fetch. Resolves when it has finished, successfully or not. Nothing is
   * fetched before: constructing a cache costs no STS call.
   */
  start(): Promise<void> {
    return this.#refresh();
  }

  /** True while a fetch is on the wire. */
  get refreshing(): boolean {
    return this.#inflight !== undefined;
  }

  /** Resolves once no fetch is in flight (at once when none is): single flight for callers that only wait. */
  settled(): Promise<void> {
    return this.#inflight ?? Promise.resolve();
  }

  /** The credentials to serve right now, or undefined. Synchronous: this is the hot path. */
  current(): CachedCredentials | undefined {
    const entry = this.#current;
    if (entry === undefined || this.#clock.monotonicNow() >= entry.serveUntilMono) return undefined;
    if (this.#clock.wallNow() < entry.serveUntilWall) return entry;
    // Still valid by the monotonic clock but not by the wall clock: the host slept or its clock
    // was stepped. Refresh now rather than at the scheduled time, once: only when the schedule is
    // healthy (no failure pending, nothing in flight), so requests can never drive a storm.
    if (this.#inflight === undefined && this.#failures === 0) this.#renewIfWanted();
    return undefined;
  }

  /**
   * The credentials to serve, waiting at most `maxWaitMs` for a fetch that is already in flight.
   * Never starts a fetch itself: requests cannot drive STS traffic, only the schedule can.
   */
  waitForCurrent(maxWaitMs: number): Promise<CachedCredentials | undefined> {
    const now = this.current();
    if (now !== undefined || this.#inflight === undefined) return Promise.resolve(now);
    const inflight = this.#inflight;
    return new Promise((resolve) => {
      const timer = this.#clock.setTimeout(() => resolve(this.current()), maxWaitMs);
      void inflight.then(() => {
        this.#clock.clearTimeout(timer);
        resolve(this.current());
      });
    });
  }

  /** Seconds a client should wait before asking again when nothing valid is held (at least 1). */
  retryAfterSeconds(): number {
    if (this.#inflight !== undefined || this.#nextAttemptMono === undefined) return 1;
    const wait = (this.#nextAttemptMono - this.#clock.monotonicNow()) / 1000;
    return Math.min(300, Math.max(1, Math.ceil(wait)));
  }

  status(): RoleStatus {
    const now = this.#clock.monotonicNow();
    const entry = this.current();
    return {
      role: this.role,
      ready: entry !== undefined,
      expiresInSeconds: entry ? Math.floor((entry.credentials.expirationWall - this.#clock.wallNow()) / 1000) : null,
      refreshing: this.#inflight !== undefined,
      consecutiveFailures: this.#failures,
      lastError: this.#lastFailure ?? null,
      nextAttemptInSeconds: this.#nextAttemptMono === undefined ? null : Math.max(0, Math.round((this.#nextAttemptMono - now) / 1000)),
    };
  }

  /** Triggers a refresh now unless one is running (single flight). Used by the schedule and by tests. */
  refreshNow(): Promise<void> {
    return this.#refresh();
  }

  close(): void {
    this.#closed = true;
    this.#closing.abort();
    if (this.#timer) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#nextAttemptMono = undefined;
  }

  #refresh(): Promise<void> {
    if (this.#inflight) return this.#inflight;
    if (this.#closed) return Promise.resolve();
    if (this.#timer) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#nextAttemptMono = undefined;
    const inflight = this.#attempt().finally(() => {
      if (this.#inflight === inflight) this.#inflight = undefined;
    });
    this.#inflight = inflight;
    return inflight;
  }

  async #attempt(): Promise<void> {
    if (this.#turns) {
      try {
        await this.#turns.take(this.#closing.signal);
      } catch {
        return; // closed while waiting
      }
    }
    try {
      const startedMono = this.#clock.monotonicNow();
      let credentials: CloudCredentials;
      try {
        credentials = await this.#exchangeWithDeadline();
      } catch (err) {
        this.#reject(err, startedMono);
        return;
      }
      this.#accept(credentials, startedMono);
    } finally {
      this.#turns?.give();
    }
  }

  #exchangeWithDeadline(): Promise<CloudCredentials> {
    // The deadline also aborts the exchange, so an attempt given up on sends nothing more: a
    // request still queued for an STS connection is dropped rather than sent late, and answered
    // by nobody (which would cost an STS call the retry then repeats).
    const abort = new AbortController();
    return new Promise((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => {
        reject(new CrosscredError('STS_UNAVAILABLE', `the exchange for role ${this.role} took longer than ${this.#exchangeTimeoutMs} ms`));
        abort.abort();
      }, this.#exchangeTimeoutMs);
      this.#exchange.exchange(abort.signal).then(
        (c) => {
          this.#clock.clearTimeout(timer);
          resolve(c);
        },
        (err: unknown) => {
          this.#clock.clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  #accept(credentials: CloudCredentials, startedMono: number): void {
    const nowMono = this.#clock.monotonicNow();
    const nowWall = this.#clock.wallNow();
    // Two views of how long they last: by this host's clock (which the SDKs here judge Expiration
    // by) and by STS's (which decides when AWS stops accepting them). They differ when the host
    // clock is off; the shorter one rules, so a host clock that is behind cannot make expired
    // credentials look valid, nor delay their refresh. (STS's Date has whole seconds, so its view
    // can be up to a second long: the 60 s serving margin absorbs that.)
    const hostLifetimeMs = credentials.expirationWall - nowWall;
    const stsLifetimeMs = credentials.stsDateWall === undefined ? hostLifetimeMs : credentials.expirationWall - credentials.stsDateWall;
    const reportedLifetimeMs = Math.min(hostLifetimeMs, stsLifetimeMs);
    // Positive when this host's clock is behind STS's.
    const skewMs = hostLifetimeMs - stsLifetimeMs;
    const skewed = Math.abs(skewMs) > CLOCK_SKEW_WARNING_MS;
    const skewText = `this host's clock is ${Math.round(Math.abs(skewMs) / 1000)} s ${skewMs > 0 ? 'behind' : 'ahead of'} STS's`;
    if (skewed) {
      this.#log.warn(
        { role: this.role, hostClockBehindStsSeconds: Math.round(skewMs / 1000) },
        `${skewText}; credentials are timed by the shorter lifetime; check the host clock (NTP)`,
      );
    }
    if (reportedLifetimeMs < MIN_LIFETIME_MS) {
      const why =
        credentials.stsDateWall === undefined
          ? "by this host's clock; check the host clock (NTP), and what answers at the STS endpoint"
          : skewed
            ? `(${skewText}); check the host clock (NTP)`
            : "by both this host's clock and STS's; real STS issues at least 15 minutes: check what answers at the STS endpoint";
      this.#reject(
        new CrosscredError('STS_BAD_RESPONSE', `STS issued credentials for role ${this.role} that expire in ${Math.round(reportedLifetimeMs / 1000)} s ${why}`),
        startedMono,
      );
      return;
    }
    if (reportedLifetimeMs > MAX_LIFETIME_MS) {
      this.#log.warn(
        { role: this.role, lifetimeSeconds: Math.round(reportedLifetimeMs / 1000) },
        "credentials last longer than STS ever issues by this host's clock; scheduling as if 12 h; check the host clock (NTP)",
      );
    }
    const lifetimeMs = Math.min(reportedLifetimeMs, MAX_LIFETIME_MS);
    this.#current = {
      credentials,
      receivedAtWall: nowWall,
      serveUntilMono: nowMono + lifetimeMs - MIN_REMAINING_TO_SERVE_MS,
      serveUntilWall: credentials.expirationWall - MIN_REMAINING_TO_SERVE_MS,
    };
    this.#failures = 0;
    this.#lastFailure = undefined;
    const delay = refreshDelayMs(lifetimeMs, this.#random);
    this.#schedule(delay);
    const took = (nowMono - startedMono) / 1000;
    this.#observer?.exchangeSucceeded(this.role, took);
    this.#log.info(
      {
        role: this.role,
        expiration: new Date(credentials.expirationWall).toISOString(),
        lifetimeSeconds: Math.round(lifetimeMs / 1000),
        nextRefreshInSeconds: Math.round(delay / 1000),
        exchangeSeconds: took,
      },
      'credentials refreshed',
    );
  }

  #reject(err: unknown, startedMono: number): void {
    const failure = classifyFailure(err);
    this.#failures += 1;
    this.#lastFailure = failure;
    const nowMono = this.#clock.monotonicNow();
    const valid = this.current();
    const remaining = valid ? Math.min(valid.serveUntilMono - nowMono, valid.serveUntilWall - this.#clock.wallNow()) : 0;
    const delay = retryDelayMs(failure.kind, this.#failures, remaining, this.#random);
    this.#schedule(delay);
    this.#observer?.exchangeFailed(this.role, failure, (nowMono - startedMono) / 1000);
    const fields = {
      role: this.role,
      kind: failure.kind,
      code: failure.code,
      consecutiveFailures: this.#failures,
      retryInSeconds: Math.round(delay / 1000),
      servingPreviousForSeconds: Math.round(remaining / 1000),
      ...(failure.hint ? { fix: failure.hint } : {}),
    };
    // A failure while good credentials remain is a warning; with nothing to serve it is an error.
    if (valid) this.#log.warn(fields, `credential refresh failed: ${failure.message}`);
    else this.#log.error(fields, `no credentials to serve: ${failure.message}`);
  }

  /** A refresh nobody explicitly asked for: only while the owner still wants renewals. */
  #renewIfWanted(): void {
    if (this.#renewWhile !== undefined && !this.#renewWhile()) {
      this.#nextAttemptMono = undefined;
      this.#log.debug({ role: this.role }, 'renewal skipped: the credentials are left to run out');
      return;
    }
    void this.#refresh();
  }

  #schedule(requestedDelayMs: number): void {
    if (this.#closed) return;
    if (this.#timer) this.#clock.clearTimeout(this.#timer);
    const delayMs = Math.min(Math.max(0, requestedDelayMs), MAX_TIMER_DELAY_MS);
    this.#nextAttemptMono = this.#clock.monotonicNow() + delayMs;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.#renewIfWanted();
    }, delayMs);
    this.#timer.unref?.();
  }
}
