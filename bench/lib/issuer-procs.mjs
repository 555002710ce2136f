// Child processes of the issuer benchmark: `crosscred issuer serve` replicas and one redis-server,
// all on 127.0.0.1, every wait bounded.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, RUNTIME_FLAGS } from './procs.mjs';

/** A busy 2-core machine may take seconds to start a process (ms). */
const START_DEADLINE_MS = 30_000;
const STOP_DEADLINE_MS = 10_000;

export function redisAvailable() {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8', timeout: 10_000 });
  return probe.error === undefined && probe.status === 0;
}

async function freePort() {
  const s = createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * redis-server on a free loopback port with AOF and `appendfsync always`, as docs/issuer.md asks of
 * a fleet's Redis (a restart without persistence forgets every replay claim). `restart()` stops it
 * (SIGTERM) and starts it again on the same port and directory, so it reloads its AOF.
 */
export async function startRedis() {
  const dir = mkdtempSync(join(tmpdir(), 'crosscred-bench-redis-'));
  const port = await freePort();
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'yes', '--appendfsync', 'always'];
  args.push('--dir', dir, '--maxmemory-policy', 'noeviction', '--protected-mode', 'yes');
  let child;
  const start = async () => {
    child = spawn('redis-server', args, { cwd: dir, stdio: 'ignore' });
    await waitForPong(port, START_DEADLINE_MS);
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const killer = setTimeout(() => c.kill('SIGKILL'), STOP_DEADLINE_MS);
    await exited;
    clearTimeout(killer);
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}/0`,
    restart: async () => {
      await stop();
      await start();
    },
    close: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitForPong(port, deadlineMs) {
  const until = Date.now() + deadlineMs;
  while (Date.now() < until) {
    if (await pong(port)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server on 127.0.0.1:${port} did not answer PING within ${deadlineMs} ms`);
}

function pong(port) {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let got = '';
    const done = (ok) => {
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

/** Writes an ES256 signing key with `crosscred issuer keygen`. */
export function keygen(file) {
  const r = spawnSync(process.execPath, [CLI, 'issuer', 'keygen', '--alg', 'ES256', '--out', file], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`issuer keygen failed: ${r.stderr}`);
}

/**
 * `crosscred issuer serve --config FILE` with `config` (a JSON object; YAML is a superset) and
 * `listen: 127.0.0.1:0`. Resolves with the token URL once the listener and admin listener are open.
 */
export async function spawnIssuer(dir, name, config) {
  const file = join(dir, `${name}.json`);
  await writeFile(file, JSON.stringify({ ...config, listen: '127.0.0.1:0', adminListen: '127.0.0.1:0' }));
  const child = spawn(process.execPath, [...RUNTIME_FLAGS, CLI, 'issuer', 'serve', '--config', file, '--log-level', 'info'], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = [];
  let base;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`issuer ${name} did not start in ${START_DEADLINE_MS} ms:\n${output.slice(-20).join('\n')}`));
    }, START_DEADLINE_MS);
    let buf = '';
    const onData = (chunk) => {
      buf += chunk.toString('utf8');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (output.length < 200) output.push(line);
        let e;
        try {
          e = JSON.parse(line);
        } catch {
          continue;
        }
        if (e.msg === 'issuer listener open') base = `http://${e.address}`;
        if (typeof e.msg === 'string' && e.msg.startsWith('issuer admin listener open') && base) {
          clearTimeout(timer);
          resolve({
            name,
            child,
            pid: child.pid,
            base,
            tokenUrl: `${base}/token`,
            admin: `http://${e.address}`,
            output,
            kill: () => child.kill('SIGKILL'),
            stop: () =>
              new Promise((res) => {
                if (child.exitCode !== null || child.signalCode !== null) return res();
                const t = setTimeout(() => child.kill('SIGKILL'), STOP_DEADLINE_MS);
                child.once('exit', () => {
                  clearTimeout(t);
                  res();
                });
                child.kill('SIGTERM');
              }),
          });
        }
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`issuer ${name} exited with ${code}:\n${output.slice(-20).join('\n')}`));
    });
  });
}
