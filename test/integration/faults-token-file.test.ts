import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, mkdir, open, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RETRY_CAP_MS } from '../../src/cache/refresh-policy.js';
import type { RandomSource } from '../../src/core/clock.js';
import { inspectJwt } from '../../src/sources/jwt-shape.js';
import {
  AUDIENCE,
  type Chain,
  type DaemonProcess,
  type EndpointView,
  type InProcessDaemon,
  roleArn,
  SUBJECT,
  spawnDaemon,
  startChain,
  startInProcess,
  viewEndpoints,
} from '../support/chain.js';
import { FakeClock } from '../support/fake-clock.js';

/**
 * Fault injection at the token file (issue 6, item 2): whatever is at the path — nothing, an
 * empty or half-written file, 1 MB of garbage, a FIFO nobody writes to, /dev/zero, a directory, an
 * expired or unsigned JWT, a file crosscred may not read — the daemon keeps running and serving
 * what it holds, sends STS nothing (the emulator records every request), and recovers at the next
 * attempt once a valid token is back.
 *
 * The in-process daemon runs on a fake clock (advanced with advanceSettling, which waits in real
 * time for each exchange, so a read that blocks shows up as a test failure, not a hang). The
 * permission case needs a user that file permissions apply to, so it runs the real binary.
 */

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const TOKEN_TTL_SECONDS = 48 * 3600;
/** A read of the token file is local: anything near this, in real time, is a hang. */
const EXCHANGE_REAL_TIMEOUT_MS = 5_000;

let clock = new FakeClock(Date.now());
let chain: Chain;
let d: InProcessDaemon | undefined;
let containerSecret = '';
let daemonCounter = 0;

beforeAll(async () => {
  chain = await startChain({ stsNow: () => clock.wallNow() });
});
afterAll(async () => {
  // Over every test here: STS never received anything but a well-formed JWT that had not expired.
  expect(chain.sts.requests.length).toBeGreaterThan(0);
  for (const r of chain.sts.requests) expect(() => inspectJwt(r.token, r.atWall, 'what STS received')).not.toThrow();
  await chain?.close();
});
beforeEach(async () => {
  clock = new FakeClock(Date.now());
  await restoreValidToken();
});
afterEach(async () => {
  await unblockFifo();
  await d?.close();
  d = undefined;
});

/** Puts a valid token back at the path, whatever is there now (file, symlink, FIFO, directory). */
async function restoreValidToken(): Promise<string> {
  await unblockFifo();
  await rm(chain.tokenFile, { recursive: true, force: true });
  return chain.writeToken({ ttlSeconds: TOKEN_TTL_SECONDS });
}

/**
 * If a reader is stuck opening a FIFO at the token path (the bug this file guards against),
 * opening it for writing releases that reader, so one failure does not hang the tests after it.
 */
async function unblockFifo(): Promise<void> {
  try {
    const h = await open(chain.tokenFile, constants.O_WRONLY | constants.O_NONBLOCK);
    await h.close();
  } catch {
    // Not a FIFO, or nobody reading it: nothing to release.
  }
}

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

async function startDaemon(seed: number): Promise<InProcessDaemon> {
  const authFile = join(chain.dir, `auth-token-${daemonCounter++}`);
  d = await startInProcess(chain, { 'duration-seconds': '900', 'auth-token-file': authFile }, {}, { clock, random: seededRandom(seed) });
  containerSecret = await readFile(authFile, 'utf8');
  await waitWithin(d.daemon.firstFetch, EXCHANGE_REAL_TIMEOUT_MS, 'the first fetch');
  return d;
}

