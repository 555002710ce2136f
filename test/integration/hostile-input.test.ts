import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { METHODS } from 'node:http';
import { join } from 'node:path';
import { fromHttp } from '@aws-sdk/credential-providers';
import fc from 'fast-check';
import { request, WebSocket } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCOUNT, type Chain, type DaemonProcess, roleArn, spawnDaemon, startChain, waitUntilReady } from '../support/chain.js';
import { headerOf, type RawExchange, type RawResponse, sendRaw } from '../support/raw-http.js';

/**
 * Hostile input (issue 6, item 3): property-based tests and a fuzz run over the HTTP surface of a
 * real `crosscred serve` process.
 *
 * The daemon serves two roles: `app` on two credential listeners (A, the one under test, and B,
 * whose session tokens must be worthless on A) and `other`, reachable only as
 * `/v1/credentials/other` with the container secret. Requests are generated as raw bytes and sent
 * over bare sockets (test/support/raw-http.ts), so nothing an HTTP client would refuse or tidy up
 * is out of reach: lower-case methods, control bytes and raw UTF-8 in paths, duplicated and broken
 * header lines, bodies hiding a second request.
 *
 * The oracle (`predict`) is a model of the contract docs/endpoints.md documents ("Credential listeners" and
 * the matching rules after its table), plus RFC 9110/9112 where docs/endpoints.md says "malformed HTTP".
 * It reads only the request and what the test knows (addresses, live tokens, the secret); it
 * shares no code with src/. Every answer must have a status the model allows, and:
 * - a 200 carrying credentials is exactly the entitled role's: IMDS on A only ever serves `app`,
 *   `/v1/credentials/other` only with the secret; no answer holds credentials of a role not asked
 *   for, or any credentials without valid auth;
 * - nothing the daemon sends back contains the marker string planted in paths and headers;
 * - error bodies are one line of text on IMDS paths and `{"Code","Message"}` under `/v1/`; 405
 *   carries `Allow`; a request with a body gets its answer and then the connection is closed.
 * Where the documents allow more than one answer, the model returns all of them and the comment
 * says why. Answers Node's HTTP parser gives before routing (a method it does not know, an
 * unexpected Expect) are listed in KNOWN_ISSUES: they override the routing rules, and are counted.
 * A departure found later goes there too, with a test of its own marked `it.fails` until fixed.
 *
 * Runs are seeded: the seed is printed at the end of the run and in every failure message; set
 * CROSSCRED_FUZZ_SEED to it to replay the run (the same requests, with that run's tokens, secret
 * and ports). fast-check also prints the shrunk counterexample of a failed property.
 */

const SEED = Number(process.env['CROSSCRED_FUZZ_SEED'] ?? randomBytes(4).readUInt32BE(0) >>> 1);
/** Planted in paths, header names and values, bodies; must never come back. */
const MARKER = `zqMark${randomBytes(4).toString('hex')}`;
const REGION = 'us-east-1';
const ROLES = ['app', 'other'] as const;
type RoleName = (typeof ROLES)[number];
/** The role of both credential listeners (and of a bare `/v1/credentials`). */
const LISTENER_ROLE: RoleName = 'app';

/** docs/endpoints.md: role segment over 128 characters → 414; headers over 16 KiB → 431; bodies over 1 KiB → 413. */
const MAX_ROLE_SEGMENT = 128;
const MAX_HEADER_BYTES = 16 * 1024;
const MAX_BODY_BYTES = 1024;
/** IMDSv2's TTL range, docs/endpoints.md: `1…21600`. */
const MAX_TTL = 21_600;

// ---------------------------------------------------------------------------------------------
// Answers that come from Node's HTTP parser before the daemon sees the request. docs/endpoints.md lists
// them among the parser's answers; they are kept apart here because they override the routing
// rules (a method the parser does not know never reaches the 404/405 table) and, for an
// unexpected Expect, the rule that a connection that carried a body is closed.
// (The departures this file found first — header lines after the 1,000th dropped, a repeated Host
// answered from its first line, CONNECT left unanswered, a chunked body over 1 KiB or a final
// coding other than chunked accepted — were fixed in src/http/listener.ts and are now
// plain documented behaviour in the model below.)
// ---------------------------------------------------------------------------------------------
const KNOWN_ISSUES = {
  'unknown-method':
    'A method token that Node does not know (`get`, `Put`, `FOO`) is answered 400 by the parser (docs/endpoints.md: "a method Node\'s parser does not know → 400"), before the 404/405 routing rules.',
  expectation:
    'An Expect other than 100-continue is answered 417 by Node before the daemon sees the request (docs/endpoints.md), and the connection is kept open even when the request carried a body; the body is skipped, not parsed as a request.',
} as const;
type KnownIssue = keyof typeof KNOWN_ISSUES;

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/** A request as it goes on the wire; every string is latin1, one character per byte. */
interface HostileRequest {
  readonly method: string;
  readonly target: string;
  readonly version: string;
  /** Header lines without their CRLF (never containing CR or LF). */
  readonly lines: readonly string[];
  /** Bytes after the header section (framed by the lines, or stray when no line frames them). */
  readonly body: string;
}

function serialize(req: HostileRequest): Buffer {
  const head = `${req.method} ${req.target} ${req.version}\r\n${req.lines.map((l) => `${l}\r\n`).join('')}\r\n`;
  return Buffer.from(head + req.body, 'latin1');
}

/** A short, printable description of a request for failure messages. */
function describeRequest(req: HostileRequest): string {
  const clip = (s: string, n = 160) => (s.length > n ? `${s.slice(0, n)}…(${s.length} bytes)` : s);
  const lines =
    req.lines.length > 12
      ? [...req.lines.slice(0, 6).map((l) => clip(l)), `… ${req.lines.length - 12} more lines …`, ...req.lines.slice(-6).map((l) => clip(l))]
      : req.lines.map((l) => clip(l));
  return JSON.stringify({ method: req.method, target: clip(req.target, 300), version: req.version, lines, body: clip(req.body, 200) }, null, 1);
}

// ---------------------------------------------------------------------------------------------
// What the test knows about the daemon under test
// ---------------------------------------------------------------------------------------------

interface Credentials {
  readonly AccessKeyId: string;
  readonly SecretAccessKey: string;
  readonly Token: string;
}

