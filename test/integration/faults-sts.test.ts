import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  MIN_LIFETIME_MS,
  MIN_REMAINING_TO_SERVE_MS,
  RETRY_BASE_MS,
  RETRY_CAP_MS,
  TERMINAL_RETRY_MIN_MS,
  TERMINAL_RETRY_MS,
} from '../../src/cache/refresh-policy.js';
import type { ServeFlags } from '../../src/config/load.js';
import type { RandomSource } from '../../src/core/clock.js';
import type { StsFault } from '../../src/demo/sts-emulator.js';
import { type Chain, type EndpointView, type InProcessDaemon, startChain, startInProcess, viewEndpoints } from '../support/chain.js';
import { FakeClock } from '../support/fake-clock.js';

/**
 * Fault injection at STS (issue 6, item 2): the in-process daemon talks to the STS emulator over
 * real loopback sockets, with a fake clock and a seeded random source, so hours of schedule run
 * in seconds and every retry instant can be measured exactly. STS's clock is the fake wall clock.
 *
 * What every test checks at every instant it looks (expectHonest): both credential endpoints and
 * /readyz agree; a 200 carries complete credentials with more than 60 s left; anything else is a
 * 503 with Retry-After and no key in it.
 */

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
/** Sessions asked of STS in these tests: the shortest it issues, so a lifetime runs in few steps. */
const SESSION_SECONDS = 900;
/** How often the tests look at the endpoints while fake time runs. */
const LOOK_EVERY_MS = 30 * SECOND;

let clock = new FakeClock(Date.now());
let chain: Chain;
let d: InProcessDaemon | undefined;
let containerSecret = '';
let stsRefusing = false;
let daemonCounter = 0;

beforeAll(async () => {
  chain = await startChain({ stsNow: () => clock.wallNow() });
});
afterAll(() => chain?.close());
beforeEach(async () => {
  clock = new FakeClock(Date.now());
  // Minted at real time, so it must outlive every fake-clock span below.
  await chain.writeToken({ ttlSeconds: 48 * 3600 });
});
afterEach(async () => {
  chain.sts.heal();
  if (stsRefusing) await chain.sts.acceptConnections();
  stsRefusing = false;
  await d?.close();
  d = undefined;
});

/** A small seeded PRNG (mulberry32): varied like Math.random, but the same on every run. */
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

async function startDaemon(seed: number, flags: ServeFlags = {}): Promise<InProcessDaemon> {
  const authFile = join(chain.dir, `auth-token-${daemonCounter++}`);
  d = await startInProcess(
    chain,
    { 'duration-seconds': String(SESSION_SECONDS), 'auth-token-file': authFile, ...flags },
    {},
    { clock, random: seededRandom(seed) },
  );
  containerSecret = await readFile(authFile, 'utf8');
  await d.daemon.firstFetch;
  return d;
}

function cache() {
  return d!.daemon.roles.get('app')!.cache;
}

/** True while an exchange is on the wire: fake time waits for it (see FakeClock.advanceSettling). */
const busy = () => cache().status().refreshing;

/**
 * Records the fake wall instant of every failed exchange: `consecutiveFailures` grows by exactly
 * one per attempt, so a jump of two in one instant would be a storm and fails the test. Made
 * right after a failed first fetch, it counts that one as happening now.
 */
function failureRecorder() {
  let last = cache().status().consecutiveFailures;
  expect(last).toBeLessThanOrEqual(1);
  const at: number[] = last === 1 ? [clock.wallNow()] : [];
  const record = () => {
    const n = cache().status().consecutiveFailures;
    if (n > last) {
      expect(n - last, 'more than one exchange at one instant').toBe(1);
      at.push(clock.wallNow());
    }
    last = n;
  };
  return { at, record };
}

async function run(ms: number, record?: () => void): Promise<void> {
  await clock.advanceSettling(ms, busy, record ? { afterEach: record } : {});
}

/** Looks at every endpoint now, checks that what it sees is honest, and returns it. */
async function look(): Promise<EndpointView> {
  const view = await viewEndpoints(d!, { containerSecret });
  expectHonest(view, clock.wallNow());
  return view;
}

