import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type AdmissionResponse, admissionReviewSchema, podSchema } from '../../src/platform/kubernetes/admission-review.js';
import type { ServiceAccountLookup } from '../../src/platform/kubernetes/service-accounts.js';
import { admit } from '../../src/webhook/admission.js';
import { applied } from '../../src/webhook/json-patch.js';
import { planPodForClouds } from '../../src/webhook/other-cloud-patch.js';
import type { PatchOptions } from '../../src/webhook/pod-patch.js';
import {
  admissionReview,
  applyAndValidate,
  barePod,
  changedOriginals,
  container,
  decodePatch,
  deploymentPod,
  envOf,
  type Json,
  type PatchOp,
} from '../support/admission-pods.js';
import { memoryLogger } from '../support/chain.js';

/**
 * The webhook's roles in Alibaba Cloud and Tencent Cloud (#13), through admit() on realistic pods:
 * every patch applied with fast-json-patch and validated as a Pod with kubernetes-models, every
 * original field kept, each cloud injected on its own, and a reinvocation adding nothing.
 */

const AWS_ROLE = 'arn:aws:iam::111122223333:role/team/payments-api';
const RAM_ROLE = 'acs:ram::1234567890123456:role/payments-oss';
const RAM_PROVIDER = 'acs:ram::1234567890123456:oidc-provider/eks-cluster';
const CAM_ROLE = 'qcs::cam::uin/100012345678:roleName/payments-cos';
const IMAGE = 'registry.example.com/crosscred:1.0.0';

const ALIBABA = { 'crosscred.io/alibaba-role-arn': RAM_ROLE, 'crosscred.io/alibaba-oidc-provider-arn': RAM_PROVIDER };
const TENCENT = { 'crosscred.io/tencent-role-arn': CAM_ROLE, 'crosscred.io/tencent-provider-id': 'eks-cluster', 'crosscred.io/tencent-region': 'ap-guangzhou' };

async function review(
  pod: Json,
  annotations: Record<string, string>,
  patch: PatchOptions = { ipFamily: 'ipv4', sidecarImage: IMAGE },
): Promise<{ response: AdmissionResponse; result: string; ops: PatchOp[] }> {
  const outcome = await admit(admissionReviewSchema.parse(admissionReview(pod)), {
    serviceAccounts: {
      async get(namespace, name): Promise<ServiceAccountLookup> {
        return { found: true, account: { namespace, name, annotations }, source: 'live' };
      },
    },
    defaultMode: 'agent',
    patch,
    log: memoryLogger().logger,
  });
  if (outcome.kind !== 'answer') throw new Error(`invalid: ${outcome.problem}`);
  return { response: outcome.response, result: outcome.result, ops: decodePatch(outcome.response) };
}

/** Array paths the original pod already has: an operation on exactly one of them would replace it. */
function existingArrayPaths(value: unknown, path = ''): string[] {
  if (Array.isArray(value)) return [path, ...value.flatMap((v, i) => existingArrayPaths(v, `${path}/${i}`))];
  if (value !== null && typeof value === 'object')
    return Object.entries(value).flatMap(([k, v]) => existingArrayPaths(v, `${path}/${k.replaceAll('~', '~0').replaceAll('/', '~1')}`));
  return [];
}

const OUR_SIDECARS = ['crosscred', 'crosscred-alibaba', 'crosscred-tencent'];

/** The patched pod without the sidecars inserted at the head of initContainers, so originals can be compared index by index. */
function withoutOurSidecars(before: Json, after: Json): Json {
  const copy = structuredClone(after);
  const spec = copy['spec'] as Json;
  const had = ((before['spec'] as Json)['initContainers'] as Json[] | undefined) !== undefined;
  const inits = ((spec['initContainers'] as Json[] | undefined) ?? []).filter((c) => !OUR_SIDECARS.includes(c['name'] as string));
  if (had || inits.length > 0) spec['initContainers'] = inits;
  else delete spec['initContainers'];
  return copy;
}

