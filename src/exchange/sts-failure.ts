import { isCrosscredError } from '../errors.js';

/**
 * What to do after a failed exchange. This is the one place that decides it, for every STS answer,
 * network error and token-source error (the EKS Pod Identity Agent's IsIrrecoverableApiError is the model):
 * - `terminal`: STS will say the same again until a person changes something (trust policy, IdP,
 *   token audience). Retried rarely, so a misconfiguration never becomes a retry storm.
 * - `retryable`: transient (throttling, 5xx, network, timeouts, a token file mid-rotation).
 *   Retried with exponential backoff and jitter.
 * - `token-expired`: STS says the JWT expired. Re-read the token once and retry at once: the file
 *   has usually been rotated since we read it.
 */
export type FailureKind = 'terminal' | 'retryable' | 'token-expired';

export interface ClassifiedFailure {
  readonly kind: FailureKind;
  /** A short, stable, non-secret code for logs, metrics and /readyz (an STS error code or ours). */
  readonly code: string;
  /** A message safe to log: never contains the token, keys or a request body. */
  readonly message: string;
}

/** STS error codes that no retry can fix. The SDK appends "Exception" to some; both spellings are listed. */
const TERMINAL_STS_CODES = new Set([
  'InvalidIdentityToken',
  'IDPRejectedClaim',
  'AccessDenied',
  'MalformedPolicyDocument',
  'PackedPolicyTooLarge',
  'RegionDisabled',
  'ValidationError',
  'InvalidParameterValue',
  'InvalidAction',
]);

const RETRYABLE_STS_CODES = new Set(['IDPCommunicationError', 'Throttling', 'ThrottlingException', 'RequestLimitExceeded', 'ServiceUnavailable', 'InternalFailure', 'RequestTimeout']);

const NETWORK_ERROR_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED',
  'UND_ERR_RESPONSE_STATUS_CODE', 'UND_ERR_ABORTED',
]);

/**
 * An error code from the wire becomes a log field and a metric label only if it looks like one,
 * so a hostile or broken endpoint cannot inject text or grow label cardinality without bound.
 */
const SAFE_CODE = /^[A-Za-z][A-Za-z0-9.]{0,63}$/;

export function classifyFailure(err: unknown): ClassifiedFailure {
  if (isCrosscredError(err)) {
    // Our own errors: token-source problems are transient (a file mid-rotation, a kubelet that
    // has not written yet) and a bad STS answer is retried like a 5xx.
    return { kind: 'retryable', code: err.code, message: err.message };
  }

  const e = (err ?? {}) as { name?: unknown; code?: unknown; message?: unknown; $metadata?: { httpStatusCode?: number }; $fault?: unknown };
  const name = typeof e.name === 'string' && SAFE_CODE.test(e.name) ? e.name : '';
  const stsCode = name.replace(/Exception$/, '');
  const status = e.$metadata?.httpStatusCode;

  if (stsCode === 'ExpiredToken') {
    return { kind: 'token-expired', code: 'ExpiredToken', message: 'STS says the web-identity token has expired' };
  }
  if (TERMINAL_STS_CODES.has(stsCode)) {
    return { kind: 'terminal', code: stsCode, message: `STS refused the exchange: ${stsCode}` };
  }
  if (RETRYABLE_STS_CODES.has(stsCode) || RETRYABLE_STS_CODES.has(name)) {
    return { kind: 'retryable', code: stsCode, message: `STS answered ${stsCode}` };
  }
  const causeCode = (e as { cause?: { code?: unknown } }).cause?.code;
  const rawNetCode = typeof e.code === 'string' ? e.code : typeof causeCode === 'string' ? causeCode : '';
  const netCode = NETWORK_ERROR_CODES.has(rawNetCode) ? rawNetCode : '';
  if (netCode !== '' || name === 'TimeoutError' || name === 'AbortError') {
    return { kind: 'retryable', code: netCode || name, message: `STS could not be reached: ${netCode || name}` };
  }
  if (typeof status === 'number' && status >= 500) {
    return { kind: 'retryable', code: `HTTP${status}`, message: `STS answered HTTP ${status}` };
  }
  if (typeof status === 'number' && status === 429) {
    return { kind: 'retryable', code: 'HTTP429', message: 'STS answered HTTP 429' };
  }
  if (typeof status === 'number' && status >= 400) {
    // An error code we do not know, on a 4xx: a person has to look. Terminal, like AccessDenied.
    return { kind: 'terminal', code: stsCode || `HTTP${status}`, message: `STS refused the exchange: ${stsCode || `HTTP ${status}`}` };
  }
  // Anything else (the SDK failing to parse garbage, an unexpected exception): transient, retried.
  return { kind: 'retryable', code: stsCode && stsCode !== 'Error' ? stsCode : 'UnexpectedError', message: 'STS exchange failed unexpectedly' };
}
