// Issue 18's scenarios: chained roles beside plain ones, in one run. A chained role trades the token
// for a hub role's credentials (AssumeRoleWithWebIdentity), then assumes a target role in another
// account with them (AssumeRole, one hop); a plain role makes the first call only. Everything runs
// against one STS emulator (dist/demo/sts-emulator.js), which verifies every token and every SigV4
// signature, on 127.0.0.1.
//   npm run bench -- --chains [--quick]   writes bench/results/chains/latest.{json,md}
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DemoOidcIssuer } from '../../dist/demo/oidc-issuer.js';
import { StsEmulator } from '../../dist/demo/sts-emulator.js';
import { machine } from './machine.mjs';
import { memoryOf, spawnServe } from './procs.mjs';
import { putMetadataToken, range, spread, summariseRuns, waitReady, wrkGet } from './runs.mjs';

const SUBJECT = 'system:serviceaccount:bench:app';
const AUDIENCE = 'sts.amazonaws.com';
/** The hub role every chained role starts from: the one role that trusts the OIDC issuer. */
const HUB_ARN = 'arn:aws:iam::111111111111:role/hub';
const EXTERNAL_ID = 'bench-external-id';
const AUTHORIZATION = 'bench-chains-authorization-0123456789abcdef';

const plainArn = (i) => `arn:aws:iam::111111111111:role/plain-${i}`;
const targetArn = (i) => `arn:aws:iam::222222222222:role/target-${i}`;

/**
 * The two kinds of role, as the config file names them, and which STS answer holds the
 * credentials each serves: the web-identity call's for a plain role, the last hop's for a chained one.
 */
const KINDS = {
  plain: {
    name: (i) => `plain-${i}`,
    role: (i) => ({ name: `plain-${i}`, roleArn: plainArn(i) }),
    servedBy: (i) => ({ action: 'AssumeRoleWithWebIdentity', roleArn: plainArn(i) }),
  },
  chained: {
    name: (i) => `chained-${i}`,
    role: (i) => ({ name: `chained-${i}`, roleArn: HUB_ARN, chain: [{ roleArn: targetArn(i), externalId: EXTERNAL_ID }] }),
    servedBy: (i) => ({ action: 'AssumeRole', roleArn: targetArn(i) }),
  },
};

/** The GETs of the hot path, each a cache hit, and the header each needs. */
const ENDPOINTS = [
  {
    id: 'imds',
    title: 'IMDSv2 credentials GET',
    path: (role) => `/latest/meta-data/iam/security-credentials/${role}`,
    headers: (s) => ({ 'X-aws-ec2-metadata-token': s.imdsToken }),
  },
  {
    id: 'container',
    title: 'container endpoint GET',
    path: () => '/v1/credentials',
    headers: () => ({ Authorization: AUTHORIZATION }),
  },
];

/**
 * The full run takes about 3 minutes here. The quick one (about 8 s) starts 1 role of each kind and
 * measures each GET once, 1 s at 64 connections: enough to see the mode work, not to compare.
 */
const PLANS = {
  full: { levels: [16, 64], repeats: 3, hotSeconds: 3, warmSeconds: 1, roleCounts: [1, 1000], startRepeats: 3 },
  quick: { levels: [64], repeats: 1, hotSeconds: 1, warmSeconds: 0, roleCounts: [1], startRepeats: 1 },
};

/** The kernel's own line (1, 5 and 15 minute load averages, runnable/total tasks): what else the shared machine ran. */
const procLoadavg = () => readFileSync('/proc/loadavg', 'utf8').trim();

