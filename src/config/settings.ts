import { CLOUDS, type CloudName } from '../core/clouds.js';
import { formatAddress } from '../core/listen-address.js';
import { SERVICE_ACCOUNT_MOUNT } from '../platform/kubernetes/in-cluster.js';
import { DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN, DEFAULT_STS_CONNECT_TIMEOUT_MS, DEFAULT_STS_RESPONSE_TIMEOUT_MS, LOG_LEVELS } from './config.js';
import { FOREIGN_VARIABLES, SOURCE_KINDS, TOKEN_FILE_VARIABLES } from './detect-token-source.js';

/**
 * Every setting of `crosscred serve`, as one table: its flag, its config-file keys, the environment
 * variables read for it, which layer wins, and its default. `loadConfig` (and so `doctor`,
 * `trust-policy`, `credential-process` and `demo`, which call it) reads its settings through this
 * table: the resolvers pick values in the order `precedence` gives and fall back to `default`.
 * Checks that depend on several settings stay in the resolvers (resolve-*.ts).
 */

/** Where a value can come from. */
export type Layer = 'flag' | 'file' | 'env';

export type Section = 'general' | 'roles' | 'token-source' | 'sts' | 'proxies' | 'listeners' | 'logging';

/**
 * How a value is written. On the command line `text`, `number` and `command` are one string,
 * `switch` a boolean flag, `list` and `listen` a repeatable flag.
 */
export type ValueType = 'text' | 'number' | 'switch' | 'list' | 'command' | 'listen';

/** A listener as the config file may write it: `HOST:PORT[=ROLE]`, or an address with a role. */
export type ListenEntry = string | { readonly address: string; readonly role?: string };

/** The value each type resolves to. */
export interface ValueTypes {
  text: string;
  number: number;
  switch: boolean;
  list: readonly string[];
  /** Program and arguments (a flag holds a path, or a JSON array). */
  command: readonly string[];
  listen: readonly ListenEntry[];
}

/** What the command-line parser hands over for each type (see cli/serve-options.ts). */
export interface FlagInputs {
  text: string;
  number: string;
  switch: boolean;
  list: string[];
  command: string;
  listen: string[];
}

/**
 * How a role of the config file's `roles` gets this setting: from its own key, else
 * - `always`: from the top-level value (flag, file or environment);
 * - `unless-role-names-its-token`: from the top-level value, unless the role names any token kind
 *   of its own (a top-level tokenCommand must not override a role's own tokenFile);
 * - `never`: not at all; the flag is refused next to roles in the file, the variables not read.
 */
export type RoleInheritance = 'always' | 'unless-role-names-its-token' | 'never';

export type SettingDefault =
  | { readonly value: unknown }
  /** The STS region of a role with none: its ARN's partition's home region. */
  | { readonly byPartition: Readonly<Record<string, string>> }
  /** Computed by the resolver from other settings; the text says how, for people. */
  | { readonly derived: string }
  /** One value per cloud the role lives in (the audience its STS expects). */
  | { readonly byCloud: Readonly<Record<CloudName, string>> };

export interface SettingSpec {
  readonly section: Section;
  readonly type: ValueType;
  /** The command-line flag, without `--`. */
  readonly flag?: string;
  /** The key at the top of the config file. */
  readonly file?: string;
  /** The key inside each of the config file's `roles` (set even when empty), and what a role inherits. */
  readonly role?: { readonly key: string; readonly inherits: RoleInheritance };
  /** The variables read for it, in this order, at the `env` place of `precedence`: for an AWS role, or any role without `envByCloud`. */
  readonly env?: readonly string[];
  /**
   * For a role in Alibaba Cloud or Tencent Cloud, the variables read instead of `env`: that cloud's
   * own names, as its SDKs read them (none when a cloud is absent). An AWS variable never
   * configures a role of another cloud, nor the other way round.
   */
  readonly envByCloud?: { readonly alibaba?: readonly string[]; readonly tencent?: readonly string[] };
  /** The layers that are read, the first one set winning. An empty string counts as unset. */
  readonly precedence: readonly Layer[];
  /** Variables that supply it after every layer above, read by token-source detection or the Kubernetes platform code. */
  readonly alsoReads?: readonly string[];
  /** Variables of other clouds that look related and are deliberately not used for an AWS role (start-up and doctor notes say so). */
  readonly ignores?: readonly string[];
  readonly default?: SettingDefault;
  readonly choices?: readonly string[];
  /** Inclusive bounds of a whole number; `unit` and `minNote` word the message. */
  readonly range?: { readonly min: number; readonly max: number; readonly unit: 'seconds' | 'milliseconds'; readonly minNote?: string };
}

