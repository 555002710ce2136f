import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { Agent, type Dispatcher, request } from 'undici';
import { CrosscredError } from '../../core/errors.js';
import { BINDING_HEADERS, type SignedRequestAttestation, SUBJECT_TOKEN_TYPES } from '../../protocol/issuer-token-exchange.js';
import { isObject, parseJson, readBoundedBody } from '../../util/bounded-body.js';
import { type AttestationContext, AttestationError, type AttestedIdentity, type Attestor } from '../attestor.js';

/**
 * Verifies an Alibaba RAM-role attestation: a GetCallerIdentity request the instance signed
 * (ACS3-HMAC-SHA256) with its RAM-role credentials and did not send. This issuer checks its
 * shape, sends it itself to an official STS host, and trusts the identity STS answers with
 * (docs/research/vm-attestation.md §3).
 *
 * What makes that safe:
 * - the request can only go to Alibaba STS: `https://sts.aliyuncs.com/`,
 *   `https://sts[-vpc].<region>.aliyuncs.com/`, or an endpoint the operator configured exactly;
 *   nothing else (no other host, port, path, query or user info; no redirect is followed), so a
 *   caller can neither make this issuer talk to another server (SSRF) nor answer for STS;
 * - it must be bound to this issuer: the `x-acs-crosscred-audience` header names this issuer's
 *   URL and is covered by the signature (listed in SignedHeaders, GHSA-wq26-3j2m-4hvv), so a
 *   request captured by, or made for, another relying party is refused here;
 * - it must be fresh (`x-acs-date`), and only the headers the signature covers are forwarded.
 *
 * The identity must be an assumed role (`acs:ram::<account>:assumed-role/<role>/<session>`). ECS
 * names an instance role's session `vm-ram-<instance-id>`; that session name is the only source
 * of the instance id here, and any principal allowed to assume the role could choose it, so the
 * identity's `instanceId` carries the attribute `instance-id-source: session-name`.
 */

export interface AlibabaRamRoleAttestorOptions {
  /**
   * Further STS endpoints, as URLs (`https://host[:port]/`), e.g. a private-line endpoint. A request
   * must name one of them exactly. Plain `http` is accepted only for a loopback address (tests).
   */
  readonly extraStsEndpoints?: readonly string[];
  /** PEM CA certificates to trust for STS instead of Node's bundled roots. */
  readonly caBundle?: string;
  /** Bound on the call to STS (connect and whole answer), in ms. Default 5000. */
  readonly timeoutMs?: number;
  /** How old (by its x-acs-date) a signed request may be, in seconds. Default 300. */
  readonly maxAgeSeconds?: number;
  /** How far in the future its x-acs-date may be (clock skew), in seconds. Default 30. */
  readonly futureSkewSeconds?: number;
}

const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_MAX_AGE_SECONDS = 300;
const DEFAULT_FUTURE_SKEW_SECONDS = 30;
/** Alibaba's gateway remembers nonces for about 31 minutes (§3.4); a longer window would outlive that. */
const MAX_CONFIGURABLE_AGE_SECONDS = 1800;

/** A signed GetCallerIdentity is about 1.5 KiB with its STS token; 32 KiB is generous. */
const MAX_SUBJECT_TOKEN_CHARS = 32 * 1024;
const MAX_HEADERS = 32;
const MAX_HEADER_VALUE_CHARS = 8 * 1024;
/** A GetCallerIdentity answer is a few hundred bytes. */
const MAX_ANSWER_BYTES = 16 * 1024;

const ALGORITHM = 'ACS3-HMAC-SHA256';
const ACTION = 'GetCallerIdentity';
const VERSION = '2015-04-01';
const EMPTY_SHA256 = createHash('sha256').update('').digest('hex');
/** Headers the signature must cover for the request to mean what this issuer checks. */
const REQUIRED_SIGNED = [
  'host',
  'x-acs-action',
  'x-acs-version',
  'x-acs-date',
  'x-acs-signature-nonce',
  'x-acs-content-sha256',
  BINDING_HEADERS.alibaba,
] as const;

