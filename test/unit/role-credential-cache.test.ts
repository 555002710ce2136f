import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { MIN_REMAINING_TO_SERVE_MS, TERMINAL_RETRY_MS } from '../../src/cache/refresh-policy.js';
import { RoleCredentialCache } from '../../src/cache/role-credential-cache.js';
import type { CloudCredentials, CredentialExchange } from '../../src/exchange/credentials.js';
import type { AwsCredentials } from '../../src/platform/aws/credentials.js';
import { Turns } from '../../src/util/turns.js';
import { FakeClock, settle } from '../support/fake-clock.js';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

const ROLE_ARN = 'arn:aws:iam::111122223333:role/app';
const logger = pino({ level: 'silent' });

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

let keyCounter = 0;
function accessKeyId(): string {
  keyCounter += 1;
  return `ASIA${keyCounter.toString(36).toUpperCase().padStart(16, 'Q')}`;
}

function makeCredentials(clock: FakeClock, lifetimeMs: number): AwsCredentials {
  return {
    cloud: 'aws',
    accessKeyId: accessKeyId(),
    secretAccessKey: `secret-${keyCounter}`,
    sessionToken: `session-token-${keyCounter}`,
    expirationWall: clock.wallNow() + lifetimeMs,
    roleArn: ROLE_ARN,
    accountId: '111122223333',
  };
}

/** An SDK-shaped error, as @aws-sdk/client-sts throws them. */
function stsError(name: string, httpStatusCode: number): Error {
  return Object.assign(new Error(`STS said ${name}`), { name, $metadata: { httpStatusCode } });
}

type Behaviour = 'succeed' | 'throttle' | 'deny' | 'hang';

/**
 * A CredentialExchange whose answers the test controls. In the automatic behaviours it answers at
 * once; with 'hang' each call returns a promise the test settles through `pending`.
 */
class ExchangeDouble implements CredentialExchange {
  readonly roleName = 'app';
  behaviour: Behaviour = 'succeed';
  lifetimeMs: number;
  /** Monotonic instants of every call. */
  readonly callTimes: number[] = [];
  readonly pending: Array<Deferred<AwsCredentials>> = [];

  constructor(
    private readonly clock: FakeClock,
    lifetimeMs = HOUR,
  ) {
    this.lifetimeMs = lifetimeMs;
  }

  get calls(): number {
    return this.callTimes.length;
  }

  exchange(): Promise<AwsCredentials> {
    this.callTimes.push(this.clock.monotonicNow());
    switch (this.behaviour) {
      case 'succeed':
        return Promise.resolve(makeCredentials(this.clock, this.lifetimeMs));
      case 'throttle':
        return Promise.reject(stsError('ThrottlingException', 400));
      case 'deny':
        return Promise.reject(stsError('AccessDenied', 403));
      case 'hang': {
        const d = deferred<AwsCredentials>();
        this.pending.push(d);
        return d.promise;
      }
    }
  }

  /** Answers the oldest hanging call with fresh credentials. */
  resolveNext(): void {
    const d = this.pending.shift();
    if (!d) throw new Error('no exchange call is pending');
    d.resolve(makeCredentials(this.clock, this.lifetimeMs));
  }
}

const caches: RoleCredentialCache[] = [];
afterEach(() => {
  for (const c of caches.splice(0)) c.close();
});

function setup(options: { lifetimeMs?: number; random?: number; behaviour?: Behaviour } = {}) {
  const clock = new FakeClock();
  const exchange = new ExchangeDouble(clock, options.lifetimeMs ?? HOUR);
  exchange.behaviour = options.behaviour ?? 'succeed';
  const random = options.random ?? 0.5;
  const cache = new RoleCredentialCache({ exchange, clock, random: () => random, logger });
  caches.push(cache);
  return { clock, exchange, cache };
}

/** Remaining life (by STS's Expiration) of what the cache serves now, or undefined. */
function servedRemainingMs(cache: RoleCredentialCache, clock: FakeClock): number | undefined {
  const entry = cache.current();
  return entry === undefined ? undefined : entry.credentials.expirationWall - clock.wallNow();
}

