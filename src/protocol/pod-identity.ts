/**
 * The pod-identity contract: what `crosscred webhook` writes into a pod and what `crosscred
 * node-agent` (and `doctor --node-agent`) expect to find there. The webhook never talks to STS and
 * the node agent never reads the Kubernetes API, so this file is all the two share.
 *
 * The addresses and variable names are the AWS SDKs' own (the container-credentials provider, as
 * EKS Pod Identity uses it): every current SDK allows plain HTTP to these two addresses.
 */

/** The node agent's IPv4 address on every node (link-local, so never routed off the node). */
export const POD_IDENTITY_IPV4 = '169.254.170.23';
/** The node agent's IPv6 address (unique-local); Java SDK v2 needs AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6 for it. */
export const POD_IDENTITY_IPV6 = 'fd00:ec2::23';

/** The credentials route; the role ARN follows it literally: `/v1/credentials/arn:aws:iam::…:role/team/app`. */
export const CREDENTIALS_PATH_PREFIX = '/v1/credentials/';
/** STS's own maximum for `RoleArn`: a longer role part of the path is refused before it is parsed. */
export const MAX_ROLE_ARN_LENGTH = 2048;

/** The audience the projected token is minted for, and the node agent's default `--audience`. */
export const DEFAULT_AUDIENCE = 'sts.amazonaws.com';
/** Kubernetes refuses a projected token shorter than this (seconds); the webhook raises shorter requests to it. */
export const MIN_TOKEN_EXPIRATION_SECONDS = 600;
/** The projected token's lifetime when the ServiceAccount does not say (the kubelet rotates it at 80%). */
export const DEFAULT_TOKEN_EXPIRATION_SECONDS = 86_400;

/** The projected token volume the webhook adds, where it is mounted, and the file in it. */
export const TOKEN_VOLUME_NAME = 'crosscred-token';
export const TOKEN_MOUNT_PATH = '/var/run/secrets/crosscred.io/serviceaccount';
export const TOKEN_FILE_NAME = 'token';
export const TOKEN_FILE_PATH = `${TOKEN_MOUNT_PATH}/${TOKEN_FILE_NAME}`;

/** Pods opt in with this label (the webhook's objectSelector), so a webhook that is down blocks only opted-in pods. */
export const INJECT_LABEL = 'crosscred.io/inject';
export const INJECT_LABEL_VALUE = 'true';

/** ServiceAccount and pod annotations the webhook reads, and the one it writes. */
export const ANNOTATIONS = {
  /** ServiceAccount: the role pods under it get. */
  roleArn: 'crosscred.io/role-arn',
  /** ServiceAccount: the projected token's audience. */
  audience: 'crosscred.io/audience',
  /** ServiceAccount: the projected token's lifetime in seconds. */
  tokenExpiration: 'crosscred.io/token-expiration',
  /** ServiceAccount: `agent`, `sidecar` or `web-identity`, overriding the cluster default. */
  mode: 'crosscred.io/mode',
  /** Pod: comma-separated container names to leave alone. */
  skipContainers: 'crosscred.io/skip-containers',
  /** Pod: comma-separated container names to inject; the others are left alone. */
  containers: 'crosscred.io/containers',
  /**
   * Pod, written by the webhook: what it injected, comma-separated (the AWS mode, `alibaba`,
   * `tencent`; `agent` alone for an AWS role in agent mode). A pod carrying it is never patched again.
   */
  injected: 'crosscred.io/injected',
  /** ServiceAccount: a RAM role (`acs:ram::<uid>:role/<name>`) served by a `crosscred-alibaba` sidecar; needs alibabaOidcProviderArn. */
  alibabaRoleArn: 'crosscred.io/alibaba-role-arn',
  /** ServiceAccount: the RAM OIDC provider (`acs:ram::<uid>:oidc-provider/<name>`) that trusts the cluster's issuer. */
  alibabaOidcProviderArn: 'crosscred.io/alibaba-oidc-provider-arn',
  /** ServiceAccount, optional: the STS region (ALIBABA_CLOUD_STS_REGION); the global endpoint without it. */
  alibabaStsRegion: 'crosscred.io/alibaba-sts-region',
  /** ServiceAccount, optional: the Alibaba token's audience (ALIBABA_DEFAULT_AUDIENCE without it). */
  alibabaAudience: 'crosscred.io/alibaba-audience',
  /** ServiceAccount: a CAM role (`qcs::cam::uin/<uin>:roleName/<name>`) served by a `crosscred-tencent` sidecar; needs tencentProviderId and tencentRegion. */
  tencentRoleArn: 'crosscred.io/tencent-role-arn',
  /** ServiceAccount: the CAM OIDC identity provider's name (TKE_PROVIDER_ID). */
  tencentProviderId: 'crosscred.io/tencent-provider-id',
  /** ServiceAccount: the region (TKE_REGION), which Tencent STS requires. */
  tencentRegion: 'crosscred.io/tencent-region',
  /** ServiceAccount, optional: the Tencent token's audience (TENCENT_DEFAULT_AUDIENCE without it). */
  tencentAudience: 'crosscred.io/tencent-audience',
} as const;

