import { z } from 'zod';

/**
 * The `admission.k8s.io/v1` AdmissionReview envelope and the parts of a Pod a mutating webhook
 * reads. kubernetes-models has no AdmissionReview type (it is not a REST resource, so it is absent
 * from the OpenAPI those models come from), hence these schemas.
 *
 * Every object is loose: the webhook reads a few fields and must never drop or judge the others
 * (a newer Pod API adds fields; the IRSA webhook's #208 came from rebuilding objects from a
 * compiled type that did not know `restartPolicy` on init containers). Arrays and strings the
 * webhook walks are bounded, so a hostile review costs a bounded amount of work and gets a 400.
 */

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';
export const ADMISSION_KIND = 'AdmissionReview';

/** Far above any real pod (the API server's own limit is the 1.5 MiB of an etcd object), bounds the walk. */
export const MAX_CONTAINERS = 256;
export const MAX_LIST_ITEMS = 4_096;
/** Kubernetes names are at most 253 characters; annotation values at most 256 KiB in all. */
const MAX_NAME_CHARS = 253;
const MAX_VALUE_CHARS = 256 * 1024;

const name = z.string().max(MAX_NAME_CHARS);
const loose = z.looseObject({});

const envVar = z.looseObject({ name: z.string().max(MAX_VALUE_CHARS) });
const volumeMount = z.looseObject({ name: z.string().max(MAX_VALUE_CHARS), mountPath: z.string().max(MAX_VALUE_CHARS).nullish() });
const securityContext = z.looseObject({ runAsUser: z.number().int().nullish() });

export const containerSchema = z.looseObject({
  name,
  env: z.array(envVar).max(MAX_LIST_ITEMS).nullish(),
  envFrom: z.array(loose).max(MAX_LIST_ITEMS).nullish(),
  volumeMounts: z.array(volumeMount).max(MAX_LIST_ITEMS).nullish(),
  securityContext: securityContext.nullish(),
  restartPolicy: z.string().max(64).nullish(),
  ports: z
    .array(z.looseObject({ containerPort: z.number().int().nullish() }))
    .max(MAX_LIST_ITEMS)
    .nullish(),
});
export type PodContainer = z.infer<typeof containerSchema>;

const stringMap = z.record(z.string().max(MAX_VALUE_CHARS), z.string().max(MAX_VALUE_CHARS));

export const podSchema = z.looseObject({
  apiVersion: z.string().max(64).nullish(),
  kind: z.string().max(64).nullish(),
  metadata: z
    .looseObject({
      name: name.nullish(),
      generateName: name.nullish(),
      namespace: name.nullish(),
      annotations: stringMap.nullish(),
      labels: stringMap.nullish(),
    })
    .nullish(),
  spec: z.looseObject({
    serviceAccountName: name.nullish(),
    /** Deprecated alias of serviceAccountName, still honoured by the API server. */
    serviceAccount: name.nullish(),
    hostNetwork: z.boolean().nullish(),
    containers: z.array(containerSchema).max(MAX_CONTAINERS),
    initContainers: z.array(containerSchema).max(MAX_CONTAINERS).nullish(),
    volumes: z
      .array(z.looseObject({ name: z.string().max(MAX_VALUE_CHARS) }))
      .max(MAX_LIST_ITEMS)
      .nullish(),
    securityContext: z.looseObject({ runAsUser: z.number().int().nullish(), fsGroup: z.number().int().nullish() }).nullish(),
  }),
});
export type PodShape = z.infer<typeof podSchema>;

const groupVersionKind = z.looseObject({ group: z.string().max(MAX_NAME_CHARS), version: z.string().max(64), kind: z.string().max(MAX_NAME_CHARS) });

export const admissionReviewSchema = z.looseObject({
  apiVersion: z.literal(ADMISSION_API_VERSION),
  kind: z.literal(ADMISSION_KIND),
  request: z.looseObject({
    /** Echoed in the answer; the API server sends a UUID. */
    uid: z.string().min(1).max(128),
    kind: groupVersionKind,
    operation: z.string().max(32),
    namespace: name.nullish(),
    name: name.nullish(),
    subResource: z.string().max(MAX_NAME_CHARS).nullish(),
    dryRun: z.boolean().nullish(),
    /** Read as a Pod only once kind and operation say it is one being created. */
    object: z.unknown(),
  }),
});
export type AdmissionReview = z.infer<typeof admissionReviewSchema>;

/** The answer's `response`: allowed or not, with an optional JSON Patch (base64) and warnings. */
export interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly patchType?: 'JSONPatch';
  /** Base64 of the JSON Patch array. */
  readonly patch?: string;
  readonly warnings?: readonly string[];
  readonly status?: { readonly code: number; readonly message: string };
}

/** The whole AdmissionReview answer, echoing the request's apiVersion and kind. */
export function admissionAnswer(response: AdmissionResponse): { apiVersion: string; kind: string; response: AdmissionResponse } {
  return { apiVersion: ADMISSION_API_VERSION, kind: ADMISSION_KIND, response };
}

/** Why a value is not what the schema wants, in one short line naming the field (never its value). */
export function describeSchemaProblem(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid';
  const where = issue.path.length > 0 ? issue.path.map(String).join('.') : '(top level)';
  return `${where}: ${issue.message}`.slice(0, 300);
}

/**
 * Bounds on the shape of a parsed JSON value as a whole, checked without recursion (a deeply
 * nested value cannot overflow the stack here): nesting depth and the number of values. A real
 * AdmissionReview nests about 15 deep; the bounds only stop what no API server sends.
 */
export function jsonShapeProblem(value: unknown, limits: { maxDepth: number; maxValues: number }): string | undefined {
  const stack: Array<{ v: unknown; depth: number }> = [{ v: value, depth: 0 }];
  let count = 0;
  while (stack.length > 0) {
    const { v, depth } = stack.pop()!;
    if (++count > limits.maxValues) return `the review holds more than ${limits.maxValues} JSON values`;
    if (v === null || typeof v !== 'object') continue;
    if (depth >= limits.maxDepth) return `the review nests deeper than ${limits.maxDepth} levels`;
    const children = Array.isArray(v) ? v : Object.values(v);
    for (const child of children) stack.push({ v: child, depth: depth + 1 });
  }
  return undefined;
}