describe('refresh schedule with a healthy STS', () => {
  it('refreshes 15-minute credentials every 2¼ minutes with a 0.5 jitter draw', async () => {
    const { clock, exchange, cache } = setup({ lifetimeMs: 15 * MINUTE });
    await cache.start();
    expect(exchange.calls).toBe(1);
    // Delay = 15 min - 12 min kept - 0.5 * 90 s jitter = 135 s.
    expect(clock.pendingDelays()).toEqual([135 * SECOND]);
    await clock.advance(135 * SECOND - 1);
    expect(exchange.calls).toBe(1);
    await clock.advance(1);
    expect(exchange.calls).toBe(2);
    await clock.advance(HOUR - 135 * SECOND);
    // One fetch at start and one every 135 s over the hour: floor(3600 / 135) = 26.
    expect(exchange.calls).toBe(1 + 26);
  });

  it('refreshes 1-hour credentials every 27½ minutes with a 0.5 jitter draw', async () => {
    const { clock, exchange, cache } = setup({ lifetimeMs: HOUR });
    await cache.start();
    expect(clock.pendingDelays()).toEqual([27.5 * MINUTE]);
    await clock.advance(27.5 * MINUTE - 1);
    expect(exchange.calls).toBe(1);
    await clock.advance(1);
    expect(exchange.calls).toBe(2);
    await clock.advance(5 * HOUR);
    expect(exchange.calls).toBe(1 + Math.floor((5 * HOUR + 27.5 * MINUTE) / (27.5 * MINUTE)));
  });

  it('refreshes 12-hour credentials after about 6 hours, not before', async () => {
    const { clock, exchange, cache } = setup({ lifetimeMs: 12 * HOUR });
    await cache.start();
    await clock.advance(6 * HOUR - 150 * SECOND - 1);
    expect(exchange.calls).toBe(1);
    await clock.advance(1);
    expect(exchange.calls).toBe(2);
  });

  for (const lifetimeMs of [HOUR, 12 * HOUR]) {
    it(`always serves credentials with at least 15 minutes left for ${lifetimeMs / HOUR}-hour sessions`, async () => {
      for (const random of [0, 0.5, 0.999]) {
        const { clock, cache } = setup({ lifetimeMs, random });
        await cache.start();
        // Sample every 37 s (not a divisor of any refresh delay) over three lifetimes.
        for (let t = 0; t < 3 * lifetimeMs; t += 37 * SECOND) {
          const remaining = servedRemainingMs(cache, clock);
          expect(remaining).toBeDefined();
          expect(remaining!).toBeGreaterThanOrEqual(15 * MINUTE);
          await clock.advance(37 * SECOND);
        }
      }
    });
  }

  it('serves 15-minute credentials continuously with more than the 60 s serving margin left', async () => {
    const { clock, cache } = setup({ lifetimeMs: 15 * MINUTE, random: 0.999 });
    await cache.start();
    for (let t = 0; t < 2 * HOUR; t += 7 * SECOND) {
      const remaining = servedRemainingMs(cache, clock);
      expect(remaining).toBeDefined();
      // Refreshed with 80% + jitter of the lifetime left: at least 12 min.
      expect(remaining!).toBeGreaterThanOrEqual(12 * MINUTE);
      await clock.advance(7 * SECOND);
    }
  });
});

describe('single flight', () => {
  it('makes one exchange call for 10,000 concurrent waiters during the first fetch, and gives them all the same entry', async () => {
    const { clock, exchange, cache } = setup({ behaviour: 'hang' });
    const started = cache.start();
    const waiters = Array.from({ length: 10_000 }, () => cache.waitForCurrent(5 * SECOND));
    // Asking for a refresh while one is in flight joins it.
    void cache.refreshNow();
    await settle();
    expect(exchange.calls).toBe(1);

    exchange.resolveNext();
    const results = await Promise.all(waiters);
    await started;

    expect(exchange.calls).toBe(1);
    const first = results[0];
    expect(first).toBeDefined();
    expect(first).toBe(cache.current());
    expect(results.every((r) => r === first)).toBe(true);
    // Waiters' timers were cleared: only the refresh timer remains.
    expect(clock.pendingDelays()).toHaveLength(1);
  });

  it('never starts a fetch itself: with nothing cached and nothing in flight it answers undefined at once', async () => {
    const { exchange, cache } = setup();
    await expect(cache.waitForCurrent(5 * SECOND)).resolves.toBeUndefined();
    expect(exchange.calls).toBe(0);
  });

  it('answers at once from memory when credentials are cached', async () => {
    const { exchange, cache } = setup();
    await cache.start();
    await expect(cache.waitForCurrent(5 * SECOND)).resolves.toBe(cache.current());
    expect(exchange.calls).toBe(1);
  });

  it('gives up after its bound and answers undefined when the fetch hangs', async () => {
    const { clock, exchange, cache } = setup({ behaviour: 'hang' });
    void cache.start();
    let settled = false;
    let result: unknown = 'not yet';
    void cache.waitForCurrent(2 * SECOND).then((r) => {
      settled = true;
      result = r;
    });
    await clock.advance(2 * SECOND - 1);
    expect(settled).toBe(false);
    await clock.advance(1);
    expect(settled).toBe(true);
    expect(result).toBeUndefined();
    expect(exchange.calls).toBe(1);
    // The fetch is still in flight: a later answer is still accepted.
    exchange.resolveNext();
    await settle();
    expect(cache.current()).toBeDefined();
  });
});

