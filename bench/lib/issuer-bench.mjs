// The issuer scenarios of the benchmark (issue 11): `node bench/run.mjs --issuer [--storm-vms N]`.
// Real `crosscred issuer serve` replicas (child processes) and a real redis-server on 127.0.0.1,
// attested with real PKCS#7 made before any timing starts. Writes OUT/latest.{json,md}.
import { randomFillSync } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { signGetCallerIdentity } from '../../dist/platform/alibaba/ram-request-signer.js';
import { encodeSubjectToken, JWT_TOKEN_TYPE, SUBJECT_TOKEN_TYPES, TOKEN_EXCHANGE_GRANT_TYPE } from '../../dist/protocol/issuer-token-exchange.js';
import { signTencentGetCallerIdentity } from '../../dist/sources/tencent-cvm-token-source.js';
import { attestMany, attestManyFast, documentOf, fastSigner, forge } from './ecs-attest.mjs';
import { keygen, spawnIssuer } from './issuer-procs.mjs';
import { machine } from './machine.mjs';
import { testSupport } from './test-support.mjs';

const { default: AlibabaCredential, Config: AlibabaCredentialConfig } = createRequire(import.meta.url)('@alicloud/credentials');

/** The JWTs' iss and the attestations' aud: one name for every replica, as behind a load balancer. */
const ISSUER_URL = 'https://issuer.bench.example';
/** Four Alibaba accounts share the VMs, so no tenant comes near Redis's 10,000 live claims per tenant. */
const ACCOUNTS = ['1335926999564873', '1335926999564874', '1335926999564875', '1335926999564876'];
/** openssl processes signing at once when openssl's own speed is measured (before timing). */
const SIGNERS = Math.max(2, cpus().length * 2);
/** Attestations openssl signs to measure its speed (the rest are made in process, byte-identical). */
const OPENSSL_SAMPLE = 100;
/** Attempts one VM makes before giving up (503/429 with Retry-After, a dead replica). */
const MAX_ATTEMPTS = 40;
/** A VM waits Retry-After, but never more than this (ms), plus up to 250 ms of jitter. */
const MAX_RETRY_WAIT_MS = 2_000;
/** Requests the load balancer keeps in flight to each replica (its connection pool per backend). */
const LB_CONNECTIONS_PER_REPLICA = 64;
/** A VM's attestation older than this is replaced before its next attempt (the issuer allows 5 min), in ms. */
const STALE_AFTER_MS = 240_000;
/** Forged requests each hostile client sends, at most. */
const HOSTILE_REQUESTS_EACH = 10;

export async function runIssuerBench({ out, stormVms, hostileClients, log, limitMs }) {
  const redisServer = await testSupport('redis-server.ts');
  const unavailable = redisServer.redisServerUnavailable();
  if (unavailable) throw new Error(`${unavailable}: the issuer scenarios need it (apt-get install -y redis-server)`);
  const t0 = performance.now();
  const dir = await mkdtemp(join(tmpdir(), 'crosscred-bench-issuer-'));
  const { makeSigningCa } = await testSupport('fake-alibaba-cloud.ts');
  const ca = await makeSigningCa('bench');
  const procs = [];
  const report = {
    schema: 'crosscred-bench-issuer/1',
    mode: 'issuer',
    startedAt: new Date().toISOString(),
    machine: machine(),
    plan: { stormVms, hostileClients, hostileRequestsEach: HOSTILE_REQUESTS_EACH, accounts: ACCOUNTS.length, signers: SIGNERS, limitSeconds: limitMs / 1000 },
    notes: [],
    throughput: [],
    signing: null,
    storm: null,
    hostileStorm: null,
  };
  try {
    keygen(join(dir, 'key.pem'));
    const config = issuerConfig(dir, ca);
    const signer = await fastSigner(ca);
    report.signing = await signingCost(ca, signer, log);
    const ctx = { dir, signer, config, procs, log, redisServer };
    report.throughput.push(await throughput({ ...ctx, n: Math.min(2_000, Math.max(200, stormVms)) }));
    report.throughput.push(await ramRoleThroughput({ ...ctx, n: Math.min(500, Math.max(100, stormVms)) }));
    report.throughput.push(await camRoleThroughput({ ...ctx, n: Math.min(500, Math.max(100, stormVms)) }));
    report.storm = await storm({ ...ctx, vms: stormVms, hostile: 0, label: 'storm' });
    report.hostileStorm = await storm({ ...ctx, vms: stormVms, hostile: hostileClients, label: 'hostile storm' });
  } finally {
    for (const p of procs) await p.stop();
    await ca.close();
    await rm(dir, { recursive: true, force: true });
  }
  report.notes.push(
    "Tokens/s covers each kind: ECS identity, Alibaba RAM role and Tencent CAM role, the role kinds against the test suite's own fake STS servers (test/support, real HTTP servers on loopback that verify every ACS3 and TC3 signature); the storms use ECS identity only.",
    'Every client shares 127.0.0.1, as behind a load balancer, so clientRateLimit (per address, per replica) is raised out of the way; the per-identity rateLimit and every other check stay at their defaults.',
    'Redis runs with AOF and appendfsync always, as docs/issuer.md asks of a fleet: a Redis restarted without persistence forgets its replay claims and would accept each once more.',
  );
  report.finishedAt = new Date().toISOString();
  report.durationSeconds = Math.round((performance.now() - t0) / 1000);
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(join(out, 'latest.md'), renderIssuerMarkdown(report));
  log(`wrote ${join(out, 'latest.json')} and latest.md in ${report.durationSeconds} s`);
  return report;
}