/** The audiences the other clouds' STS expect by default (as `serve --cloud` defaults them). */
export const ALIBABA_DEFAULT_AUDIENCE = 'sts.aliyuncs.com';
export const TENCENT_DEFAULT_AUDIENCE = 'sts.cloud.tencent.com';

/**
 * Variables that decide a container's Alibaba Cloud credentials in the SDKs' default chains
 * (aliyun/credentials-go providers/default.go and @alicloud/credentials: environment, OIDC, CLI
 * profile, profile, ECS RAM role, then the URI). A container setting one is left to its own choice.
 * (ALICLOUD_ACCESS_KEY and ALICLOUD_SECRET_KEY are Terraform's; no credentials SDK reads them.)
 */
export const ALIBABA_CREDENTIAL_VARIABLES: readonly string[] = [
  'ALIBABA_CLOUD_ACCESS_KEY_ID',
  'ALIBABA_CLOUD_ACCESS_KEY_SECRET',
  'ALIBABA_CLOUD_SECURITY_TOKEN',
  'ALIBABA_CLOUD_ROLE_ARN',
  'ALIBABA_CLOUD_OIDC_PROVIDER_ARN',
  'ALIBABA_CLOUD_OIDC_TOKEN_FILE',
  'ALIBABA_CLOUD_CREDENTIALS_URI',
  'ALIBABA_CLOUD_CREDENTIALS_FILE',
  'ALIBABA_CLOUD_ECS_METADATA',
  'ALIBABA_CLOUD_PROFILE',
];

/**
 * Variables that decide a container's Tencent Cloud credentials before the CVM role, or beside it
 * (tencentcloud-sdk-nodejs-common's DefaultCredentialProvider: environment, profile, CVM role, then
 * TKE's OIDC variables; the Go SDK's default chain: environment, profile, CVM role).
 */
export const TENCENT_CREDENTIAL_VARIABLES: readonly string[] = [
  'TENCENTCLOUD_SECRET_ID',
  'TENCENTCLOUD_SECRET_KEY',
  'TENCENTCLOUD_SESSION_TOKEN',
  'TKE_ROLE_ARN',
  'TKE_PROVIDER_ID',
  'TKE_WEB_IDENTITY_TOKEN_FILE',
];

/** The IRSA annotations Helm charts already set; read when ours are absent. */
export const EKS_ANNOTATIONS = {
  roleArn: 'eks.amazonaws.com/role-arn',
  audience: 'eks.amazonaws.com/audience',
  tokenExpiration: 'eks.amazonaws.com/token-expiration',
  skipContainers: 'eks.amazonaws.com/skip-containers',
} as const;

/**
 * How a pod gets credentials:
 * - `agent`: the node agent, reached at FULL_URI with the pod's projected token;
 * - `sidecar`: crosscred `serve` as a native sidecar in the pod (clusters that allow no DaemonSet);
 * - `web-identity`: IRSA's variables, the pod calls STS itself (SDKs too old for the node agent).
 */
export const INJECTION_MODES = ['agent', 'sidecar', 'web-identity'] as const;
export type InjectionMode = (typeof INJECTION_MODES)[number];

/** The variables each mode injects, named as the SDKs read them. */
export const ENV = {
  fullUri: 'AWS_CONTAINER_CREDENTIALS_FULL_URI',
  /** Never injected: Java SDK v2 prefers the fixed value over the rotating file. */
  authorizationToken: 'AWS_CONTAINER_AUTHORIZATION_TOKEN',
  authorizationTokenFile: 'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE',
  roleArn: 'AWS_ROLE_ARN',
  webIdentityTokenFile: 'AWS_WEB_IDENTITY_TOKEN_FILE',
  roleSessionName: 'AWS_ROLE_SESSION_NAME',
  /** Java SDK v2 accepts the IPv6 address only in this mode. */
  endpointMode: 'AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE',
} as const;

