/**
 * What Tencent Cloud STS's error codes mean for a retry: the facts the one failure classifier
 * (src/exchange/failure.ts) maps onto its shared FailureKind, as for AWS (platform/aws/sts-error-codes.ts).
 * Codes are matched exactly; a code in none of the sets is terminal (Tencent answers every error
 * with HTTP 200, so there is no status to judge by).
 *
 * Sources: the codes tencentcloud-sdk-go lists for STS 2018-08-13 (`tencentcloud/sts/v20180813/errors.go`,
 * and the "可能返回的错误码" comment on `AssumeRoleWithWebIdentity` in its `client.go`), and the API 3.0
 * common error codes every Tencent API may answer (the "公共错误码" table of any product's error-code
 * page, e.g. https://cloud.tencent.com/document/product/1388/114322).
 */

/**
 * STS says the web-identity token is not good: re-read the token and try once more. Tencent has no
 * code of its own for an expired token: AssumeRoleWithWebIdentity answers every token problem
 * (expired, bad signature, wrong issuer or audience) with `InvalidParameter.WebIdentityTokenError`.
 * It is read as "expired" because that is the one case a re-read cures (the file was rotated since
 * it was read); a token that is bad for another reason fails the second try too and is then retried
 * with backoff rather than at the slow terminal pace, at the cost of one extra STS call per attempt.
 */
export const TENCENT_STS_EXPIRED_TOKEN_CODES: ReadonlySet<string> = new Set<string>(['InvalidParameter.WebIdentityTokenError']);

/** Codes no retry can fix: a person must change the CAM role, its trust policy, the OIDC provider or the request. */
export const TENCENT_STS_TERMINAL_CODES: ReadonlySet<string> = new Set<string>([
  // AssumeRoleWithWebIdentity's own (sts/v20180813/errors.go).
  'InvalidParameter.ParamError', // a parameter is wrong: the ProviderId, the RoleArn's form, DurationSeconds
  'InvalidParameter.AccountNotAvaliable', // sic: the role's owner account does not exist or is disabled
  'InvalidParameter.OverTimeError', // DurationSeconds above the role's maximum session duration
  'ResourceNotFound.RoleNotFound', // no such role in that account
  'InternalError.IllegalRole', // the role cannot be assumed so (despite the InternalError prefix)
  'UnauthorizedOperation', // the role's trust policy does not allow this provider or `sub`
  'UnsupportedOperation',
  // API 3.0 common codes that mean the request itself is wrong.
  'AuthFailure.InvalidAuthorization', // Authorization is not SKIP
  'AuthFailure.SignatureExpire', // X-TC-Timestamp is over five minutes from STS's clock: fix this host's clock
  'AuthFailure.UnauthorizedOperation',
  'InvalidAction',
  'InvalidParameter',
  'InvalidParameterValue',
  'MissingParameter',
  'UnknownParameter',
  'NoSuchVersion',
  'UnsupportedRegion', // X-TC-Region names a region STS does not serve
  'UnsupportedProtocol',
  'ActionOffline',
  'IpInBlacklist',
  'IpNotInWhitelist',
]);

/** Transient codes: throttling and STS's own trouble. */
export const TENCENT_STS_RETRYABLE_CODES: ReadonlySet<string> = new Set<string>([
  'RequestLimitExceeded',
  'RequestLimitExceeded.UinLimitExceeded',
  'RequestLimitExceeded.IPLimitExceeded',
  'RequestLimitExceeded.GlobalRegionUinLimitExceeded',
  'InvalidParameter.OverLimit', // STS's own "frequency limit exceeded" (超过频率限制)
  'InternalError',
  'InternalError.SystemError',
  'InternalError.UnknownError',
  'InternalError.DbError',
  'InternalError.GetRoleError', // STS could not load the role just now
  'InternalError.GetSeedTokenError',
  'InternalError.GetAppIdError',
  'InternalError.EncryptError',
  'InternalError.PbSerializeError',
  'ServiceUnavailable',
  'ResourceUnavailable',
]);
