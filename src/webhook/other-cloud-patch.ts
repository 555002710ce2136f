import { z } from 'zod';
import { MAX_LIST_ITEMS, type PodContainer, type PodShape } from '../platform/kubernetes/admission-review.js';
import { ALIBABA_CREDENTIAL_VARIABLES, DEFAULT_TOKEN_EXPIRATION_SECONDS, TENCENT_CREDENTIAL_VARIABLES, TOKEN_FILE_NAME } from '../protocol/pod-identity.js';
import type { InjectionSettings } from './injection-settings.js';
import { type AddOperation, add, appendAll, applied, pointer } from './json-patch.js';
import type { AlibabaRole, OtherCloudRoles, TencentRole } from './other-cloud-settings.js';
import { boundedWarnings, injectedAnnotation, type PatchOptions, type PodDecision, planAwsPatch, selectContainers, shown, uidOf } from './pod-patch.js';
import {
  ALIBABA_CREDENTIALS_URI,
  ALIBABA_SIDECAR,
  alibabaSidecarContainer,
  type OtherCloudSidecar,
  SIDECAR_DEFAULT_UID,
  TENCENT_METADATA_HOST,
  TENCENT_SIDECAR,
  tencentSidecarContainer,
} from './sidecar-container.js';

/**
 * The whole patch for a pod whose ServiceAccount names roles in up to three clouds. Each cloud is
 * planned on its own against the pod as the operations before it leave it (JSON Patch applies in
 * order), so each may be injected, left alone with a warning, or deny the pod; one denial denies
 * the pod. `crosscred.io/injected` lists what was injected, so a reinvocation adds nothing.
 */
export function planPodForClouds(pod: PodShape, roles: { aws?: InjectionSettings; others?: OtherCloudRoles }, options: PatchOptions): PodDecision {
  const warnings: string[] = [];
  const operations: AddOperation[] = [];
  const injected: string[] = [];
  let current = pod;
  const take = (cloud: string, decision: PodDecision): PodDecision | undefined => {
    if (decision.kind === 'deny') return { ...decision, warnings: boundedWarnings([...warnings, ...decision.warnings]) };
    warnings.push(...decision.warnings);
    if (decision.kind === 'patch') {
      operations.push(...decision.operations);
      injected.push(cloud);
      current = applied(current, decision.operations);
    }
    return undefined;
  };

  if (roles.aws) {
    const denied = take(roles.aws.mode, planAwsPatch(pod, roles.aws, options));
    if (denied) return denied;
  }
  // The application containers as the pod's annotations select them, by name (names are unique in
  // a pod): never a sidecar added above.
  const applications = new Set(selectContainers(pod).map(({ container }) => container.name));
  if (roles.others?.alibaba) {
    const denied = take('alibaba', planAlibaba(pod, current, applications, roles.others.alibaba, options));
    if (denied) return denied;
  }
  if (roles.others?.tencent) {
    const denied = take('tencent', planTencent(pod, current, applications, roles.others.tencent, options));
    if (denied) return denied;
  }

  const unique = [...new Set(warnings)];
  if (injected.length === 0) return { kind: 'unchanged', warnings: boundedWarnings(unique) };
  return { kind: 'patch', operations: [...operations, injectedAnnotation(pod, injected.join(','))], warnings: boundedWarnings(unique) };
}

const CLOUD_NAMES = { alibaba: 'Alibaba Cloud', tencent: 'Tencent Cloud' } as const;

function deny(message: string): PodDecision {
  return { kind: 'deny', message, warnings: [] };
}

/**
 * Why a sidecar for `sidecar.cloud` cannot be added to the pod (a denial), why it is left out (a
 * warning), or undefined. Checked against the pod as it came: the operations before add no port
 * or name of these.
 */
function sidecarRefusal(original: PodShape, sidecar: OtherCloudSidecar, options: PatchOptions): PodDecision | undefined {
  const cloud = CLOUD_NAMES[sidecar.cloud];
  if (!options.sidecarImage) return deny(`crosscred: a ${cloud} role is served by a sidecar in the pod, which needs the webhook to run with --sidecar-image`);
  if (original.spec.hostNetwork === true)
    // A hostNetwork pod's loopback is the node's: any process on the node could read the
    // credentials there, and two such pods would fight over the port. The kubelet also refuses net.*
    // sysctls to it: they would change the node's own network namespace.
    return deny(
      `crosscred: a ${cloud} role is served by a sidecar on the pod's loopback, which a hostNetwork pod shares with the node; run the pod without hostNetwork`,
    );
  const all = [...(original.spec.initContainers ?? []), ...original.spec.containers];
  const taken = all.find((c) => c.ports?.some((p) => (sidecar.ports as readonly number[]).includes(p.containerPort ?? -1)));
  if (taken) return deny(`crosscred: the ${cloud} sidecar needs ports ${sidecar.ports.join(' and ')}, and container ${shown(taken.name)} declares one of them`);
  if (all.some((c) => c.name === sidecar.name))
    return { kind: 'unchanged', warnings: [`crosscred: the pod already has a container named ${sidecar.name}; its ${cloud} role is not injected`] };
  if (original.spec.volumes?.some((v) => v.name === sidecar.tokenVolume))
    return { kind: 'unchanged', warnings: [`crosscred: the pod already has a volume named ${sidecar.tokenVolume}; its ${cloud} role is not injected`] };
  return undefined;
}

