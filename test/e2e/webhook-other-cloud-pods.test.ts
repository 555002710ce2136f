import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admissionReviewSchema } from '../../src/platform/kubernetes/admission-review.js';
import type { ServiceAccountLookup } from '../../src/platform/kubernetes/service-accounts.js';
import { admit } from '../../src/webhook/admission.js';
import { admissionReview, applyAndValidate, container, decodePatch, deploymentPod, type Json } from '../support/admission-pods.js';
import { CLI_ARGS, CLI_EXEC, memoryLogger, REPO_ROOT } from '../support/chain.js';
import { type NsProcess, VmNamespace } from './vm-chain/vm.js';

/**
 * A pod the webhook patched for an Alibaba and a Tencent role, "run": the patch is the one admit()
 * answers for a realistic Deployment pod, applied with fast-json-patch and validated as a Pod. Then
 * a network namespace stands in for the pod: its /etc/hosts is written from the patch's
 * `hostAliases`, its sysctls from `spec.securityContext.sysctls`. Each sidecar is the real CLI,
 * started with exactly the container's args and env (token paths remapped into a scratch dir, the
 * downward-API values filled in), as the container's `runAsUser` — so the Tencent sidecar binds
 * port 80 unprivileged only because of the patch's sysctl. The one argument added is
 * `--sts-endpoint`, pointing the sidecar at the demo STS emulator in the namespace instead of the
 * cloud's. The demo OIDC issuer mints each projected-token stand-in with the audience of the
 * patch's volume. Then the real clients run in the namespace with exactly the application
 * container's env and an empty HOME: `@alicloud/credentials` (`new Credential()`, its default
 * chain) and the Tencent Node SDK (`DefaultCredentialProvider` and `CvmRoleCredential`). The keys
 * they get must be the ones the emulators issued.
 */
const run = promisify(execFile);
const NS = `crosscred-wh-${process.pid}`;
const RAM_ROLE = 'acs:ram::1234567890123456:role/payments-oss';
const RAM_PROVIDER = 'acs:ram::1234567890123456:oidc-provider/eks-cluster';
const CAM_ROLE = 'qcs::cam::uin/100012345678:roleName/payments-cos';
const CAM_PROVIDER = 'eks-cluster';
const SUBJECT = 'system:serviceaccount:payments:payments-api';
const IMAGE = 'registry.example.com/crosscred:1.0.0';
/** What the kubelet would resolve the downward API to. */
const DOWNWARD: Record<string, string> = {
  'metadata.name': 'payments-api-7d9c8b6f5-x2x4q',
  'metadata.uid': '4c1c3c2e-0d5e-4d7f-9a5e-1f7c9b2a6d10',
  'status.podIP': '10.0.3.7',
};
const CLIENT_TIMEOUT_MS = 60_000;

let unavailable: string | undefined;
let ns: VmNamespace | undefined;
let chain: NsProcess | undefined;
let scratch: string;
let patched: Json;
const sidecars: NsProcess[] = [];

async function whyUnavailable(): Promise<string | undefined> {
  const strict = process.env['CROSSCRED_E2E_STRICT'] === '1';
  const missing = (why: string) => {
    if (strict) throw new Error(`${why}, and CROSSCRED_E2E_STRICT=1 requires the webhook's other-cloud pod test to run`);
    return why;
  };
  if (process.getuid?.() !== 0) return missing('not root: network namespaces and a sidecar of another uid need root');
  try {
    await run('ip', ['netns', 'list'], { timeout: 10_000 });
    await run('setpriv', ['--version'], { timeout: 10_000 });
  } catch (err) {
    return missing(`no usable "ip netns" or setpriv here: ${String((err as { stderr?: string }).stderr ?? err).trim()}`);
  }
  for (const built of ['dist/cli/main.js', 'dist/demo/alibaba-sts-emulator.js', 'dist/demo/tencent-sts-emulator.js'])
    if (!existsSync(join(REPO_ROOT, built))) return missing('dist/ is not built (npm run build)');
  return undefined;
}