/** Applies, validates, checks adds only on no existing array, and that every original value is still there. */
function expectSafePatch(pod: Json, ops: PatchOp[]): Json {
  const arrays = new Set(existingArrayPaths(pod));
  for (const op of ops) {
    expect(op.op).toBe('add');
    expect(arrays.has(op.path), `${op.path} would replace an existing array`).toBe(false);
  }
  const after = applyAndValidate(pod, ops);
  expect(changedOriginals(pod, withoutOurSidecars(pod, after))).toEqual([]);
  return after;
}

function spec(pod: Json): Json {
  return pod['spec'] as Json;
}

function initNames(pod: Json): string[] {
  return ((spec(pod)['initContainers'] as Json[] | undefined) ?? []).map((c) => c['name'] as string);
}

function volume(pod: Json, name: string): Json | undefined {
  return ((spec(pod)['volumes'] as Json[] | undefined) ?? []).find((v) => v['name'] === name);
}

describe('an Alibaba Cloud role', () => {
  it('adds a crosscred-alibaba native sidecar, its own token volume, and the URI provider variables to each selected container', async () => {
    const pod = deploymentPod();
    const { result, ops, response } = await review(pod, ALIBABA);
    expect(result).toBe('mutated');
    const after = expectSafePatch(pod, ops);

    expect(initNames(after)).toEqual(['crosscred-alibaba', 'migrate', 'log-shipper']);
    const sidecar = container(after, 'crosscred-alibaba');
    expect(sidecar['image']).toBe(IMAGE);
    expect(sidecar['restartPolicy']).toBe('Always');
    expect(sidecar['args']).toEqual(['serve', '--cloud', 'alibaba', '--listen', '127.0.0.1:8172', '--admin-listen', '0.0.0.0:8173', '--disable-imds']);
    expect(envOf(sidecar)).toEqual({
      ALIBABA_CLOUD_ROLE_ARN: RAM_ROLE,
      ALIBABA_CLOUD_OIDC_PROVIDER_ARN: RAM_PROVIDER,
      ALIBABA_CLOUD_OIDC_TOKEN_FILE: '/var/run/secrets/crosscred.io/alibaba/token',
      POD_NAME: JSON.stringify({ fieldRef: { fieldPath: 'metadata.name' } }),
      POD_UID: JSON.stringify({ fieldRef: { fieldPath: 'metadata.uid' } }),
      NODE_OPTIONS: '--max-semi-space-size=2 --max-old-space-size=64',
    });
    expect(sidecar['volumeMounts']).toEqual([{ name: 'crosscred-token-alibaba', mountPath: '/var/run/secrets/crosscred.io/alibaba', readOnly: true }]);
    expect(sidecar['securityContext']).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(sidecar['ports']).toEqual([{ name: 'alibaba-admin', containerPort: 8173, protocol: 'TCP' }]);
    expect(sidecar['startupProbe']).toMatchObject({ httpGet: { path: '/healthz', port: 8173 } });
    expect(sidecar['readinessProbe']).toMatchObject({ httpGet: { path: '/readyz', port: 8173 } });
    expect(volume(after, 'crosscred-token-alibaba')).toEqual({
      name: 'crosscred-token-alibaba',
      projected: { sources: [{ serviceAccountToken: { audience: 'sts.aliyuncs.com', expirationSeconds: 86400, path: 'token' } }] },
    });

    for (const name of ['migrate', 'log-shipper', 'app']) {
      const c = container(after, name);
      expect(envOf(c)['ALIBABA_CLOUD_CREDENTIALS_URI']).toBe('http://127.0.0.1:8172/v1/alibaba/credentials');
      expect(envOf(c)['ALIBABA_CLOUD_ECS_METADATA_DISABLED']).toBe('true');
      // The token is the sidecar's alone.
      expect(((c['volumeMounts'] as Json[]) ?? []).map((m) => m['name'])).not.toContain('crosscred-token-alibaba');
    }
    expect(((after['metadata'] as Json)['annotations'] as Json)['crosscred.io/injected']).toBe('alibaba');
    // Nothing of AWS, nor of Tencent.
    expect(JSON.stringify(ops)).not.toMatch(/AWS_|crosscred-token"|hostAliases|sysctls/);
    expect(response.warnings ?? []).toContainEqual(expect.stringContaining('envFrom'));
  });

  it('passes the STS region and the audience from their annotations', async () => {
    const { ops } = await review(barePod(), { ...ALIBABA, 'crosscred.io/alibaba-sts-region': 'cn-shanghai', 'crosscred.io/alibaba-audience': 'ack-rrsa' });
    const after = expectSafePatch(barePod(), ops);
    expect(envOf(container(after, 'crosscred-alibaba'))['ALIBABA_CLOUD_STS_REGION']).toBe('cn-shanghai');
    expect(JSON.stringify(volume(after, 'crosscred-token-alibaba'))).toContain('"audience":"ack-rrsa"');
  });

  it('leaves a container that sets its own Alibaba credentials alone, with a warning, and still injects the Tencent role', async () => {
    for (const variable of [
      'ALIBABA_CLOUD_ACCESS_KEY_ID',
      'ALIBABA_CLOUD_ROLE_ARN',
      'ALIBABA_CLOUD_CREDENTIALS_URI',
      'ALIBABA_CLOUD_ECS_METADATA',
      'ALIBABA_CLOUD_PROFILE',
    ]) {
      const pod = deploymentPod();
      ((spec(pod)['containers'] as Json[])[0]!['env'] as Json[]).push({ name: variable, value: 'x' });
      const { result, ops, response } = await review(pod, { ...ALIBABA, ...TENCENT });
      expect(result, variable).toBe('mutated');
      const after = expectSafePatch(pod, ops);
      expect(initNames(after)).toEqual(['crosscred-tencent', 'migrate', 'log-shipper']);
      expect(((after['metadata'] as Json)['annotations'] as Json)['crosscred.io/injected']).toBe('tencent');
      expect(response.warnings).toContainEqual(`crosscred: container "app" already sets ${variable}; its Alibaba Cloud role is not injected`);
    }
  });

  it('keeps a container’s own ALIBABA_CLOUD_ECS_METADATA_DISABLED, and warns when it is not true', async () => {
    const pod = barePod();
    (spec(pod)['containers'] as Json[])[0]!['env'] = [{ name: 'ALIBABA_CLOUD_ECS_METADATA_DISABLED', value: 'false' }];
    const { ops, response } = await review(pod, ALIBABA);
    const after = expectSafePatch(pod, ops);
    const env = (container(after, 'main')['env'] as Json[]).filter((e) => e['name'] === 'ALIBABA_CLOUD_ECS_METADATA_DISABLED');
    expect(env).toEqual([{ name: 'ALIBABA_CLOUD_ECS_METADATA_DISABLED', value: 'false' }]);
    expect(response.warnings).toContainEqual(expect.stringContaining('sets ALIBABA_CLOUD_ECS_METADATA_DISABLED itself'));
  });

  it('honours crosscred.io/containers for the URI variables', async () => {
    const pod = deploymentPod({ annotations: { 'crosscred.io/containers': 'app' } });
    const { ops } = await review(pod, ALIBABA);
    const after = expectSafePatch(pod, ops);
    expect(envOf(container(after, 'app'))['ALIBABA_CLOUD_CREDENTIALS_URI']).toBeDefined();
    expect(envOf(container(after, 'migrate'))['ALIBABA_CLOUD_CREDENTIALS_URI']).toBeUndefined();
  });
});

describe('a Tencent Cloud role', () => {
  it('adds a crosscred-tencent sidecar on port 80, maps metadata.tencentyun.com to the loopback, and lowers the unprivileged port start', async () => {
    const pod = deploymentPod();
    const { result, ops } = await review(pod, TENCENT);
    expect(result).toBe('mutated');
    const after = expectSafePatch(pod, ops);

    const sidecar = container(after, 'crosscred-tencent');
    expect(sidecar['args']).toEqual([
      'serve',
      '--cloud',
      'tencent',
      '--listen',
      '127.0.0.1:80',
      '--admin-listen',
      '0.0.0.0:8174',
      '--allowed-host',
      'metadata.tencentyun.com',
    ]);
    expect(envOf(sidecar)).toMatchObject({
      TKE_ROLE_ARN: CAM_ROLE,
      TKE_PROVIDER_ID: 'eks-cluster',
      TKE_REGION: 'ap-guangzhou',
      TKE_WEB_IDENTITY_TOKEN_FILE: '/var/run/secrets/crosscred.io/tencent/token',
    });
    expect(sidecar['securityContext']).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, capabilities: { drop: ['ALL'] } });
    expect(sidecar['ports']).toEqual([{ name: 'tencent-admin', containerPort: 8174, protocol: 'TCP' }]);
    expect(JSON.stringify(volume(after, 'crosscred-token-tencent'))).toContain('"audience":"sts.cloud.tencent.com"');
    expect(spec(after)['hostAliases']).toEqual([{ ip: '127.0.0.1', hostnames: ['metadata.tencentyun.com'] }]);
    expect((spec(after)['securityContext'] as Json)['sysctls']).toEqual([{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }]);
    // The application's containers are not changed: the SDK finds the metadata server by name.
    expect(container(after, 'app')).toEqual(container(pod, 'app'));
    expect(((after['metadata'] as Json)['annotations'] as Json)['crosscred.io/injected']).toBe('tencent');
  });

  it('appends to hostAliases and sysctls a pod already has, and creates securityContext when it has none', async () => {
    const pod = deploymentPod();
    spec(pod)['hostAliases'] = [{ ip: '10.0.0.5', hostnames: ['db.internal'] }];
    (spec(pod)['securityContext'] as Json)['sysctls'] = [{ name: 'net.ipv4.ping_group_range', value: '0 2147483647' }];
    const after = expectSafePatch(pod, (await review(pod, TENCENT)).ops);
    expect(spec(after)['hostAliases']).toEqual([
      { ip: '10.0.0.5', hostnames: ['db.internal'] },
      { ip: '127.0.0.1', hostnames: ['metadata.tencentyun.com'] },
    ]);
    expect(((spec(after)['securityContext'] as Json)['sysctls'] as Json[]).map((s) => s['name'])).toEqual([
      'net.ipv4.ping_group_range',
      'net.ipv4.ip_unprivileged_port_start',
    ]);

    const bare = barePod();
    const { ops, response } = await review(bare, TENCENT);
    const bareAfter = expectSafePatch(bare, ops);
    expect(spec(bareAfter)['securityContext']).toEqual({ sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }] });
    expect(container(bareAfter, 'crosscred-tencent')['securityContext']).toMatchObject({ runAsUser: 10001 });
    expect(response.warnings).toContainEqual(expect.stringContaining('crosscred-tencent runs as 10001'));
  });

  it('does not set the sysctl twice when the pod already sets it to 0', async () => {
    const pod = deploymentPod();
    (spec(pod)['securityContext'] as Json)['sysctls'] = [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }];
    const { ops } = await review(pod, TENCENT);
    expectSafePatch(pod, ops);
    expect(ops.some((o) => o.path.includes('sysctls'))).toBe(false);
  });

  it('leaves the Tencent part alone when any container, selected or not, sets Tencent credentials', async () => {
    for (const variable of ['TENCENTCLOUD_SECRET_ID', 'TENCENTCLOUD_SESSION_TOKEN', 'TKE_ROLE_ARN', 'TKE_WEB_IDENTITY_TOKEN_FILE']) {
      const pod = deploymentPod({ annotations: { 'crosscred.io/skip-containers': 'migrate' } });
      ((spec(pod)['initContainers'] as Json[])[0]!['env'] as Json[]).push({ name: variable, value: 'x' });
      const { result, response } = await review(pod, TENCENT);
      expect(result, variable).toBe('unchanged');
      expect(response.patch).toBeUndefined();
      expect(response.warnings).toContainEqual(`crosscred: container "migrate" already sets ${variable}; its Tencent Cloud role is not injected`);
    }
  });
});

