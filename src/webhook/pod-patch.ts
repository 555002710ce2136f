import type { PodContainer, PodShape } from '../platform/kubernetes/admission-review.js';
import {
  ANNOTATIONS,
  CREDENTIAL_VARIABLES,
  credentialsUri,
  EKS_ANNOTATIONS,
  ENV,
  type InjectionMode,
  TOKEN_FILE_NAME,
  TOKEN_FILE_PATH,
  TOKEN_MOUNT_PATH,
  TOKEN_VOLUME_NAME,
} from '../protocol/pod-identity.js';
import type { InjectionSettings } from './injection-settings.js';
import { type AddOperation, add, appendAll, pointer } from './json-patch.js';
import {
  SIDECAR_AUTH_TOKEN_FILE,
  SIDECAR_CREDENTIALS_URI,
  SIDECAR_DEFAULT_UID,
  SIDECAR_NAME,
  SIDECAR_PORTS,
  SIDECAR_RUN_PATH,
  SIDECAR_RUN_VOLUME,
  sidecarContainer,
  sidecarRunVolume,
} from './sidecar-container.js';

/** How the cluster's webhook is set up (its flags). */
export interface PatchOptions {
  readonly ipFamily: 'ipv4' | 'ipv6';
  /** Injected as AWS_REGION and AWS_DEFAULT_REGION where a container sets neither. */
  readonly region?: string;
  /** The crosscred image `sidecar` mode runs. */
  readonly sidecarImage?: string;
}

/** What to answer for one pod. */
export type PodDecision =
  | { readonly kind: 'patch'; readonly operations: readonly AddOperation[]; readonly warnings: readonly string[] }
  /** Allowed as it is. */
  | { readonly kind: 'unchanged'; readonly warnings: readonly string[] }
  | { readonly kind: 'deny'; readonly message: string; readonly warnings: readonly string[] };

/** Kubernetes shows warnings to the client; a few short ones are read, many long ones are not. */
const MAX_WARNINGS = 16;
const MAX_WARNING_CHARS = 250;
/** Names from the request are not yet validated at mutating admission: they are quoted and cut. */
const MAX_SHOWN_NAME_CHARS = 63;

type ContainerField = 'initContainers' | 'containers';
export interface Selected {
  readonly field: ContainerField;
  readonly index: number;
  readonly container: PodContainer;
}

/** A name from the pod, quoted, cut and stripped of control characters. */
export function shown(name: string): string {
  const clean = name.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, '?');
  return JSON.stringify(clean.length > MAX_SHOWN_NAME_CHARS ? `${clean.slice(0, MAX_SHOWN_NAME_CHARS)}…` : clean);
}

/** Warnings as Kubernetes should get them: at most 16, each at most 250 characters. */
export function boundedWarnings(warnings: readonly string[]): string[] {
  const out = warnings.slice(0, MAX_WARNINGS).map((w) => (w.length > MAX_WARNING_CHARS ? `${w.slice(0, MAX_WARNING_CHARS - 1)}…` : w));
  if (warnings.length > MAX_WARNINGS) out[MAX_WARNINGS - 1] = `crosscred: ${warnings.length - MAX_WARNINGS + 1} more warnings not shown`;
  return out;
}

/**
 * Why the pod must not be patched again, or undefined. A pod the webhook already mutated carries
 * its annotation (or at least its volume), so a reinvocation (`reinvocationPolicy: IfNeeded`)
 * answers with no patch.
 */
export function alreadyInjected(pod: PodShape): string | undefined {
  if (pod.metadata?.annotations?.[ANNOTATIONS.injected] !== undefined) return 'annotation';
  if (pod.spec.volumes?.some((v) => v.name === TOKEN_VOLUME_NAME)) return 'volume';
  return undefined;
}

function csv(text: string | undefined): Set<string> | undefined {
  if (text === undefined) return undefined;
  return new Set(
    text
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  );
}

