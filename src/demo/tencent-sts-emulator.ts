import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import { StsStandIn, type TransportFault } from './sts-stand-in.js';
import { globMatch, readSmallBody, WebIdentityVerifier } from './web-identity-verifier.js';

/**
 * A Tencent Cloud STS stand-in for the demo and the tests: a real HTTP server that answers
 * AssumeRoleWithWebIdentity (API 3.0, version 2018-08-13) the way Tencent STS does: an unsigned
 * POST of JSON with X-TC-Action, X-TC-Version, X-TC-Region, X-TC-Timestamp and `Authorization: SKIP`,
 * answered `{"Response":{"Credentials":{…},"ExpiredTime","Expiration","RequestId"}}`, and every
 * error answered with HTTP 200 and `{"Response":{"Error":{"Code","Message"},"RequestId"}}`.
 *
 * The token is really verified (WebIdentityVerifier: signature against the issuer's JWKS found
 * through its discovery document, `iss`, `aud`, `exp`) against the CAM OIDC provider the request
 * names (`ProviderId`), and then the role's trust rule on `sub` (CAM's `oidc:sub` condition, `*`
 * and `?` globs). Error codes are STS's own (tencentcloud-sdk-go `sts/v20180813/errors.go`) and API
 * 3.0's common ones; where Tencent's documentation does not say which code a case gets, the
 * emulator's choice is noted at the check.
 *
 * Tests can also make it misbehave on command (an error code, a hang, garbage, a reset, a delay,
 * short-lived credentials, a proxy's page) and read back every request it received.
 */

export interface TencentTrustRule {
  /** `qcs::cam::uin/<owner uin>:roleName/<name>`. */
  readonly roleArn: string;
  /** The CAM OIDC identity provider's name the role trusts (`ProviderId`). */
  readonly providerId: string;
  /** The provider's issuer URL: the token's `iss`. */
  readonly issuer: string;
  /** The provider's client id: the token's `aud`. */
  readonly audience: string;
  /** The `oidc:sub` the role's trust policy allows; `*` and `?` match. */
  readonly subject: string;
  /** The role's maximum session duration in seconds (CAM's default is 43200). */
  readonly maxSessionDuration?: number;
}

export type TencentStsFault =
  /** An API error, answered as Tencent does: HTTP 200 with Response.Error. */
  { readonly kind: 'error'; readonly code: string; readonly message?: string } | TransportFault;

/** One AssumeRoleWithWebIdentity request as the emulator received it, before any fault or check. */
export interface TencentStsCallRecord {
  /** The emulator's clock (`now()`) when the request arrived. */
  readonly atWall: number;
  /** The request headers (they hold no secret: the call is unsigned). */
  readonly headers: IncomingHttpHeaders;
  /** The parameters as sent, WebIdentityToken included (secret: tests only); undefined when the body was not a JSON object. */
  readonly params: Readonly<Record<string, unknown>> | undefined;
  /** The WebIdentityToken parameter exactly as sent (empty when absent). */
  readonly token: string;
  readonly roleArn: string;
  /** The fault applied to this request, if any. */
  readonly fault: TencentStsFault['kind'] | null;
}

export interface TencentIssuedCredentials {
  readonly secretId: string;
  readonly secretKey: string;
  readonly token: string;
  readonly roleArn: string;
  readonly sessionName: string;
  readonly subject: string;
  /** Unix seconds, as ExpiredTime. */
  readonly expiredTime: number;
}

export interface TencentStsEmulatorOptions {
  readonly trust: readonly TencentTrustRule[];
  readonly host?: string;
  readonly port?: number;
  /** Serve HTTPS with this PEM key and certificate, as real STS does. */
  readonly tls?: { readonly key: string; readonly cert: string };
  /** STS's own clock (epoch ms), default Date.now: it dates ExpiredTime and the Date header and judges the token's `exp` and X-TC-Timestamp. */
  readonly now?: () => number;
}