/**
 * `sts[-vpc].<region-id>.aliyuncs.com`. The middle label must look like a region id (cn-hangzhou,
 * ap-southeast-1, cn-shanghai-finance-1…), not any label: `sts.oss-cn-hangzhou.aliyuncs.com` is
 * an OSS bucket named `sts`, which anyone could own.
 */
const OFFICIAL_STS_HOST = /^sts(-vpc)?\.(cn|ap|us|eu|me|na|sa|af|rus)(-[a-z0-9]+)+\.aliyuncs\.com$/;
const GLOBAL_STS_HOST = 'sts.aliyuncs.com';
const HEADER_NAME = /^[a-z0-9-]{1,64}$/;
/** Visible ASCII and spaces: nothing that could split or fold a header. */
const HEADER_VALUE = /^[\x20-\x7e]*$/;
const AUTHORIZATION = /^ACS3-HMAC-SHA256 Credential=([^,\s]+),SignedHeaders=([a-z0-9;-]+),Signature=([0-9a-fA-F]{64})$/;
const ACS_DATE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z$/;
const ASSUMED_ROLE_ARN = /^acs:ram::([0-9]{1,32}):assumed-role\/([A-Za-z0-9._-]{1,64})\/([A-Za-z0-9._@=,+-]{1,64})$/;
const INSTANCE_SESSION = /^vm-ram-(i-[a-z0-9]{1,64})$/;
const ID_VALUE = /^[\x21-\x7e]{1,128}$/;
/** STS error codes are identifiers like `InvalidSecurityToken.Expired`. */
const STS_ERROR_CODE = /^[A-Za-z0-9._-]{1,100}$/;

export class AlibabaRamRoleAttestor implements Attestor {
  readonly subjectTokenType = SUBJECT_TOKEN_TYPES.alibabaRamRole;
  /** Normalised `href`s of the operator's extra endpoints. */
  readonly #extraEndpoints: ReadonlySet<string>;
  readonly #timeoutMs: number;
  readonly #maxAgeMs: number;
  readonly #futureSkewMs: number;
  readonly #dispatcher: Dispatcher;

