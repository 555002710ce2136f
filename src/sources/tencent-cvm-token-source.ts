import type { Clock } from '../core/clock.js';
import { CrosscredError } from '../core/errors.js';
import { cvmRoleCredentials, type TencentRoleCredentials } from '../platform/tencent/cvm-role-credentials.js';
import { TENCENT_GET_CALLER_IDENTITY as GCI, signTc3, Tc3FormatError } from '../platform/tencent/tc3-signature.js';
import { BINDING_HEADERS, encodeSubjectToken, type SignedRequestAttestation, SUBJECT_TOKEN_TYPES } from '../protocol/issuer-token-exchange.js';
import type { IssuerClient } from './issuer-client.js';
import { inspectJwt } from './jwt-shape.js';
import { type RenewableToken, RenewingToken } from './renewing-token.js';
import type { TokenSource, WebIdentityToken } from './token-source.js';

export type { TencentRoleCredentials } from '../platform/tencent/cvm-role-credentials.js';

export interface TencentCvmTokenSourceOptions {
  /** The client for `crosscred issuer`'s token endpoint. */
  readonly issuer: Pick<IssuerClient, 'exchange'>;
  /**
   * The issuer URL exactly as in its JWTs' `iss` (the same string the IssuerClient was given): the
   * value of the signed binding header, which the issuer compares with its own URL.
   */
  readonly issuerUrl: string;
  /** The STS endpoint the issuer is to replay the request to. Default `https://sts.tencentcloudapi.com/`. */
  readonly stsEndpoint?: string;
  /** Sent as X-TC-Region (optional for STS). */
  readonly region?: string;
  /** Where the CAM role key comes from. Default: the CVM metadata server through the SDK's CvmRoleCredential. */
  readonly credentials?: () => Promise<TencentRoleCredentials>;
  readonly clock: Clock;
}

/** Renew once this fraction of the JWT's lifetime has passed… */
const RENEW_AT_FRACTION = 0.8;
/** …and at the latest this long (ms) before it expires, so one slow exchange still has room… */
const RENEW_BEFORE_EXPIRY_MS = 5 * 60_000;
/** …but never before half of it, so a short-lived JWT is not renewed on every call. */
const MIN_LIFETIME_FRACTION = 0.5;
const REGION = /^[a-z]{2,8}(-[a-z0-9]{1,32}){1,4}$/;
/** How far ahead of the clock uniqueTimestamp may move a timestamp, in seconds (Tencent and the issuer allow 300). */
const MAX_TIMESTAMP_LEAD_SECONDS = 5;

/**
 * The last X-TC-Timestamp signed in this process. TC3 has no nonce: the same key signing the same
 * request in the same second makes the same signature, which the issuer's seen-set refuses as a
 * replay. That happens for real when two roles' sources share the instance's key and start
 * together, or after invalidate() right after a renewal. So each signature gets its own second,
 * a few seconds ahead at most; after the clock steps back further than that, the clock wins.
 */
let lastSignedSecond = 0;

function uniqueTimestamp(nowSecond: number): number {
  const next = lastSignedSecond + 1;
  const timestamp = nowSecond >= next || next - nowSecond > MAX_TIMESTAMP_LEAD_SECONDS ? nowSecond : next;
  lastSignedSecond = timestamp;
  return timestamp;
}

/**
 * The `tencent-cvm` source: proves this CVM instance's CAM role to `crosscred issuer` and hands the
 * JWT it gets to the exchange. The proof is a TC3-signed Tencent STS GetCallerIdentity request
 * (signed here, never sent from here) that covers `x-crosscred-audience: <issuer URL>` and
 * `x-tc-action`, so it is good only for this issuer and only for that call; the issuer replays it
 * to Tencent STS. The JWT is kept until 80% of its life (at the latest 5 minutes before `exp`).
 */
export class TencentCvmTokenSource implements TokenSource {
  readonly description: string;
  readonly #options: TencentCvmTokenSourceOptions;
  readonly #endpoint: URL;
  readonly #credentials: () => Promise<TencentRoleCredentials>;
  readonly #sourceName: string;
  readonly #held: RenewingToken;

  constructor(options: TencentCvmTokenSourceOptions) {
    this.#endpoint = validateOptions(options);
    this.#options = options;
    this.#credentials = options.credentials ?? cvmRoleCredentials(options.clock);
    this.description = `tencent-cvm CAM role, attested to ${options.issuerUrl}`;
    this.#sourceName = `the JWT from issuer ${options.issuerUrl}`;
    this.#held = new RenewingToken(options.clock, () => this.#attest());
  }

  /** STS said the JWT expired or was refused: attest again next time. */
  invalidate(): void {
    this.#held.invalidate();
  }

  async getToken(): Promise<WebIdentityToken> {
    return this.#held.get();
  }