interface World {
  /** The credential listener the request goes to. */
  readonly port: number;
  /** Session tokens issued by this listener and valid for the whole run. */
  readonly validTokens: ReadonlySet<string>;
  readonly secret: string;
  /** Every credential string of each role; any of them in an answer identifies the role. */
  readonly secretsOf: (role: RoleName) => readonly string[];
  readonly creds: Readonly<Record<RoleName, Credentials>>;
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/** What a successful (200) answer must hold. */
type Success =
  | { readonly kind: 'token'; readonly ttl: number }
  | { readonly kind: 'role-list' }
  | { readonly kind: 'region' }
  | { readonly kind: 'identity' }
  | { readonly kind: 'info' }
  | { readonly kind: 'imds-credentials'; readonly role: RoleName; readonly extended: boolean }
  | { readonly kind: 'container-credentials'; readonly role: RoleName };

interface Outcome {
  /** 'no-answer': the connection is closed without a response. */
  readonly status: number | 'no-answer';
  readonly success?: Success;
  /** For 405: the methods `Allow` must list. */
  readonly allow?: readonly string[];
}

interface Prediction {
  readonly documented: readonly Outcome[];
  /** Answers of the KNOWN_ISSUES that apply to this request. */
  readonly tolerated: readonly Outcome[];
  readonly issues: readonly KnownIssue[];
  /** docs/endpoints.md: a request with a body is answered and the connection closed. */
  readonly expectClose: boolean;
}

const error = (status: number, allow?: readonly string[]): Outcome => (allow ? { status, allow } : { status });

/** RFC 9110 §5.6.2 token: methods and header names. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 9110 §5.5: a field value holds no control character but HTAB. */
const CONTROL_IN_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;

interface Field {
  /** Lower-cased: field names are case-insensitive. */
  readonly name: string;
  /** Without the optional whitespace around it, which HTTP strips (RFC 9110 §5.5). */
  readonly value: string;
}

/** The request as an RFC 9112 parser reads it, with the errors that make it malformed. */
interface Parsed {
  readonly method: string;
  readonly target: string;
  readonly version: string;
  readonly fields: readonly Field[];
  readonly body: string;
  /** Statuses the request certainly gets from the parser (it is malformed). */
  readonly malformed: ReadonlySet<number>;
  /** Statuses it may get, where the RFCs leave the server a choice. */
  readonly questionable: ReadonlySet<number>;
  /** The header section's size: at least `sizeLow` bytes however counted, at most `sizeHigh`. */
  readonly sizeLow: number;
  readonly sizeHigh: number;
  /** Set by the `chunked-body-size` known issue: the size of a chunked body is not checked. */
}

function parse(req: HostileRequest): Parsed {
  const malformed = new Set<number>();
  const questionable = new Set<number>();
  if (!TOKEN.test(req.method)) malformed.add(400);
  if (req.version !== 'HTTP/1.1' && req.version !== 'HTTP/1.0') {
    // Another HTTP-version of the right shape: the RFCs allow 505 or an answer as HTTP/1.1
    // (RFC 9110 §6.2); docs/endpoints.md does not say. Anything else is not HTTP/1.x at all.
    if (/^HTTP\/\d\.\d$/.test(req.version)) {
      questionable.add(400);
      questionable.add(505);
    } else malformed.add(400);
  }
  let t = req.target;
  // RFC 9112 §3: a recipient may split the request-line on any whitespace and ignore extra
  // whitespace around the target, or refuse it.
  const trimmed = t.replace(/^[ \t\x0b\x0c]+|[ \t\x0b\x0c]+$/g, '');
  if (trimmed !== t && trimmed !== '') {
    questionable.add(400);
    t = trimmed;
  }
  // Controls, spaces and bytes outside ASCII are not allowed in a request-target (RFC 9112 §3.2).
  if (t === '' || /[\x00-\x20\x7f-\xff]/.test(t)) malformed.add(400);
  else if (t.startsWith('/')) {
    // Printable characters RFC 3986 does not allow unescaped, and fragments (never part of a
    // request-target): a server may refuse them (400) or take them as they are.
    if (/["<>\\^`{|}]/.test(t) || t.includes('#')) questionable.add(400);
  } else if (t === '*' || t.startsWith('http://')) {
    // asterisk-form (OPTIONS only) and absolute-form are valid request-targets; whether a server
    // that serves neither refuses them (400) or looks them up as paths is its choice.
    questionable.add(400);
  } else malformed.add(400);

  const fields: Field[] = [];
  let sizeLow = t.length;
  for (const line of req.lines) {
    if (/^[ \t]/.test(line)) {
      // obs-fold: the server must either refuse it (400) or replace it by a space (RFC 9112 §5.2).
      questionable.add(400);
      const last = fields.pop();
      if (last) fields.push({ name: last.name, value: `${last.value} ${line.trim()}`.trim() });
      continue;
    }
    const colon = line.indexOf(':');
    const name = colon < 0 ? '' : line.slice(0, colon);
    const raw = colon < 0 ? '' : line.slice(colon + 1);
    // No colon, a name that is not a token (including whitespace before the colon: RFC 9112 §5.1
    // says 400) or a control byte in the value.
    if (colon < 0 || !TOKEN.test(name) || CONTROL_IN_VALUE.test(raw)) {
      malformed.add(400);
      continue;
    }
    const value = raw.replace(/^[ \t]+|[ \t]+$/g, '');
    sizeLow += name.length + value.length;
    fields.push({ name: name.toLowerCase(), value });
  }
  const sizeHigh = serialize({ ...req, body: '' }).length;
  return { method: req.method, target: t, version: req.version, fields, body: req.body, malformed, questionable, sizeLow, sizeHigh };
}

const valuesOf = (p: Parsed, name: string) => p.fields.filter((f) => f.name === name).map((f) => f.value);

/** The transfer codings named by every Transfer-Encoding line, in order, lower-cased. */
function transferCodings(p: Parsed): string[] {
  return valuesOf(p, 'transfer-encoding')
    .flatMap((v) => v.split(','))
    .map((c) => c.trim().toLowerCase())
    .filter(Boolean);
}

/** Size of a chunked body (the generator writes well-formed ones). */
function chunkedSize(body: string): number {
  let size = 0;
  let at = 0;
  for (;;) {
    const end = body.indexOf('\r\n', at);
    if (end < 0) return size;
    const n = parseInt(body.slice(at, end), 16);
    if (!(n > 0)) return size;
    size += n;
    at = end + 2 + n + 2;
  }
}

/** How the body is framed, what its size is, and which framing errors the request has. */
function framing(p: Parsed): { size: number; chunked: boolean; present: boolean; malformed: number[]; questionable: number[] } {
  const malformed: number[] = [];
  const questionable: number[] = [];
  const lengths = valuesOf(p, 'content-length');
  const codings = transferCodings(p);
  // Several Content-Length lines: 400, unless they agree, when a server may also accept them
  // (RFC 9110 §8.6).
  if (lengths.length > 1) (lengths.every((l) => l === lengths[0] && /^[0-9]+$/.test(l)) ? questionable : malformed).push(400);
  if (lengths.length > 0 && !/^[0-9]+$/.test(lengths[0]!)) malformed.push(400);
  if (codings.length > 0) {
    // RFC 9112 §6.3: a request whose final coding is not chunked has no determinable length: 400.
    if (codings.at(-1) !== 'chunked') malformed.push(400);
    // RFC 9112 §6.1: with both, the server MAY refuse, or go by Transfer-Encoding.
    if (lengths.length > 0) questionable.push(400);
    // docs/endpoints.md: a chunked body is refused with 413 whatever its size (it is never read to find out).
    return { size: chunkedSize(p.body), chunked: true, present: true, malformed, questionable };
  }
  const size = lengths.length > 0 && /^[0-9]+$/.test(lengths[0]!) ? Number(lengths[0]) : 0;
  return { size, chunked: false, present: size > 0, malformed, questionable };
}

/**
 * The Host rule: "a Host header that is not an address of the listener (or localhost on
 * loopback) → 403". Listener A is 127.0.0.1, so 127.0.0.1 and localhost (any case: host names
 * are case-insensitive) are its addresses; `[::1]`, `127.0.0.1.` or `0.0.0.0` are not.
 */
function hostVerdict(value: string | undefined, port: number): { reject: number[]; pass: boolean } {
  // No Host at all (HTTP/1.0): accepted (SECURITY.md: "Requests without Host (HTTP/1.0) are accepted; browsers always send one").
  if (value === undefined) return { reject: [], pass: true };
  const v = value.toLowerCase();
  let host = v;
  let hostPort: string | undefined;
  if (v.startsWith('[')) {
    const close = v.indexOf(']');
    host = close > 0 ? v.slice(1, close) : v;
    hostPort = close > 0 && v[close + 1] === ':' ? v.slice(close + 2) : undefined;
  } else {
    const colon = v.lastIndexOf(':');
    if (colon >= 0) {
      host = v.slice(0, colon);
      hostPort = v.slice(colon + 1);
    }
  }
  const ours = host === '127.0.0.1' || host === 'localhost';
  // A Host that is not a valid uri-host[:port] (empty, spaces, a non-numeric port, an unbracketed
  // IPv6 address, bytes outside ASCII) is malformed (RFC 9112 §3.2: 400) as well as not ours
  // (403): either answer.
  const hostSyntax = v.startsWith('[') ? /^[0-9a-f:.]+$/ : /^[a-z0-9.\-_~!$&'()*+,;=%]+$/;
  const valid = hostSyntax.test(host) && (hostPort === undefined || /^[0-9]*$/.test(hostPort));
  if (!ours) return { reject: valid ? [403] : [400, 403], pass: false };
  if (!valid) return { reject: [400, 403], pass: true };
  // Our address with another port: is that "an address of the listener"? docs/endpoints.md does not say
  // whether the port counts (DNS rebinding needs only the name): either answer.
  if (hostPort !== undefined && hostPort !== '' && Number(hostPort) !== port) return { reject: [403], pass: true };
  return { reject: [], pass: true };
}

type RouteKind = 'token' | 'role-list' | 'region' | 'identity' | 'info' | 'imds-credentials' | 'imds-credentials-extended' | 'container';
interface Route {
  readonly kind: RouteKind;
  readonly methods: readonly string[];
}
const GET_HEAD = ['GET', 'HEAD'];
const EXACT_ROUTES: ReadonlyMap<string, Route> = new Map([
  ['/latest/api/token', { kind: 'token', methods: ['PUT'] }],
  ['/latest/meta-data/iam/security-credentials', { kind: 'role-list', methods: GET_HEAD }],
  ['/latest/meta-data/iam/security-credentials/', { kind: 'role-list', methods: GET_HEAD }],
  ['/latest/meta-data/iam/security-credentials-extended', { kind: 'role-list', methods: GET_HEAD }],
  ['/latest/meta-data/iam/security-credentials-extended/', { kind: 'role-list', methods: GET_HEAD }],
  ['/latest/meta-data/iam/info', { kind: 'info', methods: GET_HEAD }],
  ['/latest/meta-data/placement/region', { kind: 'region', methods: GET_HEAD }],
  ['/latest/dynamic/instance-identity/document', { kind: 'identity', methods: GET_HEAD }],
  ['/v1/credentials', { kind: 'container', methods: GET_HEAD }],
]);
const ROLE_ROUTES: ReadonlyArray<readonly [string, Route]> = [
  ['/latest/meta-data/iam/security-credentials/', { kind: 'imds-credentials', methods: GET_HEAD }],
  ['/latest/meta-data/iam/security-credentials-extended/', { kind: 'imds-credentials-extended', methods: GET_HEAD }],
  ['/v1/credentials/', { kind: 'container', methods: GET_HEAD }],
];

/** Percent-decoding of a `<role>` segment: a malformed escape is an error; invalid UTF-8 is either an error or "not a role". */
function decodeSegment(segment: string): { value: string } | { malformed: 'yes' | 'maybe' } {
  if (/%(?![0-9A-Fa-f]{2})/.test(segment)) return { malformed: 'yes' };
  const bytes = Buffer.from(
    segment.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))),
    'latin1',
  );
  try {
    return { value: new TextDecoder('utf-8', { fatal: true }).decode(bytes) };
  } catch {
    return { malformed: 'maybe' };
  }
}

/** The readings of the request-target's path; more than one where the documents allow several. */
function pathReadings(target: string, port: number): string[] {
  if (target === '*') return [target];
  let t = target;
  const readings: string[] = [];
  const origin = `http://127.0.0.1:${port}`;
  if (t.startsWith('http://')) {
    // absolute-form: docs/endpoints.md compares the target byte for byte (so: no such path), RFC 9112
    // §3.2.2 says a server must accept it as the path it names.
    readings.push(t.split('?')[0]!);
    if (!t.startsWith(`${origin}/`)) return readings;
    t = t.slice(origin.length);
  }
  const path = t.split('?')[0]!;
  readings.push(path);
  // A fragment (never sent by clients): part of the byte-for-byte path, or not part of the path at all.
  if (path.includes('#')) readings.push(path.split('#')[0]!);
  return readings;
}

function ttlVerdict(values: string[]): { reject: number[]; ttl?: number } {
  if (values.length !== 1) return { reject: [400] }; // missing, or sent twice (a single-value field)
  const v = values[0]!;
  if (!/^[0-9]+$/.test(v)) return { reject: [400] };
  const digits = v.replace(/^0+/, '');
  const ttl = digits.length > 6 ? Infinity : Number(digits || '0');
  if (ttl < 1 || ttl > MAX_TTL) return { reject: [400] };
  // `0005` is 5 written with leading zeros: docs/endpoints.md's "1…21600" does not say whether that is
  // valid. Either answer.
  return digits === v ? { reject: [], ttl } : { reject: [400], ttl };
}

/** The IMDSv2 gate. */
function sessionVerdict(values: string[], w: World): { reject: number[]; pass: boolean } {
  if (values.length === 0) return { reject: [401], pass: false };
  if (values.length === 1) return w.validTokens.has(values[0]!) ? { reject: [], pass: true } : { reject: [401], pass: false };
  // The header twice: docs/endpoints.md does not say. Refused (400/401), or, when a copy is a valid
  // token, possibly accepted (the client holds a valid token, so nothing is given away).
  return { reject: [400, 401], pass: values.some((v) => w.validTokens.has(v)) };
}

/** The container endpoint's gate: "401 without the header, 403 with a wrong one". */
function secretVerdict(values: string[], w: World): { reject: number[]; pass: boolean } {
  if (values.length === 0) return { reject: [401], pass: false };
  if (values.length === 1) {
    if (values[0] === w.secret) return { reject: [], pass: true };
    // An empty value: "without the header" or "a wrong one"? Either.
    return { reject: values[0] === '' ? [401, 403] : [403], pass: false };
  }
  // Authorization twice: as for the session token, refused, or accepted when a copy is the secret.
  return { reject: [400, 401, 403], pass: values.includes(w.secret) };
}

function resolveRoute(route: Route, role: string | undefined, ttl: number | undefined): Outcome {
  switch (route.kind) {
    case 'token':
      return { status: 200, success: { kind: 'token', ttl: ttl! } };
    case 'role-list':
      return { status: 200, success: { kind: 'role-list' } };
    case 'region':
    case 'identity':
    case 'info':
      return { status: 200, success: { kind: route.kind } };
    case 'imds-credentials':
    case 'imds-credentials-extended':
      // A listener's IMDS serves its own role only; any other name is "not a role" here.
      return role === LISTENER_ROLE
        ? { status: 200, success: { kind: 'imds-credentials', role: LISTENER_ROLE, extended: route.kind === 'imds-credentials-extended' } }
        : error(404);
    case 'container': {
      const name = role ?? LISTENER_ROLE;
      return (ROLES as readonly string[]).includes(name) ? { status: 200, success: { kind: 'container-credentials', role: name as RoleName } } : error(404);
    }
  }
}

/** Outcomes for a request whose path reads as `path`, once the Host has been accepted. */
function atPath(path: string, p: Parsed, w: World, bodyTooLarge: boolean): Outcome[] {
  // "A request body over 1 KiB → 413" is stated without an order against the path, method and
  // auth rules: with such a body, any refusal that applies, never a success.
  const large = bodyTooLarge ? [error(413)] : [];
  let route = EXACT_ROUTES.get(path);
  let segment: string | undefined;
  if (!route) {
    for (const [prefix, r] of ROLE_ROUTES) {
      if (!path.startsWith(prefix)) continue;
      segment = path.slice(prefix.length);
      // More path after the role: not a served path.
      if (!segment.includes('/')) route = r;
      break;
    }
  }
  if (!route) return [error(404), ...large];
  const alternatives: Outcome[] = [];
  if (route.kind === 'container' && segment === '') {
    // `/v1/credentials/`: a trailing slash is not normalised (docs/endpoints.md), so no such path; or
    // `/v1/credentials/<role>` with an empty role, answered after the secret check. Either.
    alternatives.push(error(404));
  }

  // The `<role>` segment: over 128 characters → 414, a malformed escape → 400. Both rules are
  // stated without an order between them or against 405 and the auth checks: any that applies.
  const segmentErrors: number[] = [];
  let role: string | undefined;
  if (segment !== undefined) {
    if (segment.length > MAX_ROLE_SEGMENT) segmentErrors.push(414);
    const decoded = decodeSegment(segment);
    if ('value' in decoded) role = decoded.value;
    else if (decoded.malformed === 'yes') segmentErrors.push(400);
    else alternatives.push(error(400)); // invalid UTF-8: a malformed escape, or a name that is not a role
  }
  if (!route.methods.includes(p.method))
    return [
      ...alternatives,
      error(
        405,
        route.methods.map((m) => m),
      ),
      ...segmentErrors.map((s) => error(s)),
      ...large,
    ];

  let gate: { reject: number[]; pass: boolean };
  let ttl: number | undefined;
  if (route.kind === 'token') {
    // "Missing or invalid TTL → 400; a proxy header present → 403": both stated, no order given.
    const forwarded = ['x-forwarded-for', 'forwarded', 'x-real-ip', 'via'].some((h) => valuesOf(p, h).length > 0);
    const t = ttlVerdict(valuesOf(p, 'x-aws-ec2-metadata-token-ttl-seconds'));
    ttl = t.ttl;
    gate = { reject: [...(forwarded ? [403] : []), ...t.reject], pass: !forwarded && t.ttl !== undefined };
  } else if (route.kind === 'container') gate = secretVerdict(valuesOf(p, 'authorization'), w);
  else gate = sessionVerdict(valuesOf(p, 'x-aws-ec2-metadata-token'), w);

  const refusals = [...alternatives, ...[...segmentErrors, ...gate.reject].map((s) => error(s)), ...large];
  // Credentials or not, a role is looked up only after the session token or the secret passed:
  // which roles exist is not for unauthenticated clients to probe. A too-long or malformed role
  // segment is answered by its own rule, not as "no such role".
  if (!gate.pass || segmentErrors.length > 0 || bodyTooLarge) return refusals;
  return [...refusals, resolveRoute(route, role, ttl)];
}

/** The documented answers for a parsed request. */
function documentedFor(p: Parsed, w: World): Outcome[] {
  const malformed = new Set(p.malformed);
  const questionable = new Set(p.questionable);
  const hosts = valuesOf(p, 'host');
  // RFC 9112 §3.2: an HTTP/1.1 request without Host, or any request with more than one, is 400.
  if (p.version === 'HTTP/1.1' && hosts.length === 0) malformed.add(400);
  if (hosts.length > 1) malformed.add(400);
  // docs/endpoints.md: CONNECT → 400 (it names no path; answered as it arrives, and the connection closed).
  if (p.method === 'CONNECT') malformed.add(400);
  const body = framing(p);
  for (const s of body.malformed) malformed.add(s);
  for (const s of body.questionable) questionable.add(s);
  // RFC 9110 §10.1.1: an expectation other than 100-continue MAY be answered 417. docs/endpoints.md's
  // list of parser answers does not mention it.
  if (valuesOf(p, 'expect').some((v) => v.toLowerCase() !== '100-continue')) questionable.add(417);
  // "Headers over 16 KiB → 431": whether the request line, the colons and line ends count is not
  // said; over 16 KiB however counted is certainly 431, over 16 KiB by some count only perhaps.
  if (p.sizeLow > MAX_HEADER_BYTES) malformed.add(431);
  else if (p.sizeHigh > MAX_HEADER_BYTES) questionable.add(431);
  // The parser answers before anything is routed; which of its errors comes first is its business.
  if (malformed.size > 0) return [...malformed, ...questionable].map((s) => error(s));

  const out: Outcome[] = [...questionable].map((s) => error(s));
  const bodyTooLarge = body.chunked || body.size > MAX_BODY_BYTES;
  const host = hostVerdict(hosts[0], w.port);
  // The Host rule guards the whole listener against DNS rebinding: a foreign Host learns nothing
  // about paths, methods or auth. The body rule is stated as unconditionally: either.
  out.push(...host.reject.map((s) => error(s)));
  if (!host.pass) return bodyTooLarge ? [...out, error(413)] : out;
  for (const path of pathReadings(p.target, w.port)) out.push(...atPath(path, p, w, bodyTooLarge));
  return out;
}

/** The answers docs/endpoints.md allows for `req`, and those the KNOWN_ISSUES add. */
function predict(req: HostileRequest, w: World): Prediction {
  const p = parse(req);
  const documented = documentedFor(p, w);
  const issues: KnownIssue[] = [];
  const tolerated: Outcome[] = [];
  if (TOKEN.test(p.method) && !METHODS.includes(p.method)) {
    issues.push('unknown-method');
    tolerated.push(error(400));
  }
  if (valuesOf(p, 'expect').some((v) => v.toLowerCase() !== '100-continue')) issues.push('expectation');
  const expectClose = framing(p).present;
  return { documented, tolerated, issues, expectClose };
}

// ---------------------------------------------------------------------------------------------
// The oracle: check one exchange against the prediction
// ---------------------------------------------------------------------------------------------

const IMDS_KEYS = ['Code', 'LastUpdated', 'Type', 'AccessKeyId', 'SecretAccessKey', 'Token', 'Expiration'];
const CONTAINER_KEYS = ['AccessKeyId', 'SecretAccessKey', 'Token', 'Expiration', 'RoleArn', 'AccountId'];
const AWS_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

function json(body: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Why `res` is not the answer `success` describes, or undefined when it is. */
function successMismatch(success: Success, res: RawResponse, head: boolean, present: ReadonlySet<RoleName>, w: World): string | undefined {
  const entitled = success.kind === 'imds-credentials' || success.kind === 'container-credentials' ? success.role : undefined;
  for (const role of present) if (role !== entitled || head) return `holds credentials of ${role}`;
  if (head) return res.body.length === 0 ? undefined : 'HEAD answer has a body';
  const text = res.body.toString('utf8');
  switch (success.kind) {
    case 'token':
      if (!/^[\x21-\x7e]{16,128}$/.test(text)) return 'not a session token';
      return headerOf(res, 'x-aws-ec2-metadata-token-ttl-seconds') === String(success.ttl)
        ? undefined
        : `TTL header ${headerOf(res, 'x-aws-ec2-metadata-token-ttl-seconds')}, expected ${success.ttl}`;
    case 'role-list':
      return text === LISTENER_ROLE ? undefined : `role list ${JSON.stringify(text)}`;
    case 'region':
      return text === REGION ? undefined : `region ${JSON.stringify(text)}`;
    case 'identity': {
      const doc = json(res.body);
      return doc?.['accountId'] === ACCOUNT && doc['region'] === REGION ? undefined : 'identity document';
    }
    case 'info': {
      const doc = json(res.body);
      return doc?.['Code'] === 'Success' && typeof doc['InstanceProfileArn'] === 'string' && typeof doc['InstanceProfileId'] === 'string'
        ? undefined
        : 'info document';
    }
    case 'imds-credentials':
    case 'container-credentials': {
      const doc = json(res.body);
      const keys = success.kind === 'imds-credentials' ? (success.extended ? [...IMDS_KEYS, 'AccountId'] : IMDS_KEYS) : CONTAINER_KEYS;
      if (!doc || JSON.stringify(Object.keys(doc)) !== JSON.stringify(keys))
        return `credential document keys ${doc ? Object.keys(doc).join(',') : 'unparseable'}`;
      const expected = w.creds[success.role];
      if (doc['AccessKeyId'] !== expected.AccessKeyId || doc['SecretAccessKey'] !== expected.SecretAccessKey || doc['Token'] !== expected.Token)
        return `not ${success.role}'s credentials`;
      if (!AWS_TIMESTAMP.test(String(doc['Expiration']))) return 'Expiration format';
      if (success.kind === 'container-credentials' && (doc['RoleArn'] !== roleArn(success.role) || doc['AccountId'] !== ACCOUNT)) return 'RoleArn/AccountId';
      return present.has(success.role) ? undefined : 'credentials not recognised';
    }
  }
}

/** Counts of answers that only a known issue explains, by issue; and of all answers, by status. */
const issueHits = new Map<KnownIssue, number>();
const statusCounts = new Map<number | 'no-answer', number>();
let requestsChecked = 0;

/** Checks one exchange; throws with the request, the prediction and the answer when it is wrong. */
function verify(req: HostileRequest, prediction: Prediction, ex: RawExchange, w: World): void {
  requestsChecked++;
  const problems: string[] = [];
  const received = ex.received.toString('latin1');
  if (ex.timedOut) problems.push('neither answered nor closed within the deadline');
  if (received.includes(MARKER)) problems.push('the answer contains request bytes (the marker)');
  const res = ex.responses[0];
  const head = req.method === 'HEAD';
  // A server that stops reading a request over its header limit may reset the connection before
  // its answer is read: for such a request a reset counts as the 431.
  const cutOff = !res && ex.reset && serialize({ ...req, body: '' }).length > MAX_HEADER_BYTES;
  const actual = res ? res.status : cutOff ? 431 : 'no-answer';
  statusCounts.set(actual, (statusCounts.get(actual) ?? 0) + 1);

  const present = new Set<RoleName>(ROLES.filter((role) => w.secretsOf(role).some((s) => received.includes(s))));
  const candidates = [...prediction.documented.map((o) => ({ o, tolerated: false })), ...prediction.tolerated.map((o) => ({ o, tolerated: true }))].filter(
    ({ o }) => o.status === actual,
  );
  let explained = candidates.filter(({ o }) => {
    if (!res) return true;
    if (o.success) return successMismatch(o.success, res, head, present, w) === undefined;
    return present.size === 0;
  });
  if (candidates.length === 0) problems.push(`status ${actual}`);
  else if (explained.length === 0) {
    const why = candidates
      .map(({ o }) => (o.success && res ? successMismatch(o.success, res, head, present, w) : `credentials of ${[...present].join(',')} in an error`))
      .join('; ');
    problems.push(`status ${actual} with the wrong body (${why})`);
  }
  if (present.size > 0 && (actual !== 200 || head)) problems.push(`credentials of ${[...present].join(',')} in a ${actual} answer`);
  // An answer to HEAD has no body: nothing may follow its header section.
  if (head && res && ex.received.length > ex.received.indexOf(res.raw) + res.raw.length) problems.push('bytes after the header section of an answer to HEAD');
  if (/SecretAccessKey|AccessKeyId/.test(received) && present.size === 0) problems.push('an answer shaped like credentials the test does not know');

  if (res && typeof actual === 'number' && actual >= 400 && res.body.length > 0 && req.target.startsWith('/')) {
    // Error bodies: `{"Code","Message"}` under /v1/, one line of text elsewhere.
    const text = res.body.toString('utf8');
    if (req.target.split('?')[0]!.startsWith('/v1/')) {
      const doc = json(res.body);
      if (!doc || JSON.stringify(Object.keys(doc)) !== '["Code","Message"]' || !/^CROSSCRED_ERR_[A-Z_]+$/.test(String(doc['Code'])))
        problems.push(`error body under /v1/ is not {"Code","Message"}: ${text.slice(0, 120)}`);
    } else if (!/^CROSSCRED_ERR_[A-Z_]+: [^\n]*\n$/.test(text)) problems.push(`error body is not one line of text: ${JSON.stringify(text.slice(0, 120))}`);
  }
  if (res && actual === 405) {
    const allow = (headerOf(res, 'allow') ?? '')
      .split(',')
      .map((m) => m.trim())
      .filter(Boolean)
      .sort();
    const ok = explained.some(({ o }) => o.allow === undefined || JSON.stringify([...o.allow].sort()) === JSON.stringify(allow));
    if (!ok) problems.push(`405 with Allow: ${headerOf(res, 'allow')}`);
  }
  if (prediction.expectClose && res && !ex.closedByServer && !prediction.issues.includes('expectation'))
    problems.push('the connection stayed open after a request with a body');

  if (problems.length > 0) {
    const fmt = (os: readonly Outcome[]) =>
      [...new Set(os.map((o) => (o.success ? `${o.status} ${o.success.kind}${'role' in o.success ? `(${o.success.role})` : ''}` : String(o.status))))].join(
        ' | ',
      );
    throw new Error(
      [
        problems.join('; '),
        `documented: ${fmt(prediction.documented)}${prediction.issues.length ? `; known issues ${prediction.issues.join(', ')}: ${fmt(prediction.tolerated)}` : ''}`,
        `request: ${describeRequest(req)}`,
        `answer: ${JSON.stringify(received.slice(0, 400))}`,
        `replay with CROSSCRED_FUZZ_SEED=${SEED}`,
      ].join('\n'),
    );
  }
  explained = explained.length > 0 ? explained : candidates;
  if (explained.every(({ tolerated }) => tolerated)) for (const issue of prediction.issues) issueHits.set(issue, (issueHits.get(issue) ?? 0) + 1);
}

/** Sends `req` to the world's listener and checks the answer. */
async function exchange(req: HostileRequest, w: World): Promise<void> {
  const prediction = predict(req, w);
  // An unexpected Expect is answered 417 on a connection Node keeps open (KNOWN_ISSUES.expectation).
  const waitForCloseMs = prediction.expectClose && !prediction.issues.includes('expectation') ? 2_000 : 0;
  const ex = await sendRaw(w.port, serialize(req), { head: req.method === 'HEAD', waitForCloseMs });
  verify(req, prediction, ex, w);
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/** Token, secret and port values the generators draw from; filled in once the daemon runs. */
interface Material {
  readonly port: number;
  readonly validTokens: readonly string[];
  readonly expiredTokens: readonly string[];
  /** Valid session tokens of the other listener (B). */
  readonly foreignTokens: readonly string[];
  readonly secret: string;
}

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const utf8AsLatin1 = (s: string) => Buffer.from(s, 'utf8').toString('latin1');
const swapCase = (c: string) => (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase());

/** Every path the listener serves (the `<role>` ones with a role). */
const REAL_PATHS = [
  '/latest/api/token',
  '/latest/meta-data/iam/security-credentials',
  '/latest/meta-data/iam/security-credentials/',
  '/latest/meta-data/iam/security-credentials/app',
  '/latest/meta-data/iam/security-credentials-extended',
  '/latest/meta-data/iam/security-credentials-extended/',
  '/latest/meta-data/iam/security-credentials-extended/app',
  '/latest/meta-data/iam/info',
  '/latest/meta-data/placement/region',
  '/latest/dynamic/instance-identity/document',
  '/v1/credentials',
  '/v1/credentials/app',
  '/v1/credentials/other',
];
/** Paths it does not serve: neighbours of the real ones, and the admin listener's. */
const NEIGHBOUR_PATHS = [
  '/',
  '/latest',
  '/latest/',
  '/latest/meta-data/',
  '/latest/meta-data/iam/',
  '/latest/meta-data/placement/availability-zone',
  '/latest/user-data',
  '/v1',
  '/v1/',
  '/v2/credentials',
  '/healthz',
  '/readyz',
  '/metrics',
];

/** Replacements for a `<role>` segment. */
const ROLE_SEGMENTS = [
  'app',
  'other',
  'APP',
  'App',
  'Other',
  '%61pp',
  '%61%70%70',
  '%6Fther',
  '%6fther',
  'ap%70',
  'reports',
  'nope',
  '',
  '.',
  '..',
  '%2e%2e',
  '%2E%2E',
  '.%2e',
  'app%2F..',
  'app%2f',
  '%2Fapp',
  '..%2Fapp',
  'app%00',
  '%00',
  '%20app',
  'app%20',
  'app;x',
  'app..',
  '%zz',
  '%',
  '%4',
  'app%',
  '%C3%28',
  '%E2%82',
  '%FF',
  '%C3%BC',
  '%F0%9F%98%80',
  'app%0D%0AX-Injected:%201',
  MARKER,
  `%${[...MARKER].map((c) => c.charCodeAt(0).toString(16)).join('%')}`,
];

const PATH_MUTATIONS = [
  'trailing-slash',
  'strip-slash',
  'double-slash',
  'dot-segment',
  'dotdot-segment',
  'encoded-dots',
  'encode-char',
  'case-char',
  'case-all',
  'unicode',
  'control',
  'query',
  'fragment',
  'backslash',
  'marker-segment',
  'long',
  'role-long',
] as const;
type PathMutation = { readonly kind: (typeof PATH_MUTATIONS)[number]; readonly at: number; readonly pick: number };

const UNICODE = ['é', '\u2215', 'ｌａｔｅｓｔ', '\u202e', '\ufeff', '😀', 'İ', 'ſ'];
const CONTROLS = ['\x00', '\x01', '\x1b', '\x7f', '\t', ' ', '\x0b', '\x0c'];
const QUERIES = ['', 'a=b', MARKER, '/../x', '%zz', '?', 'role=other', 'x=%00', `#${MARKER}`];
const LONG = [100, 1_000, 8_000, 16_200, 16_500, 20_000];

function mutatePath(path: string, m: PathMutation): string {
  const slashes = [...path].flatMap((c, i) => (c === '/' ? [i] : []));
  const slash = slashes.length ? slashes[m.at % slashes.length]! : 0;
  const i = path.length ? m.at % path.length : 0;
  const pick = <T>(xs: readonly T[]) => xs[m.pick % xs.length]!;
  switch (m.kind) {
    case 'trailing-slash':
      return `${path}/`;
    case 'strip-slash':
      return path.length > 1 ? path.replace(/\/$/, '') : path;
    case 'double-slash':
      return `${path.slice(0, slash)}/${path.slice(slash)}`;
    case 'dot-segment':
      return `${path.slice(0, slash)}/.${path.slice(slash)}`;
    case 'dotdot-segment': {
      // `/latest/x/../meta-data/…`: resolves to the real path only after normalisation.
      const next = path.slice(slash + 1).split('/')[0] ?? '';
      return `${path.slice(0, slash)}/${next}/..${path.slice(slash)}`;
    }
    case 'encoded-dots':
      return `${path.slice(0, slash)}/${pick(['%2e%2e', '%2E%2E', '%2e', '..%2f', '%2e%2e%2f'])}${path.slice(slash)}`;
    case 'encode-char': {
      const c = path[i] ?? '/';
      const hex = c.charCodeAt(0).toString(16).padStart(2, '0');
      return `${path.slice(0, i)}%${m.pick % 2 ? hex.toUpperCase() : hex}${path.slice(i + 1)}`;
    }
    case 'case-char':
      return `${path.slice(0, i)}${swapCase(path[i] ?? '')}${path.slice(i + 1)}`;
    case 'case-all':
      return m.pick % 2 ? path.toUpperCase() : path.replace(/[a-z]/, (c) => c.toUpperCase());
    case 'unicode':
      return `${path.slice(0, i)}${m.pick % 3 === 0 ? encodeURIComponent(pick(UNICODE)) : utf8AsLatin1(pick(UNICODE))}${path.slice(i)}`;
    case 'control':
      return `${path.slice(0, i)}${pick(CONTROLS)}${path.slice(i)}`;
    case 'query':
      return `${path}?${pick(QUERIES)}`;
    case 'fragment':
      return `${path}#${pick(['', 'frag', MARKER, '?x=1'])}`;
    case 'backslash':
      return `${path.slice(0, slash)}\\${path.slice(slash + 1)}`;
    case 'marker-segment':
      return `${path.slice(0, slash)}/${MARKER}${path.slice(slash)}`;
    case 'long':
      return `${path}/${MARKER}${'x'.repeat(pick(LONG))}`;
    case 'role-long': {
      // Around the 128-character segment limit, raw or percent-encoded.
      const n = 120 + (m.at % 16);
      return `${path.slice(0, slash)}/${m.pick % 2 ? 'a'.repeat(n) : '%61'.repeat(Math.ceil(n / 3))}`;
    }
  }
}

/** A request-target built from a real path: a role segment swapped, mutations, perhaps absolute-form. */
function targetArb(port: number): fc.Arbitrary<string> {
  const mutation = fc.record({ kind: fc.constantFrom(...PATH_MUTATIONS), at: fc.nat(), pick: fc.nat() });
  return fc
    .tuple(
      fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...REAL_PATHS) }, { weight: 1, arbitrary: fc.constantFrom(...NEIGHBOUR_PATHS) }),
      oneIn(2, fc.constantFrom(...ROLE_SEGMENTS)),
      fc.oneof({ weight: 1, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(mutation, { minLength: 1, maxLength: 3 }) }),
      fc.oneof({ weight: 30, arbitrary: fc.constant('origin') }, { weight: 1, arbitrary: fc.constantFrom('absolute', 'asterisk', 'relative') }),
    )
    .map(([base, segment, mutations, form]) => {
      let path = base;
      if (segment !== null && /\/(app|other)$/.test(path)) path = path.replace(/[^/]+$/, segment);
      for (const m of mutations) path = mutatePath(path, m);
      switch (form) {
        case 'absolute':
          return `http://127.0.0.1:${port}${path}`;
        case 'asterisk':
          return '*';
        case 'relative':
          return path.replace(/^\/+/, '');
        default:
          return path;
      }
    });
}

