import { CLOUDS, type CloudName } from '../core/clouds.js';
import { parseRamOidcProviderArn, parseRamRoleArn } from '../platform/alibaba/ram-arn.js';
import { VALID_ALIBABA_SESSION_NAME } from '../platform/alibaba/session-name.js';
import { ALIBABA_REGION } from '../platform/alibaba/sts-endpoints.js';
import { parseRoleArn } from '../platform/aws/role-arn.js';
import { deriveSessionName, VALID_SESSION_NAME } from '../platform/aws/session-name.js';
import { parseCamRoleArn, providerIdProblem } from '../platform/tencent/cam-arn.js';
import { VALID_TENCENT_SESSION_NAME } from '../platform/tencent/session-name.js';
import { TENCENT_REGION } from '../platform/tencent/sts-endpoints.js';
import { isTemplate } from '../protocol/workload-identity.js';
import { choiceProblem, clip, outOfRange, problem, rangeWords } from './checks.js';
import type { RoleConfig, TokenSourceChoice } from './config.js';
import { envNames, type FileRole, type Layers, pickSetting, type Resolved, type Sourced } from './layers.js';
import { type RoleSession, resolveRoleSession, sessionNameTemplateProblem } from './resolve-session.js';
import { resolveRoleRegion, stsEndpointProblems } from './resolve-sts.js';
import type { RoleTokenDetector } from './resolve-token-source.js';
import { SETTING_IDS, type SettingId, type SettingValue, settingSpec } from './settings.js';

/**
 * The roles section: the roles of the config file when it lists them, else the one role of the
 * flags and environment. What a role of the file inherits from the top level is the table's
 * `role.inherits` (settings.ts).
 */

/** The settings a role can have, as the table lists them. */
const ROLE_SETTING_IDS = SETTING_IDS.filter((id) => settingSpec(id).role !== undefined);
type RoleSettings = { readonly [Id in SettingId]?: Sourced<SettingValue<Id>> };

/** One role before it is checked: where it was written, and its settings with their origins. */
export interface RawRole {
  readonly index: number;
  readonly origin: string;
  /** True for the roles of a config file: problems then name `roles[<index>].<key>`. */
  readonly fromFile: boolean;
  readonly settings: RoleSettings;
  /** The role as the file wrote it, for its session documents (policy, policyArns, chain). */
  readonly file?: FileRole;
}

export interface RoleInputs {
  readonly detectToken: RoleTokenDetector;
  /** For the derived session name; the machine's own when not given. */
  readonly hostname?: string;
}

export function resolveRoles(layers: Layers, inputs: RoleInputs): Resolved<RoleConfig[]> {
  const raw = rawRoles(layers);
  const roles: RoleConfig[] = [];
  const problems = [...raw.problems];
  const seenNames = new Set<string>();
  for (const role of raw.value) {
    const checked = checkRole(role, inputs, seenNames);
    problems.push(...checked.problems);
    if (checked.value) roles.push(checked.value);
  }
  return { value: roles, problems };
}

/** The roles as written, before any check: from the file's `roles`, or the single role of flags and environment. */
export function rawRoles(layers: Layers): Resolved<RawRole[]> {
  const fileRoles = layers.file.roles;
  if (!fileRoles) {
    // The cloud first: it decides which variables the other settings are read from.
    const cloud = cloudOf(pickSetting('cloud', layers)?.value);
    const settings = Object.fromEntries(ROLE_SETTING_IDS.map((id) => [id, pickSetting(id, layers, cloud)]).filter(([, v]) => v !== undefined));
    return { value: [{ index: 0, origin: 'flags and environment', fromFile: false, settings }], problems: [] };
  }
  const refused = ROLE_SETTING_IDS.map(settingSpec).filter((spec) => spec.role?.inherits === 'never' && spec.flag && flagIsSet(layers, spec.flag));
  return {
    value: fileRoles.map((role, index) => fileRole(role, index, layers)),
    problems: refused.map((spec) => {
      return problem(`--${spec.flag}`, 'flag', `cannot be combined with the roles listed in ${layers.fileOrigin}; edit the file instead`);
    }),
  };
}

function flagIsSet(layers: Layers, flag: string): boolean {
  return (layers.flags as Record<string, unknown>)[flag] !== undefined;
}

