import { CrosscredError } from '../errors.js';
import type { TokenClaimsSummary } from './token-source.js';

/** STS rejects a WebIdentityToken longer than this many characters. */
export const STS_MAX_TOKEN_LENGTH = 20_000;

/** Algorithms STS accepts for web-identity tokens; anything else (notably `none`) is refused here. */
const STS_ALGORITHMS = new Set(['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512']);

const BASE64URL_SEGMENT = /^[A-Za-z0-9_-]+$/;

/**
 * Checks that `token` is a complete compact JWS that STS could accept and that it has not expired
 * at `nowWallMs`, and returns its non-secret claims. It does not verify the signature: STS does
 * that against the issuer's JWKS. What it catches is a file read mid-rotation (empty, truncated,
 * not yet written) or the wrong file, before such bytes ever leave the host.
 *
 * `source` names where the token came from, for the error message; the token itself never
 * appears in an error.
 */
export function inspectJwt(token: string, nowWallMs: number, source: string): TokenClaimsSummary {
  if (token.length === 0) {
    throw new CrosscredError('TOKEN_NOT_JWT', `${source} is empty`);
  }
  if (token.length > STS_MAX_TOKEN_LENGTH) {
    throw new CrosscredError('TOKEN_TOO_LARGE', `${source} holds ${token.length} characters; STS accepts at most ${STS_MAX_TOKEN_LENGTH}`);
  }
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((p) => BASE64URL_SEGMENT.test(p))) {
    throw new CrosscredError('TOKEN_NOT_JWT', `${source} does not hold a compact JWT (three base64url parts separated by dots)`);
  }
  const header = decodeJsonSegment(parts[0]!);
  const payload = decodeJsonSegment(parts[1]!);
  if (!header || !payload) {
    throw new CrosscredError('TOKEN_NOT_JWT', `${source} holds a JWT whose header or payload is not a JSON object (truncated?)`);
  }
  const alg = header['alg'];
  if (typeof alg !== 'string' || !STS_ALGORITHMS.has(alg)) {
    throw new CrosscredError('TOKEN_NOT_JWT', `${source} holds a JWT with algorithm ${JSON.stringify(String(alg)).slice(0, 20)}; STS accepts only RS256/384/512 and ES256/384/512`);
  }
  const exp = payload['exp'];
  if (typeof exp !== 'number' || !Number.isInteger(exp) || exp <= 0) {
    throw new CrosscredError('TOKEN_NOT_JWT', `${source} holds a JWT without an integer "exp" claim`);
  }
  if (exp * 1000 <= nowWallMs) {
    const ago = Math.round(nowWallMs / 1000 - exp);
    throw new CrosscredError('TOKEN_EXPIRED', `${source} holds a JWT that expired ${ago} s ago`);
  }
  const summary: { -readonly [K in keyof TokenClaimsSummary]: TokenClaimsSummary[K] } = { exp };
  if (typeof payload['iss'] === 'string') summary.iss = payload['iss'];
  if (typeof payload['sub'] === 'string') summary.sub = payload['sub'];
  const aud = payload['aud'];
  if (typeof aud === 'string' || (Array.isArray(aud) && aud.every((a) => typeof a === 'string'))) summary.aud = aud;
  if (typeof header['kid'] === 'string') summary.kid = header['kid'];
  return summary;
}

function decodeJsonSegment(segment: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
