import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { type Logger, pino } from 'pino';
import { loadConfig, type ServeFlags } from '../../src/config/load.js';
import { DemoOidcIssuer } from '../../src/demo/oidc-issuer.js';
import { StsEmulator, type StsEmulatorOptions, type TrustRule } from '../../src/demo/sts-emulator.js';
import { loggerOptions } from '../../src/observability/logger.js';
import { type DaemonDependencies, type RunningDaemon, startDaemon } from '../../src/serve/daemon.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = join(REPO_ROOT, 'dist/cli/main.js');
/**
 * The crosscred command the tests start: `node dist/cli/main.js`, or, with CROSSCRED_TEST_BINARY
 * set, that single executable (CI runs the tests that start the CLI again against the x86_64
 * binary `npm run package` builds). Spawn CLI_EXEC with [...CLI_ARGS, subcommand, ...].
 */
const TEST_BINARY = process.env['CROSSCRED_TEST_BINARY'];
export const CLI_EXEC = TEST_BINARY ?? process.execPath;
export const CLI_ARGS: readonly string[] = TEST_BINARY ? [] : [CLI];

export const ACCOUNT = '111122223333';
export const AUDIENCE = 'sts.amazonaws.com';
export const SUBJECT = 'system:serviceaccount:payments:api';

export function roleArn(name: string): string {
  return `arn:aws:iam::${ACCOUNT}:role/${name}`;
}

/**
 * The parts around crosscred that tests need: a real OIDC issuer and the STS emulator on loopback,
 * a token file in a fresh directory, and a trust rule for each named role.
 */
export interface Chain {
  readonly issuer: DemoOidcIssuer;
  readonly sts: StsEmulator;
  readonly dir: string;
  readonly tokenFile: string;
  /** Mints a token and writes it to the token file atomically; returns it. */
  writeToken(claims?: { sub?: string; aud?: string; ttlSeconds?: number }): Promise<string>;
  close(): Promise<void>;
}

export async function startChain(
  options: {
    roles?: string[];
    maxSessionDuration?: number;
    subject?: string;
    tls?: { key: string; cert: string };
    /** STS's clock (epoch ms); see StsEmulatorOptions.now. */
    stsNow?: () => number;
    /** Who may sts:AssumeRole which role (role chains, #18); see StsEmulatorOptions.assumeRoleTrust. */
    assumeRoleTrust?: StsEmulatorOptions['assumeRoleTrust'];
  } = {},
): Promise<Chain> {
  const issuer = await DemoOidcIssuer.start();
  const trust: TrustRule[] = (options.roles ?? ['app']).map((name) => ({
    roleArn: roleArn(name),
    issuer: issuer.url,
    audience: AUDIENCE,
    subject: options.subject ?? SUBJECT,
    ...(options.maxSessionDuration ? { maxSessionDuration: options.maxSessionDuration } : {}),
  }));
  const sts = await StsEmulator.start({
    trust,
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.stsNow ? { now: options.stsNow } : {}),
    ...(options.assumeRoleTrust ? { assumeRoleTrust: options.assumeRoleTrust } : {}),
  });
  const dir = await mkdtemp(join(tmpdir(), 'crosscred-test-'));
  const tokenFile = join(dir, 'token');
  const writeToken = async (claims: { sub?: string; aud?: string; ttlSeconds?: number } = {}) => {
    const token = await issuer.mint({ sub: claims.sub ?? SUBJECT, aud: claims.aud ?? AUDIENCE, ttlSeconds: claims.ttlSeconds ?? 3600 });
    await writeFile(`${tokenFile}.tmp`, token);
    await rename(`${tokenFile}.tmp`, tokenFile);
    return token;
  };
  await writeToken();
  return {
    issuer,
    sts,
    dir,
    tokenFile,
    writeToken,
    close: async () => {
      await Promise.all([sts.close(), issuer.close()]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A logger that writes the daemon's real log lines (same options, same redaction) into memory. */
export function memoryLogger(level: 'info' | 'debug' | 'trace' = 'debug'): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  return { logger: pino(loggerOptions(level), stream), lines };
}

export interface InProcessDaemon {
  readonly daemon: RunningDaemon;
  readonly base: string;
  readonly admin: string;
  readonly logs: string[];
  close(): Promise<void>;
}

/**
 * crosscred serve in this process, on ephemeral loopback ports, against the chain's STS. `deps`
 * injects a clock and a random source (test/support/fake-clock.ts).
 */
export async function startInProcess(
  chain: Chain,
  flags: ServeFlags = {},
  env: Record<string, string> = {},
  deps: Pick<DaemonDependencies, 'clock' | 'random'> = {},
): Promise<InProcessDaemon> {
  const config = loadConfig({
    flags: {
      'role-arn': roleArn('app'),
      'token-file': chain.tokenFile,
      region: 'us-east-1',
      'sts-endpoint': chain.sts.url,
      listen: ['127.0.0.1:0'],
      'admin-listen': '127.0.0.1:0',
      ...flags,
    },
    env,
  });
  const { logger, lines } = memoryLogger();
  const daemon = await startDaemon(config, { logger, ...deps });
  return {
    daemon,
    base: `http://127.0.0.1:${daemon.listeners[0]!.port}`,
    admin: `http://127.0.0.1:${daemon.admin!.port}`,
    logs: lines,
    close: () => daemon.close(),
  };
}

export interface DaemonProcess {
  readonly child: ChildProcess;
  /** Base URLs of the credential listeners, in order. */
  readonly listeners: string[];
  readonly admin: string;
  /** Every line the process wrote to stdout and stderr so far. */
  readonly output: string[];
  /** Sends SIGTERM and resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * The real `crosscred serve` binary (dist/, built by `npm test`) as a child process. Resolves once
 * the admin listener is open, with the addresses it logged. `as` runs it as another user (root only).
 */
export function spawnDaemon(args: string[], env: Record<string, string> = {}, as: { uid?: number; gid?: number } = {}): Promise<DaemonProcess> {
  return spawnListeningCommand('serve', ['--admin-listen', '127.0.0.1:0', '--log-level', 'debug', ...args], { env, as, startTimeoutMs: 15_000 });
}

/**
 * Any long-running crosscred command (`serve`, `node-agent`) through CLI_EXEC, resolved once it logs
 * its admin listener open, with the credential and admin addresses it logged on the way.
 */
export async function spawnListeningCommand(
  command: string,
  args: readonly string[],
  options: { env?: Record<string, string>; as?: { uid?: number; gid?: number }; startTimeoutMs: number },
): Promise<DaemonProcess> {
  const child = spawn(CLI_EXEC, [...CLI_ARGS, command, ...args], {
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/root', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...options.as,
  });
  const output: string[] = [];
  const listeners: string[] = [];
  let admin = '';
  await new Promise<void>((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`crosscred ${command} did not start in time:\n${output.join('\n')}`)), options.startTimeoutMs);
    const onLine = (line: string) => {
      output.push(line);
      let entry: { msg?: string; address?: string };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        return;
      }
      if (entry.msg === 'credential listener open' && entry.address) listeners.push(`http://${entry.address}`);
      if (entry.msg?.startsWith('admin listener open') && entry.address) {
        admin = `http://${entry.address}`;
        clearTimeout(timer);
        resolveReady();
      }
    };
    for (const stream of [child.stdout!, child.stderr!]) {
      let buffered = '';
      stream.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('utf8');
        for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
          onLine(buffered.slice(0, nl));
          buffered = buffered.slice(nl + 1);
        }
      });
    }
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`crosscred ${command} exited with ${code} before it was ready:\n${output.join('\n')}`));
    });
  });
  return {
    child,
    listeners,
    admin,
    output,
    stop: () =>
      new Promise((resolveExit) => {
        if (child.exitCode !== null) return resolveExit(child.exitCode);
        child.once('exit', (code) => resolveExit(code));
        child.kill('SIGTERM');
      }),
  };
}

