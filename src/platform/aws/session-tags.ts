/**
 * IAM's rules for session tags, as AssumeRole's `Tags` and the `https://aws.amazon.com/tags` claim
 * of AssumeRoleWithWebIdentity take them (IAM User Guide, "Passing session tags in AWS STS"):
 * shared by `serve`'s role chains and `crosscred issuer`'s tag claim.
 */

/** At most 50 session tags, keys 1–128 characters, values 0–256. */
export const MAX_SESSION_TAGS = 50;
const MAX_TAG_KEY_LENGTH = 128;
const MAX_TAG_VALUE_LENGTH = 256;

/** IAM's tag character set: letters, digits, white space and `_ . : / = + - @`. */
const TAG_CHARACTER = /[\p{L}\p{Z}\p{N}_.:/=+\-@]/u;
const TAG_TEXT = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u;

/** The problem with a tag key, or undefined. */
export function tagKeyProblem(key: string): string | undefined {
  if (key.length < 1 || key.length > MAX_TAG_KEY_LENGTH) return `must be 1-${MAX_TAG_KEY_LENGTH} characters`;
  if (!TAG_TEXT.test(key)) return "may hold only letters, digits, spaces and _ . : / = + - @ (IAM's tag characters)";
  if (key.toLowerCase().startsWith('aws:')) return 'must not start with "aws:" (reserved by AWS)';
  return undefined;
}

/** The problem with a literal tag value (no template), or undefined. */
export function tagValueProblem(value: string): string | undefined {
  if (value.length > MAX_TAG_VALUE_LENGTH) return `must be at most ${MAX_TAG_VALUE_LENGTH} characters`;
  if (!TAG_TEXT.test(value)) return "may hold only letters, digits, spaces and _ . : / = + - @ (IAM's tag characters)";
  return undefined;
}

/**
 * A value made fit for a tag: characters outside IAM's set become `_`, and it is cut to 256
 * characters. Values from a token (cloud ids, namespaces, pod names) pass unchanged; the rule only
 * keeps an odd value from making STS refuse the whole request.
 */
export function sanitizeTagValue(value: string): string {
  let out = '';
  for (const ch of value) {
    const kept = TAG_CHARACTER.test(ch) ? ch : '_';
    // STS counts UTF-16 units: a character that would not fit whole is left out, never split.
    if (out.length + kept.length > MAX_TAG_VALUE_LENGTH) break;
    out += kept;
  }
  return out;
}
