import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { CachedCredentials } from '../cache/role-credential-cache.js';
import { type FetchOutcome, type Lookup, type TokenKeyedCredentialCache, tokenKey } from '../cache/token-keyed-credential-cache.js';
import { exactClientAddressKey } from '../core/client-address.js';
import type { Clock } from '../core/clock.js';
import type { ListenAddress } from '../core/listen-address.js';
import type { CredentialExchange } from '../exchange/credentials.js';
import { HostGuard } from '../http/host-guard.js';
import { HTTP_LIMITS } from '../http/limits.js';
import { HttpListener } from '../http/listener.js';
import { refusalAnswer } from '../http/refusals.js';
import { APPLICATION_JSON, send } from '../http/responses.js';
import { pathOf } from '../http/route-table.js';
import { documentsFor } from '../platform/aws/credential-documents.js';
import type { TokenBuckets } from '../util/token-bucket.js';
import { sendAgentError } from './answers.js';
import type { NodeAgentMetrics } from './metrics.js';
import { readRolePath } from './role-path.js';
import { type AdmittedToken, admitToken, isRefusal, type TokenAdmissionPolicy } from './token-admission.js';

/** Everything one credential listener needs; the cache, limiter and metrics are shared by all of them. */
export interface AgentRequestContext {
  readonly policy: TokenAdmissionPolicy;
  /** Role ARN globs (--allowed-role); empty allows every role. */
  readonly allowedRoles: readonly RegExp[];
  /** The partition STS is in, or undefined when --sts-endpoint overrides the endpoint (then any ARN is sent). */
  readonly stsPartition: string | undefined;
  readonly cache: TokenKeyedCredentialCache;
  readonly limiter: TokenBuckets;
  readonly clock: Clock;
  readonly metrics: NodeAgentMetrics;
  readonly logger: Logger;
  /** Builds the exchange of a new entry: the pod's token for this role, under this session name. */
  exchangeFor(roleArn: string, accountId: string, admitted: AdmittedToken): CredentialExchange;
}

const ALLOW = ['allow', 'GET, HEAD'] as const;

/**
 * One address of the node agent: `GET /v1/credentials/<role ARN>` with the pod's projected token
 * in Authorization, answered in the order of docs/research/kubernetes-cluster.md §5.2. Every step
 * before the cache is cheap and local; only a miss that the limiter admits reaches STS.
 */
