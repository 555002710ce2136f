/** The validated, frozen configuration every other part receives. Built only by config/load.ts. */
import type { ListenAddress } from '../core/listen-address.js';
import type { StsTransportOptions } from '../platform/aws/sts-http-handler.js';

/** Where a role's web-identity token comes from, as detected or chosen (see detect-token-source.ts). */
export type TokenSourceConfig =
  | {
      readonly kind: 'file';
      readonly path: string;
      /** Whose convention named the file, for messages: aws (IRSA / projected token), alibaba-ack (RRSA), tencent-tke, or configured. */
      readonly platform: 'aws' | 'alibaba-ack' | 'tencent-tke' | 'configured';
    }
  | {
      readonly kind: 'exec';
      /** Program and arguments, run without a shell. */
      readonly argv: readonly string[];
      readonly timeoutMs: number;
      /**
       * Names of the daemon's environment variables the command also gets (--token-command-env),
       * beyond PATH and HOME. Absent: none. Names only: values are read when the command runs.
       */
      readonly passEnv?: readonly string[];
    }
  | ({ readonly kind: 'kubernetes' } & KubernetesTokenRequestConfig)
  /**
   * A VM without an OIDC token: an attestation of the instance, traded at `crosscred issuer`.
   * `cloud: 'detect'` finds out at the first fetch, from which metadata server answers.
   */
  | {
      readonly kind: 'vm-issuer';
      readonly cloud: 'alibaba-ecs' | 'tencent-cvm' | 'detect';
      readonly issuer: IssuerConnection;
      /** Alibaba only: what is attested (see src/sources/alibaba-ecs-token-source.ts). */
      readonly alibabaAttestation: 'ecs-identity' | 'ram-role';
      /**
       * The cloud STS endpoint a signed GetCallerIdentity is made for (Alibaba ram-role, Tencent),
       * when not the global one; it must be on the issuer's allow-list.
       */
      readonly cloudStsEndpoint?: string;
    }
  /**
   * An AWS workload's own identity (EC2, ECS, Lambda, an EKS node): AWS STS GetWebIdentityToken
   * (IAM outbound identity federation) mints a JWT for `audience`, in a request signed with the
   * host's own AWS credentials (the AWS SDK's default chain). For roles in Alibaba Cloud or Tencent Cloud.
   */
  | {
      readonly kind: 'aws-outbound';
      /** The token's `aud`: what the other cloud's OIDC provider is registered with. */
      readonly audience: string;
      readonly signingAlgorithm: 'RS256' | 'ES384';
      /** The token's lifetime asked for: 60–3600 s. */
      readonly durationSeconds: number;
      /** The AWS STS region to ask (the token's issuer is the account's, whatever the region). */
      readonly region: string;
      /** A full AWS STS URL instead of the region's (a VPC endpoint, a test double). */
      readonly stsEndpoint?: string;
    };

/** A token minted by the Kubernetes TokenRequest API for this pod's ServiceAccount. */
export interface KubernetesTokenRequestConfig {
  /** Base URL of the API server, e.g. `https://10.0.0.1:443` (from KUBERNETES_SERVICE_HOST/PORT). */
  readonly apiServer: string;
  /** PEM CA bundle of the API server; the only roots trusted for this connection. */
  readonly caFile: string;
  /** The pod's own ServiceAccount token, sent as the Bearer. Re-read on every request: the kubelet rotates it. */
  readonly serviceAccountTokenFile: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The `aud` the token is minted for; callers default to `sts.amazonaws.com`. */
  readonly audience: string;
  /** Lifetime asked for, in seconds. The API server may grant another one; its answer is what counts. */
  readonly expirationSeconds: number;
  /** Binds the token to this pod (downward API POD_NAME/POD_UID): it stops working when the pod is deleted. */
  readonly pod?: { readonly name: string; readonly uid: string };
}

/** How `crosscred serve` reaches `crosscred issuer`. */
export interface IssuerConnection {
  /** The issuer URL, exactly as the JWTs' `iss` and the attestations' binding. */
  readonly url: string;
  /** Its token endpoint, when not `url` + `/token` (the issuer's tokenEndpointUrl). */
  readonly tokenEndpointUrl?: string;
  readonly caBundlePath?: string;
  /** PEM text of the CA bundle, read at start-up. */
  readonly caBundle?: string;
  /** The `aud` asked for (default sts.amazonaws.com). */
  readonly audience: string;
  /** The instance secret's file for trust on first use, when set explicitly (else the VM source's default applies). */
  readonly instanceSecretFile?: string;
}

/** What detection chose and why, said at start-up and by `crosscred doctor`. */
export interface TokenSourceChoice {
  readonly source: TokenSourceConfig;
  /** One sentence: which setting or variable led to this source. */
  readonly reason: string;
  /** Things worth knowing about the environment (variables seen but not used, and why). */
  readonly notes: readonly string[];
}

