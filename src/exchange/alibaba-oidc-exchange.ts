import type { Clock } from '../core/clock.js';
import { CrosscredError } from '../core/errors.js';
import type { AlibabaCredentials } from '../platform/alibaba/credentials.js';
import type { StsHttpAnswer, StsHttpHandler } from '../platform/aws/sts-http-handler.js';
import { CloudStsRefusal, STS_CODE_SHAPE } from './cloud-sts-refusal.js';
import type { WebIdentityExchange } from './credentials.js';
import { alreadyExpired, jsonObject, parseHttpDate } from './sts-answer.js';

export interface AlibabaRoleExchangeOptions {
  readonly roleName: string;
  /** `acs:ram::<account uid>:role/<name>`. */
  readonly roleArn: string;
  readonly accountId: string;
  /** `acs:ram::<account uid>:oidc-provider/<name>`. */
  readonly oidcProviderArn: string;
  readonly sessionName: string;
  readonly durationSeconds?: number;
  /** The STS base URL (platform/alibaba/sts-endpoints.ts, or a configured one). */
  readonly endpoint: string;
}

/** An STS AccessKeyId: `STS.` and letters and digits. */
const ACCESS_KEY_ID = /^STS\.[A-Za-z0-9]{4,124}$/;
/** The secret and the security token go into clients' headers and documents: visible ASCII only, bounded. */
const VISIBLE_ASCII = /^[\x21-\x7e]+$/;
const MAX_SECRET_LENGTH = 256;
const MAX_SECURITY_TOKEN_LENGTH = 16 * 1024;
/** STS's Expiration: whole seconds, UTC, exactly this shape. */
const EXPIRATION = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

/**
 * Trades a web-identity token for a RAM role's credentials with Alibaba Cloud STS AssumeRoleWithOIDC.
 *
 * The request is the one Alibaba's credential SDKs send (credentials-go providers/oidc.go,
 * credentials-nodejs providers/oidc_role_arn.ts): an unsigned POST to the endpoint's `/`, with
 * `Action`, `Version=2015-04-01`, `Format=JSON` and `Timestamp` in the query, and the parameters,
 * the token among them, in an `application/x-www-form-urlencoded` body (so never in a URL a proxy
 * might log). Every field of the answer is checked before it is believed: it is untrusted input.
 */
export class AlibabaOidcExchange implements WebIdentityExchange<AlibabaCredentials> {
  readonly cloud = 'alibaba';

  constructor(
    private readonly role: AlibabaRoleExchangeOptions,
    private readonly transport: StsHttpHandler,
    private readonly clock: Clock,
  ) {}

  async exchange(token: string, signal?: AbortSignal, sessionName?: string): Promise<AlibabaCredentials> {
    const url = new URL(this.role.endpoint.includes('://') ? this.role.endpoint : `https://${this.role.endpoint}`);
    url.pathname = '/';
    url.search = new URLSearchParams({
      Action: 'AssumeRoleWithOIDC',
      Version: '2015-04-01',
      Format: 'JSON',
      Timestamp: new Date(this.clock.wallNow()).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    }).toString();
    const form = new URLSearchParams({
      RoleArn: this.role.roleArn,
      OIDCProviderArn: this.role.oidcProviderArn,
      OIDCToken: token,
      RoleSessionName: sessionName ?? this.role.sessionName,
      ...(this.role.durationSeconds ? { DurationSeconds: String(this.role.durationSeconds) } : {}),
    });
    const answer = await this.transport.send(
      {
        url,
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', 'accept-encoding': 'identity' },
        body: form.toString(),
      },
      signal,
    );
    if (answer.statusCode !== 200) throw this.#refusal(answer);
    return this.#credentialsOf(answer);
  }

  /** An error answer as a CloudStsRefusal: its code if it looks like one, else `HTTP<status>`; never its message text. */
  #refusal(answer: StsHttpAnswer): CloudStsRefusal {
    const code = jsonObject(answer.body)?.['Code'];
    const stsCode = typeof code === 'string' && STS_CODE_SHAPE.test(code) ? code : `HTTP${answer.statusCode}`;
    return new CloudStsRefusal(
      'alibaba',
      stsCode,
      answer.statusCode,
      `Alibaba Cloud STS refused AssumeRoleWithOIDC for role ${this.role.roleName}: ${stsCode} (HTTP ${answer.statusCode})`,
    );
  }

  #credentialsOf(answer: StsHttpAnswer): AlibabaCredentials {
    const bad = (why: string) => new CrosscredError('STS_BAD_RESPONSE', `Alibaba Cloud STS answered role ${this.role.roleName} ${why}`);
    const body = jsonObject(answer.body);
    if (body === undefined) throw bad('with something that is not a JSON object');
    const credentials = body['Credentials'];
    const c = (typeof credentials === 'object' && credentials !== null ? credentials : {}) as Record<string, unknown>;
    const { AccessKeyId: accessKeyId, AccessKeySecret: accessKeySecret, SecurityToken: securityToken, Expiration: expiration } = c;
    if (typeof accessKeyId !== 'string' || !ACCESS_KEY_ID.test(accessKeyId)) throw bad('without a valid AccessKeyId');
    if (typeof accessKeySecret !== 'string' || accessKeySecret.length > MAX_SECRET_LENGTH || !VISIBLE_ASCII.test(accessKeySecret)) {
      throw bad('without a valid AccessKeySecret');
    }
    if (typeof securityToken !== 'string' || securityToken.length > MAX_SECURITY_TOKEN_LENGTH || !VISIBLE_ASCII.test(securityToken)) {
      throw bad('without a valid SecurityToken');
    }
    const expirationWall = typeof expiration === 'string' && EXPIRATION.test(expiration) ? Date.parse(expiration) : Number.NaN;
    if (!Number.isFinite(expirationWall)) throw bad('without a valid Expiration (YYYY-MM-DDTHH:MM:SSZ)');

    const stsDateWall = parseHttpDate(answer.headers['date']);
    const expired = alreadyExpired(expirationWall, stsDateWall, this.clock.wallNow());
    if (expired) throw bad(`with credentials ${expired}`);
    return {
      cloud: 'alibaba',
      accessKeyId,
      accessKeySecret,
      securityToken,
      expirationWall,
      ...(stsDateWall !== undefined ? { stsDateWall } : {}),
      roleArn: this.role.roleArn,
      accountId: this.role.accountId,
    };
  }
}