export function buildAgentListener(address: ListenAddress, ctx: AgentRequestContext): HttpListener {
  const hostGuard = new HostGuard(address, []);
  const { metrics, logger } = ctx;

  /** Every refusal is counted by a reason from a fixed set and logged without request bytes. */
  const refuse = (req: IncomingMessage, res: ServerResponse, status: number, code: string, reason: string, message: string, headers?: readonly string[]) => {
    metrics.refused(reason);
    logger.debug({ client: req.socket.remoteAddress, status, code, reason }, 'request refused');
    sendAgentError(res, status, code, message, headers);
  };

  const serve = (res: ServerResponse, credentials: CachedCredentials) => send(res, 200, APPLICATION_JSON, documentsFor(credentials).container);

  const answerOutcome = (req: IncomingMessage, res: ServerResponse, outcome: FetchOutcome) => {
    switch (outcome.kind) {
      case 'credentials':
        return serve(res, outcome.credentials);
      case 'refused':
        return refuse(
          req,
          res,
          403,
          outcome.code,
          'sts_refused',
          `STS refused this token for this role (${outcome.code}); check the role's trust policy and the cluster's OIDC provider in IAM`,
        );
      case 'token-expired':
        return refuse(
          req,
          res,
          401,
          'TOKEN_EXPIRED',
          'sts_token_expired',
          'STS says the token has expired; the kubelet rotates the projected token file: read it again',
        );
      case 'unavailable':
        return refuse(
          req,
          res,
          503,
          'CredentialsUnavailable',
          'sts_unavailable',
          `STS could not be asked right now (${outcome.code}); retry after the Retry-After seconds`,
          ['retry-after', String(outcome.retryAfterSeconds)],
        );
    }
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void | Promise<void> => {
    if (!hostGuard.allows(req.headers.host)) {
      return refuse(req, res, 403, 'HOST_FORBIDDEN', 'host', 'the Host header is not an address of this agent (DNS-rebinding guard)');
    }
    const rolePath = readRolePath(pathOf(req.url));
    if (rolePath.kind === 'not-found') return refuse(req, res, 404, 'NOT_FOUND', 'not_found', 'the node agent serves /v1/credentials/<role ARN> only');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return refuse(req, res, 405, 'METHOD_NOT_ALLOWED', 'method', '/v1/credentials/<role ARN> answers GET and HEAD only', ALLOW);
    }
    switch (rolePath.kind) {
      case 'missing':
        return refuse(req, res, 400, 'ROLE_ARN_MISSING', 'role_arn_missing', 'name the role in the path: /v1/credentials/arn:aws:iam::<account>:role/<name>');
      case 'too-long':
        return refuse(req, res, 414, 'ROLE_ARN_TOO_LONG', 'role_arn_too_long', 'the role ARN in the path is longer than 2048 characters (STS refuses longer)');
      case 'invalid':
        return refuse(req, res, 400, 'ROLE_ARN_INVALID', 'role_arn_invalid', `the role ARN in the path ${rolePath.problem}`);
    }
    const { arn, parts } = rolePath;
    if (ctx.stsPartition !== undefined && parts.partition !== ctx.stsPartition) {
      return refuse(
        req,
        res,
        400,
        'ROLE_ARN_PARTITION',
        'role_arn_partition',
        `the role is in another partition than this agent's --region (${ctx.stsPartition})`,
      );
    }
    const admitted = admitToken(req.headers.authorization, ctx.clock.wallNow(), ctx.policy);
    if (isRefusal(admitted)) return refuse(req, res, admitted.status, admitted.code, admitted.reason, admitted.message);
    if (ctx.allowedRoles.length > 0 && !ctx.allowedRoles.some((glob) => glob.test(arn))) {
      return refuse(req, res, 403, 'ROLE_NOT_ALLOWED', 'role_not_allowed', 'this agent does not serve that role (--allowed-role)');
    }
    const key = tokenKey(arn, admitted.token);
    const found: Lookup = ctx.cache.lookup(key);
    switch (found.kind) {
      case 'hit':
        return serve(res, found.credentials);
      case 'refused':
        return refuse(
          req,
          res,
          403,
          found.code,
          'sts_refused_cached',
          `STS refused this token for this role (${found.code}) a short while ago; check the role's trust policy`,
        );
      case 'pending':
        return found.outcome.then((outcome) => answerOutcome(req, res, outcome));
    }
    // A miss costs an STS call: only now is the client's allowance asked. A flood of novel or
    // junk tokens from one address is held to its bucket; its neighbours keep theirs.
    const allowance = ctx.limiter.take(exactClientAddressKey(req.socket.remoteAddress), ctx.clock.monotonicNow());
    if (!allowance.allowed) {
      return refuse(req, res, 503, 'Throttling', 'throttled', 'too many new tokens from this address; retry after the Retry-After seconds', [
        'retry-after',
        String(allowance.retryAfterSeconds),
      ]);
    }
    return ctx.cache
      .fetch(key, { tokenExpiresAtWall: admitted.expiresAtWall, tokenLength: admitted.token.length, exchange: ctx.exchangeFor(arn, parts.accountId, admitted) })
      .then((outcome) => {
        if (outcome.kind === 'credentials') metrics.podServed();
        answerOutcome(req, res, outcome);
      });
  };

  return new HttpListener({
    handler: (req, res) => {
      let pending: void | Promise<void>;
      try {
        pending = handle(req, res);
      } catch (err) {
        return internalError(res, logger, err);
      }
      pending?.catch((err: unknown) => internalError(res, logger, err));
    },
    errorFormat: () => 'json',
    refuse: (_req, res, why) => {
      const answer = refusalAnswer(why, { maxRequestBodyBytes: HTTP_LIMITS.maxRequestBodyBytes });
      metrics.refused(answer.busy ? 'busy' : 'request_invalid');
      sendAgentError(res, answer.status, answer.name, answer.message, answer.headers);
    },
  });
}

function internalError(res: ServerResponse, logger: Logger, err: unknown): void {
  logger.error({ errorName: (err as Error)?.name }, 'unexpected error while answering a credential request');
  if (!res.headersSent) sendAgentError(res, 500, 'InternalError', 'the node agent failed unexpectedly; see its log');
  else res.destroy();
}
