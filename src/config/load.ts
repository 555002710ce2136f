import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { CrosscredError, ErrorCodes } from '../core/errors.js';
import { accountIdOfRoleArn } from '../platform/aws/credentials.js';
import { deriveSessionName, VALID_SESSION_NAME } from '../platform/aws/session-name.js';
import {
  DEFAULT_ADMIN_LISTEN,
  DEFAULT_LISTEN,
  DEFAULT_STS_CONNECT_TIMEOUT_MS,
  DEFAULT_STS_RESPONSE_TIMEOUT_MS,
  LOG_LEVELS,
  type Config,
  type ListenerConfig,
  type LogLevel,
  type RoleConfig,
} from './config.js';
import { deepFreeze } from '../core/deep-freeze.js';
import { isHostLocalAddress, isLoopbackHost } from '../core/url-checks.js';
import { parseConfigFileText, type FileConfig } from './file-schema.js';
import { configInvalid, readConfigText } from './config-file.js';
import { formatAddress, parseListenSpec, type ListenAddress } from '../core/listen-address.js';
import { detectTokenSource, SOURCE_KINDS, type InClusterFacts, type SourceKind } from './detect-token-source.js';
import { inClusterDefaults, podFromEnv, SERVICE_ACCOUNT_MOUNT } from '../platform/kubernetes/in-cluster.js';

/**
 * Builds the one frozen Config from three layers, highest first:
 *   1. command-line flags,
 *   2. the config file (--config or CROSSCRED_CONFIG; YAML or JSON; the only way to name several roles),
 *   3. the environment variables AWS SDKs read for web identity (so an IRSA-style pod works unchanged).
 * Every value is checked once here; all problems are reported together, each naming the setting
 * and where it came from.
 */

/** The flags of `crosscred serve` (and of `credential-process` when it exchanges by itself). */
export interface ServeFlags {
  config?: string;
  'role-arn'?: string;
  'token-file'?: string;
  'role-session-name'?: string;
  'role-name'?: string;
  region?: string;
  'sts-endpoint'?: string;
  'ca-bundle'?: string;
  'duration-seconds'?: string;
  listen?: string[];
  'admin-listen'?: string;
  'auth-token-file'?: string;
  'allow-imdsv1'?: boolean;
  'disable-imds'?: boolean;
  'allow-remote'?: boolean;
  'allowed-host'?: string[];
  'log-level'?: string;
  'sts-connect-timeout-ms'?: string;
  'sts-timeout-ms'?: string;
  'token-source'?: string;
  'token-command'?: string;
  'token-command-timeout-ms'?: string;
  'token-audience'?: string;
  'token-expiration-seconds'?: string;
  'kubernetes-sa-dir'?: string;
  'issuer-url'?: string;
  'issuer-ca-bundle'?: string;
  'issuer-token-endpoint'?: string;
  'alibaba-attestation'?: string;
  'cloud-sts-endpoint'?: string;
}

/** A value together with the place it came from, for error messages. */
interface Sourced<T> {
  value: T;
  origin: string;
}

class Problems {
  readonly list: string[] = [];
  add(field: string, origin: string, problem: string): void {
    this.list.push(`${field} (${origin}): ${problem}`);
  }
}

export interface LoadInputs {
  readonly flags: ServeFlags;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Injected for tests; defaults to reading the file system. */
  readonly readText?: (path: string) => string;
  readonly hostname?: string;
}

/** Default audience of tokens requested from Kubernetes: the one AWS IRSA uses. */
export const DEFAULT_TOKEN_AUDIENCE = 'sts.amazonaws.com';
/** Default lifetime asked of a Kubernetes TokenRequest (the kubelet's default for projected tokens). */
export const DEFAULT_TOKEN_EXPIRATION_SECONDS = 3600;
export const DEFAULT_TOKEN_COMMAND_TIMEOUT_MS = 10_000;

/** The STS region used when none is configured: the partition's home region, from the role ARN. */
const PARTITION_DEFAULT_REGION: Record<string, string> = { aws: 'us-east-1', 'aws-cn': 'cn-north-1', 'aws-us-gov': 'us-gov-west-1' };

