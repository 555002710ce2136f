// Issue 12's scenarios: `crosscred node-agent` serving 1 to 10,000 distinct pod tokens, the
// admission webhook's latency, and the per-pod memory of the node agent against the per-pod
// sidecar (`serve`), all measured in the same run. Everything binds 127.0.0.1.
//   npm run bench -- --cluster [--max-pods N]    writes bench/results/cluster/latest.{json,md}
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DemoOidcIssuer } from '../../dist/demo/oidc-issuer.js';
import { StsEmulator } from '../../dist/demo/sts-emulator.js';
import { machine } from './machine.mjs';
import { BENCH_DIR, memoryOf, spawnCommand } from './procs.mjs';
import { testSupport } from './test-support.mjs';
import { runWrk } from './wrk.mjs';

const ACCOUNT = '111122223333';
const ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/team/app`;
const SUBJECT = 'system:serviceaccount:bench:app';
/**
 * The sidecar's V8 flags, read from the manifest the sidecar ships with (k8s/base), so the
 * comparison is with the sidecar as deployed.
 */
function sidecarNodeOptions() {
  const manifest = readFileSync(join(BENCH_DIR, '..', 'k8s/base/deployment.yaml'), 'utf8');
  const m = /name: NODE_OPTIONS\s+value: "?([^"\n]+)"?/.exec(manifest);
  if (!m) throw new Error('k8s/base/deployment.yaml sets no NODE_OPTIONS for the sidecar');
  return m[1].trim();
}

/** The pod count a kubelet allows by default: the node agent's fixed cost is shared by this many pods. */
const PODS_PER_NODE = 110;

/** Runs `jobs` with at most `concurrency` at once; returns their results in order. */
async function pool(jobs, concurrency) {
  const results = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, jobs.length) }, async () => {
      while (next < jobs.length) {
        const i = next++;
        results[i] = await jobs[i]();
      }
    }),
  );
  return results;
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const round1 = (x) => Math.round(x * 10) / 10;

async function metricValue(admin, name) {
  const text = await (await fetch(`${admin}/metrics`)).text();
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

export async function clusterBench({ out, maxPods, log }) {
  const podCounts = [1, 100, 1000, 10_000].filter((n) => n <= maxPods);
  const report = {
    schema: 'crosscred-bench-cluster/1',
    startedAt: new Date().toISOString(),
    machine: machine(),
    notes: [],
    nodeAgent: [],
    sidecar: null,
    perPod: null,
    webhook: null,
  };
  const issuer = await DemoOidcIssuer.start();
  const sts = await StsEmulator.start({ trust: [{ roleArn: ROLE_ARN, issuer: issuer.url, audience: 'sts.amazonaws.com', subject: SUBJECT }] });
  const dir = await mkdtemp(join(tmpdir(), 'crosscred-bench-cluster-'));
  const running = [];
  /** One token per pod, as each pod's kubelet-projected token differs (pod name and uid claims). */
  const tokens = [];
  try {
    const mintStarted = performance.now();
    for (let i = 0; i < Math.max(...podCounts); i++) {
      const pod = `app-${i.toString(36).padStart(5, '0')}-x7k2p`;
      tokens.push(
        await issuer.mint({
          sub: SUBJECT,
          aud: 'sts.amazonaws.com',
          ttlSeconds: 3600,
          extra: {
            'kubernetes.io': {
              namespace: 'bench',
              pod: { name: pod, uid: `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}` },
              serviceaccount: { name: 'app', uid: '5f0c-bench' },
            },
          },
        }),
      );
    }
    log(`minted ${tokens.length} pod tokens in ${Math.round(performance.now() - mintStarted)} ms (${tokens[0].length} bytes each)`);
    report.tokenBytes = tokens[0].length;

    for (const pods of podCounts) report.nodeAgent.push(await nodeAgentRun(pods, tokens.slice(0, pods)));
    report.sidecar = await sidecarRun();
    const largest = report.nodeAgent.at(-1);
    const smallest = report.nodeAgent[0];
    const bytesPerEntry =
      largest.pods > smallest.pods ? ((largest.rssAfterWarmMb - smallest.rssAfterWarmMb) * 1024 * 1024) / (largest.pods - smallest.pods) : null;
    const heapPerEntry = largest.pods > smallest.pods ? ((largest.heapUsedMb - smallest.heapUsedMb) * 1024 * 1024) / (largest.pods - smallest.pods) : null;
    report.perPod = {
      podsPerNode: PODS_PER_NODE,
      sidecarRssMb: report.sidecar.rssAfterWarmMb,
      nodeAgentBaseRssMb: smallest.rssAfterWarmMb,
      nodeAgentBytesPerEntryByRss: bytesPerEntry === null ? null : Math.round(bytesPerEntry),
      nodeAgentBytesPerEntryByHeap: heapPerEntry === null ? null : Math.round(heapPerEntry),
      // What one pod costs with the node agent: its share of the agent's fixed memory on a full
      // node, plus one cache entry.
      nodeAgentPerPodMb: round1(smallest.rssAfterWarmMb / PODS_PER_NODE + (bytesPerEntry ?? 0) / (1024 * 1024)),
    };
    report.webhook = await webhookRun();
  } finally {
    for (const p of running) await p.stop();
    await sts.close();
    await issuer.close();
    await rm(dir, { recursive: true, force: true });
  }
  report.finishedAt = new Date().toISOString();
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(join(out, 'latest.md'), renderClusterMarkdown(report));
  log(`wrote ${join(out, 'latest.json')} and latest.md`);
  return report;

  async function startAgent() {
    const agent = await spawnCommand(
      'node-agent',
      [
        '--listen',
        '127.0.0.1:0',
        '--admin-listen',
        '127.0.0.1:0',
        '--allowed-issuer',
        issuer.url,
        '--region',
        'us-east-1',
        '--sts-endpoint',
        sts.url,
        // The benchmark measures the cache, not the per-address limiter: every pod here shares one
        // client address, which a real node never does.
        '--rate-per-second',
        '10000',
        '--rate-burst',
        '100000',
        // Room for every pod of the largest run (10,000 entries are about 80 MB): what is measured is
        // the cost per entry, not the eviction the default bound would start at about 4,000.
        '--max-cache-bytes',
        String(512 * 1024 * 1024),
      ],
      (entries) =>
        entries.some((e) => typeof e.msg === 'string' && e.msg.startsWith('admin listener open')) && entries.some((e) => e.msg === 'credential listener open'),
    );
    running.push(agent);
    agent.base = `http://${agent.entries.find((e) => e.msg === 'credential listener open').address}`;
    agent.admin = `http://${agent.entries.find((e) => typeof e.msg === 'string' && e.msg.startsWith('admin listener open')).address}`;
    return agent;
  }

  async function nodeAgentRun(pods, podTokens) {
    const agent = await startAgent();
    const url = `${agent.base}/v1/credentials/${ROLE_ARN}`;
    const stsBefore = sts.calls;
    const warmStarted = performance.now();
    const statuses = await pool(
      podTokens.map((token) => async () => {
        const r = await fetch(url, { headers: { Authorization: token } });
        await r.arrayBuffer();
        return r.status;
      }),
      32,
    );
    const warmMs = performance.now() - warmStarted;
    const failed = statuses.filter((s) => s !== 200).length;
    if (failed > 0) throw new Error(`node agent: ${failed} of ${pods} first requests were not 200 (${[...new Set(statuses)].join(', ')})`);
    const stsCallsWarm = sts.calls - stsBefore;
    const rssAfterWarm = memoryOf(agent.pid);
    const tokenFile = join(dir, `tokens-${pods}`);
    await writeFile(tokenFile, `${podTokens.join('\n')}\n`);
    const stsBeforeHot = sts.calls;
    const wrkOptions = { base: agent.base, scenario: 'tokens', connections: 64, keepAlive: true, tokenFile, containerPath: `/v1/credentials/${ROLE_ARN}` };
    // One second first, not reported: the JIT and the connections settle, as in the main suite.
    await runWrk({ ...wrkOptions, durationS: 1 });
    const hot = await runWrk({ ...wrkOptions, durationS: 3 });
    const row = {
      pods,
      stsCallsWarm,
      warmMs: Math.round(warmMs),
      rssAfterWarmMb: rssAfterWarm.rssMb,
      hot: { rps: hot.rps, p50Ms: hot.p50Ms, p99Ms: hot.p99Ms, errors: hot.errors, requests: hot.requests },
      stsCallsHot: sts.calls - stsBeforeHot,
      rssAfterHotMb: memoryOf(agent.pid).rssMb,
      peakRssMb: memoryOf(agent.pid).peakRssMb,
      // V8's live heap after the hot phase's garbage collections: closer to what each entry keeps
      // than RSS, which also holds the warm-up's garbage until a major collection.
      heapUsedMb: round1((await metricValue(agent.admin, 'crosscred_nodejs_heap_size_used_bytes')) / (1024 * 1024)),
      entries: await metricValue(agent.admin, 'crosscred_node_agent_entries'),
      cacheBytes: await metricValue(agent.admin, 'crosscred_node_agent_cache_bytes'),
    };
    log(
      `node agent, ${pods} pods: ${row.stsCallsWarm} STS calls to warm in ${row.warmMs} ms; hot ${row.hot.rps} req/s p99 ${row.hot.p99Ms} ms; rss ${row.rssAfterHotMb} MB`,
    );
    await agent.stop();
    running.splice(running.indexOf(agent), 1);
    return row;
  }

  /** One pod's crosscred sidecar as k8s/base runs it: `serve` with one role, warmed by a few requests. */
  async function sidecarRun() {
    const tokenFile = join(dir, 'sidecar-token');
    await writeFile(tokenFile, tokens[0]);
    const authFile = join(dir, 'sidecar-auth');
    await writeFile(authFile, 'bench-sidecar-authorization-0123456789abcdef', { mode: 0o600 });
    const nodeOptions = sidecarNodeOptions();
    const sidecar = await spawnCommand(
      'serve',
      [
        '--role-arn',
        ROLE_ARN,
        '--token-file',
        tokenFile,
        '--region',
        'us-east-1',
        '--sts-endpoint',
        sts.url,
        '--auth-token-file',
        authFile,
        '--admin-listen',
        '127.0.0.1:0',
        '--listen',
        '127.0.0.1:0',
        '--log-level',
        'info',
      ],
      (entries) => entries.some((e) => typeof e.msg === 'string' && e.msg.startsWith('admin listener open')),
      { NODE_OPTIONS: nodeOptions },
    );
    running.push(sidecar);
    const admin = `http://${sidecar.entries.find((e) => typeof e.msg === 'string' && e.msg.startsWith('admin listener open')).address}`;
    const deadline = Date.now() + 30_000;
    while ((await fetch(`${admin}/readyz`)).status !== 200) {
      if (Date.now() > deadline) throw new Error('the sidecar did not become ready');
      await new Promise((r) => setTimeout(r, 20));
    }
    const base = `http://${sidecar.entries.find((e) => e.msg === 'credential listener open').address}`;
    for (let i = 0; i < 20; i++) {
      const r = await fetch(`${base}/v1/credentials`, { headers: { Authorization: 'bench-sidecar-authorization-0123456789abcdef' } });
      await r.arrayBuffer();
      if (r.status !== 200) throw new Error(`the sidecar answered ${r.status}`);
    }
    const row = { nodeOptions, rssAfterWarmMb: memoryOf(sidecar.pid).rssMb, peakRssMb: memoryOf(sidecar.pid).peakRssMb };
    log(`sidecar (serve, one role, NODE_OPTIONS=${nodeOptions}): rss ${row.rssAfterWarmMb} MB`);
    await sidecar.stop();
    running.splice(running.indexOf(sidecar), 1);
    return row;
  }

  /** Admission latency as the API server sees it: AdmissionReviews over HTTPS, 8 at a time. */
  async function webhookRun() {
    const { selfSignedCert } = await testSupport('self-signed.ts');
    const { FakeKubeApiServer } = await testSupport('fake-kube-apiserver.ts');
    const { admissionReview, deploymentPod } = await testSupport('admission-pods.ts');
    const tls = { certFile: join(dir, 'webhook.crt'), keyFile: join(dir, 'webhook.key') };
    await selfSignedCert({ cn: 'crosscred-webhook', ips: ['127.0.0.1'], ...tls });
    const api = await FakeKubeApiServer.start({ bearer: 'bench-webhook-reader' });
    api.addServiceAccount({ namespace: 'payments', name: 'payments-api', annotations: { 'crosscred.io/role-arn': ROLE_ARN } });
    const apiToken = join(dir, 'kube-token');
    await writeFile(apiToken, 'bench-webhook-reader');
    const webhook = await spawnCommand(
      'webhook',
      [
        '--listen',
        '127.0.0.1:0',
        '--admin-listen',
        '127.0.0.1:0',
        '--tls-cert-file',
        tls.certFile,
        '--tls-key-file',
        tls.keyFile,
        '--kube-api-url',
        api.url,
        '--kube-token-file',
        apiToken,
        '--kube-ca-file',
        api.caFile,
        '--log-level',
        'info',
      ],
      (entries) => entries.some((e) => e.msg === 'webhook listening'),
    );
    running.push(webhook);
    const address = webhook.entries.find((e) => e.msg === 'webhook listening').address;
    const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
    const ca = readFileSync(tls.certFile);
    const post = (body) =>
      new Promise((resolve, reject) => {
        const started = performance.now();
        const req = httpsRequest({ host, port, path: '/mutate', method: 'POST', ca, headers: { 'content-type': 'application/json' } }, (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode, ms: performance.now() - started, body: Buffer.concat(chunks).toString('utf8') }));
        });
        req.on('error', reject);
        req.end(body);
      });
    // A Deployment's pod (init container, native sidecar, app with env, mounts and probes) under a
    // ServiceAccount annotated with the role: each review is patched.
    const reviews = Array.from({ length: 2000 }, (_, i) =>
      JSON.stringify(admissionReview(deploymentPod({ serviceAccountName: 'payments-api' }), { uid: `bench-${i}` })),
    );
    await pool(
      reviews.slice(0, 50).map((r) => () => post(r)),
      8,
    ); // warm: TLS sessions, the ServiceAccount cache
    const results = await pool(
      reviews.map((r) => () => post(r)),
      8,
    );
    const bad = results.filter((r) => r.status !== 200 || !JSON.parse(r.body).response?.patch).length;
    if (bad > 0) throw new Error(`webhook: ${bad} of ${results.length} admissions were not patched`);
    const ms = results.map((r) => r.ms).sort((a, b) => a - b);
    const row = {
      admissions: results.length,
      concurrency: 8,
      p50Ms: round1(percentile(ms, 50)),
      p99Ms: round1(percentile(ms, 99)),
      maxMs: round1(ms.at(-1)),
      rssMb: memoryOf(webhook.pid).rssMb,
      apiLookups: api.requests.filter((r) => r.path.includes('/serviceaccounts/')).length,
    };
    log(`webhook: ${row.admissions} admissions, p50 ${row.p50Ms} ms, p99 ${row.p99Ms} ms, ${row.apiLookups} ServiceAccount lookups at the API`);
    await webhook.stop();
    running.splice(running.indexOf(webhook), 1);
    await api.close();
    return row;
  }
}

