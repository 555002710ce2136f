import type { CachedCredentials } from '../cache/role-credential-cache.js';

/**
 * All the endpoints need of a role's credentials: the narrow port the route handlers read
 * through, the way the EKS Pod Identity Agent's handlers see a CredentialRetriever and kiam's a
 * Client, never the concrete cache. RoleCredentialCache is one; a cache keyed by the caller's own
 * token (the node agent of #12) will be another.
 */
export interface CredentialResolver {
  /** The credentials to serve right now, or undefined. Synchronous: this is the hot path. */
  current(): CachedCredentials | undefined;
  /** Waits at most `maxWaitMs` for a fetch in flight when nothing valid is held. */
  waitForCurrent(maxWaitMs: number): Promise<CachedCredentials | undefined>;
  /** What a 503 tells the client in Retry-After: when the next attempt is due. */
  retryAfterSeconds(): number;
}