describe('denials', () => {
  const denials: Array<[string, Record<string, string>, string]> = [
    [
      'a malformed RAM role',
      { ...ALIBABA, 'crosscred.io/alibaba-role-arn': 'arn:aws:iam::1:role/x' },
      'annotation crosscred.io/alibaba-role-arn is not a RAM role ARN',
    ],
    ['a RAM role without its provider', { 'crosscred.io/alibaba-role-arn': RAM_ROLE }, 'missing crosscred.io/alibaba-oidc-provider-arn'],
    ['a provider without its role', { 'crosscred.io/alibaba-oidc-provider-arn': RAM_PROVIDER }, 'missing crosscred.io/alibaba-role-arn'],
    ['a malformed provider ARN', { ...ALIBABA, 'crosscred.io/alibaba-oidc-provider-arn': RAM_ROLE }, 'is not a RAM OIDC provider ARN'],
    ['a bad Alibaba region', { ...ALIBABA, 'crosscred.io/alibaba-sts-region': 'Hangzhou!' }, 'alibaba-sts-region is not an Alibaba Cloud region'],
    ['an Alibaba audience with a comma', { ...ALIBABA, 'crosscred.io/alibaba-audience': 'a,b' }, 'alibaba-audience must be one audience'],
    ['a malformed CAM role', { ...TENCENT, 'crosscred.io/tencent-role-arn': RAM_ROLE }, 'is not a CAM role ARN'],
    ['a Tencent role without a region', { ...TENCENT, 'crosscred.io/tencent-region': '' }, 'missing crosscred.io/tencent-region'],
    ['a bad provider id', { ...TENCENT, 'crosscred.io/tencent-provider-id': 'has space' }, 'is not a CAM identity provider name'],
    ['a bad Tencent region', { ...TENCENT, 'crosscred.io/tencent-region': 'ap_guangzhou' }, 'is not a Tencent Cloud region'],
    ['a bad AWS role beside a good Alibaba one', { ...ALIBABA, 'crosscred.io/role-arn': 'not-an-arn' }, 'annotation crosscred.io/role-arn'],
  ];
  it.each(denials)('denies %s, naming the annotation', async (_what, annotations, message) => {
    const { response, ops } = await review(deploymentPod(), annotations);
    expect(response.allowed).toBe(false);
    expect(response.status?.code).toBe(403);
    expect(response.status?.message).toContain(message);
    expect(ops).toEqual([]);
  });

  it('denies without --sidecar-image, for either cloud, even when an AWS role is in agent mode', async () => {
    for (const annotations of [ALIBABA, TENCENT, { 'crosscred.io/role-arn': AWS_ROLE, ...TENCENT }]) {
      const { response } = await review(deploymentPod(), annotations, { ipFamily: 'ipv4' });
      expect(response.allowed).toBe(false);
      expect(response.status?.message).toMatch(/needs the webhook to run with --sidecar-image/);
    }
  });

  it('denies a hostNetwork pod, whose loopback is the node’s', async () => {
    for (const annotations of [ALIBABA, TENCENT]) {
      const { response } = await review(deploymentPod({ hostNetwork: true }), annotations);
      expect(response.allowed).toBe(false);
      expect(response.status?.message).toContain('hostNetwork');
    }
  });

  it('denies a pod that declares a port a sidecar needs', async () => {
    for (const [port, annotations] of [
      [8172, ALIBABA],
      [8173, ALIBABA],
      [80, TENCENT],
      [8174, TENCENT],
    ] as const) {
      const pod = deploymentPod();
      ((spec(pod)['containers'] as Json[])[0]!['ports'] as Json[]).push({ containerPort: port, protocol: 'TCP' });
      const { response } = await review(pod, annotations);
      expect(response.allowed, String(port)).toBe(false);
      expect(response.status?.message).toContain('declares one of them');
    }
  });

  it('denies a pod that already maps metadata.tencentyun.com, or sets the port sysctl to another value', async () => {
    const mapped = deploymentPod();
    spec(mapped)['hostAliases'] = [{ ip: '10.1.2.3', hostnames: ['Metadata.TencentYun.com'] }];
    expect((await review(mapped, TENCENT)).response.status?.message).toContain('already maps it');

    const sysctl = deploymentPod();
    (spec(sysctl)['securityContext'] as Json)['sysctls'] = [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '1024' }];
    expect((await review(sysctl, TENCENT)).response.status?.message).toContain('sets it to another value');
  });
});

