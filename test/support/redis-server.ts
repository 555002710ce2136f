import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './moto.js';

/**
 * Debian's redis-server on a free loopback port, in a temp dir: a real Redis for the state
 * backend's tests and the issuer benchmark. By default with no persistence (`--save ''
 * --appendonly no`), so `stop()` and `start()` bring it back on the same port, empty, as a
 * restarted Redis without persistence. With `persistence: 'aof'` (AOF, `appendfsync always`, as
 * docs/issuer.md asks of a fleet's Redis) it reloads what it held.
 */
export interface RedisServer {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Freezes it (SIGSTOP): connections stay open and nothing is answered, as with a stalled Redis. */
  pause(): void;
  /** Thaws it (SIGCONT). */
  resume(): void;
  /** Stops it and removes its directory. */
  close(): Promise<void>;
}

const STRICT = process.env['CROSSCRED_E2E_STRICT'] === '1';
/** Generous: a busy 2-core machine may take seconds to start a process, in ms. */
const START_DEADLINE_MS = 20_000;
const STOP_DEADLINE_MS = 10_000;

/** Why redis-server cannot run here, or undefined. Throws instead under CROSSCRED_E2E_STRICT=1. */
export function redisServerUnavailable(): string | undefined {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (probe.error === undefined && probe.status === 0) return undefined;
  const reason = 'redis-server is not installed (Debian package redis-server)';
  if (STRICT) throw new Error(`${reason}, and CROSSCRED_E2E_STRICT=1 requires it`);
  return reason;
}

export async function startRedisServer(options: { readonly persistence?: 'none' | 'aof' } = {}): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'crosscred-redis-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const persistence = options.persistence === 'aof' ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'];
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--save', '', ...persistence, '--dir', dir];
  // As the docs ask of a production Redis: an evicted claim would reopen a replay.
  args.push('--maxmemory-policy', 'noeviction', '--protected-mode', 'yes');
  const start = async () => {
    child = spawn('redis-server', args, { cwd: dir, stdio: 'ignore' });
    await waitForPong(port, START_DEADLINE_MS);
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (c === undefined || c.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    // A frozen Redis would not act on SIGTERM.
    c.kill('SIGCONT');
    c.kill('SIGTERM');
    const killer = setTimeout(() => c.kill('SIGKILL'), STOP_DEADLINE_MS);
    await exited;
    clearTimeout(killer);
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}/0`,
    port,
    start,
    stop,
    pause: () => void child?.kill('SIGSTOP'),
    resume: () => void child?.kill('SIGCONT'),
    close: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Waits until a PING on the port is answered +PONG; polls every 100 ms up to `deadlineMs`. */
async function waitForPong(port: number, deadlineMs: number): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (Date.now() < until) {
    if (await pong(port)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`redis-server on 127.0.0.1:${port} did not answer PING within ${deadlineMs} ms`);
}

function pong(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let got = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2_000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => {
      got += d.toString('latin1');
      if (got.includes('\r\n')) done(got.startsWith('+PONG'));
    });
  });
}
