import type { CloudName } from '../core/clouds.js';
import type { InClusterDefaults, InClusterMissing } from '../platform/kubernetes/in-cluster.js';
import type { IssuerConnection, TokenSourceChoice, TokenSourceConfig } from './config.js';

/**
 * Finds where a role's web-identity token comes from. With `auto` (the default) the first of these
 * that applies wins, in this order; an explicit `--token-source` always wins.
 *
 *   1. --token-command (or tokenCommand in the config file): a program prints the token.
 *   2. --token-file (or tokenFile in the config file).
 *   3. AWS_WEB_IDENTITY_TOKEN_FILE: EKS IRSA, or any cluster with a projected ServiceAccount token.
 *   4. ALIBABA_CLOUD_OIDC_TOKEN_FILE: ACK RRSA.
 *   5. TKE_WEB_IDENTITY_TOKEN_FILE: TKE pod identity.
 *   6. In a Kubernetes pod (KUBERNETES_SERVICE_HOST and a mounted ServiceAccount): ask the API
 *      server for a token with the AWS audience (TokenRequest).
 */
export const DETECTION_ORDER = [
  '--token-command / tokenCommand',
  '--token-file / tokenFile',
  'AWS_WEB_IDENTITY_TOKEN_FILE (EKS IRSA, projected ServiceAccount token)',
  'ALIBABA_CLOUD_OIDC_TOKEN_FILE (ACK RRSA)',
  'TKE_WEB_IDENTITY_TOKEN_FILE (TKE pod identity)',
  'Kubernetes TokenRequest (KUBERNETES_SERVICE_HOST and a mounted ServiceAccount)',
  '--issuer-url / issuerUrl (an Alibaba ECS or Tencent CVM instance attested by crosscred issuer)',
] as const;

export const SOURCE_KINDS = ['auto', 'file', 'exec', 'kubernetes', 'alibaba-ecs', 'tencent-cvm'] as const;
export type SourceKind = (typeof SOURCE_KINDS)[number];

/** The in-cluster facts a Kubernetes source needs, or what is missing for it (see kubernetes-in-cluster.ts). */
export type InClusterFacts = InClusterDefaults | InClusterMissing;

export interface DetectionInputs {
  /** The role's cloud: its own platform's token variable is looked at first, and only an AWS role is told about the others' variables. */
  readonly cloud?: CloudName;
  readonly kind: { readonly value: SourceKind; readonly origin: string };
  readonly tokenFile?: { readonly value: string; readonly origin: string };
  readonly tokenCommand?: { readonly value: readonly string[]; readonly origin: string };
  readonly commandTimeoutMs: number;
  /** --token-command-env: variables passed to the command beyond PATH and HOME. */
  readonly commandEnv?: readonly string[];
  readonly audience: string;
  readonly expirationSeconds: number;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Read lazily: only when the Kubernetes source is considered. */
  readonly inCluster: () => InClusterFacts;
  readonly pod?: { readonly name: string; readonly uid: string };
  /** `--issuer-url` and its settings, when configured: the VM sources need them. */
  readonly issuer?: { readonly value: IssuerConnection; readonly origin: string };
  /** Default ecs-identity. */
  readonly alibabaAttestation?: 'ecs-identity' | 'ram-role';
  /** --cloud-sts-endpoint, for the VM sources' signed requests. */
  readonly cloudStsEndpoint?: string;
}

/** The variables each platform sets that are not an AWS role's, with what they are for (noted for an AWS role). */
export const FOREIGN_VARIABLES: Record<string, string> = {
  ALIBABA_CLOUD_ROLE_ARN: 'the Alibaba RAM role for Alibaba STS (RRSA); crosscred never assumes it: the AWS role comes from AWS_ROLE_ARN or --role-arn',
  ALIBABA_CLOUD_OIDC_PROVIDER_ARN:
    'the RRSA OIDC provider in Alibaba RAM; AWS needs its own IAM OIDC provider for the same issuer (crosscred trust-policy prints it)',
  TKE_ROLE_ARN: 'the Tencent CAM role for Tencent STS; crosscred never assumes it: the AWS role comes from AWS_ROLE_ARN or --role-arn',
  TKE_PROVIDER_ID: 'the TKE OIDC provider in Tencent CAM; AWS needs its own IAM OIDC provider for the same issuer (crosscred trust-policy prints it)',
  TKE_REGION: 'a Tencent Cloud region; the AWS STS region comes from AWS_REGION or --region',
};

type EnvFile = readonly [string, 'aws' | 'alibaba-ack' | 'tencent-tke', string];
const ENV_FILES: readonly EnvFile[] = [
  ['AWS_WEB_IDENTITY_TOKEN_FILE', 'aws', 'EKS IRSA or a projected ServiceAccount token'],
  ['ALIBABA_CLOUD_OIDC_TOKEN_FILE', 'alibaba-ack', 'ACK RRSA'],
  ['TKE_WEB_IDENTITY_TOKEN_FILE', 'tencent-tke', 'TKE pod identity'],
];