/** A role of the config file: its own keys (even empty ones), else what it inherits from the top level. */
function fileRole(role: FileRole, index: number, layers: Layers): RawRole {
  const where = `${layers.fileOrigin} roles[${index}]`;
  const own = (id: SettingId): unknown => (role as Record<string, unknown>)[settingSpec(id).role!.key];
  const cloud = cloudOf(role.cloud ?? pickSetting('cloud', layers)?.value);
  // A role that says where its token comes from does not inherit the other kinds from the top
  // level: a top-level tokenCommand must not override a role's own tokenFile.
  const namesItsToken = ROLE_SETTING_IDS.some((id) => settingSpec(id).role!.inherits === 'unless-role-names-its-token' && own(id) !== undefined);
  const settings: Record<string, Sourced<unknown>> = {};
  for (const id of ROLE_SETTING_IDS) {
    const inherits = settingSpec(id).role!.inherits;
    const inherited = inherits === 'always' || (inherits === 'unless-role-names-its-token' && !namesItsToken) ? pickSetting(id, layers, cloud) : undefined;
    const value = own(id);
    if (value !== undefined) settings[id] = { value, origin: where };
    else if (inherited) settings[id] = inherited;
  }
  return { index, origin: where, fromFile: true, settings: settings as RoleSettings, file: role };
}

/** Checks one role and builds it; no role at all when it has no ARN. `seenNames` gathers the names so far. */
export function checkRole(raw: RawRole, inputs: RoleInputs, seenNames: Set<string>): Resolved<RoleConfig | undefined> {
  const { settings: s } = raw;
  const field = (id: SettingId) => (raw.fromFile ? `roles[${raw.index}].${settingSpec(id).role!.key}` : settingSpec(id).role!.key);
  const badCloud = s.cloud && choiceProblem('cloud', s.cloud.value);
  const cloud = cloudOf(s.cloud?.value);
  if (!s.roleArn) {
    const words = `no role to assume: set ${envNames(settingSpec('roleArn'), cloud).join(' or ')}, --role-arn, or roles in a --config file`;
    return { value: undefined, problems: [problem(field('roleArn'), raw.origin, words)] };
  }
  const account = accountOf(cloud, s.roleArn, field('roleArn'));
  const session = raw.file
    ? resolveRoleSession(raw.file, cloud, s.roleArn.value, (key) => `roles[${raw.index}].${key}`, raw.origin)
    : { value: {}, problems: [] };
  const name = roleName(raw, seenNames, field('roleName'), session.value.chain?.at(-1)?.roleArn);
  const token = roleToken(s, cloud, inputs.detectToken, field);
  const sessionNameOf = sessionName(cloud, s.sessionName, inputs.hostname, field('sessionName'));
  const duration = s.durationSeconds;
  const badDuration = duration && outOfRange('durationSeconds', duration.value);
  const common = {
    name: name.value,
    roleArn: s.roleArn.value,
    accountId: account.value,
    token: token.value,
    sessionName: sessionNameOf.value,
    ...(duration !== undefined ? { durationSeconds: duration.value } : {}),
    ...(s.stsEndpoint ? { stsEndpoint: s.stsEndpoint.value } : {}),
  };
  const cloudOwn = cloudSettings(cloud, raw, common, field, session.value);
  const problems = [
    ...(badCloud ? [problem(field('cloud'), s.cloud.origin, badCloud)] : []),
    ...account.problems,
    ...name.problems,
    ...token.problems,
    ...sessionNameOf.problems,
    ...session.problems,
    ...(badDuration ? [problem(field('durationSeconds'), duration.origin, `${duration.value} ${rangeWords('durationSeconds')}`)] : []),
    ...cloudOwn.problems,
    ...stsEndpointProblems(s.stsEndpoint, field('stsEndpoint')),
  ];
  return { value: cloudOwn.value, problems };
}

/** The cloud a setting names; an unknown one is reported by checkRole and read as the default. */
export function cloudOf(value: string | undefined): CloudName {
  return (CLOUDS as readonly string[]).includes(value ?? '') ? (value as CloudName) : 'aws';
}

type CommonRole = Omit<RoleConfig, 'cloud' | 'region' | 'oidcProviderArn' | 'providerId' | 'vpcEndpoint'>;