function issuerConfig(dir, ca) {
  return {
    publicUrl: ISSUER_URL,
    keys: [{ file: join(dir, 'key.pem'), active: true }],
    audiences: ['sts.amazonaws.com'],
    attestors: { alibabaEcsIdentity: { signingCertificateFiles: [ca.signerCertPath] } },
    policy: {
      alibabaEcsIdentity: {
        accounts: ACCOUNTS,
        regions: ['cn-hangzhou'],
        instanceIds: ['*'],
        sessionTags: { 'crosscred-account': 'accountId', 'crosscred-instance': 'instanceId' },
      },
    },
    clientRateLimit: { burst: 100_000, perSecond: 100_000, maxClients: 10_000 },
    logLevel: 'warn',
  };
}

const docOf = (i) => documentOf(i, ACCOUNTS[i % ACCOUNTS.length]);

function formOf(subjectToken, subjectTokenType) {
  return new URLSearchParams({
    grant_type: TOKEN_EXCHANGE_GRANT_TYPE,
    subject_token_type: subjectTokenType,
    subject_token: subjectToken,
    requested_token_type: JWT_TOKEN_TYPE,
  }).toString();
}

/** One POST to a token URL: { status, code (CROSSCRED_ERR_… or ''), retryAfterS } or { status: 0, error }. */
async function exchange(dispatcher, tokenUrl, subjectToken, subjectTokenType = SUBJECT_TOKEN_TYPES.alibabaEcsIdentity) {
  try {
    const r = await request(tokenUrl, {
      method: 'POST',
      dispatcher,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: formOf(subjectToken, subjectTokenType),
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
    const text = await r.body.text();
    const code = r.statusCode === 200 ? '' : (/CROSSCRED_ERR_[A-Z_]+/.exec(text)?.[0] ?? '');
    return { status: r.statusCode, code, retryAfterS: Number(r.headers['retry-after'] ?? NaN) };
  } catch (err) {
    return { status: 0, code: err.code ?? err.name ?? 'error' };
  }
}

export function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

const round1 = (x) => (x === null ? null : +x.toFixed(1));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const tally = (map, key) => map.set(key, (map.get(key) ?? 0) + 1);

/**
 * How long openssl takes per attestation, and whether the in-process signer makes the same bytes:
 * 10,000 by openssl would take minutes here, most of the issuer's 5-minute signingTime window.
 */
async function signingCost(ca, signer, log) {
  const viaOpenssl = await attestMany(ca, ISSUER_URL, OPENSSL_SAMPLE, (i) => docOf(900_000 + i), SIGNERS);
  const inProcess = attestManyFast(signer, ISSUER_URL, 1_000, (i) => docOf(910_000 + i));
  const identical = await signer.check();
  if (!identical) throw new Error('the in-process signer does not reproduce openssl cms -sign byte for byte');
  const row = {
    opensslMsEach: +(viaOpenssl.ms / OPENSSL_SAMPLE).toFixed(2),
    opensslParallel: SIGNERS,
    inProcessMsEach: +(inProcess.ms / 1_000).toFixed(3),
    identicalToOpenssl: identical,
  };
  log(`signing: openssl ${row.opensslMsEach} ms each (${SIGNERS} at once), in process ${row.inProcessMsEach} ms each, byte-identical: ${identical}`);
  return row;
}

// ---------------------------------------------------------------- 1: tokens/s, one replica
/** ECS identity: `n` unique attestations, 32 requests at once. */
async function throughput(ctx) {
  const made = attestManyFast(ctx.signer, ISSUER_URL, ctx.n, (i) => docOf(1_000_000 + i));
  return tokensPerSecond({ ...ctx, kind: 'alibaba-ecs-identity', type: SUBJECT_TOKEN_TYPES.alibabaEcsIdentity, tokens: made.tokens, concurrency: 32 });
}

/**
 * Alibaba RAM role: `n` GetCallerIdentity requests, each signed by the official SDK with its own
 * instance's role credentials (issued by the fake Alibaba STS, which the issuer then asks), 8 at
 * once: the kind's pool per replica, beyond which it answers 503 at once.
 */
async function ramRoleThroughput(ctx) {
  const { FakeAlibabaSts } = await testSupport('fake-alibaba-cloud.ts');
  const sts = await FakeAlibabaSts.start();
  try {
    const started = performance.now();
    const tokens = [];
    for (let i = 0; i < ctx.n; i++) {
      const key = sts.issueRoleKey({ accountId: ACCOUNTS[i % ACCOUNTS.length], roleName: 'app-role', instanceId: `i-benchram${String(i).padStart(10, '0')}` });
      const credential = new AlibabaCredential(
        new AlibabaCredentialConfig({ type: 'sts', accessKeyId: key.accessKeyId, accessKeySecret: key.accessKeySecret, securityToken: key.securityToken }),
      );
      tokens.push(encodeSubjectToken(await signGetCallerIdentity({ credential, stsUrl: sts.url, issuerUrl: ISSUER_URL, timeoutMs: 10_000 })));
    }
    ctx.log(`throughput: ${ctx.n} RAM-role requests signed by the official SDK in ${Math.round(performance.now() - started)} ms`);
    const config = {
      ...ctx.config,
      attestors: { ...ctx.config.attestors, alibabaRamRole: { extraStsEndpoints: [sts.url] } },
      policy: { ...ctx.config.policy, alibabaRamRole: { accounts: ACCOUNTS, roles: ['app-role'], instanceIds: ['*'] } },
    };
    const row = await tokensPerSecond({ ...ctx, config, kind: 'alibaba-ram-role', type: SUBJECT_TOKEN_TYPES.alibabaRamRole, tokens, concurrency: 8 });
    row.fakeStsCalls = stsCounts(sts.records, (r) => r.outcome === 'ok');
    return row;
  } finally {
    await sts.close();
  }
}

/** Tencent accounts (uins) the CAM-role VMs belong to. */
const TENCENT_UINS = ['100012345678', '100012345679'];

/**
 * Tencent CAM role: `n` GetCallerIdentity requests, each TC3-signed (crosscred's own signer, as the
 * tencent-cvm source signs them) with its own instance's CAM role key, issued by the fake Tencent
 * STS, which verifies each signature when the issuer replays it; 8 at once, the kind's pool.
 */
async function camRoleThroughput(ctx) {
  const { FakeTencentSts } = await testSupport('fake-tencent-cloud.ts');
  const sts = await FakeTencentSts.start();
  try {
    const now = Math.floor(Date.now() / 1000);
    const tokens = [];
    for (let i = 0; i < ctx.n; i++) {
      const uin = TENCENT_UINS[i % TENCENT_UINS.length];
      const key = sts.issueRoleKey({ uin, roleId: '4611686018427397920', roleName: 'app-role', sessionName: `ins-bench${String(i).padStart(6, '0')}` });
      const credentials = { secretId: key.secretId, secretKey: key.secretKey, token: key.token };
      tokens.push(encodeSubjectToken(signTencentGetCallerIdentity({ credentials, issuerUrl: ISSUER_URL, stsEndpoint: sts.url, timestamp: now })));
    }
    const config = {
      ...ctx.config,
      attestors: { ...ctx.config.attestors, tencentCamRole: { extraStsEndpoints: [sts.url] } },
      policy: { ...ctx.config.policy, tencentCamRole: { accounts: TENCENT_UINS, roles: ['4611686018427397920'], instanceIds: ['*'] } },
    };
    const row = await tokensPerSecond({ ...ctx, config, kind: 'tencent-cam-role', type: SUBJECT_TOKEN_TYPES.tencentCamRole, tokens, concurrency: 8 });
    row.fakeStsCalls = stsCounts(sts.records, (r) => r.outcome === 'ok');
    return row;
  } finally {
    await sts.close();
  }
}

/** What a fake STS answered: verified and answered with an identity, or refused. */
function stsCounts(records, ok) {
  const accepted = records.filter(ok).length;
  return { ok: accepted, refused: records.length - accepted };
}

async function tokensPerSecond({ dir, config, procs, log, kind, type, tokens, concurrency }) {
  const n = tokens.length;
  const replica = await spawnIssuer(dir, `single-${kind}`, config);
  procs.push(replica);
  const dispatcher = new Agent({ connections: concurrency, pipelining: 1 });
  const latencies = [];
  const outcomes = new Map();
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < n; i = next++) {
        const t = performance.now();
        const r = await exchange(dispatcher, replica.tokenUrl, tokens[i], type);
        latencies.push(performance.now() - t);
        tally(outcomes, r.status === 200 ? '200' : `${r.status} ${r.code}`);
      }
    }),
  );
  const ms = performance.now() - started;
  await dispatcher.close();
  await replica.stop();
  procs.splice(procs.indexOf(replica), 1);
  latencies.sort((a, b) => a - b);
  const row = {
    kind,
    replicas: 1,
    state: 'memory',
    attestations: n,
    concurrency,
    tokensPerSecond: Math.round(((outcomes.get('200') ?? 0) * 1000) / ms),
    p50Ms: round1(percentile(latencies, 50)),
    p99Ms: round1(percentile(latencies, 99)),
    errors: n - (outcomes.get('200') ?? 0),
    outcomes: Object.fromEntries(outcomes),
  };
  log(`throughput ${kind}: ${row.tokensPerSecond} tokens/s, p50 ${row.p50Ms} ms, p99 ${row.p99Ms} ms, errors ${row.errors}`);
  return row;
}

