// Runs wrk (Debian's package) as a separate process and parses the JSON line our Lua `done` prints.
import { spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const LUA = join(dirname(fileURLToPath(import.meta.url)), '..', 'lua');
/** wrk's per-request timeout; a slower answer counts as an error. */
const WRK_TIMEOUT = '5s';

export function wrkVersion() {
  const r = spawnSync('wrk', ['-v'], { encoding: 'utf8' });
  if (r.error) return null;
  return (r.stdout + r.stderr)
    .split('\n')[0]
    .replace(/\s*\[.*$/, '')
    .trim();
}

/**
 * One wrk run, single-threaded (the 2-core machine: one core for wrk, one for the server).
 * scenario: 'imds' (the IMDSv2 three-request sequence), 'container' (GET with Authorization) or
 * 'tokens' (GET with the next of many Authorization values, bench/lua/rotate-tokens.lua).
 */
export function runWrk({
  base,
  scenario,
  connections,
  durationS,
  keepAlive,
  imdsToken,
  role,
  authorization,
  tokenFile,
  containerPath = '/v1/credentials',
  headers = {},
}) {
  const args = ['-t1', `-c${connections}`, `-d${durationS}s`, '--timeout', WRK_TIMEOUT];
  let url;
  if (scenario === 'tokens') {
    // The node agent (issue 12): each request carries the next of the pod tokens in tokenFile.
    args.push('-s', join(LUA, 'rotate-tokens.lua'));
    if (!keepAlive) args.push('-H', 'Connection: close');
    url = `${base}${containerPath}`;
    args.push(url, '--', tokenFile);
  } else if (scenario === 'imds') {
    args.push('-s', join(LUA, 'imds-sequence.lua'));
    url = `${base}/latest/api/token`;
    args.push(url, '--', imdsToken, role, keepAlive ? 'keepalive' : 'close');
  } else if (scenario === 'get') {
    // Any GET with fixed headers (the other clouds' endpoints, issue 13): containerPath is the path.
    args.push('-s', join(LUA, 'report.lua'));
    for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`);
    if (!keepAlive) args.push('-H', 'Connection: close');
    url = `${base}${containerPath}`;
    args.push(url);
  } else {
    args.push('-s', join(LUA, 'report.lua'), '-H', `Authorization: ${authorization}`);
    if (!keepAlive) args.push('-H', 'Connection: close');
    url = `${base}${containerPath}`;
    args.push(url);
  }
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CROSSCRED_BENCH_LUA: LUA } });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    // Bounded: the run's own duration plus generous slack for wrk to drain and report.
    const kill = setTimeout(() => child.kill('SIGKILL'), (durationS + 20) * 1000);
    child.on('exit', (code) => {
      clearTimeout(kill);
      const line = out.split('\n').find((l) => l.startsWith('BENCHJSON '));
      // The command line holds secrets (a session token, the container secret): name the URL only.
      if (code !== 0 || !line) return reject(new Error(`wrk (${scenario}) ${url} failed (${code}):\n${out.slice(0, 2000)}`));
      const r = JSON.parse(line.slice('BENCHJSON '.length));
      const errors = Object.values(r.errors).reduce((a, b) => a + b, 0);
      resolve({
        connections,
        keepAlive,
        requests: r.requests,
        rps: Math.round((r.requests / r.durationUs) * 1e6),
        p50Ms: r.latencyUs.p50 / 1000,
        p90Ms: r.latencyUs.p90 / 1000,
        p99Ms: r.latencyUs.p99 / 1000,
        p999Ms: r.latencyUs.p999 / 1000,
        maxMs: r.latencyUs.max / 1000,
        errors,
        errorDetail: r.errors,
      });
    });
  });
}