function renderClusterMarkdown(r) {
  const rows = r.nodeAgent
    .map(
      (a) =>
        `| ${a.pods.toLocaleString('en')} | ${a.stsCallsWarm.toLocaleString('en')} | ${a.warmMs.toLocaleString('en')} ms | ${a.hot.rps.toLocaleString('en')} | ${a.hot.p50Ms} ms | ${a.hot.p99Ms} ms | ${a.stsCallsHot} | ${a.rssAfterHotMb} MB | ${a.heapUsedMb} MB | ${a.entries ?? '–'} | ${a.cacheBytes === null ? '–' : Math.round(a.cacheBytes / Math.max(1, a.entries ?? 1)).toLocaleString('en')} |`,
    )
    .join('\n');
  const w = r.webhook;
  const p = r.perPod;
  return `# Kubernetes for a whole cluster: node agent and webhook (issue 12)

Run ${r.startedAt} on ${r.machine.nproc} × ${r.machine.cpuModel}, Node ${r.machine.node}, load average ${r.machine.loadAverageAtStart} at start.
Pod tokens: ES256, ${r.tokenBytes} bytes each (a cluster's RS256 tokens are about twice that, so real entries are larger).

## Node agent: N distinct pod tokens, one role

Each pod's first request misses (one STS call), then wrk sends 1 s (not reported) and 3 s of requests rotating through all N tokens (64 connections, keep-alive, one wrk thread on one of the two cores): every one a cache hit.

| pods | STS calls to warm | warm time | hot req/s | hot p50 | hot p99 | STS calls while hot | RSS | V8 heap used | entries | bytes per entry (the cache's own estimate) |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
${rows}

## Per pod: node agent against the sidecar (same run)

| | memory |
|---|---:|
| sidecar (\`serve\`, one role, \`NODE_OPTIONS=${r.sidecar.nodeOptions}\`), per pod | ${p.sidecarRssMb} MB |
| node agent, fixed (1 pod) | ${p.nodeAgentBaseRssMb} MB per node |
| node agent, per extra pod: RSS growth from 1 to ${r.nodeAgent.at(-1).pods.toLocaleString('en')} pods | ${p.nodeAgentBytesPerEntryByRss === null ? '–' : `${p.nodeAgentBytesPerEntryByRss.toLocaleString('en')} bytes`} |
| node agent, per extra pod: V8 heap growth over the same | ${p.nodeAgentBytesPerEntryByHeap === null ? '–' : `${p.nodeAgentBytesPerEntryByHeap.toLocaleString('en')} bytes`} |
| node agent, per pod on a full node (${p.podsPerNode} pods) | ${p.nodeAgentPerPodMb} MB |

## Webhook admission latency

${w.admissions.toLocaleString('en')} AdmissionReviews of a realistic pod over HTTPS, ${w.concurrency} at a time, after 50 to warm up: p50 ${w.p50Ms} ms, p99 ${w.p99Ms} ms, max ${w.maxMs} ms; RSS ${w.rssMb} MB; ${w.apiLookups} ServiceAccount lookups reached the API server.
${r.notes.length ? `\n## Notes\n\n${r.notes.map((n) => `- ${n}`).join('\n')}\n` : ''}`;
}
