import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import {
  type EvictionCause,
  entryBytes,
  type FetchOutcome,
  NEGATIVE_TTL_MS,
  TokenKeyedCredentialCache,
  tokenKey,
} from '../../src/cache/token-keyed-credential-cache.js';
import type { CloudCredentials, CredentialExchange } from '../../src/exchange/credentials.js';
import { FakeClock } from '../support/fake-clock.js';

/**
 * The cache alone, over an in-memory implementation of the exchange port (the integration tests
 * run it against the STS emulator): bounds under many distinct tokens, LRU order, the negative
 * cache, and failures that leave nothing behind.
 */

const ROLE = 'arn:aws:iam::111122223333:role/app';
const HOUR = 3_600_000;

function setup(options: { maxEntries?: number; maxBytes?: number } = {}) {
  const clock = new FakeClock();
  const evictions: EvictionCause[] = [];
  let calls = 0;
  const cache = new TokenKeyedCredentialCache({
    maxEntries: options.maxEntries ?? 100,
    maxBytes: options.maxBytes ?? 64 * 1024 * 1024,
    idleMs: 15 * 60_000,
    clock,
    random: () => 0,
    logger: pino({ level: 'silent' }),
    onEviction: (cause) => evictions.push(cause),
  });
  /** An exchange that answers from memory, or fails with `failure` (an STS-shaped error). */
  const exchange = (failure?: { name: string; status: number }): CredentialExchange => ({
    roleName: ROLE,
    exchange: async (): Promise<CloudCredentials> => {
      calls++;
      if (failure) throw Object.assign(new Error('refused'), { name: failure.name, $metadata: { httpStatusCode: failure.status } });
      return {
        cloud: 'aws',
        accessKeyId: `ASIA${String(calls).padStart(16, '0')}`,
        secretAccessKey: 's'.repeat(40),
        sessionToken: 't'.repeat(800),
        expirationWall: clock.wallNow() + HOUR,
        roleArn: ROLE,
        accountId: '111122223333',
      };
    },
  });
  const request = (token: string, failure?: { name: string; status: number }) => ({
    tokenExpiresAtWall: clock.wallNow() + 24 * HOUR,
    tokenLength: token.length,
    exchange: exchange(failure),
  });
  /** What the agent does for one request: look up, and fetch on a miss. */
  const ask = async (token: string, failure?: { name: string; status: number }): Promise<FetchOutcome | { kind: 'cached-refusal' }> => {
    const key = tokenKey(ROLE, token);
    const found = cache.lookup(key);
    if (found.kind === 'hit') return { kind: 'credentials', credentials: found.credentials };
    if (found.kind === 'refused') return { kind: 'cached-refusal' };
    if (found.kind === 'pending') return found.outcome;
    return cache.fetch(key, request(token, failure));
  };
  return { clock, cache, evictions, ask, calls: () => calls };
}

