import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { decodeJwt, type JWTPayload } from 'jose';
import { StsStandIn, type TransportFault } from './sts-stand-in.js';
import { globMatch, readSmallBody, WebIdentityVerifier } from './web-identity-verifier.js';

/**
 * An Alibaba Cloud STS stand-in for the demo and the tests: a real HTTP server that answers
 * AssumeRoleWithOIDC (API version 2015-04-01) the way STS does: the parameters from the query and
 * a form body, merged, as Alibaba's RPC-style endpoints take them; a JSON answer with `RequestId`,
 * `OIDCTokenInfo`, `AssumedRoleUser` and `Credentials`; errors as JSON `RequestId`, `HostId`, `Code`,
 * `Message`, `Recommend`, with the HTTP statuses of STS's error-code table
 * (help.aliyun.com/zh/ram/developer-reference/api-sts-2015-04-01-errorcodes). Before issuing
 * anything it verifies the token: its signature against the issuer's JWKS found through discovery,
 * `iss`, `aud` (the provider's client ids), `exp`, and a trust rule on `sub` (RAM's `oidc:sub`
 * condition, `*` and `?` as in StringLike).
 *
 * Tests can make it misbehave on command (an error code, a hang, garbage, a reset connection,
 * short-lived credentials) and read back every request it received (`requests`) and every set
 * of credentials it issued (`issued`).
 */

export interface AlibabaTrustRule {
  /** `acs:ram::<account uid>:role/<name>`. */
  readonly roleArn: string;
  /** `acs:ram::<account uid>:oidc-provider/<name>`: the provider the role trusts. */
  readonly oidcProviderArn: string;
  /** The provider's issuer URL: the token's `iss`. */
  readonly issuer: string;
  /** The provider's client id: the token's `aud`. */
  readonly audience: string;
  /** The `oidc:sub` the role's trust policy allows; `*` and `?` match as in StringLike. */
  readonly subject: string;
  /** The role's MaxSessionDuration in seconds (RAM's default is 3600). */
  readonly maxSessionDuration?: number;
}

export type AlibabaStsFault = { readonly kind: 'error'; readonly status: number; readonly code: string; readonly message?: string } | TransportFault;

/** One AssumeRoleWithOIDC request as the emulator received it, before any fault or check. */
export interface AlibabaStsCallRecord {
  /** The emulator's clock (`now()`) when the request arrived. */
  readonly atWall: number;
  readonly method: string;
  /** The query string's parameter names, in order: what an SDK puts in the URL (never the token, for crosscred). */
  readonly queryNames: readonly string[];
  /** The OIDCToken parameter exactly as sent (empty when absent). Secret: tests only. */
  readonly token: string;
  readonly roleArn: string;
  readonly oidcProviderArn: string;
  readonly sessionName: string;
  /** DurationSeconds as sent, or null when absent. */
  readonly durationSeconds: string | null;
  /** The fault applied to this request, if any. */
  readonly fault: AlibabaStsFault['kind'] | null;
}

export interface AlibabaIssuedCredentials {
  readonly accessKeyId: string;
  /** Secret: tests only. */
  readonly accessKeySecret: string;
  readonly securityToken: string;
  readonly roleArn: string;
  readonly sessionName: string;
  readonly subject: string;
  readonly expiration: Date;
}

export interface AlibabaStsEmulatorOptions {
  readonly trust: readonly AlibabaTrustRule[];
  readonly host?: string;
  readonly port?: number;
  /** Serve HTTPS with this PEM key and certificate, as real STS does. */
  readonly tls?: { readonly key: string; readonly cert: string };
  /** STS's own clock (epoch ms), default Date.now: it dates Expiration and the Date header and judges `exp`. */
  readonly now?: () => number;
}

