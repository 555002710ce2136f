// Issue 13's scenarios: the Alibaba and Tencent endpoints beside AWS's, in one run. Each cloud's
// `crosscred serve` is its own child process against that cloud's STS emulator (dist/demo/), all on
// 127.0.0.1; the AWS endpoints and a bare node:http server answering the same bytes are the
// baselines, measured interleaved with the rest.
//   npm run bench -- --clouds    writes bench/results/clouds/latest.{json,md}
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { AlibabaStsEmulator } from '../../dist/demo/alibaba-sts-emulator.js';
import { DemoOidcIssuer } from '../../dist/demo/oidc-issuer.js';
import { StsEmulator } from '../../dist/demo/sts-emulator.js';
import { TencentStsEmulator } from '../../dist/demo/tencent-sts-emulator.js';
import { machine } from './machine.mjs';
import { memoryOf, spawnNodeBaseline, spawnServe } from './procs.mjs';
import { putMetadataToken, range, spread, summariseRuns, waitReady, wrkGet } from './runs.mjs';

const SUBJECT = 'system:serviceaccount:bench:app';
/** The role every hot-path listener serves; the start-up runs name theirs bench-0 … bench-(N-1). */
const HOT_ROLE = 'app';

const ALIBABA_PROVIDER = 'acs:ram::1234567890123456:oidc-provider/bench';
const TENCENT_PROVIDER = 'bench-oidc';

/** Each cloud's roles, the STS emulator's trust and the role entries of the config file. */
const CLOUDS = {
  aws: {
    audience: 'sts.amazonaws.com',
    roleArn: (name) => `arn:aws:iam::111122223333:role/${name}`,
    trust: (roleArn, issuer) => ({ roleArn, issuer, audience: 'sts.amazonaws.com', subject: SUBJECT }),
    role: (name, roleArn) => ({ name, roleArn }),
    start: (trust) => StsEmulator.start({ trust }),
  },
  alibaba: {
    audience: 'sts.aliyuncs.com',
    roleArn: (name) => `acs:ram::1234567890123456:role/${name}`,
    trust: (roleArn, issuer) => ({ roleArn, oidcProviderArn: ALIBABA_PROVIDER, issuer, audience: 'sts.aliyuncs.com', subject: SUBJECT }),
    role: (name, roleArn, stsEndpoint) => ({ name, cloud: 'alibaba', roleArn, oidcProviderArn: ALIBABA_PROVIDER, stsEndpoint }),
    start: (trust) => AlibabaStsEmulator.start({ trust }),
  },
  tencent: {
    audience: 'sts.cloud.tencent.com',
    roleArn: (name) => `qcs::cam::uin/100012345678:roleName/${name}`,
    trust: (roleArn, issuer) => ({ roleArn, providerId: TENCENT_PROVIDER, issuer, audience: 'sts.cloud.tencent.com', subject: SUBJECT }),
    role: (name, roleArn, stsEndpoint) => ({ name, cloud: 'tencent', roleArn, providerId: TENCENT_PROVIDER, region: 'ap-guangzhou', stsEndpoint }),
    start: (trust) => TencentStsEmulator.start({ trust }),
  },
};

/**
 * The endpoints of the hot path: which cloud's listener, the GET a client repeats, its headers, and
 * the key field its 200 body must carry (checked against what that cloud's emulator issued).
 */
const ENDPOINTS = [
  {
    id: 'aws-imds',
    cloud: 'aws',
    title: 'AWS IMDSv2 credentials GET',
    path: (role) => `/latest/meta-data/iam/security-credentials/${role}`,
    headers: (s) => ({ 'X-aws-ec2-metadata-token': s.imdsToken }),
    keyField: 'AccessKeyId',
  },
  {
    id: 'aws-container',
    cloud: 'aws',
    title: 'AWS container endpoint GET',
    path: () => '/v1/credentials',
    headers: (s) => ({ Authorization: s.authorization }),
    keyField: 'AccessKeyId',
  },
  {
    id: 'alibaba-uri',
    cloud: 'alibaba',
    title: 'Alibaba credentials URI GET',
    path: () => '/v1/alibaba/credentials',
    headers: () => ({}),
    keyField: 'AccessKeyId',
  },
  {
    id: 'alibaba-ecs',
    cloud: 'alibaba',
    title: 'Alibaba ECS metadata GET (token header)',
    path: (role) => `/latest/meta-data/ram/security-credentials/${role}`,
    headers: (s) => ({ 'X-aliyun-ecs-metadata-token': s.ecsToken }),
    keyField: 'AccessKeyId',
  },
  {
    id: 'tencent-cvm',
    cloud: 'tencent',
    title: 'Tencent CVM metadata GET',
    path: (role) => `/latest/meta-data/cam/security-credentials/${role}`,
    headers: () => ({}),
    keyField: 'TmpSecretId',
  },
];