/** Warnings for containers that already choose their own credentials of a cloud, through `variables`. */
function credentialConflicts(containers: readonly PodContainer[], variables: readonly string[], cloud: string): string[] {
  return containers.flatMap((c) =>
    (c.env ?? [])
      .filter((e) => variables.includes(e.name))
      .map((e) => `crosscred: container ${shown(c.name)} already sets ${e.name}; its ${cloud} role is not injected`),
  );
}

/**
 * The sidecar's uid, as for the AWS sidecar: the application's when all selected containers name
 * one non-root uid (the kubelet then gives that uid the projected token file), else the image's own.
 */
function sidecarUid(original: PodShape, applications: ReadonlySet<string>, sidecar: OtherCloudSidecar, warnings: string[]): number {
  const all = [...(original.spec.initContainers ?? []), ...original.spec.containers];
  const uids = [...new Set(all.filter((c) => applications.has(c.name)).map((c) => uidOf(original, c)))];
  if (uids.length === 1 && uids[0] !== undefined && uids[0] !== 0) return uids[0];
  if (original.spec.securityContext?.fsGroup == null)
    warnings.push(
      `crosscred: the application containers do not all run as one non-root runAsUser and the pod sets no fsGroup; ${sidecar.name} runs as ${SIDECAR_DEFAULT_UID} and may not read its token`,
    );
  return SIDECAR_DEFAULT_UID;
}

function tokenVolume(sidecar: OtherCloudSidecar, audience: string): Record<string, unknown> {
  return {
    name: sidecar.tokenVolume,
    projected: { sources: [{ serviceAccountToken: { audience, expirationSeconds: DEFAULT_TOKEN_EXPIRATION_SECONDS, path: TOKEN_FILE_NAME } }] },
  };
}

/** The sidecar first among the init containers, so it is up before every other one and the application. */
function insertSidecar(current: PodShape, sidecar: Record<string, unknown>): AddOperation {
  return current.spec.initContainers != null ? add(pointer('spec', 'initContainers', 0), sidecar) : add(pointer('spec', 'initContainers'), [sidecar]);
}

const ECS_METADATA_DISABLED = 'ALIBABA_CLOUD_ECS_METADATA_DISABLED';

/**
 * Alibaba: the selected containers get ALIBABA_CLOUD_CREDENTIALS_URI, the URI provider of every
 * Alibaba credentials SDK, pointed at the sidecar on the pod's loopback; and
 * ALIBABA_CLOUD_ECS_METADATA_DISABLED=true, since the default chain asks an ECS node's instance
 * role (100.100.100.200) before the URI.
 */
function planAlibaba(original: PodShape, current: PodShape, applications: ReadonlySet<string>, role: AlibabaRole, options: PatchOptions): PodDecision {
  const refusal = sidecarRefusal(original, ALIBABA_SIDECAR, options);
  if (refusal) return refusal;
  const selected = (['initContainers', 'containers'] as const).flatMap((field) =>
    (current.spec[field] ?? []).flatMap((container, index) => (applications.has(container.name) ? [{ field, index, container }] : [])),
  );
  if (selected.length === 0)
    return { kind: 'unchanged', warnings: ['crosscred: no container selected (crosscred.io/containers, skip-containers); pod left unchanged'] };
  const conflicts = credentialConflicts(
    selected.map((s) => s.container),
    ALIBABA_CREDENTIAL_VARIABLES,
    CLOUD_NAMES.alibaba,
  );
  if (conflicts.length > 0) return { kind: 'unchanged', warnings: conflicts };

  const warnings: string[] = [];
  const operations: AddOperation[] = [];
  for (const { field, index, container } of selected) {
    if ((container.envFrom?.length ?? 0) > 0)
      warnings.push(
        `crosscred: container ${shown(container.name)} uses envFrom, which the webhook cannot see; a credential variable there would take precedence`,
      );
    const env: unknown[] = [{ name: 'ALIBABA_CLOUD_CREDENTIALS_URI', value: ALIBABA_CREDENTIALS_URI }];
    const disabled = container.env?.find((e) => e.name === ECS_METADATA_DISABLED);
    if (disabled === undefined) env.push({ name: ECS_METADATA_DISABLED, value: 'true' });
    else if ((disabled as { value?: unknown }).value !== 'true')
      warnings.push(
        `crosscred: container ${shown(container.name)} sets ${ECS_METADATA_DISABLED} itself; on an ECS node its instance role may come before crosscred`,
      );
    operations.push(...appendAll(pointer('spec', field, index, 'env'), container.env != null, env));
  }
  operations.push(...appendAll(pointer('spec', 'volumes'), current.spec.volumes != null, [tokenVolume(ALIBABA_SIDECAR, role.audience)]));
  const uid = sidecarUid(original, applications, ALIBABA_SIDECAR, warnings);
  operations.push(
    insertSidecar(
      current,
      alibabaSidecarContainer({
        image: options.sidecarImage!,
        uid,
        roleArn: role.roleArn,
        oidcProviderArn: role.oidcProviderArn,
        ...(role.stsRegion ? { stsRegion: role.stsRegion } : {}),
      }),
    ),
  );
  return { kind: 'patch', operations, warnings };
}

