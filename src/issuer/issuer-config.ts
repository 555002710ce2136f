import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type * as ZodModule from 'zod';
import { LOG_LEVELS, type LogLevel } from '../config/config.js';
import { configInvalid, lazySchema, parseConfigText, readConfigText, type Zod } from '../config/config-file.js';
import { deepFreeze } from '../core/deep-freeze.js';
import type { ListenAddress } from '../core/listen-address.js';
import { formatAddress, parseListenSpec } from '../core/listen-address.js';
import { endpointUrlProblem, isLoopbackHost, issuerUrlProblem } from '../core/url-checks.js';
import { MAX_SESSION_TAGS, tagKeyProblem } from '../platform/aws/session-tags.js';
import { ISSUER_PATHS } from '../protocol/issuer-token-exchange.js';
import { type ClientRateSettings, DEFAULT_CLIENT_RATE } from './admission.js';
import type { KeyFileConfig } from './keys.js';
import { ANY, ATTESTATION_KINDS, type AttestationKind, FIRST_USE_KINDS, KIND_DIMENSIONS, type KindPolicy, SESSION_NAMED_INSTANCE_KINDS } from './policy.js';
import { type SessionTagRule, tagSourceProblem } from './session-tags.js';
import { DEFAULT_STATE, stateSettingProblem } from './state/create-state-store.js';
import { DEFAULT_TOKEN_LIFETIME_SECONDS, MAX_TOKEN_LIFETIME_SECONDS, MIN_TOKEN_LIFETIME_SECONDS } from './token-minter.js';

/**
 * `crosscred issuer`'s configuration: one YAML or JSON file (`--config`), checked by a schema and
 * cross-field rules, every problem reported at once, then frozen. Relative file paths in it are
 * taken relative to the file's own directory. Read, parsed and reported the way serve's config file
 * is (config/config-file.ts): zod and yaml load on first use, problems name the field.
 */

export const DEFAULT_ISSUER_LISTEN = '127.0.0.1:8470';
export const DEFAULT_ISSUER_ADMIN_LISTEN = '127.0.0.1:8471';
export const DEFAULT_AUDIENCE = 'sts.amazonaws.com';
/** Time allowed for one attestation (an attestor may call the cloud's STS), in ms. */
export const DEFAULT_ATTESTATION_TIMEOUT_MS = 10_000;
/**
 * Attestations of the CPU-only kind in flight at once; a kind that calls its cloud's STS gets at
 * most as many as its attestor's STS connections (admission.ts). Beyond it: 503 at once.
 */
export const DEFAULT_MAX_CONCURRENT_ATTESTATIONS = 64;

export interface AttestorSettings {
  readonly alibabaEcsIdentity?: { readonly signingCertificateFiles: readonly string[] };
  readonly alibabaRamRole?: { readonly extraStsEndpoints: readonly string[] };
  readonly tencentCamRole?: { readonly extraStsEndpoints: readonly string[] };
}

/**
 * Token requests per attested identity (state-keys.ts says what an identity is): a token bucket,
 * so one instance in a restart loop cannot keep the issuer, and the cloud STS behind its
 * attestors, busy. A VM source renews its JWT well before it expires, a few times an hour.
 */
export interface RateLimitSettings {
  /** Requests an identity may make at once. */
  readonly burst: number;
  /** Sustained requests per minute per identity. */
  readonly perMinute: number;
  /** Buckets kept at once with `state: memory` (one account may hold half); a refilled bucket is dropped first. */
  readonly maxIdentities: number;
}

export const DEFAULT_RATE_LIMIT: RateLimitSettings = { burst: 10, perMinute: 6, maxIdentities: 100_000 };

/** Attestations remembered against replay with `state: memory` (one account may hold half). */
export const DEFAULT_REPLAY_ENTRIES = 100_000;