/** A header name in some spelling: HTTP field names are case-insensitive. */
const spelled = (name: string) => fc.nat().map((bits) => [...name].map((c, i) => ((bits >> (i % 30)) & 1 ? c.toUpperCase() : c.toLowerCase())).join(''));

/** Some optional whitespace around a value (HTTP strips it). */
const padded = (value: string) =>
  fc.constantFrom('', ' ', '  ', '\t', ' \t').chain((pre) => fc.constantFrom('', ' ', '\t').map((post) => `${pre}${value}${post}`));

function tokenValueArb(m: Material): fc.Arbitrary<string> {
  const valid = fc.constantFrom(...m.validTokens);
  const mutated = fc
    .tuple(
      valid,
      fc.nat(),
      fc.nat(),
      fc.constantFrom('truncate', 'drop', 'flip', 'append', 'prepend', 'case', 'prefix', 'non-canonical', 'standard-base64', 'doubled', 'spaced'),
    )
    .map(([t, at, bit, how]) => {
      const i = at % t.length;
      switch (how) {
        case 'truncate':
          return t.slice(0, i);
        case 'drop':
          return t.slice(0, i) + t.slice(i + 1);
        case 'flip': {
          // Flip one bit of one base64url digit (the version prefix included).
          const k = BASE64URL.indexOf(t[i]!);
          return t.slice(0, i) + (k < 0 ? String.fromCharCode(t.charCodeAt(i) ^ (1 << (bit % 7))) : BASE64URL[k ^ (1 << (bit % 6))]) + t.slice(i + 1);
        }
        case 'append':
          return t + BASE64URL[bit % 64];
        case 'prepend':
          return BASE64URL[bit % 64] + t;
        case 'case':
          return t.slice(0, i) + swapCase(t[i]!) + t.slice(i + 1);
        case 'prefix':
          return ['cc0', 'cc2', 'CC1', ''][bit % 4] + t.slice(3);
        case 'non-canonical': {
          // The last digit of 32 bytes in base64 carries 2 unused bits: other values decode to the same bytes.
          const k = BASE64URL.indexOf(t.at(-1)!);
          return t.slice(0, -1) + BASE64URL[k ^ (1 + (bit % 3))];
        }
        case 'standard-base64':
          return t.replace(/-/g, '+').replace(/_/g, '/');
        case 'doubled':
          return t + t;
        case 'spaced':
          return `${t.slice(0, i)} ${t.slice(i)}`;
      }
      return t;
    });
  return fc.oneof(
    { weight: 10, arbitrary: valid },
    { weight: 2, arbitrary: valid.chain(padded) },
    { weight: 2, arbitrary: fc.constantFrom(...m.expiredTokens) },
    { weight: 2, arbitrary: fc.constantFrom(...m.foreignTokens) },
    { weight: 6, arbitrary: mutated },
    { weight: 1, arbitrary: fc.constantFrom('', MARKER, 'cc1', 'null', `${MARKER}${'A'.repeat(43)}`, utf8AsLatin1('cc1ü')) },
  );
}