/**
 * Variables that decide a container's AWS credentials before the container provider is asked (or
 * that are the container provider). A container that already sets one is left alone: injecting
 * beside it would be ignored by the SDK, or would silently change what it uses.
 */
export const CREDENTIAL_VARIABLES: readonly string[] = [
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_PROFILE',
  ENV.roleArn,
  ENV.webIdentityTokenFile,
  ENV.fullUri,
  'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI',
  ENV.authorizationToken,
  ENV.authorizationTokenFile,
];

/**
 * Clock skew tolerated between a node and the cluster's issuer for a pod token's `nbf` and `iat`,
 * in ms: Kubernetes itself allows 60 s for `nbf`; 30 s covers NTP-synchronised nodes with room.
 * `exp` gets none: a token past it would be refused by STS anyway. The node agent applies it, and
 * `doctor --node-agent` judges a token by it.
 */
export const TOKEN_CLOCK_SKEW_MS = 30_000;

/**
 * The only `sub` the node agent accepts: `system:serviceaccount:<namespace>:<name>`, a DNS label and
 * a DNS subdomain (captured in that order).
 */
export const SERVICE_ACCOUNT_SUBJECT = /^system:serviceaccount:([a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?):([a-z0-9](?:[-.a-z0-9]{0,251}[a-z0-9])?)$/;

/** Characters that stand in an IAM role ARN's path unencoded; anything else is percent-encoded in the URI. */
const URI_SAFE_ARN = /[^\w+=,.@/:-]/g;

/**
 * The FULL_URI for a role: the ARN follows the prefix literally, with only characters a URL would
 * misread (`?`, `#`, `%`, spaces…) percent-encoded. The node agent decodes the path once.
 */
export function credentialsUri(roleArn: string, family: 'ipv4' | 'ipv6' = 'ipv4'): string {
  const host = family === 'ipv4' ? POD_IDENTITY_IPV4 : `[${POD_IDENTITY_IPV6}]`;
  const path = roleArn.replace(URI_SAFE_ARN, (c) =>
    Array.from(new TextEncoder().encode(c), (b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  );
  return `http://${host}${CREDENTIALS_PATH_PREFIX}${path}`;
}

/** The `kubernetes.io` claim of a projected ServiceAccount token, as far as the session name needs it. */
export interface PodTokenIdentity {
  readonly namespace: string;
  readonly serviceAccount: { readonly name: string; readonly uid?: string };
  /** Absent from tokens not bound to a pod (the node agent accepts those only with --allow-unbound-tokens). */
  readonly pod?: { readonly name: string; readonly uid?: string };
}

/** STS's RoleSessionName: 2–64 of `[\w+=,.@-]`. */
const SESSION_NAME_MAX = 64;
const SESSION_NAME_MIN = 2;
const SESSION_NAME_INVALID = /[^\w+=,.@-]/g;
/** Hex digits of the uid kept when a long name is trimmed: enough to tell apart the pods of one prefix. */
const UID_SUFFIX_HEX = 8;

/**
 * The STS session name the node agent uses for a pod: `<namespace>.<pod name>`, as CloudTrail
 * then shows it (`assumed-role/<role>/<namespace>.<pod>`, webhook#112). The same for every
 * renewal and every rotated token of one pod, so services that re-authenticate on a session
 * name change (MSK IAM, agent#14) see one name per pod.
 *
 * Longer than STS allows: the first 55 characters, `-` and the first 8 hex digits of the pod's
 * uid, which keeps two long-named pods apart. A token bound to no pod names the ServiceAccount
 * instead (and its uid). Characters STS refuses become `-`; a name shorter than 2 is padded.
 */
export function podSessionName(identity: PodTokenIdentity): string {
  const who = identity.pod ?? identity.serviceAccount;
  let name = `${identity.namespace}.${who.name}`.replace(SESSION_NAME_INVALID, '-');
  if (name.length > SESSION_NAME_MAX) {
    const uidHex = (who.uid ?? '').toLowerCase().replace(/[^0-9a-f]/g, '');
    const suffix = uidHex.length > 0 ? `-${uidHex.slice(0, UID_SUFFIX_HEX)}` : '';
    name = `${name.slice(0, SESSION_NAME_MAX - suffix.length)}${suffix}`;
  }
  return name.padEnd(SESSION_NAME_MIN, '-');
}
