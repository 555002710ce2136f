import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { Agent, request } from 'undici';
import { CrosscredError } from '../../core/errors.js';
import {
  TENCENT_GET_CALLER_IDENTITY as GCI,
  parseTc3Authorization,
  type Tc3Authorization,
  Tc3FormatError,
  tc3Date,
} from '../../platform/tencent/tc3-signature.js';
import { BINDING_HEADERS, type SignedRequestAttestation, SUBJECT_TOKEN_TYPES } from '../../protocol/issuer-token-exchange.js';
import { isObject, parseJson, readBoundedBody } from '../../util/bounded-body.js';
import { type AttestationContext, AttestationError, type AttestedIdentity, type Attestor } from '../attestor.js';

export interface TencentCamRoleAttestorOptions {
  /**
   * Further STS endpoints to accept, each exactly (`https://host[:port]/`): a Tencent endpoint not
   * matched by the built-in pattern, or a local emulator. `http://` only for a loopback host.
   */
  readonly extraStsEndpoints?: readonly string[];
  /** PEM CA certificates trusted for STS instead of Node's bundled roots (a TLS-inspecting egress gateway, a test STS). */
  readonly caBundle?: string;
  /** Bound on the STS call, connect to last byte, in ms. Default 10 s. */
  readonly timeoutMs?: number;
  /** How far X-TC-Timestamp may be from this host's clock, in seconds. Default and maximum 300, Tencent's own window. */
  readonly maxAgeSeconds?: number;
}

/**
 * Official STS hosts: `sts.tencentcloudapi.com` (nearest region), `sts.<region>.tencentcloudapi.com`,
 * `sts.intl.tencentcloudapi.com` (research §4.6). HTTPS on 443 only.
 */
const OFFICIAL_STS_HOST = /^sts(\.[a-z0-9-]+)?\.tencentcloudapi\.com$/;
const BINDING = BINDING_HEADERS.tencent;
/** Tencent refuses a signature more than 5 minutes from its clock; a wider window here would only keep replays alive longer. */
const TENCENT_WINDOW_SECONDS = 300;
const DEFAULT_TIMEOUT_MS = 10_000;
/** A subject token is a few KiB (the CAM role token is the largest part); more is not one of ours. */
const MAX_SUBJECT_TOKEN_CHARS = 32 * 1024;
const MAX_URL_CHARS = 2048;
const MAX_HEADER_VALUE_CHARS = 8192;
const MAX_HEADERS = 16;
/** A GetCallerIdentity answer is well under 1 KiB. */
const MAX_ANSWER_BYTES = 64 * 1024;
/** Concurrent connections to one STS host, so a burst of attestations cannot open hundreds. */
const MAX_STS_CONNECTIONS = 8;

/**
 * Headers a subject token may carry, besides `authorization`: those of a GetCallerIdentity call.
 * Any other (Connection, Transfer-Encoding, Content-Length, X-Forwarded-For…) could change how the
 * issuer's request is framed or routed, so it is refused rather than forwarded or silently dropped.
 */
const ALLOWED_HEADERS = new Set(['content-type', 'host', BINDING, 'x-tc-action', 'x-tc-timestamp', 'x-tc-version', 'x-tc-region', 'x-tc-token']);
/**
 * Headers forwarded even when the signature does not cover them (every other one must be signed):
 * - x-tc-token: a temporary key (a CVM role's) is valid only with its token, and STS checks that
 *   pair itself; the official SDK never signs it.
 * - x-tc-version: API 3.0 requires it; its value is pinned below (2018-08-13), so signing adds nothing.
 * - x-tc-region: optional for STS and sent by the SDK; it cannot change whose identity STS answers with.
 * - x-tc-timestamp: STS rebuilds the string to sign from it, so it is bound whether listed or not.
 */
const UNSIGNED_FORWARDED = new Set(['x-tc-token', 'x-tc-version', 'x-tc-region', 'x-tc-timestamp']);

