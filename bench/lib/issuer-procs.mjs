// Child processes of the issuer benchmark: `crosscred issuer serve` replicas on 127.0.0.1, every
// wait bounded. Redis is the test suite's (test/support/redis-server.ts, through test-support.mjs).
import { spawn, spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLI, RUNTIME_FLAGS } from './procs.mjs';

/** A busy 2-core machine may take seconds to start a process (ms). */
const START_DEADLINE_MS = 30_000;
const STOP_DEADLINE_MS = 10_000;

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
