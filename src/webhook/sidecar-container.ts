import { CVM_METADATA_URL } from '../platform/tencent/cvm-metadata.js';
import { TOKEN_FILE_NAME, TOKEN_FILE_PATH, TOKEN_MOUNT_PATH, TOKEN_VOLUME_NAME } from '../protocol/pod-identity.js';

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
  return nativeSidecar({
    name: SIDECAR_NAME,
    image: options.image,
    uid: options.uid,
    args: ['serve', '--listen', SIDECAR_LISTEN, '--admin-listen', `0.0.0.0:${ADMIN_PORT}`, '--auth-token-file', SIDECAR_AUTH_TOKEN_FILE],
    env: [
      { name: 'AWS_ROLE_ARN', value: options.roleArn },
      ...(options.region ? [{ name: 'AWS_REGION', value: options.region }] : []),
      { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: TOKEN_FILE_PATH },
    ],
    adminPort: ADMIN_PORT,
    adminPortName: 'crosscred-admin',
    volumeMounts: [
      { name: SIDECAR_RUN_VOLUME, mountPath: SIDECAR_RUN_PATH },
      { name: TOKEN_VOLUME_NAME, mountPath: TOKEN_MOUNT_PATH, readOnly: true },
    ],
  });
}

/**
 * A crosscred `serve` native sidecar: the probes, resources and security context every sidecar the
 * webhook adds shares with k8s/base/deployment.yaml; only its name, flags, variables, admin port
 * and mounts differ.
 */
function nativeSidecar(options: {
  name: string;
  image: string;
  uid: number;
  args: readonly string[];
  env: readonly Record<string, unknown>[];
  adminPort: number;
  /** At most 15 characters, unique in the pod. */
  adminPortName: string;
  volumeMounts: readonly Record<string, unknown>[];
}): Record<string, unknown> {
  const probe = (path: string, periodSeconds: number, failureThreshold: number, timeoutSeconds: number) => ({
    httpGet: { path, port: options.adminPort },
    periodSeconds,
    failureThreshold,
    timeoutSeconds,
  });
  return {
    name: options.name,
    image: options.image,
    // A native sidecar (Kubernetes >= 1.29): started before the application and every later init
    // container, kept running beside them.
    restartPolicy: 'Always',
    args: [...options.args],
    env: [
      ...options.env,
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_UID', valueFrom: { fieldRef: { fieldPath: 'metadata.uid' } } },
      { name: 'NODE_OPTIONS', value: '--max-semi-space-size=2 --max-old-space-size=64' },
    ],
    ports: [{ name: options.adminPortName, containerPort: options.adminPort, protocol: 'TCP' }],
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
    volumeMounts: [...options.volumeMounts],
  };
}

// Roles in Alibaba Cloud and Tencent Cloud. The node agent tells pods apart by the projected token
// the AWS SDKs send in Authorization; Alibaba's URI provider and Tencent's metadata client send
// nothing, so a node-wide server could not know whose credentials to answer. A role of those clouds
// is therefore always served by a sidecar in the pod itself, whatever the AWS mode.

/** One other-cloud sidecar: its container name, projected token volume, where that is mounted, and its ports. */
export interface OtherCloudSidecar {
  readonly cloud: 'alibaba' | 'tencent';
  readonly name: string;
  readonly tokenVolume: string;
  readonly tokenMountPath: string;
  readonly tokenFile: string;
  /** The credentials port (on the pod's loopback) and the admin port (probes and metrics). */
  readonly ports: readonly [number, number];
}

export const ALIBABA_SIDECAR: OtherCloudSidecar = {
  cloud: 'alibaba',
  name: 'crosscred-alibaba',
  tokenVolume: 'crosscred-token-alibaba',
  tokenMountPath: '/var/run/secrets/crosscred.io/alibaba',
  tokenFile: `/var/run/secrets/crosscred.io/alibaba/${TOKEN_FILE_NAME}`,
  ports: [8172, 8173],
};
/** What the application's Alibaba SDK is pointed at: crosscred's URI provider route, open on the pod's loopback only. */
export const ALIBABA_CREDENTIALS_URI = 'http://127.0.0.1:8172/v1/alibaba/credentials';

