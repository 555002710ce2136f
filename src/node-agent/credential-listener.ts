import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { type CachedCredentials, ofCloud } from '../cache/role-credential-cache.js';
import { type FetchOutcome, type Lookup, type TokenKeyedCredentials, tokenKey } from '../cache/token-keyed-credential-cache.js';
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
import { type AdmittedToken, admitToken, isRefusal, type TokenAdmissionPolicy, tokenFromAuthorization } from './token-admission.js';

/** Everything one credential listener needs; the cache, limiter and metrics are shared by all of them. */
export interface AgentRequestContext {
  readonly policy: TokenAdmissionPolicy;
  /** Role ARN globs (--allowed-role); empty allows every role. */
  readonly allowedRoles: readonly RegExp[];
  /** The partition STS is in, or undefined when --sts-endpoint overrides the endpoint (then any ARN is sent). */
  readonly stsPartition: string | undefined;
  readonly cache: TokenKeyedCredentials;
  readonly limiter: TokenBuckets;
  readonly clock: Clock;
  readonly metrics: NodeAgentMetrics;
  readonly logger: Logger;
  /** False until the agent may answer: with --run-as, until it no longer runs as root. */
  accepting(): boolean;
  /** Builds the exchange of a new entry: the pod's token for this role, under this session name. */
  exchangeFor(roleArn: string, accountId: string, admitted: AdmittedToken): CredentialExchange;
}

const ALLOW = ['allow', 'GET, HEAD'] as const;

/**
 * Longest a request waits for an exchange in flight, in ms. Under the JS SDK's 1 s request timeout:
 * the client gets an answer it retries (503 with Retry-After: 1) instead of timing out, and the
 * exchange goes on, so its retry finds the credentials cached. botocore (2 s) and Java retry a 503
 * the same way. Without the bound a request could hang for the STS timeouts (about 18 s).
 */
export const MAX_WAIT_FOR_EXCHANGE_MS = 900;

/** A refusal: its HTTP status, its JSON `Code`, its metric label (a fixed set) and fixed text. */
interface AgentRefusal {
  readonly status: number;
  readonly code: string;
  readonly reason: string;
  readonly message: string;
}

const REFUSALS = {
  host: { status: 403, code: 'HOST_FORBIDDEN', reason: 'host', message: 'the Host header is not an address of this agent (DNS-rebinding guard)' },
  notFound: { status: 404, code: 'NOT_FOUND', reason: 'not_found', message: 'the node agent serves /v1/credentials/<role ARN> only' },
  method: { status: 405, code: 'METHOD_NOT_ALLOWED', reason: 'method', message: '/v1/credentials/<role ARN> answers GET and HEAD only' },
  roleArnMissing: {
    status: 400,
    code: 'ROLE_ARN_MISSING',
    reason: 'role_arn_missing',
    message: 'name the role in the path: /v1/credentials/arn:aws:iam::<account>:role/<name>',
  },
  roleArnTooLong: {
    status: 414,
    code: 'ROLE_ARN_TOO_LONG',
    reason: 'role_arn_too_long',
    message: 'the role ARN in the path is longer than 2048 characters (STS refuses longer)',
  },
  roleNotAllowed: { status: 403, code: 'ROLE_NOT_ALLOWED', reason: 'role_not_allowed', message: 'this agent does not serve that role (--allowed-role)' },
  /** 503, not 429: the Java and Go SDKs retry 5xx and never 4xx. */
  throttled: { status: 503, code: 'Throttling', reason: 'throttled', message: 'too many new tokens from this address; retry after the Retry-After seconds' },
  starting: {
    status: 503,
    code: 'Starting',
    reason: 'starting',
    message: 'the node agent is starting; retry after the Retry-After seconds',
  },
  pending: {
    status: 503,
    code: 'CredentialsPending',
    reason: 'pending',
    message: `STS has not answered within ${MAX_WAIT_FOR_EXCHANGE_MS} ms; the exchange goes on: retry after the Retry-After seconds`,
  },
  stsTokenExpired: {
    status: 401,
    code: 'TOKEN_EXPIRED',
    reason: 'sts_token_expired',
    message: 'STS says the token has expired; the kubelet rotates the projected token file: read it again',
  },
} as const satisfies Record<string, AgentRefusal>;

/** The parser's problems are fixed text, never the request's bytes. */
function roleArnInvalid(problem: string): AgentRefusal {
  return { status: 400, code: 'ROLE_ARN_INVALID', reason: 'role_arn_invalid', message: `the role ARN in the path ${problem}` };
}

function roleArnPartition(partition: string): AgentRefusal {
  return {
    status: 400,
    code: 'ROLE_ARN_PARTITION',
    reason: 'role_arn_partition',
    message: `the role is in another partition than this agent's --region (${partition})`,
  };
}

/** STS's own code is passed on (the classifier's codes are a bounded set); the reason says whether from memory. */
function stsRefusal(code: string, reason: 'sts_refused' | 'sts_refused_cached'): AgentRefusal {
  const when = reason === 'sts_refused' ? '' : ' a short while ago';
  return {
    status: 403,
    code,
    reason,
    message: `STS refused this token for this role (${code})${when}; check the role's trust policy and the cluster's OIDC provider in IAM`,
  };
}

function stsUnavailable(code: string): AgentRefusal {
  return {
    status: 503,
    code: 'CredentialsUnavailable',
    reason: 'sts_unavailable',
    message: `STS could not be asked right now (${code}); retry after the Retry-After seconds`,
  };
}

/**
 * One address of the node agent: `GET /v1/credentials/<role ARN>` with the pod's projected token
 * in Authorization, answered in the order of docs/research/kubernetes-cluster.md §5.2. Every step
 * before the cache is cheap and local; only a miss that the limiter admits reaches STS.
 */
