import { describe, expect, it } from 'vitest';
import { IdentityRateLimiter, rateLimitKey } from '../../src/issuer/rate-limiter.js';
import { MAX_REPLAY_WINDOW_MS, ReplayGuard } from '../../src/issuer/replay-guard.js';

const T0 = Date.UTC(2026, 10, 30, 12);

describe('replay guard', () => {
  it('accepts an attestation once, until its window ends', () => {
    const guard = new ReplayGuard(10);
    expect(guard.check('a', T0 + 60_000, T0)).toBe('fresh');
    expect(guard.check('a', T0 + 60_000, T0 + 1)).toBe('replayed');
    expect(guard.check('b', T0 + 60_000, T0 + 1)).toBe('fresh');
    // Past its window the attestor refuses it anyway; the guard forgets it.
    expect(guard.check('c', T0 + 120_000, T0 + 61_000)).toBe('fresh');
    expect(guard.size).toBe(1);
  });

  it('refuses stale attestations and windows longer than it keeps records', () => {
    const guard = new ReplayGuard(10);
    expect(guard.check('a', T0, T0)).toBe('stale');
    expect(guard.check('a', T0 + MAX_REPLAY_WINDOW_MS + 1, T0)).toBe('window-too-long');
    expect(guard.size).toBe(0);
  });

  it('stays within its bound: refuses new attestations while full, accepts again as entries expire', () => {
    const guard = new ReplayGuard(100);
    for (let i = 0; i < 100; i++) expect(guard.check(`k${i}`, T0 + 60_000 + i, T0)).toBe('fresh');
    expect(guard.check('one-more', T0 + 60_000, T0 + 10)).toBe('full');
    expect(guard.size).toBe(100);
    // A replay is still recognised while full.
    expect(guard.check('k5', T0 + 60_000, T0 + 10)).toBe('replayed');
    expect(guard.check('later', T0 + 200_000, T0 + 60_050)).toBe('fresh');
    expect(guard.size).toBeLessThanOrEqual(100);
  });

  it('finds expired entries behind a long-lived one when full', () => {
    const guard = new ReplayGuard(100);
    expect(guard.check('long', T0 + 3_600_000, T0)).toBe('fresh');
    for (let i = 0; i < 99; i++) guard.check(`short${i}`, T0 + 1_000, T0);
    expect(guard.check('x', T0 + 5_000, T0 + 2_000)).toBe('fresh');
    expect(guard.size).toBe(2);
  });
});

describe('identity rate limiter', () => {
  it('allows a burst, then one request per refill interval, with Retry-After', () => {
    const limiter = new IdentityRateLimiter({ burst: 3, perMinute: 6, maxIdentities: 100 });
    for (let i = 0; i < 3; i++) expect(limiter.take('a', 0)).toEqual({ allowed: true });
    expect(limiter.take('a', 0)).toEqual({ allowed: false, retryAfterSeconds: 10, full: false });
    expect(limiter.take('b', 0)).toEqual({ allowed: true });
    expect(limiter.take('a', 4_000)).toEqual({ allowed: false, retryAfterSeconds: 6, full: false });
    expect(limiter.take('a', 10_100)).toEqual({ allowed: true });
    expect(limiter.take('a', 10_100)).toMatchObject({ allowed: false });
  });

  it('keeps at most maxIdentities buckets, dropping refilled ones before refusing', () => {
    const limiter = new IdentityRateLimiter({ burst: 2, perMinute: 60, maxIdentities: 100 });
    for (let i = 0; i < 100; i++) expect(limiter.take(`id${i}`, 0)).toEqual({ allowed: true });
    expect(limiter.take('new', 0)).toEqual({ allowed: false, retryAfterSeconds: 1, full: true });
    // After 1 s every bucket has refilled (1 token per second, burst 2, one was used): room again.
    expect(limiter.take('new', 1_100)).toEqual({ allowed: true });
    expect(limiter.size).toBe(1);
  });

  it('keys buckets by the attested identity', () => {
    expect(rateLimitKey({ kind: 'k', accountId: '1', instanceId: 'i-1' })).not.toBe(rateLimitKey({ kind: 'k', accountId: '1', instanceId: 'i-2' }));
    expect(rateLimitKey({ kind: 'k', accountId: '1', roleName: 'r' })).not.toBe(rateLimitKey({ kind: 'k', accountId: '1', roleName: 's' }));
    // A CAM role names no instance: its session is the workload.
    const cam = (session: string) => rateLimitKey({ kind: 'k', accountId: '1', roleId: 'r', attributes: { 'session-name': session } });
    expect(cam('ins-1')).not.toBe(cam('ins-2'));
    expect(cam('ins-1')).toBe(cam('ins-1'));
  });
});

describe('replay guard shares (issue #11 item 4)', () => {
  it('lets no tenant hold more than half of the set: the next one from it is refused, others are still accepted', () => {
    const guard = new ReplayGuard(100);
    for (let i = 0; i < 50; i++) expect(guard.check(`a${i}`, T0 + 60_000, T0, 'alibaba:1')).toBe('fresh');
    expect(guard.check('a-more', T0 + 60_000, T0 + 1, 'alibaba:1')).toBe('tenant-full');
    expect(guard.sizeOf('alibaba:1')).toBe(50);
    for (let i = 0; i < 50; i++) expect(guard.check(`b${i}`, T0 + 60_000, T0 + 1, 'tencent:2')).toBe('fresh');
    // A replay is still recognised for a tenant at its share.
    expect(guard.check('a0', T0 + 60_000, T0 + 2, 'alibaba:1')).toBe('replayed');
  });

  it("gives a tenant's share back as its entries expire", () => {
    const guard = new ReplayGuard(100);
    for (let i = 0; i < 50; i++) expect(guard.check(`a${i}`, T0 + 1_000, T0, 'alibaba:1')).toBe('fresh');
    expect(guard.check('late', T0 + 60_000, T0 + 500, 'alibaba:1')).toBe('tenant-full');
    expect(guard.check('later', T0 + 60_000, T0 + 2_000, 'alibaba:1')).toBe('fresh');
    expect(guard.sizeOf('alibaba:1')).toBe(1);
    expect(guard.size).toBe(1);
  });
});