function secretValueArb(m: Material): fc.Arbitrary<string> {
  const s = m.secret;
  return fc.oneof(
    { weight: 6, arbitrary: fc.constant(s) },
    { weight: 2, arbitrary: padded(s) },
    {
      weight: 8,
      arbitrary: fc
        .tuple(
          fc.nat(),
          fc.nat(),
          fc.constantFrom('same-length', 'prefix', 'plus-byte', 'byte-plus', 'upper', 'lower', 'swap-case', 'bearer', 'inner-space', 'flip', 'latin1'),
        )
        .map(([at, bit, how]) => {
          const i = at % s.length;
          switch (how) {
            case 'same-length':
              return [...s].map((_, j) => BASE64URL[(at + j * 7 + bit) % 64]).join('');
            case 'prefix':
              return s.slice(0, i);
            case 'plus-byte':
              return s + BASE64URL[bit % 64];
            case 'byte-plus':
              return BASE64URL[bit % 64] + s;
            case 'upper':
              return s.toUpperCase();
            case 'lower':
              return s.toLowerCase();
            case 'swap-case':
              return s.slice(0, i) + swapCase(s[i]!) + s.slice(i + 1);
            case 'bearer':
              return `Bearer ${s}`;
            case 'inner-space':
              return `${s.slice(0, i)}${bit % 2 ? ' ' : '\t'}${s.slice(i)}`;
            case 'flip': {
              const k = BASE64URL.indexOf(s[i]!);
              return s.slice(0, i) + (k < 0 ? 'A' : BASE64URL[k ^ (1 << (bit % 6))]) + s.slice(i + 1);
            }
            case 'latin1':
              return `${s.slice(0, i)}\xe9${s.slice(i + 1)}`;
          }
          return s;
        }),
    },
    { weight: 1, arbitrary: fc.constantFrom('', MARKER, 'Basic Zm9vOmJhcg==') },
  );
}

