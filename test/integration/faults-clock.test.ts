import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MIN_REMAINING_TO_SERVE_MS, RETRY_CAP_MS } from '../../src/cache/refresh-policy.js';
import type { RandomSource } from '../../src/core/clock.js';
import { type Chain, type EndpointView, type InProcessDaemon, startChain, startInProcess, viewEndpoints } from '../support/chain.js';
import { FakeClock } from '../support/fake-clock.js';

/**
 * The host's wall clock jumps by an hour (issue 6, item 2) while STS's does not: an NTP step, an
 * operator's `date -s`, a VM resumed with a stale clock. test/unit/role-credential-cache.test.ts
 * covers the cache alone with an exchange whose Expiration follows the host's clock; here the
 * daemon talks to the STS emulator over loopback, and STS keeps true time (the fake monotonic
 * clock), as the real one does. Credentials must never be served once they are expired (or within
 * 60 s of it) by STS's clock nor by the host's, and the daemon must not storm STS.
 */

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const SESSION_SECONDS = 900;
/** 15-minute sessions are refreshed 1½–3 minutes after issue (80% kept, up to 10% jitter). */
const MIN_REFRESH_GAP_MS = 90 * SECOND;
const LOOK_EVERY_MS = 30 * SECOND;

let clock = new FakeClock(Date.now());
/** STS's time: where the host's wall clock started, moved only by the monotonic clock. */
let stsOrigin = { wall: 0, mono: 0 };
const stsNow = () => stsOrigin.wall + (clock.monotonicNow() - stsOrigin.mono);

let chain: Chain;
let d: InProcessDaemon | undefined;
let containerSecret = '';
let daemonCounter = 0;

beforeAll(async () => {
  chain = await startChain({ stsNow });
});
afterAll(() => chain?.close());
beforeEach(async () => {
  clock = new FakeClock(Date.now());
  stsOrigin = { wall: clock.wallNow(), mono: clock.monotonicNow() };
  await chain.writeToken({ ttlSeconds: 48 * 3600 });
});
afterEach(async () => {
  chain.sts.heal();
  await d?.close();
  d = undefined;
});

