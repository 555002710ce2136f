import { GetWebIdentityTokenCommand, STSClient } from '@aws-sdk/client-sts';
import type { Clock } from '../core/clock.js';
import { CrosscredError } from '../core/errors.js';
import { isAwsRegionName } from '../platform/aws/region.js';
import { StsHttpHandler, type StsTransportOptions } from '../platform/aws/sts-http-handler.js';
import { inspectJwt } from './jwt-shape.js';
import { type RenewableToken, RenewingToken } from './renewing-token.js';
import type { TokenSource, WebIdentityToken } from './token-source.js';

export interface AwsOutboundTokenSourceOptions {
  /** The token's `aud`: what the other cloud's OIDC provider is registered with. */
  readonly audience: string;
  readonly signingAlgorithm: 'RS256' | 'ES384';
  /** The lifetime asked for, 60–3600 s. */
  readonly durationSeconds: number;
  /** The STS region asked: GetWebIdentityToken has no global endpoint. */
  readonly region: string;
  /** A full STS URL instead of the region's (a VPC endpoint, a test double). */
  readonly stsEndpoint?: string;
  /** Proxies, CA bundle and timeouts of the connection to STS. */
  readonly transport: StsTransportOptions;
  readonly clock: Clock;
}

/** GetWebIdentityToken's bounds (STS API reference). */
const MIN_DURATION_SECONDS = 60;
const MAX_DURATION_SECONDS = 3600;
const MAX_AUDIENCE_LENGTH = 1000;
/** Renew once this fraction of the JWT's lifetime has passed… */
const RENEW_AT_FRACTION = 0.8;
/** …and at the latest this long (ms) before it expires, so one slow call still has room… */
const RENEW_BEFORE_EXPIRY_MS = 5 * 60_000;
/** …but never before half of it, so a 5-minute token is not asked for on every call. */
const MIN_LIFETIME_FRACTION = 0.5;
/** An error name from the SDK or the wire is shown only when it looks like one. */
const SAFE_NAME = /^[A-Za-z][A-Za-z0-9.]{0,79}$/;

/** Codes with which STS refuses the host's own credentials or their signature, before looking at the call. */
const CREDENTIAL_REFUSALS: Record<string, string> = {
  SignatureDoesNotMatch:
    "the signature made with the host's AWS credentials does not match: the secret key is not the access key id's, or this host's clock is more than 15 minutes off (check NTP)",
  InvalidClientTokenId: "STS does not know the host's access key id or its session token; the credentials may have been revoked or rotated",
  ExpiredToken: "the host's AWS session credentials have expired; the SDK's default chain fetches new ones on the next attempt",
  IncompleteSignature: 'the request signature was incomplete',
  MissingAuthenticationToken: 'the request reached STS unsigned',
};

/**
 * The `aws-outbound` source: an AWS workload's own identity (EC2 instance profile, ECS task role,
 * Lambda, any credentials of the AWS SDK's default chain) traded for a JWT by AWS STS
 * GetWebIdentityToken (IAM outbound identity federation), for roles in other clouds that trust the
 * account's issuer. The request is SigV4-signed by the SDK with those credentials and sent through
 * crosscred's STS transport (proxies, CA bundle, timeouts); retries are the cache's, not the SDK's.
 * The JWT is checked as untrusted input (a whole JWS with the algorithm and audience asked for, an
 * expiry within what was asked) and kept until 80% of its life (at the latest 5 minutes before it
 * expires, and never before half of it).
 */
export class AwsOutboundTokenSource implements TokenSource {
  readonly description: string;
  readonly #options: AwsOutboundTokenSourceOptions;
  readonly #client: STSClient;
  readonly #held: RenewingToken;
  #closed = false;

