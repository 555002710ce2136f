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