function seededRandom(seed: number): RandomSource {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function startDaemon(seed: number): Promise<void> {
  const authFile = join(chain.dir, `auth-token-${daemonCounter++}`);
  d = await startInProcess(chain, { 'duration-seconds': String(SESSION_SECONDS), 'auth-token-file': authFile }, {}, { clock, random: seededRandom(seed) });
  containerSecret = await readFile(authFile, 'utf8');
  await d.daemon.firstFetch;
}

const busy = () => d!.daemon.roles.get('app')!.cache.status().refreshing;

async function run(ms: number): Promise<void> {
  await clock.advanceSettling(ms, busy);
}

/**
 * Looks at both endpoints; a 200 must carry credentials with more than 60 s left by STS's clock
 * (when AWS stops accepting them) and by the host's (when the SDKs on this host stop using them).
 */
async function look(): Promise<EndpointView> {
  const view = await viewEndpoints(d!, { containerSecret });
  expect(view.container!.status).toBe(view.imds.status);
  expect(view.readyz.status).toBe(view.imds.status === 200 ? 200 : 503);
  if (view.imds.status === 200) {
    for (const text of [view.imds.text, view.container!.text]) {
      const expiration = Date.parse((JSON.parse(text) as { Expiration: string }).Expiration);
      expect(expiration - stsNow(), "served credentials that are (nearly) expired by STS's clock").toBeGreaterThan(MIN_REMAINING_TO_SERVE_MS);
      expect(expiration - clock.wallNow(), "served credentials that are (nearly) expired by the host's clock").toBeGreaterThan(MIN_REMAINING_TO_SERVE_MS);
    }
  } else {
    expect(view.imds.status).toBe(503);
    expect(view.imds.retryAfter).toMatch(/^[1-9][0-9]*$/);
    expect(view.container!.retryAfter).toMatch(/^[1-9][0-9]*$/);
  }
  return view;
}

/** Gaps between the STS requests made after index `from`, by STS's clock. */
function stsGaps(from: number): number[] {
  const times = chain.sts.requests.slice(from).map((r) => r.atWall);
  return times.slice(1).map((t, i) => t - times[i]!);
}

describe('the host clock steps back an hour', () => {
  it('keeps refreshing on the true schedule, never serves what STS considers expired, and stops serving at the true expiry when STS then fails', async () => {
    await startDaemon(3000);
    expect((await look()).imds.status).toBe(200);
    await run(MINUTE);
    const requestsBefore = chain.sts.requests.length;
    clock.jumpWall(-HOUR);

    // An hour with STS healthy: always served, always with real life left, refreshed at the
    // same cadence as before the jump (no storm, and no hour-long gap either).
    for (let t = 0; t < HOUR; t += LOOK_EVERY_MS) {
      await run(LOOK_EVERY_MS);
      expect((await look()).imds.status).toBe(200);
    }
    const gaps = stsGaps(requestsBefore - 1);
    for (const gap of gaps) {
      expect(gap).toBeGreaterThanOrEqual(MIN_REFRESH_GAP_MS);
      expect(gap).toBeLessThan(SESSION_SECONDS * SECOND - MIN_REMAINING_TO_SERVE_MS);
    }

    // STS fails: what is held is served until 60 s before it expires by STS's clock, then 503.
    chain.sts.failAlways({ kind: 'error', status: 503, code: 'ServiceUnavailable' });
    const last = chain.sts.issued.at(-1)!;
    let firstUnavailable: number | undefined;
    for (let t = 0; t < 16 * MINUTE; t += 15 * SECOND) {
      await run(15 * SECOND);
      const view = await look();
      if (view.imds.status === 503) firstUnavailable ??= stsNow();
      else expect(firstUnavailable, 'served again after it had stopped while STS still fails').toBeUndefined();
    }
    expect(firstUnavailable).toBeDefined();
    expect(firstUnavailable!).toBeLessThanOrEqual(last.expiration.getTime() - MIN_REMAINING_TO_SERVE_MS + 15 * SECOND);
  });
});

describe('the host clock steps forward an hour', () => {
  it('stops serving what the host now calls expired, does not storm STS while its answers look expired, and recovers once the clock is set right', async () => {
    await startDaemon(3001);
    expect((await look()).imds.status).toBe(200);
    await run(MINUTE);
    const requestsBefore = chain.sts.requests.length;
    clock.jumpWall(HOUR);

    // The 15-minute credentials are an hour past expiry by the host's clock: never served.
    const jumped = await look();
    expect(jumped.imds.status).toBe(503);
    for (let t = 0; t < 30 * MINUTE; t += LOOK_EVERY_MS) {
      await run(LOOK_EVERY_MS);
      const view = await look();
      expect(view.imds.status).toBe(503);
      expect(Number(view.imds.retryAfter)).toBeLessThanOrEqual(RETRY_CAP_MS / SECOND);
      expect(view.readyz.body.roles[0]!.lastError).toMatchObject({ kind: 'retryable', code: 'CROSSCRED_ERR_STS_BAD_RESPONSE' });
    }
    // Every answer from STS looks expired to this host: retried with backoff capped at 60 s,
    // not in a loop, and not driven by the requests (one every 20 s here).
    const calls = chain.sts.requests.length - requestsBefore;
    expect(calls).toBeGreaterThanOrEqual(1 + 25);
    expect(calls).toBeLessThanOrEqual(8 + Math.ceil((30 * MINUTE) / (RETRY_CAP_MS / 2)));
    for (const gap of stsGaps(requestsBefore).slice(7)) expect(gap).toBeGreaterThanOrEqual(RETRY_CAP_MS / 2);
    expect(d!.logs.some((l) => /NTP/.test(l))).toBe(true);

    // The host clock is set right again: served at the next retry, at most a minute later.
    clock.jumpWall(-HOUR);
    await run(RETRY_CAP_MS + 1);
    expect((await look()).imds.status).toBe(200);
  });
});

describe('the host clock was an hour slow and NTP steps it right', () => {
  it('never serves credentials past their true expiry before or after the correction', async () => {
    clock.jumpWall(-HOUR); // the host starts an hour behind STS
    await startDaemon(3002);
    for (let t = 0; t < 40 * MINUTE; t += LOOK_EVERY_MS) {
      await run(LOOK_EVERY_MS);
      expect((await look()).imds.status).toBe(200);
    }
    const requestsBefore = chain.sts.requests.length;
    clock.jumpWall(HOUR);
    for (let t = 0; t < 40 * MINUTE; t += LOOK_EVERY_MS) {
      await run(LOOK_EVERY_MS);
      expect((await look()).imds.status).toBe(200);
    }
    for (const gap of stsGaps(requestsBefore)) expect(gap).toBeGreaterThanOrEqual(MIN_REFRESH_GAP_MS);
  });
});
