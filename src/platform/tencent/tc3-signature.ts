import { createHash, createHmac } from 'node:crypto';

/**
 * Tencent Cloud API 3.0 request signing, TC3-HMAC-SHA256, written from Tencent's "Signature v3"
 * page, because the official Node signer (`tencentcloud-sdk-nodejs-common` `Sign.sign3`) always
 * signs exactly `content-type;host` and cannot cover the header that binds a request to this
 * issuer (docs/research/vm-attestation.md §4.3, §4.5). With only `content-type;host` signed, the
 * output is byte for byte `Sign.sign3`'s (test/unit/tc3-signature.test.ts checks that on random
 * inputs). The same file parses an `Authorization` value for the issuer's checks.
 *
 * The rules it follows, from the documentation:
 * - CanonicalRequest = METHOD \n path \n query \n CanonicalHeaders \n SignedHeaders \n hex(sha256(body)).
 * - CanonicalHeaders: every signed header as `name:value\n`, name AND value lower-cased and trimmed,
 *   sorted by name (ASCII). Tencent's own examples sign `x-tc-action:describeinstances`, so the
 *   server lower-cases values too. `content-type` and `host` are mandatory.
 * - StringToSign = `TC3-HMAC-SHA256` \n timestamp \n `<YYYY-MM-DD>/<service>/tc3_request` \n hex(sha256(CanonicalRequest)),
 *   the date being the timestamp's UTC date.
 * - Key: HMAC-SHA256 chain `"TC3" + secretKey` → date → service → `tc3_request`; the signature is the hex HMAC of StringToSign.
 */

export const TC3_ALGORITHM = 'TC3-HMAC-SHA256';
const SCOPE_TERMINATOR = 'tc3_request';
/** The two headers Tencent requires every TC3 signature to cover. */
export const TC3_MANDATORY_SIGNED_HEADERS = ['content-type', 'host'] as const;

/** A header name as it may appear in SignedHeaders: a lower-case HTTP token. */
const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;
/** Values are signed lower-cased; only printable ASCII keeps that unambiguous (no Unicode case folding). */
const HEADER_VALUE = /^[\x20-\x7e]*$/;
/** Tencent SecretIds are `AKID…`; nothing that could break the `/`-separated scope is accepted. */
const SECRET_ID = /^[A-Za-z0-9_-]{1,128}$/;
const SERVICE = /^[a-z0-9-]{1,64}$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const SIGNATURE = /^[0-9a-f]{64}$/;
/** 9999-12-31T23:59:59Z: beyond it the date is no longer `YYYY-MM-DD`. */
const MAX_TIMESTAMP = 253_402_300_799;

export interface Tc3Request {
  readonly method: string;
  /** The request URL. Only its path and query are signed; the host is the `host` header's value. */
  readonly url: string;
  /** Lower-case header names to the values as sent; must hold every header named in signedHeaders. */
  readonly headers: Readonly<Record<string, string>>;
  /** The body exactly as sent (a string is signed as its UTF-8 bytes). */
  readonly body: string | Uint8Array;
}

export interface Tc3SigningKey {
  readonly secretId: string;
  readonly secretKey: string;
}

export interface Tc3SignOptions {
  /** The service of the credential scope, e.g. `sts` (the SDK takes the endpoint's first label). */
  readonly service: string;
  /** Unix seconds, the same value as sent in X-TC-Timestamp. */
  readonly timestamp: number;
  /** Headers to sign, lower-case; `content-type` and `host` are added when missing. Order does not matter. */
  readonly signedHeaders: readonly string[];
}

/** The parts of a TC3 `Authorization` value. */
export interface Tc3Authorization {
  readonly secretId: string;
  /** The credential scope's date, `YYYY-MM-DD`. */
  readonly date: string;
  readonly service: string;
  /** Header names in the order the value lists them (lower-case). */
  readonly signedHeaders: readonly string[];
  /** 64 lower-case hex digits. */
  readonly signature: string;
}

/** An Authorization value or a request that TC3 cannot express. The message holds no secret. */
export class Tc3FormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Tc3FormatError';
  }
}

/** The UTC date of a Unix timestamp as TC3 writes it in the credential scope. */
export function tc3Date(timestamp: number): string {
  checkTimestamp(timestamp);
  return new Date(timestamp * 1000).toISOString().slice(0, 10);
}

/** Signs `request` and returns the value of its `Authorization` header. */
export function signTc3(request: Tc3Request, key: Tc3SigningKey, options: Tc3SignOptions): string {
  if (!SECRET_ID.test(key.secretId)) throw new Tc3FormatError('the SecretId is not a Tencent SecretId (letters, digits, _ and -)');
  if (!SERVICE.test(options.service)) throw new Tc3FormatError(`the service ${JSON.stringify(options.service.slice(0, 64))} is not a lower-case label`);
  const signedHeaders = [...new Set([...TC3_MANDATORY_SIGNED_HEADERS, ...options.signedHeaders])].sort();
  const date = tc3Date(options.timestamp);
  const canonical = tc3CanonicalRequest(request, signedHeaders);
  const toSign = tc3StringToSign(options.timestamp, `${date}/${options.service}/${SCOPE_TERMINATOR}`, canonical);
  const signature = hmac(tc3SigningKey(key.secretKey, date, options.service), toSign).toString('hex');
  return `${TC3_ALGORITHM} Credential=${key.secretId}/${date}/${options.service}/${SCOPE_TERMINATOR}, SignedHeaders=${signedHeaders.join(';')}, Signature=${signature}`;
}

