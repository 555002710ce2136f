import { describe, expect, it } from 'vitest';
import { type AdmissionResponse, admissionReviewSchema } from '../../src/platform/kubernetes/admission-review.js';
import { KubernetesApiError, type ServiceAccount, type ServiceAccountLookup } from '../../src/platform/kubernetes/service-accounts.js';
import { CREDENTIAL_VARIABLES, TOKEN_FILE_PATH, TOKEN_MOUNT_PATH } from '../../src/protocol/pod-identity.js';
import { type AdmissionContext, admit } from '../../src/webhook/admission.js';
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
  podSetting,
} from '../support/admission-pods.js';
import { memoryLogger } from '../support/chain.js';

/**
 * Research §7 tests 16-22 on the admission logic: realistic pods through admit(), each patch
 * applied with fast-json-patch and the result validated as a Pod with kubernetes-models.
 */

const ROLE = 'arn:aws:iam::111122223333:role/team/payments-api';
const URI = `http://169.254.170.23/v1/credentials/${ROLE}`;

function accounts(list: ServiceAccount[], fail?: string): AdmissionContext['serviceAccounts'] {
  return {
    async get(namespace, name): Promise<ServiceAccountLookup> {
      if (fail) throw new KubernetesApiError(fail);
      const account = list.find((a) => a.namespace === namespace && a.name === name);
      return account ? { found: true, account, source: 'live' } : { found: false, source: 'live' };
    },
  };
}

function sa(annotations: Record<string, string>, name = 'payments-api'): ServiceAccount {
  return { namespace: 'payments', name, annotations };
}