export function loadConfig(inputs: LoadInputs): Config {
  const { flags, env } = inputs;
  const readText = inputs.readText ?? ((path: string) => readFileSync(path, 'utf8'));
  const problems = new Problems();

  const configPath = pick([flags.config, '--config'], [env['CROSSCRED_CONFIG'], 'env CROSSCRED_CONFIG']);
  const file = configPath ? readConfigFile(configPath, readText) : {};
  const fileOrigin = configPath ? `config file ${configPath.value}` : 'config file';

  // Settings shared by every role unless a role overrides them.
  const region = pick(
    [flags.region, '--region'],
    [file.region, fileOrigin],
    [env['AWS_REGION'], 'env AWS_REGION'],
    [env['AWS_DEFAULT_REGION'], 'env AWS_DEFAULT_REGION'],
  );
  const stsEndpoint = pick(
    [flags['sts-endpoint'], '--sts-endpoint'],
    [file.stsEndpoint, fileOrigin],
    [env['AWS_ENDPOINT_URL_STS'], 'env AWS_ENDPOINT_URL_STS'],
    [env['AWS_ENDPOINT_URL'], 'env AWS_ENDPOINT_URL'],
  );
  const durationSeconds = pick(
    [numberFlag(flags['duration-seconds']), '--duration-seconds'],
    [file.durationSeconds, fileOrigin],
  );
  // Token source settings. Platform variables (AWS_WEB_IDENTITY_TOKEN_FILE, ACK, TKE, Kubernetes)
  // are read by detectTokenSource, after these.
  const tokenFile = pick([flags['token-file'], '--token-file'], [file.tokenFile, fileOrigin]);
  const tokenSourceKind = pick<string>([flags['token-source'], '--token-source'], [file.tokenSource, fileOrigin], [env['CROSSCRED_TOKEN_SOURCE'], 'env CROSSCRED_TOKEN_SOURCE']);
  if (tokenSourceKind && !(SOURCE_KINDS as readonly string[]).includes(tokenSourceKind.value)) {
    problems.add('token-source', tokenSourceKind.origin, `"${clip(tokenSourceKind.value)}" is not one of ${SOURCE_KINDS.join(', ')}`);
  }
  const tokenCommand = pick<readonly string[]>([parseCommandFlag(flags['token-command']), '--token-command'], [file.tokenCommand, fileOrigin]);
  if (tokenCommand && tokenCommand.value.length === 0) problems.add('token-command', tokenCommand.origin, 'must name a program: a path, or a JSON array ["program", "arg", …]');
  const commandTimeout = pick([numberFlag(flags['token-command-timeout-ms']), '--token-command-timeout-ms'], [file.tokenCommandTimeoutMs, fileOrigin]);
  if (commandTimeout && (!Number.isInteger(commandTimeout.value) || commandTimeout.value < 100 || commandTimeout.value > 120_000)) problems.add('token-command-timeout-ms', commandTimeout.origin, 'must be a whole number of milliseconds from 100 to 120000');
  const audience = pick([flags['token-audience'], '--token-audience'], [file.tokenAudience, fileOrigin]);
  if (audience && !/^[\x21-\x7e]{1,256}$/.test(audience.value)) problems.add('token-audience', audience.origin, 'must be 1-256 printable characters without spaces');
  const tokenExpiration = pick([numberFlag(flags['token-expiration-seconds']), '--token-expiration-seconds'], [file.tokenExpirationSeconds, fileOrigin]);
  if (tokenExpiration && (!Number.isInteger(tokenExpiration.value) || tokenExpiration.value < 600 || tokenExpiration.value > 86_400)) problems.add('token-expiration-seconds', tokenExpiration.origin, 'must be a whole number of seconds from 600 (the Kubernetes minimum) to 86400');
  // crosscred issuer, for VMs without an OIDC token (the alibaba-ecs and tencent-cvm sources).
  const issuerUrl = pick([flags['issuer-url'], '--issuer-url'], [file.issuerUrl, fileOrigin], [env['CROSSCRED_ISSUER_URL'], 'env CROSSCRED_ISSUER_URL']);
  if (issuerUrl) {
    const bad = checkEndpoint(issuerUrl.value);
    if (bad) problems.add('issuer-url', issuerUrl.origin, bad);
  }
  const issuerTokenEndpoint = pick([flags['issuer-token-endpoint'], '--issuer-token-endpoint'], [file.issuerTokenEndpoint, fileOrigin]);
  if (issuerTokenEndpoint) {
    const bad = checkEndpoint(issuerTokenEndpoint.value);
    if (bad) problems.add('issuer-token-endpoint', issuerTokenEndpoint.origin, bad);
  }
  const issuerCaPath = pick([flags['issuer-ca-bundle'], '--issuer-ca-bundle'], [file.issuerCaBundle, fileOrigin]);
  let issuerCaBundle: string | undefined;
  if (issuerCaPath) {
    try {
      issuerCaBundle = readText(issuerCaPath.value);
      if (!issuerCaBundle.includes('-----BEGIN CERTIFICATE-----')) problems.add('issuer-ca-bundle', issuerCaPath.origin, `${issuerCaPath.value} holds no PEM certificate`);
    } catch (err) {
      problems.add('issuer-ca-bundle', issuerCaPath.origin, `cannot read ${issuerCaPath.value} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  const alibabaAttestation = pick<string>([flags['alibaba-attestation'], '--alibaba-attestation'], [file.alibabaAttestation, fileOrigin]);
  if (alibabaAttestation && alibabaAttestation.value !== 'ecs-identity' && alibabaAttestation.value !== 'ram-role') {
    problems.add('alibaba-attestation', alibabaAttestation.origin, `"${clip(alibabaAttestation.value)}" is not one of ecs-identity, ram-role`);
  }
  const cloudStsEndpoint = pick([flags['cloud-sts-endpoint'], '--cloud-sts-endpoint'], [file.cloudStsEndpoint, fileOrigin]);
  if (cloudStsEndpoint) {
    const bad = checkEndpoint(cloudStsEndpoint.value);
    if (bad) problems.add('cloud-sts-endpoint', cloudStsEndpoint.origin, bad);
    else if (!/^https?:\/\/[^/?#@]+\/?$/.test(cloudStsEndpoint.value)) problems.add('cloud-sts-endpoint', cloudStsEndpoint.origin, 'must be just a scheme and host, such as https://sts.cn-hangzhou.aliyuncs.com (no path, query or user)');
  }
  const serviceAccountDir = pick([flags['kubernetes-sa-dir'], '--kubernetes-sa-dir'], [file.kubernetesServiceAccountDir, fileOrigin])?.value ?? SERVICE_ACCOUNT_MOUNT;
  let inCluster: InClusterFacts | undefined;
  const readIfPresent = (path: string): string | undefined => {
    try {
      return readText(path);
    } catch {
      return undefined;
    }
  };
  // The mounted files are read with the in-cluster module's own bounded reader, unless a test injects one.
  const inClusterOnce = () => (inCluster ??= inClusterDefaults(env, inputs.readText ? readIfPresent : undefined, serviceAccountDir));
  const pod = podFromEnv(env);
  const sessionName = pick(
    [flags['role-session-name'], '--role-session-name'],
    [file.sessionName, fileOrigin],
    [env['AWS_ROLE_SESSION_NAME'], 'env AWS_ROLE_SESSION_NAME'],
  );

  // Roles: from the file when it names them, else the single role of flags and environment.
  let rawRoles: Array<{
    index: number;
    origin: string;
    name?: Sourced<string>;
    roleArn?: Sourced<string>;
    tokenSource?: Sourced<string>;
    tokenFile?: Sourced<string>;
    tokenCommand?: Sourced<readonly string[]>;
    tokenAudience?: Sourced<string>;
    sessionName?: Sourced<string>;
    durationSeconds?: Sourced<number>;
    region?: Sourced<string>;
    stsEndpoint?: Sourced<string>;
  }>;
  if (file.roles) {
    for (const flag of ['role-arn', 'role-name'] as const) {
      if (flags[flag] !== undefined) problems.add(`--${flag}`, 'flag', `cannot be combined with the roles listed in ${fileOrigin}; edit the file instead`);
    }
    rawRoles = file.roles.map((r, index) => {
      // A role that says where its token comes from does not inherit the other kinds from the top
      // level: a top-level tokenCommand must not override a role's own tokenFile.
      const own = r.tokenSource !== undefined || r.tokenFile !== undefined || r.tokenCommand !== undefined;
      const where = `${fileOrigin} roles[${index}]`;
      return {
        index,
        origin: where,
        ...opt('name', r.name, where),
        roleArn: { value: r.roleArn, origin: where },
        ...opt('tokenSource', r.tokenSource, where, own ? undefined : tokenSourceKind),
        ...opt('tokenFile', r.tokenFile, where, own ? undefined : tokenFile),
        ...opt<'tokenCommand', readonly string[]>('tokenCommand', r.tokenCommand, where, own ? undefined : tokenCommand),
        ...opt('tokenAudience', r.tokenAudience, where, audience),
        ...opt('sessionName', r.sessionName, where, sessionName),
        ...opt('durationSeconds', r.durationSeconds, where, durationSeconds),
        ...opt('region', r.region, where, region),
        ...opt('stsEndpoint', r.stsEndpoint, where, stsEndpoint),
      };
    });
  } else {
    const roleArn = pick([flags['role-arn'], '--role-arn'], [env['AWS_ROLE_ARN'], 'env AWS_ROLE_ARN']);
    const name = pick([flags['role-name'], '--role-name']);
    rawRoles = [
      {
        index: 0,
        origin: 'flags and environment',
        ...(roleArn ? { roleArn } : {}),
        ...(name ? { name } : {}),
        ...(tokenSourceKind ? { tokenSource: tokenSourceKind } : {}),
        ...(tokenFile ? { tokenFile } : {}),
        ...(tokenCommand ? { tokenCommand } : {}),
        ...(audience ? { tokenAudience: audience } : {}),
        ...(sessionName ? { sessionName } : {}),
        ...(durationSeconds ? { durationSeconds } : {}),
        ...(region ? { region } : {}),
        ...(stsEndpoint ? { stsEndpoint } : {}),
      },
    ];
  }

  const roles: RoleConfig[] = [];
  const seenNames = new Set<string>();
  for (const raw of rawRoles) {
    const field = (f: string) => (file.roles ? `roles[${raw.index}].${f}` : f);
    if (!raw.roleArn) {
      problems.add(field('roleArn'), raw.origin, 'no role to assume: set AWS_ROLE_ARN, --role-arn, or roles in a --config file');
      continue;
    }
    const accountId = accountIdOfRoleArn(raw.roleArn.value);
    if (!accountId) problems.add(field('roleArn'), raw.roleArn.origin, `"${clip(raw.roleArn.value)}" is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)`);
    const name = raw.name?.value ?? raw.roleArn.value.split('/').pop() ?? '';
    if (!/^[\w+=,.@-]{1,64}$/.test(name)) problems.add(field('name'), raw.name?.origin ?? raw.roleArn.origin, `role name "${clip(name)}" must be 1–64 characters of letters, digits and +=,.@_-`);
    else if (seenNames.has(name)) problems.add(field('name'), raw.name?.origin ?? raw.roleArn.origin, `role name "${name}" is used twice; give each role a distinct name`);
    seenNames.add(name);
    if (raw.tokenFile && raw.tokenFile.value.trim() === '') problems.add(field('tokenFile'), raw.tokenFile.origin, 'is empty');
    const detected = detectTokenSource({
      kind: { value: (raw.tokenSource?.value ?? 'auto') as SourceKind, origin: raw.tokenSource?.origin ?? 'the default (auto)' },
      ...(raw.tokenFile ? { tokenFile: { value: raw.tokenFile.value.trim(), origin: raw.tokenFile.origin } } : {}),
      ...(raw.tokenCommand ? { tokenCommand: raw.tokenCommand } : {}),
      commandTimeoutMs: commandTimeout?.value ?? DEFAULT_TOKEN_COMMAND_TIMEOUT_MS,
      audience: raw.tokenAudience?.value ?? DEFAULT_TOKEN_AUDIENCE,
      expirationSeconds: tokenExpiration?.value ?? DEFAULT_TOKEN_EXPIRATION_SECONDS,
      env,
      inCluster: inClusterOnce,
      ...(pod ? { pod } : {}),
      ...(issuerUrl
        ? {
            issuer: {
              value: {
                url: issuerUrl.value,
                ...(issuerTokenEndpoint ? { tokenEndpointUrl: issuerTokenEndpoint.value } : {}),
                ...(issuerCaPath && issuerCaBundle ? { caBundlePath: issuerCaPath.value, caBundle: issuerCaBundle } : {}),
                audience: raw.tokenAudience?.value ?? DEFAULT_TOKEN_AUDIENCE,
              },
              origin: issuerUrl.origin,
            },
          }
        : {}),
      alibabaAttestation: alibabaAttestation?.value === 'ram-role' ? 'ram-role' : 'ecs-identity',
      ...(cloudStsEndpoint ? { cloudStsEndpoint: cloudStsEndpoint.value } : {}),
    });
    if ('problem' in detected) problems.add(field('tokenSource'), raw.tokenSource?.origin ?? 'auto-detection', `${detected.problem} (${ErrorCodes.TOKEN_SOURCE_NOT_FOUND.hint})`);
    const session = raw.sessionName?.value ?? deriveSessionName(inputs.hostname);
    if (!VALID_SESSION_NAME.test(session)) problems.add(field('sessionName'), raw.sessionName?.origin ?? 'derived', `"${clip(session)}" must be 2–64 characters of letters, digits and +=,.@_-`);
    const duration = raw.durationSeconds?.value;
    if (duration !== undefined && (!Number.isInteger(duration) || duration < 900 || duration > 43_200)) problems.add(field('durationSeconds'), raw.durationSeconds!.origin, `${duration} must be a whole number of seconds from 900 to 43200`);
    // Without a region, the partition's home region: the STS endpoint there serves every account
    // of the partition, so a pod on ACK or TKE needs nothing but the role ARN.
    const partition = /^arn:(aws[a-z-]*):/.exec(raw.roleArn.value)?.[1];
    const roleRegion = raw.region?.value ?? (partition ? PARTITION_DEFAULT_REGION[partition] : undefined);
    if (!roleRegion) problems.add(field('region'), raw.origin, 'no region: set AWS_REGION, --region, or region in the config file (the STS endpoint is regional)');
    else if (!/^[a-z]{2}(-[a-z]+)+-\d{1,2}$/.test(roleRegion)) problems.add(field('region'), raw.region?.origin ?? 'default', `"${clip(roleRegion)}" is not an AWS region name such as eu-west-1`);
    if (raw.stsEndpoint) {
      const bad = checkEndpoint(raw.stsEndpoint.value);
      if (bad) problems.add(field('stsEndpoint'), raw.stsEndpoint.origin, bad);
    }
    roles.push({
      name,
      roleArn: raw.roleArn.value,
      accountId: accountId ?? '',
      token: 'problem' in detected ? { source: { kind: 'file', path: '', platform: 'configured' }, reason: '', notes: [] } : detected,
      sessionName: session,
      region: roleRegion ?? '',
      ...(duration !== undefined ? { durationSeconds: duration } : {}),
      ...(raw.stsEndpoint ? { stsEndpoint: raw.stsEndpoint.value } : {}),
    });
  }

  // Listeners: each names the role its IMDS serves.
  const listenSpecs: Array<{ spec: string; role?: string; origin: string }> = flags.listen?.length
    ? flags.listen.map((spec) => ({ spec, origin: '--listen' }))
    : file.listen
      ? file.listen.map((l) => (typeof l === 'string' ? { spec: l, origin: fileOrigin } : { spec: l.address, ...(l.role ? { role: l.role } : {}), origin: fileOrigin }))
      : [{ spec: formatAddress(DEFAULT_LISTEN), origin: 'default' }];
  const allowRemote = flags['allow-remote'] ?? file.allowRemote ?? false;
  const listeners: ListenerConfig[] = [];
  const seenAddresses = new Set<string>();
  for (const l of listenSpecs) {
    const parsed = parseListenSpec(l.spec);
    if (typeof parsed === 'string') {
      problems.add('listen', l.origin, parsed);
      continue;
    }
    const roleName = l.role ?? parsed.role ?? (roles.length === 1 ? roles[0]!.name : undefined);
    if (!roleName) problems.add('listen', l.origin, `${formatAddress(parsed.address)} serves no role: with several roles, write ADDRESS=ROLE`);
    else if (!roles.some((r) => r.name === roleName)) problems.add('listen', l.origin, `${formatAddress(parsed.address)} names role "${clip(roleName)}", which is not configured (roles: ${roles.map((r) => r.name).join(', ')})`);
    if (!allowRemote && !isHostLocalAddress(parsed.address.host)) {
      problems.add('listen', l.origin, `${formatAddress(parsed.address)} can be reached from other machines, which would get this host's AWS credentials; listen on loopback or a link-local address, or pass --allow-remote if that is intended`);
    }
    const key = formatAddress(parsed.address);
    if (parsed.address.port !== 0 && seenAddresses.has(key)) problems.add('listen', l.origin, `${key} is listed twice`);
    seenAddresses.add(key);
    listeners.push({ ...parsed.address, role: roleName ?? '' });
  }

  // Admin listener: health, readiness and metrics.
  const adminSpec = pick([flags['admin-listen'], '--admin-listen'], [file.adminListen, fileOrigin]);
  let admin: ListenAddress | null = DEFAULT_ADMIN_LISTEN;
  if (adminSpec) {
    if (adminSpec.value === 'off') admin = null;
    else {
      const parsed = parseListenSpec(adminSpec.value);
      if (typeof parsed === 'string' || parsed.role !== undefined) problems.add('admin-listen', adminSpec.origin, typeof parsed === 'string' ? `${parsed}, or "off"` : 'takes no role');
      else admin = parsed.address;
    }
  }

  const authTokenFile = pick([flags['auth-token-file'], '--auth-token-file'], [file.authTokenFile, fileOrigin]);
  if (authTokenFile && authTokenFile.value.trim() === '') problems.add('auth-token-file', authTokenFile.origin, 'is empty');

  const allowImdsV1 = flags['allow-imdsv1'] ?? file.allowImdsV1 ?? false;
  const disableImds = pick([flags['disable-imds'], '--disable-imds'], [file.disableImds, fileOrigin]);
  if (disableImds?.value === true) {
    // Without IMDS only the secret-guarded container endpoint is left: a sidecar whose pod
    // neighbours must not read credentials without the secret.
    if (!authTokenFile) problems.add('disable-imds', disableImds.origin, 'leaves nothing to serve without --auth-token-file (the container endpoint)');
    if (allowImdsV1) problems.add('disable-imds', disableImds.origin, 'contradicts --allow-imdsv1');
  }

  const allowedHosts: string[] = [];
  const hostList = pick([flags['allowed-host']?.length ? flags['allowed-host'] : undefined, '--allowed-host'], [file.allowedHosts, fileOrigin]);
  for (const h of hostList?.value ?? []) {
    if (!/^[A-Za-z0-9.-]{1,253}$|^\[[0-9A-Fa-f:.]+\]$/.test(h)) problems.add('allowed-host', hostList!.origin, `"${clip(h)}" is not a host name`);
    else allowedHosts.push(h.toLowerCase());
  }

  const logLevel = pick([flags['log-level'], '--log-level'], [file.logLevel, fileOrigin], [env['CROSSCRED_LOG_LEVEL'], 'env CROSSCRED_LOG_LEVEL']);
  if (logLevel && !(LOG_LEVELS as readonly string[]).includes(logLevel.value)) problems.add('log-level', logLevel.origin, `"${clip(logLevel.value)}" is not one of ${LOG_LEVELS.join(', ')}`);

  const connectTimeout = pick([numberFlag(flags['sts-connect-timeout-ms']), '--sts-connect-timeout-ms'], [file.stsConnectTimeoutMs, fileOrigin]);
  const responseTimeout = pick([numberFlag(flags['sts-timeout-ms']), '--sts-timeout-ms'], [file.stsTimeoutMs, fileOrigin]);
  for (const [name, t] of [['sts-connect-timeout-ms', connectTimeout], ['sts-timeout-ms', responseTimeout]] as const) {
    if (t && (!Number.isInteger(t.value) || t.value < 100 || t.value > 120_000)) problems.add(name, t.origin, `${t.value} must be a whole number of milliseconds from 100 to 120000`);
  }

  const caPath = pick([flags['ca-bundle'], '--ca-bundle'], [file.caBundle, fileOrigin], [env['AWS_CA_BUNDLE'], 'env AWS_CA_BUNDLE']);
  let caBundle: string | undefined;
  if (caPath) {
    try {
      caBundle = readText(caPath.value);
      if (!caBundle.includes('-----BEGIN CERTIFICATE-----')) problems.add('ca-bundle', caPath.origin, `${caPath.value} holds no PEM certificate`);
    } catch (err) {
      problems.add('ca-bundle', caPath.origin, `cannot read ${caPath.value} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }

  // Either spelling; an empty variable counts as unset, as curl and undici read them.
  const proxies = {
    httpsProxy: pick([env['HTTPS_PROXY'] || undefined, 'env HTTPS_PROXY'], [env['https_proxy'], 'env https_proxy']),
    httpProxy: pick([env['HTTP_PROXY'] || undefined, 'env HTTP_PROXY'], [env['http_proxy'], 'env http_proxy']),
  };
  for (const proxy of Object.values(proxies)) {
    const bad = proxy && checkProxy(proxy.value);
    if (bad) problems.add(proxy.origin.replace('env ', ''), proxy.origin, `${bad} (the value is not shown: it may hold a password)`);
  }
  const noProxy = env['NO_PROXY'] || env['no_proxy'];

  if (problems.list.length > 0) {
    throw configInvalid('invalid configuration', problems.list);
  }

  const httpsProxy = proxies.httpsProxy && withScheme(proxies.httpsProxy.value);
  const httpProxy = proxies.httpProxy && withScheme(proxies.httpProxy.value);
  return deepFreeze<Config>({
    roles,
    listeners,
    admin,
    ...(authTokenFile ? { authTokenFile: authTokenFile.value.trim() } : {}),
    allowImdsV1,
    imdsEnabled: disableImds?.value !== true,
    allowedHosts,
    sts: {
      ...(caPath && caBundle ? { caBundlePath: caPath.value, caBundle } : {}),
      connectTimeoutMs: connectTimeout?.value ?? DEFAULT_STS_CONNECT_TIMEOUT_MS,
      responseTimeoutMs: responseTimeout?.value ?? DEFAULT_STS_RESPONSE_TIMEOUT_MS,
      ...(httpsProxy ? { httpsProxy } : {}),
      ...(httpProxy ? { httpProxy } : {}),
      ...(noProxy ? { noProxy } : {}),
    },
    logLevel: (logLevel?.value as LogLevel | undefined) ?? 'info',
  });
}

function readConfigFile(path: Sourced<string>, readText: (p: string) => string): FileConfig {
  const text = readConfigText(path.value, readText, (code) => `cannot read config file ${path.value} (${code}; from ${path.origin})`);
  const result = parseConfigFileText(text);
  if ('syntaxError' in result) throw new CrosscredError('CONFIG_INVALID', `config file ${path.value} is not valid YAML or JSON: ${result.syntaxError}`);
  if ('problems' in result) throw configInvalid(`config file ${path.value}`, result.problems);
  return result.data;
}

/** The first of the candidates that is set, with its origin. */
function pick<T>(...candidates: Array<[T | undefined, string]>): Sourced<T> | undefined {
  for (const [value, origin] of candidates) {
    if (value !== undefined && value !== '') return { value, origin };
  }
  return undefined;
}

function opt<K extends string, T>(key: K, value: T | undefined, origin: string, fallback?: Sourced<T>): Partial<Record<K, Sourced<T>>> {
  if (value !== undefined) return { [key]: { value, origin } } as Record<K, Sourced<T>>;
  if (fallback) return { [key]: fallback } as Record<K, Sourced<T>>;
  return {};
}

/** `--token-command` is a program path, or a JSON array of program and arguments (never a shell line). */
function parseCommandFlag(value: string | undefined): readonly string[] | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (!trimmed.startsWith('[')) return trimmed === '' ? [] : [trimmed];
  try {
    const parsed: unknown = JSON.parse(trimmed);
    return Array.isArray(parsed) && parsed.length > 0 && parsed.every((a) => typeof a === 'string' && a !== '') ? (parsed as string[]) : [];
  } catch {
    return [];
  }
}

function numberFlag(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  return /^\s*-?\d+(\.\d+)?\s*$/.test(value) ? Number(value) : NaN;
}

function checkEndpoint(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `"${clip(value)}" is not a URL`;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return `"${clip(value)}" must be an https URL`;
  if (url.username || url.password) return 'must not contain credentials';
  // The token goes out and AWS keys come back over this connection: plain HTTP only to this host
  // (a local test double or a local TLS-terminating forwarder).
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) return `"${clip(value)}" must use https (plain http is allowed only to loopback)`;
  return undefined;
}

/** Like curl, a proxy given without a scheme is taken as http://. */
function withScheme(proxy: string): string {
  return proxy.includes('://') ? proxy : `http://${proxy}`;
}

function checkProxy(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(withScheme(value));
  } catch {
    return 'is not a URL';
  }
  return url.protocol === 'http:' || url.protocol === 'https:' ? undefined : `uses ${url.protocol.replace(':', '')}; only http:// and https:// proxies are supported`;
}

/** Shortens a user-supplied value for an error message. */
function clip(value: string): string {
  return value.length > 80 ? `${value.slice(0, 77)}...` : value;
}
