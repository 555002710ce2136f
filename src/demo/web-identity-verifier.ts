import { createRemoteJWKSet, type JWTPayload, type JWTVerifyGetKey, errors as joseErrors, jwtVerify } from 'jose';

/**
 * The token check every STS stand-in of the demo makes (AWS's, Alibaba's and Tencent's), the way a
 * cloud's STS checks a web-identity token against its registered OIDC provider: the signature
 * against the issuer's JWKS, found through its discovery document; `iss`; `aud`; `exp`; and then,
 * by the caller, a trust rule on `sub`. Each stand-in words the outcome in its own cloud's errors.
 */

/** The registered provider a token must come from. */
export interface OidcProviderRule {
  /** Issuer URL the token's `iss` must equal. */
  readonly issuer: string;
  /** The `aud` (Alibaba: client id; Tencent: client id) the provider is registered with. */
  readonly audience: string;
}

/** Why a token was not accepted, in words each stand-in maps to its cloud's error code. */
export type TokenRejection = 'expired' | 'idp-unreachable' | 'invalid';

export type VerifiedToken =
  | { readonly ok: true; readonly subject: string; readonly payload: JWTPayload }
  | { readonly ok: false; readonly why: TokenRejection };

export class WebIdentityVerifier {
  readonly #jwks = new Map<string, JWTVerifyGetKey>();

  /** `now` is the STS's own clock (epoch ms). */
  constructor(private readonly now: () => number) {}

  async verify(token: string, provider: OidcProviderRule): Promise<VerifiedToken> {
    try {
      const { payload } = await jwtVerify(token, this.#keysFor(provider.issuer), {
        issuer: provider.issuer,
        audience: provider.audience,
        algorithms: ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512'],
        requiredClaims: ['exp', 'sub'],
        currentDate: new Date(this.now()),
      });
      return { ok: true, subject: payload.sub!, payload };
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) return { ok: false, why: 'expired' };
      if (err instanceof joseErrors.JOSEError && (err.code === 'ERR_JWKS_TIMEOUT' || err.code === 'ERR_JOSE_GENERIC'))
        return { ok: false, why: 'idp-unreachable' };
      return { ok: false, why: 'invalid' };
    }
  }

  /** The issuer's keys, found as the clouds find them: discovery document first, then its jwks_uri. */
  #keysFor(issuer: string): JWTVerifyGetKey {
    let keys = this.#jwks.get(issuer);
    if (!keys) {
      let resolved: JWTVerifyGetKey | undefined;
      keys = async (header, token) => {
        if (!resolved) {
          const res = await fetch(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(5000) });
          const discovery = (await res.json()) as { jwks_uri?: string; issuer?: string };
          if (!res.ok || typeof discovery.jwks_uri !== 'string' || discovery.issuer !== issuer) throw new joseErrors.JOSEError('bad discovery document');
          resolved = createRemoteJWKSet(new URL(discovery.jwks_uri));
        }
        return resolved(header, token);
      };
      this.#jwks.set(issuer, keys);
    }
    return keys;
  }
}

/** IAM StringLike (and RAM's and CAM's `*` conditions): `*` any run of characters, `?` one character. */
export function globMatch(pattern: string, value: string): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
    's',
  );
  return re.test(value);
}

/** Reads a request body of at most `maxBytes`; throws past it. */
export async function readSmallBody(req: AsyncIterable<unknown>, maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new Error('body too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
