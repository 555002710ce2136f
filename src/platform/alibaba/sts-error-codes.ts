/**
 * What Alibaba Cloud STS's error codes mean for a retry: the facts the one failure classifier
 * (src/exchange/failure.ts) maps onto its shared FailureKind, as for AWS (platform/aws/sts-error-codes.ts).
 * Codes are matched exactly; a code in none of the sets is judged by its HTTP status.
 *
 * Sources: STS 2015-04-01's error-code table (help.aliyun.com/zh/ram/developer-reference/api-sts-2015-04-01-errorcodes,
 * "the table" below), the SDK error table of ACK's RRSA guide (help.aliyun.com, "use RRSA to authorize
 * pods to access different cloud services", "the RRSA guide"), the STS AssumeRole troubleshooting page
 * (alibabacloud.com/help/doc-detail/42775.htm, "the AssumeRole page"), and Alibaba's common gateway
 * errors (Throttling*, ServiceUnavailable, InternalError), which every RPC-style API answers.
 */

/** STS says the OIDC token expired: re-read the token and try once more. The table and the RRSA guide. */
export const ALIBABA_STS_EXPIRED_TOKEN_CODES: ReadonlySet<string> = new Set(['AuthenticationFail.OIDCToken.Expired']);

/** Codes no retry can fix: a person must change the RAM role, its trust policy, the OIDC provider or the token. */
export const ALIBABA_STS_TERMINAL_CODES: ReadonlySet<string> = new Set<string>([
  // The table (HTTP 401): a trust policy that does not allow this token, or no such OIDC provider.
  'AuthenticationFail.NoPermission',
  // The table: the token's aud is not a client id of the provider; the token is not a JWT STS can
  // read; its signature fails; the provider's URL certificate chain is not trusted.
  'AuthenticationFail.OIDCToken.AudienceNotMatch',
  'AuthenticationFail.OIDCToken.Invalid',
  'AuthenticationFail.OIDCToken.InvalidSignature',
  'AuthenticationFail.OIDCToken.HttpsUrlInvalid',
  // The RRSA guide: the token's iss is not the provider's; the provider's registered fingerprint
  // does not match its certificate (also seen in credentials-go's and credentials-php's integration tests).
  'AuthenticationFail.OIDCToken.IssuerNotMatch',
  'AuthenticationFail.OIDCToken.PublicKeyFingerprintMismatch',
  // The RRSA guide: the RAM role does not exist.
  'EntityNotExist.Role',
  // The AssumeRole page: parameters STS refuses as malformed or out of range.
  'InvalidParameter.RoleSessionName',
  'InvalidParameter.DurationSeconds',
  'InvalidParameter.PolicyGrammar',
  'InvalidParameter.RoleArn',
  // The AssumeRole page: the role may not be assumed this way.
  'NoPermission',
  // Common errors of every RPC-style API: a parameter missing or not understood.
  'MissingParameter',
  'InvalidParameter',
  'InvalidAction.NotFound',
  'InvalidVersion',
]);

/** Transient codes: throttling, STS's own trouble, and STS failing to reach the token's issuer. */
export const ALIBABA_STS_RETRYABLE_CODES: ReadonlySet<string> = new Set<string>([
  // The RRSA guide: "Request was denied due to user flow control."
  'Throttling.User',
  'Throttling',
  'Throttling.Api',
  'ServiceUnavailable',
  'InternalError',
  // The RRSA guide: STS could not get the issuer's public keys. Its cause there is an issuer STS
  // cannot reach at all (a cluster without RRSA), but an issuer that is briefly down answers the
  // same, so it is retried with backoff, like AWS's IDPCommunicationError.
  'AuthenticationFail.OIDCToken.IssuerConfigurationBroken',
]);