/** What every role has, whichever cloud it lives in. */
interface RoleBase {
  /** The name served in metadata paths and used as the metrics label; defaults to the role ARN's last segment. */
  readonly name: string;
  readonly roleArn: string;
  /** The account the role belongs to: AWS's 12-digit id, Alibaba's account uid, Tencent's owner uin. */
  readonly accountId: string;
  readonly token: TokenSourceChoice;
  /**
   * The STS session name, or a template over the workload's identity (`{namespace}.{pod}`,
   * protocol/workload-identity.ts), filled in from the token at each exchange and made to fit the
   * cloud's rules.
   */
  readonly sessionName: string;
  readonly durationSeconds?: number;
  /** The STS region: AWS's always; Alibaba's or Tencent's, or '' for the cloud's global endpoint. */
  readonly region: string;
  /** A full STS URL that replaces the one the region gives (a private or VPC endpoint, a test double). */
  readonly stsEndpoint?: string;
}

/**
 * What narrows an AWS session below its role's own policies (#18): an inline session policy and
 * managed policy ARNs, as AssumeRoleWithWebIdentity and AssumeRole take them. Checked against STS's
 * limits (platform/aws/session-policy.ts) when the configuration is loaded.
 */
export interface SessionPolicies {
  /** An inline IAM policy document, as JSON text (at most 2,048 characters). */
  readonly policy?: string;
  /** Managed policy ARNs (at most 10). */
  readonly policyArns?: readonly string[];
}

/** A session tag of a chain hop; `value` may be a template over the workload's identity. */
export interface SessionTagConfig {
  readonly key: string;
  readonly value: string;
}

/**
 * One hop of a role chain: an `sts:AssumeRole` of `roleArn`, signed with the credentials of the
 * step before it (the web-identity role's, or the previous hop's).
 */
export interface ChainHopConfig extends SessionPolicies {
  readonly roleArn: string;
  /** The target role's account, from its ARN: what the served credentials then name. */
  readonly accountId: string;
  readonly externalId?: string;
  /** A session name or template; default: the role's own session name. */
  readonly sessionName?: string;
  /** 900–3600: STS caps a chained session at one hour. Absent: not sent (STS's default, one hour). */
  readonly durationSeconds?: number;
  readonly tags?: readonly SessionTagConfig[];
  /** Keys of `tags` that pass on to the next hop's session. */
  readonly transitiveTagKeys?: readonly string[];
}

/** An IAM role, assumed with AWS STS AssumeRoleWithWebIdentity and served over IMDS and the container endpoint. */
export interface AwsRoleConfig extends RoleBase, SessionPolicies {
  readonly cloud: 'aws';
  /**
   * Roles assumed one after another from the web-identity role (`roleArn`, the hub); the last
   * hop's credentials are what is served under the role's name. Absent: no chain.
   */
  readonly chain?: readonly ChainHopConfig[];
}

/** A RAM role, assumed with Alibaba Cloud STS AssumeRoleWithOIDC and served to Alibaba's SDKs. */
export interface AlibabaRoleConfig extends RoleBase {
  readonly cloud: 'alibaba';
  /** The RAM OIDC provider the token is checked against: `acs:ram::<account uid>:oidc-provider/<name>`. */
  readonly oidcProviderArn: string;
  /** Reach STS through its VPC endpoint (`sts-vpc.<region>.aliyuncs.com`); needs a region. */
  readonly vpcEndpoint: boolean;
}

/** A CAM role, assumed with Tencent Cloud STS AssumeRoleWithWebIdentity and served to Tencent's SDKs. */
export interface TencentRoleConfig extends RoleBase {
  readonly cloud: 'tencent';
  /** The CAM OIDC identity provider's name (`ProviderId`). */
  readonly providerId: string;
}

/** A role to assume: in AWS by default, or in Alibaba Cloud or Tencent Cloud (`cloud`). */
export type RoleConfig = AwsRoleConfig | AlibabaRoleConfig | TencentRoleConfig;

export interface ListenerConfig extends ListenAddress {
  /** The role this listener's IMDS answers for, and its container endpoint's `/v1/credentials`. */
  readonly role: string;
}

/** How crosscred reaches STS: the transport's options, plus where its CA bundle was read from (for messages). */
export interface StsConnectionConfig extends StsTransportOptions {
  readonly caBundlePath?: string;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  readonly roles: readonly RoleConfig[];
  readonly listeners: readonly ListenerConfig[];
  readonly admin: ListenAddress | null;
  readonly authTokenFile?: string;
  readonly allowImdsV1: boolean;
  /** False with --disable-imds: the listeners then serve only the container endpoint. */
  readonly imdsEnabled: boolean;
  /** Host header values accepted besides the listen addresses (DNS names clients use for the daemon). */
  readonly allowedHosts: readonly string[];
  readonly sts: StsConnectionConfig;
  readonly logLevel: LogLevel;
}

export const DEFAULT_LISTEN: ListenAddress = { host: '127.0.0.1', port: 8170 };
export const DEFAULT_ADMIN_LISTEN: ListenAddress = { host: '127.0.0.1', port: 8171 };
export const DEFAULT_STS_CONNECT_TIMEOUT_MS = 3_000;
export const DEFAULT_STS_RESPONSE_TIMEOUT_MS = 10_000;
