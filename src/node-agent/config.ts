import { readFileSync } from 'node:fs';
import { checkEndpoint, clip } from '../config/checks.js';
import type { StsConnectionConfig } from '../config/config.js';
import { LOG_LEVELS, type LogLevel } from '../config/config.js';
import type { Env, Layers } from '../config/layers.js';
import { resolveProxies } from '../config/resolve-proxies.js';
import { resolveStsConnection } from '../config/resolve-sts.js';
import type { ServeFlags } from '../config/settings.js';
import { deepFreeze } from '../core/deep-freeze.js';
import { CrosscredError } from '../core/errors.js';
import { type ListenAddress, parseListenSpec } from '../core/listen-address.js';
import { isAwsRegionName } from '../platform/aws/region.js';
import { roleArnParts } from '../platform/aws/role-arn.js';
import { DEFAULT_AUDIENCE, POD_IDENTITY_IPV4, POD_IDENTITY_IPV6 } from '../protocol/pod-identity.js';
import type { SessionTemplate } from '../protocol/workload-identity.js';
import { parsePodSessionTemplate } from './session-name.js';

/** The validated, frozen settings of `crosscred node-agent`. */
export interface NodeAgentConfig {
  readonly listeners: readonly ListenAddress[];
  /** Null with `--admin-listen off`. */
  readonly admin: ListenAddress | null;
  readonly allowedIssuers: readonly string[];
  readonly audience: string;
  readonly allowUnboundTokens: boolean;
  /** Each pod's session name; absent: `<namespace>.<pod>`. */
  readonly sessionNameTemplate?: SessionTemplate;
  /** Role ARN globs with `*`; empty: every role. */
  readonly allowedRoles: readonly string[];
  readonly region: string;
  readonly stsEndpoint?: string;
  readonly sts: StsConnectionConfig;
  readonly durationSeconds?: number;
  readonly maxEntries: number;
  readonly maxCacheBytes: number;
  readonly idleSeconds: number;
  readonly ratePerSecond: number;
  readonly rateBurst: number;
  /** Client addresses whose buckets are remembered. */
  readonly maxRateKeys: number;
  readonly logLevel: LogLevel;
}

/** The flags as node:util parseArgs returns them (see cli/node-agent.ts). */
export interface NodeAgentFlags {
  readonly listen?: readonly string[];
  readonly 'admin-listen'?: string;
  readonly 'allowed-issuer'?: readonly string[];
  readonly audience?: string;
  readonly 'allow-unbound-tokens'?: boolean;
  readonly 'session-name-template'?: string;
  readonly 'allowed-role'?: readonly string[];
  readonly region?: string;
  readonly 'sts-endpoint'?: string;
  readonly 'ca-bundle'?: string;
  readonly 'sts-connect-timeout-ms'?: string;
  readonly 'sts-timeout-ms'?: string;
  readonly 'duration-seconds'?: string;
  readonly 'max-entries'?: string;
  readonly 'max-cache-bytes'?: string;
  readonly 'idle-seconds'?: string;
  readonly 'rate-per-second'?: string;
  readonly 'rate-burst'?: string;
  readonly 'log-level'?: string;
}

/** The defaults, named once: the help text prints them from here. */
export const NODE_AGENT_DEFAULTS = {
  listen: [`${POD_IDENTITY_IPV4}:80`, `[${POD_IDENTITY_IPV6}]:80`],
  adminListen: '127.0.0.1:2703',
  audience: DEFAULT_AUDIENCE,
  maxEntries: 10_000,
  /**
   * About 4,000 entries of a cluster's RS256 tokens (about 8 KB each, token and overhead): many times
   * what a node's pods use (110 by default, a few roles each, twice around a token rotation), and
   * within the DaemonSet's memory limit beside the process's own 80 MB.
   */
  maxCacheBytes: 32 * 1024 * 1024,
  /** SDKs refetch 5–15 min before expiry, so an entry in use is read at least this often (§6 Q6). */
  idleSeconds: 900,
  ratePerSecond: 5,
  rateBurst: 20,
  maxRateKeys: 10_000,
  logLevel: 'info' as LogLevel,
} as const;

/** Ranges: wide enough for any real node, narrow enough that a typo is caught. */
const RANGES = {
  'duration-seconds': { min: 900, max: 43_200 },
  'max-entries': { min: 1, max: 1_000_000 },
  /** At least 1 MiB: an entry (a token of up to 16 KiB and its credentials) must always fit. */
  'max-cache-bytes': { min: 1024 * 1024, max: 16 * 1024 * 1024 * 1024 },
  'idle-seconds': { min: 60, max: 86_400 },
  'rate-per-second': { min: 0.01, max: 10_000 },
  'rate-burst': { min: 1, max: 100_000 },
} as const;

/**
 * Flags (and the AWS variables for region, STS endpoint, CA bundle and proxies) to a frozen
 * configuration, or CONFIG_INVALID listing every problem with the flag that has it.
 */