const hostAliasesSchema = z
  .array(z.looseObject({ ip: z.string().max(64).nullish(), hostnames: z.array(z.string().max(253)).max(MAX_LIST_ITEMS).nullish() }))
  .max(MAX_LIST_ITEMS)
  .nullish();
const sysctlsSchema = z
  .array(z.looseObject({ name: z.string().max(253), value: z.string().max(4096) }))
  .max(MAX_LIST_ITEMS)
  .nullish();

/**
 * The sysctl that lets the sidecar, non-root and without capabilities, bind port 80 in the pod's
 * own network namespace. One of the kubelet's safe sysctls (pkg/kubelet/sysctl/safe_sysctls.go),
 * allowed in every pod since Kubernetes 1.22 and by the baseline Pod Security Standard.
 */
const UNPRIVILEGED_PORT_START = 'net.ipv4.ip_unprivileged_port_start';

/**
 * Tencent: no variable points the SDKs elsewhere (the Go default chain has no OIDC step), so the
 * pod's hosts file maps metadata.tencentyun.com to its loopback, where the sidecar serves CVM
 * metadata. That is pod-wide: every container's Tencent SDK asks it, whatever the selection.
 */
function planTencent(original: PodShape, current: PodShape, applications: ReadonlySet<string>, role: TencentRole, options: PatchOptions): PodDecision {
  const refusal = sidecarRefusal(original, TENCENT_SIDECAR, options);
  if (refusal) return refusal;
  const spec = current.spec as Record<string, unknown>;
  const aliases = hostAliasesSchema.safeParse(spec['hostAliases']);
  if (!aliases.success) return deny('crosscred: spec.hostAliases is not a list of host aliases');
  if (aliases.data?.some((a) => a.hostnames?.some((h) => h.toLowerCase() === TENCENT_METADATA_HOST)))
    return deny(`crosscred: a Tencent Cloud role needs ${TENCENT_METADATA_HOST} mapped to the pod's sidecar, and spec.hostAliases already maps it`);
  const securityContext = current.spec.securityContext as Record<string, unknown> | null | undefined;
  const sysctls = sysctlsSchema.safeParse(securityContext?.['sysctls']);
  if (!sysctls.success) return deny('crosscred: spec.securityContext.sysctls is not a list of sysctls');
  const portStart = sysctls.data?.find((s) => s.name === UNPRIVILEGED_PORT_START);
  if (portStart !== undefined && portStart.value !== '0')
    return deny(
      `crosscred: the Tencent Cloud sidecar binds port 80 unprivileged, which needs ${UNPRIVILEGED_PORT_START}=0, and the pod sets it to another value`,
    );

  const all = [...(original.spec.initContainers ?? []), ...original.spec.containers];
  const conflicts = credentialConflicts(all, TENCENT_CREDENTIAL_VARIABLES, CLOUD_NAMES.tencent);
  if (conflicts.length > 0) return { kind: 'unchanged', warnings: conflicts };

  const warnings: string[] = [];
  const operations: AddOperation[] = [];
  operations.push(...appendAll(pointer('spec', 'volumes'), current.spec.volumes != null, [tokenVolume(TENCENT_SIDECAR, role.audience)]));
  const uid = sidecarUid(original, applications, TENCENT_SIDECAR, warnings);
  operations.push(
    insertSidecar(
      current,
      tencentSidecarContainer({ image: options.sidecarImage!, uid, roleArn: role.roleArn, providerId: role.providerId, region: role.region }),
    ),
  );
  operations.push(...appendAll(pointer('spec', 'hostAliases'), aliases.data != null, [{ ip: '127.0.0.1', hostnames: [TENCENT_METADATA_HOST] }]));
  if (portStart === undefined) {
    const sysctl = { name: UNPRIVILEGED_PORT_START, value: '0' };
    if (securityContext == null) operations.push(add(pointer('spec', 'securityContext'), { sysctls: [sysctl] }));
    else operations.push(...appendAll(pointer('spec', 'securityContext', 'sysctls'), sysctls.data != null, [sysctl]));
  }
  return { kind: 'patch', operations, warnings };
}