function expectHonest(view: EndpointView, nowWall: number): void {
  const container = view.container!;
  expect(container.status, 'IMDS and the container endpoint disagree').toBe(view.imds.status);
  if (view.imds.status === 200) {
    expect(view.readyz.status).toBe(200);
    const imdsDoc = JSON.parse(view.imds.text) as Record<string, string>;
    const containerDoc = JSON.parse(container.text) as Record<string, string>;
    expect(imdsDoc['Code']).toBe('Success');
    for (const doc of [imdsDoc, containerDoc]) {
      expect(doc['AccessKeyId']).toMatch(/^ASIA[A-Z0-9]{16}$/);
      expect(doc['SecretAccessKey']!.length).toBeGreaterThan(0);
      expect(doc['Token']!.length).toBeGreaterThan(0);
      // Within 60 s of expiry credentials are never served.
      expect(Date.parse(doc['Expiration']!) - nowWall).toBeGreaterThan(MIN_REMAINING_TO_SERVE_MS);
    }
    expect(containerDoc['AccessKeyId']).toBe(imdsDoc['AccessKeyId']);
    expect(containerDoc['Expiration']).toBe(imdsDoc['Expiration']);
    return;
  }
  expect(view.imds.status).toBe(503);
  expect(view.readyz.status).toBe(503);
  const next = view.readyz.body.roles[0]!.nextAttemptInSeconds;
  for (const answer of [view.imds, container]) {
    expect(answer.retryAfter).toMatch(/^[1-9][0-9]*$/);
    expect(Number(answer.retryAfter)).toBeLessThanOrEqual(300);
    // Retry-After points at the next attempt (rounded up; /readyz rounds to nearest).
    if (next !== null && next >= 1) expect(Math.abs(Number(answer.retryAfter) - next)).toBeLessThanOrEqual(1);
    expect(answer.text).toContain('CROSSCRED_ERR_CREDENTIALS_UNAVAILABLE');
    expect(answer.text).not.toMatch(/ASIA[A-Z0-9]{16}/);
  }
  expect(JSON.parse(container.text)).toMatchObject({ Code: 'CROSSCRED_ERR_CREDENTIALS_UNAVAILABLE' });
}

function accessKeyOf(view: EndpointView): string {
  return (JSON.parse(view.imds.text) as { AccessKeyId: string }).AccessKeyId;
}

/**
 * Gaps between consecutive retryable failures follow "equal jitter" exponential backoff: after
 * failure n the wait is in [e/2, e] with e = min(60 s, 1 s × 2^(n-1)). Returns the gaps.
 */
function expectRetryableBackoff(failures: readonly number[]): number[] {
  const gaps = failures.slice(1).map((t, i) => t - failures[i]!);
  gaps.forEach((gap, i) => {
    const e = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** i);
    expect(gap, `gap after failure ${i + 1}`).toBeGreaterThanOrEqual(e / 2);
    expect(gap, `gap after failure ${i + 1}`).toBeLessThanOrEqual(e);
  });
  return gaps;
}

async function metricsText(): Promise<string> {
  const res = await request(`${d!.admin}/metrics`);
  return res.body.text();
}

interface FaultCase {
  readonly name: string;
  /** Makes STS misbehave. */
  readonly apply: () => void | Promise<void>;
  /** False when nothing reaches STS at all (the connection is refused). */
  readonly reachesSts: boolean;
  /** The code /readyz and the metrics show for the failure. */
  readonly code: string | RegExp;
  readonly flags?: ServeFlags;
}

const faultOf = (fault: StsFault) => () => chain.sts.failAlways(fault);

const CASES: FaultCase[] = [
  {
    name: 'refuses connections (nothing listening)',
    apply: async () => {
      stsRefusing = true;
      await chain.sts.refuseConnections();
    },
    reachesSts: false,
    code: 'ECONNREFUSED',
  },
  { name: 'answers 500 InternalFailure', apply: faultOf({ kind: 'error', status: 500, code: 'InternalFailure' }), reachesSts: true, code: 'InternalFailure' },
  {
    name: 'answers 503 ServiceUnavailable',
    apply: faultOf({ kind: 'error', status: 503, code: 'ServiceUnavailable' }),
    reachesSts: true,
    code: 'ServiceUnavailable',
  },
  {
    name: "answers 503 with a load balancer's HTML page",
    apply: faultOf({ kind: 'raw', status: 503, body: '<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>' }),
    reachesSts: true,
    code: 'HTTP503',
  },
  { name: 'answers Throttling', apply: faultOf({ kind: 'error', status: 400, code: 'Throttling' }), reachesSts: true, code: 'Throttling' },
  {
    name: 'answers IDPCommunicationError',
    apply: faultOf({ kind: 'error', status: 400, code: 'IDPCommunicationError' }),
    reachesSts: true,
    code: 'IDPCommunicationError',
  },
  {
    name: 'hangs past the timeout',
    apply: faultOf({ kind: 'hang' }),
    reachesSts: true,
    // The whole-request deadline (connect + response timeouts) or undici's headers timeout
    // (its timers are coarse, ~0.5 s), whichever fires first. Short, as each attempt costs real time.
    code: /^(TimeoutError|UND_ERR_HEADERS_TIMEOUT)$/,
    flags: { 'sts-connect-timeout-ms': '100', 'sts-timeout-ms': '100' },
  },
  { name: 'resets the connection', apply: faultOf({ kind: 'reset' }), reachesSts: true, code: 'UND_ERR_SOCKET' },
  { name: 'answers garbage instead of XML', apply: faultOf({ kind: 'garbage' }), reachesSts: true, code: 'UnexpectedError' },
  {
    name: 'answers credentials that are already expired',
    apply: faultOf({ kind: 'lifetime', seconds: -10 }),
    reachesSts: true,
    code: 'CROSSCRED_ERR_STS_BAD_RESPONSE',
  },
  {
    name: 'answers credentials that expire in 30 s',
    apply: faultOf({ kind: 'lifetime', seconds: 30 }),
    reachesSts: true,
    code: 'CROSSCRED_ERR_STS_BAD_RESPONSE',
  },
  {
    name: 'answers credentials that expire in 4 minutes',
    apply: faultOf({ kind: 'lifetime', seconds: 240 }),
    reachesSts: true,
    code: 'CROSSCRED_ERR_STS_BAD_RESPONSE',
  },
];

