import type { Logger } from 'pino';
import type { AwsCredentials, CredentialExchange } from '../exchange/credentials.js';
import { classifyFailure, type ClassifiedFailure } from '../exchange/sts-failure.js';
import type { Clock, RandomSource, TimerHandle } from './clock.js';
import { MIN_REMAINING_TO_SERVE_MS, refreshDelayMs, retryDelayMs } from './refresh-policy.js';

/** One set of credentials as the cache holds it. Immutable: a refresh replaces the whole object. */
export interface CachedCredentials {
  readonly credentials: AwsCredentials;
  /** When crosscred received them (epoch ms), served as IMDS `LastUpdated`. */
  readonly receivedAtWall: number;
  /** Monotonic instant after which they are no longer served (expiry minus a safety margin). */
  readonly serveUntilMono: number;
}

export interface RoleStatus {
  readonly role: string;
  readonly ready: boolean;
  /** Seconds until the served credentials expire (by STS's Expiration), or null when none are held. */
  readonly expiresInSeconds: number | null;
  readonly refreshing: boolean;
  readonly consecutiveFailures: number;
  readonly lastError: { readonly kind: string; readonly code: string; readonly message: string } | null;
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
  readonly clock: Clock;
  readonly random: RandomSource;
  readonly logger: Logger;
  readonly observer?: ExchangeObserver;
}

/**
 * Credentials for one role, always answered from memory. It fetches at start-up, refreshes in the
 * background before expiry, makes at most one STS call at a time however many requests miss
 * (single flight), keeps serving the last good credentials while a refresh fails, and never hands
 * out expired or empty credentials.
 *
 * Every decision about validity and scheduling uses the monotonic clock; STS's wall-clock
 * Expiration is translated once, when the credentials arrive.
 */
export class RoleCredentialCache {
  readonly role: string;
  readonly #exchange: CredentialExchange;
  readonly #clock: Clock;
  readonly #random: RandomSource;
  readonly #log: Logger;
  readonly #observer: ExchangeObserver | undefined;

  #current: CachedCredentials | undefined;
  #inflight: Promise<void> | undefined;
  #timer: TimerHandle | undefined;
  #nextAttemptMono: number | undefined;
  #failures = 0;
  #lastFailure: ClassifiedFailure | undefined;
  #closed = false;

  constructor(options: RoleCredentialCacheOptions) {
    this.role = options.exchange.roleName;
    this.#exchange = options.exchange;
    this.#clock = options.clock;
    this.#random = options.random;
    this.#log = options.logger.child({ role: this.role });
    this.#observer = options.observer;
  }

  /** Starts the first fetch. Resolves when it has finished, successfully or not. */
  start(): Promise<void> {
    return this.#refresh();
  }

  /** The credentials to serve right now, or undefined. Synchronous: this is the hot path. */
  current(): CachedCredentials | undefined {
    const entry = this.#current;
    return entry !== undefined && this.#clock.monotonicNow() < entry.serveUntilMono ? entry : undefined;
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
      // From the monotonic deadline, so a wall-clock jump does not distort it either.
      expiresInSeconds: entry ? Math.floor((entry.serveUntilMono + MIN_REMAINING_TO_SERVE_MS - now) / 1000) : null,
      refreshing: this.#inflight !== undefined,
      consecutiveFailures: this.#failures,
      lastError: this.#lastFailure ? { kind: this.#lastFailure.kind, code: this.#lastFailure.code, message: this.#lastFailure.message } : null,
      nextAttemptInSeconds: this.#nextAttemptMono === undefined ? null : Math.max(0, Math.round((this.#nextAttemptMono - now) / 1000)),
    };
  }

  /** Triggers a refresh now unless one is running (single flight). Used by the schedule and by tests. */
  refreshNow(): Promise<void> {
    return this.#refresh();
  }

  close(): void {
    this.#closed = true;
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
    const startedMono = this.#clock.monotonicNow();
    try {
      const credentials = await this.#exchange.exchange();
      this.#accept(credentials, startedMono);
    } catch (err) {
      this.#reject(err, startedMono);
    }
  }

  #accept(credentials: AwsCredentials, startedMono: number): void {
    const nowMono = this.#clock.monotonicNow();
    const nowWall = this.#clock.wallNow();
    const lifetimeMs = credentials.expirationWall - nowWall;
    this.#current = {
      credentials,
      receivedAtWall: nowWall,
      serveUntilMono: nowMono + lifetimeMs - MIN_REMAINING_TO_SERVE_MS,
    };
    this.#failures = 0;
    this.#lastFailure = undefined;
    const delay = refreshDelayMs(lifetimeMs, this.#random);
    this.#schedule(delay);
    const took = (nowMono - startedMono) / 1000;
    this.#observer?.exchangeSucceeded(this.role, took);
    this.#log.info(
      { expiration: new Date(credentials.expirationWall).toISOString(), lifetimeSeconds: Math.round(lifetimeMs / 1000), nextRefreshInSeconds: Math.round(delay / 1000), exchangeSeconds: took },
      'credentials refreshed',
    );
  }

  #reject(err: unknown, startedMono: number): void {
    const failure = classifyFailure(err);
    this.#failures += 1;
    this.#lastFailure = failure;
    const nowMono = this.#clock.monotonicNow();
    const valid = this.current();
    const remaining = valid ? valid.serveUntilMono - nowMono : 0;
    const delay = retryDelayMs(failure.kind, this.#failures, remaining, this.#random);
    this.#schedule(delay);
    this.#observer?.exchangeFailed(this.role, failure, (nowMono - startedMono) / 1000);
    const fields = {
      kind: failure.kind,
      code: failure.code,
      consecutiveFailures: this.#failures,
      retryInSeconds: Math.round(delay / 1000),
      servingPreviousForSeconds: Math.round(remaining / 1000),
    };
    // A failure while good credentials remain is a warning; with nothing to serve it is an error.
    if (valid) this.#log.warn(fields, `credential refresh failed: ${failure.message}`);
    else this.#log.error(fields, `no credentials to serve: ${failure.message}`);
  }

  #schedule(delayMs: number): void {
    if (this.#closed) return;
    this.#nextAttemptMono = this.#clock.monotonicNow() + delayMs;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      void this.#refresh();
    }, delayMs);
    this.#timer.unref?.();
  }
}