export interface IssuerConfig {
  /** The file it came from (for reloads and messages). */
  readonly configPath: string;
  /** The issuer URL: the JWTs' `iss`, the IAM OIDC provider URL; discovery lives under it. */
  readonly publicUrl: string;
  /** Where the token endpoint is reached, as advertised in discovery (default publicUrl + /token). */
  readonly tokenEndpointUrl: string;
  readonly listen: ListenAddress;
  readonly admin: ListenAddress | null;
  readonly tls?: { readonly certFile: string; readonly keyFile: string };
  /** Plain HTTP on a non-loopback address (behind a TLS-terminating load balancer). */
  readonly allowPlainHttp: boolean;
  readonly keys: readonly KeyFileConfig[];
  /** The audiences a token may carry; the first is the default. */
  readonly audiences: readonly string[];
  readonly tokenLifetimeSeconds: number;
  readonly attestationTimeoutMs: number;
  readonly maxConcurrentAttestations: number;
  readonly rateLimit: RateLimitSettings;
  /** Token requests per client address (the socket's remote address), checked before any work. */
  readonly clientRateLimit: ClientRateSettings;
  readonly replayCacheEntries: number;
  /** Where replay claims, rate limits and first-use records live: `memory` (one replica) or a redis[s]:// URL (a fleet). */
  readonly state: string;
  /** PEM CA bundle for the attestors' own calls to the clouds' STS. */
  readonly caBundleFile?: string;
  readonly logLevel: LogLevel;
  readonly attestors: AttestorSettings;
  readonly policy: Readonly<Partial<Record<AttestationKind, KindPolicy>>>;
}

function buildSchema(z: Zod) {
  const idList = z.array(z.string().min(1).max(128)).max(10_000);
  const kindPolicy = z.strictObject({
    accounts: idList,
    regions: idList.optional(),
    roles: idList.optional(),
    instanceIds: idList.optional(),
    sessionTags: z.record(z.string(), z.string()).optional(),
    transitiveTagKeys: z.array(z.string()).optional(),
    trustOnFirstUse: z.boolean().optional(),
  });
  const endpoints = z.array(z.string().min(1)).max(100);
  return z.strictObject({
    publicUrl: z.string(),
    tokenEndpointUrl: z.string().optional(),
    listen: z.string().optional(),
    adminListen: z.string().optional(),
    tls: z.strictObject({ certFile: z.string().min(1), keyFile: z.string().min(1) }).optional(),
    allowPlainHttp: z.boolean().optional(),
    keys: z.array(z.strictObject({ file: z.string().min(1), active: z.boolean().optional() })).min(1),
    audiences: z.array(z.string()).min(1).max(100).optional(),
    // Ranges are checked with the cross-field rules below, so that they are reported together.
    tokenLifetimeSeconds: z.number().optional(),
    attestationTimeoutMs: z.number().optional(),
    maxConcurrentAttestations: z.number().optional(),
    rateLimit: z.strictObject({ burst: z.number().optional(), perMinute: z.number().optional(), maxIdentities: z.number().optional() }).optional(),
    clientRateLimit: z.strictObject({ burst: z.number().optional(), perSecond: z.number().optional(), maxClients: z.number().optional() }).optional(),
    replayCacheEntries: z.number().optional(),
    state: z.string().max(2048).optional(),
    caBundleFile: z.string().min(1).optional(),
    logLevel: z.enum(LOG_LEVELS).optional(),
    attestors: z
      .strictObject({
        alibabaEcsIdentity: z.strictObject({ signingCertificateFiles: z.array(z.string().min(1)).min(1).max(20) }).optional(),
        alibabaRamRole: z.strictObject({ extraStsEndpoints: endpoints.optional() }).optional(),
        tencentCamRole: z.strictObject({ extraStsEndpoints: endpoints.optional() }).optional(),
      })
      .optional(),
    policy: z
      .strictObject({
        alibabaEcsIdentity: kindPolicy.optional(),
        alibabaRamRole: kindPolicy.optional(),
        tencentCamRole: kindPolicy.optional(),
      })
      .optional(),
  });
}

type FileIssuerConfig = ZodModule.z.infer<ReturnType<typeof buildSchema>>;
const issuerSchema = lazySchema(buildSchema);

/** Reads and checks the issuer's config file; throws CONFIG_FILE_UNREADABLE or CONFIG_INVALID (exit 78). */
export function loadIssuerConfig(path: string, readText: (p: string) => string = (p) => readFileSync(p, 'utf8')): IssuerConfig {
  const text = readConfigText(path, readText, (code) => `cannot read issuer config file ${path} (${code})`);
  const result = parseIssuerConfigText(text, path);
  if ('problems' in result) throw configInvalid(`issuer config file ${path}`, result.problems);
  return result.config;
}