describe('failures', () => {
  it('keeps serving the old credentials and retries with doubling backoff while STS throttles, then recovers', async () => {
    const { clock, exchange, cache } = setup({ lifetimeMs: HOUR, random: 0.5 });
    await cache.start();
    const original = cache.current();
    expect(original).toBeDefined();

    exchange.behaviour = 'throttle';
    await clock.advance(27.5 * MINUTE);
    expect(exchange.calls).toBe(2);
    // Equal jitter with draw 0.5: 0.75 of 1 s, 2 s, 4 s, 8 s ...
    const expectedDelays = [750, 1_500, 3_000, 6_000, 12_000];
    for (const [i, delay] of expectedDelays.entries()) {
      expect(clock.pendingDelays()).toEqual([delay]);
      expect(cache.status().consecutiveFailures).toBe(i + 1);
      expect(cache.current()).toBe(original);
      await clock.advance(delay);
      expect(exchange.calls).toBe(3 + i);
    }

    exchange.behaviour = 'succeed';
    await clock.advance(clock.pendingDelays()[0]!);
    const refreshed = cache.current();
    expect(refreshed).toBeDefined();
    expect(refreshed).not.toBe(original);
    expect(keyIdOf(refreshed!.credentials)).not.toBe(keyIdOf(original!.credentials));
    expect(cache.status().consecutiveFailures).toBe(0);
    expect(cache.status().lastError).toBeNull();
    expect(clock.pendingDelays()).toEqual([27.5 * MINUTE]);
  });

  it('caps retryable backoff at 60 s', async () => {
    const { clock, exchange, cache } = setup({ behaviour: 'throttle', random: 0.999 });
    await cache.start();
    await clock.advance(30 * MINUTE);
    const gaps = exchange.callTimes.slice(1).map((t, i) => t - exchange.callTimes[i]!);
    expect(Math.max(...gaps)).toBeLessThanOrEqual(60 * SECOND);
    expect(gaps.slice(-5).every((g) => g >= 30 * SECOND)).toBe(true);
  });

  it('stops serving once within 60 s of expiry while STS keeps failing, and never serves expired credentials', async () => {
    const { clock, exchange, cache } = setup({ lifetimeMs: HOUR, random: 0 });
    await cache.start();
    const receivedAtWall = clock.wallNow();
    exchange.behaviour = 'throttle';

    const lastServedAt = HOUR - MIN_REMAINING_TO_SERVE_MS - 1;
    for (let t = 0; t < lastServedAt; t += 10 * SECOND) {
      const remaining = servedRemainingMs(cache, clock);
      expect(remaining).toBeDefined();
      expect(remaining!).toBeGreaterThan(MIN_REMAINING_TO_SERVE_MS);
      await clock.advance(10 * SECOND);
    }
    await clock.advance(receivedAtWall + lastServedAt - clock.wallNow());
    expect(cache.current()).toBeDefined();
    await clock.advance(1);
    expect(cache.current()).toBeUndefined();
    expect(cache.status().ready).toBe(false);
    for (let t = 0; t < HOUR; t += 10 * SECOND) {
      await clock.advance(10 * SECOND);
      expect(cache.current()).toBeUndefined();
    }
    // The exchange was retried the whole time.
    expect(exchange.calls).toBeGreaterThan(30);
  });

  it('retries a terminal error minutes apart when nothing is cached, not in a storm', async () => {
    const { clock, exchange, cache } = setup({ behaviour: 'deny', random: 0.5 });
    await cache.start();
    await clock.advance(HOUR);
    // 0.9 * 5 min = 270 s apart: the first call plus floor(3600 / 270) = 13 retries.
    expect(exchange.calls).toBe(14);
    const gaps = exchange.callTimes.slice(1).map((t, i) => t - exchange.callTimes[i]!);
    expect(gaps.every((g) => g >= 0.8 * TERMINAL_RETRY_MS)).toBe(true);
    expect(cache.status().lastError).toMatchObject({ kind: 'terminal', code: 'AccessDenied', message: 'STS refused the exchange: AccessDenied' });
    expect(cache.status().lastError?.hint).toMatch(/trust policy/);
  });

  it('retries a terminal error more often while old credentials are valid, bounded by max(30 s, remaining / 2)', async () => {
    const { clock, exchange, cache } = setup({ lifetimeMs: HOUR, random: 0.5 });
    await cache.start();
    const serveUntilMono = cache.current()!.serveUntilMono;
    exchange.behaviour = 'deny';
    await clock.advance(27.5 * MINUTE);
    const firstFailureCall = exchange.calls;
    expect(firstFailureCall).toBe(2);

    // Until the old credentials run out, each scheduled retry respects the bound.
    while (clock.monotonicNow() < serveUntilMono) {
      const [delay] = clock.pendingDelays();
      expect(delay).toBeDefined();
      const remaining = Math.max(0, serveUntilMono - clock.monotonicNow());
      const bound = remaining > 0 ? Math.max(30 * SECOND, remaining / 2) : TERMINAL_RETRY_MS;
      expect(delay!).toBeLessThanOrEqual(bound);
      expect(delay!).toBeGreaterThanOrEqual(24 * SECOND);
      await clock.advance(delay!);
    }
    // 31½ minutes of remaining validity never cost more than a few dozen calls.
    expect(exchange.calls - firstFailureCall).toBeLessThan(20);
    expect(exchange.calls - firstFailureCall).toBeGreaterThan(5);
  });
});