/** The containers the pod's annotations select: init containers first, then containers. */
export function selectContainers(pod: PodShape): Selected[] {
  const annotations = pod.metadata?.annotations ?? {};
  const only = csv(annotations[ANNOTATIONS.containers]);
  const skip = new Set([...(csv(annotations[ANNOTATIONS.skipContainers]) ?? []), ...(csv(annotations[EKS_ANNOTATIONS.skipContainers]) ?? [])]);
  const selected: Selected[] = [];
  for (const field of ['initContainers', 'containers'] as const) {
    (pod.spec[field] ?? []).forEach((container, index) => {
      if (skip.has(container.name)) return;
      if (only !== undefined && !only.has(container.name)) return;
      selected.push({ field, index, container });
    });
  }
  return selected;
}

function hasEnv(container: PodContainer, name: string): boolean {
  return container.env?.some((e) => e.name === name) ?? false;
}

/** The env entries a mode adds to one application container, leaving out optional ones it already sets. */
function containerEnv(
  container: PodContainer,
  mode: InjectionMode,
  settings: InjectionSettings,
  options: PatchOptions,
  podNameIsSessionName: boolean,
): unknown[] {
  const env: unknown[] = [];
  if (mode === 'agent') {
    env.push({ name: ENV.fullUri, value: credentialsUri(settings.roleArn, options.ipFamily) });
    // The file, never AWS_CONTAINER_AUTHORIZATION_TOKEN: Java SDK v2 prefers the fixed value over
    // the rotating file, and the kubelet rotates the token.
    env.push({ name: ENV.authorizationTokenFile, value: TOKEN_FILE_PATH });
    // Java SDK v2 accepts the IPv6 address only in IPv6 endpoint mode.
    if (options.ipFamily === 'ipv6' && !hasEnv(container, ENV.endpointMode)) env.push({ name: ENV.endpointMode, value: 'IPv6' });
  } else if (mode === 'web-identity') {
    env.push({ name: ENV.roleArn, value: settings.roleArn });
    env.push({ name: ENV.webIdentityTokenFile, value: TOKEN_FILE_PATH });
    // One session name per pod, so CloudTrail names the pod (the IRSA webhook's #112). Resolved by
    // the kubelet: at admission a ReplicaSet's pod has only a generateName.
    if (podNameIsSessionName && !hasEnv(container, ENV.roleSessionName))
      env.push({ name: ENV.roleSessionName, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } });
  } else {
    env.push({ name: ENV.fullUri, value: SIDECAR_CREDENTIALS_URI });
    env.push({ name: ENV.authorizationTokenFile, value: SIDECAR_AUTH_TOKEN_FILE });
  }
  if (options.region !== undefined) {
    for (const name of ['AWS_REGION', 'AWS_DEFAULT_REGION']) if (!hasEnv(container, name)) env.push({ name, value: options.region });
  }
  return env;
}

/**
 * Whether the pod's name will do as an STS session name (2–64 of `[\w+=,.@-]`; a pod name is a DNS
 * subdomain, so only its length can be wrong). A name the API server generates is at most 63
 * characters (a generateName cut to 58, plus 5) and at least 5, so only a name given in full can
 * be out of bounds; STS would refuse the SDK's every call with it.
 */
export function podNameFitsSessionName(pod: PodShape): boolean {
  const name = pod.metadata?.name;
  if (name == null || name === '') return true;
  return name.length >= 2 && name.length <= 64;
}

/** The uid a container runs as, when the pod says; undefined means the image's own user. */
export function uidOf(pod: PodShape, container: PodContainer): number | undefined {
  return container.securityContext?.runAsUser ?? pod.spec.securityContext?.runAsUser ?? undefined;
}

/**
 * The patch that gives `pod` the credentials `settings` name, as `add` operations only (see
 * json-patch.ts), or why the pod is left alone or refused. Pure: the same pod and settings give
 * the same answer.
 */