describe('STS fails while credentials are cached', () => {
  CASES.forEach((c, index) => {
    it(`STS ${c.name}: the cached credentials are served while valid, retries back off with jitter, /readyz turns 503 before expiry, then 503 with Retry-After`, async () => {
      await startDaemon(1000 + index, c.flags);
      const first = await look();
      expect(first.imds.status).toBe(200);
      const held = accessKeyOf(first);
      const expiration = Date.parse((JSON.parse(first.imds.text) as { Expiration: string }).Expiration);
      const serveUntil = expiration - MIN_REMAINING_TO_SERVE_MS;
      const requestsBefore = chain.sts.requests.length;
      const issuedBefore = chain.sts.issued.length;

      await c.apply();
      const failures = failureRecorder();
      const served = new Set<string>();

      // While valid: the held credentials, and nothing else, every time anyone looks.
      while (clock.wallNow() + LOOK_EVERY_MS < serveUntil) {
        await run(LOOK_EVERY_MS, failures.record);
        const view = await look();
        expect(view.imds.status).toBe(200);
        expect(accessKeyOf(view)).toBe(held);
        served.add(accessKeyOf(view));
      }
      expect(failures.at.length, 'STS was retried while the old credentials were served').toBeGreaterThanOrEqual(8);
      const status = cache().status();
      expect(status.lastError?.kind).toBe('retryable');
      expect(status.lastError?.code).toMatch(c.code);

      // The boundary: served 1 ms before expiry − 60 s; from then on /readyz is 503 and so is every endpoint.
      await run(serveUntil - 1 - clock.wallNow(), failures.record);
      expect((await look()).imds.status).toBe(200);
      await run(1, failures.record);
      const after = await look();
      expect(after.imds.status).toBe(503);
      expect(after.readyz.body.ready).toBe(false);
      expect(clock.wallNow()).toBeLessThan(expiration);

      // Nothing valid left: 503 with Retry-After (at most the 60 s backoff cap) for as long as STS fails.
      for (let t = 0; t < 3 * MINUTE; t += LOOK_EVERY_MS) {
        await run(LOOK_EVERY_MS, failures.record);
        const view = await look();
        expect(view.imds.status).toBe(503);
        expect(Number(view.imds.retryAfter)).toBeLessThanOrEqual(RETRY_CAP_MS / SECOND);
      }

      // Backoff: exponential with equal jitter, capped at 60 s, and the jitter really varies.
      const gaps = expectRetryableBackoff(failures.at);
      const capped = gaps.slice(7);
      expect(capped.length).toBeGreaterThanOrEqual(5);
      expect(new Set(capped.map((g) => Math.round(g))).size, 'capped retry gaps all identical: no jitter').toBeGreaterThan(capped.length / 2);
      const span = failures.at.at(-1)! - failures.at[0]!;
      expect(failures.at.length).toBeLessThanOrEqual(7 + Math.ceil(span / (RETRY_CAP_MS / 2)));

      // STS saw exactly the attempts the daemon counted (none when nothing listened).
      const reached = chain.sts.requests.slice(requestsBefore);
      if (c.reachesSts) expect(reached.map((r) => r.atWall)).toEqual(failures.at);
      else expect(reached).toEqual([]);

      // Short-lived credentials STS issued during the fault were never served.
      const shortLived = chain.sts.issued.slice(issuedBefore).map((i) => i.accessKeyId);
      for (const key of shortLived) expect(served.has(key)).toBe(false);

      const metrics = await metricsText();
      let counted = 0;
      for (const [, code, n] of metrics.matchAll(/^crosscred_sts_calls_total\{role="app",outcome="retryable",code="([^"]*)"\} (\d+)$/gm)) {
        expect(code).toMatch(c.code);
        counted += Number(n);
      }
      expect(counted).toBe(failures.at.length);
      expect(metrics).toMatch(/crosscred_role_ready\{role="app"\} 0/);

      // STS heals: the next retry (at most 60 s away) gets fresh credentials.
      if (stsRefusing) await chain.sts.acceptConnections();
      stsRefusing = false;
      chain.sts.heal();
      await run(RETRY_CAP_MS + 1);
      const healed = await look();
      expect(healed.imds.status).toBe(200);
      expect(accessKeyOf(healed)).not.toBe(held);
      expect(healed.readyz.body.roles[0]).toMatchObject({ ready: true, consecutiveFailures: 0, lastError: null });
    });
  });
});