/** Polls the admin listener's /readyz until it answers 200 (bounded). */
export async function waitUntilReady(admin: string, timeoutMs = 10_000): Promise<void> {
  const { request } = await import('undici');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await request(`${admin}/readyz`);
    await res.body.dump();
    if (res.statusCode === 200) return;
    if (Date.now() > deadline) throw new Error(`${admin}/readyz did not turn ready within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One endpoint's answer as a client sees it. */
export interface EndpointAnswer {
  readonly status: number;
  /** The Retry-After header, when there is one. */
  readonly retryAfter: string | undefined;
  readonly text: string;
}

/** What every kind of client would get from a daemon at one instant, and what its /readyz says. */
export interface EndpointView {
  readonly imds: EndpointAnswer;
  /** Undefined when no container secret was given. */
  readonly container: EndpointAnswer | undefined;
  readonly readyz: { readonly status: number; readonly body: ReadyzBody };
}

export interface ReadyzBody {
  readonly ready: boolean;
  readonly roles: ReadonlyArray<{
    readonly role: string;
    readonly ready: boolean;
    readonly expiresInSeconds: number | null;
    readonly refreshing: boolean;
    readonly consecutiveFailures: number;
    /** Named, not quoted: crosscred's hint for its own codes, never the failure's message. */
    readonly lastError: { readonly kind: string; readonly code: string; readonly hint?: string } | null;
    readonly nextAttemptInSeconds: number | null;
  }>;
}

/**
 * Asks a daemon for `role`'s credentials the way the SDKs do (IMDSv2: token PUT then GET; the
 * container endpoint with the secret) and reads /readyz, all over real loopback sockets.
 */
export async function viewEndpoints(d: { base: string; admin: string }, options: { role?: string; containerSecret?: string } = {}): Promise<EndpointView> {
  const { request } = await import('undici');
  const role = options.role ?? 'app';
  const answer = async (res: Awaited<ReturnType<typeof request>>): Promise<EndpointAnswer> => {
    const retryAfter = res.headers['retry-after'];
    return { status: res.statusCode, retryAfter: Array.isArray(retryAfter) ? retryAfter.join(',') : retryAfter, text: await res.body.text() };
  };
  const tokenRes = await request(`${d.base}/latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '60' } });
  const token = await tokenRes.body.text();
  const imds = await answer(await request(`${d.base}/latest/meta-data/iam/security-credentials/${role}`, { headers: { 'x-aws-ec2-metadata-token': token } }));
  const container =
    options.containerSecret === undefined
      ? undefined
      : await answer(await request(`${d.base}/v1/credentials/${role}`, { headers: { authorization: options.containerSecret } }));
  const readyRes = await request(`${d.admin}/readyz`);
  const readyz = { status: readyRes.statusCode, body: (await readyRes.body.json()) as ReadyzBody };
  return { imds, container, readyz };
}