export const TENCENT_SIDECAR: OtherCloudSidecar = {
  cloud: 'tencent',
  name: 'crosscred-tencent',
  tokenVolume: 'crosscred-token-tencent',
  tokenMountPath: '/var/run/secrets/crosscred.io/tencent',
  tokenFile: `/var/run/secrets/crosscred.io/tencent/${TOKEN_FILE_NAME}`,
  // The Tencent SDKs ask http://metadata.tencentyun.com on port 80, and nothing can change that port.
  ports: [80, 8174],
};
/** The host name the Tencent SDKs' CVM role provider asks, mapped to the pod's loopback by hostAliases. */
export const TENCENT_METADATA_HOST = new URL(CVM_METADATA_URL).hostname;

function tokenMount(sidecar: OtherCloudSidecar): Record<string, unknown> {
  return { name: sidecar.tokenVolume, mountPath: sidecar.tokenMountPath, readOnly: true };
}

export function alibabaSidecarContainer(options: {
  image: string;
  uid: number;
  roleArn: string;
  oidcProviderArn: string;
  stsRegion?: string;
}): Record<string, unknown> {
  const [listenPort, adminPort] = ALIBABA_SIDECAR.ports;
  return nativeSidecar({
    name: ALIBABA_SIDECAR.name,
    image: options.image,
    uid: options.uid,
    // No --auth-token-file: the URI provider sends no header. The route is open only because the
    // listener is on the pod's loopback. --disable-imds: the SDKs ask ECS metadata only at
    // 100.100.100.200, never here, so the listener serves the URI alone.
    args: ['serve', '--cloud', 'alibaba', '--listen', `127.0.0.1:${listenPort}`, '--admin-listen', `0.0.0.0:${adminPort}`, '--disable-imds'],
    env: [
      { name: 'ALIBABA_CLOUD_ROLE_ARN', value: options.roleArn },
      { name: 'ALIBABA_CLOUD_OIDC_PROVIDER_ARN', value: options.oidcProviderArn },
      { name: 'ALIBABA_CLOUD_OIDC_TOKEN_FILE', value: ALIBABA_SIDECAR.tokenFile },
      ...(options.stsRegion ? [{ name: 'ALIBABA_CLOUD_STS_REGION', value: options.stsRegion }] : []),
    ],
    adminPort,
    adminPortName: 'alibaba-admin',
    volumeMounts: [tokenMount(ALIBABA_SIDECAR)],
  });
}

export function tencentSidecarContainer(options: { image: string; uid: number; roleArn: string; providerId: string; region: string }): Record<string, unknown> {
  const [listenPort, adminPort] = TENCENT_SIDECAR.ports;
  return nativeSidecar({
    name: TENCENT_SIDECAR.name,
    image: options.image,
    uid: options.uid,
    // Port 80 without a capability: the pod's net.ipv4.ip_unprivileged_port_start is 0 (pod-patch).
    // The SDK sends Host: metadata.tencentyun.com, which the Host guard must accept.
    args: [
      'serve',
      '--cloud',
      'tencent',
      '--listen',
      `127.0.0.1:${listenPort}`,
      '--admin-listen',
      `0.0.0.0:${adminPort}`,
      '--allowed-host',
      TENCENT_METADATA_HOST,
    ],
    env: [
      { name: 'TKE_ROLE_ARN', value: options.roleArn },
      { name: 'TKE_PROVIDER_ID', value: options.providerId },
      { name: 'TKE_REGION', value: options.region },
      { name: 'TKE_WEB_IDENTITY_TOKEN_FILE', value: TENCENT_SIDECAR.tokenFile },
    ],
    adminPort,
    adminPortName: 'tencent-admin',
    volumeMounts: [tokenMount(TENCENT_SIDECAR)],
  });
}
