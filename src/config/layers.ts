import type { CloudName } from '../core/clouds.js';
import type { FileConfig } from './file-schema.js';
import {
  type Layer,
  type SERVE_SETTINGS,
  type ServeFlags,
  type SettingId,
  type SettingSpec,
  type SettingValue,
  settingSpec,
  type ValueType,
} from './settings.js';

/** The three layers a setting is read from, as loadConfig found them. */
export interface Layers {
  readonly flags: ServeFlags;
  readonly env: Env;
  /** The config file's contents; empty without a file. */
  readonly file: FileConfig;
  /** `config file <path>`, named in messages. */
  readonly fileOrigin: string;
}

export type Env = Readonly<Record<string, string | undefined>>;

/** A value together with the place it came from, for error messages. */
export interface Sourced<T> {
  readonly value: T;
  readonly origin: string;
}

/** What a resolver found, and what is wrong with it (`field (origin): problem` lines). */
export interface Resolved<T> {
  readonly value: T;
  readonly problems: readonly string[];
}

/**
 * The setting's value from the first layer of its `precedence` that sets it, with its origin:
 * `--flag`, the config file, or `env NAME`. An empty string counts as unset in every layer.
 */
export function pickSetting<Id extends SettingId>(id: Id, layers: Layers, cloud: CloudName = 'aws'): Sourced<SettingValue<Id>> | undefined {
  const spec = settingSpec(id);
  for (const layer of spec.precedence) {
    for (const [value, origin] of candidates(spec, layer, layers, cloud)) {
      if (value !== undefined && value !== '') return { value: value as SettingValue<Id>, origin };
    }
  }
  return undefined;
}

function candidates(spec: SettingSpec, layer: Layer, layers: Layers, cloud: CloudName): Array<[unknown, string]> {
  if (layer === 'flag') return spec.flag ? [[fromFlag(spec.type, flagOf(layers.flags, spec.flag)), `--${spec.flag}`]] : [];
  if (layer === 'file') return spec.file ? [[(layers.file as Record<string, unknown>)[spec.file], layers.fileOrigin]] : [];
  return envNames(spec, cloud).map((name) => [fromText(spec.type, layers.env[name]), `env ${name}`]);
}

/** The variables read for a setting of a role in `cloud`: that cloud's own names where the table gives them. */
export function envNames(spec: SettingSpec, cloud: CloudName): readonly string[] {
  if (cloud === 'aws' || spec.envByCloud === undefined) return spec.env ?? [];
  return spec.envByCloud[cloud] ?? [];
}

function flagOf(flags: ServeFlags, flag: string): unknown {
  return (flags as Record<string, unknown>)[flag];
}

/** A flag's value as the setting's type: numbers and commands are parsed, an empty list is unset. */
function fromFlag(type: ValueType, raw: unknown): unknown {
  if (type === 'list' || type === 'listen') return Array.isArray(raw) && raw.length > 0 ? raw : undefined;
  if (type === 'switch') return raw;
  return fromText(type, raw as string | undefined);
}

function fromText(type: ValueType, raw: string | undefined): unknown {
  if (type === 'number') return numberFlag(raw);
  // A switch set by a variable: `true` or `false` in any case; anything else stays text, refused by name.
  if (type === 'switch' && raw !== undefined) return /^true$/i.test(raw) ? true : /^false$/i.test(raw) ? false : raw;
  if (type === 'command') return parseCommandFlag(raw);
  return raw;
}

/** The setting's default for a role in `cloud`, for settings whose default depends on it. */
export function cloudDefault(id: SettingId, cloud: CloudName): string {
  const d: SettingSpec['default'] = settingSpec(id).default;
  if (!d || !('byCloud' in d)) throw new Error(`setting ${id} has no default by cloud`);
  return d.byCloud[cloud];
}

/** The setting's default value; only for settings whose default is a plain value. */
export function defaultOf<Id extends SettingId>(id: Id): SettingValue<Id> {
  const d: SettingSpec['default'] = settingSpec(id).default;
  if (!d || !('value' in d)) throw new Error(`setting ${id} has no plain default`);
  return d.value as SettingValue<Id>;
}

/** The value set, else the default. */
export function valueOrDefault<Id extends SettingId>(id: Id, picked: Sourced<SettingValue<Id>> | undefined): SettingValue<Id> {
  return picked ? picked.value : defaultOf(id);
}

/** A decimal number (whole or not), or NaN for anything else, so that the range check names the setting. */
export function numberFlag(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  return /^\s*-?\d+(\.\d+)?\s*$/.test(value) ? Number(value) : NaN;
}

/**
 * `--token-command` is a program path, or a JSON array of program and arguments (never a shell
 * line). Anything unusable is an empty list, which the token-source resolver refuses by name.
 */
export function parseCommandFlag(value: string | undefined): readonly string[] | undefined {
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

/**
 * Compile-time guard: a config-file key (top-level or in roles[]) must hold the type its setting
 * resolves to, since its value is handed on as it is. A mismatch names the setting here.
 */
type Settings = typeof SERVE_SETTINGS;
export type FileRole = NonNullable<FileConfig['roles']>[number];
type FileValue<Id extends SettingId> = Settings[Id] extends { readonly file: infer K extends keyof FileConfig } ? NonNullable<FileConfig[K]> : never;
type RoleValue<Id extends SettingId> = Settings[Id] extends { readonly role: { readonly key: infer K extends keyof FileRole } }
  ? NonNullable<FileRole[K]>
  : never;
type FileTypeMismatch = { [Id in SettingId]: FileValue<Id> | RoleValue<Id> extends SettingValue<Id> ? never : Id }[SettingId];
const fileTypesMatch: [FileTypeMismatch] extends [never] ? true : FileTypeMismatch = true;
void fileTypesMatch;