describe('retryAfterSeconds', () => {
  it('is 1 before anything is scheduled and while a fetch is in flight', async () => {
    const { exchange, cache } = setup({ behaviour: 'hang' });
    expect(cache.retryAfterSeconds()).toBe(1);
    void cache.start();
    expect(cache.retryAfterSeconds()).toBe(1);
    exchange.resolveNext();
    await settle();
  });

  it('reflects the next scheduled attempt after a terminal failure, counting down', async () => {
    const { clock, cache } = setup({ behaviour: 'deny', random: 0.5 });
    await cache.start();
    expect(cache.retryAfterSeconds()).toBe(270);
    await clock.advance(100 * SECOND);
    expect(cache.retryAfterSeconds()).toBe(170);
    await clock.advance(169 * SECOND + 500);
    // Half a second left: rounded up, never 0.
    expect(cache.retryAfterSeconds()).toBe(1);
  });

  it('is at least 1 for sub-second backoff', async () => {
    const { clock, cache } = setup({ behaviour: 'throttle', random: 0 });
    await cache.start();
    expect(clock.pendingDelays()).toEqual([500]);
    expect(cache.retryAfterSeconds()).toBe(1);
  });

  it('is at least 1 and at most 300 whatever the state', async () => {
    const { clock, cache } = setup({ behaviour: 'deny', random: 0.999 });
    await cache.start();
    for (let t = 0; t < HOUR; t += 13 * SECOND) {
      const s = cache.retryAfterSeconds();
      expect(s).toBeGreaterThanOrEqual(1);
      expect(s).toBeLessThanOrEqual(300);
      expect(Number.isInteger(s)).toBe(true);
      await clock.advance(13 * SECOND);
    }
  });
});