  constructor(options: AlibabaRamRoleAttestorOptions = {}) {
    const invalid = (text: string) => new CrosscredError('CONFIG_INVALID', `Alibaba RAM role attestor: ${text}`);
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const maxAge = options.maxAgeSeconds ?? DEFAULT_MAX_AGE_SECONDS;
    const skew = options.futureSkewSeconds ?? DEFAULT_FUTURE_SKEW_SECONDS;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw invalid(`timeoutMs must be a positive number of milliseconds, not ${timeoutMs}`);
    if (!Number.isInteger(maxAge) || maxAge < 1 || maxAge > MAX_CONFIGURABLE_AGE_SECONDS) {
      throw invalid(`maxAgeSeconds must be a whole number from 1 to ${MAX_CONFIGURABLE_AGE_SECONDS}, not ${maxAge}`);
    }
    if (!Number.isInteger(skew) || skew < 0 || skew > MAX_CONFIGURABLE_AGE_SECONDS) {
      throw invalid(`futureSkewSeconds must be a whole number from 0 to ${MAX_CONFIGURABLE_AGE_SECONDS}, not ${skew}`);
    }
    const extra = new Set<string>();
    for (const endpoint of options.extraStsEndpoints ?? []) {
      let url: URL;
      try {
        url = new URL(endpoint);
      } catch {
        throw invalid(`extra STS endpoint ${JSON.stringify(endpoint)} is not a URL`);
      }
      const loopback = isLoopback(url.hostname);
      if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback))
        throw invalid(`extra STS endpoint ${endpoint} must be https (plain http only to a loopback address)`);
      if (url.username || url.password || url.search || url.hash || url.pathname !== '/')
        throw invalid(`extra STS endpoint ${endpoint} must be a bare origin with the path / (no user, query or fragment)`);
      extra.add(url.href);
    }
    this.#extraEndpoints = extra;
    this.#timeoutMs = timeoutMs;
    this.#maxAgeMs = maxAge * 1000;
    this.#futureSkewMs = skew * 1000;
    const tls = { ...(options.caBundle ? { ca: options.caBundle } : {}), timeout: timeoutMs };
    // undici's request() never follows redirects (no redirect interceptor is installed).
    this.#dispatcher = new Agent({ connect: tls, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connections: 8 });
  }

  #closed: Promise<void> | undefined;

  /** Closes the connections to STS (the issuer calls it on stop and after a reload). Safe to call more than once. */
  close(): Promise<void> {
    this.#closed ??= this.#dispatcher.close();
    return this.#closed;
  }

  async attest(subjectToken: string, context: AttestationContext): Promise<AttestedIdentity> {
    const attestation = decodeAttestation(subjectToken);
    const target = this.#checkTarget(attestation);
    const headers = attestation.headers;
    const authorization = parseAuthorization(headers['authorization']);
    const signedHeaders = authorization.signedHeaders;
    for (const name of REQUIRED_SIGNED) {
      if (!signedHeaders.includes(name)) {
        throw new AttestationError(
          'invalid_grant',
          `the signature does not cover the ${name} header (SignedHeaders must list it), so the request is not bound to what it claims`,
        );
      }
    }
    for (const name of signedHeaders) {
      if (headers[name] === undefined)
        throw new AttestationError('invalid_request', `the signature covers the ${name} header, which the request does not carry`);
    }
    if (headers['x-acs-security-token'] !== undefined && !signedHeaders.includes('x-acs-security-token')) {
      throw new AttestationError('invalid_grant', 'the request carries an STS security token the signature does not cover');
    }
    if (headers['host'] !== target.host) {
      throw new AttestationError('invalid_grant', `the signed host header does not name the STS host the request is addressed to (${target.host})`);
    }
    if (headers['x-acs-action'] !== ACTION) {
      throw new AttestationError(
        'invalid_grant',
        `the signed request is the action ${JSON.stringify(printable(headers['x-acs-action'] ?? ''))}, not ${ACTION}`,
      );
    }
    if (headers['x-acs-version'] !== VERSION) {
      throw new AttestationError(
        'invalid_grant',
        `the signed request is for API version ${JSON.stringify(printable(headers['x-acs-version'] ?? ''))}, not ${VERSION}`,
      );
    }
    if (headers[BINDING_HEADERS.alibaba] !== context.issuerUrl) {
      throw new AttestationError(
        'invalid_grant',
        `the signed request is bound to ${JSON.stringify(printable(headers[BINDING_HEADERS.alibaba] ?? ''))} (${BINDING_HEADERS.alibaba}), not to this issuer ${context.issuerUrl}`,
      );
    }
    if (attestation.body !== '' || headers['x-acs-content-sha256'] !== EMPTY_SHA256) {
      throw new AttestationError('invalid_grant', 'GetCallerIdentity is signed with an empty body; this request has a body or another body hash');
    }
    const signedAtWall = this.#checkDate(headers['x-acs-date'] ?? '', context.nowWall);

    // Only what the signature covers (host included) and the signature itself go to STS.
    const forwarded: Record<string, string> = { authorization: headers['authorization']! };
    for (const name of signedHeaders) forwarded[name] = headers[name]!;
    const answer = await this.#callSts(target.href, forwarded, context.signal);
    const identity = identityFromAnswer(answer);
    return {
      kind: SUBJECT_TOKEN_TYPES.alibabaRamRole,
      cloud: 'alibaba',
      ...identity,
      attributes: { ...identity.attributes, 'sts-endpoint': target.hostname },
      // The HMAC over the canonical request (which includes the nonce): the same signed request
      // presented twice has the same one, whatever else the caller changes.
      replayKey: `alibaba-ram-role:${createHash('sha256').update(authorization.signature.toLowerCase()).digest('base64url')}`,
      replayUntilWall: signedAtWall + this.#maxAgeMs,
    };
  }

  /** The request's URL, if it is an official STS endpoint or a configured one; refused otherwise. */
  #checkTarget(attestation: SignedRequestAttestation): URL {
    if (attestation.method !== 'POST') throw new AttestationError('invalid_grant', 'GetCallerIdentity is signed as POST; this request uses another method');
    let url: URL;
    try {
      url = new URL(attestation.url);
    } catch {
      throw new AttestationError('invalid_request', "the signed request's url is not a URL");
    }
    if (this.#extraEndpoints.has(url.href) && !url.username && !url.password) return url;
    const official =
      url.protocol === 'https:' &&
      url.port === '' &&
      !url.username &&
      !url.password &&
      url.pathname === '/' &&
      url.search === '' &&
      url.hash === '' &&
      (url.hostname === GLOBAL_STS_HOST || OFFICIAL_STS_HOST.test(url.hostname));
    if (!official) {
      throw new AttestationError(
        'invalid_grant',
        `the signed request is addressed to ${describeUrl(url)}, which is not an Alibaba STS endpoint (https://sts.aliyuncs.com/, https://sts[-vpc].<region>.aliyuncs.com/) or a configured one`,
      );
    }
    return url;
  }

  /** The request's signing time (epoch ms), if inside the window. */
  #checkDate(value: string, nowWall: number): number {
    const match = ACS_DATE.exec(value);
    const signedAt = match ? Date.UTC(+match[1]!, +match[2]! - 1, +match[3]!, +match[4]!, +match[5]!, +match[6]!) : Number.NaN;
    if (!Number.isFinite(signedAt) || new Date(signedAt).toISOString().replace('.000Z', 'Z') !== value) {
      throw new AttestationError('invalid_request', 'x-acs-date is not a UTC timestamp like 2026-01-02T03:04:05Z');
    }
    const age = nowWall - signedAt;
    if (age > this.#maxAgeMs) {
      throw new AttestationError(
        'invalid_grant',
        `the request was signed ${Math.round(age / 1000)} s ago; at most ${this.#maxAgeMs / 1000} s are accepted (sign a fresh one; check the instance's clock)`,
      );
    }
    if (-age > this.#futureSkewMs) {
      throw new AttestationError(
        'invalid_grant',
        `the request is dated ${Math.round(-age / 1000)} s in the future; at most ${this.#futureSkewMs / 1000} s of clock skew are accepted (check the instance's and the issuer's clocks)`,
      );
    }
    return signedAt;
  }

  async #callSts(url: string, headers: Record<string, string>, signal: AbortSignal): Promise<unknown> {
    const host = new URL(url).host;
    const deadline = AbortSignal.timeout(this.#timeoutMs);
    let statusCode: number;
    let text: string | undefined;
    try {
      const res = await request(url, { method: 'POST', headers, body: '', dispatcher: this.#dispatcher, signal: AbortSignal.any([signal, deadline]) });
      statusCode = res.statusCode;
      text = await readBoundedBody(res.body, MAX_ANSWER_BYTES);
    } catch (err) {
      const why = signal.aborted ? "the token request's deadline passed" : deadline.aborted ? `no answer within ${this.#timeoutMs} ms` : errorCode(err);
      throw new AttestationError('temporarily_unavailable', `Alibaba STS (${host}) could not be asked to confirm the identity: ${why}`);
    }
    if (text === undefined)
      throw new AttestationError('temporarily_unavailable', `Alibaba STS (${host}) answered HTTP ${statusCode} with more than ${MAX_ANSWER_BYTES} bytes`);
    const answer = parseJson(text);
    if (statusCode === 200) return answer;
    const code = isObject(answer) && typeof answer['Code'] === 'string' && STS_ERROR_CODE.test(answer['Code']) ? answer['Code'] : undefined;
    const what = `Alibaba STS (${host}) answered HTTP ${statusCode}${code ? ` ${code}` : ''}`;
    if (statusCode >= 400 && statusCode < 500) {
      throw new AttestationError(
        'invalid_grant',
        `${what}: it does not confirm the signed request (expired or unknown credentials, a bad signature, or a nonce already used)`,
      );
    }
    throw new AttestationError('temporarily_unavailable', `${what}; try again later`);
  }
}

function decodeAttestation(subjectToken: string): SignedRequestAttestation {
  const malformed = (why: string) => new AttestationError('invalid_request', `the subject token is not a signed Alibaba GetCallerIdentity request: ${why}`);
  if (subjectToken.length > MAX_SUBJECT_TOKEN_CHARS) throw malformed(`it is longer than ${MAX_SUBJECT_TOKEN_CHARS} characters`);
  if (!/^[A-Za-z0-9_-]+$/.test(subjectToken)) throw malformed('it is not base64url');
  const value = parseJson(Buffer.from(subjectToken, 'base64url').toString('utf8'));
  if (!isObject(value)) throw malformed('it does not decode to a JSON object');
  const { method, url, headers, body } = value;
  if (typeof method !== 'string' || typeof url !== 'string' || typeof body !== 'string' || !isObject(headers)) {
    throw malformed('it needs "method", "url" and "body" strings and a "headers" object');
  }
  const entries = Object.entries(headers);
  if (entries.length > MAX_HEADERS) throw malformed(`it has more than ${MAX_HEADERS} headers`);
  const clean: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [name, headerValue] of entries) {
    if (!HEADER_NAME.test(name)) throw malformed(`header name ${JSON.stringify(printable(name))} is not a lower-case token`);
    if (typeof headerValue !== 'string' || headerValue.length > MAX_HEADER_VALUE_CHARS || !HEADER_VALUE.test(headerValue))
      throw malformed(`header ${name} is not a short printable string`);
    clean[name] = headerValue;
  }
  return { method: method as 'POST', url, headers: clean, body };
}