/** The settings only one cloud's roles have, checked; a setting of another cloud, set on this role, is refused. */
function cloudSettings(cloud: CloudName, raw: RawRole, common: CommonRole, field: (id: SettingId) => string, session: RoleSession): Resolved<RoleConfig> {
  const s = raw.settings;
  const foreign = (ids: readonly SettingId[]) =>
    ids
      .filter((id) => setOnThisRole(raw, s[id]))
      .map((id) =>
        problem(
          field(id),
          s[id]!.origin,
          `is for ${id === 'providerId' ? 'a Tencent' : 'an Alibaba'} role, and this role is ${cloud === 'aws' ? 'an AWS' : cloud === 'alibaba' ? 'an Alibaba' : 'a Tencent'} role (cloud: ${cloud})`,
        ),
      );
  if (cloud === 'alibaba') {
    const provider = alibabaProvider(s.oidcProviderArn, common.accountId, field('oidcProviderArn'), raw.origin);
    const region = s.region?.value ?? '';
    const vpc = s.vpcEndpoint;
    const problems = [...provider.problems, ...foreign(['providerId'])];
    if (region !== '' && !ALIBABA_REGION.test(region))
      problems.push(problem(field('region'), s.region!.origin, `"${clip(region)}" is not an Alibaba Cloud region id such as cn-hangzhou`));
    if (vpc && typeof vpc.value !== 'boolean') problems.push(problem(field('vpcEndpoint'), vpc.origin, `"${clip(String(vpc.value))}" must be true or false`));
    else if (vpc?.value === true && region === '' && !s.stsEndpoint) {
      problems.push(problem(field('vpcEndpoint'), vpc.origin, 'needs a region: the VPC endpoints are regional (sts-vpc.<region>.aliyuncs.com)'));
    }
    return { value: { ...common, cloud, region, oidcProviderArn: provider.value, vpcEndpoint: vpc?.value === true }, problems };
  }
  if (cloud === 'tencent') {
    const problems = foreign(['oidcProviderArn', 'vpcEndpoint']);
    const provider = s.providerId;
    if (!provider)
      problems.push(
        problem(field('providerId'), raw.origin, 'a Tencent role needs the CAM OIDC identity provider: set TKE_PROVIDER_ID, --provider-id or providerId'),
      );
    else {
      const bad = providerIdProblem(provider.value);
      if (bad) problems.push(problem(field('providerId'), provider.origin, `"${clip(provider.value)}" ${bad}`));
    }
    const region = s.region?.value ?? '';
    if (region === '')
      problems.push(problem(field('region'), raw.origin, 'a Tencent role needs a region (STS requires one): set TKE_REGION, --region or region'));
    else if (!TENCENT_REGION.test(region))
      problems.push(problem(field('region'), s.region!.origin, `"${clip(region)}" is not a Tencent Cloud region id such as ap-guangzhou`));
    return { value: { ...common, cloud, region, providerId: provider?.value ?? '' }, problems };
  }
  const region = resolveRoleRegion(s.region, common.roleArn, field('region'), raw.origin);
  return {
    value: { ...common, cloud, region: region.value ?? '', ...session },
    problems: [...region.problems, ...foreign(['oidcProviderArn', 'providerId', 'vpcEndpoint'])],
  };
}

/**
 * True when the value was set for this very role (its own key in the file, or a flag for the one
 * role of the command line); a top-level value of the file that every role inherits is not.
 */
function setOnThisRole(raw: RawRole, value: Sourced<unknown> | undefined): boolean {
  if (value === undefined) return false;
  return raw.fromFile ? value.origin === raw.origin : value.origin.startsWith('--');
}

/** The RAM OIDC provider of an Alibaba role: required, well formed, and in the role's own account. */
function alibabaProvider(arn: Sourced<string> | undefined, accountId: string, field: string, roleOrigin: string): Resolved<string> {
  if (!arn) {
    const words = 'an Alibaba role needs the RAM OIDC provider: set ALIBABA_CLOUD_OIDC_PROVIDER_ARN, --oidc-provider-arn or oidcProviderArn';
    return { value: '', problems: [problem(field, roleOrigin, words)] };
  }
  const parsed = parseRamOidcProviderArn(arn.value);
  if ('problem' in parsed) return { value: arn.value, problems: [problem(field, arn.origin, `"${clip(arn.value)}" ${parsed.problem}`)] };
  if (accountId !== '' && parsed.accountId !== accountId) {
    const words = `is in account ${parsed.accountId}, the role in account ${accountId}: RAM checks a token against an OIDC provider of the role's own account`;
    return { value: arn.value, problems: [problem(field, arn.origin, words)] };
  }
  return { value: arn.value, problems: [] };
}

