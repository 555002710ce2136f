import type { CloudName } from '../core/clouds.js';

/**
 * An error answer of Alibaba's or Tencent's STS, as their exchanges raise it (AWS STS errors come
 * from @aws-sdk/client-sts in its own shape). The one failure classifier (failure.ts) reads `cloud`
 * and `stsCode` against that cloud's table of codes (platform/<cloud>/sts-error-codes.ts).
 *
 * Everything here is safe to log and to use as a metric label: `stsCode` is the cloud's error code
 * only when it looks like one (else `HTTP<status>` or `UnexpectedError`), and the message is ours,
 * never the remote server's text, which may echo the request and so the token.
 */
export class CloudStsRefusal extends Error {
  override readonly name = 'CloudStsRefusal';

  constructor(
    readonly cloud: Exclude<CloudName, 'aws'>,
    /** The error code as the cloud sent it (e.g. `AuthenticationFail.OIDCToken.Expired`, `InvalidParameter.WebIdentityTokenError`). */
    readonly stsCode: string,
    /** The HTTP status of the answer (Tencent answers errors with 200). */
    readonly httpStatus: number,
    message: string,
  ) {
    super(message);
  }
}

/** An error code from the wire is believed only when it looks like one: it becomes a metric label. */
export const STS_CODE_SHAPE = /^[A-Za-z][A-Za-z0-9.]{0,79}$/;
