// crosscred's benchmark suite (issue 5). Orchestrates only: wrk generates the load, crosscred and
// the baselines run as child processes, everything on 127.0.0.1.
//   node bench/run.mjs [--quick] [--out DIR]     (npm run bench builds dist/ first)
// Writes DIR/latest.json, DIR/latest.md and DIR/latest.svg (DIR: bench/results, or
// bench/results/quick with --quick so a quick run never replaces the full results).
//   node bench/run.mjs --issuer [--storm-vms N] [--hostile-clients N]   runs only the issuer
// scenarios (bench/lib/issuer-bench.mjs, issue 11) and writes bench/results/issuer/latest.{json,md}.
//   node bench/run.mjs --cluster [--max-pods N]   runs only the node agent and webhook scenarios
// (bench/lib/cluster-bench.mjs, issue 12) and writes bench/results/cluster/latest.{json,md}.
//   node bench/run.mjs --clouds   runs only the Alibaba and Tencent endpoints beside AWS's
// (bench/lib/clouds-bench.mjs, issue 13) and writes bench/results/clouds/latest.{json,md}.
//   node bench/run.mjs --chains [--quick]   runs only chained roles beside plain ones
// (bench/lib/chains-bench.mjs, issue 18) and writes bench/results/chains/latest.{json,md}.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DemoOidcIssuer } from '../dist/demo/oidc-issuer.js';
import { StsEmulator } from '../dist/demo/sts-emulator.js';
import { renderChart } from './lib/chart.mjs';
import { machine } from './lib/machine.mjs';
import { BENCH_DIR, CLI, memoryOf, nginxPath, spawnDaemonChild, spawnNodeBaseline, spawnServe, startNginx } from './lib/procs.mjs';
import { renderMarkdown } from './lib/report.mjs';
import { runWrk, wrkVersion } from './lib/wrk.mjs';

