import { createHash } from 'node:crypto';
import { hostname } from 'node:os';

/** STS: RoleSessionName is 2–64 characters of [\w+=,.@-]. */
const MIN_LENGTH = 2;
const MAX_LENGTH = 64;
const INVALID_CHARS = /[^\w+=,.@-]/g;
export const VALID_SESSION_NAME = /^[\w+=,.@-]{2,64}$/;

/**
 * The session name for a host with no configured one: `crosscred-<hostname>`, made to fit STS's
 * rules. It shows up in CloudTrail as the assumed-role session, so it should say which host asked.
 */
export function deriveSessionName(host: string = hostname()): string {
  let name = `crosscred-${host}`.replace(INVALID_CHARS, '-').slice(0, MAX_LENGTH);
  if (name.length < MIN_LENGTH) name = name.padEnd(MIN_LENGTH, '-');
  return name;
}

/** Hex digits of the SHA-256 suffix that keeps two long names apart when one is trimmed. */
const HASH_SUFFIX_HEX = 8;

/**
 * A rendered session-name template made to fit STS's rules, the same way every time: characters
 * STS refuses become `-`; a name longer than 64 keeps its first 55 characters, `-` and the first 8
 * hex digits of the SHA-256 of the whole rendered text, so two long names that share a prefix stay
 * apart and one workload keeps one name across refreshes and restarts; a name shorter than 2 is
 * padded with `-`.
 */
export function fitSessionName(rendered: string): string {
  let name = rendered.replace(INVALID_CHARS, '-');
  if (name.length > MAX_LENGTH) {
    const suffix = `-${createHash('sha256').update(rendered).digest('hex').slice(0, HASH_SUFFIX_HEX)}`;
    name = `${name.slice(0, MAX_LENGTH - suffix.length)}${suffix}`;
  }
  return name.padEnd(MIN_LENGTH, '-');
}