const ACTION = 'AssumeRoleWithWebIdentity';
/** Written out here: demo/ may not import platform/ (docs/architecture.md); the exchange's is platform/tencent/sts-endpoints.ts. */
const VERSION = '2018-08-13';
/** The form of a CAM role ARN, checked only as far as STS's ParamError needs (platform/tencent/cam-arn.ts is the parser). */
const CAM_ROLE_ARN = /^qcs::cam::uin\/\d{1,20}:roleName\/[\w+=,.@-]{1,128}$/;
/** STS's default session when DurationSeconds is left out, and its ceiling. */
const DEFAULT_DURATION_SECONDS = 7200;
const MAX_DURATION_SECONDS = 43_200;
/** API 3.0 refuses a request whose X-TC-Timestamp is more than five minutes from its clock. */
const MAX_TIMESTAMP_SKEW_SECONDS = 300;
/** RoleSessionName: 2 to 128 letters, digits and `=,.@_-` (the SDKs send `tencentcloud-<lang>-sdk-<time>`). */
const SESSION_NAME = /^[\w=,.@-]{2,128}$/;
const MAX_BODY_BYTES = 64 * 1024;

export class TencentStsEmulator extends StsStandIn<TencentStsFault> {
  /** AssumeRoleWithWebIdentity requests received, whatever their outcome. */
  calls = 0;
  readonly issued: TencentIssuedCredentials[] = [];
  /** Every request received, in order (what `calls` counts). */
  readonly requests: TencentStsCallRecord[] = [];
  readonly #options: TencentStsEmulatorOptions;
  readonly #verifier: WebIdentityVerifier;

  private constructor(server: Server, url: string, options: TencentStsEmulatorOptions) {
    super(server, url, options.now ?? Date.now);
    this.#options = options;
    this.#verifier = new WebIdentityVerifier(() => this.now());
  }

  static async start(options: TencentStsEmulatorOptions): Promise<TencentStsEmulator> {
    let emulator: TencentStsEmulator | undefined;
    const { server, url } = await StsStandIn.listen(options, (req, res) => void emulator!.#handle(req, res));
    emulator = new TencentStsEmulator(server, url, options);
    return emulator;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body: string;
    try {
      body = await readSmallBody(req, MAX_BODY_BYTES);
    } catch {
      res.writeHead(413).end();
      return;
    }
    let params: Record<string, unknown> | undefined;
    try {
      const parsed: unknown = JSON.parse(body);
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) params = parsed as Record<string, unknown>;
    } catch {
      params = undefined;
    }
    this.calls += 1;
    const fault = this.takeFault();
    const text = (name: string) => (typeof params?.[name] === 'string' ? (params[name] as string) : '');
    this.requests.push({
      atWall: this.now(),
      headers: req.headers,
      params,
      token: text('WebIdentityToken'),
      roleArn: text('RoleArn'),
      fault: fault?.kind ?? null,
    });
    // Every API 3.0 answer is dated by STS's clock; so is the emulator's, by `now`.
    res.setHeader('date', new Date(this.now()).toUTCString());
    if (fault?.kind === 'error') return sendError(res, fault.code, fault.message ?? `emulated ${fault.code}`);
    const after = fault
      ? await this.applyFault(fault, req, res, { contentType: 'application/json', body: '{"Response": {this is not JSON\u0000' })
      : { answered: false as const };
    if (after.answered) return;
    const refusal = this.#checkRequest(req, params);
    if (refusal) return sendError(res, refusal.code, refusal.message);
    await this.#assumeRole(params!, res, after.lifetimeSeconds);
  }