function parseAuthorization(value: string | undefined): { signedHeaders: string[]; signature: string } {
  const match = value === undefined ? null : AUTHORIZATION.exec(value);
  if (!match) {
    throw new AttestationError('invalid_request', `the request has no ${ALGORITHM} Authorization header (Credential=…,SignedHeaders=…,Signature=<64 hex>)`);
  }
  const signedHeaders = match[2]!.split(';');
  if (signedHeaders.some((h) => h === '') || new Set(signedHeaders).size !== signedHeaders.length) {
    throw new AttestationError('invalid_request', 'the Authorization header lists an empty or repeated signed header');
  }
  return { signedHeaders, signature: match[3]! };
}

function identityFromAnswer(answer: unknown): Pick<AttestedIdentity, 'accountId' | 'instanceId' | 'roleName' | 'attributes'> {
  if (!isObject(answer))
    throw new AttestationError('temporarily_unavailable', 'Alibaba STS answered 200 with something that is not a GetCallerIdentity JSON object');
  const identityType = answer['IdentityType'];
  if (identityType !== 'AssumedRoleUser') {
    throw new AttestationError(
      'invalid_grant',
      `the signed request was made by ${typeof identityType === 'string' ? `an identity of type ${printable(identityType)}` : 'an identity of unknown type'}; only RAM-role (AssumedRoleUser) credentials are accepted`,
    );
  }
  const arn = answer['Arn'];
  const match = typeof arn === 'string' ? ASSUMED_ROLE_ARN.exec(arn) : null;
  if (!match) throw new AttestationError('invalid_grant', 'Alibaba STS answered with an ARN that is not acs:ram::<account>:assumed-role/<role>/<session>');
  const [, accountId, roleName, sessionName] = match as unknown as [string, string, string, string];
  if (answer['AccountId'] !== undefined && answer['AccountId'] !== accountId) {
    throw new AttestationError('invalid_grant', 'Alibaba STS answered with an AccountId that differs from the account in the ARN');
  }
  const attributes: Record<string, string> = { 'session-name': sessionName };
  for (const [field, name] of [
    ['RoleId', 'role-id'],
    ['PrincipalId', 'principal-id'],
  ] as const) {
    const value = answer[field];
    if (typeof value === 'string' && ID_VALUE.test(value)) attributes[name] = value;
  }
  const instance = INSTANCE_SESSION.exec(sessionName)?.[1];
  if (instance === undefined) return { accountId, roleName, attributes };
  // Derived from the session name only: see the class comment.
  return { accountId, roleName, instanceId: instance, attributes: { ...attributes, 'instance-id-source': 'session-name' } };
}

function isLoopback(hostname: string): boolean {
  const bare = hostname.replace(/^\[|\]$/g, '');
  if (isIP(bare) === 4) return bare.startsWith('127.');
  return bare === '::1';
}

/** Scheme, host and port of a refused URL; never its user info, path or query. */
function describeUrl(url: URL): string {
  return printable(
    `${url.protocol}//${url.host}${url.username || url.password ? ' (with user info)' : ''}${url.pathname !== '/' || url.search || url.hash ? ' (with a path, query or fragment)' : ''}`,
  );
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : ((err as Error | null)?.name ?? 'Error');
}

function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 100);
}