/** The patch the webhook answers for a Deployment pod whose ServiceAccount names both roles, applied. */
async function patchedPod(): Promise<Json> {
  const annotations = {
    'crosscred.io/alibaba-role-arn': RAM_ROLE,
    'crosscred.io/alibaba-oidc-provider-arn': RAM_PROVIDER,
    'crosscred.io/tencent-role-arn': CAM_ROLE,
    'crosscred.io/tencent-provider-id': CAM_PROVIDER,
    'crosscred.io/tencent-region': 'ap-guangzhou',
  };
  const pod = deploymentPod();
  const outcome = await admit(admissionReviewSchema.parse(admissionReview(pod)), {
    serviceAccounts: {
      async get(namespace, name): Promise<ServiceAccountLookup> {
        return { found: true, account: { namespace, name, annotations }, source: 'live' };
      },
    },
    defaultMode: 'agent',
    patch: { ipFamily: 'ipv4', sidecarImage: IMAGE },
    log: memoryLogger().logger,
  });
  if (outcome.kind !== 'answer' || outcome.result !== 'mutated') throw new Error(`the webhook did not patch the pod: ${JSON.stringify(outcome)}`);
  return applyAndValidate(pod, decodePatch(outcome.response));
}

/** A container's env as a process gets it: values as written, the downward API resolved; secrets and config maps are not in this pod's reach. */
function processEnv(c: Json, remap: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of (c['env'] as Json[] | undefined) ?? []) {
    const name = e['name'] as string;
    const fieldPath = ((e['valueFrom'] as Json | undefined)?.['fieldRef'] as Json | undefined)?.['fieldPath'] as string | undefined;
    const value = typeof e['value'] === 'string' ? (e['value'] as string) : fieldPath !== undefined ? DOWNWARD[fieldPath] : undefined;
    if (value !== undefined) env[name] = remap[value] ?? value;
  }
  return env;
}

function tokenVolumeAudience(pod: Json, volume: string): string {
  const v = ((pod['spec'] as Json)['volumes'] as Json[]).find((x) => x['name'] === volume)!;
  return ((((v['projected'] as Json)['sources'] as Json[])[0]!['serviceAccountToken'] as Json)['audience'] as string) ?? '';
}

const dist = (path: string) => JSON.stringify(pathToFileURL(join(REPO_ROOT, 'dist', path)).href);

/** The issuer and both emulators in the namespace; writes the token stand-ins; reports what was issued when asked. */
function chainScript(tokens: { alibaba: string; tencent: string }, audiences: { alibaba: string; tencent: string }, uid: number): string {
  return `
import { chown, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { DemoOidcIssuer } from ${dist('demo/oidc-issuer.js')};
import { AlibabaStsEmulator } from ${dist('demo/alibaba-sts-emulator.js')};
import { TencentStsEmulator } from ${dist('demo/tencent-sts-emulator.js')};

const issuer = await DemoOidcIssuer.start();
const alibaba = await AlibabaStsEmulator.start({
  trust: [{ roleArn: ${JSON.stringify(RAM_ROLE)}, oidcProviderArn: ${JSON.stringify(RAM_PROVIDER)}, issuer: issuer.url, audience: ${JSON.stringify(audiences.alibaba)}, subject: ${JSON.stringify(SUBJECT)} }],
});
const tencent = await TencentStsEmulator.start({
  trust: [{ roleArn: ${JSON.stringify(CAM_ROLE)}, providerId: ${JSON.stringify(CAM_PROVIDER)}, issuer: issuer.url, audience: ${JSON.stringify(audiences.tencent)}, subject: ${JSON.stringify(SUBJECT)} }],
});
// The kubelet's projected token: 0600, owned by the uid the pod's containers share.
for (const [file, aud] of [[${JSON.stringify(tokens.alibaba)}, ${JSON.stringify(audiences.alibaba)}], [${JSON.stringify(tokens.tencent)}, ${JSON.stringify(audiences.tencent)}]]) {
  await writeFile(file, await issuer.mint({ sub: ${JSON.stringify(SUBJECT)}, aud, ttlSeconds: 3600 }), { mode: 0o600 });
  await chown(file, ${uid}, ${uid});
}
console.log(JSON.stringify({ event: 'ready', alibaba: alibaba.url, tencent: tencent.url }));
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'issued') console.log(JSON.stringify({ event: 'issued', alibaba: alibaba.issued, tencent: tencent.issued }));
});
process.stdin.on('end', async () => {
  await Promise.all([alibaba.close(), tencent.close(), issuer.close()]);
  process.exit(0);
});
`;
}