const TTL_VALUES = [
  '0',
  '21601',
  '-1',
  '1e3',
  ' 5',
  '5 ',
  '',
  '1',
  '2',
  '21600',
  '60',
  '05',
  '0005',
  '000000000060',
  '+5',
  '5.0',
  '0x10',
  '1 2',
  '\t7\t',
  '21600 ',
  'abc',
  MARKER,
  utf8AsLatin1('６０'),
  '60,60',
];
/** `arb` once in `n` draws, else null. */
const oneIn = <T>(n: number, arb: fc.Arbitrary<T>): fc.Arbitrary<T | null> =>
  fc.oneof({ weight: n - 1, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: arb });

const ttlValueArb = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...TTL_VALUES) },
  { weight: 3, arbitrary: fc.integer({ min: -5, max: 25_000 }).map(String) },
  { weight: 1, arbitrary: fc.stringMatching(/^[0-9]{6,40}$/) },
  { weight: 1, arbitrary: fc.stringMatching(/^0{1,12}[1-9][0-9]{0,4}$/) },
);

/** Zero, one or two lines of one header, each name in its own spelling. */
function linesOf(name: string, value: fc.Arbitrary<string>, weights: [number, number, number]): fc.Arbitrary<readonly string[]> {
  const line = fc.tuple(spelled(name), value).map(([n, v]) => `${n}:${v.startsWith(' ') || v.startsWith('\t') ? '' : ' '}${v}`);
  return fc.oneof(
    { weight: weights[0], arbitrary: fc.constant([]) },
    { weight: weights[1], arbitrary: line.map((l) => [l]) },
    { weight: weights[2], arbitrary: fc.tuple(line, line).map(([a, b]) => [a, b]) },
  );
}

const HOSTS = (port: number) => [
  `127.0.0.1:${port}`,
  `localhost:${port}`,
  '127.0.0.1',
  'localhost',
  'LOCALHOST',
  `LocalHost:${port}`,
  'localhost:',
  'evil.example',
  `${MARKER}.example`,
  `localhost.${MARKER}.example`,
  `[::1]:${port}`,
  '[::1]',
  '127.0.0.1.',
  'localhost.',
  '0.0.0.0',
  '169.254.169.254',
  '',
  `127.0.0.1:${port + 1}`,
  'localhost:80',
  'localhost:abc',
  'local host',
  `127.0.0.1:${port}:${port}`,
  utf8AsLatin1('lócalhost'),
];

interface Shape {
  readonly method: fc.Arbitrary<string>;
  readonly target: fc.Arbitrary<string>;
  /** Weights of: no header, one line, two lines. */
  readonly token: [number, number, number];
  readonly secret: [number, number, number];
  readonly ttl: [number, number, number];
  readonly forwarded: [number, number, number];
  /** Weight of the rare header/body/version oddities against plain requests. */
  readonly oddities: number;
}

const STANDARD_METHODS = ['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'OPTIONS', 'TRACE', 'PATCH', 'CONNECT'];
const methodArb = fc.oneof(
  { weight: 10, arbitrary: fc.constant('GET') },
  { weight: 6, arbitrary: fc.constant('PUT') },
  { weight: 3, arbitrary: fc.constant('HEAD') },
  { weight: 5, arbitrary: fc.constantFrom(...STANDARD_METHODS, 'PROPFIND', 'QUERY', 'M-SEARCH', 'PURGE', 'MKCOL') },
  { weight: 3, arbitrary: fc.constantFrom('get', 'put', 'Get', 'head', 'GETT', 'FOO', MARKER) },
  { weight: 1, arbitrary: fc.constantFrom('', 'G ET', 'GET\x00', 'GE\x7fT', 'GET/') },
);

/** A body and the header lines that frame it. */
function bodyArb(): fc.Arbitrary<{ readonly lines: readonly string[]; readonly body: string }> {
  const bytes = (n: number) => (MARKER + 'b'.repeat(Math.max(0, n))).slice(0, n);
  const chunked = (sizes: number[]) => `${sizes.map((n) => `${n.toString(16)}\r\n${bytes(n)}\r\n`).join('')}0\r\n\r\n`;
  return fc.oneof(
    { weight: 3, arbitrary: fc.constant({ lines: ['Content-Length: 0'], body: '' }) },
    { weight: 4, arbitrary: fc.integer({ min: 1, max: MAX_BODY_BYTES }).map((n) => ({ lines: [`Content-Length: ${n}`], body: bytes(n) })) },
    { weight: 4, arbitrary: fc.integer({ min: MAX_BODY_BYTES + 1, max: 4096 }).map((n) => ({ lines: [`content-length: ${n}`], body: bytes(n) })) },
    {
      weight: 2,
      arbitrary: fc
        .array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 4 })
        .map((sizes) => ({ lines: ['Transfer-Encoding: chunked'], body: chunked(sizes) })),
    },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom('gzip', 'chunked, gzip', 'identity', 'CHUNKED')
        .map((c) => ({ lines: [`Transfer-Encoding: ${c}`], body: c === 'CHUNKED' ? chunked([5]) : '' })),
    },
    { weight: 1, arbitrary: fc.constant({ lines: ['Content-Length: 5', 'Transfer-Encoding: chunked'], body: chunked([5]) }) },
    { weight: 1, arbitrary: fc.constantFrom('abc', '-1', '1.5', '0x10', '5, 6', '').map((v) => ({ lines: [`Content-Length: ${v}`], body: '' })) },
    { weight: 1, arbitrary: fc.constant({ lines: ['Content-Length: 5', 'Content-Length: 5'], body: bytes(5) }) },
  );
}