describe('status()', () => {
  it('reports nothing held before start', () => {
    const { cache } = setup();
    expect(cache.status()).toEqual({
      role: 'app',
      ready: false,
      expiresInSeconds: null,
      refreshing: false,
      consecutiveFailures: 0,
      lastError: null,
      nextAttemptInSeconds: null,
    });
  });

  it('reports refreshing while the first fetch is in flight', async () => {
    const { exchange, cache } = setup({ behaviour: 'hang' });
    void cache.start();
    expect(cache.status()).toMatchObject({ ready: false, refreshing: true, nextAttemptInSeconds: null });
    exchange.resolveNext();
    await settle();
    expect(cache.status().refreshing).toBe(false);
  });

  it('reports expiry and the next refresh after a success', async () => {
    const { clock, cache } = setup({ lifetimeMs: HOUR, random: 0 });
    await cache.start();
    expect(cache.status()).toEqual({
      role: 'app',
      ready: true,
      expiresInSeconds: 3600,
      refreshing: false,
      consecutiveFailures: 0,
      lastError: null,
      nextAttemptInSeconds: 1800,
    });
    await clock.advance(10 * MINUTE);
    expect(cache.status()).toMatchObject({ expiresInSeconds: 3000, nextAttemptInSeconds: 1200 });
  });

  it('reports the classified failure and the retry time after a failure', async () => {
    const { cache } = setup({ behaviour: 'throttle', random: 0.5 });
    await cache.start();
    await cache.refreshNow();
    expect(cache.status()).toEqual({
      role: 'app',
      ready: false,
      expiresInSeconds: null,
      refreshing: false,
      consecutiveFailures: 2,
      lastError: { kind: 'retryable', code: 'Throttling', message: 'STS answered Throttling' },
      nextAttemptInSeconds: 2,
    });
  });

  it('reports no next attempt after close, and close stops the schedule', async () => {
    const { clock, exchange, cache } = setup();
    await cache.start();
    cache.close();
    expect(cache.status().nextAttemptInSeconds).toBeNull();
    await clock.advance(5 * HOUR);
    expect(exchange.calls).toBe(1);
  });
});

/** Two identical caches holding 1-hour credentials, 5 minutes after their first fetch: one to jump, one to compare with. */
async function twinsFiveMinutesIn() {
  const jumped = setup({ lifetimeMs: HOUR, random: 0.5 });
  const control = setup({ lifetimeMs: HOUR, random: 0.5 });
  await jumped.cache.start();
  await control.cache.start();
  const before = jumped.cache.current();
  await jumped.clock.advance(5 * MINUTE);
  await control.clock.advance(5 * MINUTE);
  return { jumped, control, before };
}

describe('wall-clock jumps', () => {
  it('a -1 h step neither hides fresh credentials nor triggers extra exchanges (the monotonic clock rules)', async () => {
    const { jumped, control, before } = await twinsFiveMinutesIn();
    jumped.clock.jumpWall(-HOUR);
    await jumped.clock.advance(0);

    expect(jumped.cache.current()).toBe(before);
    expect(jumped.exchange.calls).toBe(1);
    // /readyz reports expiry as clients see it, by the host's (now earlier) wall clock.
    expect(jumped.cache.status().expiresInSeconds).toBe(control.cache.status().expiresInSeconds! + 3600);

    // Run both for several hours: the jumped cache calls STS exactly as often as the control.
    for (let t = 0; t < 4 * HOUR; t += MINUTE) {
      await jumped.clock.advance(MINUTE);
      await control.clock.advance(MINUTE);
      expect(jumped.cache.current()).toBeDefined();
      expect(jumped.exchange.calls).toBe(control.exchange.calls);
    }
    expect(jumped.exchange.calls).toBeGreaterThan(1);
  });

  it('a +1 h step (or a suspended VM) stops serving what clients would call expired, refreshes once, and does not storm', async () => {
    const { jumped, control, before } = await twinsFiveMinutesIn();
    jumped.clock.jumpWall(HOUR);
    // 55 min were left; by the wall clock they are gone: never served, and one refresh starts at once.
    expect(jumped.cache.current()).toBeUndefined();
    await jumped.clock.advance(0);
    expect(jumped.exchange.calls).toBe(2);
    const after = jumped.cache.current();
    expect(after).toBeDefined();
    expect(after).not.toBe(before);
    expect(after!.credentials.expirationWall - jumped.clock.wallNow()).toBeGreaterThan(50 * MINUTE);

    // From then on the schedule is as regular as the control's: one extra exchange in all.
    for (let t = 0; t < 4 * HOUR; t += MINUTE) {
      await jumped.clock.advance(MINUTE);
      await control.clock.advance(MINUTE);
      expect(jumped.cache.current()).toBeDefined();
      expect(jumped.exchange.calls - control.exchange.calls).toBeLessThanOrEqual(1);
    }
  });

  it('refuses credentials that look too short-lived by the host clock, with backoff, not a spin', async () => {
    const { clock, exchange, cache } = setup({ lifetimeMs: 2 * MINUTE });
    await cache.start();
    expect(cache.current()).toBeUndefined();
    expect(cache.status().lastError).toMatchObject({ kind: 'retryable', code: 'CROSSCRED_ERR_STS_BAD_RESPONSE' });
    await clock.advance(10 * MINUTE);
    // Backoff doubles from 1 s to the 60 s cap (×0.75 with this jitter draw): 19 attempts in ten
    // minutes, where an unguarded schedule would refresh every 0.2 × 2 min = 24 s… or spin at 0.
    expect(exchange.calls).toBeLessThanOrEqual(20);
  });

  it('schedules credentials that look longer than 12 h by the host clock as if they were 12 h', async () => {
    const { clock, exchange, cache } = setup({ lifetimeMs: 60 * 24 * HOUR, random: 0 });
    await cache.start();
    expect(cache.current()).toBeDefined();
    // 12 h lifetime keeps 6 h: refresh after 6 h, not after 30 days (nor at once, as an overflowing timer would).
    expect(clock.pendingDelays()).toEqual([6 * HOUR]);
    await clock.advance(HOUR);
    expect(exchange.calls).toBe(1);
  });
});