const FLAG_FILE_ENV = ['flag', 'file', 'env'] as const;
const FLAG_FILE = ['flag', 'file'] as const;
const FLAG_ENV = ['flag', 'env'] as const;
const FLAG_ONLY = ['flag'] as const;
const ENV_ONLY = ['env'] as const;

/** The variables the Kubernetes platform code reads for a TokenRequest (platform/kubernetes/in-cluster.ts). */
const KUBERNETES_VARIABLES = ['KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT', 'POD_NAME', 'POD_UID'] as const;

/** The settings, in the order of `crosscred serve --help`. */
export const SERVE_SETTINGS = {
  // Role
  cloud: {
    section: 'roles',
    type: 'text',
    flag: 'cloud',
    file: 'cloud',
    role: { key: 'cloud', inherits: 'always' },
    env: ['CROSSCRED_CLOUD'],
    precedence: FLAG_FILE_ENV,
    choices: CLOUDS,
    default: { value: 'aws' },
  },
  roleArn: {
    section: 'roles',
    type: 'text',
    flag: 'role-arn',
    role: { key: 'roleArn', inherits: 'never' },
    env: ['AWS_ROLE_ARN'],
    envByCloud: { alibaba: ['ALIBABA_CLOUD_ROLE_ARN'], tencent: ['TKE_ROLE_ARN'] },
    precedence: FLAG_ENV,
    ignores: ['ALIBABA_CLOUD_ROLE_ARN', 'TKE_ROLE_ARN'],
  },
  oidcProviderArn: {
    section: 'roles',
    type: 'text',
    flag: 'oidc-provider-arn',
    file: 'oidcProviderArn',
    role: { key: 'oidcProviderArn', inherits: 'always' },
    envByCloud: { alibaba: ['ALIBABA_CLOUD_OIDC_PROVIDER_ARN'] },
    precedence: FLAG_FILE_ENV,
    default: { derived: 'none: required for an Alibaba role (the RAM OIDC provider, acs:ram::<uid>:oidc-provider/<name>)' },
  },
  providerId: {
    section: 'roles',
    type: 'text',
    flag: 'provider-id',
    file: 'providerId',
    role: { key: 'providerId', inherits: 'always' },
    envByCloud: { tencent: ['TKE_PROVIDER_ID'] },
    precedence: FLAG_FILE_ENV,
    default: { derived: "none: required for a Tencent role (the CAM OIDC identity provider's name)" },
  },
  roleName: {
    section: 'roles',
    type: 'text',
    flag: 'role-name',
    role: { key: 'name', inherits: 'never' },
    precedence: FLAG_ONLY,
    default: { derived: "the role ARN's last segment" },
  },
  sessionName: {
    section: 'roles',
    type: 'text',
    flag: 'role-session-name',
    file: 'sessionName',
    role: { key: 'sessionName', inherits: 'always' },
    env: ['AWS_ROLE_SESSION_NAME'],
    envByCloud: { alibaba: ['ALIBABA_CLOUD_ROLE_SESSION_NAME'] },
    precedence: FLAG_FILE_ENV,
    default: { derived: 'crosscred-<hostname>, made to fit STS (2-64 of [\\w+=,.@-])' },
  },
  durationSeconds: {
    section: 'roles',
    type: 'number',
    flag: 'duration-seconds',
    file: 'durationSeconds',
    role: { key: 'durationSeconds', inherits: 'always' },
    precedence: FLAG_FILE,
    range: { min: 900, max: 43_200, unit: 'seconds' },
    default: { derived: "not sent: the role's own maximum session duration applies" },
  },

  // Token source
  tokenSource: {
    section: 'token-source',
    type: 'text',
    flag: 'token-source',
    file: 'tokenSource',
    role: { key: 'tokenSource', inherits: 'unless-role-names-its-token' },
    env: ['CROSSCRED_TOKEN_SOURCE'],
    precedence: FLAG_FILE_ENV,
    choices: SOURCE_KINDS,
    default: { value: 'auto' },
  },
  tokenFile: {
    section: 'token-source',
    type: 'text',
    flag: 'token-file',
    file: 'tokenFile',
    role: { key: 'tokenFile', inherits: 'unless-role-names-its-token' },
    precedence: FLAG_FILE,
    alsoReads: TOKEN_FILE_VARIABLES,
    ignores: ['ALIBABA_CLOUD_OIDC_PROVIDER_ARN', 'TKE_PROVIDER_ID'],
  },
  tokenCommand: {
    section: 'token-source',
    type: 'command',
    flag: 'token-command',
    file: 'tokenCommand',
    role: { key: 'tokenCommand', inherits: 'unless-role-names-its-token' },
    precedence: FLAG_FILE,
  },
  tokenCommandTimeoutMs: {
    section: 'token-source',
    type: 'number',
    flag: 'token-command-timeout-ms',
    file: 'tokenCommandTimeoutMs',
    precedence: FLAG_FILE,
    range: { min: 100, max: 120_000, unit: 'milliseconds' },
    default: { value: 10_000 },
  },
  tokenCommandEnv: {
    section: 'token-source',
    type: 'list',
    flag: 'token-command-env',
    file: 'tokenCommandEnv',
    precedence: FLAG_FILE,
    default: { value: [] },
  },
  tokenAudience: {
    section: 'token-source',
    type: 'text',
    flag: 'token-audience',
    file: 'tokenAudience',
    role: { key: 'tokenAudience', inherits: 'always' },
    precedence: FLAG_FILE,
    default: { byCloud: { aws: 'sts.amazonaws.com', alibaba: 'sts.aliyuncs.com', tencent: 'sts.cloud.tencent.com' } },
  },
  issuerUrl: {
    section: 'token-source',
    type: 'text',
    flag: 'issuer-url',
    file: 'issuerUrl',
    env: ['CROSSCRED_ISSUER_URL'],
    precedence: FLAG_FILE_ENV,
  },
  issuerCaBundle: { section: 'token-source', type: 'text', flag: 'issuer-ca-bundle', file: 'issuerCaBundle', precedence: FLAG_FILE },
  issuerTokenEndpoint: {
    section: 'token-source',
    type: 'text',
    flag: 'issuer-token-endpoint',
    file: 'issuerTokenEndpoint',
    precedence: FLAG_FILE,
    default: { derived: 'the issuer URL + /token' },
  },
  instanceSecretFile: {
    section: 'token-source',
    type: 'text',
    flag: 'instance-secret-file',
    file: 'instanceSecretFile',
    precedence: FLAG_FILE,
    default: { derived: '/var/lib/crosscred/instance-secret when /var/lib/crosscred exists (the systemd unit makes it); else no secret is sent' },
  },
  alibabaAttestation: {
    section: 'token-source',
    type: 'text',
    flag: 'alibaba-attestation',
    file: 'alibabaAttestation',
    precedence: FLAG_FILE,
    choices: ['ecs-identity', 'ram-role'],
    default: { value: 'ecs-identity' },
  },
  cloudStsEndpoint: {
    section: 'token-source',
    type: 'text',
    flag: 'cloud-sts-endpoint',
    file: 'cloudStsEndpoint',
    precedence: FLAG_FILE,
    default: { derived: "the cloud's global STS endpoint" },
  },
  tokenExpirationSeconds: {
    section: 'token-source',
    type: 'number',
    flag: 'token-expiration-seconds',
    file: 'tokenExpirationSeconds',
    precedence: FLAG_FILE,
    range: { min: 600, max: 86_400, unit: 'seconds', minNote: 'the Kubernetes minimum' },
    default: { value: 3_600 },
  },
  kubernetesServiceAccountDir: {
    section: 'token-source',
    type: 'text',
    flag: 'kubernetes-sa-dir',
    file: 'kubernetesServiceAccountDir',
    precedence: FLAG_FILE,
    alsoReads: KUBERNETES_VARIABLES,
    default: { value: SERVICE_ACCOUNT_MOUNT },
  },

  // STS
  region: {
    section: 'sts',
    type: 'text',
    flag: 'region',
    file: 'region',
    role: { key: 'region', inherits: 'always' },
    env: ['AWS_REGION', 'AWS_DEFAULT_REGION'],
    envByCloud: { alibaba: ['ALIBABA_CLOUD_STS_REGION'], tencent: ['TKE_REGION'] },
    precedence: FLAG_FILE_ENV,
    ignores: ['TKE_REGION'],
    // Its STS endpoint serves every account of the partition, so a pod needs nothing but the role ARN.
    // An Alibaba role without one uses the global endpoint; a Tencent role must name one.
    default: { byPartition: { aws: 'us-east-1', 'aws-cn': 'cn-north-1', 'aws-us-gov': 'us-gov-west-1' } },
  },
  vpcEndpoint: {
    section: 'sts',
    type: 'switch',
    flag: 'vpc-endpoint',
    file: 'vpcEndpoint',
    role: { key: 'vpcEndpoint', inherits: 'always' },
    envByCloud: { alibaba: ['ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED'] },
    precedence: FLAG_FILE_ENV,
    default: { value: false },
  },
  stsEndpoint: {
    section: 'sts',
    type: 'text',
    flag: 'sts-endpoint',
    file: 'stsEndpoint',
    role: { key: 'stsEndpoint', inherits: 'always' },
    env: ['AWS_ENDPOINT_URL_STS', 'AWS_ENDPOINT_URL'],
    envByCloud: {},
    precedence: FLAG_FILE_ENV,
    default: {
      derived: "the region's STS endpoint (Alibaba: sts[-vpc].<region>.aliyuncs.com, or sts.aliyuncs.com without a region; Tencent: sts.tencentcloudapi.com)",
    },
  },
  caBundle: { section: 'sts', type: 'text', flag: 'ca-bundle', file: 'caBundle', env: ['AWS_CA_BUNDLE'], precedence: FLAG_FILE_ENV },
  stsConnectTimeoutMs: {
    section: 'sts',
    type: 'number',
    flag: 'sts-connect-timeout-ms',
    file: 'stsConnectTimeoutMs',
    precedence: FLAG_FILE,
    range: { min: 100, max: 120_000, unit: 'milliseconds' },
    default: { value: DEFAULT_STS_CONNECT_TIMEOUT_MS },
  },
  stsTimeoutMs: {
    section: 'sts',
    type: 'number',
    flag: 'sts-timeout-ms',
    file: 'stsTimeoutMs',
    precedence: FLAG_FILE,
    range: { min: 100, max: 120_000, unit: 'milliseconds' },
    default: { value: DEFAULT_STS_RESPONSE_TIMEOUT_MS },
  },

  // Proxies for the STS connection: either spelling, upper case first, as curl and undici read them.
  httpsProxy: { section: 'proxies', type: 'text', env: ['HTTPS_PROXY', 'https_proxy'], precedence: ENV_ONLY },
  httpProxy: { section: 'proxies', type: 'text', env: ['HTTP_PROXY', 'http_proxy'], precedence: ENV_ONLY },
  noProxy: { section: 'proxies', type: 'text', env: ['NO_PROXY', 'no_proxy'], precedence: ENV_ONLY },

  // Serving
  listen: {
    section: 'listeners',
    type: 'listen',
    flag: 'listen',
    file: 'listen',
    precedence: FLAG_FILE,
    default: { value: [formatAddress(DEFAULT_LISTEN)] },
  },
  adminListen: {
    section: 'listeners',
    type: 'text',
    flag: 'admin-listen',
    file: 'adminListen',
    precedence: FLAG_FILE,
    default: { value: formatAddress(DEFAULT_ADMIN_LISTEN) },
  },
  authTokenFile: { section: 'listeners', type: 'text', flag: 'auth-token-file', file: 'authTokenFile', precedence: FLAG_FILE },
  allowImdsV1: { section: 'listeners', type: 'switch', flag: 'allow-imdsv1', file: 'allowImdsV1', precedence: FLAG_FILE, default: { value: false } },
  disableImds: { section: 'listeners', type: 'switch', flag: 'disable-imds', file: 'disableImds', precedence: FLAG_FILE, default: { value: false } },
  allowRemote: { section: 'listeners', type: 'switch', flag: 'allow-remote', file: 'allowRemote', precedence: FLAG_FILE, default: { value: false } },
  allowedHosts: { section: 'listeners', type: 'list', flag: 'allowed-host', file: 'allowedHosts', precedence: FLAG_FILE, default: { value: [] } },

  // General
  config: { section: 'general', type: 'text', flag: 'config', env: ['CROSSCRED_CONFIG'], precedence: FLAG_ENV },
  logLevel: {
    section: 'logging',
    type: 'text',
    flag: 'log-level',
    file: 'logLevel',
    env: ['CROSSCRED_LOG_LEVEL'],
    precedence: FLAG_FILE_ENV,
    choices: LOG_LEVELS,
    default: { value: 'info' },
  },
} as const satisfies Record<string, SettingSpec>;