const CLIENTS = {
  alibaba: `
const Credential = require('@alicloud/credentials').default;
new Credential().getCredential().then(
  (c) => console.log(JSON.stringify({ accessKeyId: c.accessKeyId, accessKeySecret: c.accessKeySecret, securityToken: c.securityToken, providerName: c.providerName })),
  (e) => { console.error(e && e.message); process.exit(3); },
);`,
  tencentDefault: `
const { DefaultCredentialProvider } = require('tencentcloud-sdk-nodejs-common');
new DefaultCredentialProvider().getCredential().then((c) => console.log(JSON.stringify(c)), (e) => { console.error(e.message); process.exit(3); });`,
  tencentCvm: `
const { CvmRoleCredential } = require('tencentcloud-sdk-nodejs-common');
new CvmRoleCredential().getCredential().then((c) => console.log(JSON.stringify(c)), (e) => { console.error(e.message); process.exit(3); });`,
} as const;

interface Issued {
  alibaba: Array<{ accessKeyId: string; accessKeySecret: string; securityToken: string }>;
  tencent: Array<{ secretId: string; secretKey: string; token: string }>;
}

async function issued(): Promise<Issued> {
  chain!.send('issued');
  return chain!.nextJson<Issued>((v) => v['event'] === 'issued');
}

/** Runs one client in the pod with exactly the application container's env, an empty HOME and PATH. */
async function runClient(name: keyof typeof CLIENTS): Promise<Record<string, string>> {
  const env = { ...processEnv(container(patched, 'app')), PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: join(scratch, 'home') };
  return JSON.parse((await ns!.run(process.execPath, [join(scratch, `${name}.cjs`)], env)).trim()) as Record<string, string>;
}

