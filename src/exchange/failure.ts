import { isCrosscredError } from '../core/errors.js';
import { ALIBABA_STS_EXPIRED_TOKEN_CODES, ALIBABA_STS_RETRYABLE_CODES, ALIBABA_STS_TERMINAL_CODES } from '../platform/alibaba/sts-error-codes.js';
import { AWS_STS_CODE_HINTS, AWS_STS_EXPIRED_TOKEN_CODE, AWS_STS_RETRYABLE_CODES, AWS_STS_TERMINAL_CODES } from '../platform/aws/sts-error-codes.js';
import { TENCENT_STS_EXPIRED_TOKEN_CODES, TENCENT_STS_RETRYABLE_CODES, TENCENT_STS_TERMINAL_CODES } from '../platform/tencent/sts-error-codes.js';
import { ChainStepFailure } from './chain-step-failure.js';
import { CloudStsRefusal } from './cloud-sts-refusal.js';

/**
 * What to do after a failed exchange. This is the one place that decides it, for every STS answer,
 * network error and token-source error (the EKS Pod Identity Agent's IsIrrecoverableApiError is the model).
 * Each cloud's STS error codes (src/platform/<cloud>/) map onto the one FailureKind here:
 * - `terminal`: STS will say the same again until a person changes something (trust policy, IdP,
 *   token audience). Retried rarely, so a misconfiguration never becomes a retry storm.
 * - `retryable`: transient (throttling, 5xx, network, timeouts, TLS, a token file mid-rotation).
 *   Retried with exponential backoff and jitter.
 * - `token-expired`: STS says the JWT expired. Re-read the token once and retry at once: the file
 *   has usually been rotated since we read it.
 */
export type FailureKind = 'terminal' | 'retryable' | 'token-expired';

export interface ClassifiedFailure {
  readonly kind: FailureKind;
  /**
   * A short, stable, non-secret code for logs, metrics and /readyz: an STS error code (src/platform/<cloud>/), a
   * network or TLS error code, `HTTP<status>`, `UnexpectedError`, or one of ours.
   * Always from a bounded set, since it becomes a metric label.
   */
  readonly code: string;
  /** A message safe to log: never contains the token, keys or a request body. */
  readonly message: string;
  /** What a person can do about it, where the code alone does not say (fixed text, per code). */
  readonly hint?: string;
}

const NETWORK_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_ABORTED',
]);

/** OpenSSL and Node certificate errors: a missing or wrong CA bundle, a proxy intercepting TLS. */
const TLS_ERROR_CODE =
  /^(?:CERT_[A-Z_]{1,40}|UNABLE_TO_[A-Z_]{1,40}|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|ERR_TLS_[A-Z_]{1,40}|ERR_SSL_[A-Z_]{1,60})$/;

/** Each other cloud's table of STS error codes, read by the same rules as AWS's. */
const OTHER_CLOUD_CODES = {
  alibaba: {
    name: 'Alibaba Cloud STS',
    expired: ALIBABA_STS_EXPIRED_TOKEN_CODES,
    terminal: ALIBABA_STS_TERMINAL_CODES,
    retryable: ALIBABA_STS_RETRYABLE_CODES,
  },
  tencent: {
    name: 'Tencent Cloud STS',
    expired: TENCENT_STS_EXPIRED_TOKEN_CODES,
    terminal: TENCENT_STS_TERMINAL_CODES,
    retryable: TENCENT_STS_RETRYABLE_CODES,
  },
} as const;

/** crosscred's own codes that no retry can fix: the configuration asks for what will never be. */
const TERMINAL_OWN_CODES: ReadonlySet<string> = new Set(['CROSSCRED_ERR_SESSION_TEMPLATE_UNRESOLVED']);