const MAX_BODY_BYTES = 64 * 1024;
/** RoleSessionName: 2 to 64 letters, digits, `.`, `@`, `-` and `_` (the AssumeRoleWithOIDC API reference). */
const SESSION_NAME = /^[A-Za-z0-9.@_-]{2,64}$/;
const ROLE_ARN = /^acs:ram::(\d{1,32}):role\/([A-Za-z0-9.-]{1,64})$/i;
const OIDC_PROVIDER_ARN = /^acs:ram::\d{1,32}:oidc-provider\/[A-Za-z0-9._-]{1,128}$/i;
const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export class AlibabaStsEmulator extends StsStandIn<AlibabaStsFault> {
  /** AssumeRoleWithOIDC requests received, whatever their outcome. */
  calls = 0;
  readonly issued: AlibabaIssuedCredentials[] = [];
  /** Every AssumeRoleWithOIDC request received, in order (what `calls` counts). */
  readonly requests: AlibabaStsCallRecord[] = [];
  readonly #options: AlibabaStsEmulatorOptions;
  readonly #verifier: WebIdentityVerifier;

  private constructor(server: Server, url: string, options: AlibabaStsEmulatorOptions) {
    super(server, url, options.now ?? Date.now);
    this.#options = options;
    this.#verifier = new WebIdentityVerifier(() => this.now());
  }

  static async start(options: AlibabaStsEmulatorOptions): Promise<AlibabaStsEmulator> {
    let emulator: AlibabaStsEmulator | undefined;
    const { server, url } = await StsStandIn.listen(options, (req, res) => void emulator!.#handle(req, res));
    emulator = new AlibabaStsEmulator(server, url, options);
    return emulator;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const hostId = /^[A-Za-z0-9.:[\]-]{1,255}$/.test(req.headers.host ?? '') ? req.headers.host! : 'sts.aliyuncs.com';
    let body: string;
    try {
      body = await readSmallBody(req, MAX_BODY_BYTES);
    } catch {
      res.writeHead(413).end();
      return;
    }
    const query = new URL(req.url ?? '/', 'http://sts.invalid').searchParams;
    // RPC-style endpoints read a parameter from the query or the form body alike.
    const params = new URLSearchParams(query);
    const contentType = String(req.headers['content-type'] ?? '');
    if (body !== '' && contentType.startsWith('application/x-www-form-urlencoded')) for (const [k, v] of new URLSearchParams(body)) params.set(k, v);
    const fail = (status: number, code: string, message: string) => sendError(res, hostId, status, code, message);
    if (params.get('Action') !== 'AssumeRoleWithOIDC')
      return fail(404, 'InvalidAction.NotFound', 'Specified api is not found, please check your url and method.');

    this.calls += 1;
    const fault = this.takeFault();
    this.requests.push({
      atWall: this.now(),
      method: req.method ?? '',
      queryNames: [...query.keys()],
      token: params.get('OIDCToken') ?? '',
      roleArn: params.get('RoleArn') ?? '',
      oidcProviderArn: params.get('OIDCProviderArn') ?? '',
      sessionName: params.get('RoleSessionName') ?? '',
      durationSeconds: params.get('DurationSeconds'),
      fault: fault?.kind ?? null,
    });
    // Real STS dates every answer by its own clock; so does the emulator, by `now`.
    res.setHeader('date', new Date(this.now()).toUTCString());
    if (fault?.kind === 'error') return fail(fault.status, fault.code, fault.message ?? `emulated ${fault.code}`);
    const after = fault
      ? await this.applyFault(fault, req, res, { contentType: 'application/json;charset=utf-8', body: '{"RequestId": "\u0000 this is not JSON' })
      : { answered: false as const };
    if (after.answered) return;
    await this.#assumeRole(params, res, hostId, after.lifetimeSeconds);
  }

  async #assumeRole(params: URLSearchParams, res: ServerResponse, hostId: string, lifetimeOverride: number | undefined): Promise<void> {
    const fail = (status: number, code: string, message: string) => sendError(res, hostId, status, code, message);
    if (params.get('Version') !== '2015-04-01') return fail(400, 'InvalidVersion', 'Specified parameter Version is not valid.');
    for (const name of ['RoleArn', 'OIDCProviderArn', 'RoleSessionName']) {
      if (!params.get(name))
        return fail(400, 'MissingParameter', `The input parameter "${name}" that is mandatory for processing this request is not supplied.`);
    }
    const roleArn = params.get('RoleArn')!;
    const providerArn = params.get('OIDCProviderArn')!;
    const sessionName = params.get('RoleSessionName')!;
    const token = params.get('OIDCToken') ?? '';
    const roleMatch = ROLE_ARN.exec(roleArn);
    if (!roleMatch) return fail(400, 'InvalidParameter.RoleArn', 'The parameter RoleArn is wrongly formed.');
    if (!OIDC_PROVIDER_ARN.test(providerArn)) return fail(400, 'InvalidParameter.OIDCProviderArn', 'The parameter OIDCProviderArn is wrongly formed.');
    if (!SESSION_NAME.test(sessionName)) return fail(400, 'InvalidParameter.RoleSessionName', 'The parameter RoleSessionName is wrongly formed.');
    if (token === '') return fail(401, 'AuthenticationFail.OIDCToken.Invalid', 'The OIDCToken can not empty.');
    if (token.length < 4 || token.length > 20_000)
      return fail(401, 'AuthenticationFail.OIDCToken.Invalid', 'The Jwt content is invalid that cannot be recognized.');

    const rule = this.#options.trust.find((r) => r.roleArn.toLowerCase() === roleArn.toLowerCase());
    if (!rule) return fail(404, 'EntityNotExist.Role', `The role not exists: ${roleArn}.`);
    const durationParam = params.get('DurationSeconds');
    const duration = durationParam === null ? 3600 : Number(durationParam);
    if (!/^\d{1,6}$/.test(durationParam ?? '3600') || duration < 900 || duration > (rule.maxSessionDuration ?? 3600)) {
      return fail(400, 'InvalidParameter.DurationSeconds', `The Min/Max value of DurationSeconds is 15min/${rule.maxSessionDuration ?? 3600}s.`);
    }
    if (rule.oidcProviderArn.toLowerCase() !== providerArn.toLowerCase())
      return fail(401, 'AuthenticationFail.NoPermission', 'No such OIDC Provider registered.');

    // STS reads the claims to find what to check them against before it checks the signature.
    const claims = unverifiedClaims(token);
    if (claims === undefined) return fail(401, 'AuthenticationFail.OIDCToken.Invalid', "The number of Jwt field should be divided into 3 parts with '.' .");
    if (claims.iss !== rule.issuer)
      return fail(401, 'AuthenticationFail.OIDCToken.IssuerNotMatch', "The issuer in the OIDC Token doesn't match the OIDC Provider registered.");
    const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!audiences.includes(rule.audience)) return fail(401, 'AuthenticationFail.OIDCToken.AudienceNotMatch', 'Invalid audience.');
    const verified = await this.#verifier.verify(token, rule);
    if (!verified.ok) {
      if (verified.why === 'expired') return fail(401, 'AuthenticationFail.OIDCToken.Expired', 'This JsonWebToken is expired.');
      if (verified.why === 'idp-unreachable') {
        return fail(401, 'AuthenticationFail.OIDCToken.IssuerConfigurationBroken', `Get public keys from OIDC Provider failed, the issuer is ${rule.issuer}.`);
      }
      return fail(401, 'AuthenticationFail.OIDCToken.InvalidSignature', 'OIDC token validate failed: invalid signature.');
    }
    if (!globMatch(rule.subject, verified.subject)) return fail(401, 'AuthenticationFail.NoPermission', 'There is no permission');

    const nowMs = this.now();
    const expiration = new Date(Math.floor(nowMs / 1000 + (lifetimeOverride ?? duration)) * 1000);
    const accessKeyId = `STS.${randomBase62(25)}`;
    const accessKeySecret = randomBase62(44);
    const securityToken = `CAIS${randomBytes(600).toString('base64')}`;
    this.issued.push({ accessKeyId, accessKeySecret, securityToken, roleArn, sessionName, subject: verified.subject, expiration });
    const roleId = String(BigInt(`0x${randomBytes(8).toString('hex')}`) % 10n ** 17n).padStart(17, '3');
    const seconds = (value: unknown) => (typeof value === 'number' ? new Date(value * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z') : undefined);
    const answer = {
      RequestId: randomUUID().toUpperCase(),
      OIDCTokenInfo: {
        Subject: verified.subject,
        Issuer: rule.issuer,
        ClientIds: audiences.join(','),
        ExpirationTime: seconds(claims.exp),
        IssuanceTime: seconds(claims.iat),
        VerificationInfo: 'Success',
      },
      AssumedRoleUser: {
        AssumedRoleId: `${roleId}:${sessionName}`,
        Arn: `acs:ram::${roleMatch[1]}:role/${roleMatch[2]!.toLowerCase()}/${sessionName}`,
      },
      Credentials: {
        SecurityToken: securityToken,
        Expiration: expiration.toISOString().replace(/\.\d{3}Z$/, 'Z'),
        AccessKeySecret: accessKeySecret,
        AccessKeyId: accessKeyId,
      },
    };
    res.writeHead(200, { 'content-type': 'application/json;charset=utf-8' }).end(JSON.stringify(answer));
  }
}

/** An error answer as Alibaba's RPC-style endpoints send it. */
function sendError(res: ServerResponse, hostId: string, status: number, code: string, message: string): void {
  const body = {
    RequestId: randomUUID().toUpperCase(),
    HostId: hostId,
    Code: code,
    Message: message,
    Recommend: `https://api.aliyun.com/troubleshoot?q=${encodeURIComponent(code)}&product=Sts`,
  };
  res.writeHead(status, { 'content-type': 'application/json;charset=utf-8' }).end(JSON.stringify(body));
}

/** The claims of a compact JWT, unverified (jose's decodeJwt); undefined when it is not one. */
function unverifiedClaims(token: string): JWTPayload | undefined {
  try {
    return decodeJwt(token);
  } catch {
    return undefined;
  }
}

function randomBase62(length: number): string {
  const bytes = randomBytes(length);
  let out = '';
  for (const b of bytes) out += BASE62[b % 62];
  return out;
}
