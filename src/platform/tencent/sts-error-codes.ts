/**
 * What Tencent Cloud STS's error codes mean for a retry: the facts the one failure classifier
 * (src/exchange/failure.ts) maps onto its shared FailureKind, as for AWS (platform/aws/sts-error-codes.ts).
 * Codes are matched exactly; a code in none of the sets is terminal (Tencent answers every error
 * with HTTP 200, so there is no status to judge by).
 */

/** STS says the web-identity token expired: re-read the token and try once more. */
export const TENCENT_STS_EXPIRED_TOKEN_CODES: ReadonlySet<string> = new Set<string>([]);

/** Codes no retry can fix: a person must change the CAM role, its trust policy, the OIDC provider or the token. */
export const TENCENT_STS_TERMINAL_CODES: ReadonlySet<string> = new Set<string>([]);

/** Transient codes: throttling and STS's own trouble. */
export const TENCENT_STS_RETRYABLE_CODES: ReadonlySet<string> = new Set<string>(['RequestLimitExceeded', 'InternalError']);
