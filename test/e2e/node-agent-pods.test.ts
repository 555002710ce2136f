import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentialsUri, DEFAULT_AUDIENCE, ENV, POD_IDENTITY_IPV4, POD_IDENTITY_IPV6 } from '../../src/protocol/pod-identity.js';
import { ACCOUNT, CLI_ARGS, CLI_EXEC, REPO_ROOT } from '../support/chain.js';
import { buildGoClients, CLIENTS, clientAvailable, clientEnv, goClientsAvailable } from '../support/clients.js';
import {
  type ExecResult,
  NODE_ROLE_NAME,
  type NodeServices,
  type Pod,
  PodNetwork,
  podNetworkUnavailable,
  projectedClaims,
  SERVICE_ADDRESS,
  SINK_PORT,
  startNodeServices,
  stop,
} from '../support/pod-network.js';

/**
 * Issue 12 end to end: a Kubernetes node made of network namespaces. The node namespace runs the
 * real `crosscred node-agent` on 169.254.170.23:80 and [fd00:ec2::23]:80, beside the OIDC issuer
 * (standing in for the API server that signs projected tokens) and the STS emulator (which verifies
 * each token's signature through the issuer's discovery and JWKS). Each pod is a namespace on a
 * veth pair with only what the webhook injects: AWS_CONTAINER_CREDENTIALS_FULL_URI and
 * AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, and a projected token written without a newline.
 * Unmodified AWS clients then run inside the pods. Clients too old for the agent are shown to fail
 * in agent mode and to succeed in web-identity mode (they call STS themselves, which resolves to
 * the node's STS over HTTPS inside the pod): the README's compatibility table, proved.
 */
const JS_CLIENT = join(REPO_ROOT, 'test/e2e/clients/js-sdk-credentials.mjs');
const BOTOCORE_CLIENT = join(REPO_ROOT, 'test/e2e/clients/botocore-credentials.py');
const ROLE = `arn:aws:iam::${ACCOUNT}:role/pods/app`;
const LEGACY_ROLE = `arn:aws:iam::${ACCOUNT}:role/pods/legacy`;
const HOSTNET_ROLE = `arn:aws:iam::${ACCOUNT}:role/pods/node-exporter`;
const ADMIN = 'http://127.0.0.1:2703';
/** Bound on the agent becoming ready, and on the Go clients' offline build (ms). */
const START_TIMEOUT_MS = 60_000;
const BUILD_TIMEOUT_MS = 300_000;
/** Bound on one test: a few client runs, each a process start on a shared 2-core machine (ms). */
const TEST_TIMEOUT_MS = 120_000;

interface PodIdentity {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly name: string;
  readonly uid: string;
}
const IDENTITIES = {
  api: { namespace: 'payments', serviceAccount: 'api', name: 'api-7c9d5-x2p4q', uid: '5a0f4d1e-0000-4000-8000-000000000001' },
  worker: { namespace: 'payments', serviceAccount: 'worker', name: 'worker-6b8f7-9zk2m', uid: '5a0f4d1e-0000-4000-8000-000000000002' },
  v6: { namespace: 'payments', serviceAccount: 'reports', name: 'reports-5d4c3-q8w7e', uid: '5a0f4d1e-0000-4000-8000-000000000003' },
  exposed: { namespace: 'payments', serviceAccount: 'exporter', name: 'exporter-84f6d-t5v2n', uid: '5a0f4d1e-0000-4000-8000-000000000006' },
  legacy: { namespace: 'legacy', serviceAccount: 'batch', name: 'batch-28461520-k4j9s', uid: '5a0f4d1e-0000-4000-8000-000000000004' },
  hostnet: { namespace: 'monitoring', serviceAccount: 'node-exporter', name: 'node-exporter-h7d2k', uid: '5a0f4d1e-0000-4000-8000-000000000005' },
} as const satisfies Record<string, PodIdentity>;

let unavailable: string | undefined;
let net: PodNetwork;
let services: NodeServices;
let agent: ChildProcess | undefined;
/** Everything the agent wrote, unsplit (a token cut across two chunks would still be found). */
let agentLog = '';
const POD_NAMES = ['api', 'worker', 'v6', 'exposed', 'legacy'] as const;
const pods = {} as Record<(typeof POD_NAMES)[number], Pod>;
/** Every token written for a pod or sent by a test: none may ever appear in the agent's output. */
const tokensSeen: string[] = [];
let hostnetTokenFile: string;
/** The token currently in each pod's file (tests that rotate one update it). */
const currentTokens = new Map<string, string>();
let home: string;

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

