import type { Clock } from '../core/clock.js';
import { CrosscredError } from '../core/errors.js';
import type { StsHttpHandler } from '../platform/aws/sts-http-handler.js';
import type { TencentCredentials } from '../platform/tencent/credentials.js';
import { TENCENT_STS_VERSION } from '../platform/tencent/sts-endpoints.js';
import { CloudStsRefusal, STS_CODE_SHAPE } from './cloud-sts-refusal.js';
import type { WebIdentityExchange } from './credentials.js';
import { alreadyExpired, jsonObject, parseHttpDate } from './sts-answer.js';

export interface TencentRoleExchangeOptions {
  readonly roleName: string;
  /** `qcs::cam::uin/<owner uin>:roleName/<name>`. */
  readonly roleArn: string;
  readonly accountId: string;
  /** The CAM OIDC identity provider's name. */
  readonly providerId: string;
  readonly sessionName: string;
  readonly durationSeconds?: number;
  /** Sent as X-TC-Region; STS requires one. */
  readonly region: string;
  /** The STS base URL (platform/tencent/sts-endpoints.ts, or a configured one). */
  readonly endpoint: string;
}

/** Tencent STS caps a web-identity session at 12 hours (the SDKs refuse more before sending). */
export const TENCENT_MAX_DURATION_SECONDS = 43_200;
const ACTION = 'AssumeRoleWithWebIdentity';
/** Tencent SecretIds are `AKID…`: letters, digits, `_` and `-` (the TC3 scope is `/`-separated). */
const SECRET_ID = /^[A-Za-z0-9_-]{16,128}$/;
/** Secrets go into HTTP headers and JSON: printable ASCII only, and bounded. */
const PRINTABLE = /^[\x21-\x7e]+$/;
const MAX_SECRET_KEY_CHARS = 256;
const MAX_TOKEN_CHARS = 16_384;

/**
 * Trades a web-identity token for a CAM role's credentials with Tencent Cloud STS
 * AssumeRoleWithWebIdentity (API 3.0, version 2018-08-13), exactly as Tencent's SDKs send it
 * (tencentcloud-sdk-go `common/oidc_role_arn_provider.go`, tencentcloud-sdk-nodejs-common
 * `OIDCRoleArnCredential`): an unsigned POST of JSON parameters with the action, version, region
 * and timestamp in X-TC-* headers and `Authorization: SKIP`.
 *
 * Tencent answers errors with HTTP 200 and `{"Response":{"Error":{"Code","Message"},"RequestId"}}`;
 * they become CloudStsRefusal, judged by the one classifier. Every field of a success is checked
 * before it is believed: STS's answer is untrusted input too.
 */
export class TencentWebIdentityExchange implements WebIdentityExchange<TencentCredentials> {
  readonly cloud = 'tencent';
  readonly #url: URL;

  constructor(
    private readonly role: TencentRoleExchangeOptions,
    private readonly transport: StsHttpHandler,
    private readonly clock: Clock,
  ) {
    const d = role.durationSeconds;
    if (d !== undefined && (!Number.isInteger(d) || d <= 0 || d > TENCENT_MAX_DURATION_SECONDS)) {
      throw new CrosscredError(
        'CONFIG_INVALID',
        `role ${role.roleName}: Tencent STS takes a duration of 1 to ${TENCENT_MAX_DURATION_SECONDS} seconds, not ${d}`,
      );
    }
    this.#url = new URL(role.endpoint);
    if (this.#url.pathname === '') this.#url.pathname = '/';
  }

  async exchange(token: string, signal?: AbortSignal, sessionName?: string): Promise<TencentCredentials> {
    const body = JSON.stringify({
      ProviderId: this.role.providerId,
      WebIdentityToken: token,
      RoleArn: this.role.roleArn,
      RoleSessionName: sessionName ?? this.role.sessionName,
      // Left out, STS gives 7200 s (the Go SDK always sends its 7200, the Node SDK never does).
      ...(this.role.durationSeconds ? { DurationSeconds: this.role.durationSeconds } : {}),
    });
    const answer = await this.transport.send(
      {
        url: this.#url,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: 'SKIP',
          'x-tc-action': ACTION,
          'x-tc-version': TENCENT_STS_VERSION,
          'x-tc-region': this.role.region,
          'x-tc-timestamp': String(Math.floor(this.clock.wallNow() / 1000)),
        },
        body,
      },
      signal,
    );
    const stsDateWall = parseHttpDate(answer.headers['date']);
    const response = parseResponse(answer.body);
    if (response === undefined) {
      // Not Tencent's JSON at all: a proxy's or load balancer's page. Its status says what to do.
      if (answer.statusCode !== 200) {
        throw new CloudStsRefusal(
          'tencent',
          `HTTP${answer.statusCode}`,
          answer.statusCode,
          `Tencent Cloud STS answered HTTP ${answer.statusCode} without an API answer`,
        );
      }
      throw this.#bad('an answer that is not Tencent API JSON');
    }
    if (response['Error'] !== undefined) throw this.#refusal(response['Error'], answer.statusCode);
    if (answer.statusCode !== 200) {
      throw new CloudStsRefusal('tencent', `HTTP${answer.statusCode}`, answer.statusCode, `Tencent Cloud STS answered HTTP ${answer.statusCode}`);
    }
    return this.#credentials(response, stsDateWall);
  }