export async function chainsBench({ out, quick, log }) {
  const plan = quick ? PLANS.quick : PLANS.full;
  const report = {
    schema: 'crosscred-bench-chains/1',
    mode: quick ? 'quick' : 'full',
    startedAt: new Date().toISOString(),
    machine: { ...machine(), procLoadavgAtStart: procLoadavg() },
    plan,
    hotPath: [],
    memory: null,
    startUp: [],
    /** The 1-minute load average before each repeat. */
    loadAverages: [],
  };
  const maxRoles = Math.max(...plan.roleCounts);
  const indices = Array.from({ length: maxRoles }, (_, i) => i);
  const issuer = await DemoOidcIssuer.start();
  const webIdentityTrust = (roleArn) => ({ roleArn, issuer: issuer.url, audience: AUDIENCE, subject: SUBJECT });
  const sts = await StsEmulator.start({
    trust: [webIdentityTrust(HUB_ARN), ...indices.map((i) => webIdentityTrust(plainArn(i)))],
    // The targets trust the hub role (every session of it), with the ExternalId the config sends.
    assumeRoleTrust: indices.map((i) => ({ roleArn: targetArn(i), principal: HUB_ARN, externalId: EXTERNAL_ID })),
  });
  const dir = await mkdtemp(join(tmpdir(), 'crosscred-bench-chains-'));
  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, await issuer.mint({ sub: SUBJECT, aud: AUDIENCE, ttlSeconds: 3600 }));
  const authFile = join(dir, 'auth-token');
  await writeFile(authFile, AUTHORIZATION, { mode: 0o600 });
  const running = [];
  try {
    await hotPath();
    await startUp();
  } finally {
    for (const p of running) await p.stop();
    await sts.close();
    await issuer.close();
    await rm(dir, { recursive: true, force: true });
  }
  report.machine.loadAverageAtEnd = +loadavg()[0].toFixed(2);
  report.machine.procLoadavgAtEnd = procLoadavg();
  report.finishedAt = new Date().toISOString();
  report.durationSeconds = Math.round((Date.parse(report.finishedAt) - Date.parse(report.startedAt)) / 1000);
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(join(out, 'latest.md'), renderChainsMarkdown(report));
  log(`wrote ${join(out, 'latest.json')} and latest.md in ${report.durationSeconds} s`);
  return report;

  /** A config file with `roles` (config entries), a listener for each of `listenOn` (role names); written as JSON. */
  async function writeConfig(roles, listenOn, file) {
    const config = {
      tokenFile,
      region: 'us-east-1',
      stsEndpoint: sts.url,
      authTokenFile: authFile,
      roles,
      listen: listenOn.map((name) => `127.0.0.1:0=${name}`),
    };
    const path = join(dir, file);
    await writeFile(path, JSON.stringify(config));
    return path;
  }

  /** Both STS counters: AssumeRoleWithWebIdentity requests and AssumeRole requests. */
  function stsCounts() {
    return { webIdentity: sts.calls, assumeRole: sts.assumeRoleRequests.length, issued: sts.issued.length };
  }

  // ------------------------------------------------------------ 1: hot path, a chained role beside a plain one
  async function hotPath() {
    const roles = { plain: KINDS.plain.role(0), chained: KINDS.chained.role(0) };
    const config = await writeConfig(
      Object.values(roles),
      Object.values(roles).map((r) => r.name),
      'hot.json',
    );
    const p = await spawnServe(['--config', config]);
    running.push(p);
    await waitReady(p.admin);
    const afterStartup = memoryOf(p.pid);
    const bases = listenersByRole(p.entries);

    // Each endpoint of each role answers 200 with the key the emulator issued for that role's last
    // step, before any load: the chained listener must serve the target's credentials, not the hub's.
    const targets = [];
    for (const kind of Object.keys(KINDS)) {
      const role = roles[kind].name;
      const base = bases.get(role);
      if (!base) throw new Error(`no credential listener logged for ${role}`);
      const session = { imdsToken: await putMetadataToken(base) };
      const expected = issuedKey(KINDS[kind].servedBy(0));
      for (const e of ENDPOINTS) {
        const path = e.path(role);
        const headers = e.headers(session);
        const r = await fetch(`${base}${path}`, { headers });
        const body = await r.text();
        if (r.status !== 200) throw new Error(`${kind} ${e.id}: crosscred answered ${r.status}: ${body.slice(0, 200)}`);
        if (JSON.parse(body).AccessKeyId !== expected) throw new Error(`${kind} ${e.id}: the answer's AccessKeyId is not the one STS issued for its last step`);
        targets.push({ kind, endpoint: e, base, path, headers, bodyBytes: Buffer.byteLength(body) });
      }
    }

    const before = stsCounts();
    // Not reported: the JIT and the connections settle first.
    if (plan.warmSeconds > 0)
      for (const t of targets) await wrkGet({ base: t.base, path: t.path, headers: t.headers, connections: 64, durationS: plan.warmSeconds });
    log('warm-up done');
    const rows = new Map();
    // Interleaved: each repeat runs both endpoints at every level, plain and chained back to back,
    // before the next repeat starts, so a change in the machine's load lands on both kinds alike.
    // The orders turn with the repeat (with two of each, a counter shared across the loop would
    // put the same one first every time).
    for (let rep = 0; rep < plan.repeats; rep++) {
      report.loadAverages.push(+loadavg()[0].toFixed(2));
      for (const [level, connections] of plan.levels.entries()) {
        for (const e of turned(ENDPOINTS, rep + level)) {
          const key = `${e.id}@${connections}`;
          if (!rows.has(key)) rows.set(key, { endpoint: e.id, title: e.title, connections, bodyBytes: {}, runs: { plain: [], chained: [] } });
          const row = rows.get(key);
          const pair = targets.filter((x) => x.endpoint === e);
          for (const t of turned(pair, rep)) {
            row.bodyBytes[t.kind] = t.bodyBytes;
            row.runs[t.kind].push(await wrkGet({ base: t.base, path: t.path, headers: t.headers, connections, durationS: plan.hotSeconds }));
          }
          const [plain, chained] = [row.runs.plain.at(-1), row.runs.chained.at(-1)];
          log(`${e.id} c=${connections} #${rep + 1}: plain ${plain.rps}/s, chained ${chained.rps}/s; errors ${plain.errors + chained.errors}`);
        }
      }
    }
    for (const e of ENDPOINTS)
      for (const connections of plan.levels) {
        const row = rows.get(`${e.id}@${connections}`);
        report.hotPath.push({ ...row, summary: summarise(row.runs) });
      }
    const after = stsCounts();
    report.memory = {
      afterStartup,
      afterHotPath: memoryOf(p.pid),
      webIdentityCallsDuringHotPath: after.webIdentity - before.webIdentity,
      assumeRoleCallsDuringHotPath: after.assumeRole - before.assumeRole,
    };
    await p.stop();
    running.splice(running.indexOf(p), 1);
  }

  /** The AccessKeyId STS issued last for this action and role. */
  function issuedKey({ action, roleArn }) {
    return sts.issued.findLast((c) => c.action === action && c.roleArn === roleArn)?.accessKeyId;
  }

  // ------------------------------------------------------------ 2: STS calls and time to ready
  async function startUp() {
    const runs = new Map();
    for (let rep = 0; rep < plan.startRepeats; rep++) {
      report.loadAverages.push(+loadavg()[0].toFixed(2));
      for (const [n, count] of plan.roleCounts.entries()) {
        for (const kind of turned(Object.keys(KINDS), rep + n)) {
          const run = await startOnce(kind, count);
          const key = `${kind}@${count}`;
          if (!runs.has(key)) runs.set(key, { kind, roles: count, runs: [] });
          runs.get(key).runs.push(run);
          log(
            `start-up ${count} ${kind} #${rep + 1}: ready ${run.readyMs} ms, ${run.webIdentityCalls} web-identity + ${run.assumeRoleCalls} AssumeRole calls, ${run.rolesServed} roles served`,
          );
        }
      }
    }
    for (const count of plan.roleCounts)
      for (const kind of Object.keys(KINDS)) {
        const r = runs.get(`${kind}@${count}`);
        const field = (name) => spread(r.runs.map((x) => x[name]));
        report.startUp.push({
          ...r,
          readyMs: field('readyMs'),
          listeningMs: field('listeningMs'),
          webIdentityCalls: field('webIdentityCalls'),
          assumeRoleCalls: field('assumeRoleCalls'),
          assumeRoleRefused: field('assumeRoleRefused'),
          rolesServed: field('rolesServed'),
          rssAfterReadyMb: field('rssAfterReadyMb'),
        });
      }
  }

  /** One `serve` with `count` roles of `kind`, from process start to /readyz 200, and what STS saw meanwhile. */
  async function startOnce(kind, count) {
    const k = KINDS[kind];
    const ids = indices.slice(0, count);
    const config = await writeConfig(
      ids.map((i) => k.role(i)),
      [k.name(0)],
      `start-${kind}-${count}.json`,
    );
    const before = stsCounts();
    const p = await spawnServe(['--config', config]);
    running.push(p);
    try {
      await waitReady(p.admin);
      const readyMs = performance.now() - p.startedAt;
      const after = stsCounts();
      const issued = sts.issued.slice(before.issued);
      const served = new Set(ids.map((i) => k.servedBy(i).roleArn));
      return {
        listeningMs: Math.round(p.listeningMs),
        readyMs: Math.round(readyMs),
        webIdentityCalls: after.webIdentity - before.webIdentity,
        assumeRoleCalls: after.assumeRole - before.assumeRole,
        assumeRoleRefused: sts.assumeRoleRequests.slice(before.assumeRole).filter((r) => r.outcome !== 'issued').length,
        // Distinct roles whose served credentials STS issued: the targets for chained roles.
        rolesServed: new Set(issued.filter((c) => c.action === k.servedBy(0).action && served.has(c.roleArn)).map((c) => c.roleArn)).size,
        rssAfterReadyMb: memoryOf(p.pid).rssMb,
      };
    } finally {
      await p.stop();
      running.splice(running.indexOf(p), 1);
    }
  }
}