async function mintFor(identity: PodIdentity, ttlSeconds = 3600): Promise<string> {
  const token = await services.mint(projectedClaims(identity, DEFAULT_AUDIENCE, ttlSeconds));
  tokensSeen.push(token);
  return token;
}

/** The variables the webhook injects in agent mode, and nothing else. */
function agentModeEnv(pod: { tokenFile: string }, role: string, family: 'ipv4' | 'ipv6' = 'ipv4'): Record<string, string> {
  return { [ENV.fullUri]: credentialsUri(role, family), [ENV.authorizationTokenFile]: pod.tokenFile };
}

/** The variables the webhook injects in web-identity mode (IRSA's), plus the CA of the test STS. */
function webIdentityEnv(pod: Pod, role: string, name: string): Record<string, string> {
  return {
    [ENV.roleArn]: role,
    [ENV.webIdentityTokenFile]: pod.tokenFile,
    [ENV.roleSessionName]: name,
    AWS_REGION: 'us-east-1',
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_CA_BUNDLE: services.caBundle,
  };
}

function inPod(ns: string, command: string, args: readonly string[], env: Record<string, string>): Promise<ExecResult> {
  return net.exec(ns, command, args, clientEnv(home, env));
}

/** Parses a client's JSON answer; on failure says what the client wrote on stderr (never stdout, which may hold keys). */
function answer(result: ExecResult, what: string): Record<string, string> {
  if (result.code !== 0) throw new Error(`${what} exited with ${result.code}:\n${result.stderr}`);
  return JSON.parse(result.stdout) as Record<string, string>;
}

/** The last key the agent's STS issued to a subject. */
async function lastAgentKey(subject: string): Promise<string | undefined> {
  return (await services.state()).agentSts.issued.filter((i) => i.subject === subject).at(-1)?.accessKeyId;
}

const subjectOf = (id: PodIdentity) => `system:serviceaccount:${id.namespace}:${id.serviceAccount}`;