/** The account the role belongs to, from its ARN, which must be its cloud's role ARN. */
function accountOf(cloud: CloudName, roleArn: Sourced<string>, field: string): Resolved<string> {
  const parsed = cloud === 'alibaba' ? parseRamRoleArn(roleArn.value) : cloud === 'tencent' ? parseCamRoleArn(roleArn.value) : parseRoleArn(roleArn.value);
  if (!('problem' in parsed)) return { value: parsed.accountId, problems: [] };
  return { value: '', problems: [problem(field, roleArn.origin, `"${clip(roleArn.value)}" ${parsed.problem}`)] };
}

/** Where the role's token comes from. A blank token file is refused, and detection still runs. */
function roleToken(s: RoleSettings, cloud: CloudName, detect: RoleTokenDetector, field: (id: SettingId) => string): Resolved<TokenSourceChoice> {
  const problems: string[] = [];
  if (s.tokenFile && s.tokenFile.value.trim() === '') problems.push(problem(field('tokenFile'), s.tokenFile.origin, 'is empty'));
  const detected = detect({ ...s, cloud });
  if (!('problem' in detected)) return { value: detected, problems };
  problems.push(problem(field('tokenSource'), s.tokenSource?.origin ?? 'auto-detection', detected.problem));
  return { value: NO_TOKEN, problems };
}

/** Stands in for a token source that was not found; the configuration is refused anyway. */
const NO_TOKEN: TokenSourceChoice = { source: { kind: 'file', path: '', platform: 'configured' }, reason: '', notes: [] };

/**
 * The role's name (default: the last segment of the ARN whose credentials are served: the role's
 * own, or its chain's last hop's), unique among the roles.
 */
function roleName(raw: RawRole, seenNames: Set<string>, field: string, servedArn?: string): Resolved<string> {
  const { roleName: set, roleArn } = raw.settings;
  const name = set?.value ?? (servedArn ?? roleArn!.value).split('/').pop() ?? '';
  const origin = set?.origin ?? roleArn!.origin;
  let words: string | undefined;
  if (!/^[\w+=,.@-]{1,64}$/.test(name)) words = `role name "${clip(name)}" must be 1–64 characters of letters, digits and +=,.@_-`;
  else if (seenNames.has(name)) words = `role name "${name}" is used twice; give each role a distinct name`;
  seenNames.add(name);
  return { value: name, problems: words ? [problem(field, origin, words)] : [] };
}

/** What each cloud's STS accepts as a session name, in words for the message. */
const SESSION_NAME_RULES: Record<CloudName, { readonly pattern: RegExp; readonly words: string }> = {
  aws: { pattern: VALID_SESSION_NAME, words: '2–64 characters of letters, digits and +=,.@_-' },
  alibaba: { pattern: VALID_ALIBABA_SESSION_NAME, words: '2–64 characters of letters, digits and .@_- (Alibaba STS)' },
  tencent: { pattern: VALID_TENCENT_SESSION_NAME, words: '2–128 characters of letters, digits and +=,.@_- (Tencent STS)' },
};

/**
 * The STS session name: set, or derived from the host name (which fits every cloud's rules). A set
 * name may be a template over the token's identity (`{namespace}.{pod}`), filled in at each exchange.
 */
function sessionName(cloud: CloudName, set: Sourced<string> | undefined, hostname: string | undefined, field: string): Resolved<string> {
  const value = set?.value ?? deriveSessionName(hostname);
  if (isTemplate(value)) {
    const bad = sessionNameTemplateProblem(value, cloud);
    return { value, problems: bad ? [problem(field, set!.origin, bad)] : [] };
  }
  const rule = SESSION_NAME_RULES[cloud];
  if (rule.pattern.test(value)) return { value, problems: [] };
  return { value, problems: [problem(field, set?.origin ?? 'derived', `"${clip(value)}" must be ${rule.words}`)] };
}
