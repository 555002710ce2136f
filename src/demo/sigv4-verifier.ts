import { createHash, createHmac, type Hash, type Hmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { SignatureV4 } from '@smithy/signature-v4';

/**
 * How the demo's AWS STS stand-in checks a SigV4-signed request, the way AWS does: the signature is
 * recomputed by the AWS SDK's own signer (@smithy/signature-v4) from the request as received, with
 * the secret of the access key id it names, and compared. Before that, the checks AWS makes on the
 * key and the date, each answered with STS's own error code: an unknown key id, a session token
 * that is not the key's, an expired session, a date more than 15 minutes off, a scope for another
 * service. Used for GetWebIdentityToken; AssumeRole (#18) reuses it.
 */

/** Credentials the stand-in knows the secret of: issued by itself, or registered as a host's. */
export interface KnownCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Temporary credentials' session token: the request must carry exactly this one. */
  readonly sessionToken?: string;
  /** When temporary credentials stop being accepted. */
  readonly expiration?: Date;
  /** Whose credentials these are: `arn:aws:sts::<account>:assumed-role/<role>/<session>`, or a user's ARN. */
  readonly arn: string;
}

/** A request as the server received it. */
export interface ReceivedRequest {
  readonly method: string;
  /** The request target as sent: path and query. */
  readonly target: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export type SigV4Outcome =
  | { readonly ok: true; readonly caller: KnownCredentials; readonly region: string }
  | { readonly ok: false; readonly status: number; readonly code: string; readonly message: string };

/** AWS refuses a request whose X-Amz-Date is further than this from its own clock (ms). */
export const MAX_SIGNATURE_SKEW_MS = 15 * 60_000;

const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([A-Z0-9]{16,128})\/(\d{8})\/([a-z0-9-]{1,32})\/([a-z0-9-]{1,32})\/aws4_request, ?SignedHeaders=([a-z0-9-]+(?:;[a-z0-9-]+)*), ?Signature=([0-9a-f]{64})$/;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

export class SigV4Verifier {
  constructor(
    /** The credentials an access key id belongs to, if this service knows it. */
    private readonly lookup: (accessKeyId: string) => KnownCredentials | undefined,
    /** The service's own clock (epoch ms). */
    private readonly now: () => number,
    /** The signing name the credential scope must carry. */
    private readonly service = 'sts',
  ) {}