const LOWER_HEADER_NAME = /^[a-z0-9-]{1,64}$/;
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
const UNIX_SECONDS = /^\d{1,12}$/;
const REGION = /^[a-z]{2,8}(-[a-z0-9]{1,32}){1,4}$/;
const CONTENT_TYPES = new Set(['application/json', 'application/json; charset=utf-8']);
/** `qcs::sts:<uin>:assumed-role/<RoleId>` (research §4.4); a `/<session>` suffix is tolerated, since a CVM role session's exact ARN is unconfirmed. */
const ASSUMED_ROLE_ARN = /^qcs::sts:(\d{1,20}):assumed-role\/(\d{1,32})(?:\/([A-Za-z0-9_.@=,+-]{1,128}))?$/;
const SAFE_ATTRIBUTE = /^[A-Za-z0-9_.:/@=,+-]{1,256}$/;
const ERROR_CODE = /^[A-Za-z0-9.]{1,100}$/;
const REQUEST_ID = /^[A-Za-z0-9-]{1,64}$/;
/** Tencent error codes that say "try again later", not "this request is bad". */
const TRANSIENT_ERROR = /^(InternalError|RequestLimitExceeded|ResourceUnavailable|ServiceUnavailable)(\.|$)/;
const EXPLAINED_ERRORS: Record<string, string> = {
  'AuthFailure.SignatureFailure':
    'the signature does not match the request (a signed header or the body was changed after signing, or it was not signed with this key)',
  'AuthFailure.SignatureExpire': "the request's timestamp is outside Tencent's 5-minute window (check the instance's clock)",
  'AuthFailure.SecretIdNotFound': 'Tencent does not know the key that signed it (revoked or expired role credentials?)',
  'AuthFailure.InvalidSecretId': 'the SecretId is not valid',
  'AuthFailure.TokenFailure': "the temporary key's X-TC-Token is wrong or expired",
  'AuthFailure.UnauthorizedOperation': 'the key may not call sts:GetCallerIdentity',
  'AuthFailure.InvalidAuthorization': 'Tencent could not read the Authorization header',
};

/**
 * Verifies a Tencent CVM CAM-role attestation: a TC3-signed STS `GetCallerIdentity` request made
 * with the instance's role credentials and not sent. Every local check comes first (allow-listed
 * host, the binding to this issuer covered by the signature, the action, the timestamp window);
 * only then is the request replayed, exactly as signed, to Tencent STS, whose answer is the only
 * source of the identity. The issuer never holds a Tencent key: STS checks the signature.
 *
 * STS proves a CAM role session, not an instance: any principal allowed to assume the role (not
 * only a CVM it is bound to) can sign such a request, and names the session itself. So the
 * identity carries no instance id, and the session name is only an attribute.
 */
export class TencentCamRoleAttestor implements Attestor {
  readonly subjectTokenType = SUBJECT_TOKEN_TYPES.tencentCamRole;
  readonly #extraEndpoints: ReadonlySet<string>;
  readonly #timeoutMs: number;
  readonly #maxAgeSeconds: number;
  readonly #dispatcher: Agent;

  constructor(options: TencentCamRoleAttestorOptions = {}) {
    const invalid = (text: string) => new CrosscredError('CONFIG_INVALID', `Tencent CAM role attestor: ${text}`);
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(this.#timeoutMs) || this.#timeoutMs <= 0)
      throw invalid(`timeoutMs must be a positive number of milliseconds, not ${options.timeoutMs}`);
    this.#maxAgeSeconds = options.maxAgeSeconds ?? TENCENT_WINDOW_SECONDS;
    if (!Number.isInteger(this.#maxAgeSeconds) || this.#maxAgeSeconds < 1 || this.#maxAgeSeconds > TENCENT_WINDOW_SECONDS) {
      throw invalid(`maxAgeSeconds must be a whole number of seconds from 1 to ${TENCENT_WINDOW_SECONDS} (Tencent's own window), not ${options.maxAgeSeconds}`);
    }
    const extra = new Set<string>();
    for (const endpoint of options.extraStsEndpoints ?? []) {
      const url = parseUrl(endpoint);
      if (!url || url.username || url.password || endpoint.includes('?') || endpoint.includes('#') || url.pathname !== '/') {
        throw invalid(`extra STS endpoint ${JSON.stringify(endpoint)} must be a plain URL "https://host[:port]/"`);
      }
      if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) {
        throw invalid(`extra STS endpoint ${JSON.stringify(endpoint)} must use https (http only to a loopback address)`);
      }
      extra.add(originOf(url));
    }
    this.#extraEndpoints = extra;
    this.#dispatcher = new Agent({
      connect: { ...(options.caBundle ? { ca: options.caBundle } : {}), timeout: this.#timeoutMs },
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#timeoutMs,
      connections: MAX_STS_CONNECTIONS,
    });
  }