type Settings = typeof SERVE_SETTINGS;
export type SettingId = keyof Settings;
export type SettingValue<Id extends SettingId> = ValueTypes[Settings[Id]['type']];

/** The flags of `crosscred serve` (and of the commands that share its options), as the parser returns them. */
export type ServeFlags = {
  -readonly [Id in SettingId as Settings[Id] extends { readonly flag: infer F extends string } ? F : never]?: FlagInputs[Settings[Id]['type']];
};

/** The setting's spec, widened for code that walks the table. */
export function settingSpec(id: SettingId): SettingSpec {
  return SERVE_SETTINGS[id];
}

export const SETTING_IDS = Object.keys(SERVE_SETTINGS) as SettingId[];

/** Every variable of another cloud that crosscred notes and deliberately does not use. */
export const IGNORED_VARIABLES: readonly string[] = Object.keys(FOREIGN_VARIABLES);

/** One line of the settings reference, in the words of the help text and the table of docs/configuration.md. */
export interface SettingReference {
  readonly id: SettingId;
  readonly section: Section;
  /** `--flag`, or none for a setting only the environment sets. */
  readonly flag?: string;
  /** Config-file keys: the top-level one, and `roles[].key`. */
  readonly fileKeys: readonly string[];
  /** Variables read, in order: the setting's own, then those read by detection or the platform code. */
  readonly env: readonly string[];
  /** For a role of Alibaba Cloud or Tencent Cloud, the variables read instead of `env`. */
  readonly envByCloud: { readonly alibaba?: readonly string[]; readonly tencent?: readonly string[] };
  readonly ignores: readonly string[];
  /** For example `flag > file > env`. */
  readonly precedence: string;
  readonly default?: string;
}