/** Header lines that are not valid HTTP, or valid but odd. */
const BROKEN_LINES = [
  `X-Junk : ${MARKER}`,
  `X(Junk): ${MARKER}`,
  `X-Junk: a\x00${MARKER}`,
  `X-Junk: \x01${MARKER}`,
  `X-Junk: a\x7f`,
  `NoColon${MARKER}`,
  `: ${MARKER}`,
  ` folded ${MARKER}`,
  `X-${MARKER}\x00: 1`,
  `X-Junk: ${utf8AsLatin1('ünïcødé')}${MARKER}`,
  `X-Empty:`,
  `X-Tab:\t${MARKER}\t`,
];

/** Generates whole requests for listener `m.port`. */
function requestArb(m: Material, shape: Shape): fc.Arbitrary<HostileRequest> {
  const port = m.port;
  const hostLines = fc.oneof(
    { weight: 14, arbitrary: fc.tuple(spelled('host'), fc.constantFrom(`127.0.0.1:${port}`, `localhost:${port}`)).map(([n, v]) => [`${n}: ${v}`]) },
    { weight: 4, arbitrary: fc.tuple(spelled('host'), fc.constantFrom(...HOSTS(port))).map(([n, v]) => [`${n}: ${v}`]) },
    { weight: 1, arbitrary: fc.constant([]) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...HOSTS(port)), fc.constantFrom(...HOSTS(port))).map(([a, b]) => [`Host: ${a}`, `Host: ${b}`]) },
  );
  const junkLines = fc.oneof(
    { weight: 2, arbitrary: fc.constant([]) },
    {
      weight: 3,
      arbitrary: fc.array(
        fc.oneof(
          {
            weight: 6,
            arbitrary: fc.constantFrom(
              `X-${MARKER}: 1`,
              `User-Agent: ${MARKER}`,
              `Cookie: ${MARKER}=1`,
              'Connection: close',
              'Connection: keep-alive',
              'Accept: */*',
              `Forwarded: for=${MARKER}`,
              'X-Real-IP: 10.0.0.1',
            ),
          },
          // Large, around the 16 KiB limit, and far beyond it.
          { weight: 1, arbitrary: fc.constantFrom(1_000, 8_000, 16_000, 16_400, 30_000).map((n) => `X-Big: ${MARKER}${'b'.repeat(n)}`) },
        ),
        { minLength: 1, maxLength: 3 },
      ),
    },
  );
  const forwardedValue = fc.constantFrom('1.2.3.4', '', MARKER, '10.0.0.1, 127.0.0.1', 'unknown');
  const odd = fc.record({
    version: fc.oneof(
      { weight: 12, arbitrary: fc.constant('HTTP/1.1') },
      { weight: 3, arbitrary: fc.constant('HTTP/1.0') },
      { weight: 1, arbitrary: fc.constantFrom('HTTP/2.0', 'HTTP/0.9', 'HTTP/1.2', 'http/1.1', 'HTTP/1.10', 'HTTP/11', `HTTP/${MARKER}`) },
    ),
    body: oneIn(2, bodyArb()),
    broken: oneIn(4, fc.constantFrom(...BROKEN_LINES)),
    expect: oneIn(6, fc.constantFrom('Expect: 100-continue', `Expect: ${MARKER}`, 'Upgrade: websocket')),
    // Enough lines to pass node's header-count limit (1000), small enough for 16 KiB.
    filler: oneIn(10, fc.integer({ min: 985, max: 1_010 })),
    fillerFirst: fc.boolean(),
  });
  const plain = fc.constant({ version: 'HTTP/1.1', body: null, broken: null, expect: null, filler: null, fillerFirst: false });
  return fc
    .record({
      method: shape.method,
      target: shape.target,
      host: hostLines,
      token: linesOf('X-aws-ec2-metadata-token', tokenValueArb(m), shape.token),
      secret: linesOf('Authorization', secretValueArb(m), shape.secret),
      ttl: linesOf('X-aws-ec2-metadata-token-ttl-seconds', ttlValueArb, shape.ttl),
      forwarded: linesOf('X-Forwarded-For', forwardedValue, shape.forwarded),
      junk: junkLines,
      odd: fc.oneof({ weight: 10, arbitrary: plain }, { weight: shape.oddities, arbitrary: odd }),
    })
    .map(({ method, target, host, token, secret, ttl, forwarded, junk, odd }) => {
      const interesting = [...token, ...secret, ...ttl, ...forwarded, ...junk, ...(odd.expect ? [odd.expect] : []), ...(odd.body?.lines ?? [])];
      const filler = odd.filler ? Array.from({ length: odd.filler }, (_, i) => `f${i}: `) : [];
      const broken = odd.broken ? [odd.broken] : [];
      const lines = odd.fillerFirst ? [...host, ...filler, ...interesting, ...broken] : [...host, ...interesting, ...broken, ...filler];
      // A folded line continues the previous line: keep one in front of it.
      if (odd.broken?.startsWith(' ')) lines.splice(lines.indexOf(odd.broken), 0, 'X-Folded: start');
      return { method, target, version: odd.version, lines, body: odd.body?.body ?? '' };
    });
}

// ---------------------------------------------------------------------------------------------
// The model itself, against docs/endpoints.md line by line: an oracle that allowed too much would let
// every property pass.
// ---------------------------------------------------------------------------------------------

describe('the model of the documented contract', () => {
  const fake: World = {
    port: 8170,
    validTokens: new Set(['cc1-valid-token']),
    secret: 'the-secret',
    secretsOf: () => [],
    creds: { app: { AccessKeyId: 'A', SecretAccessKey: 'A', Token: 'A' }, other: { AccessKeyId: 'O', SecretAccessKey: 'O', Token: 'O' } },
  };
  const host = 'Host: 127.0.0.1:8170';
  const token = 'X-aws-ec2-metadata-token: cc1-valid-token';
  const req = (method: string, target: string, lines: string[] = [host], extra: Partial<HostileRequest> = {}): HostileRequest => ({
    method,
    target,
    version: 'HTTP/1.1',
    lines,
    body: '',
    ...extra,
  });
  const answers = (r: HostileRequest) =>
    [
      ...new Set(
        predict(r, fake).documented.map((o) =>
          o.success ? `${o.status} ${o.success.kind}${'role' in o.success ? ` ${o.success.role}` : ''}` : String(o.status),
        ),
      ),
    ].sort();
  const creds = '/latest/meta-data/iam/security-credentials/';

  it.each<[string, HostileRequest, string[]]>([
    ['a session token for a TTL in 1…21600', req('PUT', '/latest/api/token', [host, 'X-aws-ec2-metadata-token-ttl-seconds: 21600']), ['200 token']],
    ['TTL 0', req('PUT', '/latest/api/token', [host, 'X-aws-ec2-metadata-token-ttl-seconds: 0']), ['400']],
    ['TTL 21601', req('PUT', '/latest/api/token', [host, 'X-aws-ec2-metadata-token-ttl-seconds: 21601']), ['400']],
    ['TTL 1e3', req('PUT', '/latest/api/token', [host, 'X-aws-ec2-metadata-token-ttl-seconds: 1e3']), ['400']],
    ['TTL -1', req('PUT', '/latest/api/token', [host, 'X-aws-ec2-metadata-token-ttl-seconds: -1']), ['400']],
    ['TTL " 5 " (HTTP strips the spaces)', req('PUT', '/latest/api/token', [host, 'X-aws-ec2-metadata-token-ttl-seconds:  5 ']), ['200 token']],
    ['TTL empty', req('PUT', '/latest/api/token', [host, 'X-aws-ec2-metadata-token-ttl-seconds:']), ['400']],
    ['no TTL', req('PUT', '/latest/api/token'), ['400']],
    ['X-Forwarded-For in any case', req('PUT', '/latest/api/token', [host, 'X-aws-ec2-metadata-token-ttl-seconds: 60', 'x-FORWARDED-for: 1.2.3.4']), ['403']],
    ['GET on the token path', req('GET', '/latest/api/token'), ['405']],
    ['credentials without a session token', req('GET', `${creds}app`), ['401']],
    ['credentials with a valid one', req('GET', `${creds}app`, [host, token]), ['200 imds-credentials app']],
    ['the extended document', req('GET', '/latest/meta-data/iam/security-credentials-extended/app', [host, token]), ['200 imds-credentials app']],
    ['a forged session token', req('GET', `${creds}app`, [host, 'X-aws-ec2-metadata-token: cc1-valid-tokem']), ['401']],
    ['HEAD answers like GET', req('HEAD', `${creds}app`, [host, token]), ['200 imds-credentials app']],
    ['another role on IMDS', req('GET', `${creds}other`, [host, token]), ['404']],
    ['the role name percent-encoded', req('GET', `${creds}%61pp`, [host, token]), ['200 imds-credentials app']],
    ['a decoded ..', req('GET', `${creds}%2e%2e`, [host, token]), ['404']],
    ['app/..', req('GET', `${creds}app/..`, [host, token]), ['404']],
    ['a trailing slash after the role', req('GET', `${creds}app/`, [host, token]), ['404']],
    ['the role list, with or without its slash', req('GET', creds.slice(0, -1), [host, token]), ['200 role-list']],
    ['case is significant', req('GET', '/latest/Meta-data/iam/info', [host, token]), ['404']],
    ['// is not normalised', req('GET', '//latest/meta-data/iam/info', [host, token]), ['404']],
    ['the query string is ignored', req('GET', '/latest/meta-data/iam/info?x=/../y', [host, token]), ['200 info']],
    ['no availability zone', req('GET', '/latest/meta-data/placement/availability-zone', [host, token]), ['404']],
    ['a role segment of 128 characters', req('GET', `${creds}${'a'.repeat(128)}`, [host, token]), ['404']],
    ['a role segment of 129 characters', req('GET', `${creds}${'a'.repeat(129)}`, [host, token]), ['414']],
    ['a malformed escape', req('GET', `${creds}%zz`, [host, token]), ['400']],
    ['/v1/credentials without Authorization', req('GET', '/v1/credentials'), ['401']],
    ['… with a wrong one', req('GET', '/v1/credentials', [host, 'Authorization: the-secreT']), ['403']],
    ['… with the secret', req('GET', '/v1/credentials', [host, 'Authorization: the-secret']), ['200 container-credentials app']],
    ['/v1/credentials/other with the secret', req('GET', '/v1/credentials/other', [host, 'Authorization: the-secret']), ['200 container-credentials other']],
    ['a role that does not exist, wrong secret', req('GET', '/v1/credentials/nope', [host, 'Authorization: x']), ['403']],
    ['a role that does not exist, the secret', req('GET', '/v1/credentials/nope', [host, 'Authorization: the-secret']), ['404']],
    ['PUT on /v1/credentials', req('PUT', '/v1/credentials', [host, 'Authorization: the-secret']), ['405']],
    ['a foreign Host', req('GET', `${creds}app`, ['Host: attacker.example', token]), ['403']],
    ['localhost in capitals', req('GET', `${creds}app`, ['Host: LOCALHOST', token]), ['200 imds-credentials app']],
    ['HTTP/1.1 without Host', req('GET', `${creds}app`, [token]), ['400']],
    ['HTTP/1.0 without Host', req('GET', `${creds}app`, [token], { version: 'HTTP/1.0' }), ['200 imds-credentials app']],
    ['a body over 1 KiB', req('GET', `${creds}app`, [host, token, 'Content-Length: 1025'], { body: 'x'.repeat(1025) }), ['413']],
    ['a body of 1 KiB', req('GET', `${creds}app`, [host, token, 'Content-Length: 1024'], { body: 'x'.repeat(1024) }), ['200 imds-credentials app']],
    ['headers over 16 KiB', req('GET', `${creds}app`, [host, token, `X-Big: ${'b'.repeat(17_000)}`]), ['431']],
    ['a NUL in the path', req('GET', `${creds}app\x00`, [host, token]), ['400']],
    ['an unknown path', req('DELETE', '/nowhere', [host]), ['404']],
  ])('%s', (_, request, expected) => {
    expect(answers(request)).toEqual(expected);
  });
});