  constructor(options: AwsOutboundTokenSourceOptions) {
    validateOptions(options);
    this.#options = options;
    this.description = `aws-outbound: AWS STS GetWebIdentityToken in ${options.stsEndpoint ?? options.region} for audience ${JSON.stringify(options.audience)} (${options.signingAlgorithm}, ${options.durationSeconds} s), signed with this host's AWS credentials`;
    this.#client = new STSClient({
      region: options.region,
      ...(options.stsEndpoint ? { endpoint: options.stsEndpoint } : {}),
      maxAttempts: 1,
      // Endpoint and retry settings are crosscred's alone (AWS_DEFAULTS_MODE=auto would ask IMDS
      // for the region). The credentials are not pinned: they are the host's, from the SDK's
      // default chain (environment, shared files, web identity, ECS, EC2 instance metadata).
      defaultsMode: 'standard',
      retryMode: 'standard',
      useFipsEndpoint: false,
      useDualstackEndpoint: false,
      requestHandler: new StsHttpHandler(options.transport) as never,
    });
    this.#held = new RenewingToken(
      options.clock,
      () => this.#ask(),
      () => this.#closed,
    );
  }

  getToken(): Promise<WebIdentityToken> {
    return this.#held.get();
  }

  /** The receiving cloud said the JWT expired or was refused: ask STS again next time. */
  invalidate(): void {
    this.#held.invalidate();
  }

  close(): void {
    this.#closed = true;
    this.#client.destroy();
  }

  async #ask(): Promise<RenewableToken> {
    const { audience, signingAlgorithm, durationSeconds, clock } = this.#options;
    const askedAtWall = clock.wallNow();
    let answer: { WebIdentityToken?: string | undefined; Expiration?: Date | undefined };
    try {
      answer = await this.#client.send(
        new GetWebIdentityTokenCommand({ Audience: [audience], SigningAlgorithm: signingAlgorithm, DurationSeconds: durationSeconds }),
      );
    } catch (err) {
      throw describeFailure(err);
    }
    const token = answer.WebIdentityToken;
    if (typeof token !== 'string') throw badAnswer('without a WebIdentityToken');
    const now = clock.wallNow();
    // Throws TOKEN_NOT_JWT / TOKEN_TOO_LARGE / TOKEN_EXPIRED, naming STS, never the token.
    const claims = inspectJwt(token, now, 'the JWT from AWS STS GetWebIdentityToken');
    if (claims.alg !== signingAlgorithm) throw badAnswer(`a JWT signed with ${claims.alg}, not the ${signingAlgorithm} asked for`);
    const audiences = typeof claims.aud === 'string' ? [claims.aud] : (claims.aud ?? []);
    if (!audiences.includes(audience)) throw badAnswer(`a JWT whose aud does not include ${JSON.stringify(audience)}`);
    const expiration = answer.Expiration instanceof Date ? answer.Expiration.getTime() : Number.NaN;
    if (!Number.isFinite(expiration) || expiration <= now) throw badAnswer('with a missing or past Expiration');
    // Never held longer than asked, whatever the answer says: a host clock that is behind would
    // otherwise keep a token past its real end.
    const expiresAtWall = Math.min(claims.exp * 1000, expiration, askedAtWall + durationSeconds * 1000);
    const lifetime = expiresAtWall - askedAtWall;
    const renewAtWall = askedAtWall + Math.max(lifetime * MIN_LIFETIME_FRACTION, Math.min(lifetime * RENEW_AT_FRACTION, lifetime - RENEW_BEFORE_EXPIRY_MS));
    return { token: { token, expiresAtWall, claims }, renewAtWall };
  }
}

function badAnswer(what: string): CrosscredError {
  return new CrosscredError('TOKEN_REQUEST_FAILED', `aws-outbound: AWS STS GetWebIdentityToken answered ${what}`);
}

/**
 * What went wrong, in words that say what to fix. Only the error's name and HTTP status are used:
 * STS's own message text is left out, since a SignatureDoesNotMatch message can quote the
 * canonical request, session token included.
 */
