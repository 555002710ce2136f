import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientAvailable } from '../support/clients.js';
import { KUBECTL, type KubeObject, kustomizeVersion, label, renderKustomize, schemaProblems } from '../support/render-kustomize.js';

/**
 * k8s/: every kustomization is rendered by the real kustomize (`kubectl kustomize`), every rendered
 * object is validated against the Kubernetes API schemas, and the properties docs/deployment.md promises
 * are checked on the rendered output, which is what a cluster would receive.
 */
const K8S = fileURLToPath(new URL('../../k8s/', import.meta.url));

/** Where each platform's token is projected, with the audience its STS (and AWS IAM) expects. */
const PLATFORMS = {
  eks: { audience: 'sts.amazonaws.com', dir: '/var/run/secrets/eks.amazonaws.com/serviceaccount', env: 'AWS_WEB_IDENTITY_TOKEN_FILE' },
  ack: { audience: 'sts.aliyuncs.com', dir: '/var/run/secrets/ack.alibabacloud.com/rrsa-tokens', env: 'ALIBABA_CLOUD_OIDC_TOKEN_FILE' },
  tke: { audience: 'sts.cloud.tencent.com', dir: '/var/run/secrets/tke.cloud.tencent.com/serviceaccount', env: 'TKE_WEB_IDENTITY_TOKEN_FILE' },
} as const;
const TOKEN_FILE_VARIABLES = Object.values(PLATFORMS).map((p) => p.env);
const KUSTOMIZATIONS = ['base', 'overlays/eks', 'overlays/ack', 'overlays/tke', 'overlays/generic'] as const;

const UID = 10001;
const ADMIN_PORT = 8171;
const API_TOKEN_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

// Just the fields these assertions read; the schemas have checked the rest.
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { configMapKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } };
}
interface Probe {
  httpGet?: { path: string; port: number | string };
}
interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  readOnlyRootFilesystem?: boolean;
  allowPrivilegeEscalation?: boolean;
  privileged?: boolean;
  capabilities?: { drop?: string[]; add?: string[] };
  seccompProfile?: { type: string };
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  restartPolicy?: string;
  env?: EnvVar[];
  ports?: { containerPort: number }[];
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: SecurityContext;
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface Volume {
  name: string;
  emptyDir?: { medium?: string };
  projected?: {
    sources: {
      serviceAccountToken?: { audience?: string; expirationSeconds?: number; path: string };
      configMap?: { name: string };
      downwardAPI?: { items: { path: string }[] };
    }[];
  };
}
interface PodSpec {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  securityContext?: SecurityContext & { fsGroup?: number };
  initContainers?: Container[];
  containers: Container[];
  volumes?: Volume[];
}

let kustomize: { version: string } | { problem: string } = { problem: 'not checked yet' };
const rendered = new Map<string, KubeObject[]>();

beforeAll(async () => {
  // Strict mode (CROSSCRED_E2E_STRICT=1) makes a missing kubectl throw here instead of skipping.
  if (!(await clientAvailable(KUBECTL, ['kustomize', '--help']))) {
    kustomize = { problem: `${KUBECTL} is not installed (the machine image's kubectl embeds kustomize)` };
    return;
  }
  kustomize = await kustomizeVersion();
  if ('problem' in kustomize) {
    if (process.env['CROSSCRED_E2E_STRICT'] === '1') throw new Error(`${kustomize.problem}, and CROSSCRED_E2E_STRICT=1 requires it`);
    return;
  }
  for (const k of KUSTOMIZATIONS) rendered.set(k, await renderKustomize(join(K8S, k)));
});

function requireKustomize(ctx: { skip(note: string): never }): void {
  if ('problem' in kustomize) ctx.skip(kustomize.problem);
}

function objectsOf(k: string): KubeObject[] {
  const objects = rendered.get(k);
  if (!objects) throw new Error(`${k} was not rendered`);
  return objects;
}

function only(objects: readonly KubeObject[], kind: string): KubeObject {
  const found = objects.filter((o) => o.kind === kind);
  expect(found.map(label), `exactly one ${kind}`).toHaveLength(1);
  return found[0]!;
}

function podSpecOf(objects: readonly KubeObject[]): PodSpec {
  return (only(objects, 'Deployment') as unknown as { spec: { template: { spec: PodSpec } } }).spec.template.spec;
}

function sidecarOf(pod: PodSpec): Container {
  const sidecar = pod.initContainers?.find((c) => c.name === 'crosscred');
  expect(sidecar, 'crosscred is an init container').toBeDefined();
  return sidecar!;
}