  /** API 3.0's checks of the request itself, before the action runs (common error codes). */
  #checkRequest(req: IncomingMessage, params: Record<string, unknown> | undefined): { code: string; message: string } | undefined {
    const header = (name: string) => (typeof req.headers[name] === 'string' ? (req.headers[name] as string) : '');
    if (req.method !== 'POST') return { code: 'UnsupportedProtocol', message: 'only POST is emulated' };
    if (!header('content-type').toLowerCase().startsWith('application/json')) {
      return { code: 'InvalidParameter', message: 'Content-Type must be application/json for a TC3 request' };
    }
    if (header('authorization') !== 'SKIP') {
      return { code: 'AuthFailure.InvalidAuthorization', message: 'AssumeRoleWithWebIdentity is unsigned: Authorization must be SKIP' };
    }
    if (header('x-tc-action') !== ACTION) return { code: 'InvalidAction', message: 'only AssumeRoleWithWebIdentity is emulated' };
    if (header('x-tc-version') !== VERSION) return { code: 'NoSuchVersion', message: `the version must be ${VERSION}` };
    if (header('x-tc-region') === '') return { code: 'MissingParameter', message: 'X-TC-Region is required' };
    const timestamp = Number(header('x-tc-timestamp'));
    if (!/^\d{1,12}$/.test(header('x-tc-timestamp')) || Math.abs(timestamp - this.now() / 1000) > MAX_TIMESTAMP_SKEW_SECONDS) {
      return { code: 'AuthFailure.SignatureExpire', message: 'X-TC-Timestamp is missing or more than five minutes from the server time' };
    }
    if (params === undefined) return { code: 'InvalidParameter', message: 'the body is not a JSON object' };
    for (const name of ['ProviderId', 'WebIdentityToken', 'RoleArn', 'RoleSessionName']) {
      if (typeof params[name] !== 'string' || params[name] === '') return { code: 'MissingParameter', message: `the ${name} parameter is missing` };
    }
    return undefined;
  }

  async #assumeRole(params: Record<string, unknown>, res: ServerResponse, lifetimeOverride: number | undefined): Promise<void> {
    const roleArn = params['RoleArn'] as string;
    const providerId = params['ProviderId'] as string;
    const sessionName = params['RoleSessionName'] as string;
    const token = params['WebIdentityToken'] as string;
    if (!SESSION_NAME.test(sessionName)) return sendError(res, 'InvalidParameter.ParamError', 'RoleSessionName must be 2-128 characters of [\\w=,.@-]');
    const durationParam = params['DurationSeconds'];
    const duration = durationParam === undefined ? DEFAULT_DURATION_SECONDS : durationParam;
    if (typeof duration !== 'number' || !Number.isInteger(duration) || duration <= 0 || duration > MAX_DURATION_SECONDS) {
      return sendError(res, 'InvalidParameter.ParamError', `DurationSeconds must be an integer from 1 to ${MAX_DURATION_SECONDS}`);
    }
    if (!CAM_ROLE_ARN.test(roleArn)) return sendError(res, 'InvalidParameter.ParamError', 'RoleArn is not a CAM role ARN');
    const rule = this.#options.trust.find((r) => r.roleArn === roleArn);
    if (!rule) return sendError(res, 'ResourceNotFound.RoleNotFound', 'the role does not exist in this account');
    // Tencent does not document the code for a provider the role does not trust; ParamError is the emulator's choice.
    if (rule.providerId !== providerId) return sendError(res, 'InvalidParameter.ParamError', 'the role does not trust this identity provider');
    if (duration > (rule.maxSessionDuration ?? MAX_DURATION_SECONDS)) {
      return sendError(res, 'InvalidParameter.OverTimeError', "DurationSeconds exceeds the role's maximum session duration");
    }

    // Every token problem, an expired token included, is the one code WebIdentityTokenError.
    const verified = await this.#verifier.verify(token, rule);
    if (!verified.ok) {
      if (verified.why === 'idp-unreachable') return sendError(res, 'InternalError.SystemError', 'the identity provider could not be reached');
      return sendError(
        res,
        'InvalidParameter.WebIdentityTokenError',
        verified.why === 'expired' ? 'the WebIdentityToken has expired' : 'the WebIdentityToken is invalid',
      );
    }
    if (!globMatch(rule.subject, verified.subject)) return sendError(res, 'UnauthorizedOperation', "the role's trust policy does not allow this subject");

    const expiredTime = Math.floor(this.now() / 1000) + (lifetimeOverride ?? duration);
    const issued: TencentIssuedCredentials = {
      secretId: `AKID${randomBytes(24).toString('base64url').replace(/[-_]/g, 'x')}`,
      secretKey: randomBytes(24).toString('base64url'),
      token: randomBytes(256).toString('base64url'),
      roleArn,
      sessionName,
      subject: verified.subject,
      expiredTime,
    };
    this.issued.push(issued);
    sendJson(res, {
      Response: {
        Credentials: { Token: issued.token, TmpSecretId: issued.secretId, TmpSecretKey: issued.secretKey },
        ExpiredTime: expiredTime,
        Expiration: new Date(expiredTime * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
        RequestId: randomUUID(),
      },
    });
  }
}

/** Tencent API 3.0 answers an error with HTTP 200: only the body says it failed. */
function sendError(res: ServerResponse, code: string, message: string): void {
  sendJson(res, { Response: { Error: { Code: code, Message: message }, RequestId: randomUUID() } });
}

function sendJson(res: ServerResponse, value: unknown): void {
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(value));
}