/** About 4 minutes here. No quick form: even one short run of each endpoint and start-up takes over 20 s, too long for `npm test`'s quick run. */
const PLAN = { levels: [16, 64], repeats: 3, hotSeconds: 3, warmSeconds: 1, roleCounts: [1, 100], startRepeats: 3 };

/** The key an emulator issued last, by the field crosscred's answer names it with. */
const lastIssuedKey = (sts) => {
  const c = sts.issued.at(-1);
  return c?.accessKeyId ?? c?.secretId;
};

export async function cloudsBench({ out, log }) {
  const report = {
    schema: 'crosscred-bench-clouds/1',
    startedAt: new Date().toISOString(),
    machine: machine(),
    plan: PLAN,
    hotPath: [],
    memory: {},
    startUp: [],
    /** The 1-minute load average before each repeat: what else the shared machine ran meanwhile. */
    loadAverages: [],
  };
  const issuer = await DemoOidcIssuer.start();
  const maxRoles = Math.max(...PLAN.roleCounts);
  const names = [HOT_ROLE, ...Array.from({ length: maxRoles }, (_, i) => `bench-${i}`)];
  const sts = {};
  for (const [cloud, c] of Object.entries(CLOUDS)) sts[cloud] = await c.start(names.map((n) => c.trust(c.roleArn(n), issuer.url)));
  const dir = await mkdtemp(join(tmpdir(), 'crosscred-bench-clouds-'));
  const tokenFiles = {};
  for (const [cloud, c] of Object.entries(CLOUDS)) {
    tokenFiles[cloud] = join(dir, `token-${cloud}`);
    await writeFile(tokenFiles[cloud], await issuer.mint({ sub: SUBJECT, aud: c.audience, ttlSeconds: 3600 }));
  }
  const authFile = join(dir, 'auth-token');
  await writeFile(authFile, 'bench-clouds-authorization-0123456789abcdef', { mode: 0o600 });
  const running = [];
  try {
    await hotPath();
    await startUp();
  } finally {
    for (const p of running) await p.stop();
    for (const s of Object.values(sts)) await s.close();
    await issuer.close();
    await rm(dir, { recursive: true, force: true });
  }
  report.machine.loadAverageAtEnd = +loadavg()[0].toFixed(2);
  report.finishedAt = new Date().toISOString();
  report.durationSeconds = Math.round((Date.parse(report.finishedAt) - Date.parse(report.startedAt)) / 1000);
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(join(out, 'latest.md'), renderCloudsMarkdown(report));
  log(`wrote ${join(out, 'latest.json')} and latest.md in ${report.durationSeconds} s`);
  return report;

  /** The config file of `roles` (names) of one cloud, the listener on the first; written as JSON. */
  async function configFor(cloud, roles, file) {
    const c = CLOUDS[cloud];
    const config = {
      tokenFile: tokenFiles[cloud],
      roles: roles.map((n) => c.role(n, c.roleArn(n), sts[cloud].url)),
      listen: [`127.0.0.1:0=${roles[0]}`],
      // AWS roles' settings; the AWS listener keeps its container endpoint behind the token, as
      // the main suite runs it. Without --auth-token-file the Alibaba URI is open on loopback.
      ...(cloud === 'aws' ? { region: 'us-east-1', stsEndpoint: sts.aws.url, authTokenFile: authFile } : {}),
    };
    const path = join(dir, file);
    await writeFile(path, JSON.stringify(config));
    return path;
  }

  // ------------------------------------------------------------ 1 + 3: hot path, memory after it
  async function hotPath() {
    const serves = {};
    const session = { authorization: 'bench-clouds-authorization-0123456789abcdef' };
    for (const cloud of Object.keys(CLOUDS)) {
      const p = await spawnServe(['--config', await configFor(cloud, [HOT_ROLE], `hot-${cloud}.json`)]);
      running.push(p);
      await waitReady(p.admin);
      serves[cloud] = { ...p, base: p.listeners[0], afterStartup: memoryOf(p.pid) };
    }
    session.imdsToken = await putMetadataToken(serves.aws.base, 'x-aws-ec2-metadata-token-ttl-seconds');
    session.ecsToken = await putMetadataToken(serves.alibaba.base, 'x-aliyun-ecs-metadata-token-ttl-seconds');

    // Every endpoint answers 200 with the key its cloud's emulator issued, before any load; the
    // same bytes go to the node:http baseline.
    const routes = [];
    const targets = [];
    for (const e of ENDPOINTS) {
      const base = serves[e.cloud].base;
      const path = e.path(HOT_ROLE);
      const headers = e.headers(session);
      const r = await fetch(`${base}${path}`, { headers });
      const body = await r.text();
      if (r.status !== 200) throw new Error(`${e.id}: crosscred answered ${r.status}: ${body.slice(0, 200)}`);
      const key = JSON.parse(body)[e.keyField];
      if (key !== lastIssuedKey(sts[e.cloud])) throw new Error(`${e.id}: the answer's ${e.keyField} is not the one the ${e.cloud} STS emulator issued`);
      routes.push({ method: 'GET', path, contentType: r.headers.get('content-type') ?? 'application/json', body });
      targets.push({ endpoint: e, path, headers, base, bodyBytes: Buffer.byteLength(body) });
    }
    const bodiesFile = join(dir, 'bodies.json');
    await writeFile(bodiesFile, JSON.stringify({ routes }));
    const node = await spawnNodeBaseline(bodiesFile);
    running.push(node);

    const stsBefore = Object.fromEntries(Object.entries(sts).map(([k, s]) => [k, s.calls]));
    const servers = (t) => [
      { name: 'crosscred', base: t.base },
      { name: 'node:http', base: node.base },
    ];
    // Not reported: the JIT and the connections settle first, as in the main suite.
    for (const t of targets)
      for (const s of servers(t)) await wrkGet({ base: s.base, path: t.path, headers: t.headers, connections: 64, durationS: PLAN.warmSeconds });
    log('warm-up done');
    const rows = new Map();
    let rotation = 0;
    let flip = 0;
    // Interleaved: each repeat runs every endpoint at every level before the next repeat starts, in
    // a rotated order, so a change in the machine's load lands on all of them alike.
    for (let rep = 0; rep < PLAN.repeats; rep++) {
      report.loadAverages.push(+loadavg()[0].toFixed(2));
      for (const connections of PLAN.levels) {
        const order = targets.map((_, i) => targets[(i + rotation) % targets.length]);
        rotation++;
        for (const t of order) {
          const key = `${t.endpoint.id}@${connections}`;
          if (!rows.has(key))
            rows.set(key, {
              endpoint: t.endpoint.id,
              cloud: t.endpoint.cloud,
              title: t.endpoint.title,
              connections,
              bodyBytes: t.bodyBytes,
              runs: { crosscred: [], 'node:http': [] },
            });
          const pair = servers(t);
          if (flip++ % 2 === 1) pair.reverse(); // neither always runs first
          for (const s of pair)
            rows.get(key).runs[s.name].push(await wrkGet({ base: s.base, path: t.path, headers: t.headers, connections, durationS: PLAN.hotSeconds }));
          const last = rows.get(key).runs.crosscred.at(-1);
          log(`${t.endpoint.id} c=${connections} #${rep + 1}: ${last.rps}/s p99 ${last.p99Ms} ms, errors ${last.errors}`);
        }
      }
    }
    for (const endpoint of ENDPOINTS)
      for (const connections of PLAN.levels) {
        const row = rows.get(`${endpoint.id}@${connections}`);
        report.hotPath.push({ ...row, summary: summarise(row.runs) });
      }
    for (const cloud of Object.keys(CLOUDS)) {
      report.memory[cloud] = {
        afterStartup: serves[cloud].afterStartup,
        afterHotPath: memoryOf(serves[cloud].pid),
        stsCallsDuringHotPath: sts[cloud].calls - stsBefore[cloud],
      };
      await serves[cloud].stop();
      running.splice(running.indexOf(serves[cloud]), 1);
    }
    await node.stop();
    running.splice(running.indexOf(node), 1);
  }

  // ------------------------------------------------------------ 2: time to the first credentials
  async function startUp() {
    const runs = new Map();
    let rotation = 0;
    for (let rep = 0; rep < PLAN.startRepeats; rep++) {
      report.loadAverages.push(+loadavg()[0].toFixed(2));
      for (const roles of PLAN.roleCounts) {
        const clouds = Object.keys(CLOUDS);
        const order = clouds.map((_, i) => clouds[(i + rotation) % clouds.length]);
        rotation++;
        for (const cloud of order) {
          const roleNames = names.slice(1, roles + 1);
          const config = await configFor(cloud, roleNames, `start-${cloud}-${roles}.json`);
          const emulator = sts[cloud];
          const callsBefore = emulator.calls;
          const issuedBefore = emulator.issued.length;
          const p = await spawnServe(['--config', config]);
          running.push(p);
          await waitReady(p.admin);
          const readyMs = performance.now() - p.startedAt;
          const run = {
            listeningMs: Math.round(p.listeningMs),
            readyMs: Math.round(readyMs),
            stsCalls: emulator.calls - callsBefore,
            rolesFetched: new Set(emulator.issued.slice(issuedBefore).map((c) => c.roleArn)).size,
            rssAfterReadyMb: memoryOf(p.pid).rssMb,
          };
          const key = `${cloud}@${roles}`;
          if (!runs.has(key)) runs.set(key, { cloud, roles, runs: [] });
          runs.get(key).runs.push(run);
          log(`start-up ${cloud}, ${roles} roles #${rep + 1}: ready ${run.readyMs} ms, ${run.stsCalls} STS calls, ${run.rolesFetched} roles fetched`);
          await p.stop();
          running.splice(running.indexOf(p), 1);
        }
      }
    }
    for (const roles of PLAN.roleCounts)
      for (const cloud of Object.keys(CLOUDS)) {
        const r = runs.get(`${cloud}@${roles}`);
        report.startUp.push({
          ...r,
          readyMs: spread(r.runs.map((x) => x.readyMs)),
          listeningMs: spread(r.runs.map((x) => x.listeningMs)),
          stsCalls: spread(r.runs.map((x) => x.stsCalls)),
          rolesFetched: spread(r.runs.map((x) => x.rolesFetched)),
          rssAfterReadyMb: spread(r.runs.map((x) => x.rssAfterReadyMb)),
        });
      }
  }
}

