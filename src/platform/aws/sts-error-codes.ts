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
  // A chain hop signed with credentials STS does not know or cannot verify (they were revoked, or
  // the keys are wrong); the chain has renewed its caller once before this is final.
  'InvalidClientTokenId',
  'SignatureDoesNotMatch',
]);

/** What to do about a terminal code, where the code alone does not say it (appended to the message). */
export const AWS_STS_CODE_HINTS: Readonly<Record<string, string>> = {
  PackedPolicyTooLarge:
    "the session's policy, policy ARNs and tags pack into more than STS allows: send fewer or shorter tags, a shorter policy, or fewer policy ARNs",
  MalformedPolicyDocument: 'the session policy is not a valid IAM policy document',
  AccessDenied:
    "the role's trust policy does not let this caller assume it (for a chain hop: the previous role as Principal, and the sts:ExternalId condition)",
};

/** Transient codes: throttling and STS's own or its IdP's trouble. */
export const AWS_STS_RETRYABLE_CODES: ReadonlySet<string> = new Set([
  'IDPCommunicationError',
  'Throttling',
  'RequestLimitExceeded',
  'ServiceUnavailable',
  'InternalFailure',
  'RequestTimeout',
]);