/** `xs` turned left by `by` places: with `by` the repeat's number, each item takes its turn first. */
function turned(xs, by) {
  return xs.map((_, i) => xs[(i + by) % xs.length]);
}

/** Each credential listener's base URL by the role it serves, from serve's "credential listener open" log lines. */
function listenersByRole(entries) {
  return new Map(entries.filter((e) => e.msg === 'credential listener open').map((e) => [e.role, `http://${e.address}`]));
}

function summarise(runs) {
  const s = summariseRuns(runs);
  s.chainedVsPlain = +(s.chained.rps.median / s.plain.rps.median).toFixed(3);
  return s;
}

function renderChainsMarkdown(r) {
  const m = r.machine;
  const out = [];
  out.push(`# crosscred benchmark: chained roles beside plain ones (issue 18)${r.mode === 'quick' ? ', quick run' : ''}`, '');
  out.push(
    `${r.startedAt}, ${r.durationSeconds} s. Machine: ${m.nproc} × ${m.cpuModel}, Node ${m.node}, Linux ${m.kernel}. Load average (1 min) ${r.loadAverages.join(', ')} before each repeat, on ${m.nproc} cores: the machine is shared, and other work ran beside this run.`,
    '',
    `\`/proc/loadavg\` at the start: \`${m.procLoadavgAtStart}\`; at the end: \`${m.procLoadavgAtEnd}\`.`,
    '',
  );
  out.push(
    "A plain role is one `AssumeRoleWithWebIdentity`. A chained role is that call for the hub role, then one `AssumeRole` hop into a role of another account, signed with the hub's credentials and sending an ExternalId; it serves the hop's credentials. One STS emulator answers both calls, verifying every token and every SigV4 signature.",
    '',
  );
  if (r.mode === 'quick') out.push('Quick run: one 1 s run of each GET with no warm-up. It shows the mode works; its req/s do not compare.', '');
  out.push('## Hot path', '');
  out.push(
    `One \`crosscred serve\` with one plain and one chained role, a listener for each; every request is a cache hit. \`wrk -t1\`, keep-alive, ${r.plan.hotSeconds} s per run, ${r.plan.repeats} interleaved repeat(s) per endpoint and level, plain and chained back to back: median (min–max).`,
    '',
  );
  out.push(
    '| endpoint | conn | plain req/s | p50 ms | p99 ms | chained req/s | p50 ms | p99 ms | errors | chained ÷ plain req/s | body bytes (plain / chained) |',
  );
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const row of r.hotPath) {
    const p = row.summary.plain;
    const c = row.summary.chained;
    out.push(
      `| ${row.title} | ${row.connections} | ${range(p.rps)} | ${range(p.p50Ms, 2)} | ${range(p.p99Ms, 2)} | ${range(c.rps)} | ${range(c.p50Ms, 2)} | ${range(c.p99Ms, 2)} | ${p.errors + c.errors} | ${Math.round(row.summary.chainedVsPlain * 100)}% | ${row.bodyBytes.plain} / ${row.bodyBytes.chained} |`,
    );
  }
  out.push('');
  const mem = r.memory;
  out.push(
    `RSS ${mem.afterStartup.rssMb} MB after start-up, ${mem.afterHotPath.rssMb} MB after the hot path (peak ${mem.afterHotPath.peakRssMb} MB). STS calls during the hot path: ${mem.webIdentityCallsDuringHotPath} web-identity, ${mem.assumeRoleCallsDuringHotPath} AssumeRole.`,
    '',
  );
  out.push('## STS calls and time to ready', '');
  out.push(
    `Process start to \`/readyz\` 200 (every role holds credentials), one listener on the first role; the others are fetched all the same. Chained roles share one hub role and each has its own target. ${r.plan.startRepeats} interleaved run(s): median (min–max).`,
    '',
  );
  out.push(
    '| roles | kind | start → ready ms | start → listening ms | web-identity calls | AssumeRole calls | AssumeRole refused | roles served | RSS after ready MB |',
  );
  out.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const s of r.startUp)
    out.push(
      `| ${s.roles} | ${s.kind} | ${range(s.readyMs)} | ${range(s.listeningMs)} | ${range(s.webIdentityCalls)} | ${range(s.assumeRoleCalls)} | ${range(s.assumeRoleRefused)} | ${range(s.rolesServed)} | ${range(s.rssAfterReadyMb, 1)} |`,
    );
  out.push('');
  return out.join('\n');
}