describe('TokenKeyedCredentialCache', () => {
  it('keys by the exact token bytes and role', () => {
    expect(tokenKey(ROLE, 'a.b.c')).not.toBe(tokenKey(ROLE, 'a.b.c '));
    expect(tokenKey(ROLE, 'a.b.c')).not.toBe(tokenKey(`${ROLE}2`, 'a.b.c'));
    expect(tokenKey(ROLE, 'a.b.c')).not.toContain('a.b.c');
  });

  it('holds max entries under 20,000 distinct tokens, evicting the least recently used first', async () => {
    const { cache, evictions, ask, calls } = setup({ maxEntries: 500 });
    await ask('token-keep');
    for (let i = 0; i < 20_000; i++) {
      await ask(`token-${i}`);
      if (i % 100 === 0) await ask('token-keep'); // read often: never the least recently used
      expect(cache.size).toBeLessThanOrEqual(500);
    }
    expect(cache.size).toBe(500);
    expect(evictions.filter((c) => c === 'size')).toHaveLength(20_001 - 500);
    const before = calls();
    await ask('token-keep');
    await ask('token-19999');
    expect(calls()).toBe(before);
    await ask('token-0');
    expect(calls()).toBe(before + 1);
  }, 180_000);

  it('holds maxBytes under 20,000 distinct tokens', async () => {
    const maxBytes = 256 * 1024;
    const { cache, ask } = setup({ maxEntries: 100_000, maxBytes });
    const token = (i: number) => `${'x'.repeat(1000)}-${i}`;
    for (let i = 0; i < 20_000; i++) {
      await ask(token(i));
      expect(cache.bytes).toBeLessThanOrEqual(maxBytes);
    }
    const perEntry = cache.bytes / cache.size;
    expect(cache.size).toBe(Math.floor(maxBytes / perEntry));
    expect(perEntry).toBeGreaterThan(1000 + 2 * 800);
  }, 180_000);

  it('counts an entry for its real credentials once they arrive', async () => {
    const { cache, ask } = setup();
    const outcome = await ask('token-a');
    expect(outcome.kind).toBe('credentials');
    if (outcome.kind !== 'credentials') return;
    expect(cache.bytes).toBe(entryBytes('token-a'.length, outcome.credentials));
  });

  it('remembers a terminal refusal without the token, for at most 5 minutes', async () => {
    const { clock, cache, ask, calls } = setup();
    const refused = { name: 'InvalidIdentityToken', status: 400 };
    expect(await ask('forged', refused)).toEqual({ kind: 'refused', code: 'InvalidIdentityToken' });
    expect(cache.size).toBe(0);
    expect(cache.refusedSize).toBe(1);
    expect(await ask('forged', refused)).toEqual({ kind: 'cached-refusal' });
    expect(calls()).toBe(1);
    await clock.advance(NEGATIVE_TTL_MS);
    expect(await ask('forged', refused)).toEqual({ kind: 'refused', code: 'InvalidIdentityToken' });
    expect(calls()).toBe(2);
  });

  it('leaves nothing behind after a transient failure or an expired token, and says when to retry', async () => {
    const { clock, cache, ask, calls } = setup();
    const throttled = await ask('t', { name: 'Throttling', status: 400 });
    expect(throttled).toMatchObject({ kind: 'unavailable', code: 'Throttling' });
    expect((throttled as { retryAfterSeconds: number }).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(await ask('e', { name: 'ExpiredTokenException', status: 400 })).toEqual({ kind: 'token-expired' });
    expect(cache.size).toBe(0);
    expect(cache.refusedSize).toBe(0);
    // No retry timer of the failed entries is left running.
    await clock.advance(HOUR);
    expect(calls()).toBe(2);
  });

  it('shares one fetch among concurrent requests for a key', async () => {
    const { ask, calls } = setup();
    const outcomes = await Promise.all(Array.from({ length: 50 }, () => ask('same')));
    expect(calls()).toBe(1);
    expect(outcomes.every((o) => o.kind === 'credentials')).toBe(true);
  });

  it('stops every timer on close', async () => {
    const { clock, cache, ask } = setup();
    await ask('a');
    expect(clock.pendingDelays().length).toBeGreaterThan(0);
    cache.close();
    expect(clock.pendingDelays()).toEqual([]);
    expect(cache.size).toBe(0);
  });
});

describe('TokenKeyedCredentialCache: an entry evicted during its first fetch', () => {
  it('answers the waiting requests and leaves no timer behind', async () => {
    const { clock, cache, ask } = setup({ maxEntries: 1 });
    const first = ask('first');
    const second = ask('second'); // evicts "first" while its fetch is in flight
    expect((await first).kind).toBe('credentials');
    expect((await second).kind).toBe('credentials');
    expect(cache.size).toBe(1);
    // The idle sweep and the one stored entry's refresh: nothing of the evicted one.
    expect(clock.pendingDelays()).toHaveLength(2);
  });
});
