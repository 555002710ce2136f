import type { Logger } from 'pino';
import { type AdmissionResponse, type AdmissionReview, describeSchemaProblem, podSchema } from '../platform/kubernetes/admission-review.js';
import { KubernetesApiError, type ServiceAccountLookup } from '../platform/kubernetes/service-accounts.js';
import type { InjectionMode } from '../protocol/pod-identity.js';
import { injectionSettings } from './injection-settings.js';
import { planPodForClouds } from './other-cloud-patch.js';
import { otherCloudRoles } from './other-cloud-settings.js';
import { alreadyInjected, boundedWarnings, type PatchOptions, planPodPatch } from './pod-patch.js';
import type { AdmissionResult } from './webhook-metrics.js';

/** The port the admission logic reads ServiceAccounts through (the API client, or a test's fake). */
export interface ServiceAccountSource {
  get(namespace: string, name: string): Promise<ServiceAccountLookup>;
}

export interface AdmissionContext {
  readonly serviceAccounts: ServiceAccountSource;
  readonly defaultMode: InjectionMode;
  readonly patch: PatchOptions;
  readonly log: Logger;
  readonly onLookup?: (source: 'cache' | 'live') => void;
}

export type AdmissionOutcome =
  | { readonly kind: 'answer'; readonly response: AdmissionResponse; readonly result: AdmissionResult }
  /** The review's Pod is not one (a 400, as for a malformed envelope). */
  | { readonly kind: 'invalid'; readonly problem: string };

/** The HTTP-like code Kubernetes shows with a denial (`Error from server (Forbidden): admission webhook … denied the request: …`). */
const DENIED_CODE = 403;
/** The API could not answer: the pod is retried by its controller, never created without credentials. */
const UNAVAILABLE_CODE = 503;

/**
 * Answers one AdmissionReview: not a Pod CREATE → allowed untouched; a pod already injected →
 * allowed, no patch (reinvocation); else the ServiceAccount's annotations decide. With
 * `failurePolicy: Fail`, a denial because the API could not be read makes the pod's controller
 * retry, instead of the pod starting without the credentials it opted into and its SDK silently
 * falling back to the node's role (EKS Pod Identity's #153).
 */
export async function admit(review: AdmissionReview, context: AdmissionContext): Promise<AdmissionOutcome> {
  const request = review.request;
  const uid = request.uid;
  const allowed = (result: AdmissionResult, warnings: readonly string[] = []): AdmissionOutcome => ({
    kind: 'answer',
    result,
    response: { uid, allowed: true, ...(warnings.length > 0 ? { warnings: boundedWarnings(warnings) } : {}) },
  });
  const denied = (result: AdmissionResult, code: number, message: string, warnings: readonly string[] = []): AdmissionOutcome => ({
    kind: 'answer',
    result,
    response: { uid, allowed: false, status: { code, message }, ...(warnings.length > 0 ? { warnings: boundedWarnings(warnings) } : {}) },
  });

  const kind = request.kind;
  if (kind.group !== '' || kind.version !== 'v1' || kind.kind !== 'Pod' || request.operation !== 'CREATE' || request.subResource) return allowed('ignored');

  const parsed = podSchema.safeParse(request.object);
  if (!parsed.success) return { kind: 'invalid', problem: `request.object is not a Pod: ${describeSchemaProblem(parsed.error)}` };
  const pod = parsed.data;
  const injected = alreadyInjected(pod);
  // Our annotation: a reinvocation, said nothing about. Our volume without it: someone else's, or
  // a hand-made copy; either way not ours to add to.
  if (injected === 'annotation') return allowed('unchanged');
  if (injected === 'volume') return allowed('unchanged', ['crosscred: the pod already has a volume named crosscred-token; pod left unchanged']);

  const namespace = request.namespace || pod.metadata?.namespace;
  if (!namespace) return { kind: 'invalid', problem: 'request.namespace is missing' };
  const serviceAccountName = pod.spec.serviceAccountName || pod.spec.serviceAccount || 'default';
  const podName = pod.metadata?.name || `${pod.metadata?.generateName ?? ''}*`;
  const log = context.log.child({ uid, namespace, pod: podName.slice(0, 253), serviceAccount: serviceAccountName });

  let lookup: ServiceAccountLookup;
  try {
    lookup = await context.serviceAccounts.get(namespace, serviceAccountName);
  } catch (err) {
    const why = err instanceof KubernetesApiError ? err.message : 'unexpected error';
    log.warn({ reason: why }, 'ServiceAccount lookup failed; pod denied so that it is retried');
    return denied(
      'unavailable',
      UNAVAILABLE_CODE,
      `crosscred: cannot read ServiceAccount ${namespace}/${serviceAccountName}, so the pod is refused to be retried: ${why}`,
    );
  }
  context.onLookup?.(lookup.source);
  if (!lookup.found) {
    log.info('ServiceAccount not found; pod denied');
    return denied(
      'denied',
      DENIED_CODE,
      `crosscred: ServiceAccount ${namespace}/${serviceAccountName} does not exist; create it (with its crosscred.io/role-arn annotation) before the pod`,
    );
  }

  const read = injectionSettings(lookup.account, context.defaultMode);
  const others = otherCloudRoles(lookup.account);
  if (read.kind === 'none' && others.kind === 'none') {
    return allowed('unchanged', [
      `crosscred: ServiceAccount ${namespace}/${serviceAccountName} has no crosscred.io/role-arn or eks.amazonaws.com/role-arn annotation; pod left unchanged`,
    ]);
  }
  for (const unusable of [read, others]) {
    if (unusable.kind !== 'problem') continue;
    log.info({ reason: unusable.problem }, 'ServiceAccount annotation unusable; pod denied');
    return denied('denied', DENIED_CODE, `crosscred: ${unusable.problem}`);
  }

  // A ServiceAccount with an AWS role only is planned exactly as before the other clouds came.
  const aws = read.kind === 'settings' ? read.settings : undefined;
  const decision =
    others.kind === 'none' && aws
      ? planPodPatch(pod, aws, context.patch)
      : planPodForClouds(pod, { ...(aws ? { aws } : {}), ...(others.kind === 'roles' ? { others: others.roles } : {}) }, context.patch);
  const roles = {
    ...(aws ? { mode: aws.mode, role: aws.roleArn } : {}),
    ...(others.kind === 'roles' && others.roles.alibaba ? { alibabaRole: others.roles.alibaba.roleArn } : {}),
    ...(others.kind === 'roles' && others.roles.tencent ? { tencentRole: others.roles.tencent.roleArn } : {}),
  };
  if (decision.kind === 'deny') {
    log.info({ mode: aws?.mode }, 'pod denied');
    return denied('denied', DENIED_CODE, decision.message, decision.warnings);
  }
  if (decision.kind === 'unchanged') {
    log.info({ mode: aws?.mode, warnings: decision.warnings }, 'pod left unchanged');
    return allowed('unchanged', decision.warnings);
  }
  log.info({ ...roles, operations: decision.operations.length }, 'pod mutated');
  return {
    kind: 'answer',
    result: 'mutated',
    response: {
      uid,
      allowed: true,
      patchType: 'JSONPatch',
      patch: Buffer.from(JSON.stringify(decision.operations)).toString('base64'),
      ...(decision.warnings.length > 0 ? { warnings: decision.warnings } : {}),
    },
  };
}
