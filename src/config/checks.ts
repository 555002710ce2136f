import { isLoopbackHost } from '../core/url-checks.js';
import type { Sourced } from './layers.js';
import { type SettingId, settingSpec } from './settings.js';

/** The checks several resolvers share. Each returns the problem in words, or undefined. */

/** One line of CONFIG_INVALID: the setting, where its value came from, what is wrong. */
export function problem(field: string, origin: string, text: string): string {
  return `${field} (${origin}): ${text}`;
}

/** Shortens a user-supplied value for an error message. */
export function clip(value: string): string {
  return value.length > 80 ? `${value.slice(0, 77)}...` : value;
}

/** The value is not one of the setting's `choices` in the table. */
export function choiceProblem(id: SettingId, value: string): string | undefined {
  const choices = settingSpec(id).choices ?? [];
  return choices.includes(value) ? undefined : `"${clip(value)}" is not one of ${choices.join(', ')}`;
}

/** The value is not a whole number within the setting's `range` in the table. */
export function outOfRange(id: SettingId, value: number): boolean {
  const range = settingSpec(id).range;
  return range !== undefined && (!Number.isInteger(value) || value < range.min || value > range.max);
}

/** `must be a whole number of <unit> from <min> to <max>`, from the table. */
export function rangeWords(id: SettingId): string {
  const range = settingSpec(id).range!;
  return `must be a whole number of ${range.unit} from ${range.min}${range.minNote ? ` (${range.minNote})` : ''} to ${range.max}`;
}

/** An STS, issuer or cloud endpoint: http(s), no credentials, plain http only to loopback. */
export function checkEndpoint(value: string): string | undefined {
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

/** A CA bundle file, read at start-up: its PEM text, or the problem. */
export function readPemBundle(path: Sourced<string>, readText: (p: string) => string): { pem: string } | { problem: string } {
  let pem: string;
  try {
    pem = readText(path.value);
  } catch (err) {
    return { problem: `cannot read ${path.value} (${(err as NodeJS.ErrnoException).code ?? 'error'})` };
  }
  return pem.includes('-----BEGIN CERTIFICATE-----') ? { pem } : { problem: `${path.value} holds no PEM certificate` };
}
