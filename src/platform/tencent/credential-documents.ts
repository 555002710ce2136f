import type { TencentCredentials } from './credentials.js';

/**
 * One set of Tencent credentials as received: the cache's entries have this shape. The object's
 * identity keys the memo below, so it must be replaced, never changed, when the credentials are.
 */
export interface ReceivedTencentCredentials {
  readonly credentials: TencentCredentials;
}

/**
 * The CVM metadata server's `/latest/meta-data/cam/security-credentials/<role>` answer for one set
 * of cached credentials, serialized on first use and reused by every request until a refresh
 * replaces the entry (the WeakMap lets old bodies be collected).
 *
 * The field set and order are the metadata server's (docs/research/vm-attestation.md §4.1):
 * `TmpSecretId`, `TmpSecretKey`, `ExpiredTime` (Unix seconds), `Expiration`, `Token`, `Code`.
 * tencentcloud-sdk-go `common/cvm_role_provider.go` unmarshals `Expiration` into a time.Time, so it
 * must be RFC 3339 (a bad one fails the whole answer), and requires `Code` to be `Success`, as does
 * the Node SDK's `CvmRoleCredential`; both refresh by `ExpiredTime`.
 */
export function cvmRoleCredentialDocument(entry: ReceivedTencentCredentials): Buffer {
  let doc = memo.get(entry);
  if (doc === undefined) {
    doc = render(entry.credentials);
    memo.set(entry, doc);
  }
  return doc;
}

const memo = new WeakMap<ReceivedTencentCredentials, Buffer>();

/**
 * `ExpiredTime` rounds down to the second, never later than STS's expiry; `Expiration` is the same
 * instant as `YYYY-MM-DDTHH:MM:SSZ` (no fractional seconds, as the metadata server writes it).
 */
function render(c: TencentCredentials): Buffer {
  const expiredTime = Math.floor(c.expirationWall / 1000);
  return Buffer.from(
    JSON.stringify({
      TmpSecretId: c.secretId,
      TmpSecretKey: c.secretKey,
      ExpiredTime: expiredTime,
      Expiration: new Date(expiredTime * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
      Token: c.token,
      Code: 'Success',
    }),
  );
}