export function resolveNodeAgentConfig(flags: NodeAgentFlags, env: Env, readText: (path: string) => string = (p) => readFileSync(p, 'utf8')): NodeAgentConfig {
  const problems: string[] = [];

  const address = (flag: string, spec: string): ListenAddress | undefined => {
    const parsed = parseListenSpec(spec);
    if (typeof parsed === 'string') problems.push(`--${flag}: ${parsed}`);
    else if (parsed.role !== undefined) problems.push(`--${flag}: "${clip(spec)}" names a role; the node agent serves every role in the request path`);
    else return parsed.address;
    return undefined;
  };
  const listeners = (flags.listen?.length ? flags.listen : NODE_AGENT_DEFAULTS.listen).map((spec) => address('listen', spec)).filter((a) => a !== undefined);
  const adminSpec = flags['admin-listen'] ?? NODE_AGENT_DEFAULTS.adminListen;
  const admin = adminSpec === 'off' ? null : (address('admin-listen', adminSpec) ?? null);

  const allowedIssuers = [...new Set(flags['allowed-issuer'] ?? [])];
  if (allowedIssuers.length === 0) {
    problems.push("--allowed-issuer: required: the cluster's service-account issuer URL (kubectl get --raw /.well-known/openid-configuration); repeatable");
  }
  for (const issuer of allowedIssuers) {
    if (!URL.canParse(issuer)) problems.push(`--allowed-issuer: "${clip(issuer)}" is not a URL`);
  }

  const audience = flags.audience ?? NODE_AGENT_DEFAULTS.audience;
  if (audience.length === 0) problems.push('--audience: must not be empty');

  let sessionNameTemplate: SessionTemplate | undefined;
  const templateText = flags['session-name-template'];
  if (templateText !== undefined) {
    const parsed = parsePodSessionTemplate(templateText);
    if ('problem' in parsed) problems.push(`--session-name-template: "${clip(templateText)}" ${parsed.problem}`);
    else sessionNameTemplate = parsed;
  }

  const allowedRoles = [...(flags['allowed-role'] ?? [])];
  for (const glob of allowedRoles) {
    if (!glob.startsWith('arn:') || (!glob.includes('*') && roleArnParts(glob) === undefined)) {
      problems.push(`--allowed-role: "${clip(glob)}" is not a role ARN or an ARN pattern with * (arn:aws:iam::111122223333:role/team-a/*)`);
    }
  }

  const regionFlag = flags.region ?? env['AWS_REGION'] ?? env['AWS_DEFAULT_REGION'];
  const region = regionFlag ?? '';
  if (regionFlag === undefined || regionFlag === '') problems.push('--region: required (or AWS_REGION): the region whose STS the agent calls');
  else if (!isAwsRegionName(regionFlag)) problems.push(`--region: "${clip(regionFlag)}" is not an AWS region name such as eu-west-1`);

  const stsEndpoint = flags['sts-endpoint'] ?? nonEmpty(env['AWS_ENDPOINT_URL_STS']) ?? nonEmpty(env['AWS_ENDPOINT_URL']);
  if (stsEndpoint !== undefined) {
    const bad = checkEndpoint(stsEndpoint);
    if (bad) problems.push(`--sts-endpoint: ${bad}`);
  }

  // The STS connection settings and proxies are serve's, read by serve's own resolvers.
  const layers: Layers = {
    flags: {
      ...(flags['ca-bundle'] !== undefined ? { 'ca-bundle': flags['ca-bundle'] } : {}),
      ...(flags['sts-connect-timeout-ms'] !== undefined ? { 'sts-connect-timeout-ms': flags['sts-connect-timeout-ms'] } : {}),
      ...(flags['sts-timeout-ms'] !== undefined ? { 'sts-timeout-ms': flags['sts-timeout-ms'] } : {}),
    } as ServeFlags,
    env,
    file: {},
    fileOrigin: 'no config file',
  };
  const connection = resolveStsConnection(layers, readText);
  const proxies = resolveProxies(layers);
  problems.push(...connection.problems, ...proxies.problems);

  const number = (flag: keyof typeof RANGES, fallback: number, integer = true): number => {
    const text = flags[flag];
    if (text === undefined) return fallback;
    const value = Number(text);
    const { min, max } = RANGES[flag];
    if (text.trim() === '' || !Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < min || value > max) {
      problems.push(`--${flag}: "${clip(text)}" must be ${integer ? 'a whole number' : 'a number'} from ${min} to ${max}`);
      return fallback;
    }
    return value;
  };
  const durationSeconds = flags['duration-seconds'] === undefined ? undefined : number('duration-seconds', 3600);
  const maxEntries = number('max-entries', NODE_AGENT_DEFAULTS.maxEntries);
  const maxCacheBytes = number('max-cache-bytes', NODE_AGENT_DEFAULTS.maxCacheBytes);
  const idleSeconds = number('idle-seconds', NODE_AGENT_DEFAULTS.idleSeconds);
  const ratePerSecond = number('rate-per-second', NODE_AGENT_DEFAULTS.ratePerSecond, false);
  const rateBurst = number('rate-burst', NODE_AGENT_DEFAULTS.rateBurst);

  const logLevel = (flags['log-level'] ?? nonEmpty(env['CROSSCRED_LOG_LEVEL']) ?? NODE_AGENT_DEFAULTS.logLevel) as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) problems.push(`--log-level: "${clip(logLevel)}" is not one of ${LOG_LEVELS.join(', ')}`);

  if (problems.length > 0) {
    throw new CrosscredError('CONFIG_INVALID', `the node agent's settings have ${problems.length} problem(s):\n  - ${problems.join('\n  - ')}\n `);
  }
  return deepFreeze({
    listeners,
    admin,
    allowedIssuers,
    audience,
    allowUnboundTokens: flags['allow-unbound-tokens'] === true,
    ...(sessionNameTemplate !== undefined ? { sessionNameTemplate } : {}),
    allowedRoles,
    region,
    ...(stsEndpoint !== undefined ? { stsEndpoint } : {}),
    sts: { ...connection.value, ...proxies.value },
    ...(durationSeconds !== undefined ? { durationSeconds } : {}),
    maxEntries,
    maxCacheBytes,
    idleSeconds,
    ratePerSecond,
    rateBurst,
    maxRateKeys: NODE_AGENT_DEFAULTS.maxRateKeys,
    logLevel,
  });
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