/** A bare GET to the agent from inside `ns` with the token in `tokenFile`, as an SDK sends it. */
const RAW_GET = `
const { readFileSync } = await import('node:fs');
const [url, tokenFile] = process.argv.slice(1);
try {
  const res = await fetch(url, { headers: { authorization: readFileSync(tokenFile, 'utf8') }, signal: AbortSignal.timeout(20000) });
  process.stdout.write(JSON.stringify({ status: res.status, body: await res.text() }));
} catch (e) {
  process.stdout.write(JSON.stringify({ error: e.cause?.code ?? e.name }));
}
`;
async function rawGet(ns: string, url: string, tokenFile: string): Promise<{ status?: number; body?: string; error?: string }> {
  const result = await net.exec(ns, process.execPath, ['--input-type=module', '-e', RAW_GET, url, tokenFile]);
  if (result.code !== 0) throw new Error(`the raw GET failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as { status?: number; body?: string; error?: string };
}

beforeAll(async () => {
  unavailable = await podNetworkUnavailable();
  if (unavailable) {
    if (process.env['CROSSCRED_E2E_STRICT'] === '1') throw new Error(unavailable);
    return;
  }
  home = await mkdtemp(join(tmpdir(), 'crosscred-pod-home-'));
  net = await PodNetwork.create();
  for (const name of POD_NAMES) pods[name] = await net.addPod(name);
  services = await startNodeServices(net, [
    { roleArn: ROLE, audience: DEFAULT_AUDIENCE, subject: 'system:serviceaccount:payments:*' },
    { roleArn: LEGACY_ROLE, audience: DEFAULT_AUDIENCE, subject: 'system:serviceaccount:legacy:*' },
    { roleArn: HOSTNET_ROLE, audience: DEFAULT_AUDIENCE, subject: 'system:serviceaccount:monitoring:node-exporter' },
  ]);
  for (const name of POD_NAMES) {
    currentTokens.set(name, await mintFor(IDENTITIES[name]));
    await pods[name].writeToken(currentTokens.get(name)!);
  }
  hostnetTokenFile = join(net.dir, 'hostnet-token');
  await writeFile(hostnetTokenFile, await mintFor(IDENTITIES.hostnet));

  agent = net.spawn(net.node, CLI_EXEC, [
    ...CLI_ARGS,
    'node-agent',
    '--listen',
    `${POD_IDENTITY_IPV4}:80`,
    '--listen',
    `[${POD_IDENTITY_IPV6}]:80`,
    '--admin-listen',
    '127.0.0.1:2703',
    '--allowed-issuer',
    services.issuerUrl,
    '--audience',
    DEFAULT_AUDIENCE,
    '--allowed-role',
    `arn:aws:iam::${ACCOUNT}:role/pods/*`,
    '--region',
    'us-east-1',
    '--sts-endpoint',
    services.agentStsUrl,
    '--log-level',
    'debug',
  ]);
  for (const stream of [agent.stdout!, agent.stderr!]) stream.on('data', (c: Buffer) => (agentLog += c.toString('utf8')));
  let exited: number | null | undefined;
  agent.once('exit', (code) => (exited = code));
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (exited !== undefined) throw new Error(`crosscred node-agent exited with ${exited}:\n${agentLog}`);
    const ready = await services.fetch(`${ADMIN}/readyz`).catch(() => undefined);
    if (ready?.status === 200) break;
    if (Date.now() > deadline) throw new Error(`crosscred node-agent did not become ready:\n${agentLog}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}, 2 * START_TIMEOUT_MS);

afterAll(async () => {
  if (agent) await stop(agent);
  await net?.close();
  if (home) await rm(home, { recursive: true, force: true });
}, 60_000);

function skipIfUnavailable(ctx: { skip: (note?: string) => void }): void {
  if (unavailable) ctx.skip(unavailable);
}

describe('agent mode: current clients get their pod’s credentials from the node agent', { timeout: TEST_TIMEOUT_MS }, () => {
  it('the JS SDK v3 default chain (fromNodeProviderChain), with only the injected variables', async (ctx) => {
    skipIfUnavailable(ctx);
    const before = (await services.state()).agentSts.calls;
    const out = answer(await inPod(pods.api.ns, process.execPath, [JS_CLIENT, 'node-provider-chain'], agentModeEnv(pods.api, ROLE)), 'the JS SDK');
    const state = await services.state();
    expect(state.agentSts.calls).toBe(before + 1);
    // STS got exactly this pod's token, for the role named in the URI.
    expect(state.agentSts.requests.at(-1)).toEqual({ tokenSha256: sha256(currentTokens.get('api')!), roleArn: ROLE });
    expect(out['accessKeyId']).toBe(await lastAgentKey(subjectOf(IDENTITIES.api)));
    expect(Date.parse(out['expiration']!)).toBeGreaterThan(Date.now() + 15 * 60_000);
  });

  it('botocore 1.4x (pyenv) gets the same, cached credentials (no second STS call)', async (ctx) => {
    skipIfUnavailable(ctx);
    if (!(await clientAvailable(CLIENTS.pyenvPython, ['-c', 'import botocore']))) ctx.skip(`${CLIENTS.pyenvPython} cannot import botocore`);
    const before = (await services.state()).agentSts.calls;
    const out = answer(await inPod(pods.api.ns, CLIENTS.pyenvPython, [BOTOCORE_CLIENT], agentModeEnv(pods.api, ROLE)), 'botocore');
    expect(out['method']).toBe('container-role');
    expect(out['accessKeyId']).toBe(await lastAgentKey(subjectOf(IDENTITIES.api)));
    expect((await services.state()).agentSts.calls).toBe(before);
  });

  it('the AWS CLI v1 (pyenv) signs a request with them', async (ctx) => {
    skipIfUnavailable(ctx);
    if (!(await clientAvailable(CLIENTS.awsCliV1))) ctx.skip("the image's AWS CLI v1 (pyenv) is not installed");
    const sinkBefore = (await services.state()).sink.length;
    const result = await inPod(
      pods.api.ns,
      CLIENTS.awsCliV1,
      ['sts', 'get-caller-identity', '--endpoint-url', `http://${SERVICE_ADDRESS}:${SINK_PORT}`, '--output', 'json'],
      { ...agentModeEnv(pods.api, ROLE), AWS_DEFAULT_REGION: 'us-east-1' },
    );
    expect(result.code, result.stderr).toBe(0);
    expect((await services.state()).sink.slice(sinkBefore)).toEqual([await lastAgentKey(subjectOf(IDENTITIES.api))]);
  });

  it('the JS SDK v3 through the IPv6 URI http://[fd00:ec2::23]/…', async (ctx) => {
    skipIfUnavailable(ctx);
    const env = agentModeEnv(pods.v6, ROLE, 'ipv6');
    expect(env[ENV.fullUri]).toMatch(/^http:\/\/\[fd00:ec2::23\]\/v1\/credentials\/arn:aws:iam::/);
    const out = answer(await inPod(pods.v6.ns, process.execPath, [JS_CLIENT, 'node-provider-chain'], env), 'the JS SDK over IPv6');
    expect(out['accessKeyId']).toBe(await lastAgentKey(subjectOf(IDENTITIES.v6)));
  });

  it('a hostNetwork pod (a process in the node namespace) gets its own credentials', async (ctx) => {
    skipIfUnavailable(ctx);
    const out = answer(
      await net.exec(
        net.node,
        process.execPath,
        [JS_CLIENT, 'node-provider-chain'],
        clientEnv(home, agentModeEnv({ tokenFile: hostnetTokenFile }, HOSTNET_ROLE)),
      ),
      'the JS SDK in the node namespace',
    );
    const issued = (await services.state()).agentSts.issued.filter((i) => i.roleArn === HOSTNET_ROLE);
    expect(issued.map((i) => i.subject)).toEqual([subjectOf(IDENTITIES.hostnet)]);
    expect(out['accessKeyId']).toBe(issued[0]!.accessKeyId);
  });
});

describe('identity comes from each pod’s own token', { timeout: TEST_TIMEOUT_MS }, () => {
  it('two pods with different ServiceAccounts get different STS sessions', async (ctx) => {
    skipIfUnavailable(ctx);
    const a = answer(await inPod(pods.api.ns, process.execPath, [JS_CLIENT, 'node-provider-chain'], agentModeEnv(pods.api, ROLE)), 'the JS SDK (api)');
    const b = answer(await inPod(pods.worker.ns, process.execPath, [JS_CLIENT, 'node-provider-chain'], agentModeEnv(pods.worker, ROLE)), 'the JS SDK (worker)');
    const issued = (await services.state()).agentSts.issued.filter((i) => i.roleArn === ROLE);
    const forApi = issued.filter((i) => i.subject === subjectOf(IDENTITIES.api)).at(-1)!;
    const forWorker = issued.filter((i) => i.subject === subjectOf(IDENTITIES.worker)).at(-1)!;
    expect(a['accessKeyId']).toBe(forApi.accessKeyId);
    expect(b['accessKeyId']).toBe(forWorker.accessKeyId);
    expect(forApi.accessKeyId).not.toBe(forWorker.accessKeyId);
    expect(forApi.sessionName).not.toBe(forWorker.sessionName);
    // <namespace>.<pod>, as `crosscred node-agent --help` says: CloudTrail tells the pods apart.
    expect([forApi.sessionName, forWorker.sessionName]).toEqual([`payments.${IDENTITIES.api.name}`, `payments.${IDENTITIES.worker.name}`]);
    ctx.annotate(`session names: ${forApi.sessionName}, ${forWorker.sessionName}`);
  });

  it('a forged token (same claims and kid, another key) is refused and never gets the cached credentials', async (ctx) => {
    skipIfUnavailable(ctx);
    const cached = await lastAgentKey(subjectOf(IDENTITIES.api));
    expect(cached).toBeDefined();
    const forged = await services.forge(projectedClaims(IDENTITIES.api, DEFAULT_AUDIENCE));
    tokensSeen.push(forged);
    const file = join(net.dir, 'forged-token');
    await writeFile(file, forged);
    const issuedBefore = (await services.state()).agentSts.issued.length;
    const res = await rawGet(pods.api.ns, credentialsUri(ROLE), file);
    expect([401, 403]).toContain(res.status);
    expect(res.body).not.toContain(cached!);
    expect(res.body).not.toMatch(/AccessKeyId|SecretAccessKey/);
    expect((JSON.parse(res.body!) as { Code?: unknown }).Code).toEqual(expect.any(String));
    // STS saw it (the agent keeps no keys of its own) and refused it.
    const state = await services.state();
    expect(state.agentSts.requests.map((r) => r.tokenSha256)).toContain(sha256(forged));
    expect(state.agentSts.issued.length).toBe(issuedBefore);
    // And the JS SDK in the pod with the forged token gets no credentials at all.
    await pods.worker.writeToken(forged);
    try {
      const sdk = await inPod(pods.worker.ns, process.execPath, [JS_CLIENT, 'node-provider-chain'], agentModeEnv(pods.worker, ROLE));
      expect(sdk.code).not.toBe(0);
      expect(sdk.stdout).not.toContain(cached!);
    } finally {
      await pods.worker.writeToken(currentTokens.get('worker')!);
    }
  });

  it('an expired token is refused before STS', async (ctx) => {
    skipIfUnavailable(ctx);
    const expired = await mintFor(IDENTITIES.api, -120);
    const file = join(net.dir, 'expired-token');
    await writeFile(file, expired);
    const before = (await services.state()).agentSts.calls;
    const res = await rawGet(pods.api.ns, credentialsUri(ROLE), file);
    expect([400, 401, 403]).toContain(res.status);
    expect(res.body).not.toMatch(/AccessKeyId/);
    expect((await services.state()).agentSts.calls).toBe(before);
  });

  it('a token without the kubernetes.io pod claim (not a projected token bound to a pod) is refused before STS', async (ctx) => {
    skipIfUnavailable(ctx);
    const unbound = await services.mint({ sub: subjectOf(IDENTITIES.api), aud: DEFAULT_AUDIENCE, ttlSeconds: 3600 });
    tokensSeen.push(unbound);
    const file = join(net.dir, 'unbound-token');
    await writeFile(file, unbound);
    const before = (await services.state()).agentSts.calls;
    const res = await rawGet(pods.api.ns, credentialsUri(ROLE), file);
    expect([400, 401, 403]).toContain(res.status);
    expect((await services.state()).agentSts.calls).toBe(before);
  });

  it('token rotation: after the kubelet rewrites the file, the next fetch exchanges the new token', async (ctx) => {
    skipIfUnavailable(ctx);
    const old = answer(await inPod(pods.api.ns, process.execPath, [JS_CLIENT, 'node-provider-chain'], agentModeEnv(pods.api, ROLE)), 'the JS SDK');
    const rotated = await mintFor(IDENTITIES.api);
    await pods.api.writeToken(rotated);
    currentTokens.set('api', rotated);
    const fresh = answer(await inPod(pods.api.ns, process.execPath, [JS_CLIENT, 'node-provider-chain'], agentModeEnv(pods.api, ROLE)), 'the JS SDK');
    const state = await services.state();
    expect(state.agentSts.requests.at(-1)!.tokenSha256).toBe(sha256(rotated));
    expect(fresh['accessKeyId']).toBe(state.agentSts.issued.at(-1)!.accessKeyId);
    expect(fresh['accessKeyId']).not.toBe(old['accessKeyId']);
  });
});

/** Each client too old for the agent: how it refuses agent mode, and how it is run. */
const OLD_CLIENTS = [
  {
    name: 'AWS CLI 2.9 (Debian awscli)',
    refusal: /Unsupported host '169\.254\.170\.23'/,
    available: () => clientAvailable(CLIENTS.awsCliV2),
    missing: '/usr/bin/aws (apt-get install awscli) is not installed',
    run: (pod: Pod, env: Record<string, string>) => inPod(pod.ns, CLIENTS.awsCliV2, ['configure', 'export-credentials', '--format', 'process'], env),
    key: (out: Record<string, string>) => out['AccessKeyId'],
  },
  {
    name: 'botocore 1.29 (Debian python3-botocore)',
    refusal: /Unsupported host '169\.254\.170\.23'/,
    available: () => clientAvailable(CLIENTS.debianPython, ['-c', 'import botocore']),
    missing: `${CLIENTS.debianPython} cannot import botocore (apt-get install python3-botocore)`,
    run: (pod: Pod, env: Record<string, string>) => inPod(pod.ns, CLIENTS.debianPython, [BOTOCORE_CLIENT], env),
    key: (out: Record<string, string>) => out['accessKeyId'],
  },
  {
    name: 'Go SDK v1 1.44 (Debian)',
    refusal: /invalid endpoint host, "169\.254\.170\.23", only loopback hosts are allowed/,
    available: () => goAvailable(),
    missing: "go and Debian's aws-sdk-go packages are not installed",
    run: (pod: Pod, env: Record<string, string>) => inPod(pod.ns, join(goBin, 'go-sdk-v1'), [], env),
    key: (out: Record<string, string>) => out['accessKeyId'],
  },
  {
    name: 'Go SDK v2 1.17 (Debian)',
    refusal: /invalid endpoint host, "169\.254\.170\.23", only loopback hosts are allowed/,
    available: () => goAvailable(),
    missing: "go and Debian's aws-sdk-go-v2 packages are not installed",
    run: (pod: Pod, env: Record<string, string>) => inPod(pod.ns, join(goBin, 'go-sdk-v2'), [], env),
    key: (out: Record<string, string>) => out['accessKeyId'],
  },
] as const;

let goBin = '';
let goBuilt: Promise<boolean> | undefined;
/** Builds the Go clients once (offline, from Debian's packages) when Go is here. */
function goAvailable(): Promise<boolean> {
  goBuilt ??= (async () => {
    if (!(await goClientsAvailable())) return false;
    goBin = await mkdtemp(join(tmpdir(), 'crosscred-go-pods-'));
    await buildGoClients(REPO_ROOT, goBin);
    return true;
  })();
  return goBuilt;
}
afterAll(async () => {
  if (goBin) await rm(goBin, { recursive: true, force: true });
});

describe('old clients: refused in agent mode, served in web-identity mode', () => {
  for (const client of OLD_CLIENTS) {
    it(
      `${client.name}`,
      async (ctx) => {
        skipIfUnavailable(ctx);
        if (!(await client.available())) ctx.skip(client.missing);
        const pod = pods.legacy;
        const callsBefore = (await services.state()).agentSts.calls;
        const refused = await client.run(pod, { ...agentModeEnv(pod, LEGACY_ROLE), AWS_REGION: 'us-east-1', AWS_DEFAULT_REGION: 'us-east-1' });
        expect(refused.code).not.toBe(0);
        expect(`${refused.stdout}${refused.stderr}`).toMatch(client.refusal);
        // Refused by the client itself: the agent never heard of it.
        expect((await services.state()).agentSts.calls).toBe(callsBefore);

        const served = answer(await client.run(pod, webIdentityEnv(pod, LEGACY_ROLE, IDENTITIES.legacy.name)), client.name);
        const issued = (await services.state()).podSts.issued.at(-1)!;
        // AWS_ROLE_SESSION_NAME (the pod's name, from the downward API) is honoured too.
        expect(issued).toMatchObject({ roleArn: LEGACY_ROLE, subject: subjectOf(IDENTITIES.legacy), sessionName: IDENTITIES.legacy.name });
        expect(client.key(served)).toBe(issued.accessKeyId);
      },
      BUILD_TIMEOUT_MS,
    );
  }
});

describe('crosscred doctor --node-agent in a pod, against the real agent', { timeout: TEST_TIMEOUT_MS }, () => {
  const doctor = (env: Record<string, string>, pod = pods.worker) =>
    inPod(pod.ns, CLI_EXEC, [...CLI_ARGS, 'doctor', '--node-agent', '--allowed-issuer', services.issuerUrl], env);

  it('with only the injected variables: every check ok, exit 0', async (ctx) => {
    skipIfUnavailable(ctx);
    const result = await doctor(agentModeEnv(pods.worker, ROLE));
    ctx.annotate(result.stdout);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).not.toMatch(/\[warn\]|\[FAIL\]/);
    expect(result.stdout).toMatch(/\[ok\] {3}the node agent answered 200/);
    expect(result.stdout).toMatch(/\[ok\] {3}the instance metadata service \(IMDS\) does not answer/);
    for (const token of tokensSeen) expect(result.stdout).not.toContain(token.split('.')[2]!);
  });

  it('with AWS_ACCESS_KEY_ID set beside them: warns that it wins', async (ctx) => {
    skipIfUnavailable(ctx);
    const result = await doctor({
      ...agentModeEnv(pods.worker, ROLE),
      AWS_ACCESS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    });
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(
      /\[warn\] AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY are set: the SDKs use these environment credentials before the node agent/,
    );
    expect(result.stdout).not.toContain('wJalrXUtnFEMI');
  });

  it('through the IPv6 URI, with the endpoint mode Java needs: every check ok', async (ctx) => {
    skipIfUnavailable(ctx);
    const result = await doctor({ ...agentModeEnv(pods.v6, ROLE, 'ipv6'), [ENV.endpointMode]: 'IPv6' }, pods.v6);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).not.toMatch(/\[warn\]|\[FAIL\]/);
    expect(result.stdout).toContain('[ok]   TCP connection to [fd00:ec2::23]:80 opened');
    expect(result.stdout).toMatch(/\[ok\] {3}the node agent answered 200/);
    // In IPv6 mode the SDKs' IMDS is fd00:ec2::254, which no pod here reaches.
    expect(result.stdout).toContain('[ok]   the instance metadata service (IMDS) does not answer from this pod at [fd00:ec2::254]');
  });
});