/** Parses and checks the config text; `path` is where relative paths are resolved from. */
export function parseIssuerConfigText(text: string, path: string): { config: IssuerConfig } | { problems: string[] } {
  const parsed = parseConfigText(text, issuerSchema);
  // Unlike serve, a syntax error is one problem among the list: the issuer reports them all alike.
  if ('syntaxError' in parsed) return { problems: [`not valid YAML or JSON: ${parsed.syntaxError}`] };
  if ('problems' in parsed) return parsed;
  return resolveConfig(parsed.data, path);
}

function resolveConfig(file: FileIssuerConfig, path: string): { config: IssuerConfig } | { problems: string[] } {
  const problems: string[] = [];
  const base = dirname(resolve(path));
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));

  const urlProblem = issuerUrlProblem(file.publicUrl);
  if (urlProblem) problems.push(`publicUrl: ${JSON.stringify(file.publicUrl.slice(0, 200))} ${urlProblem}`);
  const tokenEndpointUrl = file.tokenEndpointUrl ?? `${file.publicUrl}${ISSUER_PATHS.token}`;
  const endpointProblem = endpointUrlProblem(tokenEndpointUrl);
  if (file.tokenEndpointUrl !== undefined && endpointProblem) problems.push(`tokenEndpointUrl: ${endpointProblem}`);

  const range = (field: string, value: number | undefined, min: number, max: number, what: string, integer = true) => {
    if (value !== undefined && (!(value >= min && value <= max) || (integer && !Number.isInteger(value))))
      problems.push(`${field}: must be ${integer ? 'a whole number' : 'a number'} from ${min} to ${max} (${what})`);
  };
  range('tokenLifetimeSeconds', file.tokenLifetimeSeconds, MIN_TOKEN_LIFETIME_SECONDS, MAX_TOKEN_LIFETIME_SECONDS, 'seconds: 5 minutes to 12 hours');
  range('attestationTimeoutMs', file.attestationTimeoutMs, 500, 60_000, 'ms');
  range('maxConcurrentAttestations', file.maxConcurrentAttestations, 1, 10_000, 'attestations in flight');
  range('rateLimit.burst', file.rateLimit?.burst, 1, 1_000, 'requests at once per identity');
  range('rateLimit.perMinute', file.rateLimit?.perMinute, 0.01, 60_000, 'sustained requests per minute per identity', false);
  range('rateLimit.maxIdentities', file.rateLimit?.maxIdentities, 100, 10_000_000, 'identities tracked');
  range('clientRateLimit.burst', file.clientRateLimit?.burst, 1, 100_000, 'token requests at once per client address');
  range('clientRateLimit.perSecond', file.clientRateLimit?.perSecond, 0.01, 100_000, 'sustained token requests per second per client address', false);
  range('clientRateLimit.maxClients', file.clientRateLimit?.maxClients, 100, 10_000_000, 'client addresses tracked');
  range('replayCacheEntries', file.replayCacheEntries, 100, 10_000_000, 'attestations remembered');
  const stateProblem = file.state === undefined ? undefined : stateSettingProblem(file.state);
  if (stateProblem) problems.push(`state: ${stateProblem}`);

  const listenAt = (field: string, spec: string): ListenAddress | undefined => {
    const r = parseListenSpec(spec);
    if (typeof r === 'string') problems.push(`${field}: ${r}`);
    else if (r.role !== undefined) problems.push(`${field}: takes HOST:PORT only`);
    else return r.address;
    return undefined;
  };
  const listen = listenAt('listen', file.listen ?? DEFAULT_ISSUER_LISTEN);
  const admin = file.adminListen === 'off' ? null : listenAt('adminListen', file.adminListen ?? DEFAULT_ISSUER_ADMIN_LISTEN);
  const allowPlainHttp = file.allowPlainHttp ?? false;
  if (listen && !file.tls && !allowPlainHttp && !isLoopbackHost(listen.host)) {
    problems.push(
      `listen: ${formatAddress(listen)} is not loopback, and no tls is configured; set tls.certFile and tls.keyFile, or allowPlainHttp: true when a TLS-terminating load balancer is in front`,
    );
  }
  if (listen && admin && listen.host === admin.host && listen.port === admin.port && listen.port !== 0) problems.push('adminListen: must differ from listen');

  const keys: KeyFileConfig[] = file.keys.map((k) => ({ file: abs(k.file), active: k.active ?? false }));
  const actives = keys.filter((k) => k.active).length;
  if (actives !== 1) problems.push(`keys: exactly one key must have active: true (it signs; the others are published only); ${actives} do`);
  if (new Set(keys.map((k) => k.file)).size !== keys.length) problems.push('keys: a file is listed twice');

  const audiences = file.audiences ?? [DEFAULT_AUDIENCE];
  audiences.forEach((a, i) => {
    if (!/^[\x21-\x7e]{1,255}$/.test(a))
      problems.push(`audiences[${i}]: must be 1-255 printable ASCII characters without spaces (an IAM OIDC provider client id)`);
  });
  if (new Set(audiences).size !== audiences.length) problems.push('audiences: an audience is listed twice');

  const attestors: { -readonly [K in keyof AttestorSettings]: AttestorSettings[K] } = {};
  const a = file.attestors ?? {};
  if (a.alibabaEcsIdentity) attestors.alibabaEcsIdentity = { signingCertificateFiles: a.alibabaEcsIdentity.signingCertificateFiles.map(abs) };
  if (a.alibabaRamRole) attestors.alibabaRamRole = { extraStsEndpoints: a.alibabaRamRole.extraStsEndpoints ?? [] };
  if (a.tencentCamRole) attestors.tencentCamRole = { extraStsEndpoints: a.tencentCamRole.extraStsEndpoints ?? [] };
  for (const kind of ['alibabaRamRole', 'tencentCamRole'] as const) {
    attestors[kind]?.extraStsEndpoints.forEach((e, i) => {
      const problem = endpointUrlProblem(e);
      if (problem) problems.push(`attestors.${kind}.extraStsEndpoints[${i}]: ${problem}`);
    });
  }

  const policy: Partial<Record<AttestationKind, KindPolicy>> = {};
  for (const kind of ATTESTATION_KINDS) {
    const p = file.policy?.[kind];
    const configured = attestors[kind] !== undefined;
    if (configured && !p)
      problems.push(
        `policy.${kind}: missing; attestors.${kind} is configured, so say which accounts${KIND_DIMENSIONS[kind].map((d) => `, ${d}`).join('')} may get tokens`,
      );
    if (!configured && p) problems.push(`policy.${kind}: attestors.${kind} is not configured; add it, or remove this policy`);
    if (!p) continue;
    const where = `policy.${kind}`;
    if (p.accounts.length === 0) problems.push(`${where}.accounts: empty, so nobody could get a token; list the account ids`);
    if (p.accounts.includes(ANY))
      problems.push(
        `${where}.accounts: "*" is not accepted (it would trust every ${kind.startsWith('tencent') ? 'Tencent Cloud' : 'Alibaba Cloud'} customer); list the account ids`,
      );
    p.accounts.forEach((id, i) => {
      if (id !== ANY && !/^\d{1,32}$/.test(id)) problems.push(`${where}.accounts[${i}]: ${JSON.stringify(id.slice(0, 40))} is not an account id (digits)`);
    });
    for (const dimension of ['regions', 'roles', 'instanceIds'] as const) {
      const list = p[dimension];
      const required = KIND_DIMENSIONS[kind].includes(dimension);
      if (dimension === 'instanceIds' && SESSION_NAMED_INSTANCE_KINDS.includes(kind)) {
        if (list !== undefined && !(list.length === 1 && list[0] === ANY)) problems.push(sessionNamedInstanceProblem(where, kind));
        continue;
      }
      if (!required && list !== undefined) problems.push(`${where}.${dimension}: ${kind} attestations do not state this; remove it`);
      if (required && (list === undefined || list.length === 0))
        problems.push(`${where}.${dimension}: missing or empty, so nobody could get a token; list the values, or write ["*"] to allow any`);
    }
    const tags = Object.entries(p.sessionTags ?? {}).map(([key, from]): SessionTagRule => ({ key, from }));
    if (tags.length > MAX_SESSION_TAGS) problems.push(`${where}.sessionTags: ${tags.length} tags; STS accepts at most ${MAX_SESSION_TAGS}`);
    const lowerKeys = new Set<string>();
    for (const t of tags) {
      const keyProblem = tagKeyProblem(t.key);
      if (keyProblem) problems.push(`${where}.sessionTags: key ${JSON.stringify(t.key.slice(0, 140))} ${keyProblem}`);
      if (t.from === 'instanceId' && SESSION_NAMED_INSTANCE_KINDS.includes(kind))
        problems.push(
          `${where}.sessionTags.${t.key}: instanceId is not accepted for ${kind}: it would come from the role session name, which whoever assumes the role chooses`,
        );
      const sourceProblem = tagSourceProblem(t.from);
      if (sourceProblem) problems.push(`${where}.sessionTags.${t.key}: ${JSON.stringify(t.from.slice(0, 80))} ${sourceProblem}`);
      if (lowerKeys.has(t.key.toLowerCase())) problems.push(`${where}.sessionTags: keys ${JSON.stringify(t.key)} differ only in case; STS treats them as one`);
      lowerKeys.add(t.key.toLowerCase());
    }
    const transitive = p.transitiveTagKeys ?? [];
    for (const k of transitive)
      if (!tags.some((t) => t.key === k)) problems.push(`${where}.transitiveTagKeys: ${JSON.stringify(k.slice(0, 140))} is not a key of sessionTags`);
    if (p.trustOnFirstUse === true && !FIRST_USE_KINDS.includes(kind)) problems.push(firstUseProblem(where, kind));
    policy[kind] = {
      accounts: p.accounts,
      ...(p.regions ? { regions: p.regions } : {}),
      ...(p.roles ? { roles: p.roles } : {}),
      ...(p.instanceIds && KIND_DIMENSIONS[kind].includes('instanceIds') ? { instanceIds: p.instanceIds } : {}),
      sessionTags: tags,
      transitiveTagKeys: transitive,
      ...(p.trustOnFirstUse === true ? { trustOnFirstUse: true } : {}),
    };
  }

  if (problems.length > 0 || !listen || admin === undefined) return { problems };
  const config: IssuerConfig = {
    configPath: resolve(path),
    publicUrl: file.publicUrl,
    tokenEndpointUrl,
    listen,
    admin,
    ...(file.tls ? { tls: { certFile: abs(file.tls.certFile), keyFile: abs(file.tls.keyFile) } } : {}),
    allowPlainHttp,
    keys,
    audiences,
    tokenLifetimeSeconds: file.tokenLifetimeSeconds ?? DEFAULT_TOKEN_LIFETIME_SECONDS,
    attestationTimeoutMs: file.attestationTimeoutMs ?? DEFAULT_ATTESTATION_TIMEOUT_MS,
    maxConcurrentAttestations: file.maxConcurrentAttestations ?? DEFAULT_MAX_CONCURRENT_ATTESTATIONS,
    rateLimit: { ...DEFAULT_RATE_LIMIT, ...stripUndefined(file.rateLimit ?? {}) },
    clientRateLimit: { ...DEFAULT_CLIENT_RATE, ...stripUndefined(file.clientRateLimit ?? {}) },
    replayCacheEntries: file.replayCacheEntries ?? DEFAULT_REPLAY_ENTRIES,
    state: file.state ?? DEFAULT_STATE,
    ...(file.caBundleFile ? { caBundleFile: abs(file.caBundleFile) } : {}),
    logLevel: file.logLevel ?? 'info',
    attestors,
    policy,
  };
  return { config: deepFreeze(config) };
}

/** Why a role kind's policy may not list instances. */
function sessionNamedInstanceProblem(where: string, kind: AttestationKind): string {
  return (
    `${where}.instanceIds: ${kind} attestations take the instance id from the role session name, which whoever assumes the role chooses, ` +
    'so a list of instances would prove nothing; remove instanceIds (or write ["*"]), or use alibabaEcsIdentity to allow specific instances'
  );
}

/** Why a role kind may not bind instances on first use. */
function firstUseProblem(where: string, kind: AttestationKind): string {
  return (
    `${where}.trustOnFirstUse: ${kind} attestations take the instance id from the role session name, which whoever assumes the role chooses, ` +
    'so anyone with the role could bind (and lock out) any instance id; use it with alibabaEcsIdentity, whose instance id the cloud signs'
  );
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
