import { TOKEN_FILE_PATH, TOKEN_MOUNT_PATH, TOKEN_VOLUME_NAME } from '../protocol/pod-identity.js';

/**
 * `sidecar` mode: crosscred `serve` as a native sidecar in the pod, exactly as k8s/base/deployment.yaml
 * runs it (read that file for the reasons behind each setting; keep the two in step). The webhook
 * writes the role into the container instead of the example's ConfigMap, and gives crosscred the
 * projected token through AWS_WEB_IDENTITY_TOKEN_FILE instead of a TokenRequest, so the pod needs
 * no RBAC.
 */

export const SIDECAR_NAME = 'crosscred';
/** The in-memory volume holding the container-endpoint secret, shared with the application. */
export const SIDECAR_RUN_VOLUME = 'crosscred-run';
export const SIDECAR_RUN_PATH = '/var/run/crosscred';
export const SIDECAR_AUTH_TOKEN_FILE = `${SIDECAR_RUN_PATH}/auth-token`;
/** Credentials only on the pod's loopback: every container of the pod shares it, nothing outside reaches it. */
export const SIDECAR_LISTEN = '127.0.0.1:8170';
export const SIDECAR_CREDENTIALS_URI = 'http://127.0.0.1:8170/v1/credentials';
export const SIDECAR_PORTS = [8170, 8171] as const;
const ADMIN_PORT = 8171;
/** The crosscred image's own user, used when the application's uid is not known. */
export const SIDECAR_DEFAULT_UID = 10001;

/** The run volume: in memory (never on the node's disk), gone with the pod. */
export function sidecarRunVolume(): Record<string, unknown> {
  return { name: SIDECAR_RUN_VOLUME, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } };
}

export function sidecarContainer(options: { image: string; roleArn: string; region?: string; uid: number }): Record<string, unknown> {
  const probe = (path: string, periodSeconds: number, failureThreshold: number, timeoutSeconds: number) => ({
    httpGet: { path, port: ADMIN_PORT },
    periodSeconds,
    failureThreshold,
    timeoutSeconds,
  });
  return {
    name: SIDECAR_NAME,
    image: options.image,
    // A native sidecar (Kubernetes >= 1.29): started before the application and every later init
    // container, kept running beside them.
    restartPolicy: 'Always',
    args: ['serve', '--listen', SIDECAR_LISTEN, '--admin-listen', `0.0.0.0:${ADMIN_PORT}`, '--auth-token-file', SIDECAR_AUTH_TOKEN_FILE],
    env: [
      { name: 'AWS_ROLE_ARN', value: options.roleArn },
      ...(options.region ? [{ name: 'AWS_REGION', value: options.region }] : []),
      { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: TOKEN_FILE_PATH },
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_UID', valueFrom: { fieldRef: { fieldPath: 'metadata.uid' } } },
      { name: 'NODE_OPTIONS', value: '--max-semi-space-size=2 --max-old-space-size=64' },
    ],
    ports: [{ name: 'crosscred-admin', containerPort: ADMIN_PORT, protocol: 'TCP' }],
    startupProbe: probe('/healthz', 1, 30, 1),
    livenessProbe: probe('/healthz', 10, 3, 2),
    readinessProbe: probe('/readyz', 5, 2, 2),
    resources: { requests: { cpu: '10m', memory: '96Mi' }, limits: { cpu: '200m', memory: '160Mi' } },
    securityContext: {
      runAsNonRoot: true,
      runAsUser: options.uid,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [
      { name: SIDECAR_RUN_VOLUME, mountPath: SIDECAR_RUN_PATH },
      { name: TOKEN_VOLUME_NAME, mountPath: TOKEN_MOUNT_PATH, readOnly: true },
    ],
  };
}