/** The table as rows a test can hold against the help text or a docs page. */
export function settingsReference(): SettingReference[] {
  return SETTING_IDS.map((id) => {
    const spec = settingSpec(id);
    const fileKeys = [...(spec.file ? [spec.file] : []), ...(spec.role ? [`roles[].${spec.role.key}`] : [])];
    const text = spec.default && describeDefault(spec.default);
    return {
      id,
      section: spec.section,
      ...(spec.flag ? { flag: `--${spec.flag}` } : {}),
      fileKeys,
      env: [...(spec.env ?? []), ...(spec.alsoReads ?? [])],
      envByCloud: spec.envByCloud ?? {},
      ignores: spec.ignores ?? [],
      precedence: spec.precedence.join(' > '),
      ...(text ? { default: text } : {}),
    };
  });
}

function describeDefault(d: SettingDefault): string {
  if ('derived' in d) return d.derived;
  if ('byCloud' in d)
    return Object.entries(d.byCloud)
      .map(([cloud, value]) => `${value} (${cloud})`)
      .join(', ');
  if ('byPartition' in d)
    return `the role ARN's partition's home region (${Object.entries(d.byPartition)
      .map(([p, r]) => `${r} for ${p}`)
      .join(', ')})`;
  return Array.isArray(d.value) ? d.value.join(', ') : String(d.value);
}
