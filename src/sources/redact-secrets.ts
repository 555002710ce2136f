/**
 * Masks secret-shaped text in output crosscred did not write (a token command's stderr), before it
 * is logged. Vendor CLIs print their OAuth exchanges when they fail (`refresh_token=…&client_secret=…`),
 * `Authorization: Bearer …` lines, JWTs and proxy URLs with a password; none of that may reach a log.
 * Over-masking is fine: the text is a debugging aid, and the mask names what was there.
 */

/**
 * A JWT or the start of one (the text may have been cut at a byte limit): the base64url of `{"`
 * and at least 4 more characters, with up to two more dot-separated parts.
 */
const JWT_LIKE = /eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){0,2}/g;

/** `Bearer <credential>` and `Basic <credential>` (RFC 6750, RFC 7617), in any case. */
const AUTH_SCHEME = /\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]+/gi;

/**
 * `name=value` and `name: value`, the name optionally quoted (query strings, env dumps, JSON, YAML),
 * where the name holds token, secret, password, passwd, pwd or key: `refresh_token`, `client_secret`,
 * `"apiKey"`, `AWS_SECRET_ACCESS_KEY`. The value ends at a space, `&`, `,`, `;` or a closing quote.
 */
const SECRET_ASSIGNMENT =
  /(["']?)([A-Za-z0-9_.-]*(?:token|secret|passw(?:or)?d|pwd|key)[A-Za-z0-9_.-]*)\1(\s*[=:]\s*)("(?:[^"\\]|\\.)*"?|'[^']*'?|[^\s&,;"'}]+)/gi;

/** The password in a URL's userinfo: `https://user:password@proxy:3128`. */
const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^\s/:@]*:)[^\s/@]+@/gi;

export const REDACTED = '[redacted]';

/** The text with every secret-shaped part masked; everything else left as it was. */
export function redactSecrets(text: string): string {
  return text
    .replace(JWT_LIKE, '[jwt]')
    .replace(AUTH_SCHEME, `$1$2${REDACTED}`)
    .replace(URL_PASSWORD, `$1${REDACTED}@`)
    .replace(SECRET_ASSIGNMENT, (_all, quote: string, name: string, separator: string) => `${quote}${name}${quote}${separator}${REDACTED}`);
}
