import { describe, expect, it } from 'vitest';
import { MemoryStateStore } from '../../src/issuer/state/memory-store.js';
import { rateLimitKey } from '../../src/issuer/state-keys.js';
import { FakeClock } from '../support/fake-clock.js';

/**
 * The in-process state of `state: memory` as the issuer sizes it (issuer-server.ts memoryState):
 * bounded in all and per tenant, expired entries dropped before anything is refused. The rules
 * every backend shares (Redis too) are in test/support/state-conformance.ts; these are the
 * memory backend's bounds over all tenants.
 */
const A = 'alibaba:1';
const B = 'tencent:2';

function store(limits: ConstructorParameters<typeof MemoryStateStore>[0]) {
  const clock = new FakeClock();
  return { clock, state: new MemoryStateStore(limits, clock) };
}

describe('replay claims in memory', () => {
  it('accepts an attestation once, until its TTL ends', async () => {
    const { clock, state } = store({});
    expect(await state.replay.claim(A, 'a', 60_000)).toBe('accepted');
    expect(await state.replay.claim(A, 'a', 60_000)).toBe('replayed');
    expect(await state.replay.claim(A, 'b', 60_000)).toBe('accepted');
    await clock.advance(60_001);
    expect(await state.replay.claim(A, 'a', 60_000)).toBe('accepted');
  });

  it('stays within its bound over all tenants: refuses while every claim lives, recognises a replay, accepts again as claims expire', async () => {
    const { clock, state } = store({ maxClaims: 100, maxClaimsPerTenant: 50 });
    for (let i = 0; i < 50; i++) expect(await state.replay.claim(A, `a${i}`, 60_000 + i)).toBe('accepted');
    for (let i = 0; i < 50; i++) expect(await state.replay.claim(B, `b${i}`, 60_000 + i)).toBe('accepted');
    expect(state.replay.table.size).toBe(100);
    expect(await state.replay.claim(B, 'one-more', 60_000)).toBe('full');
    expect(await state.replay.claim('alibaba:3', 'newcomer', 60_000)).toBe('full');
    expect(await state.replay.claim(A, 'a5', 60_000)).toBe('replayed');
    await clock.advance(60_050);
    expect(await state.replay.claim('alibaba:3', 'newcomer', 60_000)).toBe('accepted');
    // The sweep that made room must not drop the newcomer's own (still empty) tenant: its claim is kept.
    expect(await state.replay.claim('alibaba:3', 'newcomer', 60_000)).toBe('replayed');
    expect(state.replay.table.size).toBe(1);
  });

  it('finds expired claims behind a long-lived one at the bound', async () => {
    const { clock, state } = store({ maxClaims: 100, maxClaimsPerTenant: 100 });
    expect(await state.replay.claim(A, 'long', 3_600_000)).toBe('accepted');
    for (let i = 0; i < 99; i++) await state.replay.claim(A, `short${i}`, 1_000);
    await clock.advance(2_000);
    expect(await state.replay.claim(A, 'x', 5_000)).toBe('accepted');
    expect(state.replay.table.size).toBe(2);
  });

  it('lets no tenant hold more than its share: the next claim from it is refused, another tenant is still accepted (issue #11 item 4)', async () => {
    const { clock, state } = store({ maxClaims: 100, maxClaimsPerTenant: 50 });
    for (let i = 0; i < 50; i++) expect(await state.replay.claim(A, `a${i}`, 1_000)).toBe('accepted');
    expect(await state.replay.claim(A, 'a-more', 60_000)).toBe('full');
    for (let i = 0; i < 50; i++) expect(await state.replay.claim(B, `b${i}`, 60_000)).toBe('accepted');
    expect(await state.replay.claim(A, 'a0', 1_000)).toBe('replayed');
    // The tenant's share comes back as its claims expire.
    await clock.advance(1_500);
    expect(await state.replay.claim(A, 'later', 60_000)).toBe('accepted');
  });
});

describe('rate-limit buckets in memory', () => {
  it('allows a burst, then one request per refill interval, with Retry-After', async () => {
    const { clock, state } = store({});
    const limit = { burst: 3, perMinute: 6 };
    for (let i = 0; i < 3; i++) expect(await state.rateLimits.take(A, 'a', limit)).toEqual({ outcome: 'allowed' });
    expect(await state.rateLimits.take(A, 'a', limit)).toEqual({ outcome: 'limited', retryAfterSeconds: 10 });
    expect(await state.rateLimits.take(A, 'b', limit)).toEqual({ outcome: 'allowed' });
    await clock.advance(4_000);
    expect(await state.rateLimits.take(A, 'a', limit)).toEqual({ outcome: 'limited', retryAfterSeconds: 6 });
    await clock.advance(6_100);
    expect(await state.rateLimits.take(A, 'a', limit)).toEqual({ outcome: 'allowed' });
    expect(await state.rateLimits.take(A, 'a', limit)).toMatchObject({ outcome: 'limited' });
  });

  it('keeps at most maxBuckets in all, dropping refilled ones before refusing', async () => {
    const { clock, state } = store({ maxBuckets: 100, maxBucketsPerTenant: 50 });
    const limit = { burst: 2, perMinute: 60 };
    for (let i = 0; i < 50; i++) expect(await state.rateLimits.take(A, `a${i}`, limit)).toEqual({ outcome: 'allowed' });
    expect(await state.rateLimits.take(A, 'a-more', limit)).toMatchObject({ outcome: 'full' });
    for (let i = 0; i < 50; i++) expect(await state.rateLimits.take(B, `b${i}`, limit)).toEqual({ outcome: 'allowed' });
    expect(await state.rateLimits.take('alibaba:3', 'new', limit)).toMatchObject({ outcome: 'full' });
    // After 1 s every bucket has refilled (1 token a second, burst 2, one used): room again.
    await clock.advance(1_100);
    expect(await state.rateLimits.take('alibaba:3', 'new', limit)).toEqual({ outcome: 'allowed' });
    expect(state.rateLimits.table.size).toBe(1);
  });
});

describe('rateLimitKey', () => {
  it('keys buckets by the attested workload', () => {
    expect(rateLimitKey({ kind: 'k', accountId: '1', instanceId: 'i-1' })).not.toBe(rateLimitKey({ kind: 'k', accountId: '1', instanceId: 'i-2' }));
    expect(rateLimitKey({ kind: 'k', accountId: '1', roleName: 'r' })).not.toBe(rateLimitKey({ kind: 'k', accountId: '1', roleName: 's' }));
    // A CAM role names no instance: its session is the workload.
    const cam = (session: string) => rateLimitKey({ kind: 'k', accountId: '1', roleId: 'r', attributes: { 'session-name': session } });
    expect(cam('ins-1')).not.toBe(cam('ins-2'));
    expect(cam('ins-1')).toBe(cam('ins-1'));
  });
});