  /** The error as the classifier reads it: the code only when it looks like one, and never STS's message (it may echo the token). */
  #refusal(error: unknown, status: number): CloudStsRefusal {
    const code = (error as { Code?: unknown } | null)?.Code;
    const stsCode = typeof code === 'string' && STS_CODE_SHAPE.test(code) ? code : 'UnexpectedError';
    return new CloudStsRefusal('tencent', stsCode, status, `Tencent Cloud STS refused AssumeRoleWithWebIdentity for role ${this.role.roleName}: ${stsCode}`);
  }

  #credentials(response: Record<string, unknown>, stsDateWall: number | undefined): TencentCredentials {
    const c = response['Credentials'] as Partial<Record<string, unknown>> | null | undefined;
    const secretId = c?.['TmpSecretId'];
    const secretKey = c?.['TmpSecretKey'];
    const sessionToken = c?.['Token'];
    if (typeof secretId !== 'string' || !SECRET_ID.test(secretId)) throw this.#bad('credentials without a valid TmpSecretId');
    if (typeof secretKey !== 'string' || secretKey.length > MAX_SECRET_KEY_CHARS || !PRINTABLE.test(secretKey)) {
      throw this.#bad('credentials without a valid TmpSecretKey');
    }
    if (typeof sessionToken !== 'string' || sessionToken.length > MAX_TOKEN_CHARS || !PRINTABLE.test(sessionToken)) {
      throw this.#bad('credentials without a valid Token');
    }
    const expirationWall = this.#expiration(response);
    const expired = alreadyExpired(expirationWall, stsDateWall, this.clock.wallNow());
    if (expired) throw this.#bad(`credentials ${expired}`);
    return {
      cloud: 'tencent',
      secretId,
      secretKey,
      token: sessionToken,
      expirationWall,
      ...(stsDateWall !== undefined ? { stsDateWall } : {}),
      roleArn: this.role.roleArn,
      accountId: this.role.accountId,
    };
  }

  /**
   * When the credentials expire (epoch ms). STS says it twice: `ExpiredTime` (Unix seconds, what
   * every SDK refreshes by) is required; `Expiration` (ISO 8601) is checked when present, and when
   * the two disagree the earlier one is believed, so crosscred never serves credentials past either.
   */
  #expiration(response: Record<string, unknown>): number {
    const expiredTime = response['ExpiredTime'];
    if (typeof expiredTime !== 'number' || !Number.isSafeInteger(expiredTime) || expiredTime <= 0) {
      throw this.#bad('credentials without a valid ExpiredTime');
    }
    const fromExpiredTime = expiredTime * 1000;
    const expiration = response['Expiration'];
    if (expiration === undefined) return fromExpiredTime;
    const fromExpiration = typeof expiration === 'string' && ISO_8601.test(expiration) ? Date.parse(expiration) : NaN;
    if (!Number.isFinite(fromExpiration)) throw this.#bad('credentials with an Expiration that is not a date');
    return Math.min(fromExpiredTime, fromExpiration);
  }

  #bad(what: string): CrosscredError {
    return new CrosscredError('STS_BAD_RESPONSE', `Tencent Cloud STS answered ${what} for role ${this.role.roleName}`);
  }
}

/** `Response`, when the body is Tencent API JSON (`{"Response":{…}}`); undefined otherwise. */
function parseResponse(body: Buffer): Record<string, unknown> | undefined {
  const response = jsonObject(body)?.['Response'];
  return typeof response === 'object' && response !== null && !Array.isArray(response) ? (response as Record<string, unknown>) : undefined;
}

/** An RFC 3339 date-time with a zone, as STS writes Expiration (`2026-12-07T12:00:00Z`). */
const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;