async function review(
  pod: Json,
  annotations: Record<string, string> = { 'crosscred.io/role-arn': ROLE },
  options: { patch?: PatchOptions; fail?: string; reviewOptions?: Parameters<typeof admissionReview>[1] } = {},
): Promise<{ response: AdmissionResponse; result: string; ops: PatchOp[] }> {
  const parsed = admissionReviewSchema.parse(admissionReview(pod, options.reviewOptions));
  const outcome = await admit(parsed, {
    serviceAccounts: accounts([sa(annotations)], options.fail),
    defaultMode: 'agent',
    patch: options.patch ?? { ipFamily: 'ipv4' },
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

function expectOnlySafeAdds(pod: Json, ops: PatchOp[]): void {
  const arrays = new Set(existingArrayPaths(pod));
  for (const op of ops) {
    expect(op.op).toBe('add');
    expect(arrays.has(op.path), `${op.path} would replace an existing array`).toBe(false);
  }
}

describe('agent mode on a Deployment pod with a native sidecar, init containers, env and mounts (test 16)', () => {
  it('adds only, keeps every original field, and gives each container exactly our variables and one mount', async () => {
    const pod = deploymentPod();
    const { response, result, ops } = await review(pod);
    expect(result).toBe('mutated');
    expect(response.allowed).toBe(true);
    expect(response.patchType).toBe('JSONPatch');
    expectOnlySafeAdds(pod, ops);
    const after = applyAndValidate(pod, ops);
    expect(changedOriginals(pod, after)).toEqual([]);
    // The IRSA webhook's #208: the native sidecar keeps restartPolicy Always (and its probe).
    expect(container(after, 'log-shipper')['restartPolicy']).toBe('Always');
    for (const name of ['migrate', 'log-shipper', 'app']) {
      const c = container(after, name);
      const env = envOf(c);
      expect(env['AWS_CONTAINER_CREDENTIALS_FULL_URI']).toBe(URI);
      expect(env['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE']).toBe(TOKEN_FILE_PATH);
      expect(env).not.toHaveProperty('AWS_CONTAINER_AUTHORIZATION_TOKEN');
      const added = Object.keys(env).filter((k) => k.startsWith('AWS_'));
      expect(added.sort()).toEqual(['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE', 'AWS_CONTAINER_CREDENTIALS_FULL_URI']);
      const mounts = (c['volumeMounts'] as Json[]).filter((m) => m['mountPath'] === TOKEN_MOUNT_PATH);
      expect(mounts).toEqual([{ name: 'crosscred-token', mountPath: TOKEN_MOUNT_PATH, readOnly: true }]);
    }
    const volume = ((after['spec'] as Json)['volumes'] as Json[]).find((v) => v['name'] === 'crosscred-token');
    expect(volume).toEqual({
      name: 'crosscred-token',
      projected: { sources: [{ serviceAccountToken: { audience: 'sts.amazonaws.com', expirationSeconds: 86400, path: 'token' } }] },
    });
    expect(((after['metadata'] as Json)['annotations'] as Json)['crosscred.io/injected']).toBe('agent');
    // The pointer escapes "/" in the annotation key (RFC 6901).
    expect(ops.map((o) => o.path)).toContain('/metadata/annotations/crosscred.io~1injected');
    // envFrom cannot be inspected: said, not refused.
    expect(response.warnings?.some((w) => w.includes('"app"') && w.includes('envFrom'))).toBe(true);
  });

  it('injects a hostNetwork pod in agent mode (it reaches 169.254.170.23 through the node itself)', async () => {
    const pod = deploymentPod({ hostNetwork: true });
    const { result, ops } = await review(pod);
    expect(result).toBe('mutated');
    expect(envOf(container(applyAndValidate(pod, ops), 'app'))['AWS_CONTAINER_CREDENTIALS_FULL_URI']).toBe(URI);
  });
});

describe('a pod without env, volumes, mounts or annotations (test 17)', () => {
  it('creates each array whole and validates', async () => {
    const pod = barePod();
    const { ops } = await review(pod);
    expect(ops.map((o) => o.path).sort()).toEqual(['/metadata/annotations', '/spec/containers/0/env', '/spec/containers/0/volumeMounts', '/spec/volumes']);
    const after = applyAndValidate(pod, ops);
    expect(changedOriginals(pod, after)).toEqual([]);
    expect(Object.keys(envOf(container(after, 'main'))).sort()).toEqual(['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE', 'AWS_CONTAINER_CREDENTIALS_FULL_URI']);
  });
});

describe('a container that already chooses its credentials (test 18)', () => {
  for (const variable of ['AWS_ACCESS_KEY_ID', 'AWS_ROLE_ARN', 'AWS_CONTAINER_CREDENTIALS_FULL_URI', 'AWS_PROFILE']) {
    it(`${variable}: no patch, a warning naming the container and the variable`, async () => {
      expect(CREDENTIAL_VARIABLES).toContain(variable);
      const { response, result, ops } = await review(podSetting(variable));
      expect(result).toBe('unchanged');
      expect(response.allowed).toBe(true);
      expect(response.patch).toBeUndefined();
      expect(ops).toEqual([]);
      expect(response.warnings).toContainEqual(expect.stringMatching(new RegExp(`container "app" already sets ${variable}`)));
    });
  }
});

describe('reinvocation (test 19)', () => {
  it('the patched pod sent again gets no patch', async () => {
    for (const mode of ['agent', 'web-identity', 'sidecar']) {
      const pod = deploymentPod();
      const annotations = { 'crosscred.io/role-arn': ROLE, 'crosscred.io/mode': mode };
      const patch: PatchOptions = { ipFamily: 'ipv4', sidecarImage: 'crosscred:1.0' };
      const first = await review(pod, annotations, { patch });
      expect(first.result, mode).toBe('mutated');
      const second = await review(applyAndValidate(pod, first.ops), annotations, { patch });
      expect(second.result, mode).toBe('unchanged');
      expect(second.response.patch, mode).toBeUndefined();
    }
  });
});

describe('container selection and the IRSA annotations (test 20)', () => {
  it('skips containers named by crosscred.io/skip-containers and eks.amazonaws.com/skip-containers', async () => {
    const pod = deploymentPod({ annotations: { 'crosscred.io/skip-containers': 'migrate', 'eks.amazonaws.com/skip-containers': ' log-shipper ' } });
    const after = applyAndValidate(pod, (await review(pod)).ops);
    expect(envOf(container(after, 'migrate'))).not.toHaveProperty('AWS_CONTAINER_CREDENTIALS_FULL_URI');
    expect(envOf(container(after, 'log-shipper'))).not.toHaveProperty('AWS_CONTAINER_CREDENTIALS_FULL_URI');
    expect(envOf(container(after, 'app'))['AWS_CONTAINER_CREDENTIALS_FULL_URI']).toBe(URI);
  });

  it('injects only the containers named by crosscred.io/containers', async () => {
    const pod = deploymentPod({ annotations: { 'crosscred.io/containers': 'log-shipper' } });
    const after = applyAndValidate(pod, (await review(pod)).ops);
    expect(envOf(container(after, 'log-shipper'))['AWS_CONTAINER_CREDENTIALS_FULL_URI']).toBe(URI);
    expect(envOf(container(after, 'app'))).not.toHaveProperty('AWS_CONTAINER_CREDENTIALS_FULL_URI');
    expect(envOf(container(after, 'migrate'))).not.toHaveProperty('AWS_CONTAINER_CREDENTIALS_FULL_URI');
  });

  it('reads eks.amazonaws.com/role-arn, audience and token-expiration, raising an expiration under 600 s', async () => {
    const pod = barePod();
    const { response, ops } = await review(pod, {
      'eks.amazonaws.com/role-arn': ROLE,
      'eks.amazonaws.com/audience': 'sts.example.internal',
      'eks.amazonaws.com/token-expiration': '300',
    });
    const after = applyAndValidate(pod, ops);
    const volume = ((after['spec'] as Json)['volumes'] as Json[])[0]!;
    expect(volume['projected']).toEqual({ sources: [{ serviceAccountToken: { audience: 'sts.example.internal', expirationSeconds: 600, path: 'token' } }] });
    expect(response.warnings).toContainEqual(expect.stringContaining('raised to 600'));
  });

  it('prefers crosscred.io annotations over IRSA ones', async () => {
    const other = 'arn:aws:iam::111122223333:role/irsa';
    const { ops } = await review(barePod(), { 'eks.amazonaws.com/role-arn': other, 'crosscred.io/role-arn': ROLE, 'crosscred.io/token-expiration': '7200' });
    const after = applyAndValidate(barePod(), ops);
    expect(envOf(container(after, 'main'))['AWS_CONTAINER_CREDENTIALS_FULL_URI']).toBe(URI);
    expect(JSON.stringify((after['spec'] as Json)['volumes'])).toContain('"expirationSeconds":7200');
  });

  it('escapes "~" and "/" in pointers and keeps annotation keys holding them', async () => {
    const pod = deploymentPod({ annotations: { 'example.com/a~b': 'tilde', 'example.com/c/d': 'slash' } });
    const { ops } = await review(pod);
    const after = applyAndValidate(pod, ops);
    expect(changedOriginals(pod, after)).toEqual([]);
    const annotations = (after['metadata'] as Json)['annotations'] as Json;
    expect(annotations['example.com/a~b']).toBe('tilde');
    expect(annotations['example.com/c/d']).toBe('slash');
    expect(annotations['crosscred.io/injected']).toBe('agent');
  });

  it('denies an invalid role annotation with the reason, and leaves a pod without a role alone with a warning', async () => {
    const bad = await review(barePod(), { 'crosscred.io/role-arn': 'arn:aws:iam::1234:role/x' });
    expect(bad.result).toBe('denied');
    expect(bad.response.allowed).toBe(false);
    expect(bad.response.status?.message).toMatch(/crosscred\.io\/role-arn is not an IAM role ARN/);
    const none = await review(barePod(), {});
    expect(none.result).toBe('unchanged');
    expect(none.response.allowed).toBe(true);
    expect(none.response.warnings).toContainEqual(expect.stringContaining('has no crosscred.io/role-arn'));
  });

  it('denies an unknown mode', async () => {
    const { response } = await review(barePod(), { 'crosscred.io/role-arn': ROLE, 'crosscred.io/mode': 'magic' });
    expect(response.allowed).toBe(false);
    expect(response.status?.message).toMatch(/crosscred\.io\/mode must be one of agent, sidecar, web-identity/);
  });
});

describe('the ServiceAccount (test 21, logic)', () => {
  it('absent → denied with a clear message; API failing → denied so that the pod is retried', async () => {
    const absent = await review(deploymentPod({ serviceAccountName: 'ghost' }));
    expect(absent.response.allowed).toBe(false);
    expect(absent.response.status?.message).toMatch(/ServiceAccount payments\/ghost does not exist/);
    const down = await review(deploymentPod(), undefined, { fail: 'could not reach the Kubernetes API at https://x (ECONNREFUSED)' });
    expect(down.result).toBe('unavailable');
    expect(down.response.allowed).toBe(false);
    expect(down.response.status?.code).toBe(503);
    expect(down.response.status?.message).toMatch(/cannot read ServiceAccount payments\/payments-api.*ECONNREFUSED/);
  });
});

describe('the other modes (test 22)', () => {
  it('sidecar mode inserts crosscred first with restartPolicy Always and its token mounted only into it', async () => {
    const pod = deploymentPod();
    const { ops, response } = await review(
      pod,
      { 'crosscred.io/role-arn': ROLE, 'crosscred.io/mode': 'sidecar' },
      { patch: { ipFamily: 'ipv4', sidecarImage: 'registry.example.com/crosscred:1.0', region: 'eu-west-1' } },
    );
    expectOnlySafeAdds(pod, ops);
    const after = applyAndValidate(pod, ops);
    const inits = (after['spec'] as Json)['initContainers'] as Json[];
    expect(inits.map((c) => c['name'])).toEqual(['crosscred', 'migrate', 'log-shipper']);
    expect(inits[0]!['restartPolicy']).toBe('Always');
    expect(inits[0]!['image']).toBe('registry.example.com/crosscred:1.0');
    expect((inits[0]!['securityContext'] as Json)['runAsUser']).toBe(1000);
    expect(envOf(inits[0]!)['AWS_ROLE_ARN']).toBe(ROLE);
    expect(envOf(inits[0]!)['AWS_WEB_IDENTITY_TOKEN_FILE']).toBe(TOKEN_FILE_PATH);
    // Everything that was there is still there, one place further down the init containers.
    const shifted = structuredClone(after);
    ((shifted['spec'] as Json)['initContainers'] as Json[]).shift();
    expect(changedOriginals(pod, shifted)).toEqual([]);
    for (const name of ['migrate', 'log-shipper', 'app']) {
      const c = container(after, name);
      expect(envOf(c)['AWS_CONTAINER_CREDENTIALS_FULL_URI']).toBe('http://127.0.0.1:8170/v1/credentials');
      expect(envOf(c)['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE']).toBe('/var/run/crosscred/auth-token');
      expect(JSON.stringify(c['volumeMounts'])).not.toContain('crosscred-token');
    }
    expect(response.warnings ?? []).not.toContainEqual(expect.stringContaining('runAsUser'));
  });

  it('sidecar mode refuses a hostNetwork pod, saying why', async () => {
    const { response, result } = await review(
      deploymentPod({ hostNetwork: true }),
      { 'crosscred.io/role-arn': ROLE, 'crosscred.io/mode': 'sidecar' },
      { patch: { ipFamily: 'ipv4', sidecarImage: 'crosscred:1.0' } },
    );
    expect(result).toBe('denied');
    expect(response.allowed).toBe(false);
    expect(response.status?.message).toMatch(/sidecar mode cannot serve a hostNetwork pod/);
    expect(response.warnings).toContainEqual(expect.stringMatching(/hostNetwork/));
  });

  it('web-identity mode injects the IRSA variables with a per-pod session name', async () => {
    const pod = deploymentPod();
    const { ops } = await review(pod, { 'crosscred.io/role-arn': ROLE, 'crosscred.io/mode': 'web-identity' });
    const env = envOf(container(applyAndValidate(pod, ops), 'app'));
    expect(env['AWS_ROLE_ARN']).toBe(ROLE);
    expect(env['AWS_WEB_IDENTITY_TOKEN_FILE']).toBe(TOKEN_FILE_PATH);
    expect(JSON.parse(env['AWS_ROLE_SESSION_NAME']!)).toEqual({ fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } });
    expect(env).not.toHaveProperty('AWS_CONTAINER_CREDENTIALS_FULL_URI');
  });

  it.each([
    ['a 65-character name', 'p'.repeat(65)],
    ['a 1-character name', 'p'],
  ])('web-identity mode leaves AWS_ROLE_SESSION_NAME to the SDK for %s, which STS would refuse as a session name', async (_why, name) => {
    const pod = deploymentPod();
    const metadata = pod['metadata'] as Json;
    delete metadata['generateName'];
    metadata['name'] = name;
    const { ops, response } = await review(pod, { 'crosscred.io/role-arn': ROLE, 'crosscred.io/mode': 'web-identity' });
    const env = envOf(container(applyAndValidate(pod, ops), 'app'));
    expect(env['AWS_ROLE_ARN']).toBe(ROLE);
    expect(env).not.toHaveProperty('AWS_ROLE_SESSION_NAME');
    expect(response.warnings).toContainEqual(expect.stringMatching(/2 to 64 characters/));
  });

  it('web-identity mode keeps the per-pod session name for a 64-character name given in full', async () => {
    const pod = deploymentPod();
    const metadata = pod['metadata'] as Json;
    delete metadata['generateName'];
    metadata['name'] = 'p'.repeat(64);
    const { ops } = await review(pod, { 'crosscred.io/role-arn': ROLE, 'crosscred.io/mode': 'web-identity' });
    expect(envOf(container(applyAndValidate(pod, ops), 'app'))).toHaveProperty('AWS_ROLE_SESSION_NAME');
  });

  it('ipv6 injects the bracketed address and the Java endpoint mode; --region only where absent', async () => {
    const pod = podSetting('AWS_REGION');
    const { ops } = await review(pod, undefined, { patch: { ipFamily: 'ipv6', region: 'eu-west-1' } });
    const after = applyAndValidate(pod, ops);
    const app = envOf(container(after, 'app'));
    expect(app['AWS_CONTAINER_CREDENTIALS_FULL_URI']).toBe(`http://[fd00:ec2::23]/v1/credentials/${ROLE}`);
    expect(app['AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE']).toBe('IPv6');
    expect(app['AWS_REGION']).toBe('x');
    expect(app['AWS_DEFAULT_REGION']).toBe('eu-west-1');
    expect(envOf(container(after, 'migrate'))['AWS_REGION']).toBe('eu-west-1');
  });

  it('warns when containers run as different users and the pod has no fsGroup', async () => {
    const pod = deploymentPod();
    delete ((pod['spec'] as Json)['securityContext'] as Json)['fsGroup'];
    (container(pod, 'log-shipper') as Json)['securityContext'] = { runAsUser: 2000 };
    const { response } = await review(pod);
    expect(response.warnings).toContainEqual(expect.stringContaining('different users'));
    const withFsGroup = await review(deploymentPod());
    expect(withFsGroup.response.warnings ?? []).not.toContainEqual(expect.stringContaining('different users'));
  });
});

describe('what is not a Pod CREATE', () => {
  it('is allowed untouched without asking for the ServiceAccount', async () => {
    for (const reviewOptions of [{ operation: 'UPDATE' }, { kind: { group: 'apps', version: 'v1', kind: 'Deployment' } }, { subResource: 'status' }]) {
      const { response, result } = await review(deploymentPod(), undefined, { fail: 'must not be asked', reviewOptions });
      expect(result).toBe('ignored');
      expect(response).toEqual({ uid: '705ab4f5-6393-11e8-b7cc-42010a800002', allowed: true });
    }
  });
});

describe('a pod that already has our volume but not our annotation', () => {
  it('is left alone with a warning', async () => {
    const pod = barePod();
    (pod['spec'] as Json)['volumes'] = [{ name: 'crosscred-token', emptyDir: {} }];
    const { response, result } = await review(pod);
    expect(result).toBe('unchanged');
    expect(response.patch).toBeUndefined();
    expect(response.warnings).toContainEqual(expect.stringContaining('already has a volume named crosscred-token'));
  });
});

describe('sidecar mode and the ports it needs', () => {
  it('denies a pod whose container already declares 8170 or 8171', async () => {
    const pod = deploymentPod();
    ((container(pod, 'app') as Json)['ports'] as Json[]).push({ name: 'metrics', containerPort: 8171, protocol: 'TCP' });
    const { response } = await review(
      pod,
      { 'crosscred.io/role-arn': ROLE, 'crosscred.io/mode': 'sidecar' },
      { patch: { ipFamily: 'ipv4', sidecarImage: 'crosscred:1.0' } },
    );
    expect(response.allowed).toBe(false);
    expect(response.status?.message).toMatch(/needs ports 8170 and 8171, and container "app" declares one/);
  });
});
