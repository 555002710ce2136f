import type { Clock } from '../core/clock.js';
import { CrosscredError } from '../core/errors.js';
import { ECS_METADATA_URL, EcsMetadataClient, requireTokensCommand } from '../platform/alibaba/ecs-metadata.js';
import {
  type AlibabaCredential,
  DEFAULT_ALIBABA_STS_URL,
  ecsRamRoleCredential,
  loadRamRoleCredentials,
  signGetCallerIdentity,
} from '../platform/alibaba/ram-request-signer.js';
import { type AlibabaEcsIdentityAttestation, type EcsAttestationAudience, encodeSubjectToken, SUBJECT_TOKEN_TYPES } from '../protocol/issuer-token-exchange.js';
import type { IssuerClient } from './issuer-client.js';
import { inspectJwt } from './jwt-shape.js';
import { type RenewableToken, RenewingToken } from './renewing-token.js';
import type { SourceWarningSink } from './source-warnings.js';
import type { TokenSource, WebIdentityToken } from './token-source.js';

export type AlibabaAttestationKind = 'ecs-identity' | 'ram-role';

export interface AlibabaEcsTokenSourceOptions {
  /** Told of a weaker set-up found at first use (metadata readable without a token); never a failure. */
  readonly onWarning?: SourceWarningSink;
  /** The `crosscred issuer` client that trades the attestation for a JWT. */
  readonly issuer: IssuerClient;
  /** The issuer URL, exactly as configured for `issuer` and as the JWTs' `iss`: what the attestation is bound to. */
  readonly issuerUrl: string;
  /**
   * `ecs-identity`: the PKCS#7-signed instance identity document, with an audience naming the
   * issuer and the time. `ram-role`: a GetCallerIdentity request signed with the instance's
   * RAM-role credentials, bound to the issuer by a signed header.
   */
  readonly attestation: AlibabaAttestationKind;
  /** The ECS metadata server, default http://100.100.100.200 (another one only for tests). */
  readonly metadataUrl?: string;
  /** ram-role: the instance's RAM role; by default the one the metadata server names. */
  readonly roleName?: string;
  /**
   * ram-role: the STS endpoint the request is signed for, which the issuer then calls (it must be
   * on the issuer's allow-list). Default https://sts.aliyuncs.com/.
   */
  readonly stsUrl?: string;
  /**
   * ram-role: the official credential that signs. Default: `@alicloud/credentials` ecs_ram_role,
   * token mode only, against `metadataUrl`.
   */
  readonly ramCredential?: AlibabaCredential;
  /** Bound on each metadata read and on the signing, in ms. Default 3000. */
  readonly metadataTimeoutMs?: number;
  readonly clock: Clock;
}

const DEFAULT_METADATA_TIMEOUT_MS = 3000;
/** The identity document is under 1 KiB, its PKCS#7 a few KiB: the issuer's own bounds. */
const MAX_DOCUMENT_BYTES = 8 * 1024;
const MAX_PKCS7_BYTES = 32 * 1024;
/** Renew after this fraction of the JWT's lifetime… */
const RENEW_AT_FRACTION = 0.8;
/** …or this long (ms) before it expires, whichever comes first… */
const RENEW_BEFORE_EXPIRY_MS = 5 * 60_000;
/** …but never before half of it has passed, so a short-lived JWT is still reused. */
const MIN_REUSE_FRACTION = 0.5;

/**
 * The last audience signingTime (Unix s) used in this process. The signed content is the document
 * and the audience, so two attestations of one instance in the same second would be identical and
 * the issuer would refuse the second as a replay (several roles starting at once): each takes the
 * next second instead, up to this many seconds ahead of the clock (the issuer allows 30 s of
 * future skew). A clock that stepped back further than that starts over from the clock.
 */
const MAX_SIGNING_TIME_LEAD_SECONDS = 10;
let lastSigningTime = 0;

function nextSigningTime(nowWall: number): number {
  const now = Math.floor(nowWall / 1000);
  lastSigningTime = now > lastSigningTime || lastSigningTime - now >= MAX_SIGNING_TIME_LEAD_SECONDS ? now : lastSigningTime + 1;
  return lastSigningTime;
}

/**
 * The `alibaba-ecs` source of `crosscred serve`: on an Alibaba ECS instance, gathers an
 * attestation of the instance (or its RAM role), trades it at `crosscred issuer` for a JWT, and
 * keeps that JWT until most of its lifetime has passed. Concurrent callers share one attempt.
 */
