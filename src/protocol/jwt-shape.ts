import { CrosscredError, type ErrorName } from '../core/errors.js';

/**
 * The shape of a compact JWT that STS could accept, judged without its issuer's keys. Two kinds of
 * reader share it: the token sources of `serve` (a file read mid-rotation must not reach STS) and
 * the node agent (a pod's token is checked before it costs an STS call). Neither verifies the
 * signature: STS does, against the issuer's JWKS.
 */

/** STS rejects a WebIdentityToken longer than this many characters. */
export const STS_MAX_TOKEN_LENGTH = 20_000;

/** The claims a token source reports; none of them is secret. */
export interface JwtClaimsSummary {
  readonly iss?: string;
  readonly sub?: string;
  readonly aud?: string | string[];
  readonly exp: number;
  /** Issued-at, when the token has one: compared with this host's clock to warn of skew. */
  readonly iat?: number;
  readonly kid?: string;
  readonly alg?: string;
}

/**
 * Algorithms STS accepts for web-identity tokens (anything else, notably `none`, is refused here)
 * and whether a signature of `bytes` bytes is whole for them. ECDSA signatures have a fixed size
 * (RFC 7518 §3.4); an RSA signature is as long as the key's modulus, 2048 to 8192 bits in steps
 * of 1024 in practice. A file read mid-write loses its end, which is the signature: this is what
 * catches it, so a passing rotation is retried rather than sent to STS (which would call it an
 * InvalidIdentityToken, a terminal error).
 */
const SIGNATURE_COMPLETE: Record<string, (bytes: number) => boolean> = {
  ES256: (n) => n === 64,
  ES384: (n) => n === 96,
  ES512: (n) => n === 132,
  RS256: wholeRsaSignature,
  RS384: wholeRsaSignature,
  RS512: wholeRsaSignature,
};

function wholeRsaSignature(bytes: number): boolean {
  return bytes >= 256 && bytes <= 1024 && bytes % 128 === 0;
}

const BASE64URL_SEGMENT = /^[A-Za-z0-9_-]+$/;

/** Why a string is not a JWT that STS could accept; each has its own refusal code in the node agent. */
export type JwtShapeProblem = 'empty' | 'too-large' | 'not-jwt' | 'algorithm' | 'signature' | 'no-exp' | 'expired';

/** A JWT that passed the shape checks: its decoded header and payload (untrusted until STS verifies it). */
export interface JwtShape {
  readonly header: Readonly<Record<string, unknown>>;
  readonly payload: Readonly<Record<string, unknown>>;
  readonly alg: string;
  readonly exp: number;
}

export type JwtShapeResult =
  | ({ readonly ok: true } & JwtShape)
  /** `describe` completes a sentence whose subject names where the token came from. */
  | { readonly ok: false; readonly problem: JwtShapeProblem; readonly describe: string };

/**
 * Checks that `token` is a complete compact JWS with an allowed algorithm, a whole signature and an
 * integer `exp` after `nowWallMs`. The token itself never appears in what it returns.
 */
export function readJwtShape(token: string, nowWallMs: number): JwtShapeResult {
  if (token.length === 0) return refusal('empty', 'is empty');
  if (token.length > STS_MAX_TOKEN_LENGTH) {
    return refusal('too-large', `holds ${token.length} characters; STS accepts at most ${STS_MAX_TOKEN_LENGTH}`);
  }
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((p) => BASE64URL_SEGMENT.test(p))) {
    return refusal('not-jwt', 'does not hold a compact JWT (three base64url parts separated by dots)');
  }
  const header = decodeJsonSegment(parts[0]!);
  const payload = decodeJsonSegment(parts[1]!);
  if (!header || !payload) return refusal('not-jwt', 'holds a JWT whose header or payload is not a JSON object (truncated?)');
  const alg = header['alg'];
  const complete = typeof alg === 'string' && Object.hasOwn(SIGNATURE_COMPLETE, alg) ? SIGNATURE_COMPLETE[alg] : undefined;
  if (complete === undefined) {
    const shown = typeof alg === 'string' ? JSON.stringify(alg.slice(0, 20)) : `a ${alg === null ? 'null' : typeof alg}`;
    return refusal('algorithm', `holds a JWT with algorithm ${shown}; STS accepts only RS256/384/512 and ES256/384/512`);
  }
  const signature = parts[2]!;
  // base64url without padding: a whole signature of n bytes is exactly ceil(4n/3) characters.
  const signatureBytes = Buffer.from(signature, 'base64url').length;
  if (!complete(signatureBytes) || signature.length !== Math.ceil((signatureBytes * 4) / 3)) {
    return refusal('signature', `holds a JWT whose ${alg} signature is incomplete (truncated?)`);
  }
  const exp = payload['exp'];
  if (typeof exp !== 'number' || !Number.isInteger(exp) || exp <= 0) return refusal('no-exp', 'holds a JWT without an integer "exp" claim');
  if (exp * 1000 <= nowWallMs) return refusal('expired', `holds a JWT that expired ${Math.round(nowWallMs / 1000 - exp)} s ago`);
  return { ok: true, header, payload, alg: alg as string, exp };
}

/** The catalogue error a token source throws for each problem. */
const SOURCE_ERROR: Record<JwtShapeProblem, ErrorName> = {
  empty: 'TOKEN_NOT_JWT',
  'too-large': 'TOKEN_TOO_LARGE',
  'not-jwt': 'TOKEN_NOT_JWT',
  algorithm: 'TOKEN_NOT_JWT',
  signature: 'TOKEN_NOT_JWT',
  'no-exp': 'TOKEN_NOT_JWT',
  expired: 'TOKEN_EXPIRED',
};

/**
 * Checks that `token` is a complete compact JWS that STS could accept and that it has not expired
 * at `nowWallMs`, and returns its non-secret claims. It does not verify the signature: STS does
 * that against the issuer's JWKS. What it catches is a file read mid-rotation (empty, truncated,
 * not yet written) or the wrong file, before such bytes ever leave the host.
 *
 * `source` names where the token came from, for the error message; the token itself never
 * appears in an error.
 */
export function inspectJwt(token: string, nowWallMs: number, source: string): JwtClaimsSummary {
  const shape = readJwtShape(token, nowWallMs);
  if (!shape.ok) throw new CrosscredError(SOURCE_ERROR[shape.problem], `${source} ${shape.describe}`);
  const { header, payload } = shape;
  const summary: { -readonly [K in keyof JwtClaimsSummary]: JwtClaimsSummary[K] } = { exp: shape.exp };
  if (typeof payload['iss'] === 'string') summary.iss = payload['iss'];
  if (typeof payload['sub'] === 'string') summary.sub = payload['sub'];
  const aud = payload['aud'];
  if (typeof aud === 'string' || (Array.isArray(aud) && aud.every((a) => typeof a === 'string'))) summary.aud = aud;
  if (typeof payload['iat'] === 'number' && Number.isFinite(payload['iat'])) summary.iat = payload['iat'];
  if (typeof header['kid'] === 'string') summary.kid = header['kid'];
  summary.alg = shape.alg;
  return summary;
}

function refusal(problem: JwtShapeProblem, describe: string): JwtShapeResult {
  return { ok: false, problem, describe };
}

function decodeJsonSegment(segment: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