function summarise(runs) {
  const s = summariseRuns(runs);
  s.rpsVsNode = +(s.crosscred.rps.median / s['node:http'].rps.median).toFixed(3);
  return s;
}

function renderCloudsMarkdown(r) {
  const m = r.machine;
  const out = [];
  out.push("# crosscred benchmark: the three clouds' endpoints (issue 13)", '');
  out.push(
    `${r.startedAt}, ${r.durationSeconds} s. Machine: ${m.nproc} × ${m.cpuModel}, Node ${m.node}, Linux ${m.kernel}. Load average (1 min) ${m.loadAverageAtStart} at start, ${r.loadAverages.join(', ')} before each repeat, ${m.loadAverageAtEnd} at the end, on ${m.nproc} cores: the machine is shared, and other work ran beside this run.`,
    '',
  );
  out.push('## Hot path', '');
  out.push(
    `Each cloud's \`crosscred serve\` is its own process with one role; every request is a cache hit. \`wrk -t1\`, keep-alive, ${r.plan.hotSeconds} s per run, ${r.plan.repeats} interleaved repeats per endpoint and level: median (min–max). node:http answers the same bytes in the same run.`,
    '',
  );
  out.push('| endpoint | conn | crosscred req/s | p50 ms | p99 ms | errors | node:http req/s | node:http p99 ms | ÷ node req/s | body bytes |');
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const row of r.hotPath) {
    const x = row.summary.crosscred;
    const n = row.summary['node:http'];
    out.push(
      `| ${row.title} | ${row.connections} | ${range(x.rps)} | ${range(x.p50Ms, 2)} | ${range(x.p99Ms, 2)} | ${x.errors} | ${range(n.rps)} | ${range(n.p99Ms, 2)} | ${Math.round(row.summary.rpsVsNode * 100)}% | ${row.bodyBytes} |`,
    );
  }
  out.push('');
  out.push('## Memory', '');
  out.push('| cloud | RSS after start-up MB | RSS after the hot path MB | peak RSS MB | STS calls during the hot path |');
  out.push('|---|---:|---:|---:|---:|');
  for (const [cloud, mem] of Object.entries(r.memory))
    out.push(`| ${cloud} | ${mem.afterStartup.rssMb} | ${mem.afterHotPath.rssMb} | ${mem.afterHotPath.peakRssMb} | ${mem.stsCallsDuringHotPath} |`);
  out.push('');
  out.push('## Time to the first credentials', '');
  out.push(
    `Process start to \`/readyz\` 200 (every role holds credentials), one listener on the first role; the others are fetched all the same. ${r.plan.startRepeats} interleaved runs: median (min–max).`,
    '',
  );
  out.push('| cloud | roles | start → ready ms | start → listening ms | STS calls | roles fetched | RSS after ready MB |');
  out.push('|---|---:|---:|---:|---:|---:|---:|');
  for (const s of r.startUp)
    out.push(
      `| ${s.cloud} | ${s.roles} | ${range(s.readyMs)} | ${range(s.listeningMs)} | ${range(s.stsCalls)} | ${range(s.rolesFetched)} | ${range(s.rssAfterReadyMb, 1)} |`,
    );
  out.push('');
  return out.join('\n');
}