export class AlibabaEcsTokenSource implements TokenSource {
  readonly description: string;
  readonly #options: AlibabaEcsTokenSourceOptions;
  readonly #sourceName: string;
  readonly #metadataUrl: string;
  readonly #timeoutMs: number;
  readonly #stsUrl: string;
  #metadata: EcsMetadataClient | undefined;
  #credential: AlibabaCredential | undefined;
  /** Whether the token-less probe has run: once per source, before its first attestation. */
  #probed = false;
  readonly #held: RenewingToken;
  readonly #closing = new AbortController();

  constructor(options: AlibabaEcsTokenSourceOptions) {
    const invalid = (text: string) => new CrosscredError('CONFIG_INVALID', `alibaba-ecs source: ${text}`);
    if (options.attestation !== 'ecs-identity' && options.attestation !== 'ram-role')
      throw invalid(`attestation must be ecs-identity or ram-role, not ${JSON.stringify(options.attestation)}`);
    let issuer: URL;
    try {
      issuer = new URL(options.issuerUrl);
    } catch {
      throw invalid(`issuer URL ${JSON.stringify(options.issuerUrl)} is not a URL`);
    }
    if (issuer.protocol !== 'https:' && issuer.protocol !== 'http:') throw invalid(`issuer URL ${options.issuerUrl} must be http(s)`);
    const metadataUrl = options.metadataUrl ?? ECS_METADATA_URL;
    if (!/^http:\/\/[^/?#@]+\/?$/.test(metadataUrl)) throw invalid(`metadataUrl ${JSON.stringify(metadataUrl)} must be a plain http://host[:port] URL`);
    const stsUrl = options.stsUrl ?? DEFAULT_ALIBABA_STS_URL;
    if (!/^(https:\/\/[^/?#@]+|http:\/\/(127\.[0-9.]+|\[::1\])(:[0-9]+)?)\/?$/.test(stsUrl))
      throw invalid(`stsUrl ${JSON.stringify(stsUrl)} must be a plain https://host[:port]/ URL (http only to loopback, for tests)`);
    if (options.roleName !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(options.roleName))
      throw invalid('roleName must be a RAM role name (letters, digits, . _ -, at most 64)');
    const timeoutMs = options.metadataTimeoutMs ?? DEFAULT_METADATA_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw invalid(`metadataTimeoutMs must be a positive number of milliseconds, not ${timeoutMs}`);
    this.#options = options;
    this.#metadataUrl = metadataUrl.replace(/\/$/, '');
    this.#stsUrl = stsUrl;
    this.#timeoutMs = timeoutMs;
    this.#credential = options.ramCredential;
    const how = options.attestation === 'ecs-identity' ? 'instance identity' : `RAM role${options.roleName ? ` ${options.roleName}` : ''}`;
    this.description = `alibaba-ecs ${how} attested to ${options.issuerUrl}`;
    this.#sourceName = `the issuer ${options.issuerUrl} (alibaba-ecs ${options.attestation})`;
    this.#held = new RenewingToken(
      options.clock,
      () => this.#fetch(),
      () => this.#closing.signal.aborted,
    );
  }

  /** STS said the JWT expired or was refused: the next getToken attests again. */
  invalidate(): void {
    this.#held.invalidate();
  }

  async getToken(): Promise<WebIdentityToken> {
    if (this.#closing.signal.aborted) throw new CrosscredError('TOKEN_REQUEST_FAILED', `${this.#sourceName} was asked for a token after the source was closed`);
    return this.#held.get();
  }

  /** Stops using the metadata server; a renewal under way fails. */
  async close(): Promise<void> {
    this.#closing.abort();
    await this.#metadata?.close();
  }

  async #fetch(): Promise<RenewableToken> {
    const { clock, issuer, attestation } = this.#options;
    if (!this.#probed) {
      this.#probed = true;
      await this.#warnIfTokensOptional();
    }
    const subjectToken = attestation === 'ecs-identity' ? await this.#identityAttestation() : await this.#ramRoleAttestation();
    const type = attestation === 'ecs-identity' ? SUBJECT_TOKEN_TYPES.alibabaEcsIdentity : SUBJECT_TOKEN_TYPES.alibabaRamRole;
    const issuedAtWall = clock.wallNow();
    const { token, expiresInSeconds } = await issuer.exchange(type, subjectToken, this.#closing.signal);
    const now = clock.wallNow();
    // Throws TOKEN_NOT_JWT / TOKEN_TOO_LARGE / TOKEN_EXPIRED naming the issuer, never the token.
    const claims = inspectJwt(token, now, this.#sourceName);
    if (claims.iss !== this.#options.issuerUrl) {
      throw new CrosscredError(
        'TOKEN_REQUEST_FAILED',
        `${this.#sourceName} returned a JWT whose iss is ${JSON.stringify(claims.iss ?? null)}; STS would look for another OIDC provider`,
      );
    }
    // The earlier of the two is when the token really stops working.
    const expiresAtWall = Math.min(claims.exp * 1000, issuedAtWall + expiresInSeconds * 1000);
    if (expiresAtWall <= now) throw new CrosscredError('TOKEN_EXPIRED', `${this.#sourceName} returned a JWT that is already expired (check this host's clock)`);
    const lifetime = expiresAtWall - issuedAtWall;
    const reuseFor = Math.max(Math.min(lifetime * RENEW_AT_FRACTION, lifetime - RENEW_BEFORE_EXPIRY_MS), lifetime * MIN_REUSE_FRACTION);
    return { token: { token, expiresAtWall, claims }, renewAtWall: issuedAtWall + reuseFor };
  }

  #metadataClient(): EcsMetadataClient {
    this.#metadata ??= new EcsMetadataClient({ baseUrl: this.#metadataUrl, timeoutMs: this.#timeoutMs });
    return this.#metadata;
  }

  /**
   * crosscred reads in token mode, but `HttpTokens=optional` (the instance's default) lets any
   * process of the instance GET the signed identity document and the RAM role's keys without one.
   * One token-less GET of the instance id tells; a warning, never a failure (the metadata options
   * are the instance owner's to change, and crosscred works either way).
   */
  async #warnIfTokensOptional(): Promise<void> {
    const probe = await this.#metadataClient().probeTokenlessRead(this.#closing.signal);
    if (probe.httpTokens !== 'optional') return;
    this.#options.onWarning?.({
      code: 'ALIBABA_METADATA_TOKENS_OPTIONAL',
      message:
        `the ECS metadata server at ${this.#metadataUrl} answers reads without a session token (HttpTokens=optional): ` +
        'any process on this instance can read the signed identity document and the RAM role keys',
      fix: `require session tokens on this instance's metadata options: ${requireTokensCommand({ instanceId: probe.instanceId })}`,
    });
  }

  /** Token-mode session, the document, and its PKCS#7 over an audience naming the issuer and now. */
  async #identityAttestation(): Promise<string> {
    const metadata = this.#metadataClient();
    const signal = this.#closing.signal;
    const session = await metadata.token(signal);
    const document = await metadata.get('/latest/dynamic/instance-identity/document', session, MAX_DOCUMENT_BYTES, 'the instance identity document', signal);
    const audienceObject: EcsAttestationAudience = { aud: this.#options.issuerUrl, signingTime: nextSigningTime(this.#options.clock.wallNow()) };
    const audience = JSON.stringify(audienceObject);
    const pkcs7 = await metadata.get(
      `/latest/dynamic/instance-identity/pkcs7?audience=${encodeURIComponent(audience)}`,
      session,
      MAX_PKCS7_BYTES,
      'the signed instance identity (pkcs7)',
      signal,
    );
    const attestation: AlibabaEcsIdentityAttestation = { document, pkcs7, audience };
    return encodeSubjectToken(attestation);
  }

  /** GetCallerIdentity signed by the official SDK with the instance's RAM-role credentials. */
  async #ramRoleAttestation(): Promise<string> {
    this.#credential ??= ecsRamRoleCredential({
      ...(this.#options.roleName ? { roleName: this.#options.roleName } : {}),
      metadataUrl: this.#metadataUrl,
      timeoutMs: this.#timeoutMs,
    });
    const credential = this.#credential;
    // Fetched first so a metadata failure is reported as one, not as a signing failure.
    await loadRamRoleCredentials(credential);
    const signed = await signGetCallerIdentity({ credential, stsUrl: this.#stsUrl, issuerUrl: this.#options.issuerUrl, timeoutMs: this.#timeoutMs });
    return encodeSubjectToken(signed);
  }
}