// ---------------------------------------------------------------- 2 + 3: the boot storm
/**
 * `vms` VMs, each with its own attestation, across 3 replicas on one Redis. The load balancer
 * sends VM i to replica i mod 3 and, on a refused connection or a 503, the next attempt to the next
 * live replica. One replica is SIGKILLed when a third of the VMs have their token, and Redis is
 * restarted when two thirds have. After its 200, each VM's attestation is presented again to
 * another replica: any 200 there is an accepted replay. With `hostile` > 0, that many hostile
 * clients send forged signatures and replays of spent attestations alongside, on their own
 * connections.
 */
async function storm({ dir, signer, config, procs, log, vms, hostile, label, redisServer }) {
  const offset = hostile > 0 ? 2_000_000 : 3_000_000;
  const made = attestManyFast(signer, ISSUER_URL, vms, (i) => docOf(offset + i));
  const madeAt = Date.now() - made.ms;
  log(`${label}: ${vms} attestations signed in ${Math.round(made.ms)} ms (${(made.ms / vms).toFixed(1)} ms each)`);
  const redis = await redisServer.startRedisServer({ persistence: 'aof' });
  const replicas = [];
  try {
    for (let i = 0; i < 3; i++) replicas.push(await spawnIssuer(dir, `${label.replace(/\W/g, '')}-${i}`, { ...config, state: redis.url }));
    procs.push(...replicas);
    const alive = [true, true, true];
    const lb = replicas.map(() => new Agent({ connections: LB_CONNECTIONS_PER_REPLICA, pipelining: 1 }));
    const pick = (preferred) => {
      for (let k = 0; k < 3; k++) if (alive[(preferred + k) % 3]) return (preferred + k) % 3;
      return preferred % 3;
    };
    const send = async (preferred, token) => {
      const at = pick(preferred);
      const r = await exchange(lb[at], replicas[at].tokenUrl, token);
      // A refused or reset connection: the balancer's health check takes the backend out.
      if (r.status === 0 && at === 2 && killed) alive[2] = false;
      return { ...r, at };
    };

    let succeeded = 0;
    let killed = false;
    let killedAt = null;
    let redisRestart = null;
    const events = [];
    const killAfter = Math.floor(vms / 3);
    const restartAfter = Math.floor((2 * vms) / 3);
    const onSuccess = () => {
      succeeded++;
      if (succeeded === killAfter) {
        killed = true;
        replicas[2].kill();
        killedAt = performance.now() - started;
        events.push({ atMs: Math.round(killedAt), event: 'replica 2 SIGKILLed', tokensSoFar: succeeded });
      }
      if (succeeded === restartAfter) {
        const at = performance.now() - started;
        redisRestart = redis
          .stop()
          .then(redis.start)
          .then(() => {
            events.push({
              atMs: Math.round(at),
              event: 'redis restarted (SIGTERM, start, AOF reload)',
              tokensSoFar: restartAfter,
              downMs: Math.round(performance.now() - started - at),
            });
          });
      }
    };

    const latencies = [];
    const attemptsHist = new Map();
    const outcomes = new Map();
    let replaysAccepted = 0;
    let replayChecks = 0;
    let gaveUp = 0;
    /** Attestations already accepted: what a hostile client that captured them replays. */
    const spent = [];
    const replayOutcomes = new Map();

    let reattested = 0;
    let ownReplayed = 0;
    /**
     * A fresh attestation of VM i, as a VM fetches a new PKCS#7 from its metadata server. The
     * audience's signingTime is in whole seconds, so the same second would sign the same bytes:
     * wait for the next one.
     */
    const reattest = async (i) => {
      reattested++;
      await sleep(1_005 - (Date.now() % 1_000));
      return signer.attest(ISSUER_URL, docOf(offset + i));
    };
    const vm = async (i) => {
      const t = performance.now();
      let token = made.tokens[i];
      let signedAt = madeAt;
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        // The issuer accepts an attestation for 5 min after its signingTime; a VM still retrying
        // after 4 min fetches a new one, as a real one would.
        if (Date.now() - signedAt > STALE_AFTER_MS) {
          token = await reattest(i);
          signedAt = Date.now();
        }
        const r = await send(i + attempt, token);
        tally(outcomes, r.status === 200 ? '200' : `${r.status} ${r.code}`);
        if (r.status === 200) {
          latencies.push(performance.now() - t);
          tally(attemptsHist, attempt + 1);
          onSuccess();
          spent.push(token);
          await replayCheck(token, r.at);
          return;
        }
        // No answer (the replica died or reset the connection): it may have claimed the attestation
        // before dying, so the next replica would rightly call it a replay. A new one, at once.
        if (r.status === 0) {
          token = await reattest(i);
          continue;
        }
        // Our own attestation refused as a replay after an earlier attempt got no decision (a claim
        // recorded while its answer was lost): the same remedy, counted apart.
        if (r.code === 'CROSSCRED_ERR_ISSUER_ATTESTATION_REPLAYED' && attempt > 0) {
          ownReplayed++;
          token = await reattest(i);
          continue;
        }
        if (r.status !== 503 && r.status !== 429) break; // a refusal: retrying the same attestation cannot help
        await sleep(Math.min(MAX_RETRY_WAIT_MS, (Number.isFinite(r.retryAfterS) ? r.retryAfterS : 1) * 1000) + Math.random() * 250);
      }
      gaveUp++;
    };
    /** Presents a spent attestation to another replica; retries only answers that are not a decision (503, no connection). */
    const replayCheck = async (token, acceptedAt) => {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const r = await send(acceptedAt + 1 + attempt, token);
        if (r.status === 0 || r.status === 503) {
          await sleep(r.status === 503 ? 500 + Math.random() * 250 : 0);
          continue;
        }
        replayChecks++;
        tally(replayOutcomes, r.status === 200 ? '200' : `${r.status} ${r.code}`);
        if (r.status === 200) replaysAccepted++;
        return;
      }
    };

    // Hostile: half forged signatures over fresh documents, half replays of the storm's own spent attestations.
    let stormDone = false;
    const hostileOutcomes = new Map();
    let hostileAccepted = 0;
    let hostileSent = 0;
    const hostileAgents = replicas.map(() => new Agent({ connections: LB_CONNECTIONS_PER_REPLICA, pipelining: 1 }));
    const forgedPool = hostile > 0 ? made.tokens.slice(0, Math.min(200, vms)).map((tok) => forge(tok, randomFillSync)) : [];
    const hostileClient = async (h) => {
      for (let k = 0; k < HOSTILE_REQUESTS_EACH && !stormDone; k++) {
        const replay = (h + k) % 2 === 1 && spent.length > 0;
        const token = replay ? spent[(h * 7 + k) % spent.length] : forgedPool[(h + k) % forgedPool.length];
        const at = pick(h + k);
        const r = await exchange(hostileAgents[at], replicas[at].tokenUrl, token);
        hostileSent++;
        tally(hostileOutcomes, `${replay ? 'replay' : 'forged'} ${r.status === 200 ? '200' : `${r.status} ${r.code}`}`);
        if (r.status === 200) hostileAccepted++;
        if (r.status === 0) await sleep(50);
      }
    };

    const started = performance.now();
    const hostileDone = Promise.all(Array.from({ length: hostile }, (_, h) => hostileClient(h)));
    await Promise.all(Array.from({ length: vms }, (_, i) => vm(i)));
    const durationMs = performance.now() - started;
    stormDone = true;
    await hostileDone;
    await redisRestart;
    for (const a of [...lb, ...hostileAgents]) await a.close();
    latencies.sort((a, b) => a - b);
    const row = {
      vms,
      replicas: 3,
      hostileClients: hostile,
      signMsEach: +(made.ms / vms).toFixed(3),
      tokens: latencies.length,
      gaveUp,
      reattested,
      ownReplayedAfterLostAnswer: ownReplayed,
      durationMs: Math.round(durationMs),
      tokensPerSecond: Math.round((latencies.length * 1000) / durationMs),
      p50Ms: round1(percentile(latencies, 50)),
      p99Ms: round1(percentile(latencies, 99)),
      maxMs: round1(latencies.at(-1) ?? null),
      successRate: +(latencies.length / vms).toFixed(4),
      attempts: Object.fromEntries([...attemptsHist].sort((a, b) => a[0] - b[0])),
      outcomes: Object.fromEntries(outcomes),
      replayChecks,
      replaysAccepted,
      replayOutcomes: Object.fromEntries(replayOutcomes),
      events,
      ...(hostile > 0 ? { hostileSent, hostileAccepted, hostileOutcomes: Object.fromEntries(hostileOutcomes) } : {}),
    };
    log(
      `${label}: ${row.tokens}/${vms} VMs got a token in ${row.durationMs} ms, p50 ${row.p50Ms} ms, p99 ${row.p99Ms} ms, replays accepted ${replaysAccepted}/${replayChecks}` +
        (hostile > 0 ? `, hostile ${hostileSent} sent, ${hostileAccepted} accepted` : ''),
    );
    return row;
  } finally {
    for (const r of replicas) {
      await r.stop();
      procs.splice(procs.indexOf(r), 1);
    }
    await redis.close();
  }
}