describe('three clouds at once', () => {
  it('injects each on its own, in one patch that applies to a pod with no arrays at all, and a reinvocation adds nothing', async () => {
    for (const mode of ['agent', 'sidecar', 'web-identity'] as const) {
      const pod = barePod();
      (spec(pod)['containers'] as Json[])[0]!['securityContext'] = { runAsUser: 4242 };
      const { result, ops } = await review(pod, { 'crosscred.io/role-arn': AWS_ROLE, 'crosscred.io/mode': mode, ...ALIBABA, ...TENCENT });
      expect(result).toBe('mutated');
      const after = expectSafePatch(pod, ops);
      // Arrays the pod lacked are created once, then appended to.
      const creations = ops.filter((o) => ['/spec/volumes', '/spec/initContainers', '/spec/containers/0/env'].includes(o.path));
      expect(creations.map((o) => o.path).sort()).toEqual(['/spec/containers/0/env', '/spec/initContainers', '/spec/volumes']);
      expect(initNames(after)).toEqual(
        mode === 'sidecar' ? ['crosscred-tencent', 'crosscred-alibaba', 'crosscred'] : ['crosscred-tencent', 'crosscred-alibaba'],
      );
      expect(((after['metadata'] as Json)['annotations'] as Json)['crosscred.io/injected']).toBe(`${mode},alibaba,tencent`);
      const env = envOf(container(after, 'main'));
      expect(env['ALIBABA_CLOUD_CREDENTIALS_URI']).toBe('http://127.0.0.1:8172/v1/alibaba/credentials');
      expect(env[mode === 'web-identity' ? 'AWS_ROLE_ARN' : 'AWS_CONTAINER_CREDENTIALS_FULL_URI']).toBeDefined();
      for (const name of ['crosscred-alibaba', 'crosscred-tencent']) expect(container(after, name)['securityContext']).toMatchObject({ runAsUser: 4242 });
      const names = ((spec(after)['volumes'] as Json[]) ?? []).map((v) => v['name']);
      expect(names).toEqual(expect.arrayContaining(['crosscred-token', 'crosscred-token-alibaba', 'crosscred-token-tencent']));

      const again = await review(after, { 'crosscred.io/role-arn': AWS_ROLE, 'crosscred.io/mode': mode, ...ALIBABA, ...TENCENT });
      expect(again.result).toBe('unchanged');
      expect(again.ops).toEqual([]);
    }
  });

  it('injects the other clouds when the AWS part is left alone, and keeps the AWS patch byte for byte without them', async () => {
    const pod = deploymentPod();
    ((spec(pod)['containers'] as Json[])[0]!['env'] as Json[]).push({ name: 'AWS_ACCESS_KEY_ID', value: 'x' });
    const mixed = await review(pod, { 'crosscred.io/role-arn': AWS_ROLE, ...ALIBABA });
    expect(mixed.result).toBe('mutated');
    const after = expectSafePatch(pod, mixed.ops);
    expect(((after['metadata'] as Json)['annotations'] as Json)['crosscred.io/injected']).toBe('alibaba');
    expect(mixed.response.warnings).toContainEqual(expect.stringContaining('already sets AWS_ACCESS_KEY_ID'));

    const awsOnly = await review(deploymentPod(), { 'crosscred.io/role-arn': AWS_ROLE });
    const awsPlanned = planPodForClouds(
      podSchema.parse(deploymentPod()),
      { aws: { roleArn: AWS_ROLE, audience: 'sts.amazonaws.com', expirationSeconds: 86400, mode: 'agent' } },
      { ipFamily: 'ipv4' },
    );
    expect(awsPlanned.kind === 'patch' && JSON.stringify(awsPlanned.operations)).toBe(JSON.stringify(awsOnly.ops));
  });
});

