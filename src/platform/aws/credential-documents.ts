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
 * The response bodies for one set of cached credentials, each serialized on its first use and
 * reused by every request until the next refresh replaces the entry (the WeakMap lets old bodies be
 * collected). Lazily: the node agent serves only the container document, for thousands of entries.
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
    docs = new RenderedDocuments(entry);
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

class RenderedDocuments implements CredentialDocuments {
  readonly #entry: ReceivedAwsCredentials;
  #imds: Buffer | undefined;
  #imdsExtended: Buffer | undefined;
  #container: Buffer | undefined;

  constructor(entry: ReceivedAwsCredentials) {
    this.#entry = entry;
  }

  get imds(): Buffer {
    this.#imds ??= Buffer.from(JSON.stringify(this.#imdsFields(), null, 2));
    return this.#imds;
  }

  get imdsExtended(): Buffer {
    this.#imdsExtended ??= Buffer.from(JSON.stringify({ ...this.#imdsFields(), AccountId: this.#entry.credentials.accountId }, null, 2));
    return this.#imdsExtended;
  }

  get container(): Buffer {
    const c = this.#entry.credentials;
    this.#container ??= Buffer.from(
      JSON.stringify({
        AccessKeyId: c.accessKeyId,
        SecretAccessKey: c.secretAccessKey,
        Token: c.sessionToken,
        Expiration: awsTimestamp(c.expirationWall),
        RoleArn: c.roleArn,
        AccountId: c.accountId,
      }),
    );
    return this.#container;
  }

  #imdsFields() {
    const c = this.#entry.credentials;
    return {
      Code: 'Success',
      LastUpdated: awsTimestamp(this.#entry.receivedAtWall),
      Type: 'AWS-HMAC',
      AccessKeyId: c.accessKeyId,
      SecretAccessKey: c.secretAccessKey,
      Token: c.sessionToken,
      Expiration: awsTimestamp(c.expirationWall),
    };
  }
}