  async attest(subjectToken: string, context: AttestationContext): Promise<AttestedIdentity> {
    const attestation = decodeSubjectToken(subjectToken);
    const url = this.#allowedEndpoint(attestation.url);
    const headers = checkHeaders(attestation.headers);
    let auth: Tc3Authorization;
    try {
      auth = parseTc3Authorization(headers.authorization);
    } catch (err) {
      if (err instanceof Tc3FormatError) throw new AttestationError('invalid_request', err.message);
      throw err;
    }
    const signed = new Set(auth.signedHeaders);
    this.#checkSignedRequest(url, headers, auth, signed, attestation.body, context);
    const timestamp = Number(headers['x-tc-timestamp']);

    const answer = await this.#replay(url, headers, context);
    const identity = parseIdentity(answer, url.hostname);
    return {
      kind: this.subjectTokenType,
      cloud: 'tencent',
      accountId: identity.uin,
      roleId: identity.roleId,
      attributes: identity.attributes,
      // A hash, so the seen-set never holds a usable signature.
      replayKey: `tencent-tc3:${createHash('sha256').update(auth.signature).digest('hex')}`,
      replayUntilWall: (timestamp + this.#maxAgeSeconds) * 1000,
    };
  }

  #closed: Promise<void> | undefined;

  /** Closes the connections to STS; an attestation under way fails. Safe to call more than once. */
  close(): Promise<void> {
    this.#closed ??= this.#dispatcher.close();
    return this.#closed;
  }

  /** The URL the request goes to: an official STS host over HTTPS on 443, or one configured endpoint. */
  #allowedEndpoint(raw: string): URL {
    const url = parseUrl(raw);
    if (!url) throw new AttestationError('invalid_request', "the signed request's url is not a URL");
    const refuse = (why: string) => new AttestationError('invalid_grant', `the signed request is aimed at ${shown(url.host)}, which is refused: ${why}`);
    if (url.username || url.password) throw refuse('the URL carries user information');
    if (raw.includes('?') || raw.includes('#')) throw refuse('the URL has a query or fragment (GetCallerIdentity is POST /)');
    if (url.pathname !== '/') throw refuse('the path must be /');
    if (this.#extraEndpoints.has(originOf(url))) return url;
    if (url.protocol !== 'https:') throw refuse(`only https is allowed (${url.protocol.replace(/:$/, '')} is not)`);
    if (url.port !== '') throw refuse('only port 443 is allowed');
    if (!OFFICIAL_STS_HOST.test(url.hostname)) throw refuse('not an official Tencent STS host (sts[.<region>].tencentcloudapi.com) nor a configured endpoint');
    return url;
  }

  #checkSignedRequest(url: URL, headers: CheckedHeaders, auth: Tc3Authorization, signed: ReadonlySet<string>, body: string, context: AttestationContext): void {
    const grant = (text: string) => new AttestationError('invalid_grant', text);
    for (const name of auth.signedHeaders) {
      if (headers[name] === undefined) throw new AttestationError('invalid_request', `the signature covers ${name}, but the request has no such header`);
    }
    if (headers.host !== url.host) throw grant(`the signed Host ${shown(headers.host)} is not the host the request is aimed at (${shown(url.host)})`);

    // The binding: present, covered by the signature, naming this issuer (GHSA-wq26-3j2m-4hvv is what forgetting the middle step costs).
    const bound = headers[BINDING];
    if (bound === undefined) throw grant(`the request has no ${BINDING} header, so it is not bound to an issuer; sign one holding ${context.issuerUrl}`);
    if (!signed.has(BINDING))
      throw grant(`the ${BINDING} header is not covered by the signature, so it does not bind the request (SignedHeaders=${auth.signedHeaders.join(';')})`);
    if (bound !== context.issuerUrl) throw grant(`the request is bound to the issuer ${shown(bound)}, not to this one (${context.issuerUrl})`);

    if (!signed.has('x-tc-action')) throw grant('the X-TC-Action header is not covered by the signature, so the signature could be used for another API');
    if (headers['x-tc-action'] !== GCI.action) throw grant(`the signed action is ${shown(headers['x-tc-action'] ?? '')}, not ${GCI.action}`);
    for (const name of Object.keys(headers)) {
      if (name !== 'authorization' && !signed.has(name) && !UNSIGNED_FORWARDED.has(name)) {
        throw grant(`the header ${name} is not covered by the signature (SignedHeaders=${auth.signedHeaders.join(';')})`);
      }
    }
    if (headers['x-tc-version'] !== GCI.version) throw grant(`X-TC-Version is ${shown(headers['x-tc-version'] ?? '(missing)')}, not ${GCI.version}`);
    if (!CONTENT_TYPES.has(headers['content-type'] ?? '')) throw grant(`Content-Type is ${shown(headers['content-type'] ?? '')}, not ${GCI.contentType}`);
    if (body !== GCI.body) throw grant(`the body is not ${GCI.body} (GetCallerIdentity takes no parameters)`);
    if (auth.service !== GCI.service) throw grant(`the credential scope's service is ${shown(auth.service)}, not ${GCI.service}`);
    const region = headers['x-tc-region'];
    if (region !== undefined && !REGION.test(region))
      throw new AttestationError('invalid_request', `X-TC-Region ${shown(region)} is not a Tencent region name`);

    const stamp = headers['x-tc-timestamp'];
    if (stamp === undefined || !UNIX_SECONDS.test(stamp)) throw new AttestationError('invalid_request', 'X-TC-Timestamp is missing or not Unix seconds');
    const ageMs = context.nowWall - Number(stamp) * 1000;
    if (ageMs > this.#maxAgeSeconds * 1000)
      throw grant(`the signed request is ${Math.round(ageMs / 1000)} s old; at most ${this.#maxAgeSeconds} s is accepted (sign a fresh one)`);
    if (-ageMs > this.#maxAgeSeconds * 1000)
      throw grant(
        `the signed request is dated ${Math.round(-ageMs / 1000)} s in the future; at most ${this.#maxAgeSeconds} s of clock skew is accepted (check the instance's clock, NTP)`,
      );
    if (auth.date !== tc3Date(Number(stamp))) throw grant(`the credential scope's date ${auth.date} is not the UTC date of X-TC-Timestamp`);
  }

  /** Sends the request exactly as signed and returns STS's `Response` object. */
  async #replay(url: URL, headers: CheckedHeaders, context: AttestationContext): Promise<Record<string, unknown>> {
    const host = url.host;
    if (context.signal.aborted) throw new AttestationError('temporarily_unavailable', "the token request's deadline passed before Tencent STS was asked");
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    let statusCode: number;
    let text: string | undefined;
    try {
      const res = await request(originOf(url), {
        method: 'POST',
        // Only the checked headers (signed, or in UNSIGNED_FORWARDED) and authorization, as the caller sent them.
        headers: { ...headers },
        body: GCI.body,
        dispatcher: this.#dispatcher,
        signal: AbortSignal.any([context.signal, timeout]),
      });
      statusCode = res.statusCode;
      text = await readBoundedBody(res.body, MAX_ANSWER_BYTES);
    } catch (err) {
      if (context.signal.aborted)
        throw new AttestationError('temporarily_unavailable', `the token request's deadline passed while Tencent STS at ${host} was being asked`);
      if (timeout.aborted) throw new AttestationError('temporarily_unavailable', `Tencent STS at ${host} did not answer within ${this.#timeoutMs} ms`);
      const code = (err as { code?: unknown } | null)?.code;
      throw new AttestationError(
        'temporarily_unavailable',
        `Tencent STS at ${host} could not be reached (${typeof code === 'string' ? code : ((err as Error | null)?.name ?? 'Error')})`,
      );
    }
    if (statusCode !== 200) {
      // Tencent API 3.0 answers errors with HTTP 200 and Response.Error; another status is the gateway's (or a redirect, never followed).
      const transient = statusCode >= 500 || statusCode === 429 || statusCode === 408;
      throw new AttestationError(
        transient ? 'temporarily_unavailable' : 'invalid_grant',
        `Tencent STS at ${host} answered HTTP ${statusCode}, not a GetCallerIdentity answer`,
      );
    }
    if (text === undefined) throw new AttestationError('temporarily_unavailable', `Tencent STS at ${host} answered more than ${MAX_ANSWER_BYTES} bytes`);
    const answer = parseJson(text);
    const response = isObject(answer) && isObject(answer['Response']) ? answer['Response'] : undefined;
    if (!response) throw new AttestationError('temporarily_unavailable', `Tencent STS at ${host} answered something that is not a Tencent API answer`);
    const error = response['Error'];
    if (error !== undefined) {
      const rawCode = isObject(error) ? error['Code'] : undefined;
      const code = typeof rawCode === 'string' && ERROR_CODE.test(rawCode) ? rawCode : 'an unreadable error code';
      const requestId = typeof response['RequestId'] === 'string' && REQUEST_ID.test(response['RequestId']) ? `, RequestId ${response['RequestId']}` : '';
      const explanation = EXPLAINED_ERRORS[code];
      // Error.Message is not passed on: it is Tencent's free text, and may quote the SecretId.
      const text2 = `Tencent STS refused the signed GetCallerIdentity with ${code}${explanation ? `: ${explanation}` : ''}${requestId}`;
      throw new AttestationError(TRANSIENT_ERROR.test(code) ? 'temporarily_unavailable' : 'invalid_grant', text2);
    }
    return response;
  }
}

interface CheckedHeaders {
  readonly authorization: string;
  readonly host: string;
  readonly [name: string]: string | undefined;
}

function decodeSubjectToken(subjectToken: string): SignedRequestAttestation {
  const bad = (text: string) => new AttestationError('invalid_request', `the subject_token ${text}`);
  if (typeof subjectToken !== 'string' || subjectToken.length === 0) throw bad('is empty');
  if (subjectToken.length > MAX_SUBJECT_TOKEN_CHARS) throw bad(`is longer than ${MAX_SUBJECT_TOKEN_CHARS} characters`);
  if (!/^[A-Za-z0-9_-]+$/.test(subjectToken)) throw bad('is not base64url');
  const value = parseJson(Buffer.from(subjectToken, 'base64url').toString('utf8'));
  if (!isObject(value)) throw bad('is not the base64url of a JSON object');
  const keys = Object.keys(value).sort().join(',');
  if (keys !== 'body,headers,method,url') throw bad('must hold exactly "method", "url", "headers" and "body"');
  const { method, url, headers, body } = value;
  if (method !== 'POST') throw bad('method must be POST');
  if (typeof url !== 'string' || url.length > MAX_URL_CHARS) throw bad(`url must be a string of at most ${MAX_URL_CHARS} characters`);
  if (typeof body !== 'string' || body.length > 1024) throw bad('body must be a short string');
  if (!isObject(headers) || !Object.values(headers).every((v) => typeof v === 'string')) throw bad('headers must be an object of strings');
  return { method, url, headers: headers as Record<string, string>, body };
}

/** Checks names and values; returns the headers as a fresh object holding only allowed names. */
function checkHeaders(input: Readonly<Record<string, string>>): CheckedHeaders {
  const bad = (text: string) => new AttestationError('invalid_request', text);
  const entries = Object.entries(input);
  if (entries.length > MAX_HEADERS) throw bad(`the signed request has more than ${MAX_HEADERS} headers`);
  const out: Record<string, string> = {};
  for (const [name, value] of entries) {
    if (!LOWER_HEADER_NAME.test(name)) throw bad(`the header name ${shown(name)} is not a lower-case header name`);
    if (name !== 'authorization' && !ALLOWED_HEADERS.has(name))
      throw bad(`the header ${name} is not one crosscred forwards to Tencent STS (allowed: authorization, ${[...ALLOWED_HEADERS].join(', ')})`);
    if (value.length > MAX_HEADER_VALUE_CHARS || !PRINTABLE_ASCII.test(value))
      throw bad(`the header ${name} is longer than ${MAX_HEADER_VALUE_CHARS} characters or not printable ASCII`);
    out[name] = value;
  }
  const authorization = out['authorization'];
  const host = out['host'];
  if (authorization === undefined) throw bad('the signed request has no authorization header');
  if (host === undefined) throw bad('the signed request has no host header');
  return { ...out, authorization, host };
}

interface StsIdentity {
  readonly uin: string;
  readonly roleId: string;
  readonly attributes: Readonly<Record<string, string>>;
}

function parseIdentity(response: Record<string, unknown>, stsHost: string): StsIdentity {
  const grant = (text: string) => new AttestationError('invalid_grant', text);
  const type = response['Type'];
  if (type !== 'CAMRole') {
    const what = typeof type === 'string' ? shown(type) : 'no Type';
    throw grant(`Tencent STS says the signing key belongs to ${what}, not a CAMRole: only CAM role (assumed-role) credentials are accepted`);
  }
  const arn = response['Arn'];
  const match = typeof arn === 'string' ? ASSUMED_ROLE_ARN.exec(arn) : null;
  if (!match) throw grant('Tencent STS answered an Arn that is not "qcs::sts:<uin>:assumed-role/<RoleId>"');
  const [, uin, roleId, sessionName] = match as unknown as [string, string, string, string | undefined];
  const accountId = response['AccountId'];
  if (accountId !== undefined && String(accountId) !== uin)
    throw grant(`Tencent STS answered AccountId ${shown(String(accountId))}, which is not the account of its Arn (${uin})`);
  // Attribute names as the Alibaba attestors write them (kebab-case), for session-tag rules.
  const attributes: Record<string, string> = { arn: arn as string, 'sts-endpoint': stsHost };
  for (const [field, name] of [
    ['UserId', 'user-id'],
    ['PrincipalId', 'principal-id'],
  ] as const) {
    const v = response[field];
    const text = typeof v === 'number' && Number.isSafeInteger(v) ? String(v) : v;
    if (typeof text === 'string' && SAFE_ATTRIBUTE.test(text)) attributes[name] = text;
  }
  // A role's UserId is `<RoleId>:<RoleSessionName>` (research §4.4). What a CVM role's session is
  // named is unconfirmed, so no instance id is derived from it.
  const session = sessionName ?? (attributes['user-id']?.startsWith(`${roleId}:`) ? attributes['user-id'].slice(roleId.length + 1) : undefined);
  if (session && SAFE_ATTRIBUTE.test(session)) attributes['session-name'] = session;
  return { uin, roleId, attributes };
}

function parseUrl(raw: string): URL | undefined {
  try {
    return new URL(raw);
  } catch {
    return undefined;
  }
}

/** `scheme://host[:port]/`, the only form endpoints are compared and requested in. */
function originOf(url: URL): string {
  return `${url.protocol}//${url.host}/`;
}

function isLoopback(hostname: string): boolean {
  const bare = hostname.replace(/^\[|\]$/g, '');
  if (bare === 'localhost' || bare === '::1') return true;
  return isIP(bare) === 4 && bare.startsWith('127.');
}

/** Caller-supplied text made safe for an error message: printable ASCII, at most 80 characters, quoted. */
function shown(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?');
  return JSON.stringify(clean.length > 80 ? `${clean.slice(0, 79)}…` : clean);
}