export function planPodPatch(pod: PodShape, settings: InjectionSettings, options: PatchOptions): PodDecision {
  const decision = planAwsPatch(pod, settings, options);
  if (decision.kind !== 'patch') return decision;
  return { ...decision, operations: [...decision.operations, injectedAnnotation(pod, settings.mode)] };
}

/**
 * The `add` operation that records what was injected (`crosscred.io/injected`), creating the
 * annotations, or metadata, when the pod has none.
 */
export function injectedAnnotation(pod: PodShape, injected: string): AddOperation {
  const annotations = pod.metadata?.annotations;
  if (annotations != null) return add(pointer('metadata', 'annotations', ANNOTATIONS.injected), injected);
  if (pod.metadata != null) return add(pointer('metadata', 'annotations'), { [ANNOTATIONS.injected]: injected });
  return add(pointer('metadata'), { annotations: { [ANNOTATIONS.injected]: injected } });
}

/** planPodPatch without the annotation, so that other clouds' operations can follow before it. */
export function planAwsPatch(pod: PodShape, settings: InjectionSettings, options: PatchOptions): PodDecision {
  const warnings: string[] = settings.clamped ? [`crosscred: ${settings.clamped}`] : [];
  const mode = settings.mode;
  const unchanged = (why: string): PodDecision => ({ kind: 'unchanged', warnings: boundedWarnings([...warnings, why]) });

  if (mode === 'sidecar' && pod.spec.hostNetwork === true) {
    // Every hostNetwork pod of a node shares the node's loopback: two sidecars would fight over
    // 127.0.0.1:8170, and any process on the node could read the credentials there. Agent mode
    // serves such pods from the node agent instead.
    const message = `crosscred: sidecar mode cannot serve a hostNetwork pod (its loopback is the node's); use agent mode (${ANNOTATIONS.mode}: agent) for it`;
    return { kind: 'deny', message, warnings: boundedWarnings([...warnings, message]) };
  }
  if (mode === 'sidecar' && !options.sidecarImage) {
    const message = 'crosscred: sidecar mode needs the webhook to run with --sidecar-image';
    return { kind: 'deny', message, warnings: boundedWarnings(warnings) };
  }

  if (mode === 'sidecar') {
    // The pod's containers share one network namespace: a port crosscred needs that a container
    // already declares would stop one of the two from starting.
    const all = [...(pod.spec.initContainers ?? []), ...pod.spec.containers];
    const taken = all.find((c) => c.ports?.some((p) => (SIDECAR_PORTS as readonly number[]).includes(p.containerPort ?? -1)));
    if (taken) {
      const message = `crosscred: sidecar mode needs ports ${SIDECAR_PORTS.join(' and ')}, and container ${shown(taken.name)} declares one of them`;
      return { kind: 'deny', message, warnings: boundedWarnings(warnings) };
    }
  }

  const selected = selectContainers(pod);
  if (selected.length === 0) return unchanged('crosscred: no container selected (crosscred.io/containers, skip-containers); pod left unchanged');

  // A container that already chooses its credentials is not ours to change: beside what it sets,
  // ours would be ignored by the SDK, or would silently change what it uses. The whole pod is left
  // alone so that its containers do not end up with different identities.
  const conflicts: string[] = [];
  for (const { container } of selected) {
    for (const e of container.env ?? [])
      if (CREDENTIAL_VARIABLES.includes(e.name)) conflicts.push(`crosscred: container ${shown(container.name)} already sets ${e.name}; pod left unchanged`);
  }
  if (conflicts.length > 0) return { kind: 'unchanged', warnings: boundedWarnings([...warnings, ...conflicts]) };

  const ourPaths = mode === 'sidecar' ? [SIDECAR_RUN_PATH] : [TOKEN_MOUNT_PATH];
  for (const { container } of selected) {
    const clash = container.volumeMounts?.find((m) => ourPaths.includes(m.mountPath ?? ''));
    if (clash) return unchanged(`crosscred: container ${shown(container.name)} already mounts ${clash.mountPath}; pod left unchanged`);
  }
  if (mode === 'sidecar') {
    if (pod.spec.volumes?.some((v) => v.name === SIDECAR_RUN_VOLUME))
      return unchanged(`crosscred: the pod already has a volume named ${SIDECAR_RUN_VOLUME}; pod left unchanged`);
    if ([...(pod.spec.initContainers ?? []), ...pod.spec.containers].some((c) => c.name === SIDECAR_NAME))
      return unchanged(`crosscred: the pod already has a container named ${SIDECAR_NAME}; pod left unchanged`);
  }

  for (const { container } of selected) {
    if ((container.envFrom?.length ?? 0) > 0)
      warnings.push(
        `crosscred: container ${shown(container.name)} uses envFrom, which the webhook cannot see; a credential variable there would take precedence`,
      );
  }

  const uids = new Set(selected.map(({ container }) => uidOf(pod, container)));
  if (mode !== 'sidecar' && uids.size > 1 && pod.spec.securityContext?.fsGroup == null)
    warnings.push('crosscred: containers run as different users and the pod sets no fsGroup; the token file may be unreadable by some of them');

  const podNameIsSessionName = mode !== 'web-identity' || podNameFitsSessionName(pod);
  if (!podNameIsSessionName)
    warnings.push(`crosscred: the pod name is not 2 to 64 characters, which STS requires of a session name; AWS_ROLE_SESSION_NAME is left to the SDK`);

  const operations: AddOperation[] = [];
  // Containers first, at their original indexes; the sidecar is inserted at index 0 last, after
  // which the indexes above would have shifted.
  for (const { field, index, container } of selected) {
    const base = ['spec', field, index] as const;
    const mount =
      mode === 'sidecar'
        ? { name: SIDECAR_RUN_VOLUME, mountPath: SIDECAR_RUN_PATH, readOnly: true }
        : { name: TOKEN_VOLUME_NAME, mountPath: TOKEN_MOUNT_PATH, readOnly: true };
    operations.push(...appendAll(pointer(...base, 'volumeMounts'), container.volumeMounts != null, [mount]));
    operations.push(...appendAll(pointer(...base, 'env'), container.env != null, containerEnv(container, mode, settings, options, podNameIsSessionName)));
  }

  const tokenVolume = {
    name: TOKEN_VOLUME_NAME,
    projected: {
      sources: [{ serviceAccountToken: { audience: settings.audience, expirationSeconds: settings.expirationSeconds, path: TOKEN_FILE_NAME } }],
    },
  };
  const volumes = mode === 'sidecar' ? [tokenVolume, sidecarRunVolume()] : [tokenVolume];
  operations.push(...appendAll(pointer('spec', 'volumes'), pod.spec.volumes != null, volumes));

  if (mode === 'sidecar') {
    // The token file and the endpoint secret are both 0600: crosscred must run as the
    // application's uid (k8s/base/deployment.yaml), which the pod must therefore name.
    const explicit = [...uids];
    let uid = SIDECAR_DEFAULT_UID;
    if (explicit.length === 1 && explicit[0] !== undefined && explicit[0] !== 0) uid = explicit[0];
    else
      warnings.push(
        `crosscred: the application containers do not all run as one non-root runAsUser; crosscred runs as ${uid}, and the application must too to read its endpoint secret`,
      );
    const sidecar = sidecarContainer({ image: options.sidecarImage!, roleArn: settings.roleArn, uid, ...(options.region ? { region: options.region } : {}) });
    operations.push(pod.spec.initContainers != null ? add(pointer('spec', 'initContainers', 0), sidecar) : add(pointer('spec', 'initContainers'), [sidecar]));
  }

  return { kind: 'patch', operations, warnings: boundedWarnings(warnings) };
}
