import type { FastifyReply } from 'fastify';
import type { CachedCredentials, RoleCredentialCache } from '../cache/role-credential-cache.js';
import type { RoleConfig } from '../config/config.js';
import { CrosscredError, ErrorCodes, type ErrorName } from '../errors.js';
import type { ContainerSecret } from './container-secret.js';
import type { SessionTokenIssuer } from './session-tokens.js';

/**
 * How long a request may wait for an in-flight first fetch when nothing valid is cached. The Go
 * SDK gives IMDS 500 ms to send headers and the JS SDK and botocore one second, so a client must
 * get a 503 with Retry-After before it gives up on us, never a hang.
 */
export const COLD_WAIT_MS = 400;

/** A role as one listener serves it: its cache and its configuration. */
export interface ServedRole {
  readonly config: RoleConfig;
  readonly cache: RoleCredentialCache;
}

/** Everything the route handlers of one credential listener need. */
export interface ListenerContext {
  /** The role of this listener's IMDS and of its bare `/v1/credentials`. */
  readonly role: ServedRole;
  /** Every configured role by name, for `/v1/credentials/<name>`. */
  readonly roles: ReadonlyMap<string, ServedRole>;
  readonly sessionTokens: SessionTokenIssuer;
  /** Undefined when no --auth-token-file is configured: the container endpoint is then off. */
  readonly containerSecret: ContainerSecret | undefined;
  readonly allowImdsV1: boolean;
}

/** Answers from memory, or waits a bounded time for the in-flight fetch of a cold role. */
export function credentialsFor(role: ServedRole): CachedCredentials | Promise<CachedCredentials | undefined> {
  return role.cache.current() ?? role.cache.waitForCurrent(COLD_WAIT_MS);
}

/** A 503 for a role with nothing valid to serve; never a 200 with empty or expired credentials. */
export function unavailable(reply: FastifyReply, role: ServedRole, format: 'text' | 'json'): FastifyReply {
  reply.header('retry-after', String(role.cache.retryAfterSeconds()));
  return sendError(reply, 'CREDENTIALS_UNAVAILABLE', `no valid credentials for role ${role.config.name} yet`, format);
}

/**
 * An error answer: `{"Code","Message"}` JSON for the container endpoint, one line of text for IMDS.
 * The status is the catalogue's, unless `status` overrides it (framework errors such as 413).
 */
export function sendError(reply: FastifyReply, name: ErrorName, message: string, format: 'text' | 'json', status?: number): FastifyReply {
  const err = new CrosscredError(name, message);
  reply.code(status ?? ErrorCodes[name].status);
  if (format === 'json') {
    return reply.type('application/json').send(JSON.stringify({ Code: err.code, Message: `${err.message} (${err.hint})` }));
  }
  return reply.type('text/plain').send(`${err.describe()}\n`);
}