describe('STS fails from the start', () => {
  it('STS down at start-up: 503 with Retry-After on both endpoints, /readyz says why, served once STS is back', async () => {
    stsRefusing = true;
    await chain.sts.refuseConnections();
    await startDaemon(7);
    const failures = failureRecorder();
    const view = await look();
    expect(view.imds.status).toBe(503);
    expect(view.readyz.body.roles[0]).toMatchObject({ ready: false, consecutiveFailures: 1, lastError: { kind: 'retryable', code: 'ECONNREFUSED' } });
    for (let t = 0; t < 10 * MINUTE; t += LOOK_EVERY_MS) {
      await run(LOOK_EVERY_MS, failures.record);
      expect((await look()).imds.status).toBe(503);
    }
    expect(failures.at.length).toBeLessThanOrEqual(7 + Math.ceil((10 * MINUTE) / (RETRY_CAP_MS / 2)));
    await chain.sts.acceptConnections();
    stsRefusing = false;
    await run(RETRY_CAP_MS + 1);
    expect((await look()).imds.status).toBe(200);
  });

  it('refuses credentials that expire in 30 s at start-up: never served, retried with backoff', async () => {
    chain.sts.failAlways({ kind: 'lifetime', seconds: 30 });
    const issuedBefore = chain.sts.issued.length;
    await startDaemon(8);
    const failures = failureRecorder();
    for (let t = 0; t < 10 * MINUTE; t += LOOK_EVERY_MS) {
      await run(LOOK_EVERY_MS, failures.record);
      const view = await look();
      expect(view.imds.status).toBe(503);
      expect(view.readyz.body.roles[0]!.lastError).toMatchObject({ kind: 'retryable', code: 'CROSSCRED_ERR_STS_BAD_RESPONSE' });
    }
    expectRetryableBackoff(failures.at);
    // STS did issue them each time; they were refused (STS issues at least 15 min, so anything
    // under MIN_LIFETIME_MS means a wrong clock or not STS).
    expect(chain.sts.issued.length - issuedBefore).toBe(failures.at.length);
    expect(MIN_LIFETIME_MS).toBeGreaterThan(30 * SECOND);
  });
});