const USAGE = `Usage: npm run bench [-- --quick] [-- --out DIR]
       npm run bench -- --issuer [--storm-vms N] [--hostile-clients N] [--out DIR]
       npm run bench -- --cluster [--max-pods N] [--out DIR]
       npm run bench -- --clouds [--out DIR]
       npm run bench -- --chains [--quick] [--out DIR]

  --quick     16 and 64 connections, 1-2 s runs, fewer cold-path and role-scale points (under 1 min)
  --out DIR   where latest.{json,md,svg} go (default bench/results, or bench/results/quick)
  --issuer    only the issuer scenarios (tokens/s; a boot storm on 3 replicas and one Redis, without and
              with hostile clients); writes latest.{json,md} to bench/results/issuer. Needs redis-server.
  --storm-vms N        VMs in each boot storm (default 10000)
  --hostile-clients N  hostile clients alongside the second storm (default 1000)
  --cluster   only the Kubernetes scenarios: the node agent with 1, 100, 1,000 and 10,000 pod tokens
              (req/s, p99, RSS, bytes per entry, STS calls), webhook admission latency, and the
              sidecar's memory per pod in the same run; writes latest.{json,md} to bench/results/cluster
  --max-pods N         the largest pod count of --cluster (default 10000)
  --clouds    only the three clouds' endpoints: AWS IMDS and container, Alibaba URI and ECS metadata,
              Tencent CVM metadata, each cloud's serve its own process (hot path at 16 and 64
              connections, 3 interleaved repeats, node:http beside), time to the first credentials
              with 1 and 100 roles, RSS; writes latest.{json,md} to bench/results/clouds
  --chains    only chained roles (a web-identity hub role, then one AssumeRole hop) beside plain ones:
              STS calls and time to ready with 1 and 1,000 roles of each kind, hot-path req/s of one
              chained and one plain role in one serve (IMDS and container GETs, 16 and 64
              connections, 3 interleaved repeats); writes latest.{json,md} to bench/results/chains.
              With --quick: 1 role of each kind and 1 s runs at 64 connections (about 10 s), written
              to bench/results/quick/chains
Needs wrk and nginx (apt-get install wrk nginx-light) and a built dist/ (npm run bench builds it).
`;
let parsed;
try {
  parsed = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      issuer: { type: 'boolean', default: false },
      'storm-vms': { type: 'string', default: '10000' },
      'hostile-clients': { type: 'string', default: '1000' },
      cluster: { type: 'boolean', default: false },
      'max-pods': { type: 'string', default: '10000' },
      clouds: { type: 'boolean', default: false },
      chains: { type: 'boolean', default: false },
    },
  });
} catch (err) {
  process.stderr.write(`bench: ${err.message}\n\n${USAGE}`);
  process.exit(2);
}
if (parsed.values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const opts = parsed.values;
const QUICK = opts.quick;
const OUT = opts.out ?? join(BENCH_DIR, 'results', QUICK ? 'quick' : '');

/** Everything the modes change, in one place. */
const PLAN = QUICK
  ? {
      levels: [16, 64],
      closeLevels: [64],
      hotSeconds: 1,
      warmSeconds: 1,
      coldN: [1, 100, 1000],
      roleCounts: [1, 100],
      pairSeconds: 2,
      pairs: 1,
      pairScenarios: ['container'],
      warmScenarios: ['container'],
      scaleSeconds: 1,
    }
  : {
      levels: [1, 16, 64, 256, 1024],
      closeLevels: [1, 16, 64, 256, 1024],
      hotSeconds: 3,
      warmSeconds: 2,
      coldN: [1, 100, 1000, 10000],
      roleCounts: [1, 100, 10000],
      pairSeconds: 4,
      pairs: 3,
      pairScenarios: ['imds', 'container'],
      warmScenarios: ['imds', 'container'],
      scaleSeconds: 3,
    };
/** The whole suite's hard limit; the full plan takes about 5 minutes here. */
const SUITE_LIMIT_MS = QUICK ? 120_000 : 15 * 60_000;
/** How long the STS emulator takes to answer in the cold-path runs, so requests arrive while the first fetch is in flight (under the daemon's 400 ms cold wait). */
const COLD_STS_DELAY_MS = 300;
/** The slow-STS scenario's answer time (issue item 6). */
const SLOW_STS_MS = 2000;

const ACCOUNT = '111122223333';
const arn = (name) => `arn:aws:iam::${ACCOUNT}:role/${name}`;
const log = (...a) => process.stderr.write(`[bench ${((performance.now() - T0) / 1000).toFixed(1)}s] ${a.join(' ')}\n`);
const T0 = performance.now();
if (opts.issuer) await issuerMode();
if (opts.cluster) await clusterMode();
if (opts.clouds) await cloudsMode();
if (opts.chains) await chainsMode();

if (!existsSync(CLI)) {
  console.error(`${CLI} is missing: run "npm run build" first (npm run bench does)`);
  process.exit(2);
}
const WRK = wrkVersion();
if (!WRK) {
  console.error('wrk is not installed: apt-get install -y wrk (nginx-light adds the nginx baseline)');
  process.exit(2);
}
const NGINX = nginxPath();
const suiteTimer = setTimeout(() => {
  console.error(`bench: exceeded ${SUITE_LIMIT_MS / 1000} s, giving up`);
  process.exit(1);
}, SUITE_LIMIT_MS);
suiteTimer.unref();

const children = [];
const track = (p) => {
  children.push(p);
  return p;
};
process.on('exit', () => {
  for (const c of children) if (c.child.exitCode === null) c.child.kill('SIGKILL');
});

async function getText(url, init) {
  const r = await fetch(url, init);
  return { status: r.status, body: await r.text(), headers: r.headers };
}

async function waitReady(admin, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await fetch(`${admin}/readyz`)).status === 200) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`${admin}/readyz not 200 after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const stsCallsFor = (sts, from, roleName) => sts.issued.slice(from).filter((c) => c.roleArn === arn(roleName)).length;

// ---------------------------------------------------------------- setup
const maxRoles = Math.max(...PLAN.roleCounts);
const roleNames = ['app', 'cold-a', 'cold-b', ...Array.from({ length: maxRoles }, (_, i) => `role-${i}`)];
const issuer = await DemoOidcIssuer.start();
const sts = await StsEmulator.start({
  trust: roleNames.map((n) => ({ roleArn: arn(n), issuer: issuer.url, audience: 'sts.amazonaws.com', subject: 'system:serviceaccount:bench:app' })),
});
const dir = await mkdtemp(join(tmpdir(), 'crosscred-bench-'));
const tokenFile = join(dir, 'token');
await writeFile(tokenFile, await issuer.mint({ sub: 'system:serviceaccount:bench:app', aud: 'sts.amazonaws.com', ttlSeconds: 3600 }));
const authFile = join(dir, 'auth-token');
const common = ['--token-file', tokenFile, '--region', 'us-east-1', '--sts-endpoint', sts.url, '--auth-token-file', authFile];

const report = {
  schema: 'crosscred-bench/1',
  mode: QUICK ? 'quick' : 'full',
  startedAt: new Date().toISOString(),
  machine: { ...machine(), wrk: null, nginx: null },
  plan: PLAN,
  notes: [],
  hotPath: [],
  memory: {},
  coldPath: [],
  refreshUnderLoad: null,
  slowSts: null,
  roleScale: [],
};

report.machine.wrk = WRK;
report.machine.nginx = NGINX ? 'nginx (Debian nginx-light)' : null;
if (!NGINX) report.notes.push('nginx is not installed (apt-get install -y nginx-light): the nginx baseline is missing from this run');

try {
  await hotPath();
  await coldPath();
  await refreshAndSlowSts();
  await roleScale();
} finally {
  for (const c of children) await c.stop();
  await sts.close();
  await issuer.close();
  await rm(dir, { recursive: true, force: true });
}
report.finishedAt = new Date().toISOString();
report.durationSeconds = Math.round((performance.now() - T0) / 1000);
await mkdir(OUT, { recursive: true });
await writeFile(join(OUT, 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
await writeFile(join(OUT, 'latest.md'), renderMarkdown(report));
await writeFile(join(OUT, 'latest.svg'), renderChart(report));
log(`wrote ${join(OUT, 'latest.json')}, latest.md, latest.svg in ${report.durationSeconds} s`);
process.exit(0);

// ---------------------------------------------------------------- --cluster: the node agent and webhook only (issue 12)
async function clusterMode() {
  const maxPods = Number(opts['max-pods']);
  if (!Number.isInteger(maxPods) || maxPods < 1 || maxPods > 100_000) {
    process.stderr.write(`bench: --max-pods must be a whole number from 1 to 100000\n\n${USAGE}`);
    process.exit(2);
  }
  if (!wrkVersion()) {
    console.error('wrk is not installed: apt-get install -y wrk');
    process.exit(2);
  }
  const { clusterBench } = await import('./lib/cluster-bench.mjs');
  await clusterBench({ out: opts.out ?? join(BENCH_DIR, 'results', 'cluster'), maxPods, log });
  process.exit(0);
}

// ---------------------------------------------------------------- --clouds: Alibaba and Tencent beside AWS (issue 13)
async function cloudsMode() {
  if (opts.quick) {
    process.stderr.write('bench: --clouds and --quick do not combine (the quick run has no --clouds scenarios)\n');
    process.exit(2);
  }
  if (!existsSync(CLI)) {
    console.error(`${CLI} is missing: run "npm run build" first (npm run bench does)`);
    process.exit(2);
  }
  if (!wrkVersion()) {
    console.error('wrk is not installed: apt-get install -y wrk');
    process.exit(2);
  }
  // It takes about 4 minutes here.
  const limitMs = 10 * 60_000;
  const timer = setTimeout(() => {
    console.error(`bench --clouds: exceeded ${limitMs / 1000} s, giving up`);
    process.exit(1);
  }, limitMs);
  timer.unref();
  const { cloudsBench } = await import('./lib/clouds-bench.mjs');
  await cloudsBench({ out: opts.out ?? join(BENCH_DIR, 'results', 'clouds'), log });
  process.exit(0);
}

// ---------------------------------------------------------------- --chains: chained roles beside plain ones (issue 18)
async function chainsMode() {
  if (!existsSync(CLI)) {
    console.error(`${CLI} is missing: run "npm run build" first (npm run bench does)`);
    process.exit(2);
  }
  if (!wrkVersion()) {
    console.error('wrk is not installed: apt-get install -y wrk');
    process.exit(2);
  }
  // The full run takes about 3 minutes here, the quick one seconds.
  const limitMs = (QUICK ? 2 : 10) * 60_000;
  const timer = setTimeout(() => {
    console.error(`bench --chains: exceeded ${limitMs / 1000} s, giving up`);
    process.exit(1);
  }, limitMs);
  timer.unref();
  const { chainsBench } = await import('./lib/chains-bench.mjs');
  const out = opts.out ?? join(BENCH_DIR, 'results', ...(QUICK ? ['quick', 'chains'] : ['chains']));
  await chainsBench({ out, quick: QUICK, log });
  process.exit(0);
}

// ---------------------------------------------------------------- --issuer: the issuer scenarios only (issue 11)
async function issuerMode() {
  const count = (name, min, max) => {
    const n = Number(opts[name]);
    if (!Number.isInteger(n) || n < min || n > max) {
      process.stderr.write(`bench: --${name} must be a whole number from ${min} to ${max}\n\n${USAGE}`);
      process.exit(2);
    }
    return n;
  };
  const stormVms = count('storm-vms', 30, 10_000);
  const hostileClients = count('hostile-clients', 0, 1_000);
  if (opts.quick) {
    process.stderr.write('bench: --issuer and --quick do not combine (the quick run has no issuer scenarios)\n');
    process.exit(2);
  }
  if (!existsSync(CLI)) {
    console.error(`${CLI} is missing: run "npm run build" first (npm run bench does)`);
    process.exit(2);
  }
  // Signing 3 × 10,000 attestations takes minutes; the scenarios themselves are bounded by attempts.
  const limitMs = 20 * 60_000;
  const timer = setTimeout(() => {
    console.error(`bench --issuer: exceeded ${limitMs / 1000} s, giving up`);
    process.exit(1);
  }, limitMs);
  timer.unref();
  const { runIssuerBench } = await import('./lib/issuer-bench.mjs');
  await runIssuerBench({ out: opts.out ?? join(BENCH_DIR, 'results', 'issuer'), stormVms, hostileClients, log, limitMs });
  process.exit(0);
}

// ---------------------------------------------------------------- 1 + 2: hot path with baselines
async function hotPath() {
  const cc = track(await spawnServe([...common, '--role-arn', arn('app'), '--listen', '127.0.0.1:0']));
  await waitReady(cc.admin);
  report.memory.startupMs = { listening: Math.round(cc.listeningMs), ready: Math.round(performance.now() - cc.startedAt) };
  report.memory.afterStartup = memoryOf(cc.pid);
  const base = cc.listeners[0];
  const authorization = (await readFile(authFile, 'utf8')).trim();

  // The exact bytes crosscred answers, so the baselines send the same bodies.
  const tok = await getText(`${base}/latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '21600' } });
  const list = await getText(`${base}/latest/meta-data/iam/security-credentials/`, { headers: { 'x-aws-ec2-metadata-token': tok.body } });
  const creds = await getText(`${base}/latest/meta-data/iam/security-credentials/app`, { headers: { 'x-aws-ec2-metadata-token': tok.body } });
  const container = await getText(`${base}/v1/credentials`, { headers: { authorization } });
  for (const r of [tok, list, creds, container]) if (r.status !== 200) throw new Error(`crosscred answered ${r.status}: ${r.body}`);
  const bodies = {
    routes: [
      { method: 'PUT', path: '/latest/api/token', contentType: 'text/plain', body: tok.body, headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '21600' } },
      { method: 'GET', path: '/latest/meta-data/iam/security-credentials/', contentType: 'text/plain', body: list.body },
      { method: 'GET', path: '/latest/meta-data/iam/security-credentials/app', contentType: 'text/plain', body: creds.body },
      { method: 'GET', path: '/v1/credentials', contentType: 'application/json', body: container.body },
    ],
  };
  report.memory.bodyBytes = { imdsCredentials: Buffer.byteLength(creds.body), container: Buffer.byteLength(container.body) };
  const bodiesFile = join(dir, 'bodies.json');
  await writeFile(bodiesFile, JSON.stringify(bodies));

  const servers = [{ name: 'crosscred', base }];
  const node = track(await spawnNodeBaseline(bodiesFile));
  servers.push({ name: 'node:http', base: node.base });
  if (NGINX) {
    const ndir = join(dir, 'nginx');
    await mkdir(ndir);
    const ngx = track(await startNginx(NGINX, ndir, bodies));
    servers.push({ name: 'nginx', base: ngx.base });
  }
  const wrkOpts = { imdsToken: tok.body, role: 'app', authorization };

  for (const s of servers) {
    for (const scenario of PLAN.warmScenarios)
      await runWrk({ ...wrkOpts, base: s.base, scenario, connections: 64, durationS: PLAN.warmSeconds, keepAlive: true });
  }
  log('warm-up done; hot path:', servers.map((s) => s.name).join(', '));

  let rotation = 0;
  for (const scenario of ['imds', 'container']) {
    for (const keepAlive of [true, false]) {
      for (const c of keepAlive ? PLAN.levels : PLAN.closeLevels) {
        // Alternate the order so no server always runs first (or just after another's TIME_WAITs).
        const order = servers.map((_, i) => servers[(i + rotation) % servers.length]);
        rotation++;
        const row = { scenario, keepAlive, connections: c, results: {} };
        for (const s of order)
          row.results[s.name] = await runWrk({ ...wrkOpts, base: s.base, scenario, connections: c, durationS: PLAN.hotSeconds, keepAlive });
        const x = row.results.crosscred;
        row.ratio = {
          rpsVsNode: +(x.rps / row.results['node:http'].rps).toFixed(3),
          p99VsNode: +(x.p99Ms / row.results['node:http'].p99Ms).toFixed(3),
          ...(row.results.nginx
            ? { rpsVsNginx: +(x.rps / row.results.nginx.rps).toFixed(3), p99VsNginx: +(x.p99Ms / row.results.nginx.p99Ms).toFixed(3) }
            : {}),
        };
        report.hotPath.push(row);
        log(
          `${scenario} ${keepAlive ? 'keep-alive' : 'close'} c=${c}:`,
          Object.entries(row.results)
            .map(([k, v]) => `${k} ${v.rps}/s p99 ${v.p99Ms}ms err ${v.errors}`)
            .join(' | '),
        );
      }
    }
  }
  report.memory.afterHotPath = memoryOf(cc.pid);
  for (const c of [cc, node]) await c.stop();
  for (const s of children.splice(0)) await s.stop();
}

