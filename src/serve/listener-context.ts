import type { ServerResponse } from 'node:http';
import type { CachedCredentials } from '../cache/role-credential-cache.js';
import type { RoleConfig } from '../config/config.js';
import { type ErrorFormat, send, sendError } from '../http/responses.js';
import type { ContainerSecret } from './container-secret.js';
import type { CredentialResolver } from './credential-resolver.js';
import type { SessionTokenIssuer } from './session-tokens.js';

/**
 * How long a request may wait for an in-flight first fetch when nothing valid is cached. The Go
 * SDK gives IMDS 500 ms to send headers and the JS SDK and botocore one second, so a client must
 * get a 503 with Retry-After before it gives up on us, never a hang.
 */
export const COLD_WAIT_MS = 400;

/** A role as one listener serves it: its configuration, and its credential cache seen through the resolver port. */
export interface ServedRole {
  readonly config: RoleConfig;
  readonly cache: CredentialResolver;
}

/** Everything the route handlers of one credential listener need. */
export interface ListenerContext {
  /** The name of the role of this listener's IMDS and of its bare `/v1/credentials`. */
  readonly roleName: string;
  /**
   * Every configured role by name (`/v1/credentials/<name>`), looked up on each request: a
   * configuration reload (SIGHUP) replaces entries in place.
   */
  readonly roles: ReadonlyMap<string, ServedRole>;
  readonly sessionTokens: SessionTokenIssuer;
  /** Undefined when no --auth-token-file is configured: the container endpoint is then off. */
  readonly containerSecret: ContainerSecret | undefined;
  readonly allowImdsV1: boolean;
  /** False with --disable-imds: no `/latest/…` routes at all (they answer 404). */
  readonly imdsEnabled: boolean;
  /**
   * The listener binds a loopback address (127.0.0.0/8, ::1, localhost): only this host's processes
   * reach it, so an endpoint without any auth header (Alibaba's URI provider) may be served there
   * without a secret.
   */
  readonly loopback: boolean;
}

/** Answers from memory, or waits a bounded time for the in-flight fetch of a cold role. */
function credentialsFor(role: ServedRole): CachedCredentials | Promise<CachedCredentials | undefined> {
  return role.cache.current() ?? role.cache.waitForCurrent(COLD_WAIT_MS);
}

/**
 * Answers with the body `render` makes of the role's cached credentials, the same for every route
 * of every cloud: synchronously from memory (the hot path: no closure, no promise), or after a
 * bounded wait for a cold role's first fetch. No body to send (nothing valid yet, or credentials of
 * another cloud than the route's) is a 503 with Retry-After.
 */
export function answerFromCache(
  res: ServerResponse,
  role: ServedRole,
  contentType: string,
  format: ErrorFormat,
  render: (entry: CachedCredentials) => Buffer | undefined,
): void | Promise<void> {
  const entry = credentialsFor(role);
  if (!(entry instanceof Promise)) return sendRendered(res, role, contentType, format, render, entry);
  return entry.then((e) => sendRendered(res, role, contentType, format, render, e));
}

function sendRendered(
  res: ServerResponse,
  role: ServedRole,
  contentType: string,
  format: ErrorFormat,
  render: (entry: CachedCredentials) => Buffer | undefined,
  entry: CachedCredentials | undefined,
): void {
  const body = entry === undefined ? undefined : render(entry);
  if (body === undefined) sendUnavailable(res, role, format);
  else send(res, 200, contentType, body);
}

/** A 503 for a role with nothing valid to serve; never a 200 with empty or expired credentials. */
export function sendUnavailable(res: ServerResponse, role: ServedRole, format: ErrorFormat): void {
  sendError(res, 'CREDENTIALS_UNAVAILABLE', `no valid credentials for role ${role.config.name} yet`, format, {
    headers: ['retry-after', String(role.cache.retryAfterSeconds())],
  });
}