beforeAll(async () => {
  unavailable = await whyUnavailable();
  if (unavailable) return;
  patched = await patchedPod();
  scratch = await mkdtemp(join(tmpdir(), 'crosscred-webhook-pod-'));
  await chmod(scratch, 0o755);
  await mkdir(join(scratch, 'home'));
  await symlink(join(REPO_ROOT, 'node_modules'), join(scratch, 'node_modules'), 'dir');
  for (const [name, source] of Object.entries(CLIENTS)) await writeFile(join(scratch, `${name}.cjs`), source);

  const spec = patched['spec'] as Json;
  // /etc/hosts as the kubelet writes it for the pod: its own entries, then one line per hostAlias.
  const aliases = ((spec['hostAliases'] as Json[] | undefined) ?? []).map((a) => `${a['ip']}\t${(a['hostnames'] as string[]).join('\t')}`);
  ns = await VmNamespace.create(NS, { addresses: [], hosts: ['127.0.0.1\tlocalhost', ...aliases, ''].join('\n') });
  for (const s of ((spec['securityContext'] as Json)['sysctls'] as Json[] | undefined) ?? [])
    await run('ip', ['netns', 'exec', NS, 'sysctl', '-q', '-w', `${s['name']}=${s['value']}`]);

  const alibabaSidecar = container(patched, 'crosscred-alibaba');
  const tencentSidecar = container(patched, 'crosscred-tencent');
  const uid = (alibabaSidecar['securityContext'] as Json)['runAsUser'] as number;
  const tokens = { alibaba: join(scratch, 'alibaba-token'), tencent: join(scratch, 'tencent-token') };
  const audiences = { alibaba: tokenVolumeAudience(patched, 'crosscred-token-alibaba'), tencent: tokenVolumeAudience(patched, 'crosscred-token-tencent') };
  await writeFile(join(scratch, 'chain.mjs'), chainScript(tokens, audiences, uid));
  const base = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: join(scratch, 'home') };
  chain = await ns.start('chain', process.execPath, [join(scratch, 'chain.mjs')], base, /"event":"ready"/);
  const urls = await chain.nextJson<{ alibaba: string; tencent: string }>((v) => v['event'] === 'ready');

  const remap = { '/var/run/secrets/crosscred.io/alibaba/token': tokens.alibaba, '/var/run/secrets/crosscred.io/tencent/token': tokens.tencent };
  for (const [sidecar, stsUrl] of [
    [alibabaSidecar, urls.alibaba],
    [tencentSidecar, urls.tencent],
  ] as const) {
    const runAs = String((sidecar['securityContext'] as Json)['runAsUser']);
    const args = [...(sidecar['args'] as string[]), '--sts-endpoint', stsUrl];
    const env = { ...processEnv(sidecar, remap), ...base };
    const started = await ns.start(
      sidecar['name'] as string,
      'setpriv',
      ['--reuid', runAs, '--regid', runAs, '--clear-groups', '--', CLI_EXEC, ...CLI_ARGS, ...args],
      env,
      /credential listener open/,
    );
    sidecars.push(started);
    const adminPort = ((sidecar['ports'] as Json[])[0]!['containerPort'] as number).toString();
    await ns.run(CLI_EXEC, [...CLI_ARGS, 'wait-ready', '--admin', `http://127.0.0.1:${adminPort}`, '--timeout-ms', '30000'], base).catch((err: Error) => {
      throw new Error(`${err.message}\n${started.output()}`);
    });
  }
}, 120_000);

afterAll(async () => {
  await ns?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
}, 30_000);

describe('a pod patched for Alibaba Cloud and Tencent Cloud roles, run with real clients', () => {
  it(
    '@alicloud/credentials’ default chain gets the Alibaba STS emulator’s keys through the URI the webhook injected',
    async () => {
      if (unavailable) {
        console.warn(`skipped: ${unavailable}`);
        return;
      }
      const got = await runClient('alibaba');
      const keys = (await issued()).alibaba;
      const key = keys.find((k) => k.accessKeyId === got['accessKeyId']);
      expect(key, `${got['accessKeyId']} was not issued by the emulator`).toBeDefined();
      expect(got['accessKeySecret']).toBe(key!.accessKeySecret);
      expect(got['securityToken']).toBe(key!.securityToken);
      expect(got['providerName']).toMatch(/credential_uri|uri/i);
    },
    CLIENT_TIMEOUT_MS,
  );

  it.each(['tencentDefault', 'tencentCvm'] as const)(
    'the Tencent Node SDK (%s) gets the Tencent STS emulator’s keys from metadata.tencentyun.com, which the hostAliases map to the sidecar',
    async (name) => {
      if (unavailable) return;
      const got = await runClient(name);
      const keys = (await issued()).tencent;
      const key = keys.find((k) => k.secretId === got['secretId']);
      expect(key, `${got['secretId']} was not issued by the emulator`).toBeDefined();
      expect(got).toEqual({ secretId: key!.secretId, secretKey: key!.secretKey, token: key!.token });
    },
    CLIENT_TIMEOUT_MS,
  );

  it('runs the sidecars as the application’s uid, not root', async () => {
    if (unavailable) return;
    for (const s of sidecars) {
      // ip netns exec and setpriv each exec the next program in place: the pid is crosscred's.
      const status = await run('cat', [`/proc/${s.child.pid}/status`]);
      expect(/^Uid:\s+(\d+)/m.exec(status.stdout)?.[1], s.label).toBe('1000');
    }
    expect((container(patched, 'crosscred-tencent')['securityContext'] as Json)['runAsUser']).toBe(1000);
  });
});
