import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it, type TestContext } from 'vitest';
import type { StateStore, TenantBounds } from '../../src/issuer/state/ports.js';

/**
 * The one conformance suite of the issuer's state ports (src/issuer/state/ports.ts), run against
 * every backend by test/integration/issuer-state.test.ts, as dex runs its storages through
 * storage/conformance. A backend passes only if it keeps the same promises: first claim wins
 * (across replicas when it is shared), claims expire, one bucket however many replicas, first-use
 * binds once, bounds refuse only their own tenant, and an outage answers `unavailable`, then heals.
 *
 * Each test uses tenants of its own (a random suffix), so tests sharing one Redis do not meet.
 * No assertion depends on speed: waits are for a TTL to have passed (then anything later is
 * fine), and recovery is polled up to a generous deadline.
 */
export interface StateHarness {
  /** Why this backend cannot run here (each test then skips, saying so), or undefined. */
  skipReason(): string | undefined;
  /** A new store: a new replica. Two of them share state when `shared`. */
  open(bounds?: Partial<TenantBounds>): Promise<StateStore>;
  /** Whether two stores from open() share one state (Redis) or each has its own (memory). */
  readonly shared: boolean;
  /** Takes the backing service down and brings it back (Redis); absent for in-process state. */
  readonly outage?: { stop(): Promise<void>; start(): Promise<void> };
}

