import type { AwsCredentials } from './credentials.js';

/**
 * One set of AWS credentials as received: the cache's entries have this shape. The object's
 * identity keys the memo below, so it must be replaced, never changed, when the credentials are.
 */
export interface ReceivedAwsCredentials {
  readonly credentials: AwsCredentials;
  /** When crosscred received them (epoch ms), served as IMDS `LastUpdated`. */
  readonly receivedAtWall: number;
}

/**
 * The response bodies for one set of cached credentials, serialized once and reused by every
 * request until the next refresh replaces the entry (the WeakMap lets old bodies be collected).
 */
export interface CredentialDocuments {
  /** IMDS `/latest/meta-data/iam/security-credentials/<role>`. */
  readonly imds: Buffer;
  /** IMDS `…/security-credentials-extended/<role>`: the same plus AccountId. */
  readonly imdsExtended: Buffer;
  /** Container endpoint `/v1/credentials`. */
  readonly container: Buffer;
}

const memo = new WeakMap<ReceivedAwsCredentials, CredentialDocuments>();

export function documentsFor(entry: ReceivedAwsCredentials): CredentialDocuments {
  let docs = memo.get(entry);
  if (docs === undefined) {
    docs = render(entry);
    memo.set(entry, docs);
  }
  return docs;
}

/**
 * `YYYY-MM-DDTHH:MM:SSZ`, the only timestamp form every client accepts (the JS SDK's fromHttp
 * rejects `+00:00`; botocore's expiry parser skips fractional seconds). Truncating the
 * milliseconds can only make an expiry look earlier, never later.
 */
export function awsTimestamp(epochMs: number): string {
  return new Date(epochMs).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function render(entry: ReceivedAwsCredentials): CredentialDocuments {
  const c = entry.credentials;
  const expiration = awsTimestamp(c.expirationWall);
  const imds = {
    Code: 'Success',
    LastUpdated: awsTimestamp(entry.receivedAtWall),
    Type: 'AWS-HMAC',
    AccessKeyId: c.accessKeyId,
    SecretAccessKey: c.secretAccessKey,
    Token: c.sessionToken,
    Expiration: expiration,
  };
  return {
    imds: Buffer.from(JSON.stringify(imds, null, 2)),
    imdsExtended: Buffer.from(JSON.stringify({ ...imds, AccountId: c.accountId }, null, 2)),
    container: Buffer.from(
      JSON.stringify({
        AccessKeyId: c.accessKeyId,
        SecretAccessKey: c.secretAccessKey,
        Token: c.sessionToken,
        Expiration: expiration,
        RoleArn: c.roleArn,
        AccountId: c.accountId,
      }),
    ),
  };
}