// ---------------------------------------------------------------- report
export function renderIssuerMarkdown(r) {
  const m = r.machine;
  const out = [];
  out.push('# crosscred issuer benchmark', '');
  const load = m.loadAverageAtStart === undefined ? '' : ` Load average at start ${m.loadAverageAtStart}.`;
  out.push(
    `${r.startedAt}, ${r.durationSeconds} s. Machine: ${m.nproc} × ${m.cpuModel}, Node ${m.node}, Linux ${m.kernel}.${load} Everything on 127.0.0.1.`,
    '',
  );
  for (const n of r.notes) out.push(`> ${n}`, '');
  out.push('## Tokens per second, one replica', '');
  const g = r.signing;
  out.push(
    `Attestations: real detached PKCS#7 (RSA-2048, SHA-256, as the fake metadata server signs them), one per VM, made before timing. \`openssl cms -sign\` takes ${g.opensslMsEach} ms each here (${g.opensslParallel} at once); the suite signs in process instead (${g.inProcessMsEach} ms each) from an openssl template, and checks that the result is byte-identical to openssl's for the same content and second (${g.identicalToOpenssl ? 'it was' : 'it was not'}).`,
    '',
  );
  out.push(
    "Unique attestations, replay protection on, `state: memory`. RAM role: each request signed by the official `@alicloud/sts20150401` client with its own instance key, checked by the issuer at the fake Alibaba STS (ACS3 signatures verified with the official signer), 8 at once (the kind's pool). CAM role: each request TC3-signed with its own CVM's role key, checked at the fake Tencent STS (TC3 verified by a verifier written apart from the signer), 8 at once.",
    '',
  );
  out.push('| kind | attestations | concurrency | tokens/s | p50 ms | p99 ms | errors |');
  out.push('|---|---:|---:|---:|---:|---:|---:|');
  for (const t of r.throughput) out.push(`| ${t.kind} | ${t.attestations} | ${t.concurrency} | ${t.tokensPerSecond} | ${t.p50Ms} | ${t.p99Ms} | ${t.errors} |`);
  out.push('');
  for (const [title, s] of [
    ['Boot storm: 3 replicas, one Redis, a replica killed and Redis restarted mid-storm', r.storm],
    [`The same storm with ${r.hostileStorm?.hostileClients ?? 0} hostile clients alongside`, r.hostileStorm],
  ]) {
    if (!s) continue;
    out.push(`## ${title}`, '');
    out.push(
      `Latency is per VM, from its first request to its token, retries included (Retry-After honoured up to ${MAX_RETRY_WAIT_MS / 1000} s; at most ${MAX_ATTEMPTS} attempts). The load balancer keeps ${LB_CONNECTIONS_PER_REPLICA} connections per replica.`,
      '',
    );
    out.push('| VMs | got a token | success rate | gave up | duration ms | tokens/s | p50 ms | p99 ms | max ms | replays presented | replays accepted |');
    out.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    out.push(
      `| ${s.vms} | ${s.tokens} | ${(s.successRate * 100).toFixed(2)}% | ${s.gaveUp} | ${s.durationMs} | ${s.tokensPerSecond} | ${s.p50Ms} | ${s.p99Ms} | ${s.maxMs} | ${s.replayChecks} | ${s.replaysAccepted} |`,
      '',
    );
    out.push(
      `Events: ${s.events.map((e) => `${e.event} at ${e.atMs} ms (${e.tokensSoFar} tokens so far${e.downMs ? `, back after ${e.downMs} ms` : ''})`).join('; ')}.`,
      '',
    );
    out.push(
      `Fresh attestations VMs fetched (after an attempt got no answer, because its replica died or reset the connection, possibly after claiming the attestation; or when theirs was over 4 min old): ${s.reattested}; of these, after their own attestation came back "replayed" following a lost answer: ${s.ownReplayedAfterLostAnswer}.`,
      '',
    );
    out.push(`Answers to the VMs: ${fmtMap(s.outcomes)}. Attempts per VM: ${fmtMap(s.attempts)}. Replays: ${fmtMap(s.replayOutcomes)}.`, '');
    if (s.hostileClients > 0) out.push(`Hostile: ${s.hostileSent} requests, ${s.hostileAccepted} accepted; ${fmtMap(s.hostileOutcomes)}.`, '');
  }
  return out.join('\n');
}

const fmtMap = (o) =>
  Object.entries(o)
    .map(([k, v]) => `${k} ×${v}`)
    .join(', ') || 'none';
