import { request } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import fastJsonPatch from 'fast-json-patch';
import { Pod } from 'kubernetes-models/v1/Pod';

/**
 * Realistic pods as the API server hands them to a mutating webhook: after defaulting and after
 * the built-in ServiceAccount admission plugin (hence the kube-api-access volume), before any
 * name is generated for a ReplicaSet's pod. Each call returns a fresh copy.
 */

export type Json = Record<string, unknown>;

/** A Deployment's pod: a plain init container, a native sidecar with probes, an app with env, mounts, probes and a security context. */
export function deploymentPod(overrides: { annotations?: Record<string, string>; serviceAccountName?: string; hostNetwork?: boolean } = {}): Json {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: 'payments-api-7d9c8b6f5-',
      namespace: 'payments',
      labels: { app: 'payments-api', 'pod-template-hash': '7d9c8b6f5', 'crosscred.io/inject': 'true' },
      annotations: { 'kubectl.kubernetes.io/restartedAt': '2026-12-01T10:00:00Z', ...overrides.annotations },
      ownerReferences: [
        {
          apiVersion: 'apps/v1',
          kind: 'ReplicaSet',
          name: 'payments-api-7d9c8b6f5',
          uid: '0f3c7f1e-7d1a-4c7e-9a51-5b0b6f0a1c11',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      serviceAccountName: overrides.serviceAccountName ?? 'payments-api',
      serviceAccount: overrides.serviceAccountName ?? 'payments-api',
      ...(overrides.hostNetwork ? { hostNetwork: true, dnsPolicy: 'ClusterFirstWithHostNet' } : { dnsPolicy: 'ClusterFirst' }),
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      schedulerName: 'default-scheduler',
      enableServiceLinks: true,
      priority: 0,
      securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, seccompProfile: { type: 'RuntimeDefault' } },
      initContainers: [
        {
          name: 'migrate',
          image: 'registry.example.com/payments/api:1.4.2',
          command: ['/app/migrate', '--up'],
          env: [{ name: 'DATABASE_URL', valueFrom: { secretKeyRef: { name: 'payments-db', key: 'url' } } }],
          resources: { requests: { cpu: '50m', memory: '64Mi' } },
          terminationMessagePath: '/dev/termination-log',
          terminationMessagePolicy: 'File',
          imagePullPolicy: 'IfNotPresent',
          volumeMounts: [{ name: 'kube-api-access-x7k2p', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true }],
        },
        {
          name: 'log-shipper',
          image: 'fluent/fluent-bit:3.1',
          restartPolicy: 'Always',
          readinessProbe: {
            httpGet: { path: '/api/v1/health', port: 2020, scheme: 'HTTP' },
            periodSeconds: 10,
            timeoutSeconds: 1,
            successThreshold: 1,
            failureThreshold: 3,
          },
          resources: { limits: { memory: '64Mi' }, requests: { cpu: '10m', memory: '32Mi' } },
          terminationMessagePath: '/dev/termination-log',
          terminationMessagePolicy: 'File',
          imagePullPolicy: 'IfNotPresent',
          volumeMounts: [
            { name: 'varlog', mountPath: '/var/log/app' },
            { name: 'kube-api-access-x7k2p', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true },
          ],
        },
      ],
      containers: [
        {
          name: 'app',
          image: 'registry.example.com/payments/api:1.4.2',
          args: ['--port', '8080'],
          ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
          env: [
            { name: 'LOG_LEVEL', value: 'info' },
            { name: 'POD_IP', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'status.podIP' } } },
          ],
          envFrom: [{ configMapRef: { name: 'payments-settings' } }],
          readinessProbe: {
            httpGet: { path: '/ready', port: 'http', scheme: 'HTTP' },
            periodSeconds: 5,
            timeoutSeconds: 1,
            successThreshold: 1,
            failureThreshold: 3,
          },
          livenessProbe: {
            httpGet: { path: '/live', port: 'http', scheme: 'HTTP' },
            periodSeconds: 10,
            timeoutSeconds: 1,
            successThreshold: 1,
            failureThreshold: 3,
          },
          resources: { limits: { cpu: '1', memory: '512Mi' }, requests: { cpu: '100m', memory: '256Mi' } },
          securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
          terminationMessagePath: '/dev/termination-log',
          terminationMessagePolicy: 'File',
          imagePullPolicy: 'IfNotPresent',
          volumeMounts: [
            { name: 'varlog', mountPath: '/var/log/app' },
            { name: 'config', mountPath: '/etc/payments', readOnly: true },
            { name: 'kube-api-access-x7k2p', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true },
          ],
        },
      ],
      volumes: [
        { name: 'varlog', emptyDir: {} },
        { name: 'config', configMap: { name: 'payments-config', defaultMode: 420 } },
        {
          name: 'kube-api-access-x7k2p',
          projected: {
            defaultMode: 420,
            sources: [
              { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
              { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
              { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
            ],
          },
        },
      ],
      tolerations: [
        { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
        { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      ],
    },
    status: {},
  };
}

/** A bare pod: no annotations, env, volumes or mounts, no securityContext (automountServiceAccountToken: false). */
export function barePod(): Json {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'bare', namespace: 'payments', labels: { 'crosscred.io/inject': 'true' } },
    spec: {
      automountServiceAccountToken: false,
      serviceAccountName: 'payments-api',
      containers: [{ name: 'main', image: 'busybox:1.36', command: ['sleep', '3600'] }],
    },
  };
}