  async verify(req: ReceivedRequest): Promise<SigV4Outcome> {
    const authorization = single(req.headers.authorization);
    if (authorization === undefined) return refuse(403, 'MissingAuthenticationToken', 'Request is missing Authentication Token');
    const auth = AUTHORIZATION.exec(authorization);
    if (!auth) return refuse(400, 'IncompleteSignature', 'Authorization header requires Credential, SignedHeaders and Signature in AWS4-HMAC-SHA256 form.');
    const [, accessKeyId, scopeDate, region, service, signedHeaderList, signature] = auth as unknown as string[];
    const signedHeaders = signedHeaderList!.split(';');
    if (!signedHeaders.includes('host') || !signedHeaders.includes('x-amz-date')) {
      return refuse(400, 'IncompleteSignature', 'The request signature must cover the host and x-amz-date headers.');
    }
    const amzDate = single(req.headers['x-amz-date']) ?? '';
    const signingDate = parseAmzDate(amzDate);
    if (!signingDate) return refuse(400, 'IncompleteSignature', 'X-Amz-Date must be a basic ISO 8601 date such as 20261207T120000Z.');
    if (service !== this.service) return refuse(403, 'SignatureDoesNotMatch', `Credential should be scoped to correct service: '${this.service}'.`);
    if (scopeDate !== amzDate.slice(0, 8))
      return refuse(
        403,
        'SignatureDoesNotMatch',
        `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${scopeDate}' != '${amzDate.slice(0, 8)}'`,
      );
    const now = this.now();
    if (Math.abs(now - signingDate.getTime()) > MAX_SIGNATURE_SKEW_MS) {
      const earlier = signingDate.getTime() < now;
      return refuse(
        403,
        'SignatureDoesNotMatch',
        earlier
          ? `Signature expired: ${amzDate} is now earlier than ${basicDate(now - MAX_SIGNATURE_SKEW_MS)} (${basicDate(now)} - 15 min.)`
          : `Signature not yet current: ${amzDate} is still later than ${basicDate(now + MAX_SIGNATURE_SKEW_MS)} (${basicDate(now)} + 15 min.)`,
      );
    }
    const known = this.lookup(accessKeyId!);
    const sentToken = single(req.headers['x-amz-security-token']);
    if (!known || !sameSecret(sentToken, known.sessionToken)) {
      return refuse(403, 'InvalidClientTokenId', 'The security token included in the request is invalid.');
    }
    if (known.expiration && known.expiration.getTime() <= now) return refuse(403, 'ExpiredToken', 'The security token included in the request is expired');
    if (known.sessionToken !== undefined && !signedHeaders.includes('x-amz-security-token')) {
      return refuse(400, 'IncompleteSignature', 'The request signature must cover the x-amz-security-token header.');
    }
    const sentBodyHash = single(req.headers['x-amz-content-sha256']);
    if (sentBodyHash !== undefined && sentBodyHash !== createHash('sha256').update(req.body).digest('hex')) {
      // S3's name for it: STS documents none.
      return refuse(400, 'XAmzContentSHA256Mismatch', 'The provided x-amz-content-sha256 header does not match what was computed.');
    }

    // Only the headers the client says it signed go to the signer; it adds X-Amz-Date and the
    // session token itself, from the date and the credentials it is given.
    const headers: Record<string, string> = {};
    for (const name of signedHeaders) {
      if (name === 'x-amz-date' || name === 'x-amz-security-token') continue;
      const value = req.headers[name];
      if (value === undefined) return refuse(403, 'SignatureDoesNotMatch', `The request signature covers a header that was not sent: ${name}.`);
      headers[name] = Array.isArray(value) ? value.join(',') : value;
    }
    const url = new URL(req.target, 'http://received.invalid');
    const query: Record<string, string | string[]> = {};
    for (const key of new Set(url.searchParams.keys())) {
      const values = url.searchParams.getAll(key);
      query[key] = values.length === 1 ? values[0]! : values;
    }
    const signer = new SignatureV4({
      service: service!,
      region: region!,
      credentials: {
        accessKeyId: known.accessKeyId,
        secretAccessKey: known.secretAccessKey,
        ...(known.sessionToken !== undefined ? { sessionToken: known.sessionToken } : {}),
      },
      sha256: NodeSha256,
      applyChecksum: false,
    });
    const recomputed = await signer.sign(
      { method: req.method, protocol: 'https:', hostname: headers['host'] ?? '', path: url.pathname, query, headers, body: req.body },
      { signingDate, signableHeaders: new Set(signedHeaders) },
    );
    const expected = / Signature=([0-9a-f]{64})$/.exec(String(recomputed.headers['authorization'] ?? ''))?.[1];
    if (expected === undefined || !timingSafeEqual(Buffer.from(expected), Buffer.from(signature!))) {
      return refuse(
        403,
        'SignatureDoesNotMatch',
        'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
      );
    }
    return { ok: true, caller: known, region: region! };
  }
}

/** SHA-256 and HMAC-SHA-256 from node:crypto, in the shape the smithy signer takes. */
class NodeSha256 {
  readonly #hash: Hash | Hmac;

  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.#hash = secret === undefined ? createHash('sha256') : createHmac('sha256', toBytes(secret));
  }

  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.#hash.update(toBytes(data));
  }

  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.#hash.digest());
  }
}

function toBytes(data: string | ArrayBuffer | ArrayBufferView): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Equal session tokens (both absent counts as equal), compared in constant time. */
function sameSecret(sent: string | undefined, known: string | undefined): boolean {
  if (sent === undefined || known === undefined) return sent === known;
  const a = Buffer.from(sent);
  const b = Buffer.from(known);
  return a.length === b.length && timingSafeEqual(a, b);
}

function parseAmzDate(text: string): Date | undefined {
  const m = AMZ_DATE.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  const date = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
  return date.getUTCMonth() === mo - 1 && date.getUTCDate() === d ? date : undefined;
}

function basicDate(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
}

function refuse(status: number, code: string, message: string): SigV4Outcome {
  return { ok: false, status, code, message };
}