function describeFailure(err: unknown): CrosscredError {
  const e = (err ?? {}) as { name?: unknown; code?: unknown; $metadata?: { httpStatusCode?: number }; cause?: { code?: unknown } };
  const name = typeof e.name === 'string' && SAFE_NAME.test(e.name) ? e.name : 'an unnamed error';
  const code = name.replace(/Exception$/, '');
  const failed = (why: string) => new CrosscredError('TOKEN_REQUEST_FAILED', `aws-outbound: ${why}`);
  if (name === 'CredentialsProviderError') {
    return failed(
      "this host has no AWS credentials the AWS SDK's default chain can find (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the shared files, AWS_WEB_IDENTITY_TOKEN_FILE, the ECS container endpoint, EC2 instance metadata); attach an instance profile or a task role, or set a profile",
    );
  }
  if (code === 'OutboundWebIdentityFederationDisabled') {
    return failed(
      'the AWS account has not enabled outbound identity federation (OutboundWebIdentityFederationDisabledException); enable it once with `aws iam enable-outbound-web-identity-federation` (IAM console: Account settings) and register the issuer URL it prints with the other cloud',
    );
  }
  if (code === 'AccessDenied') {
    return failed(
      "AWS STS refused GetWebIdentityToken (AccessDenied): the host's IAM identity needs sts:GetWebIdentityToken, and its policy's conditions (such as sts:IdentityTokenAudience and sts:DurationSeconds) must allow this audience and duration",
    );
  }
  if (code === 'SessionDurationEscalation') {
    return failed(
      "the host's AWS session ends before a token of the asked duration would (SessionDurationEscalationException); ask for a shorter duration, or wait for the host's credentials to be renewed",
    );
  }
  if (code === 'JWTPayloadSizeExceeded')
    return failed('AWS STS says the token would be too large (JWTPayloadSizeExceededException): the principal has too many tags');
  if (code === 'RegionDisabled')
    return failed('AWS STS is not activated in this region for the account (RegionDisabledException); activate it or choose another region');
  if (Object.hasOwn(CREDENTIAL_REFUSALS, code)) return failed(`AWS STS refused the host's credentials (${code}): ${CREDENTIAL_REFUSALS[code]}`);
  const rawCode = typeof e.code === 'string' ? e.code : typeof e.cause?.code === 'string' ? e.cause.code : '';
  if (rawCode && SAFE_NAME.test(rawCode.replace(/_/g, '.'))) {
    return failed(`AWS STS could not be reached (${rawCode}); check the region, --sts-endpoint, proxies and the CA bundle`);
  }
  const status = e.$metadata?.httpStatusCode;
  return failed(`AWS STS GetWebIdentityToken failed: ${name}${typeof status === 'number' ? ` (HTTP ${status})` : ''}`);
}

function validateOptions(o: AwsOutboundTokenSourceOptions): void {
  const invalid = (text: string) => new CrosscredError('CONFIG_INVALID', `aws-outbound: ${text}`);
  if (o.audience.length < 1 || o.audience.length > MAX_AUDIENCE_LENGTH || !/^[\x21-\x7e]+$/.test(o.audience)) {
    throw invalid(`the audience must be 1-${MAX_AUDIENCE_LENGTH} printable ASCII characters without spaces`);
  }
  if (o.signingAlgorithm !== 'RS256' && o.signingAlgorithm !== 'ES384') throw invalid('the signing algorithm must be RS256 or ES384');
  if (!Number.isInteger(o.durationSeconds) || o.durationSeconds < MIN_DURATION_SECONDS || o.durationSeconds > MAX_DURATION_SECONDS) {
    throw invalid(`the duration must be ${MIN_DURATION_SECONDS}-${MAX_DURATION_SECONDS} seconds`);
  }
  if (!isAwsRegionName(o.region)) throw invalid(`${JSON.stringify(o.region.slice(0, 40))} is not an AWS region name such as eu-west-1`);
  if (o.stsEndpoint !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(o.stsEndpoint);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password || url.search || url.hash) {
      throw invalid('the STS endpoint must be a plain https:// URL');
    }
  }
}