describe('applied()', () => {
  it('applies add operations in order as fast-json-patch does', () => {
    const doc = { a: [1, 2], b: { 'x/y': 1 } };
    const ops = [
      { op: 'add' as const, path: '/a/0', value: 0 },
      { op: 'add' as const, path: '/a/-', value: 3 },
      { op: 'add' as const, path: '/b/x~1z', value: 2 },
      { op: 'add' as const, path: '/c', value: [] },
      { op: 'add' as const, path: '/c/-', value: 'k' },
    ];
    expect(applied(doc, ops)).toEqual({ a: [0, 1, 2, 3], b: { 'x/y': 1, 'x/z': 2 }, c: ['k'] });
    expect(doc).toEqual({ a: [1, 2], b: { 'x/y': 1 } });
    expect(() => applied(doc, [{ op: 'add', path: '/a/9', value: 1 }])).toThrow(/out of range/);
  });
});

const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
const containerArb = (name: string) =>
  fc
    .record({ env: maybe(fc.array(fc.record({ name: fc.constantFrom('LOG_LEVEL', 'HOME'), value: fc.string({ maxLength: 4 }) }), { maxLength: 2 })) })
    .map((c) => {
      const out: Json = { name, image: 'registry.example.com/x:1' };
      if (c.env) out['env'] = c.env;
      return out;
    });