export function classifyFailure(err: unknown): ClassifiedFailure {
  if (err instanceof ChainStepFailure) return classifyChainStep(err);
  if (err instanceof CloudStsRefusal) return classifyOtherCloud(err);
  if (isCrosscredError(err)) {
    // Our own errors: token-source problems are transient (a file mid-rotation, a kubelet that
    // has not written yet) and a bad or late STS answer is retried like a 5xx; those in
    // TERMINAL_OWN_CODES need a person. Each carries its catalogue hint.
    const kind = TERMINAL_OWN_CODES.has(err.code) ? 'terminal' : 'retryable';
    return { kind, code: err.code, message: err.message, hint: err.hint };
  }

  const e = (err ?? {}) as { name?: unknown; code?: unknown; $metadata?: { httpStatusCode?: number }; cause?: { code?: unknown } };
  const name = typeof e.name === 'string' ? e.name : '';
  const stsCode = name.replace(/Exception$/, '');
  const status = e.$metadata?.httpStatusCode;

  if (stsCode === AWS_STS_EXPIRED_TOKEN_CODE) {
    return { kind: 'token-expired', code: 'ExpiredToken', message: 'STS says the web-identity token has expired' };
  }
  if (AWS_STS_TERMINAL_CODES.has(stsCode)) {
    const hint = AWS_STS_CODE_HINTS[stsCode];
    return { kind: 'terminal', code: stsCode, message: `STS refused the exchange: ${stsCode}`, ...(hint ? { hint } : {}) };
  }
  if (AWS_STS_RETRYABLE_CODES.has(stsCode)) {
    return { kind: 'retryable', code: stsCode, message: `STS answered ${stsCode}` };
  }
  const rawCode = typeof e.code === 'string' ? e.code : typeof e.cause?.code === 'string' ? e.cause.code : '';
  if (TLS_ERROR_CODE.test(rawCode)) {
    return { kind: 'retryable', code: rawCode, message: `TLS to STS failed: ${rawCode} (check --ca-bundle / AWS_CA_BUNDLE, and any TLS-intercepting proxy)` };
  }
  if (NETWORK_ERROR_CODES.has(rawCode) || name === 'TimeoutError' || name === 'AbortError') {
    const code = NETWORK_ERROR_CODES.has(rawCode) ? rawCode : name;
    return { kind: 'retryable', code, message: `STS could not be reached: ${code}` };
  }
  if (typeof status === 'number' && (status >= 500 || status === 429)) {
    return { kind: 'retryable', code: `HTTP${status}`, message: `STS answered HTTP ${status}` };
  }
  if (typeof status === 'number' && status >= 400) {
    // An unknown code on a 4xx (a proxy's or firewall's own error page, an STS error we do not
    // know): a person has to look, so terminal, like AccessDenied.
    return { kind: 'terminal', code: `HTTP${status}`, message: `STS refused the exchange with HTTP ${status}${SAFE_NAME.test(name) ? ` (${name})` : ''}` };
  }
  // Anything else (the SDK failing to parse garbage, an unexpected exception): transient, retried.
  return { kind: 'retryable', code: 'UnexpectedError', message: `STS exchange failed unexpectedly${SAFE_NAME.test(name) ? ` (${name})` : ''}` };
}

/**
 * A step of a role chain, judged by its cause, and named in the message (the code stays the cause's,
 * a bounded label). On a hop, `ExpiredToken` means the caller's credentials (the step before)
 * expired, not the web-identity token: the chain has already renewed itself from its first step
 * once (src/roles/role-chain.ts), so what is left is retried with backoff, never re-read as a token.
 */
function classifyChainStep(err: ChainStepFailure): ClassifiedFailure {
  const inner = classifyFailure(err.cause);
  const kind = err.step > 0 && inner.kind === 'token-expired' ? 'retryable' : inner.kind;
  const message = err.step > 0 && inner.code === 'ExpiredToken' ? `STS says the credentials signing ${err.stepWords} expired` : inner.message;
  return { ...inner, kind, message: `${err.stepWords} (${err.roleArn}): ${message}` };
}

/**
 * Alibaba's and Tencent's STS answers, by the same three kinds: the code's table first, then the
 * HTTP status (5xx and 429 retry, another 4xx is terminal), and an unknown code on a 200 (Tencent
 * answers every error so) is terminal: a person has to look, as for an unknown AWS 4xx.
 */
function classifyOtherCloud(err: CloudStsRefusal): ClassifiedFailure {
  const table = OTHER_CLOUD_CODES[err.cloud];
  const code = err.stsCode;
  // Tencent has one code for an expired and an otherwise bad token: the message says no more than the code.
  if (table.expired.has(code)) return { kind: 'token-expired', code, message: `${table.name} refused the web-identity token (${code}); it is read again once` };
  if (table.terminal.has(code)) return { kind: 'terminal', code, message: `${table.name} refused the exchange: ${code}` };
  if (table.retryable.has(code)) return { kind: 'retryable', code, message: `${table.name} answered ${code}` };
  if (err.httpStatus >= 500 || err.httpStatus === 429) return { kind: 'retryable', code, message: `${table.name} answered ${code} (HTTP ${err.httpStatus})` };
  return { kind: 'terminal', code, message: `${table.name} refused the exchange: ${code}` };
}

/** A name from the wire is shown in a log message only if it looks like an error name. */
const SAFE_NAME = /^[A-Za-z][A-Za-z0-9.]{0,63}$/;
