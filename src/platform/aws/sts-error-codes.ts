/**
 * What AWS STS's error codes mean for a retry: the facts the one failure classifier
 * (src/exchange/failure.ts) maps onto its shared FailureKind. @aws-sdk/client-sts names its
 * modelled errors with an `Exception` suffix (InvalidIdentityTokenException…) and unmodelled ones as
 * sent (AccessDenied); the classifier strips the suffix before looking them up.
 */

/** STS says the web-identity JWT expired: re-read the token and try once more. */
export const AWS_STS_EXPIRED_TOKEN_CODE = 'ExpiredToken';

/** Codes no retry can fix: a person must change a trust policy, an IdP or a token audience. */
export const AWS_STS_TERMINAL_CODES: ReadonlySet<string> = new Set([
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

/** Transient codes: throttling and STS's own or its IdP's trouble. */
export const AWS_STS_RETRYABLE_CODES: ReadonlySet<string> = new Set([
  'IDPCommunicationError',
  'Throttling',
  'RequestLimitExceeded',
  'ServiceUnavailable',
  'InternalFailure',
  'RequestTimeout',
]);