const podArb = fc
  .record({
    containers: fc.uniqueArray(fc.constantFrom('app', 'worker', 'proxy'), { minLength: 1, maxLength: 3 }).chain((n) => fc.tuple(...n.map(containerArb))),
    inits: maybe(fc.uniqueArray(fc.constantFrom('migrate', 'shipper'), { maxLength: 2 }).chain((n) => fc.tuple(...n.map(containerArb)))),
    volumes: fc.boolean(),
    hostAliases: maybe(fc.constant([{ ip: '10.0.0.1', hostnames: ['db'] }])),
    securityContext: fc.constantFrom(undefined, {}, { runAsUser: 1000 }, { sysctls: [{ name: 'kernel.shm_rmid_forced', value: '1' }] }),
    annotations: fc.boolean(),
    aws: fc.constantFrom(undefined, 'agent', 'sidecar', 'web-identity'),
    alibaba: fc.boolean(),
    tencent: fc.boolean(),
  })
  .map((g) => {
    const spec: Json = { containers: g.containers };
    if (g.inits) spec['initContainers'] = g.inits;
    if (g.volumes) spec['volumes'] = [{ name: 'data', emptyDir: {} }];
    if (g.hostAliases) spec['hostAliases'] = g.hostAliases;
    if (g.securityContext) spec['securityContext'] = g.securityContext;
    const metadata: Json = { name: 'p', namespace: 'ns', ...(g.annotations ? { annotations: { team: 'a' } } : {}) };
    const annotations: Record<string, string> = {
      ...(g.aws ? { 'crosscred.io/role-arn': AWS_ROLE, 'crosscred.io/mode': g.aws } : {}),
      ...(g.alibaba ? ALIBABA : {}),
      ...(g.tencent ? TENCENT : {}),
    };
    return { pod: { apiVersion: 'v1', kind: 'Pod', metadata, spec } as Json, annotations };
  });

describe('generated pods', () => {
  it('every patch is adds only, applies, keeps what was there, validates, and is not patched again', async () => {
    let patched = 0;
    await fc.assert(
      fc.asyncProperty(podArb, async ({ pod, annotations }) => {
        if (Object.keys(annotations).length === 0) return;
        const { result, ops } = await review(pod, annotations);
        if (result !== 'mutated') return;
        patched++;
        const after = expectSafePatch(pod, ops);
        const injected = (((after['metadata'] as Json)['annotations'] as Json)['crosscred.io/injected'] as string).split(',');
        expect(injected.includes('alibaba')).toBe('crosscred.io/alibaba-role-arn' in annotations);
        expect(injected.includes('tencent')).toBe('crosscred.io/tencent-role-arn' in annotations);
        expect((await review(after, annotations)).ops).toEqual([]);
      }),
      { numRuns: 200 },
    );
    expect(patched).toBeGreaterThan(120);
  });
});