// ---------------------------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------------------------

let chain: Chain;
let daemon: DaemonProcess;
let material: Material;
let world: World;
/** Listener B's view: its own tokens valid, A's foreign. */
let worldB: World;
let materialB: Material;

const TTL_HEADER = 'x-aws-ec2-metadata-token-ttl-seconds';

async function issueToken(base: string, ttl: number): Promise<string> {
  const res = await request(`${base}/latest/api/token`, { method: 'PUT', headers: { [TTL_HEADER]: String(ttl) } });
  expect(res.statusCode).toBe(200);
  return res.body.text();
}

async function fetchCredentials(base: string, secret: string): Promise<Record<RoleName, Credentials>> {
  const token = await issueToken(base, 60);
  const imds = (await (
    await request(`${base}/latest/meta-data/iam/security-credentials/app`, { headers: { 'x-aws-ec2-metadata-token': token } })
  ).body.json()) as Credentials;
  const app = (await (await request(`${base}/v1/credentials/app`, { headers: { authorization: secret } })).body.json()) as Credentials;
  const other = (await (await request(`${base}/v1/credentials/other`, { headers: { authorization: secret } })).body.json()) as Credentials;
  expect(imds.AccessKeyId).toBe(app.AccessKeyId);
  expect(other.AccessKeyId).not.toBe(app.AccessKeyId);
  const pick = (c: Credentials): Credentials => ({ AccessKeyId: c.AccessKeyId, SecretAccessKey: c.SecretAccessKey, Token: c.Token });
  return { app: pick(app), other: pick(other) };
}

/** VmRSS of a process, in bytes. */
async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)![1]) * 1024;
}

/**
 * A full garbage collection in the daemon, through the inspector it was started with: without
 * it, RSS depends on how much garbage the heap carries since the last major GC (up to 30 MB
 * between two samples here), not on what the daemon keeps.
 */
async function collectGarbage(): Promise<void> {
  const url = daemon.output.map((line) => /Debugger listening on (ws:\/\/\S+)/.exec(line)?.[1]).find((u) => u !== undefined);
  expect(url, 'the daemon was started with --inspect').toBeDefined();
  const ws = new WebSocket(url!);
  try {
    await new Promise((resolve, reject) => {
      ws.addEventListener('open', resolve);
      ws.addEventListener('error', reject);
    });
    ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' }));
    await new Promise<void>((resolve) => ws.addEventListener('message', (event) => JSON.parse(String(event.data)).id === 1 && resolve()));
  } finally {
    ws.close();
  }
}

/** The daemon's VmRSS and V8 heap in use right after a full garbage collection, in bytes. */
async function memoryAfterGc(): Promise<{ rss: number; heapUsed: number }> {
  await collectGarbage();
  const metrics = await (await request(`${daemon.admin}/metrics`)).body.text();
  return { rss: await rssOf(daemon.child.pid!), heapUsed: Number(/^crosscred_nodejs_heap_size_used_bytes (\S+)/m.exec(metrics)?.[1]) };
}

/** Runs `work` over `items` with at most `concurrency` in flight. */
async function pool<T>(items: Iterable<T>, concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  const it = items[Symbol.iterator]();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let next = it.next(); !next.done; next = it.next()) await work(next.value);
    }),
  );
}

const assertOptions = (offset: number, numRuns: number) => ({ seed: SEED + offset, numRuns, endOnFailure: false });

beforeAll(async () => {
  chain = await startChain({ roles: ['app', 'other'] });
  const authFile = join(chain.dir, 'auth-token');
  const configFile = join(chain.dir, 'crosscred.json');
  await writeFile(
    configFile,
    JSON.stringify({
      region: REGION,
      stsEndpoint: chain.sts.url,
      tokenFile: chain.tokenFile,
      authTokenFile: authFile,
      roles: [
        { name: 'app', roleArn: roleArn('app') },
        { name: 'other', roleArn: roleArn('other') },
      ],
      // A (under test) and B: the same role, each with its own session-token key.
      listen: ['127.0.0.1:0=app', '127.0.0.1:0=app'],
    }),
  );
  // The V8 flag of the production launch (the shebang, the image, `npm start`): 2 MB young
  // generation semi-spaces, so RSS reflects what the daemon keeps, not a young generation still
  // growing to its default 16 MB semi-spaces. The inspector, on loopback, lets the memory test
  // collect garbage before it reads RSS (collectGarbage).
  daemon = await spawnDaemon(['--config', configFile], { NODE_OPTIONS: '--max-semi-space-size=2 --inspect=127.0.0.1:0' });
  await waitUntilReady(daemon.admin);
  const [baseA, baseB] = daemon.listeners as [string, string];
  const secret = await readFile(authFile, 'utf8');
  const [validTokens, foreignTokens, expiredTokens] = await Promise.all([
    Promise.all([21_600, 21_600, 3_600].map((ttl) => issueToken(baseA, ttl))),
    Promise.all([21_600, 21_600].map((ttl) => issueToken(baseB, ttl))),
    Promise.all([1, 1].map((ttl) => issueToken(baseA, ttl))),
  ]);
  const expiredOnB = await Promise.all([1, 1].map((ttl) => issueToken(baseB, ttl)));
  // TTL 1 s: expired once 1 s has passed (the daemon's monotonic clock; 300 ms margin).
  await new Promise((r) => setTimeout(r, 1_300));
  const creds = await fetchCredentials(baseA, secret);
  /** Every access key STS issued for the role (any refresh included), plus the served secrets. */
  const secretsOf = (role: RoleName) => [
    creds[role].AccessKeyId,
    creds[role].SecretAccessKey,
    creds[role].Token,
    ...chain.sts.issued.filter((c) => c.roleArn === roleArn(role)).map((c) => c.accessKeyId),
  ];
  const portOf = (base: string) => Number(new URL(base).port);
  material = { port: portOf(baseA), validTokens, expiredTokens, foreignTokens, secret };
  materialB = { port: portOf(baseB), validTokens: foreignTokens, expiredTokens: expiredOnB, foreignTokens: validTokens, secret };
  world = { port: material.port, validTokens: new Set(validTokens), secret, secretsOf, creds };
  worldB = { ...world, port: materialB.port, validTokens: new Set(foreignTokens) };
}, 60_000);

afterAll(async () => {
  const code = await daemon?.stop();
  await chain?.close();
  if (daemon) {
    // SIGTERM after the whole run: a clean exit, and not one log line carried request bytes.
    expect(code).toBe(0);
    expect(daemon.output.filter((line) => line.includes(MARKER))).toEqual([]);
  }
  console.info(
    `hostile-input: seed ${SEED}, ${requestsChecked} requests checked, answers by status ${JSON.stringify(Object.fromEntries([...statusCounts].sort()))}; answered only as a known issue allows: ${JSON.stringify(Object.fromEntries(issueHits))}`,
  );
});

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/**
 * `count` generated requests, each made unique by 8 KiB in a header and 2 KiB in its path (half
 * of them) or query string.
 */