/** Long enough never to expire during a test, in ms. */
const LONG_TTL_MS = 10 * 60_000;
/** Short enough to wait out, in ms. */
const SHORT_TTL_MS = 300;
/** How long recovery may take on a busy machine before the test fails, in ms. */
const RECOVERY_DEADLINE_MS = 30_000;
/** One token per 100 minutes: no refill during a test. */
const NO_REFILL = { perMinute: 0.01 } as const;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function describeStateConformance(name: string, harness: StateHarness): void {
  describe(`state conformance: ${name}`, () => {
    const opened: StateStore[] = [];
    const open = async (bounds?: Partial<TenantBounds>) => {
      const store = await harness.open(bounds);
      opened.push(store);
      return store;
    };
    /** A second replica: a new store when state is shared, else the same store (one process). */
    const replicaOf = async (store: StateStore) => (harness.shared ? open() : store);
    const ready = (ctx: TestContext) => {
      const reason = harness.skipReason();
      if (reason !== undefined) ctx.skip(reason);
    };
    const tenant = () => `tenant-${randomUUID()}`;

    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close()));
    });

    it('the first claim wins: a replay is refused by the same replica, another replica, and one started later', async (ctx) => {
      ready(ctx);
      const a = await open();
      const b = await replicaOf(a);
      const t = tenant();
      expect(await a.replay.claim(t, 'attestation-1', LONG_TTL_MS)).toBe('accepted');
      expect(await b.replay.claim(t, 'attestation-1', LONG_TTL_MS)).toBe('replayed');
      expect(await a.replay.claim(t, 'attestation-1', LONG_TTL_MS)).toBe('replayed');
      if (harness.shared) {
        await a.close();
        const c = await open();
        expect(await c.replay.claim(t, 'attestation-1', LONG_TTL_MS)).toBe('replayed');
      }
    });

    it('claims racing for one key: exactly one is accepted', async (ctx) => {
      ready(ctx);
      const a = await open();
      const b = await replicaOf(a);
      const t = tenant();
      const verdicts = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).replay.claim(t, 'raced', LONG_TTL_MS)));
      expect(verdicts.filter((v) => v === 'accepted')).toHaveLength(1);
      expect(verdicts.filter((v) => v === 'replayed')).toHaveLength(19);
    });

    it('a claim is forgotten once its TTL has passed, and keys and tenants are independent', async (ctx) => {
      ready(ctx);
      const a = await open();
      const t = tenant();
      expect(await a.replay.claim(t, 'short', SHORT_TTL_MS)).toBe('accepted');
      expect(await a.replay.claim(t, 'long', LONG_TTL_MS)).toBe('accepted');
      expect(await a.replay.claim(tenant(), 'long', LONG_TTL_MS)).toBe('accepted');
      await sleep(SHORT_TTL_MS * 3);
      expect(await a.replay.claim(t, 'short', LONG_TTL_MS)).toBe('accepted');
      expect(await a.replay.claim(t, 'long', LONG_TTL_MS)).toBe('replayed');
    });

    it('a TTL outside 1 ms to a day is a caller bug, refused with RangeError', async (ctx) => {
      ready(ctx);
      const a = await open();
      await expect(a.replay.claim(tenant(), 'k', 0)).rejects.toThrow(RangeError);
      await expect(a.replay.claim(tenant(), 'k', 24 * 3600_000 + 1)).rejects.toThrow(RangeError);
      await expect(a.replay.claim(tenant(), 'k', 1.5)).rejects.toThrow(RangeError);
    });

    it('a rate limit is one bucket however many replicas take from it', async (ctx) => {
      ready(ctx);
      const a = await open();
      const b = await replicaOf(a);
      const t = tenant();
      const limit = { burst: 5, ...NO_REFILL };
      const verdicts = [];
      for (let i = 0; i < 12; i++) verdicts.push(await (i % 2 ? a : b).rateLimits.take(t, 'identity', limit));
      expect(verdicts.filter((v) => v.outcome === 'allowed')).toHaveLength(5);
      const limited = verdicts.slice(5);
      for (const v of limited) {
        expect(v.outcome).toBe('limited');
        // One token per 100 minutes: about 6,000 s until the next.
        if (v.outcome === 'limited') expect(v.retryAfterSeconds).toBeGreaterThan(5_000);
      }
      expect((await a.rateLimits.take(t, 'another identity', limit)).outcome).toBe('allowed');
      expect((await b.rateLimits.take(tenant(), 'identity', limit)).outcome).toBe('allowed');
    });

    it('a bucket refills by the store clock', async (ctx) => {
      ready(ctx);
      const a = await open();
      const b = await replicaOf(a);
      const t = tenant();
      // One token a second.
      const limit = { burst: 1, perMinute: 60 };
      expect((await a.rateLimits.take(t, 'identity', limit)).outcome).toBe('allowed');
      let limitedSeen = false;
      for (let i = 0; i < 50 && !limitedSeen; i++) {
        const v = await b.rateLimits.take(t, 'identity', limit);
        if (v.outcome === 'limited') {
          limitedSeen = true;
          expect(v.retryAfterSeconds).toBe(1);
        }
      }
      expect(limitedSeen).toBe(true);
      const until = Date.now() + RECOVERY_DEADLINE_MS;
      let allowedAgain = false;
      while (!allowedAgain && Date.now() < until) {
        await sleep(200);
        allowedAgain = (await a.rateLimits.take(t, 'identity', limit)).outcome === 'allowed';
      }
      expect(allowedAgain).toBe(true);
    });

    it('first use binds a hash once; later ones match or not; reset forgets it', async (ctx) => {
      ready(ctx);
      const a = await open();
      const b = await replicaOf(a);
      const t = tenant();
      const hash = 'sha256:aaaa';
      expect(await a.firstUse.verify(t, 'i-1', hash)).toBe('unknown');
      expect(await a.firstUse.bind(t, 'i-1', hash)).toBe('bound');
      expect(await b.firstUse.bind(t, 'i-1', hash)).toBe('matches');
      expect(await b.firstUse.bind(t, 'i-1', 'sha256:bbbb')).toBe('mismatch');
      expect(await b.firstUse.verify(t, 'i-1', hash)).toBe('matches');
      expect(await a.firstUse.verify(t, 'i-1', 'sha256:aaab')).toBe('mismatch');
      expect(await a.firstUse.verify(tenant(), 'i-1', hash)).toBe('unknown');
      expect(await b.firstUse.reset(t, 'i-1')).toBe('reset');
      expect(await a.firstUse.reset(t, 'i-1')).toBe('absent');
      expect(await a.firstUse.bind(t, 'i-1', 'sha256:bbbb')).toBe('bound');
    });

    it("a tenant at its bound is refused; another tenant is not, and the tenant's expired claims make room", async (ctx) => {
      ready(ctx);
      const a = await open({ maxClaimsPerTenant: 3, maxFirstUsePerTenant: 2 });
      const busy = tenant();
      const other = tenant();
      for (const k of ['k1', 'k2']) expect(await a.replay.claim(busy, k, LONG_TTL_MS)).toBe('accepted');
      expect(await a.replay.claim(busy, 'k3', SHORT_TTL_MS)).toBe('accepted');
      expect(await a.replay.claim(busy, 'k4', LONG_TTL_MS)).toBe('full');
      // At the bound a replay is still a replay, not a capacity refusal.
      expect(await a.replay.claim(busy, 'k1', LONG_TTL_MS)).toBe('replayed');
      expect(await a.replay.claim(other, 'k4', LONG_TTL_MS)).toBe('accepted');
      await sleep(SHORT_TTL_MS * 3);
      expect(await a.replay.claim(busy, 'k4', LONG_TTL_MS)).toBe('accepted');
      expect(await a.replay.claim(busy, 'k5', LONG_TTL_MS)).toBe('full');

      expect(await a.firstUse.bind(busy, 'i-1', 'h')).toBe('bound');
      expect(await a.firstUse.bind(busy, 'i-2', 'h')).toBe('bound');
      expect(await a.firstUse.bind(busy, 'i-3', 'h')).toBe('full');
      expect(await a.firstUse.bind(busy, 'i-1', 'h')).toBe('matches');
      expect(await a.firstUse.bind(other, 'i-3', 'h')).toBe('bound');
    });

    it('with the backing service down every call answers unavailable, and works again when it returns, with the same store', async (ctx) => {
      ready(ctx);
      const outage = harness.outage;
      if (outage === undefined) return ctx.skip('in-process state has no outage: it lives and dies with its process');
      const a = await open();
      const t = tenant();
      expect(await a.replay.claim(t, 'before', LONG_TTL_MS)).toBe('accepted');
      expect(a.health().ready).toBe(true);
      await outage.stop();
      try {
        const started = Date.now();
        for (let i = 0; i < 5; i++) expect(await a.replay.claim(t, `during-${i}`, LONG_TTL_MS)).toBe('unavailable');
        expect(await a.replay.claim(t, 'before', LONG_TTL_MS)).toBe('unavailable');
        expect((await a.rateLimits.take(t, 'identity', { burst: 5, ...NO_REFILL })).outcome).toBe('unavailable');
        expect(await a.firstUse.bind(t, 'i-1', 'h')).toBe('unavailable');
        expect(await a.firstUse.verify(t, 'i-1', 'h')).toBe('unavailable');
        expect(await a.firstUse.reset(t, 'i-1')).toBe('unavailable');
        // Fail fast, not after a long hang: generous for a busy machine, far below a client's patience.
        expect(Date.now() - started).toBeLessThan(15_000);
        const health = a.health();
        expect(health.ready).toBe(false);
        expect(health.problem).toMatch(/^[A-Za-z0-9_-]{1,40}$/);
      } finally {
        await outage.start();
      }
      const until = Date.now() + RECOVERY_DEADLINE_MS;
      let verdict = await a.replay.claim(t, 'after', LONG_TTL_MS);
      while (verdict === 'unavailable' && Date.now() < until) {
        await sleep(100);
        verdict = await a.replay.claim(t, 'after', LONG_TTL_MS);
      }
      expect(verdict).toBe('accepted');
      expect(await a.replay.claim(t, 'after', LONG_TTL_MS)).toBe('replayed');
      expect(a.health()).toEqual({ backend: a.health().backend, ready: true });
    });

    it('a closed store answers unavailable', async (ctx) => {
      ready(ctx);
      const a = await open();
      await a.close();
      expect(await a.replay.claim(tenant(), 'k', LONG_TTL_MS)).toBe('unavailable');
      expect((await a.rateLimits.take(tenant(), 'k', { burst: 1, ...NO_REFILL })).outcome).toBe('unavailable');
      expect(await a.firstUse.bind(tenant(), 'i', 'h')).toBe('unavailable');
      expect(a.health().ready).toBe(false);
    });
  });
}