export function buildAgentListener(address: ListenAddress, ctx: AgentRequestContext): HttpListener {
  const hostGuard = new HostGuard(address, []);
  const { metrics, logger } = ctx;

  /** Every refusal is counted by a reason from a fixed set and logged without request bytes. */
  const refuse = (req: IncomingMessage, res: ServerResponse, refusal: AgentRefusal, headers?: readonly string[]) => {
    metrics.refused(refusal.reason);
    logger.debug({ client: req.socket.remoteAddress, status: refusal.status, code: refusal.code, reason: refusal.reason }, 'request refused');
    sendAgentError(res, refusal.status, refusal.code, refusal.message, headers);
  };

  const serve = (res: ServerResponse, credentials: CachedCredentials) => {
    // The agent exchanges at AWS STS only: anything else in its cache is a defect, answered 500.
    if (!ofCloud(credentials, 'aws')) throw new Error('the node agent holds credentials of another cloud');
    send(res, 200, APPLICATION_JSON, documentsFor(credentials).container);
  };

  const answerOutcome = (req: IncomingMessage, res: ServerResponse, outcome: FetchOutcome) => {
    switch (outcome.kind) {
      case 'credentials':
        return serve(res, outcome.credentials);
      case 'refused':
        return refuse(req, res, stsRefusal(outcome.code, 'sts_refused'));
      case 'token-expired':
        return refuse(req, res, REFUSALS.stsTokenExpired);
      case 'unavailable':
        return refuse(req, res, stsUnavailable(outcome.code), ['retry-after', String(outcome.retryAfterSeconds)]);
    }
  };

  /** Answers with the outcome, or with 503 CredentialsPending if it takes longer than MAX_WAIT_FOR_EXCHANGE_MS. */
  const answerWithin = (req: IncomingMessage, res: ServerResponse, outcome: Promise<FetchOutcome>): Promise<void> => {
    let answered = false;
    const timer = ctx.clock.setTimeout(() => {
      answered = true;
      refuse(req, res, REFUSALS.pending, ['retry-after', '1']);
    }, MAX_WAIT_FOR_EXCHANGE_MS);
    return outcome.then(
      (settled) => {
        ctx.clock.clearTimeout(timer);
        if (!answered) answerOutcome(req, res, settled);
      },
      (err: unknown) => {
        ctx.clock.clearTimeout(timer);
        if (!answered) throw err;
        logger.error({ errorName: (err as Error)?.name }, 'unexpected error in an exchange whose request was already answered');
      },
    );
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void | Promise<void> => {
    if (!ctx.accepting()) return refuse(req, res, REFUSALS.starting, ['retry-after', '1']);
    if (!hostGuard.allows(req.headers.host)) return refuse(req, res, REFUSALS.host);
    const rolePath = readRolePath(pathOf(req.url));
    if (rolePath.kind === 'not-found') return refuse(req, res, REFUSALS.notFound);
    if (req.method !== 'GET' && req.method !== 'HEAD') return refuse(req, res, REFUSALS.method, ALLOW);
    switch (rolePath.kind) {
      case 'missing':
        return refuse(req, res, REFUSALS.roleArnMissing);
      case 'too-long':
        return refuse(req, res, REFUSALS.roleArnTooLong);
      case 'invalid':
        return refuse(req, res, roleArnInvalid(rolePath.problem));
    }
    const { arn, parts } = rolePath;
    if (ctx.stsPartition !== undefined && parts.partition !== ctx.stsPartition) return refuse(req, res, roleArnPartition(ctx.stsPartition));
    // The hot path: a token byte for byte identical to one admitted, allowed and exchanged for this
    // role before, and not yet expired (lookup checks its exp), is served with nothing checked
    // again: the checks below would judge the same bytes against the same settings the same way.
    const presented = tokenFromAuthorization(req.headers.authorization);
    const key = presented === undefined ? undefined : tokenKey(arn, presented);
    const found: Lookup | undefined = key === undefined ? undefined : ctx.cache.lookup(key);
    if (found?.kind === 'hit') return serve(res, found.credentials);
    const admitted = admitToken(req.headers.authorization, ctx.clock.wallNow(), ctx.policy);
    if (isRefusal(admitted)) return refuse(req, res, admitted);
    if (ctx.allowedRoles.length > 0 && !ctx.allowedRoles.some((glob) => glob.test(arn))) return refuse(req, res, REFUSALS.roleNotAllowed);
    // Admitted, so a token was presented, and `key` and `found` are its.
    if (key === undefined || found === undefined) throw new Error('an admitted token has no cache key');
    switch (found.kind) {
      case 'refused':
        return refuse(req, res, stsRefusal(found.code, 'sts_refused_cached'));
      case 'pending':
        return answerWithin(req, res, found.outcome);
    }
    // A miss costs an STS call: only now is the client's allowance asked. A flood of novel or
    // junk tokens from one address is held to its bucket; its neighbours keep theirs.
    const allowance = ctx.limiter.take(exactClientAddressKey(req.socket.remoteAddress), ctx.clock.monotonicNow());
    if (!allowance.allowed) return refuse(req, res, REFUSALS.throttled, ['retry-after', String(allowance.retryAfterSeconds)]);
    const outcome = ctx.cache
      .fetch(key, { tokenExpiresAtWall: admitted.expiresAtWall, tokenLength: admitted.token.length, exchange: ctx.exchangeFor(arn, parts.accountId, admitted) })
      .then((settled) => {
        // Counted when the pod's credentials arrive, whether or not this request waited for them.
        if (settled.kind === 'credentials') metrics.podServed();
        return settled;
      });
    return answerWithin(req, res, outcome);
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