function flood(seed: number, count: number): HostileRequest[] {
  const unique = (i: number, bytes: number) => `${seed.toString(36)}-${i.toString(36)}-${randomBytes(bytes).toString('hex')}`.slice(0, bytes);
  return fc.sample(requestArb(material, everything(material)), { seed, numRuns: count }).map((req, i) => {
    const plainTarget = req.target.startsWith('/') && !/[#?]/.test(req.target);
    const u = unique(i, 2_048);
    const target = !plainTarget ? req.target : i % 2 ? `${req.target}/${u}` : `${req.target}?u=${u}`;
    return { ...req, target, lines: [...req.lines.slice(0, 1), `X-Unique: ${unique(i, 8_192)}`, ...req.lines.slice(1)] };
  });
}

/** Request shapes: which parts vary how much. */
const everything = (m: Material): Shape => ({
  method: methodArb,
  target: targetArb(m.port),
  token: [1, 6, 1],
  secret: [1, 6, 1],
  ttl: [1, 6, 1],
  forwarded: [8, 1, 1],
  oddities: 4,
});

describe('hostile input on a credential listener', () => {
  let beforeFlood: { rss: number; heapUsed: number; requests: number };

  it('warms up: a first burst of generated requests, each answered as documented', async () => {
    // The flood's own kind of requests, so that the baseline already holds what serving them needs.
    await pool(flood(SEED - 1, 2_500), 16, (req) => exchange(req, world));
    beforeFlood = { ...(await memoryAfterGc()), requests: requestsChecked };
  });

  it('answers any request with its documented status, and credentials only to the entitled', async () => {
    await fc.assert(
      fc.asyncProperty(requestArb(material, everything(material)), (req) => exchange(req, world)),
      assertOptions(1, 1_000),
    );
  });

  it('issues session tokens for TTLs 1…21600 only, echoing the TTL, whatever whitespace the wire carries; the token then opens IMDS', async () => {
    const shape: Shape = {
      method: fc.constant('PUT'),
      target: fc.constant('/latest/api/token'),
      token: [1, 0, 0],
      secret: [1, 0, 0],
      ttl: [1, 12, 2],
      forwarded: [12, 1, 1],
      oddities: 0,
    };
    await fc.assert(
      fc.asyncProperty(requestArb(material, shape), async (req) => {
        const prediction = predict(req, world);
        const ex = await sendRaw(world.port, serialize(req));
        verify(req, prediction, ex, world);
        const res = ex.responses[0]!;
        // (A token of a few seconds could expire before a slow machine sends the next request.)
        if (res.status !== 200 || Number(headerOf(res, 'x-aws-ec2-metadata-token-ttl-seconds')) < 10) return;
        // The token works at once, on this listener only.
        const token = res.body.toString('latin1');
        const get = (port: number) =>
          sendRaw(port, `GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-aws-ec2-metadata-token: ${token}\r\n\r\n`);
        expect((await get(world.port)).responses[0]?.status).toBe(200);
        expect((await get(worldB.port)).responses[0]?.status).toBe(401);
      }),
      assertOptions(2, 400),
    );
  });

  it('refuses forged, expired, truncated, bit-flipped and other listeners’ session tokens', async () => {
    const credentialPaths = fc.constantFrom(
      '/latest/meta-data/iam/security-credentials/app',
      '/latest/meta-data/iam/security-credentials-extended/app',
      '/latest/meta-data/iam/security-credentials/',
      '/latest/meta-data/iam/info',
      '/latest/meta-data/iam/security-credentials/other',
    );
    const shape = (_m: Material): Shape => ({
      method: fc.constantFrom('GET', 'GET', 'HEAD'),
      target: credentialPaths,
      token: [1, 12, 2],
      secret: [6, 1, 0],
      ttl: [6, 1, 0],
      forwarded: [6, 1, 0],
      oddities: 0,
    });
    // Half the runs on listener B, where A's tokens are the foreign ones.
    const either = fc.oneof(
      requestArb(material, shape(material)).map((req) => ({ req, w: world })),
      requestArb(materialB, shape(materialB)).map((req) => ({ req, w: worldB })),
    );
    await fc.assert(
      fc.asyncProperty(either, ({ req, w }) => exchange(req, w)),
      assertOptions(3, 500),
    );
  });

  it('refuses forged container secrets: same length, prefix, one byte more, other case, inner whitespace', async () => {
    const shape: Shape = {
      method: fc.constantFrom('GET', 'GET', 'HEAD'),
      target: fc.constantFrom(
        '/v1/credentials',
        '/v1/credentials/app',
        '/v1/credentials/other',
        '/v1/credentials/%6fther',
        '/v1/credentials/nope',
        '/v1/credentials/OTHER',
      ),
      token: [6, 1, 0],
      secret: [1, 12, 3],
      ttl: [6, 1, 0],
      forwarded: [6, 1, 0],
      oddities: 0,
    };
    await fc.assert(
      fc.asyncProperty(requestArb(material, shape), (req) => exchange(req, world)),
      assertOptions(4, 500),
    );
  });

  it('matches paths byte for byte: dot segments, escapes, case, slashes, long and binary paths', async () => {
    // Valid auth of both kinds and a valid TTL on every request, so only the path decides.
    const shape: Shape = {
      method: fc.constantFrom('GET', 'GET', 'PUT', 'HEAD'),
      target: targetArb(material.port),
      token: [1, 0, 0],
      secret: [1, 0, 0],
      ttl: [1, 0, 0],
      forwarded: [1, 0, 0],
      oddities: 0,
    };
    const auth = [`X-aws-ec2-metadata-token: ${material.validTokens[0]!}`, `Authorization: ${material.secret}`, 'X-aws-ec2-metadata-token-ttl-seconds: 60'];
    await fc.assert(
      fc.asyncProperty(
        requestArb(material, shape).map((req) => ({ ...req, lines: [...req.lines, ...auth] })),
        (req) => exchange(req, world),
      ),
      assertOptions(5, 800),
    );
  });

  it('never answers a request hidden in a body: one answer, then the connection is closed', async () => {
    const inner = (token: string) =>
      `GET /latest/meta-data/iam/security-credentials/app HTTP/1.1\r\nHost: 127.0.0.1\r\nX-aws-ec2-metadata-token: ${token}\r\nX-Note: ${MARKER}\r\n\r\n`;
    const smuggled = fc.record({
      method: fc.constantFrom('GET', 'PUT', 'POST', 'HEAD', 'DELETE'),
      target: fc.constantFrom('/latest/api/token', '/latest/meta-data/placement/region', '/v1/credentials', '/nowhere'),
      framing: fc.constantFrom('content-length', 'chunked', 'content-length-short'),
      pad: fc.integer({ min: 0, max: 1_500 }),
      after: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(smuggled, async ({ method, target, framing: how, pad, after }) => {
        const hidden = inner([...world.validTokens][0]!) + 'x'.repeat(pad);
        const second = after ? inner([...world.validTokens][0]!) : '';
        let lines: string[];
        let body: string;
        if (how === 'chunked') {
          lines = ['Transfer-Encoding: chunked'];
          body = `${hidden.length.toString(16)}\r\n${hidden}\r\n0\r\n\r\n`;
        } else if (how === 'content-length') {
          lines = [`Content-Length: ${hidden.length}`];
          body = hidden;
        } else {
          // The declared length ends inside the hidden request: the rest must not be parsed either.
          lines = ['Content-Length: 10'];
          body = hidden;
        }
        const req: HostileRequest = {
          method,
          target,
          version: 'HTTP/1.1',
          lines: [
            `Host: 127.0.0.1:${world.port}`,
            'X-aws-ec2-metadata-token-ttl-seconds: 60',
            `X-aws-ec2-metadata-token: ${[...world.validTokens][0]!}`,
            `Authorization: ${world.secret}`,
            ...lines,
          ],
          body: body + second,
        };
        const prediction = predict(req, world);
        const ex = await sendRaw(world.port, serialize(req), { head: method === 'HEAD', responses: 3, timeoutMs: 1_500 });
        // Only one answer can come: `responses: 3` waits for more until the server closes.
        expect(ex.responses.length, describeRequest(req)).toBe(1);
        expect(ex.closedByServer).toBe(true);
        verify(req, prediction, { ...ex, timedOut: false }, world);
      }),
      assertOptions(6, 150),
    );
  });

  it('stays up with bounded memory through a flood of hostile requests', async () => {
    // Every request carries 8 KiB that no other request has, in a header, and 2 KiB more in
    // the path (half of them) or the query string: a daemon that kept any part of the requests
    // it answered (a header, a path, a metric label or an error rendering per path) would hold
    // 12,000 × 2 KiB / 2 = 12 MB more at least, and 96 MB if it kept headers.
    //
    // Memory is read after a full garbage collection, after the warm-up and after the flood
    // (and the properties before it); without the collection RSS swings by up to 30 MB with
    // the garbage the heap carries. RSS may move without a leak (old-space and code-space
    // sizing, code compiled for paths seen late, allocator arenas of 16 busy connections):
    // 3–5 MB in every run while this was written, hence the bound of 30 MB, crossed by a leak of
    // 2.5 KB per request. The V8 heap in use after a collection moved by under 0.5 MB: its
    // bound, 10 MB, is crossed by a leak of 900 bytes per request (a path kept per request).
    const FLOOD = 12_000;
    await pool(flood(SEED + 7, FLOOD), 16, (req) => exchange(req, world));
    const after = await memoryAfterGc();
    const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
    console.info(
      `hostile-input: after a full GC, RSS ${mb(beforeFlood.rss)} MB and V8 heap ${mb(beforeFlood.heapUsed)} MB after the warm-up, ${mb(after.rss)} MB and ${mb(after.heapUsed)} MB after ${requestsChecked - beforeFlood.requests} more requests`,
    );
    expect(after.rss - beforeFlood.rss).toBeLessThan(30 * 2 ** 20);
    expect(after.heapUsed - beforeFlood.heapUsed).toBeLessThan(10 * 2 ** 20);
  }, 60_000);

  it('is still alive and serving afterwards: /healthz, the IMDSv2 sequence, the JS SDK on the container endpoint', async () => {
    expect(daemon.child.exitCode).toBeNull();
    expect(daemon.output.filter((line) => /"level":(50|60)/.test(line))).toEqual([]);
    const health = await request(`${daemon.admin}/healthz`);
    expect(health.statusCode).toBe(200);
    await health.body.dump();
    // Metrics: labelled by route template, never by what clients sent (docs/endpoints.md, Metrics).
    const metrics = await (await request(`${daemon.admin}/metrics`)).body.text();
    expect(metrics).not.toContain(MARKER);
    const templates = new Set([...EXACT_ROUTES.keys(), ...ROLE_ROUTES.map(([prefix]) => `${prefix}:role`), 'unmatched']);
    const routes = [...metrics.matchAll(/^crosscred_http_requests_total\{route="([^"]*)",status="([^"]*)"\}/gm)];
    expect(routes.length).toBeGreaterThan(0);
    expect(routes.filter(([, route, status]) => !templates.has(route!) || !/^[1-5]\d\d$/.test(status!)).map(([line]) => line)).toEqual([]);
    const base = daemon.listeners[0]!;
    // The IMDSv2 sequence every SDK makes.
    const token = await issueToken(base, 21_600);
    const list = await request(`${base}/latest/meta-data/iam/security-credentials/`, { headers: { 'x-aws-ec2-metadata-token': token } });
    expect(await list.body.text()).toBe('app');
    const creds = (await (
      await request(`${base}/latest/meta-data/iam/security-credentials/app`, { headers: { 'x-aws-ec2-metadata-token': token } })
    ).body.json()) as Credentials;
    expect(creds.AccessKeyId).toBe(world.creds.app.AccessKeyId);
    // The unmodified JS SDK's container provider, for both roles.
    for (const role of ROLES) {
      const sdk = await fromHttp({ awsContainerCredentialsFullUri: `${base}/v1/credentials/${role}`, awsContainerAuthorizationToken: world.secret })();
      expect(sdk.accessKeyId).toBe(world.creds[role].AccessKeyId);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The security-relevant departures this file found, kept as plain tests now that they are fixed:
// each was a 200 before (src/http/listener.ts: maxHeadersCount, repeatsHost).
// ---------------------------------------------------------------------------------------------

describe('header tricks that used to get past the guards', () => {
  const filler = (n: number) => Array.from({ length: n }, (_, i) => `f${i}: `);

  it('refuses a token PUT whose X-Forwarded-For comes after 1000 other header lines (403)', async () => {
    const req: HostileRequest = {
      method: 'PUT',
      target: '/latest/api/token',
      version: 'HTTP/1.1',
      lines: [`Host: 127.0.0.1:${world.port}`, 'X-aws-ec2-metadata-token-ttl-seconds: 60', ...filler(998), 'X-Forwarded-For: 203.0.113.7'],
      body: '',
    };
    const res = (await sendRaw(world.port, serialize(req))).responses[0];
    expect(res?.status).toBe(403);
  });

  it('refuses a foreign Host that comes after 1000 other header lines (HTTP/1.0: 403)', async () => {
    const req: HostileRequest = {
      method: 'GET',
      target: '/latest/meta-data/placement/region',
      version: 'HTTP/1.0',
      lines: [`X-aws-ec2-metadata-token: ${[...world.validTokens][0]!}`, ...filler(999), 'Host: attacker.example'],
      body: '',
    };
    const res = (await sendRaw(world.port, serialize(req))).responses[0];
    expect(res?.status).toBe(403);
  });

  it('refuses a second, foreign Host line (400 or 403, never served)', async () => {
    const req: HostileRequest = {
      method: 'GET',
      target: '/latest/meta-data/placement/region',
      version: 'HTTP/1.1',
      lines: [`Host: 127.0.0.1:${world.port}`, 'Host: attacker.example', `X-aws-ec2-metadata-token: ${[...world.validTokens][0]!}`],
      body: '',
    };
    const res = (await sendRaw(world.port, serialize(req))).responses[0];
    expect([400, 403]).toContain(res?.status);
  });
});