describe('terminal STS errors', () => {
  it('AccessDenied with nothing cached: one attempt every 4–5 minutes over 6 hours, visible in /readyz, logs and metrics, and picked up once fixed', async () => {
    // A real AccessDenied: the token's subject is not the one the role's trust policy allows.
    await chain.writeToken({ sub: 'system:serviceaccount:payments:intruder', ttlSeconds: 48 * 3600 });
    const requestsBefore = chain.sts.requests.length;
    await startDaemon(9);
    const failures = failureRecorder();
    for (let t = 0; t < 6 * HOUR; t += 10 * MINUTE) {
      await run(10 * MINUTE, failures.record);
      const view = await look();
      expect(view.imds.status).toBe(503);
      // /readyz names what failed and never quotes a message (issue 11, item 10): the log has the words.
      // …but says what to check: a fixed hint of this code, not STS's words.
      expect(view.readyz.body.roles[0]!.lastError).toEqual({ kind: 'terminal', code: 'AccessDenied', hint: expect.stringMatching(/trust policy/) });
    }
    const all = failures.at;
    const gaps = all.slice(1).map((t, i) => t - all[i]!);
    for (const gap of gaps) {
      expect(gap).toBeGreaterThanOrEqual(0.8 * TERMINAL_RETRY_MS);
      expect(gap).toBeLessThanOrEqual(TERMINAL_RETRY_MS);
    }
    expect(all.length).toBeLessThanOrEqual(1 + Math.floor((6 * HOUR) / (0.8 * TERMINAL_RETRY_MS)));
    expect(chain.sts.requests.length - requestsBefore).toBe(all.length);
    expect(cache().status().consecutiveFailures).toBe(all.length);

    const errors = d!.logs.filter((l) => l.includes('"level":"error"') && l.includes('"code":"AccessDenied"'));
    expect(errors.length).toBe(all.length);
    const metrics = await metricsText();
    expect(metrics).toContain(`crosscred_sts_calls_total{role="app",outcome="terminal",code="AccessDenied"} ${all.length}`);
    expect(metrics).toMatch(/crosscred_role_ready\{role="app"\} 0/);

    // Fixed (the right identity in the token file): picked up at the next attempt, within 5 minutes.
    await chain.writeToken({ ttlSeconds: 48 * 3600 });
    await run(TERMINAL_RETRY_MS + 1);
    const fixed = await look();
    expect(fixed.imds.status).toBe(200);
    expect(fixed.readyz.body.roles[0]).toMatchObject({ ready: true, lastError: null });
  });

  it('InvalidIdentityToken while credentials are cached: served until expiry − 60 s, retried at most every max(30 s, remaining/2), then every 4–5 minutes', async () => {
    await startDaemon(10);
    const first = await look();
    const held = accessKeyOf(first);
    const expiration = Date.parse((JSON.parse(first.imds.text) as { Expiration: string }).Expiration);
    const serveUntil = expiration - MIN_REMAINING_TO_SERVE_MS;
    // A real InvalidIdentityToken: the token in the file is now for another audience.
    await chain.writeToken({ aud: 'sts.example.com', ttlSeconds: 48 * 3600 });
    const requestsBefore = chain.sts.requests.length;
    const failures = failureRecorder();

    while (clock.wallNow() + LOOK_EVERY_MS < serveUntil) {
      await run(LOOK_EVERY_MS, failures.record);
      const view = await look();
      expect(view.imds.status).toBe(200);
      expect(accessKeyOf(view)).toBe(held);
    }
    const whileValid = failures.at.length;
    expect(whileValid).toBeGreaterThanOrEqual(3);
    // Each retry while valid came no later than max(30 s, half the remaining validity) after the previous.
    for (let i = 1; i < whileValid; i++) {
      const remaining = serveUntil - failures.at[i - 1]!;
      const gap = failures.at[i]! - failures.at[i - 1]!;
      expect(gap).toBeLessThanOrEqual(Math.max(TERMINAL_RETRY_MIN_MS, remaining / 2));
      expect(gap).toBeGreaterThanOrEqual(0.8 * TERMINAL_RETRY_MIN_MS);
    }
    expect(d!.logs.filter((l) => l.includes('"level":"warn"') && l.includes('"code":"InvalidIdentityToken"')).length).toBe(whileValid);

    await run(serveUntil - clock.wallNow(), failures.record);
    expect((await look()).imds.status).toBe(503);
    for (let t = 0; t < 2 * HOUR; t += 10 * MINUTE) {
      await run(10 * MINUTE, failures.record);
      const view = await look();
      expect(view.imds.status).toBe(503);
      expect(view.readyz.body.roles[0]!.lastError).toMatchObject({ kind: 'terminal', code: 'InvalidIdentityToken' });
    }
    const afterExpiry = failures.at.filter((t) => t > serveUntil + 5 * MINUTE);
    afterExpiry.slice(1).forEach((t, i) => {
      expect(t - afterExpiry[i]!).toBeGreaterThanOrEqual(0.8 * TERMINAL_RETRY_MS);
      expect(t - afterExpiry[i]!).toBeLessThanOrEqual(TERMINAL_RETRY_MS);
    });
    // About two hours and a quarter of a terminal error: a few dozen calls, not thousands.
    expect(failures.at.length).toBeLessThanOrEqual(whileValid + 2 + Math.ceil((2 * HOUR) / (0.8 * TERMINAL_RETRY_MS)));
    expect(chain.sts.requests.length - requestsBefore).toBe(failures.at.length);
    expect(d!.logs.some((l) => l.includes('"level":"error"') && l.includes('"code":"InvalidIdentityToken"'))).toBe(true);
    expect(await metricsText()).toContain(`crosscred_sts_calls_total{role="app",outcome="terminal",code="InvalidIdentityToken"} ${failures.at.length}`);
  });
});