describe('exchange deadline', () => {
  it('frees the single-flight slot when an exchange never settles, and retries with backoff', async () => {
    const { clock, exchange, cache } = setup({ behaviour: 'hang' });
    void cache.start();
    await clock.advance(59 * SECOND);
    expect(cache.status().refreshing).toBe(true);
    await clock.advance(1 * SECOND);
    expect(cache.status()).toMatchObject({
      refreshing: false,
      consecutiveFailures: 1,
      lastError: { kind: 'retryable', code: 'CROSSCRED_ERR_STS_UNAVAILABLE' },
    });
    // The retry is a fresh exchange; answering it serves credentials.
    exchange.behaviour = 'succeed';
    await clock.advance(2 * SECOND);
    expect(exchange.calls).toBe(2);
    expect(cache.current()).toBeDefined();
  });
});

describe('turns shared by the roles of one STS client', () => {
  it("starts an exchange's deadline at its turn, not while it waits for one", async () => {
    const clock = new FakeClock();
    const turns = new Turns(1);
    const a = new ExchangeDouble(clock);
    const b = new ExchangeDouble(clock);
    a.behaviour = 'hang';
    b.behaviour = 'hang';
    const cacheA = new RoleCredentialCache({ exchange: a, clock, random: () => 0.5, logger, exchangeTimeoutMs: 10 * SECOND, turns });
    const cacheB = new RoleCredentialCache({ exchange: b, clock, random: () => 0.5, logger, exchangeTimeoutMs: 10 * SECOND, turns });
    caches.push(cacheA, cacheB);
    void cacheA.start();
    void cacheB.start();
    await settle();
    // One turn: B waits for it without calling STS.
    expect([a.calls, b.calls]).toEqual([1, 0]);
    await clock.advance(9 * SECOND);
    a.resolveNext();
    await settle();
    expect(cacheA.current()).toBeDefined();
    expect(b.calls).toBe(1);
    // 18 s since B's attempt began, 9 s since its turn: within its 10 s deadline.
    await clock.advance(9 * SECOND);
    expect(cacheB.status()).toMatchObject({ refreshing: true, consecutiveFailures: 0 });
    b.resolveNext();
    await settle();
    expect(cacheB.current()).toBeDefined();
    expect(b.calls).toBe(1);
  });

  it('releases a role still waiting for its turn when its cache is closed', async () => {
    const clock = new FakeClock();
    const turns = new Turns(1);
    const a = new ExchangeDouble(clock);
    const b = new ExchangeDouble(clock);
    a.behaviour = 'hang';
    const cacheA = new RoleCredentialCache({ exchange: a, clock, random: () => 0.5, logger, turns });
    const cacheB = new RoleCredentialCache({ exchange: b, clock, random: () => 0.5, logger, turns });
    caches.push(cacheA, cacheB);
    void cacheA.start();
    const waiting = cacheB.start();
    await settle();
    cacheB.close();
    await waiting;
    a.resolveNext();
    await settle();
    expect(b.calls).toBe(0);
  });
});

/** The access key id of AWS credentials (the only kind these tests make). */
function keyIdOf(credentials: CloudCredentials): string {
  if (credentials.cloud !== 'aws') throw new Error(`expected AWS credentials, got ${credentials.cloud}`);
  return credentials.accessKeyId;
}
