/**
 * What Alibaba Cloud STS's error codes mean for a retry: the facts the one failure classifier
 * (src/exchange/failure.ts) maps onto its shared FailureKind, as for AWS (platform/aws/sts-error-codes.ts).
 * Codes are matched exactly; a code in none of the sets is judged by its HTTP status.
 */

/** STS says the OIDC token expired: re-read the token and try once more. */
export const ALIBABA_STS_EXPIRED_TOKEN_CODES: ReadonlySet<string> = new Set(['AuthenticationFail.OIDCToken.Expired']);

/** Codes no retry can fix: a person must change the RAM role, its trust policy, the OIDC provider or the token. */
export const ALIBABA_STS_TERMINAL_CODES: ReadonlySet<string> = new Set<string>([]);

/** Transient codes: throttling and STS's own trouble. */
export const ALIBABA_STS_RETRYABLE_CODES: ReadonlySet<string> = new Set<string>(['Throttling', 'ServiceUnavailable', 'InternalError']);