/** A pod whose `app` container sets `variable` itself. */
export function podSetting(variable: string): Json {
  const pod = deploymentPod();
  const app = ((pod['spec'] as Json)['containers'] as Json[])[0]!;
  (app['env'] as Json[]).push({ name: variable, value: variable === 'AWS_ROLE_ARN' ? 'arn:aws:iam::111122223333:role/other' : 'x' });
  return pod;
}

/** The AdmissionReview the API server sends for `object`. */
export function admissionReview(
  object: unknown,
  options: { uid?: string; namespace?: string; operation?: string; kind?: Json; subResource?: string } = {},
): Json {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: options.uid ?? '705ab4f5-6393-11e8-b7cc-42010a800002',
      kind: options.kind ?? { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: options.kind ?? { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      ...(options.subResource ? { subResource: options.subResource } : {}),
      namespace: options.namespace ?? 'payments',
      operation: options.operation ?? 'CREATE',
      userInfo: {
        username: 'system:serviceaccount:kube-system:replicaset-controller',
        uid: 'a1b2',
        groups: ['system:serviceaccounts', 'system:authenticated'],
      },
      object,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
    },
  };
}

export interface PatchOp {
  op: string;
  path: string;
  value?: unknown;
}

/** The response's patch, decoded (an empty list when it has none). */
export function decodePatch(response: { patch?: string; patchType?: string }): PatchOp[] {
  if (response.patch === undefined) return [];
  return JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as PatchOp[];
}

/** Applies `ops` to a copy of `pod` with fast-json-patch (validating each operation) and validates the result as a Pod. */
export function applyAndValidate(pod: Json, ops: PatchOp[]): Json {
  const result = fastJsonPatch.applyPatch(fastJsonPatch.deepClone(pod), ops as fastJsonPatch.Operation[], true, false).newDocument as Json;
  new Pod(result as ConstructorParameters<typeof Pod>[0]).validate();
  return result;
}

/**
 * Every value `before` holds is still in `after` at the same place (arrays may have grown at the
 * end; objects may have new keys). Returns the paths that differ, so a test can show them all.
 */
export function changedOriginals(before: unknown, after: unknown, path = ''): string[] {
  if (Array.isArray(before)) {
    if (!Array.isArray(after)) return [path || '/'];
    return before.flatMap((item, i) => changedOriginals(item, after[i], `${path}/${i}`));
  }
  if (before !== null && typeof before === 'object') {
    if (after === null || typeof after !== 'object' || Array.isArray(after)) return [path || '/'];
    return Object.entries(before).flatMap(([k, v]) => changedOriginals(v, (after as Json)[k], `${path}/${k}`));
  }
  return Object.is(before, after) ? [] : [path];
}

/** The named container of a pod (init containers first). */
export function container(pod: Json, name: string): Json {
  const spec = pod['spec'] as Json;
  const all = [...((spec['initContainers'] as Json[] | undefined) ?? []), ...(spec['containers'] as Json[])];
  const found = all.find((c) => c['name'] === name);
  if (!found) throw new Error(`no container ${name}`);
  return found;
}

/** A container's env as name → value (or valueFrom as JSON). */
export function envOf(c: Json): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of (c['env'] as Json[] | undefined) ?? []) out[e['name'] as string] = (e['value'] as string | undefined) ?? JSON.stringify(e['valueFrom']);
  return out;
}

// Talking to the webhook over HTTPS, as the API server does.

/** One HTTPS request to the webhook; resolves with the status, headers and body text. */
export function postToWebhook(
  port: number,
  ca: Buffer | string,
  body: string | Buffer,
  options: { path?: string; method?: string; contentType?: string; declaredLength?: number } = {},
): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  return new Promise((resolve, reject) => {
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: options.path ?? '/mutate?timeout=5s',
        method: options.method ?? 'POST',
        ca,
        agent: false,
        headers: {
          'content-type': options.contentType ?? 'application/json',
          'content-length': String(options.declaredLength ?? bytes.length),
          accept: 'application/json, */*',
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    // The server may answer (413) and close before the whole body is sent: that answer is what counts.
    req.on('error', reject);
    req.end(bytes);
  });
}

/** The SHA-256 fingerprint of the certificate a new TLS connection to `port` is shown. */
export function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.destroy();
      resolve(fingerprint);
    });
    socket.once('error', reject);
  });
}