/** The token-file variables in the order a role of `cloud` reads them: its own platform's first. */
function envFilesFor(cloud: CloudName): readonly EnvFile[] {
  const own = cloud === 'alibaba' ? 'alibaba-ack' : cloud === 'tencent' ? 'tencent-tke' : 'aws';
  return [...ENV_FILES.filter(([, p]) => p === own), ...ENV_FILES.filter(([, p]) => p !== own)];
}

/** The variables that name a token file, in the order auto-detection reads them. */
export const TOKEN_FILE_VARIABLES: readonly string[] = ENV_FILES.map(([name]) => name);

/** Returns the choice, or a problem sentence naming everything that was looked at. */
export function detectTokenSource(inputs: DetectionInputs): TokenSourceChoice | { readonly problem: string } {
  const { env } = inputs;
  const cloud = inputs.cloud ?? 'aws';
  const envFiles = envFilesFor(cloud);
  // The notes explain why another cloud's role variables do not configure an AWS role; a role of
  // Alibaba or Tencent reads its own cloud's variables (settings.ts envByCloud).
  const notes =
    cloud === 'aws'
      ? Object.entries(FOREIGN_VARIABLES)
          .filter(([name]) => env[name])
          .map(([name, what]) => `${name} is set: ${what}.`)
      : [];
  const choose = (source: TokenSourceConfig, reason: string): TokenSourceChoice => {
    const unused = envFiles.filter(([name]) => env[name] && !(source.kind === 'file' && source.path === env[name])).map(([name]) => name);
    const extra =
      unused.length > 0 && source.kind !== 'kubernetes' ? [`${unused.join(' and ')} ${unused.length > 1 ? 'are' : 'is'} set too, but not used.`] : [];
    return { source, reason, notes: [...notes, ...extra] };
  };

  const exec = (): TokenSourceChoice | undefined =>
    inputs.tokenCommand &&
    choose(
      {
        kind: 'exec',
        argv: inputs.tokenCommand.value,
        timeoutMs: inputs.commandTimeoutMs,
        ...(inputs.commandEnv && inputs.commandEnv.length > 0 ? { passEnv: inputs.commandEnv } : {}),
      },
      `the token comes from the command in ${inputs.tokenCommand.origin}`,
    );
  const file = (): TokenSourceChoice | undefined => {
    if (inputs.tokenFile)
      return choose({ kind: 'file', path: inputs.tokenFile.value, platform: 'configured' }, `the token file is named by ${inputs.tokenFile.origin}`);
    for (const [name, platform, what] of envFiles) {
      const path = env[name];
      if (path) return choose({ kind: 'file', path, platform }, `${name} is set (${what})`);
    }
    return undefined;
  };
  const kubernetes = (): TokenSourceChoice | { problem: string } | undefined => {
    if (!env['KUBERNETES_SERVICE_HOST']) return undefined;
    const facts = inputs.inCluster();
    if ('missing' in facts) return { problem: `a Kubernetes TokenRequest needs ${facts.missing.join(', ')}` };
    return choose(
      {
        kind: 'kubernetes',
        ...facts,
        audience: inputs.audience,
        expirationSeconds: inputs.expirationSeconds,
        ...(inputs.pod ? { pod: inputs.pod } : {}),
      },
      `running in Kubernetes as serviceaccount ${facts.namespace}/${facts.serviceAccount} with no token file: tokens with audience ${inputs.audience} are requested from the API server`,
    );
  };

  const vm = (cloud: 'alibaba-ecs' | 'tencent-cvm' | 'detect'): TokenSourceChoice | undefined =>
    inputs.issuer &&
    choose(
      {
        kind: 'vm-issuer',
        cloud,
        issuer: inputs.issuer.value,
        alibabaAttestation: inputs.alibabaAttestation ?? 'ecs-identity',
        ...(inputs.cloudStsEndpoint ? { cloudStsEndpoint: inputs.cloudStsEndpoint } : {}),
      },
      cloud === 'detect'
        ? `${inputs.issuer.origin} names crosscred issuer and no token file or pod was found: this VM is attested to it (Alibaba ECS or Tencent CVM, told by which metadata server answers at the first fetch)`
        : `the token comes from crosscred issuer (${inputs.issuer.origin}), attesting this ${cloud === 'alibaba-ecs' ? 'Alibaba ECS' : 'Tencent CVM'} instance`,
    );

  const { value: kind, origin } = inputs.kind;
  if (kind === 'alibaba-ecs' || kind === 'tencent-cvm')
    return vm(kind) ?? { problem: `${origin} chooses ${kind}, but no --issuer-url names the crosscred issuer to attest to` };
  if (kind === 'exec') return exec() ?? { problem: `${origin} chooses exec, but no --token-command is given` };
  if (kind === 'file')
    return file() ?? { problem: `${origin} chooses file, but no token file is named (--token-file, ${ENV_FILES.map(([n]) => n).join(', ')})` };
  if (kind === 'kubernetes') {
    const k = kubernetes();
    if (k === undefined) return { problem: `${origin} chooses kubernetes, but KUBERNETES_SERVICE_HOST is not set: this is not a pod` };
    return k;
  }
  const found = exec() ?? file() ?? kubernetes() ?? vm('detect');
  if (found) return found;
  return { problem: `found no web-identity token; looked for, in order: ${DETECTION_ORDER.join('; ')}` };
}