function appOf(pod: PodSpec): Container {
  expect(pod.containers.map((c) => c.name)).toEqual(['app']);
  return pod.containers[0]!;
}

function envOf(container: Container, name: string): EnvVar | undefined {
  return container.env?.find((e) => e.name === name);
}

/** The value after `flag` in the container's args (the last one, as a CLI parser would take it). */
function argOf(container: Container, flag: string): string | undefined {
  const args = container.args ?? [];
  const i = args.lastIndexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

/** The volume mounted at the directory holding `file`, with its mount. */
function volumeHolding(pod: PodSpec, container: Container, file: string): { volume: Volume; readOnly: boolean } | undefined {
  const mount = container.volumeMounts?.find((m) => file.startsWith(`${m.mountPath.replace(/\/$/, '')}/`));
  const volume = mount && pod.volumes?.find((v) => v.name === mount.name);
  return volume ? { volume, readOnly: mount.readOnly === true } : undefined;
}

/** A container's security settings with the pod's as the fallback, as the kubelet applies them. */
function effectiveSecurity(pod: PodSpec, container: Container): SecurityContext {
  return { ...pod.securityContext, ...container.securityContext };
}

describe.each(KUSTOMIZATIONS)('k8s/%s', (k) => {
  it('renders with the real kustomize and every object validates against the Kubernetes schemas', (ctx) => {
    requireKustomize(ctx);
    const objects = objectsOf(k);
    expect(objects.map((o) => o.kind).sort()).toEqual(
      k === 'overlays/generic' ? ['ConfigMap', 'Deployment', 'Role', 'RoleBinding', 'ServiceAccount'] : ['ConfigMap', 'Deployment', 'ServiceAccount'],
    );
    expect(schemaProblems(objects)).toEqual([]);
  });

  it('runs crosscred as a native sidecar: an init container with restartPolicy Always, serving only on loopback', (ctx) => {
    requireKustomize(ctx);
    const pod = podSpecOf(objectsOf(k));
    const sidecar = sidecarOf(pod);
    expect(sidecar.restartPolicy).toBe('Always');
    expect(sidecar.image).toBe('crosscred:latest');
    expect(sidecar.args?.[0]).toBe('serve');
    expect(argOf(sidecar, '--listen')).toBe('127.0.0.1:8170');
    expect(sidecar.args).not.toContain('--allow-remote');
    expect(argOf(sidecar, '--admin-listen')).toBe(`0.0.0.0:${ADMIN_PORT}`);
    expect(sidecar.ports?.map((p) => p.containerPort)).toEqual([ADMIN_PORT]);
  });

  it('probes crosscred on the admin port: alive at /healthz, ready at /readyz', (ctx) => {
    requireKustomize(ctx);
    const sidecar = sidecarOf(podSpecOf(objectsOf(k)));
    expect(sidecar.startupProbe?.httpGet).toEqual({ path: '/healthz', port: ADMIN_PORT });
    expect(sidecar.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: ADMIN_PORT });
    expect(sidecar.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: ADMIN_PORT });
  });

  it('bounds crosscred with resource requests and limits', (ctx) => {
    requireKustomize(ctx);
    const { resources } = sidecarOf(podSpecOf(objectsOf(k)));
    for (const bound of [resources?.requests, resources?.limits]) expect(Object.keys(bound ?? {}).sort()).toEqual(['cpu', 'memory']);
  });

  it('runs both containers non-root as the same uid, read-only, without privileges or capabilities, under RuntimeDefault seccomp', (ctx) => {
    requireKustomize(ctx);
    const pod = podSpecOf(objectsOf(k));
    for (const container of [sidecarOf(pod), appOf(pod)]) {
      // Set on each container, not only inherited: a patch to the pod cannot silently loosen them.
      expect(container.securityContext, container.name).toMatchObject({
        runAsNonRoot: true,
        runAsUser: UID,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(container.securityContext?.capabilities?.add, container.name).toBeUndefined();
      expect(container.securityContext?.privileged ?? false, container.name).toBe(false);
      // The secret crosscred writes is mode 0600: only the same uid can read it (fsGroup would not help).
      expect(effectiveSecurity(pod, container).runAsUser, container.name).toBe(UID);
    }
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: UID, seccompProfile: { type: 'RuntimeDefault' } });
  });

  it('points the application at the container endpoint, with the secret on a shared in-memory volume', (ctx) => {
    requireKustomize(ctx);
    const pod = podSpecOf(objectsOf(k));
    const sidecar = sidecarOf(pod);
    const app = appOf(pod);
    expect(envOf(app, 'AWS_CONTAINER_CREDENTIALS_FULL_URI')?.value).toBe(`http://${argOf(sidecar, '--listen')}/v1/credentials`);
    const secretFile = argOf(sidecar, '--auth-token-file');
    expect(secretFile).toBe('/var/run/crosscred/auth-token');
    expect(envOf(app, 'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE')?.value).toBe(secretFile);
    const written = volumeHolding(pod, sidecar, secretFile!);
    const read = volumeHolding(pod, app, secretFile!);
    expect(written?.volume.emptyDir).toEqual({ medium: 'Memory', sizeLimit: '1Mi' });
    expect(read?.volume.name).toBe(written?.volume.name);
    expect(read?.readOnly, 'the application cannot replace the secret').toBe(true);
  });

  it('gives the application no token of its own, so its SDK has only crosscred to ask', (ctx) => {
    requireKustomize(ctx);
    const pod = podSpecOf(objectsOf(k));
    const app = appOf(pod);
    expect(pod.automountServiceAccountToken).toBe(false);
    for (const name of [...TOKEN_FILE_VARIABLES, 'AWS_ROLE_ARN', 'AWS_ACCESS_KEY_ID', 'AWS_CONTAINER_AUTHORIZATION_TOKEN']) {
      expect(envOf(app, name), name).toBeUndefined();
    }
    const appVolumes = (app.volumeMounts ?? []).map((m) => pod.volumes?.find((v) => v.name === m.name));
    expect(
      appVolumes.filter((v) => v?.projected),
      'no projected volume in the application',
    ).toEqual([]);
  });

  it('gives crosscred the role from the generated ConfigMap and the pod identity from the downward API', (ctx) => {
    requireKustomize(ctx);
    const objects = objectsOf(k);
    const pod = podSpecOf(objects);
    const sidecar = sidecarOf(pod);
    const configMap = only(objects, 'ConfigMap') as KubeObject & { data: Record<string, string> };
    const ref = envOf(sidecar, 'AWS_ROLE_ARN')?.valueFrom?.configMapKeyRef;
    expect(ref?.name).toBe(configMap.metadata.name);
    expect(configMap.metadata.name).toMatch(/^crosscred-settings-[a-z0-9]{10}$/);
    expect(configMap.data[ref!.key]).toMatch(/^arn:aws:iam::\d{12}:role\//);
    expect(envOf(sidecar, 'POD_NAME')?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.name');
    expect(envOf(sidecar, 'POD_UID')?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.uid');
    expect(pod.serviceAccountName).toBe(only(objects, 'ServiceAccount').metadata.name);
  });
});

describe.each(Object.entries(PLATFORMS))('k8s/overlays/%s', (platform, { audience, dir, env }) => {
  it(`projects a ServiceAccount token with audience ${audience} at ${dir}/token, for crosscred only`, (ctx) => {
    requireKustomize(ctx);
    const pod = podSpecOf(objectsOf(`overlays/${platform}`));
    const sidecar = sidecarOf(pod);
    const tokenFile = envOf(sidecar, env)?.value;
    expect(tokenFile).toBe(`${dir}/token`);
    const mounted = volumeHolding(pod, sidecar, tokenFile!);
    expect(mounted?.readOnly).toBe(true);
    expect(mounted?.volume.projected?.sources).toEqual([{ serviceAccountToken: { audience, expirationSeconds: 3600, path: 'token' } }]);
    expect(appOf(pod).volumeMounts?.map((m) => m.name)).not.toContain(mounted?.volume.name);
  });

  it(`sets ${env}, and no other platform's token variable, for crosscred's detection`, (ctx) => {
    requireKustomize(ctx);
    const sidecar = sidecarOf(podSpecOf(objectsOf(`overlays/${platform}`)));
    expect(TOKEN_FILE_VARIABLES.filter((name) => envOf(sidecar, name))).toEqual([env]);
  });
});

describe('k8s/overlays/generic', () => {
  it('lets the ServiceAccount create tokens for itself only', (ctx) => {
    requireKustomize(ctx);
    const objects = objectsOf('overlays/generic');
    const serviceAccount = only(objects, 'ServiceAccount').metadata.name;
    const role = only(objects, 'Role') as KubeObject & { rules: unknown[] };
    expect(role.rules).toEqual([{ apiGroups: [''], resources: ['serviceaccounts/token'], verbs: ['create'], resourceNames: [serviceAccount] }]);
    expect(only(objects, 'RoleBinding')).toMatchObject({
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name },
      subjects: [{ kind: 'ServiceAccount', name: serviceAccount }],
    });
  });

  it('mounts an API-server token into crosscred alone and chooses the TokenRequest source', (ctx) => {
    requireKustomize(ctx);
    const pod = podSpecOf(objectsOf('overlays/generic'));
    const sidecar = sidecarOf(pod);
    expect(envOf(sidecar, 'CROSSCRED_TOKEN_SOURCE')?.value).toBe('kubernetes');
    expect(TOKEN_FILE_VARIABLES.filter((name) => envOf(sidecar, name))).toEqual([]);
    const mounted = volumeHolding(pod, sidecar, `${API_TOKEN_DIR}/token`);
    expect(mounted?.readOnly).toBe(true);
    const sources = mounted?.volume.projected?.sources ?? [];
    // No audience: a token for the API server itself, as the kubelet's automount gives.
    expect(sources.find((s) => s.serviceAccountToken)?.serviceAccountToken).toEqual({ expirationSeconds: 3607, path: 'token' });
    expect(sources.find((s) => s.configMap)?.configMap?.name).toBe('kube-root-ca.crt');
    expect(sources.find((s) => s.downwardAPI)?.downwardAPI?.items.map((i) => i.path)).toEqual(['namespace']);
    expect(appOf(pod).volumeMounts?.map((m) => m.name)).not.toContain(mounted?.volume.name);
  });
});

describe("a user's overlay, as docs/deployment.md shows it", () => {
  let dir: string | undefined;
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('sets the role and the image, and the Deployment follows the renamed ConfigMap', async (ctx) => {
    requireKustomize(ctx);
    dir = await mkdtemp(join(tmpdir(), 'crosscred-kustomize-'));
    const role = 'arn:aws:iam::123456789012:role/my-app';
    await writeFile(
      join(dir, 'kustomization.yaml'),
      [
        'resources:',
        // kustomize takes only relative paths to other kustomizations.
        `  - ${relative(dir, join(K8S, 'overlays/eks'))}`,
        'configMapGenerator:',
        '  - name: crosscred-settings',
        '    behavior: merge',
        '    literals:',
        `      - AWS_ROLE_ARN=${role}`,
        'images:',
        '  - name: crosscred',
        '    newName: registry.example.com/crosscred',
        '    newTag: 0.1.0',
        '',
      ].join('\n'),
    );
    const objects = await renderKustomize(dir);
    expect(schemaProblems(objects)).toEqual([]);
    const configMap = only(objects, 'ConfigMap') as KubeObject & { data: Record<string, string> };
    expect(configMap.data).toEqual({ AWS_ROLE_ARN: role, AWS_REGION: 'us-east-1' });
    const sidecar = sidecarOf(podSpecOf(objects));
    expect(envOf(sidecar, 'AWS_ROLE_ARN')?.valueFrom?.configMapKeyRef?.name).toBe(configMap.metadata.name);
    expect(sidecar.image).toBe('registry.example.com/crosscred:0.1.0');
  });
});

describe('the schema validation itself', () => {
  // Each fault alone: one fault must not hide another (TypeScript reports no excess property of an
  // object that fails for another reason, which the first pass catches).
  const FAULTS: [string, (sidecar: Container & Record<string, unknown>) => void, RegExp][] = [
    [
      'an unknown field',
      (c) => (c['restartPolicyy'] = 'Always'),
      /apps\/v1\/Deployment example-app: line \d+: .*restartPolicyy.* does not exist in type 'IContainer'/,
    ],
    ['a wrong type', (c) => ((c.ports![0] as { containerPort: unknown }).containerPort = 'admin'), /containerPort must be integer/],
    ['a value outside an enum', (c) => (c['imagePullPolicy'] = 'Sometimes'), /imagePullPolicy must be equal to one of the allowed values/],
    ['a missing required field', (c) => delete (c as Partial<Container>).name, /initContainers\/0 must have required property name/],
  ];
  it.for(FAULTS)('reports %s, naming the object', ([, inject, expected], ctx) => {
    requireKustomize(ctx);
    const broken = structuredClone(objectsOf('overlays/eks'));
    inject(sidecarOf(podSpecOf(broken)) as Container & Record<string, unknown>);
    expect(schemaProblems(broken).join('\n')).toMatch(expected);
  });
});