async function waitWithin<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms of real time`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function cache() {
  return d!.daemon.roles.get('app')!.cache;
}

const busy = () => cache().status().refreshing;

async function run(ms: number): Promise<void> {
  await clock.advanceSettling(ms, busy, { realTimeoutMs: EXCHANGE_REAL_TIMEOUT_MS });
}

async function look(): Promise<EndpointView> {
  const view = await viewEndpoints(d!, { containerSecret });
  expect(view.container!.status).toBe(view.imds.status);
  expect(view.readyz.status).toBe(view.imds.status === 200 ? 200 : 503);
  if (view.imds.status !== 200) {
    expect(view.imds.status).toBe(503);
    for (const answer of [view.imds, view.container!]) {
      expect(answer.retryAfter).toMatch(/^[1-9][0-9]*$/);
      expect(answer.text).toContain('CROSSCRED_ERR_CREDENTIALS_UNAVAILABLE');
    }
  }
  return view;
}

function accessKeyOf(view: EndpointView): string {
  return (JSON.parse(view.imds.text) as { AccessKeyId: string }).AccessKeyId;
}

async function healthz(): Promise<number> {
  const res = await request(`${d!.admin}/healthz`);
  await res.body.dump();
  return res.statusCode;
}

const isRoot = process.getuid?.() === 0;

interface FileFault {
  readonly name: string;
  readonly apply: (path: string) => Promise<void>;
  /** The error code /readyz shows, and a piece of its message. */
  readonly code: string;
  readonly message?: string | RegExp;
}

const FAULTS: FileFault[] = [
  { name: 'deleted', apply: (p) => rm(p), code: 'CROSSCRED_ERR_TOKEN_FILE_UNREADABLE', message: 'ENOENT' },
  {
    name: 'a dangling symlink',
    apply: async (p) => {
      await rm(p);
      await symlink(join(chain.dir, 'gone'), p);
    },
    code: 'CROSSCRED_ERR_TOKEN_FILE_UNREADABLE',
    message: 'ENOENT',
  },
  { name: 'emptied', apply: (p) => writeFile(p, ''), code: 'CROSSCRED_ERR_TOKEN_NOT_JWT', message: 'is empty' },
  { name: 'only whitespace', apply: (p) => writeFile(p, ' \n\t\n'), code: 'CROSSCRED_ERR_TOKEN_NOT_JWT', message: 'is empty' },
  {
    name: 'truncated mid-write',
    apply: async (p) => {
      const whole = await readFile(p, 'utf8');
      await writeFile(p, whole.slice(0, whole.length - 20));
    },
    code: 'CROSSCRED_ERR_TOKEN_NOT_JWT',
    message: 'incomplete',
  },
  { name: 'filled with 1 MB of random bytes', apply: (p) => writeFile(p, randomBytes(1024 * 1024)), code: 'CROSSCRED_ERR_TOKEN_TOO_LARGE' },
  {
    name: 'filled with 1 MB of JWT-looking text',
    apply: (p) => writeFile(p, `${randomBytes(400 * 1024).toString('base64url')}.${randomBytes(300 * 1024).toString('base64url')}.sig`),
    code: 'CROSSCRED_ERR_TOKEN_TOO_LARGE',
  },
  {
    name: 'a valid token followed by garbage',
    apply: async (p) => writeFile(p, `${await readFile(p, 'utf8')}\u0000\u00ff garbage`),
    code: 'CROSSCRED_ERR_TOKEN_NOT_JWT',
  },
  {
    name: 'an expired token (validly signed)',
    apply: async (p) => {
      const token = await chain.issuer.mint({ sub: SUBJECT, aud: AUDIENCE, ttlSeconds: -120 });
      await writeFile(p, token);
    },
    code: 'CROSSCRED_ERR_TOKEN_EXPIRED',
  },
  {
    name: 'an unsigned token (alg none)',
    apply: (p) => {
      const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
      return writeFile(
        p,
        `${b64({ alg: 'none' })}.${b64({ iss: chain.issuer.url, sub: SUBJECT, aud: AUDIENCE, exp: Math.floor(clock.wallNow() / 1000) + 3600 })}.`,
      );
    },
    code: 'CROSSCRED_ERR_TOKEN_NOT_JWT',
  },
  {
    name: 'replaced by a directory',
    apply: async (p) => {
      await rm(p);
      await mkdir(p);
    },
    code: 'CROSSCRED_ERR_TOKEN_FILE_UNREADABLE',
    message: 'a directory',
  },
  {
    name: 'replaced by a FIFO that nobody writes to',
    apply: async (p) => {
      await rm(p);
      await mkfifo(p);
    },
    code: 'CROSSCRED_ERR_TOKEN_FILE_UNREADABLE',
    message: 'a FIFO',
  },
  {
    name: 'a symlink to /dev/zero',
    apply: async (p) => {
      await rm(p);
      await symlink('/dev/zero', p);
    },
    code: 'CROSSCRED_ERR_TOKEN_FILE_UNREADABLE',
    message: 'a character device',
  },
  {
    name: 'a symlink to /dev/urandom',
    apply: async (p) => {
      await rm(p);
      await symlink('/dev/urandom', p);
    },
    code: 'CROSSCRED_ERR_TOKEN_FILE_UNREADABLE',
    message: 'a character device',
  },
];

function mkfifo(path: string): Promise<void> {
  execFileSync('mkfifo', ['-m', '0644', path]);
  return Promise.resolve();
}

describe('the token file goes bad while credentials are cached', () => {
  FAULTS.forEach((fault, index) => {
    it(`token file ${fault.name}: no crash, nothing sent to STS, cached credentials still served, recovery on the next valid file`, async () => {
      await startDaemon(2000 + index);
      const first = await look();
      expect(first.imds.status).toBe(200);
      const held = accessKeyOf(first);

      await fault.apply(chain.tokenFile);
      const requestsBefore = chain.sts.requests.length;
      // Past the scheduled refresh (1½–3 min for these 15-minute sessions) and a few retries.
      await run(5 * MINUTE);
      const status = cache().status();
      expect(status.consecutiveFailures).toBeGreaterThanOrEqual(4);
      expect(status.lastError).toMatchObject({ kind: 'retryable', code: fault.code });
      if (fault.message) expect(status.lastError!.message).toMatch(fault.message);
      expect(status.lastError!.message.length).toBeLessThan(400);
      expect(chain.sts.requests.length, 'something was sent to STS').toBe(requestsBefore);

      const during = await look();
      expect(during.imds.status).toBe(200);
      expect(accessKeyOf(during)).toBe(held);
      expect(during.readyz.body.roles[0]).toMatchObject({ ready: true, lastError: { code: fault.code } });
      expect(await healthz()).toBe(200);
      expect(d!.logs.some((l) => l.includes('"level":"warn"') && l.includes(`"code":"${fault.code}"`))).toBe(true);

      const fresh = await restoreValidToken();
      await run(RETRY_CAP_MS + 1);
      const after = await look();
      expect(after.imds.status).toBe(200);
      expect(accessKeyOf(after)).not.toBe(held);
      expect(after.readyz.body.roles[0]).toMatchObject({ ready: true, consecutiveFailures: 0, lastError: null });
      // Exactly one exchange, with the new token.
      expect(chain.sts.requests.slice(requestsBefore).map((r) => r.token)).toEqual([fresh]);
    });
  });

  it('token file made unreadable (chmod 000): no crash, nothing sent, recovery (as root, see the real-process test below)', {
    skip: isRoot,
    meta: { skipReason: 'root reads a chmod-000 file regardless; the real-process test below runs the daemon as nobody instead' },
  }, async () => {
    await startDaemon(2100);
    const held = accessKeyOf(await look());
    await chmod(chain.tokenFile, 0o000);
    const requestsBefore = chain.sts.requests.length;
    await run(5 * MINUTE);
    expect(cache().status().lastError).toMatchObject({ code: 'CROSSCRED_ERR_TOKEN_FILE_UNREADABLE' });
    expect(cache().status().lastError!.message).toContain('EACCES');
    expect(chain.sts.requests.length).toBe(requestsBefore);
    expect(accessKeyOf(await look())).toBe(held);
    await chmod(chain.tokenFile, 0o644);
    await run(RETRY_CAP_MS + 1);
    expect(accessKeyOf(await look())).not.toBe(held);
  });
});

describe('the token file is bad from the start', () => {
  for (const fault of FAULTS.filter((f) => ['deleted', 'replaced by a FIFO that nobody writes to', 'a symlink to /dev/zero'].includes(f.name))) {
    it(`token file ${fault.name} at start-up: 503 with Retry-After on both endpoints, nothing sent to STS, served once the file is valid`, async () => {
      await fault.apply(chain.tokenFile);
      const requestsBefore = chain.sts.requests.length;
      await startDaemon(2200);
      for (let t = 0; t < 3 * MINUTE; t += 20 * SECOND) {
        await run(20 * SECOND);
        const view = await look();
        expect(view.imds.status).toBe(503);
        expect(view.readyz.body.roles[0]!.lastError).toMatchObject({ kind: 'retryable', code: fault.code });
      }
      expect(chain.sts.requests.length).toBe(requestsBefore);
      await restoreValidToken();
      await run(RETRY_CAP_MS + 1);
      expect((await look()).imds.status).toBe(200);
      expect(chain.sts.requests.length).toBe(requestsBefore + 1);
    });
  }
});

describe('the real binary, with file permissions that apply to it', () => {
  // Root reads a chmod-000 file anyway (CAP_DAC_OVERRIDE), and the tests run as root in CI. So
  // there the daemon runs as `nobody` (65534), for whom the permissions hold; otherwise as the
  // current user. Either way it is the real `crosscred serve` process, and it must also still exit
  // promptly on SIGTERM after meeting a FIFO (a reader stuck on one keeps a process from exiting).
  let proc: DaemonProcess | undefined;
  afterEach(async () => {
    await unblockFifo();
    if (proc && proc.child.exitCode === null) proc.child.kill('SIGKILL');
    proc = undefined;
  });

  it('unreadable (EACCES), then a FIFO, then valid again: 503 with the reason, nothing sent to STS, recovery, and a clean exit', async () => {
    clock = new FakeClock(Date.now()); // the emulator follows real time here: this clock is never advanced
    const stsNow = chain.sts.now;
    chain.sts.now = Date.now;
    try {
      await chmod(chain.dir, 0o755);
      await restoreValidToken();
      await chmod(chain.tokenFile, 0o000);
      const requestsBefore = chain.sts.requests.length;
      proc = await spawnDaemon(
        ['--role-arn', roleArn('app'), '--token-file', chain.tokenFile, '--region', 'us-east-1', '--sts-endpoint', chain.sts.url, '--listen', '127.0.0.1:0'],
        { HOME: chain.dir },
        isRoot ? { uid: 65534, gid: 65534 } : {},
      );
      const daemon = { base: proc.listeners[0]!, admin: proc.admin };
      const role = async () => (await viewEndpoints(daemon)).readyz.body.roles[0]!;

      const unreadable = await waitForRole(role, (r) => r.lastError !== null, 15_000);
      expect(unreadable.lastError).toMatchObject({ kind: 'retryable', code: 'CROSSCRED_ERR_TOKEN_FILE_UNREADABLE' });
      // /readyz names the failure without quoting it; the reason is in the log.
      expect(unreadable.lastError).not.toHaveProperty('message');
      await waitForRole(
        async () => proc!.output.some((l) => l.includes('EACCES')),
        (seen) => seen,
        15_000,
      );
      const view = await viewEndpoints(daemon);
      expect(view.imds.status).toBe(503);
      expect(view.imds.retryAfter).toMatch(/^[1-9][0-9]*$/);

      await rm(chain.tokenFile);
      await mkfifo(chain.tokenFile);
      await waitForRole(
        async () => proc!.output.some((l) => l.includes('FIFO')),
        (seen) => seen,
        15_000,
      );
      const fifo = await role();
      expect(fifo).toMatchObject({ ready: false, refreshing: false, lastError: { code: 'CROSSCRED_ERR_TOKEN_FILE_UNREADABLE' } });
      expect(chain.sts.requests.length).toBe(requestsBefore);

      await restoreValidToken();
      await waitForRole(role, (r) => r.ready, 15_000);
      expect((await viewEndpoints(daemon)).imds.status).toBe(200);
      expect(chain.sts.requests.length).toBe(requestsBefore + 1);

      const started = Date.now();
      expect(await proc.stop()).toBe(0);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(proc.output.join('\n')).not.toMatch(/uncaught|unhandled/i);
    } finally {
      chain.sts.now = stsNow;
      await chmod(chain.dir, 0o700);
    }
  });
});

async function waitForRole<T>(get: () => Promise<T>, done: (r: T) => boolean, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await get();
    if (done(r)) return r;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms; last: ${JSON.stringify(r)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