/**
 * The canonical request for `signedHeaders`, in the order given (TC3 wants them sorted; signTc3
 * sorts). Throws Tc3FormatError when a named header is missing or cannot be signed unambiguously.
 */
export function tc3CanonicalRequest(request: Tc3Request, signedHeaders: readonly string[]): string {
  let url: URL;
  try {
    url = new URL(request.url);
  } catch {
    throw new Tc3FormatError('the request URL is not a URL');
  }
  let headers = '';
  for (const name of signedHeaders) {
    if (!HEADER_NAME.test(name)) throw new Tc3FormatError(`${JSON.stringify(name.slice(0, 64))} is not a lower-case header name`);
    const value = Object.hasOwn(request.headers, name) ? request.headers[name] : undefined;
    if (value === undefined) throw new Tc3FormatError(`the signed header ${name} is not in the request`);
    if (!HEADER_VALUE.test(value)) throw new Tc3FormatError(`the header ${name} holds characters other than printable ASCII`);
    headers += `${name}:${value.trim().toLowerCase()}\n`;
  }
  const body = typeof request.body === 'string' ? Buffer.from(request.body, 'utf8') : request.body;
  return [request.method, url.pathname, url.search.slice(1), headers, signedHeaders.join(';'), sha256Hex(body)].join('\n');
}

export function tc3StringToSign(timestamp: number, scope: string, canonicalRequest: string): string {
  return [TC3_ALGORITHM, String(timestamp), scope, sha256Hex(Buffer.from(canonicalRequest, 'utf8'))].join('\n');
}

function tc3SigningKey(secretKey: string, date: string, service: string): Buffer {
  const kDate = hmac(Buffer.from(`TC3${secretKey}`, 'utf8'), date);
  const kService = hmac(kDate, service);
  return hmac(kService, SCOPE_TERMINATOR);
}

/**
 * Parses `TC3-HMAC-SHA256 Credential=<id>/<date>/<service>/tc3_request, SignedHeaders=<a;b>, Signature=<hex>`,
 * the form every Tencent SDK writes (the three parts in this order, separated by a comma and optional spaces).
 * It checks form only: that SignedHeaders are lower-case tokens, sorted, without duplicates, and
 * include content-type and host. Throws Tc3FormatError naming what is wrong, never echoing the signature.
 */
export function parseTc3Authorization(value: string): Tc3Authorization {
  if (value.length > 4096) throw new Tc3FormatError('the Authorization value is longer than 4096 characters');
  const prefix = `${TC3_ALGORITHM} `;
  if (!value.startsWith(prefix)) throw new Tc3FormatError(`the Authorization value does not start with ${TC3_ALGORITHM}`);
  const parts = value
    .slice(prefix.length)
    .trim()
    .split(/\s*,\s*/);
  const [credential, signed, signature] = parts;
  if (parts.length !== 3 || !credential?.startsWith('Credential=') || !signed?.startsWith('SignedHeaders=') || !signature?.startsWith('Signature=')) {
    throw new Tc3FormatError('the Authorization value is not "Credential=…, SignedHeaders=…, Signature=…"');
  }
  const scope = credential.slice('Credential='.length).split('/');
  const [secretId, date, service, terminator] = scope;
  if (
    scope.length !== 4 ||
    secretId === undefined ||
    !SECRET_ID.test(secretId) ||
    date === undefined ||
    !DATE.test(date) ||
    service === undefined ||
    !SERVICE.test(service) ||
    terminator !== SCOPE_TERMINATOR
  ) {
    throw new Tc3FormatError('the Authorization Credential is not "<SecretId>/<YYYY-MM-DD>/<service>/tc3_request"');
  }
  const signedHeaders = signed.slice('SignedHeaders='.length).split(';');
  for (const [i, name] of signedHeaders.entries()) {
    if (!HEADER_NAME.test(name)) throw new Tc3FormatError(`the SignedHeaders entry ${JSON.stringify(name.slice(0, 64))} is not a lower-case header name`);
    if (i > 0 && signedHeaders[i - 1]! >= name) throw new Tc3FormatError('the SignedHeaders are not sorted, or repeat a name');
  }
  for (const name of TC3_MANDATORY_SIGNED_HEADERS) {
    if (!signedHeaders.includes(name)) throw new Tc3FormatError(`the SignedHeaders do not include ${name}, which TC3 requires`);
  }
  const hex = signature.slice('Signature='.length);
  if (!SIGNATURE.test(hex)) throw new Tc3FormatError('the Authorization Signature is not 64 lower-case hex digits');
  return { secretId, date, service, signedHeaders, signature: hex };
}

function checkTimestamp(timestamp: number): void {
  if (!Number.isSafeInteger(timestamp) || timestamp < 0 || timestamp > MAX_TIMESTAMP) {
    throw new Tc3FormatError(`the timestamp ${timestamp} is not a Unix time in seconds`);
  }
}

function hmac(key: Buffer, message: string): Buffer {
  return createHmac('sha256', key).update(message, 'utf8').digest();
}

function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Tencent STS GetCallerIdentity as both sides use it: the tencent-cvm source signs it, the
 * issuer's attestor checks and replays it (docs/research/vm-attestation.md §4.2–§4.4).
 */
export const TENCENT_GET_CALLER_IDENTITY = {
  action: 'GetCallerIdentity',
  version: '2018-08-13',
  /** The credential scope's service: the SDK takes the endpoint's first label, `sts` for every STS host. */
  service: 'sts',
  /** GetCallerIdentity has no parameters: the body is an empty JSON object, as the SDK sends it. */
  body: '{}',
  contentType: 'application/json',
  defaultEndpoint: 'https://sts.tencentcloudapi.com/',
} as const;