  async #attest(): Promise<RenewableToken> {
    const { clock, issuer, issuerUrl, region } = this.#options;
    const credentials = await this.#credentials();
    const attestation = signTencentGetCallerIdentity({
      credentials,
      issuerUrl,
      stsEndpoint: this.#endpoint.href,
      timestamp: uniqueTimestamp(Math.floor(clock.wallNow() / 1000)),
      ...(region ? { region } : {}),
    });
    const askedAtWall = clock.wallNow();
    const { token, expiresInSeconds } = await issuer.exchange(SUBJECT_TOKEN_TYPES.tencentCamRole, encodeSubjectToken(attestation));
    const now = clock.wallNow();
    // Throws TOKEN_NOT_JWT / TOKEN_TOO_LARGE / TOKEN_EXPIRED, naming the issuer, never the token.
    const claims = inspectJwt(token, now, this.#sourceName);
    if (claims.iss !== undefined && claims.iss !== issuerUrl) {
      throw new CrosscredError(
        'TOKEN_REQUEST_FAILED',
        `${this.#sourceName} has iss ${JSON.stringify(claims.iss.slice(0, 200))}, not the issuer URL; check the issuer's configured URL`,
      );
    }
    const expiresAtWall = Math.min(
      claims.exp * 1000,
      Number.isFinite(expiresInSeconds) && expiresInSeconds > 0 ? askedAtWall + expiresInSeconds * 1000 : Infinity,
    );
    const lifetime = expiresAtWall - askedAtWall;
    const renewAtWall = askedAtWall + Math.max(lifetime * MIN_LIFETIME_FRACTION, Math.min(lifetime * RENEW_AT_FRACTION, lifetime - RENEW_BEFORE_EXPIRY_MS));
    return { token: { token, expiresAtWall, claims }, renewAtWall };
  }
}

export interface SignGetCallerIdentityInput {
  readonly credentials: TencentRoleCredentials;
  /** The value of the binding header: the issuer URL exactly as in its `iss`. */
  readonly issuerUrl: string;
  /** `https://host[:port]/` of the STS endpoint the issuer will send it to. */
  readonly stsEndpoint: string;
  /** Unix seconds. */
  readonly timestamp: number;
  readonly region?: string;
}

/**
 * Signs, and does not send, a Tencent STS GetCallerIdentity request bound to one issuer.
 * SignedHeaders = content-type;host;x-crosscred-audience;x-tc-action;x-tc-timestamp;x-tc-version.
 * X-TC-Token and X-TC-Region go unsigned, as the official SDK sends them.
 */
export function signTencentGetCallerIdentity(input: SignGetCallerIdentityInput): SignedRequestAttestation {
  const url = new URL(input.stsEndpoint);
  const origin = `${url.protocol}//${url.host}/`;
  const headers: Record<string, string> = {
    'content-type': GCI.contentType,
    host: url.host,
    [BINDING_HEADERS.tencent]: input.issuerUrl,
    'x-tc-action': GCI.action,
    'x-tc-timestamp': String(input.timestamp),
    'x-tc-version': GCI.version,
  };
  const signedHeaders = Object.keys(headers);
  if (input.credentials.token) headers['x-tc-token'] = input.credentials.token;
  if (input.region) headers['x-tc-region'] = input.region;
  try {
    headers['authorization'] = signTc3({ method: 'POST', url: origin, headers, body: GCI.body }, input.credentials, {
      service: GCI.service,
      timestamp: input.timestamp,
      signedHeaders,
    });
  } catch (err) {
    if (err instanceof Tc3FormatError)
      throw new CrosscredError('TENCENT_CVM_ROLE_UNAVAILABLE', `tencent-cvm: cannot sign GetCallerIdentity with the CAM role key: ${err.message}`);
    throw err;
  }
  return { method: 'POST', url: origin, headers, body: GCI.body };
}

function validateOptions(options: TencentCvmTokenSourceOptions): URL {
  const invalid = (text: string) => new CrosscredError('CONFIG_INVALID', `tencent-cvm: ${text}`);
  const issuer = parseUrl(options.issuerUrl);
  if (!issuer || (issuer.protocol !== 'https:' && issuer.protocol !== 'http:') || !/^[\x21-\x7e]+$/.test(options.issuerUrl)) {
    throw invalid(`the issuer URL ${JSON.stringify(options.issuerUrl)} must be an https:// URL in printable ASCII, exactly as in the issuer's JWTs (iss)`);
  }
  const raw = options.stsEndpoint ?? GCI.defaultEndpoint;
  const url = parseUrl(raw);
  if (
    !url ||
    (url.protocol !== 'https:' && url.protocol !== 'http:') ||
    url.username ||
    url.password ||
    raw.includes('?') ||
    raw.includes('#') ||
    url.pathname !== '/'
  ) {
    throw invalid(`the STS endpoint ${JSON.stringify(raw)} must be a plain "https://host[:port]/" URL`);
  }
  if (options.region !== undefined && !REGION.test(options.region)) {
    throw invalid(`the region ${JSON.stringify(options.region)} is not a Tencent region name such as ap-guangzhou`);
  }
  return url;
}

function parseUrl(raw: string): URL | undefined {
  try {
    return new URL(raw);
  } catch {
    return undefined;
  }
}
