// Child processes of the suite: crosscred (`node dist/cli/main.js serve` or bench/daemon-child.mjs),
// the bare node:http baseline and nginx. Everything binds 127.0.0.1; every wait is bounded.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_ROOT = resolve(BENCH_DIR, '..');
export const CLI = join(REPO_ROOT, 'dist/cli/main.js');
/**
 * The V8 flags crosscred runs with, read from the CLI's own shebang line
 * (`#!/usr/bin/env -S node FLAGS`), so the suite measures the daemon as the installed command, the
 * systemd unit and the image start it.
 */
export const RUNTIME_FLAGS = (() => {
  let first = '';
  try {
    first = readFileSync(CLI, 'utf8').split('\n', 1)[0];
  } catch {
    return [];
  }
  const m = /^#!\S*env -S node(.*)$/.exec(first);
  return m ? m[1].trim().split(/\s+/).filter(Boolean) : [];
})();

const START_TIMEOUT_MS = 120_000; // 10,000 roles take a while to fetch; everything else is far faster
const STOP_TIMEOUT_MS = 8_000;

function childEnv() {
  return { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root' };
}

/** Calls onLine for every line the child writes (stdout and stderr). */
function lines(child, onLine) {
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    let buf = '';
    stream.on('data', (chunk) => {
      buf += chunk.toString('utf8');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        onLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });
  }
}

function stopper(child) {
  return () =>
    new Promise((res) => {
      if (child.exitCode !== null || child.signalCode !== null) return res(child.exitCode);
      const t = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      child.once('exit', (code) => {
        clearTimeout(t);
        res(code);
      });
      child.kill('SIGTERM');
    });
}

/** RSS and peak RSS of a process in MB, from /proc. */
export function memoryOf(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMb: +(kb('VmRSS') / 1024).toFixed(1), peakRssMb: +(kb('VmHWM') / 1024).toFixed(1) };
}

/**
 * The real daemon: `node dist/cli/main.js serve ARGS`. Resolves once the admin listener is open,
 * with the listener URLs it logged and the time from spawn to "listening".
 */
export async function spawnServe(args) {
  const adminOpen = (e) => typeof e.msg === 'string' && e.msg.startsWith('admin listener open');
  const p = await spawnCommand('serve', ['--admin-listen', '127.0.0.1:0', '--log-level', 'info', ...args], (entries) => entries.some(adminOpen));
  return {
    ...p,
    listeners: p.entries.filter((e) => e.msg === 'credential listener open').map((e) => `http://${e.address}`),
    admin: `http://${p.entries.find(adminOpen).address}`,
  };
}

/**
 * Any crosscred command, `node dist/cli/main.js COMMAND ARGS`, resolved once `isUp(entries)` says it
 * listens, where `entries` are the JSON log lines so far (the caller reads the addresses it logged
 * from them).
 */
export function spawnCommand(command, args, isUp, env = {}) {
  const startedAt = performance.now();
  const child = spawn(process.execPath, [...RUNTIME_FLAGS, CLI, command, ...args], { env: { ...childEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = [];
  const entries = [];
  let up = false;
  return new Promise((res, rej) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`crosscred ${command} did not start in ${START_TIMEOUT_MS} ms:\n${output.slice(-20).join('\n')}`));
    }, START_TIMEOUT_MS);
    lines(child, (line) => {
      if (output.length < 200) output.push(line);
      try {
        entries.push(JSON.parse(line));
      } catch {
        return;
      }
      if (!up && isUp(entries)) {
        up = true;
        clearTimeout(timer);
        res({ child, pid: child.pid, entries, output, startedAt, listeningMs: performance.now() - startedAt, stop: stopper(child) });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (!up) rej(new Error(`crosscred ${command} exited with ${code}:\n${output.slice(-20).join('\n')}`));
    });
  });
}

/**
 * crosscred's startDaemon (from dist/, exactly what `serve` runs) in bench/daemon-child.mjs, with an
 * IPC channel so the suite can force refreshes (cache.refreshNow(), the schedule's own entry point).
 */
