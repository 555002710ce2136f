import type { JwtClaimsSummary } from '../protocol/jwt-shape.js';

/**
 * Where a web-identity JWT comes from. The file source is the first; Kubernetes TokenRequest, exec
 * and the VM issuer sources implement the same interface, so the exchange never knows which one
 * it talks to.
 */
export interface WebIdentityToken {
  /** The compact JWT, exactly as it goes to STS. Secret: never log it. */
  readonly token: string;
  /** When the token stops being accepted (epoch ms, from its `exp`), so callers know when to ask again. */
  readonly expiresAtWall: number;
  /** Claims that are safe to log and help an operator see which identity is in use. */
  readonly claims: TokenClaimsSummary;
}

/** The claims a token source reports (none of them secret): what protocol/jwt-shape.ts reads from a JWT. */
export type TokenClaimsSummary = JwtClaimsSummary;

export interface TokenSource {
  /** A short, loggable description such as `file /var/run/secrets/…/token`. */
  readonly description: string;
  /**
   * Returns a well-formed, unexpired JWT, read fresh (sources must not cache what may have rotated).
   * Throws a CrosscredError (TOKEN_*) when no such token is available right now.
   */
  getToken(): Promise<WebIdentityToken>;
  /**
   * Forget any cached token, so the next getToken fetches a new one. Called when STS says the
   * token expired. Sources that read fresh every time need not implement it.
   */
  invalidate?(): void;
}
