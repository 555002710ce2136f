import { parseRoleArn } from '../platform/aws/role-arn.js';
import { deriveSessionName, VALID_SESSION_NAME } from '../platform/aws/session-name.js';
import { clip, outOfRange, problem, rangeWords } from './checks.js';
import type { RoleConfig, TokenSourceChoice } from './config.js';
import { type FileRole, type Layers, pickSetting, type Resolved, type Sourced } from './layers.js';
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
    const settings = Object.fromEntries(ROLE_SETTING_IDS.map((id) => [id, pickSetting(id, layers)]).filter(([, v]) => v !== undefined));
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
  // A role that says where its token comes from does not inherit the other kinds from the top
  // level: a top-level tokenCommand must not override a role's own tokenFile.
  const namesItsToken = ROLE_SETTING_IDS.some((id) => settingSpec(id).role!.inherits === 'unless-role-names-its-token' && own(id) !== undefined);
  const settings: Record<string, Sourced<unknown>> = {};
  for (const id of ROLE_SETTING_IDS) {
    const inherits = settingSpec(id).role!.inherits;
    const inherited = inherits === 'always' || (inherits === 'unless-role-names-its-token' && !namesItsToken) ? pickSetting(id, layers) : undefined;
    const value = own(id);
    if (value !== undefined) settings[id] = { value, origin: where };
    else if (inherited) settings[id] = inherited;
  }
  return { index, origin: where, fromFile: true, settings: settings as RoleSettings };
}

/** Checks one role and builds it; no role at all when it has no ARN. `seenNames` gathers the names so far. */
export function checkRole(raw: RawRole, inputs: RoleInputs, seenNames: Set<string>): Resolved<RoleConfig | undefined> {
  const { settings: s } = raw;
  const field = (id: SettingId) => (raw.fromFile ? `roles[${raw.index}].${settingSpec(id).role!.key}` : settingSpec(id).role!.key);
  if (!s.roleArn) {
    const words = 'no role to assume: set AWS_ROLE_ARN, --role-arn, or roles in a --config file';
    return { value: undefined, problems: [problem(field('roleArn'), raw.origin, words)] };
  }
  const account = accountOf(s.roleArn, field('roleArn'));
  const name = roleName(raw, seenNames, field('roleName'));
  const token = roleToken(s, inputs.detectToken, field);
  const session = sessionName(s.sessionName, inputs.hostname, field('sessionName'));
  const duration = s.durationSeconds;
  const badDuration = duration && outOfRange('durationSeconds', duration.value);
  const region = resolveRoleRegion(s.region, s.roleArn.value, field('region'), raw.origin);
  const role: RoleConfig = {
    cloud: 'aws',
    name: name.value,
    roleArn: s.roleArn.value,
    accountId: account.value,
    token: token.value,
    sessionName: session.value,
    region: region.value ?? '',
    ...(duration !== undefined ? { durationSeconds: duration.value } : {}),
    ...(s.stsEndpoint ? { stsEndpoint: s.stsEndpoint.value } : {}),
  };
  const problems = [
    ...account.problems,
    ...name.problems,
    ...token.problems,
    ...session.problems,
    ...(badDuration ? [problem(field('durationSeconds'), duration.origin, `${duration.value} ${rangeWords('durationSeconds')}`)] : []),
    ...region.problems,
    ...stsEndpointProblems(s.stsEndpoint, field('stsEndpoint')),
  ];
  return { value: role, problems };
}

/** The account the role belongs to, from its ARN, which must be an IAM role's. */
function accountOf(roleArn: Sourced<string>, field: string): Resolved<string> {
  const parsed = parseRoleArn(roleArn.value);
  if (!('problem' in parsed)) return { value: parsed.accountId, problems: [] };
  return { value: '', problems: [problem(field, roleArn.origin, `"${clip(roleArn.value)}" ${parsed.problem}`)] };
}

/** Where the role's token comes from. A blank token file is refused, and detection still runs. */
function roleToken(s: RoleSettings, detect: RoleTokenDetector, field: (id: SettingId) => string): Resolved<TokenSourceChoice> {
  const problems: string[] = [];
  if (s.tokenFile && s.tokenFile.value.trim() === '') problems.push(problem(field('tokenFile'), s.tokenFile.origin, 'is empty'));
  const detected = detect(s);
  if (!('problem' in detected)) return { value: detected, problems };
  problems.push(problem(field('tokenSource'), s.tokenSource?.origin ?? 'auto-detection', detected.problem));
  return { value: NO_TOKEN, problems };
}

/** Stands in for a token source that was not found; the configuration is refused anyway. */
const NO_TOKEN: TokenSourceChoice = { source: { kind: 'file', path: '', platform: 'configured' }, reason: '', notes: [] };

/** The role's name (default: the ARN's last segment), unique among the roles. */
function roleName(raw: RawRole, seenNames: Set<string>, field: string): Resolved<string> {
  const { roleName: set, roleArn } = raw.settings;
  const name = set?.value ?? roleArn!.value.split('/').pop() ?? '';
  const origin = set?.origin ?? roleArn!.origin;
  let words: string | undefined;
  if (!/^[\w+=,.@-]{1,64}$/.test(name)) words = `role name "${clip(name)}" must be 1–64 characters of letters, digits and +=,.@_-`;
  else if (seenNames.has(name)) words = `role name "${name}" is used twice; give each role a distinct name`;
  seenNames.add(name);
  return { value: name, problems: words ? [problem(field, origin, words)] : [] };
}

/** The STS session name: set, or derived from the host name. */
function sessionName(set: Sourced<string> | undefined, hostname: string | undefined, field: string): Resolved<string> {
  const value = set?.value ?? deriveSessionName(hostname);
  if (VALID_SESSION_NAME.test(value)) return { value, problems: [] };
  return { value, problems: [problem(field, set?.origin ?? 'derived', `"${clip(value)}" must be 2–64 characters of letters, digits and +=,.@_-`)] };
}