export function spawnDaemonChild(flags) {
  const child = spawn(process.execPath, [...RUNTIME_FLAGS, join(BENCH_DIR, 'daemon-child.mjs'), JSON.stringify(flags)], {
    env: childEnv(),
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let seq = 0;
  const pending = new Map();
  let readyResolve;
  const ready = new Promise((r) => (readyResolve = r));
  child.on('message', (m) => {
    if (m.type === 'ready') readyResolve(m);
    else {
      pending.get(m.id)?.(m);
      pending.delete(m.id);
    }
  });
  const call = (msg, timeoutMs = 30_000) =>
    new Promise((res, rej) => {
      const id = ++seq;
      const t = setTimeout(() => rej(new Error(`daemon-child did not answer ${msg.type}`)), timeoutMs);
      pending.set(id, (m) => {
        clearTimeout(t);
        res(m);
      });
      child.send({ ...msg, id });
    });
  return Promise.race([
    ready,
    new Promise((_, rej) => setTimeout(() => rej(new Error('daemon-child did not start')), START_TIMEOUT_MS).unref()),
    new Promise((_, rej) => child.once('exit', (c) => rej(new Error(`daemon-child exited ${c}`)))),
  ]).then((m) => ({ child, pid: child.pid, listeners: m.listeners, admin: m.admin, call, stop: stopper(child) }));
}

/** The bare node:http baseline (bench/baseline-node.mjs) serving `bodiesFile`. */
export function spawnNodeBaseline(bodiesFile) {
  const child = spawn(process.execPath, [join(BENCH_DIR, 'baseline-node.mjs'), bodiesFile], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error('node baseline did not start')), 10_000);
    lines(child, (line) => {
      const m = /^LISTENING (\d+)/.exec(line);
      if (m) {
        clearTimeout(t);
        res({ child, pid: child.pid, base: `http://127.0.0.1:${m[1]}`, stop: stopper(child) });
      }
    });
    child.once('exit', (c) => rej(new Error(`node baseline exited ${c}`)));
  });
}

export function nginxPath() {
  for (const p of ['/usr/sbin/nginx', '/usr/bin/nginx']) {
    if (spawnSync(p, ['-v']).status === 0) return p;
  }
  return null;
}

/**
 * nginx in the foreground with its own config in `dir`, one worker, on an ephemeral loopback port:
 * the IMDS token as a `return` (PUT), everything else as static files with the same bytes.
 */
export async function startNginx(nginx, dir, bodies) {
  const root = join(dir, 'www');
  const locations = [];
  for (const r of bodies.routes) {
    if (r.method === 'PUT') {
      const extra = Object.entries(r.headers ?? {})
        .map(([k, v]) => `add_header ${k} ${v};`)
        .join(' ');
      locations.push(`location = ${r.path} { default_type ${r.contentType}; ${extra} return 200 '${r.body}'; }`);
    } else {
      // try_files serves the file even for a URI ending in "/" (alias would look for an index).
      const name = `/route-${locations.length}.body`;
      await mkdir(root, { recursive: true });
      await writeFile(join(root, name), r.body);
      locations.push(`location = ${r.path} { default_type ${r.contentType}; root ${root}; try_files ${name} =404; }`);
    }
  }
  // A free port: bind 0 with node, release, hand to nginx (nginx cannot report an ephemeral port).
  const port = await new Promise((res) => {
    import('node:net').then(({ createServer }) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = s.address().port;
        s.close(() => res(p));
      });
    });
  });
  const conf = `
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  open_file_cache max=100;
  server {
    listen 127.0.0.1:${port};
    ${locations.join('\n    ')}
  }
}
`;
  const confFile = join(dir, 'nginx.conf');
  await writeFile(confFile, conf);
  const child = spawn(nginx, ['-c', confFile, '-p', dir, '-e', join(dir, 'error.log')], { stdio: 'ignore' });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const r = await fetch(`${base}${bodies.routes[1].path}`);
      await r.arrayBuffer();
      if (r.status === 200) break;
    } catch {}
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`nginx did not start: ${readFileSync(join(dir, 'error.log'), 'utf8').slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, pid: child.pid, base, stop: stopper(child) };
}
