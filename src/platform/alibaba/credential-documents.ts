import type { AlibabaCredentials } from './credentials.js';

/**
 * One set of Alibaba credentials as received: the cache's entries have this shape. The object's
 * identity keys the memo below, so it must be replaced, never changed, when the credentials are.
 */
export interface ReceivedAlibabaCredentials {
  readonly credentials: AlibabaCredentials;
  /** When crosscred received them (epoch ms), served as the ECS document's `LastUpdated`. */
  readonly receivedAtWall: number;
}

/**
 * The response bodies Alibaba's SDKs read, for one set of cached credentials, each serialized on
 * its first use and reused until the next refresh replaces the entry (the WeakMap lets old bodies
 * be collected), as platform/aws/credential-documents.ts does for AWS's.
 */
export interface AlibabaCredentialDocuments {
  /**
   * The URI provider's answer (ALIBABA_CLOUD_CREDENTIALS_URI): `Code`, `AccessKeyId`,
   * `AccessKeySecret`, `SecurityToken`, `Expiration`. credentials-go's URI provider requires
   * `Expiration`; `Code` is what Alibaba's SDKs check on the ECS document (credentials-nodejs
   * refuses one without `Code: Success`), kept here so that the two answers agree.
   */
  readonly uri: Buffer;
  /** ECS metadata `/latest/meta-data/ram/security-credentials/<role>`: the same plus `LastUpdated`, as ECS answers. */
  readonly ecsMetadata: Buffer;
}

const memo = new WeakMap<ReceivedAlibabaCredentials, AlibabaCredentialDocuments>();

export function alibabaDocumentsFor(entry: ReceivedAlibabaCredentials): AlibabaCredentialDocuments {
  let docs = memo.get(entry);
  if (docs === undefined) {
    docs = new RenderedDocuments(entry);
    memo.set(entry, docs);
  }
  return docs;
}

/**
 * `YYYY-MM-DDTHH:MM:SSZ`, the form ECS metadata and STS send: credentials-go parses Expiration
 * with the layout `2006-01-02T15:04:05Z`, which refuses fractional seconds. Truncating the
 * milliseconds can only make an expiry look earlier, never later.
 */
export function alibabaTimestamp(epochMs: number): string {
  return new Date(epochMs).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

class RenderedDocuments implements AlibabaCredentialDocuments {
  readonly #entry: ReceivedAlibabaCredentials;
  #uri: Buffer | undefined;
  #ecsMetadata: Buffer | undefined;

  constructor(entry: ReceivedAlibabaCredentials) {
    this.#entry = entry;
  }

  get uri(): Buffer {
    this.#uri ??= Buffer.from(JSON.stringify(this.#fields()));
    return this.#uri;
  }

  get ecsMetadata(): Buffer {
    this.#ecsMetadata ??= Buffer.from(JSON.stringify({ ...this.#fields(), LastUpdated: alibabaTimestamp(this.#entry.receivedAtWall) }, null, 2));
    return this.#ecsMetadata;
  }

  #fields() {
    const c = this.#entry.credentials;
    return {
      Code: 'Success',
      AccessKeyId: c.accessKeyId,
      AccessKeySecret: c.accessKeySecret,
      SecurityToken: c.securityToken,
      Expiration: alibabaTimestamp(c.expirationWall),
    };
  }
}