describe('the silent fallback doctor warns of: a pod that can reach the node’s IMDS', { timeout: TEST_TIMEOUT_MS }, () => {
  let nodeKey: string;
  beforeAll(async () => {
    if (unavailable) return;
    await net.exposeImds(pods.exposed);
    nodeKey = await services.startImds();
  });

  it('doctor --node-agent warns, naming the node’s role; the JS SDK still uses the agent (with FULL_URI set it never asks IMDS)', async (ctx) => {
    skipIfUnavailable(ctx);
    const env = agentModeEnv(pods.exposed, ROLE);
    const result = await inPod(pods.exposed.ns, CLI_EXEC, [...CLI_ARGS, 'doctor', '--node-agent', '--allowed-issuer', services.issuerUrl], env);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toContain(`[warn] IMDS answers from this pod at 169.254.169.254 and offers the node's role ${NODE_ROLE_NAME}`);
    expect(result.stdout).toMatch(/\[ok\] {3}the node agent answered 200/);
    const js = answer(await inPod(pods.exposed.ns, process.execPath, [JS_CLIENT, 'node-provider-chain'], env), 'the JS SDK');
    expect(js['accessKeyId']).toBe(await lastAgentKey(subjectOf(IDENTITIES.exposed)));
    expect(js['accessKeyId']).not.toBe(nodeKey);
  });

  it('a pod the webhook missed (no variables at all): the JS SDK silently runs as the node; doctor fails on the variables and warns of IMDS', async (ctx) => {
    skipIfUnavailable(ctx);
    // What agent#153 reports: with failurePolicy Ignore a pod is sometimes not mutated, and nothing says so.
    const js = answer(await inPod(pods.exposed.ns, process.execPath, [JS_CLIENT, 'node-provider-chain'], {}), 'the JS SDK');
    expect(js['accessKeyId']).toBe(nodeKey);
    const result = await inPod(pods.exposed.ns, CLI_EXEC, [...CLI_ARGS, 'doctor', '--node-agent'], {});
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('[FAIL] AWS_CONTAINER_CREDENTIALS_FULL_URI is not set');
    expect(result.stdout).toContain(`[warn] IMDS answers from this pod at 169.254.169.254 and offers the node's role ${NODE_ROLE_NAME}`);
  });

  it(
    'Go SDK v1 1.44 in agent mode refuses the address and does not fall back to IMDS',
    async (ctx) => {
      skipIfUnavailable(ctx);
      if (!(await goAvailable())) ctx.skip("go and Debian's aws-sdk-go packages are not installed");
      const result = await inPod(pods.exposed.ns, join(goBin, 'go-sdk-v1'), [], { ...agentModeEnv(pods.exposed, ROLE), AWS_REGION: 'us-east-1' });
      expect(result.code).not.toBe(0);
      // The SDK's logger writes the refusal to stdout; the chain's error goes to stderr.
      expect(result.stdout).toMatch(/invalid endpoint host, "169\.254\.170\.23", only loopback hosts are allowed/);
      expect(result.stderr).toMatch(/NoCredentialProviders/);
      expect(`${result.stdout}${result.stderr}`).not.toContain(nodeKey);
    },
    BUILD_TIMEOUT_MS,
  );
});

describe('hygiene', () => {
  it('no token ever appears in the agent’s output', (ctx) => {
    skipIfUnavailable(ctx);
    // At debug level the agent logged the refusals above (forged, expired, unbound tokens): the request path was logged.
    expect(agentLog).toMatch(/request refused/);
    for (const token of tokensSeen) {
      for (const part of token.split('.').slice(1)) expect(agentLog.includes(part), 'a token payload or signature is in the agent log').toBe(false);
    }
  });
});