// ---------------------------------------------------------------- 3: cold path
async function coldPath() {
  const config = join(dir, 'cold.yaml');
  await writeFile(
    config,
    `region: us-east-1\ntokenFile: ${tokenFile}\nstsEndpoint: ${sts.url}\nauthTokenFile: ${authFile}\nroles:\n  - name: cold-a\n    roleArn: ${arn('cold-a')}\n  - name: cold-b\n    roleArn: ${arn('cold-b')}\nlisten:\n  - 127.0.0.1:0=cold-a\n`,
  );
  const authorization = (await readFile(authFile, 'utf8')).trim();
  for (const n of PLAN.coldN) {
    const client = spawn(process.execPath, [join(BENCH_DIR, 'cold-client.mjs'), String(n)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise((r) => client.once('message', r));
    const done = new Promise((r) => client.on('message', (m) => m.type === 'done' && r(m)));
    const from = sts.issued.length;
    const callsBefore = sts.calls;
    sts.failNext({ kind: 'delay', ms: COLD_STS_DELAY_MS }, { kind: 'delay', ms: COLD_STS_DELAY_MS });
    const cc = await spawnServe(['--config', config]);
    client.send({ type: 'go', base: cc.listeners[0], authorization, paths: ['/v1/credentials/cold-a', '/v1/credentials/cold-b'] });
    const bounded = setTimeout(() => client.kill('SIGKILL'), 40_000);
    await waitReady(cc.admin);
    const readyMs = performance.now() - cc.startedAt;
    const r = await done;
    clearTimeout(bounded);
    const row = {
      n,
      roles: 2,
      stsCalls: { 'cold-a': stsCallsFor(sts, from, 'cold-a'), 'cold-b': stsCallsFor(sts, from, 'cold-b'), total: sts.calls - callsBefore },
      stsDelayMs: COLD_STS_DELAY_MS,
      processStartToListeningMs: Math.round(cc.listeningMs),
      processStartToReadyMs: Math.round(readyMs),
      allAnsweredMs: Math.round(r.allAnsweredMs),
      p50Ms: r.p50Ms && +r.p50Ms.toFixed(1),
      p99Ms: r.p99Ms && +r.p99Ms.toFixed(1),
      statuses: r.statuses,
      clientErrors: r.errors,
    };
    report.coldPath.push(row);
    log(
      `cold n=${n}: sts calls ${JSON.stringify(row.stsCalls)}, all answered in ${row.allAnsweredMs} ms, statuses ${JSON.stringify(r.statuses)}, errors ${r.errors}, ready ${row.processStartToReadyMs} ms`,
    );
    await cc.stop();
  }
}

// ---------------------------------------------------------------- 4 + 6: refresh under load, slow STS
async function refreshAndSlowSts() {
  const dc = track(
    await spawnDaemonChild({
      'role-arn': arn('app'),
      'token-file': tokenFile,
      region: 'us-east-1',
      'sts-endpoint': sts.url,
      listen: ['127.0.0.1:0'],
      'admin-listen': '127.0.0.1:0',
      'auth-token-file': authFile,
      'log-level': 'warn',
    }),
  );
  const base = dc.listeners[0];
  const authorization = (await readFile(authFile, 'utf8')).trim();
  const tok = await getText(`${base}/latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '21600' } });
  const w = (scenario) =>
    runWrk({ base, scenario, connections: 64, durationS: PLAN.pairSeconds, keepAlive: true, imdsToken: tok.body, role: 'app', authorization });
  if (!QUICK) await w('container'); // warm-up
  // Short-lived credentials from the fake STS: 330 s, just over the shortest lifetime the cache
  // accepts (5 min), with room for STS's whole-second Date header and a loaded machine.
  sts.failAlways({ kind: 'lifetime', seconds: 330 });

  // 4: refreshes forced every REFRESH_GAP_MS during the run vs a run without, alternating.
  const refreshGapMs = 250;
  const refreshCount = Math.floor((PLAN.pairSeconds * 1000) / (refreshGapMs + 5)) - 1;
  const pairs = [];
  for (let i = 0; i < PLAN.pairs; i++) {
    for (const scenario of PLAN.pairScenarios) {
      const quiet = await w(scenario);
      const from = sts.calls;
      const [during, refresh] = await Promise.all([w(scenario), dc.call({ type: 'refresh', role: 'app', count: refreshCount, gapMs: refreshGapMs }, 60_000)]);
      pairs.push({ scenario, quiet, during, refreshes: sts.calls - from, refreshMs: median(refresh.took) });
    }
  }
  report.refreshUnderLoad = summarisePairs(pairs, {
    connections: 64,
    refreshGapMs,
    note: "Refreshes forced through cache.refreshNow() (the schedule's own entry point) every 250 ms during the run; the fake STS issues 330-second credentials. Natural refreshes of the shortest lifetime the cache accepts (5 min) come 30-60 s apart, too rarely for a short run.",
  });
  log('refresh under load:', JSON.stringify(report.refreshUnderLoad.summary));

  // 6: STS answers in 2 s; a refresh is in flight for the whole run vs a run without.
  const slowPairs = [];
  for (let i = 0; i < PLAN.pairs; i++) {
    for (const scenario of PLAN.pairScenarios) {
      sts.failAlways({ kind: 'lifetime', seconds: 330 });
      const quiet = await w(scenario);
      sts.failAlways({ kind: 'delay', ms: SLOW_STS_MS });
      const from = sts.calls;
      const count = Math.ceil((PLAN.pairSeconds * 1000) / SLOW_STS_MS);
      const [during, refresh] = await Promise.all([w(scenario), dc.call({ type: 'refresh', role: 'app', count, gapMs: 0 }, 60_000)]);
      slowPairs.push({ scenario, quiet, during, refreshes: sts.calls - from, refreshMs: median(refresh.took) });
    }
  }
  sts.heal();
  report.slowSts = summarisePairs(slowPairs, {
    connections: 64,
    stsDelayMs: SLOW_STS_MS,
    note: `The fake STS answers every call after ${SLOW_STS_MS} ms; refreshes are forced back to back so one is in flight for the whole "during" run.`,
  });
  log('slow STS:', JSON.stringify(report.slowSts.summary));
  report.memory.refreshDaemon = memoryOf(dc.pid);
  await dc.stop();
  children.splice(children.indexOf(dc), 1);
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? +s[Math.floor(s.length / 2)].toFixed(1) : null;
}

function summarisePairs(pairs, extra) {
  const byScenario = {};
  for (const p of pairs) {
    byScenario[p.scenario] ??= [];
    byScenario[p.scenario].push(p);
  }
  const summary = {};
  for (const [scenario, ps] of Object.entries(byScenario)) {
    const q = median(ps.map((p) => p.quiet.p99Ms));
    const d = median(ps.map((p) => p.during.p99Ms));
    summary[scenario] = {
      p99QuietMs: q,
      p99DuringMs: d,
      p99Change: +((d - q) / q).toFixed(3),
      rpsQuiet: median(ps.map((p) => p.quiet.rps)),
      rpsDuring: median(ps.map((p) => p.during.rps)),
      errorsDuring: ps.reduce((a, p) => a + p.during.errors, 0),
      errorsQuiet: ps.reduce((a, p) => a + p.quiet.errors, 0),
      refreshes: ps.reduce((a, p) => a + p.refreshes, 0),
      medianRefreshMs: median(ps.map((p) => p.refreshMs)),
    };
  }
  return { ...extra, summary, pairs };
}

// ---------------------------------------------------------------- 5: scale of roles
async function roleScale() {
  for (const count of PLAN.roleCounts) {
    const config = join(dir, `roles-${count}.json`);
    const roles = Array.from({ length: count }, (_, i) => ({ name: `role-${i}`, roleArn: arn(`role-${i}`) }));
    await writeFile(
      config,
      JSON.stringify({ region: 'us-east-1', tokenFile, stsEndpoint: sts.url, authTokenFile: authFile, roles, listen: ['127.0.0.1:0=role-0'] }),
    );
    const from = sts.issued.length;
    const callsBefore = sts.calls;
    const cc = track(await spawnServe(['--config', config]));
    await waitReady(cc.admin, 180_000);
    const readyMs = Math.round(performance.now() - cc.startedAt);
    const afterReady = memoryOf(cc.pid);
    const base = cc.listeners[0];
    const authorization = (await readFile(authFile, 'utf8')).trim();
    const tok = await getText(`${base}/latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '21600' } });
    const last = `role-${count - 1}`;
    const common64 = { base, connections: 64, durationS: PLAN.scaleSeconds, keepAlive: true, imdsToken: tok.body, role: 'role-0', authorization };
    await runWrk({ ...common64, scenario: 'container', containerPath: `/v1/credentials/${last}`, durationS: 1 }); // warm-up
    const imds = await runWrk({ ...common64, scenario: 'imds' });
    const container = await runWrk({ ...common64, scenario: 'container', containerPath: `/v1/credentials/${last}` });
    const row = {
      roles: count,
      stsCalls: sts.calls - callsBefore,
      distinctRolesFetched: new Set(sts.issued.slice(from).map((c) => c.roleArn)).size,
      processStartToReadyMs: readyMs,
      memoryAfterReady: afterReady,
      memoryAfterLoad: memoryOf(cc.pid),
      imds,
      container: { ...container, path: `/v1/credentials/${last}` },
    };
    report.roleScale.push(row);
    log(
      `roles=${count}: ready ${readyMs} ms, rss ${row.memoryAfterLoad.rssMb} MB, imds p99 ${imds.p99Ms} ms ${imds.rps}/s, container p99 ${container.p99Ms} ms ${container.rps}/s, sts calls ${row.stsCalls}`,
    );
    await cc.stop();
    children.splice(children.indexOf(cc), 1);
  }
}
