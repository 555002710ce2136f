import { rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { decodeJwt, generateKeyPair, SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CrosscredError } from '../../src/core/errors.js';
import { AttestationError, type AttestedIdentity, type Attestor } from '../../src/issuer/attestor.js';
import { TencentCamRoleAttestor } from '../../src/issuer/attestors/tencent-cam-role.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/issuer-server.js';
import { cvmRoleCredentials } from '../../src/platform/tencent/cvm-role-credentials.js';
import { signTc3 } from '../../src/platform/tencent/tc3-signature.js';
import {
  BINDING_HEADERS,
  encodeSubjectToken,
  type SignedRequestAttestation,
  SUBJECT_TOKEN_TYPES,
  type SubjectTokenType,
  type TokenExchangeError,
} from '../../src/protocol/issuer-token-exchange.js';
import { IssuerClient } from '../../src/sources/issuer-client.js';
import { signTencentGetCallerIdentity, TencentCvmTokenSource, type TencentRoleCredentials } from '../../src/sources/tencent-cvm-token-source.js';
import { memoryLogger } from '../support/chain.js';
import { FakeClock } from '../support/fake-clock.js';
import { agentTo, FakeCvmMetadata, FakeTencentSts, type IssuedKey, routeMetadataHostTo } from '../support/fake-tencent-cloud.js';
import { baseConfig, configFrom, freePort, makeKey, tempDir } from '../support/issuer-fixtures.js';

/**
 * The Tencent CVM CAM-role attestation, every part real except Tencent: the fake STS of
 * test/support/fake-tencent-cloud.ts (itself checked here against the official SDK's signer), the
 * fake CVM metadata server read through the SDK's own CvmRoleCredential, the attestor making real
 * HTTP calls, and the tencent-cvm source talking to a token endpoint through the real IssuerClient.
 * Every refusal is checked for its OAuth error, a message saying why, no identity, and no secret
 * (key, token, signature) in the message.
 */

// The official SDK, required as the CommonJS it is (its exports are getters that ESM interop misses).
const tencentcloud = createRequire(import.meta.url)('tencentcloud-sdk-nodejs-common') as typeof import('tencentcloud-sdk-nodejs-common');

const UIN = '100012345678';
const ROLE_ID = '4611686018427418890';
const ROLE_NAME = 'crosscred-test';
const ISSUER = 'https://issuer.crosscred.test';
const SECOND = 1000;

/** The wall clock the fake STS and the token endpoint read; the source tests point it at their FakeClock. */
let wallNow: () => number = Date.now;
let sts: FakeTencentSts;
let metadata: FakeCvmMetadata;
let attestor: TencentCamRoleAttestor;
/** A loopback server that must never be contacted: it counts connections. */
let trap: { server: Server; port: number; connections: number };
/** Every secret handed out in this file, for the "no secret in any message" checks. */
const secrets = new Set<string>();

function remember(key: IssuedKey): IssuedKey {
  secrets.add(key.secretKey);
  if (key.token) secrets.add(key.token);
  return key;
}

function context(overrides: { issuerUrl?: string; signal?: AbortSignal } = {}) {
  return { issuerUrl: overrides.issuerUrl ?? ISSUER, nowWall: wallNow(), signal: overrides.signal ?? AbortSignal.timeout(10 * SECOND) };
}

function nowSeconds(): number {
  return Math.floor(wallNow() / SECOND);
}

/** A correct attestation, as the tencent-cvm source makes it. */
function honest(key: IssuedKey = metadata.currentKey(), options: { timestamp?: number; issuerUrl?: string } = {}): SignedRequestAttestation {
  remember(key);
  return signTencentGetCallerIdentity({
    credentials: key,
    issuerUrl: options.issuerUrl ?? ISSUER,
    stsEndpoint: sts.url,
    timestamp: options.timestamp ?? nowSeconds(),
  });
}

/** An attestation signed by hand: any headers, any SignedHeaders, any URL. */
function crafted(options: {
  headers?: Record<string, string | undefined>;
  signed?: string[];
  url?: string;
  key?: IssuedKey;
  timestamp?: number;
  body?: string;
}): SignedRequestAttestation {
  const key = remember(options.key ?? metadata.currentKey());
  const timestamp = options.timestamp ?? nowSeconds();
  const url = options.url ?? sts.url;
  const base: Record<string, string | undefined> = {
    'content-type': 'application/json',
    host: new URL(url).host,
    [BINDING_HEADERS.tencent]: ISSUER,
    'x-tc-action': 'GetCallerIdentity',
    'x-tc-timestamp': String(timestamp),
    'x-tc-version': '2018-08-13',
    'x-tc-token': key.token,
    ...options.headers,
  };
  const headers = Object.fromEntries(Object.entries(base).filter((e): e is [string, string] => e[1] !== undefined));
  const signed = options.signed ?? ['content-type', 'host', BINDING_HEADERS.tencent, 'x-tc-action', 'x-tc-timestamp', 'x-tc-version'];
  const body = options.body ?? '{}';
  headers['authorization'] = signTc3({ method: 'POST', url, headers, body }, key, { service: 'sts', timestamp, signedHeaders: signed });
  return { method: 'POST', url, headers, body };
}

function token(attestation: SignedRequestAttestation | Record<string, unknown>): string {
  return encodeSubjectToken(attestation as SignedRequestAttestation);
}

/** Expects a refusal: the OAuth error, a message matching `why`, and no secret anywhere in it. */
async function refused(work: Promise<AttestedIdentity>, oauthError: AttestationError['oauthError'], why: RegExp): Promise<AttestationError> {
  let identity: AttestedIdentity | undefined;
  let error: unknown;
  try {
    identity = await work;
  } catch (err) {
    error = err;
  }
  expect(identity, 'an identity was returned').toBeUndefined();
  expect(error).toBeInstanceOf(AttestationError);
  const e = error as AttestationError;
  expect(e.message).toMatch(why);
  expect(e.oauthError).toBe(oauthError);
  for (const secret of secrets) expect(e.message).not.toContain(secret);
  expect(e.message).not.toMatch(/[0-9a-f]{64}/); // no signature
  return e;
}

beforeAll(async () => {
  sts = await FakeTencentSts.start({ now: () => wallNow() });
  metadata = await FakeCvmMetadata.start({ sts, uin: UIN, roleId: ROLE_ID, roleName: ROLE_NAME, now: () => wallNow() });
  attestor = new TencentCamRoleAttestor({ extraStsEndpoints: [sts.url], timeoutMs: 3 * SECOND });
  const server = createServer((_req, res) => res.end());
  trap = { server, port: 0, connections: 0 };
  server.on('connection', () => trap.connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  trap.port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await attestor.close();
  await metadata.close();
  await sts.close();
  await new Promise<void>((resolve) => trap.server.close(() => resolve()));
});

describe('the fake STS', () => {
  it('accepts GetCallerIdentity signed by the official SDK (CommonClient), and refuses it with a wrong key', async () => {
    const key = remember(sts.issueRoleKey({ uin: UIN, roleId: ROLE_ID, roleName: ROLE_NAME }));
    const client = (secretKey: string) =>
      new tencentcloud.CommonClient('sts.tencentcloudapi.com', '2018-08-13', {
        credential: { secretId: key.secretId, secretKey, token: key.token },
        region: 'ap-guangzhou',
        profile: { httpProfile: { protocol: 'http://', agent: agentTo(sts.port) } },
      });
    const answer = (await client(key.secretKey).request('GetCallerIdentity', {})) as Record<string, unknown>;
    expect(answer).toMatchObject({ Arn: `qcs::sts:${UIN}:assumed-role/${ROLE_ID}`, AccountId: UIN, Type: 'CAMRole' });
    expect(sts.records.at(-1)?.headers['authorization']).toContain('SignedHeaders=content-type;host,');
    await expect(client('wrong').request('GetCallerIdentity', {})).rejects.toMatchObject({ code: 'AuthFailure.SignatureFailure' });
  });
});

describe('TencentCamRoleAttestor accepts', () => {
  it('a GetCallerIdentity signed with the CVM role key and bound to this issuer, and names the role STS confirms', async () => {
    const before = sts.accepted.length;
    const attestation = honest();
    const identity = await attestor.attest(token(attestation), context());
    expect(identity).toMatchObject({
      kind: SUBJECT_TOKEN_TYPES.tencentCamRole,
      cloud: 'tencent',
      accountId: UIN,
      roleId: ROLE_ID,
      attributes: {
        arn: `qcs::sts:${UIN}:assumed-role/${ROLE_ID}`,
        'sts-endpoint': '127.0.0.1',
        'user-id': `${ROLE_ID}:ins-fake0001`,
        'principal-id': UIN,
        'session-name': 'ins-fake0001',
      },
    });
    expect(identity.region).toBeUndefined(); // X-TC-Region is the caller's claim, not an attested fact
    expect(identity.instanceId).toBeUndefined(); // a CVM role session's naming is unconfirmed
    expect(identity.replayKey).toMatch(/^tencent-tc3:[0-9a-f]{64}$/);
    expect(identity.replayKey).not.toContain(attestation.headers['authorization']!.slice(-64));
    expect(identity.replayUntilWall).toBe((Number(attestation.headers['x-tc-timestamp']) + 300) * SECOND);
    expect(sts.accepted.length).toBe(before + 1);
    // Forwarded: the signed headers, the token and authorization; nothing else from the caller.
    const forwarded = Object.keys(sts.accepted.at(-1)!.headers).filter((h) => h !== 'content-length' && h !== 'connection');
    expect(forwarded.sort()).toEqual(
      ['authorization', 'content-type', 'host', BINDING_HEADERS.tencent, 'x-tc-action', 'x-tc-timestamp', 'x-tc-token', 'x-tc-version'].sort(),
    );
  });

  it('a request signed up to 300 s ago or ahead, and X-TC-Region unsigned as the SDK sends it', async () => {
    await expect(attestor.attest(token(honest(undefined, { timestamp: nowSeconds() - 295 })), context())).resolves.toMatchObject({ roleId: ROLE_ID });
    await expect(attestor.attest(token(honest(undefined, { timestamp: nowSeconds() + 295 })), context())).resolves.toMatchObject({ roleId: ROLE_ID });
    await expect(attestor.attest(token(crafted({ headers: { 'x-tc-region': 'ap-guangzhou' } })), context())).resolves.toMatchObject({ roleId: ROLE_ID });
  });
});

describe('TencentCamRoleAttestor refuses, with no identity', () => {
  let stsCalls: number;
  beforeEach(() => {
    stsCalls = sts.records.length;
  });
  /** For refusals decided before any network call. */
  const expectNoStsCall = () => expect(sts.records.length, 'STS was called').toBe(stsCalls);

  it('a stale timestamp', async () => {
    await refused(attestor.attest(token(honest(undefined, { timestamp: nowSeconds() - 301 })), context()), 'invalid_grant', /30\d s old; at most 300 s/);
    expectNoStsCall();
  });

  it('a future timestamp', async () => {
    await refused(
      attestor.attest(token(honest(undefined, { timestamp: nowSeconds() + 301 })), context()),
      'invalid_grant',
      /in the future; at most 300 s of clock skew/,
    );
    expectNoStsCall();
  });

  it('a timestamp outside a narrower configured window', async () => {
    const strict = new TencentCamRoleAttestor({ extraStsEndpoints: [sts.url], maxAgeSeconds: 60 });
    await refused(strict.attest(token(honest(undefined, { timestamp: nowSeconds() - 90 })), context()), 'invalid_grant', /at most 60 s/);
    await strict.close();
  });

  it('a request bound to another issuer', async () => {
    await refused(
      attestor.attest(token(honest(undefined, { issuerUrl: 'https://other-issuer.example' })), context()),
      'invalid_grant',
      /bound to the issuer "https:\/\/other-issuer\.example", not to this one/,
    );
    expectNoStsCall();
  });

  it('a request with no binding header', async () => {
    const attestation = crafted({ headers: { [BINDING_HEADERS.tencent]: undefined }, signed: ['content-type', 'host', 'x-tc-action'] });
    await refused(attestor.attest(token(attestation), context()), 'invalid_grant', /no x-crosscred-audience header/);
    expectNoStsCall();
  });

  it('a binding header the signature does not cover', async () => {
    const attestation = crafted({ signed: ['content-type', 'host', 'x-tc-action', 'x-tc-timestamp'] });
    await refused(attestor.attest(token(attestation), context()), 'invalid_grant', /x-crosscred-audience header is not covered by the signature/);
    expectNoStsCall();
  });

  it('a binding header changed after signing (STS finds the signature wrong)', async () => {
    const attestation = honest(undefined, { issuerUrl: 'https://other-issuer.example' });
    const moved = { ...attestation, headers: { ...attestation.headers, [BINDING_HEADERS.tencent]: ISSUER } };
    await refused(attestor.attest(token(moved), context()), 'invalid_grant', /AuthFailure\.SignatureFailure: the signature does not match/);
    expect(sts.records.at(-1)?.outcome).toBe('AuthFailure.SignatureFailure');
  });

  it('an X-TC-Action the signature does not cover', async () => {
    const attestation = crafted({ signed: ['content-type', 'host', BINDING_HEADERS.tencent, 'x-tc-timestamp'] });
    await refused(attestor.attest(token(attestation), context()), 'invalid_grant', /X-TC-Action header is not covered by the signature/);
    expectNoStsCall();
  });

  it('an action other than GetCallerIdentity', async () => {
    await refused(
      attestor.attest(token(crafted({ headers: { 'x-tc-action': 'AssumeRole' } })), context()),
      'invalid_grant',
      /action is "AssumeRole", not GetCallerIdentity/,
    );
    expectNoStsCall();
  });

  it.each([
    ['an unrelated host', 'https://evil.example/', /"evil\.example".*not an official Tencent STS host/],
    ['a look-alike host', 'https://sts.tencentcloudapi.com.evil.example/', /not an official Tencent STS host/],
    ['an official host with a trailing dot', 'https://sts.tencentcloudapi.com./', /not an official Tencent STS host/],
    ['user information', 'https://user:hunter2@sts.tencentcloudapi.com/', /carries user information/],
    ['a port other than 443', 'https://sts.tencentcloudapi.com:8443/', /only port 443/],
    ['http to an official host', 'http://sts.tencentcloudapi.com/', /only https is allowed/],
    ['http to a loopback host that is not configured', 'http://127.0.0.1:TRAP/', /only https is allowed/],
    ['another path', 'https://sts.tencentcloudapi.com/v2/', /path must be \//],
    ['a query', 'https://sts.tencentcloudapi.com/?Action=AssumeRole', /query or fragment/],
    ['a configured endpoint with another path', 'STS/x', /path must be \//],
  ])('a request aimed at %s (SSRF)', async (_, rawUrl, why) => {
    const url = rawUrl.replace('TRAP', String(trap.port)).replace(/^STS\//, sts.url);
    const before = trap.connections;
    const e = await refused(attestor.attest(token(crafted({ url })), context()), 'invalid_grant', why);
    expect(e.message).not.toContain('hunter2');
    expectNoStsCall();
    expect(trap.connections).toBe(before);
  });

  it('a Host header that is not the host the request goes to', async () => {
    const attestation = crafted({ headers: { host: 'sts.tencentcloudapi.com' } });
    await refused(
      attestor.attest(token(attestation), context()),
      'invalid_grant',
      /signed Host "sts\.tencentcloudapi\.com" is not the host the request is aimed at/,
    );
    expectNoStsCall();
  });

  it('a tampered body', async () => {
    const attestation = honest();
    await refused(
      attestor.attest(token({ ...attestation, body: '{"RoleArn":"qcs::cam::uin/1:roleName/admin"}' }), context()),
      'invalid_grant',
      /body is not \{\}/,
    );
    await refused(attestor.attest(token(crafted({ body: '{"Extra":1}' })), context()), 'invalid_grant', /body is not \{\}/);
    expectNoStsCall();
  });

  it('a key the STS does not know', async () => {
    const unknown = { ...metadata.currentKey(), secretId: 'AKIDnotissuedbysts0000000000000' };
    await refused(attestor.attest(token(honest(unknown)), context()), 'invalid_grant', /AuthFailure\.SecretIdNotFound/);
  });

  it("an expired role key, and a token that is not the key's", async () => {
    const expired = sts.issueRoleKey({ uin: UIN, roleId: ROLE_ID, roleName: ROLE_NAME }, -60);
    await refused(attestor.attest(token(honest(expired)), context()), 'invalid_grant', /AuthFailure\.TokenFailure/);
    await refused(
      attestor.attest(token(crafted({ headers: { 'x-tc-token': 'forged-token-value' } })), context()),
      'invalid_grant',
      /AuthFailure\.TokenFailure/,
    );
  });

  it("a CAM user's key instead of a role's", async () => {
    const user = sts.issueUserKey({ uin: UIN, subUin: '100099999999' });
    await refused(attestor.attest(token(honest(user)), context()), 'invalid_grant', /belongs to "CAMUser", not a CAMRole/);
    expect(sts.records.at(-1)?.outcome).toBe('ok'); // STS confirmed it; the attestor refused the kind
  });

  it('an STS answer that does not name an assumed role, or names two accounts', async () => {
    sts.failNext({ kind: 'identity', response: { Type: 'CAMRole', Arn: `qcs::cam::uin/${UIN}:roleName/admin`, AccountId: UIN } });
    await refused(attestor.attest(token(honest()), context()), 'invalid_grant', /not "qcs::sts:<uin>:assumed-role\/<RoleId>"/);
    sts.failNext({ kind: 'identity', response: { Type: 'CAMRole', Arn: `qcs::sts:${UIN}:assumed-role/${ROLE_ID}`, AccountId: '100000000001' } });
    await refused(attestor.attest(token(honest()), context()), 'invalid_grant', /AccountId "100000000001", which is not the account of its Arn/);
  });

  it.each([
    ['headers the issuer does not forward', { 'transfer-encoding': 'chunked' }, /header transfer-encoding is not one crosscred forwards/],
    ['a header name in upper case', { 'X-TC-Action': 'GetCallerIdentity' }, /not a lower-case header name/],
    ['a header value with a line break', { 'x-tc-region': 'ap-guangzhou\r\nx-evil: 1' }, /not printable ASCII/],
    ['a region that is not one', { 'x-tc-region': 'ap guangzhou' }, /not a Tencent region name/],
  ])('%s (invalid_request)', async (_, extra, why) => {
    const attestation = crafted({});
    await refused(attestor.attest(token({ ...attestation, headers: { ...attestation.headers, ...extra } }), context()), 'invalid_request', why);
    expectNoStsCall();
  });

  /** Built lazily: the fakes exist only once beforeAll has run. */
  const withoutRegion = () => {
    const a = crafted({ signed: ['content-type', 'host', BINDING_HEADERS.tencent, 'x-tc-action', 'x-tc-region'], headers: { 'x-tc-region': 'ap-beijing' } });
    const { 'x-tc-region': _, ...headers } = a.headers;
    return token({ ...a, headers });
  };
  it.each([
    ['an empty token', () => '', /is empty/],
    ['not base64url', () => 'a+b/c=', /not base64url/],
    ['not JSON', () => Buffer.from('not json').toString('base64url'), /not the base64url of a JSON object/],
    ['another method', () => token({ ...crafted({}), method: 'GET' }), /method must be POST/],
    ['an extra field', () => token({ ...crafted({}), extra: 1 }), /exactly "method", "url", "headers" and "body"/],
    ['no authorization', () => token({ ...crafted({}), headers: { host: 'x' } }), /no authorization header/],
    [
      'an Authorization of another scheme',
      () => token({ ...crafted({}), headers: { ...crafted({}).headers, authorization: 'AWS4-HMAC-SHA256 Credential=x' } }),
      /does not start with TC3-HMAC-SHA256/,
    ],
    ['a signed header that is absent', withoutRegion, /covers x-tc-region, but the request has no such header/],
    ['a huge token', () => 'A'.repeat(40_000), /longer than/],
  ])('a malformed subject token: %s', async (_, subjectToken, why) => {
    await refused(attestor.attest(subjectToken(), context()), 'invalid_request', why);
    expectNoStsCall();
  });
});

describe('TencentCamRoleAttestor when STS misbehaves', () => {
  it.each([
    ['InternalError', { kind: 'error', code: 'InternalError' }, 'temporarily_unavailable', /InternalError/],
    ['RequestLimitExceeded', { kind: 'error', code: 'RequestLimitExceeded' }, 'temporarily_unavailable', /RequestLimitExceeded/],
    ['an unknown error code', { kind: 'error', code: 'FailedOperation.Something' }, 'invalid_grant', /FailedOperation\.Something/],
    ['HTTP 503', { kind: 'status', status: 503 }, 'temporarily_unavailable', /HTTP 503/],
    ['HTTP 403', { kind: 'status', status: 403 }, 'invalid_grant', /HTTP 403/],
    ['a huge answer', { kind: 'huge' }, 'temporarily_unavailable', /more than 65536 bytes/],
    ['not JSON', { kind: 'status', status: 200, body: '<html>gateway</html>' }, 'temporarily_unavailable', /not a Tencent API answer/],
  ] as const)('%s', async (_, fault, oauthError, why) => {
    sts.failNext(fault);
    await refused(attestor.attest(token(honest()), context()), oauthError, why);
  });

  it('does not follow a redirect', async () => {
    const before = trap.connections;
    sts.failNext({ kind: 'redirect', location: `http://127.0.0.1:${trap.port}/` });
    await refused(attestor.attest(token(honest()), context()), 'invalid_grant', /HTTP 302/);
    expect(trap.connections).toBe(before);
  });

  it('says STS is unreachable when it is', async () => {
    const closed = await FakeTencentSts.start();
    const url = closed.url;
    await closed.close();
    const lonely = new TencentCamRoleAttestor({ extraStsEndpoints: [url] });
    await refused(lonely.attest(token(crafted({ url })), context()), 'temporarily_unavailable', /could not be reached \(ECONNREFUSED\)/);
    await lonely.close();
  });

  it("gives up when the token request's deadline passes (context.signal), and on its own timeout", async () => {
    sts.failNext({ kind: 'delay', ms: 2_000 });
    const started = Date.now();
    await refused(attestor.attest(token(honest()), context({ signal: AbortSignal.timeout(200) })), 'temporarily_unavailable', /deadline passed/);
    expect(Date.now() - started).toBeLessThan(1_500);
    const quick = new TencentCamRoleAttestor({ extraStsEndpoints: [sts.url], timeoutMs: 200 });
    sts.failNext({ kind: 'delay', ms: 2_000 });
    await refused(quick.attest(token(honest()), context()), 'temporarily_unavailable', /did not answer within 200 ms/);
    await quick.close();
    // Both delayed requests are recorded when their delay ends: let that happen in this test's window.
    await sts.idle();
  });

  it('reaches an HTTPS endpoint through the configured CA bundle, and refuses a certificate it does not trust', async () => {
    const tlsSts = await FakeTencentSts.start({ tls: true, now: () => wallNow() });
    try {
      const key = remember(tlsSts.issueRoleKey({ uin: UIN, roleId: ROLE_ID, roleName: ROLE_NAME }));
      const attestation = () => token(signTencentGetCallerIdentity({ credentials: key, issuerUrl: ISSUER, stsEndpoint: tlsSts.url, timestamp: nowSeconds() }));
      const trusting = new TencentCamRoleAttestor({ extraStsEndpoints: [tlsSts.url], caBundle: tlsSts.caPem! });
      await expect(trusting.attest(attestation(), context())).resolves.toMatchObject({ accountId: UIN, roleId: ROLE_ID });
      await trusting.close();
      const untrusting = new TencentCamRoleAttestor({ extraStsEndpoints: [tlsSts.url] });
      await refused(
        untrusting.attest(attestation(), context()),
        'temporarily_unavailable',
        /could not be reached \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\)/,
      );
      await untrusting.close();
      expect(tlsSts.accepted.length).toBe(1);
    } finally {
      await tlsSts.close();
    }
  });

  it('refuses unusable settings at construction', () => {
    expect(() => new TencentCamRoleAttestor({ extraStsEndpoints: ['http://sts.example.com/'] })).toThrow(/https \(http only to a loopback address\)/);
    expect(() => new TencentCamRoleAttestor({ extraStsEndpoints: ['https://sts.example.com/path'] })).toThrow(/plain URL/);
    expect(() => new TencentCamRoleAttestor({ maxAgeSeconds: 900 })).toThrow(/from 1 to 300/);
  });
});

describe("the SDK's CvmRoleCredential against the fake metadata server", () => {
  let restore: () => void;
  beforeAll(async () => {
    restore = await routeMetadataHostTo(metadata);
  });
  afterAll(() => restore());
  afterEach(() => {
    metadata.state.roleName = ROLE_NAME;
    metadata.state.code = 'Success';
  });

  it("reads the bound role's key", async () => {
    const key = remember(metadata.currentKey());
    const credentials = await cvmRoleCredentials(new FakeClock(Date.now()))();
    expect(credentials).toEqual({ secretId: key.secretId, secretKey: key.secretKey, token: key.token });
    expect(metadata.paths.slice(-2)).toEqual(['/latest/meta-data/cam/security-credentials/', `/latest/meta-data/cam/security-credentials/${ROLE_NAME}`]);
  });

  it('never sends the metadata request through the lower-case http_proxy (the SDK would), and leaves the variable as it was', async () => {
    const before = trap.connections;
    const proxy = `http://127.0.0.1:${trap.port}`;
    process.env['http_proxy'] = proxy;
    try {
      const credentials = await cvmRoleCredentials(new FakeClock(Date.now()))();
      expect(credentials.secretId).toBe(metadata.currentKey().secretId);
      expect(process.env['http_proxy']).toBe(proxy);
    } finally {
      delete process.env['http_proxy'];
    }
    expect(trap.connections).toBe(before);
  });

  it('says so, without secrets, when no role is bound or the metadata server refuses', async () => {
    metadata.state.roleName = undefined;
    const read = cvmRoleCredentials(new FakeClock(Date.now()));
    await expect(read()).rejects.toMatchObject({
      code: 'CROSSCRED_ERR_TENCENT_CVM_ROLE_UNAVAILABLE',
      message: expect.stringMatching(/naming the CAM role.*role is bound/),
    });
    metadata.state.roleName = ROLE_NAME;
    metadata.state.code = 'Failed';
    const err = (await read().catch((e: unknown) => e)) as CrosscredError;
    expect(err.code).toBe('CROSSCRED_ERR_TENCENT_CVM_ROLE_UNAVAILABLE');
    expect(err.message).toMatch(/Code: Failed/);
    expect(err.message).not.toContain(metadata.currentKey().secretKey);
    expect(err.cause).toBeUndefined();
  });
});

/**
 * A token endpoint just big enough for the chain: RFC 8693 form in, the attestor, a seen-set, an
 * ES256 JWT out. (src/issuer/token-endpoint.ts is the real one; this keeps the Tencent chain's
 * test independent of the issuer's configuration.)
 */
async function startTokenEndpoint(verifier: TencentCamRoleAttestor) {
  const { privateKey } = await generateKeyPair('ES256');
  const seen = new Set<string>();
  const sockets = new Set<Socket>();
  let issued = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      void (async () => {
        const form = new URLSearchParams(body);
        const fail = (status: number, error: TokenExchangeError['error'], description: string) => {
          res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ error, error_description: description }));
        };
        if (form.get('subject_token_type') !== SUBJECT_TOKEN_TYPES.tencentCamRole) return fail(400, 'invalid_request', 'unsupported subject_token_type');
        try {
          const identity = await verifier.attest(form.get('subject_token') ?? '', { issuerUrl, nowWall: wallNow(), signal: AbortSignal.timeout(5_000) });
          if (seen.has(identity.replayKey)) return fail(400, 'invalid_grant', 'this attestation was already used');
          seen.add(identity.replayKey);
          const iat = Math.floor(wallNow() / SECOND);
          const jwt = await new SignJWT({ 'https://aws.amazon.com/tags': { principal_tags: { RoleId: [identity.roleId!] } } })
            .setProtectedHeader({ alg: 'ES256', kid: 'test-key' })
            .setIssuer(issuerUrl)
            .setSubject(`tencent:cam:${identity.accountId}:role/${identity.roleId}`)
            .setAudience('sts.amazonaws.com')
            .setIssuedAt(iat)
            .setExpirationTime(iat + 3600)
            .setJti(`jti-${++issued}`)
            .sign(privateKey);
          res
            .writeHead(200, { 'content-type': 'application/json' })
            .end(JSON.stringify({ access_token: jwt, issued_token_type: 'urn:ietf:params:oauth:token-type:jwt', token_type: 'N_A', expires_in: 3600 }));
        } catch (err) {
          if (err instanceof AttestationError) return fail(err.oauthError === 'temporarily_unavailable' ? 503 : 400, err.oauthError, err.message);
          fail(500, 'temporarily_unavailable', 'internal error');
        }
      })();
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuerUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    issuerUrl,
    get issued() {
      return issued;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('TencentCvmTokenSource → IssuerClient → token endpoint → attestor → STS', () => {
  let clock: FakeClock;
  let endpoint: Awaited<ReturnType<typeof startTokenEndpoint>>;
  let issuer: IssuerClient;
  let restoreMetadata: () => void;

  beforeAll(async () => {
    endpoint = await startTokenEndpoint(attestor);
    issuer = new IssuerClient({ issuerUrl: endpoint.issuerUrl, connectTimeoutMs: 2_000, responseTimeoutMs: 5_000 });
    restoreMetadata = await routeMetadataHostTo(metadata);
  });
  afterAll(async () => {
    restoreMetadata();
    wallNow = Date.now;
    await issuer.close();
    await endpoint.close();
  });
  let testIndex = 0;
  beforeEach(() => {
    // Each test starts 20 s after the previous one's start, in fake time: the same key signing the
    // same request in the same second makes the same signature, which the seen-set refuses.
    clock = new FakeClock(Date.now() + 20 * SECOND * testIndex++);
    wallNow = () => clock.wallNow();
  });

  function source(overrides: Partial<ConstructorParameters<typeof TencentCvmTokenSource>[0]> = {}) {
    return new TencentCvmTokenSource({ issuer, issuerUrl: endpoint.issuerUrl, stsEndpoint: sts.url, clock, ...overrides });
  }

  it("gets a JWT for the instance's role with the SDK's credentials, caches it, and shares one attestation among concurrent callers", async () => {
    remember(metadata.currentKey());
    const s = source();
    const before = sts.accepted.length;
    const tokens = await Promise.all([s.getToken(), s.getToken(), s.getToken(), s.getToken()]);
    expect(new Set(tokens.map((t) => t.token)).size).toBe(1);
    expect(tokens[0]!.claims).toMatchObject({ iss: endpoint.issuerUrl, sub: `tencent:cam:${UIN}:role/${ROLE_ID}`, aud: 'sts.amazonaws.com', alg: 'ES256' });
    expect(tokens[0]!.expiresAtWall).toBe(tokens[0]!.claims.exp * SECOND);
    expect(sts.accepted.length).toBe(before + 1);
    // The request STS saw was signed over the binding and the action.
    expect(sts.accepted.at(-1)!.headers['authorization']).toContain(
      'SignedHeaders=content-type;host;x-crosscred-audience;x-tc-action;x-tc-timestamp;x-tc-version,',
    );
    expect(sts.accepted.at(-1)!.headers[BINDING_HEADERS.tencent]).toBe(endpoint.issuerUrl);
    await expect(s.getToken()).resolves.toBe(tokens[0]);
    expect(sts.accepted.length).toBe(before + 1);
    expect(s.description).toContain(endpoint.issuerUrl);
  });

  it("renews after 80% of the JWT's life, keeps the cached one while the issuer fails, and starts over after invalidate()", async () => {
    const s = source({ credentials: async () => credentialsOf(metadata.currentKey()) });
    const first = await s.getToken();
    await clock.advance(47 * 60 * SECOND);
    await expect(s.getToken()).resolves.toBe(first);
    await clock.advance(2 * 60 * SECOND); // 49 min: past 48 (80% of 60)
    sts.failNext({ kind: 'error', code: 'InternalError' });
    await expect(s.getToken()).resolves.toBe(first); // the failure falls back on the still-valid JWT
    await clock.advance(11 * SECOND);
    const second = await s.getToken();
    expect(second.token).not.toBe(first.token);
    s.invalidate();
    const third = await s.getToken();
    expect(third.token).not.toBe(second.token);
  });

  it("two sources sharing the instance's key (two roles) get a token each in the same second", async () => {
    const key = remember(metadata.currentKey());
    const both = await Promise.all([
      source({ credentials: async () => credentialsOf(key) }).getToken(),
      source({ credentials: async () => credentialsOf(key) }).getToken(),
    ]);
    expect(both[0].token).not.toBe(both[1].token);
  });

  it('a replayed attestation gets no second token', async () => {
    const attestation = honest(metadata.currentKey(), { issuerUrl: endpoint.issuerUrl });
    await expect(issuer.exchange(SUBJECT_TOKEN_TYPES.tencentCamRole, token(attestation))).resolves.toMatchObject({ expiresInSeconds: 3600 });
    await expect(issuer.exchange(SUBJECT_TOKEN_TYPES.tencentCamRole, token(attestation))).rejects.toThrow(/invalid_grant: this attestation was already used/);
  });

  it('a source bound to another issuer URL is refused, with the reason and no secret', async () => {
    const key = remember(metadata.currentKey());
    const s = source({ issuerUrl: 'https://issuer.elsewhere.test', credentials: async () => credentialsOf(key) });
    const err = (await s.getToken().catch((e: unknown) => e)) as CrosscredError;
    expect(err).toBeInstanceOf(CrosscredError);
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
    expect(err.message).toMatch(
      /HTTP 400 \(invalid_grant: the request is bound to the issuer 'https:\/\/issuer\.elsewhere\.test', not to this one|HTTP 400 \(invalid_grant: the request is bound to the issuer "https:\/\/issuer\.elsewhere\.test"/,
    );
    for (const secret of [key.secretKey, key.token, key.secretId]) expect(err.message).not.toContain(secret);
  });

  it("reports the metadata server's failure as TENCENT_CVM_ROLE_UNAVAILABLE", async () => {
    metadata.state.roleName = undefined;
    try {
      await expect(source().getToken()).rejects.toMatchObject({ code: 'CROSSCRED_ERR_TENCENT_CVM_ROLE_UNAVAILABLE' });
    } finally {
      metadata.state.roleName = ROLE_NAME;
    }
  });

  it('refuses unusable settings', () => {
    expect(() => source({ stsEndpoint: 'https://sts.tencentcloudapi.com/?x=1' })).toThrow(/plain "https:\/\/host\[:port\]\/" URL/);
    expect(() => source({ issuerUrl: 'ftp://issuer' })).toThrow(/must be an https:\/\/ URL/);
    expect(() => source({ region: 'Guangzhou' })).toThrow(/not a Tencent region name/);
  });
});

describe('TencentCvmTokenSource → IssuerClient → crosscred issuer (src/issuer/issuer-server.ts)', () => {
  let running: RunningIssuer;
  let issuerUrl: string;
  let dir: string;
  let client: IssuerClient;
  let realAttestor: TencentCamRoleAttestor;
  let restoreMetadata: () => void;

  beforeAll(async () => {
    wallNow = Date.now;
    dir = await tempDir();
    issuerUrl = `http://127.0.0.1:${await freePort()}`;
    const key = await makeKey(dir, 'key.pem');
    const configObject = baseConfig(issuerUrl, [{ file: key.file, active: true }], {
      attestors: { tencentCamRole: {} },
      policy: { tencentCamRole: { accounts: [UIN], roles: [ROLE_ID], instanceIds: ['*'], sessionTags: { 'tencent-role': 'roleId' }, transitiveTagKeys: [] } },
    });
    const config = configFrom(configObject, join(dir, 'issuer.yaml'));
    realAttestor = new TencentCamRoleAttestor({ extraStsEndpoints: [sts.url], timeoutMs: 3 * SECOND });
    const attestors = new Map<SubjectTokenType, Attestor>([[SUBJECT_TOKEN_TYPES.tencentCamRole, realAttestor]]);
    running = await startIssuer(config, { logger: memoryLogger('debug').logger, createAttestors: async () => attestors });
    client = new IssuerClient({ issuerUrl, connectTimeoutMs: 2_000, responseTimeoutMs: 5_000 });
    restoreMetadata = await routeMetadataHostTo(metadata);
  });
  afterAll(async () => {
    restoreMetadata?.();
    await client?.close();
    await running?.close();
    await realAttestor?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const source = (overrides: Partial<ConstructorParameters<typeof TencentCvmTokenSource>[0]> = {}) =>
    new TencentCvmTokenSource({ issuer: client, issuerUrl, stsEndpoint: sts.url, clock: new FakeClock(Date.now()), ...overrides });

  it('issues tencent-cam:<uin>:role/<RoleId> for the CVM role, with the role id as a session tag', async () => {
    remember(metadata.currentKey());
    const jwt = await source().getToken();
    expect(decodeJwt(jwt.token)).toMatchObject({
      iss: issuerUrl,
      sub: `tencent-cam:${UIN}:role/${ROLE_ID}`,
      aud: 'sts.amazonaws.com',
      'https://aws.amazon.com/tags': { principal_tags: { 'tencent-role': [ROLE_ID] } },
    });
  });

  it('refuses a replayed attestation, a role outside the policy, and a CAM user, with reasons and no secret', async () => {
    const exchange = (attestation: SignedRequestAttestation) => client.exchange(SUBJECT_TOKEN_TYPES.tencentCamRole, token(attestation));
    const key = remember(metadata.currentKey());
    const once = signTencentGetCallerIdentity({ credentials: key, issuerUrl, stsEndpoint: sts.url, timestamp: nowSeconds() - 30 });
    await expect(exchange(once)).resolves.toMatchObject({ expiresInSeconds: expect.any(Number) });
    const messages: string[] = [];
    const refusedWith = async (attestation: SignedRequestAttestation, why: RegExp) => {
      const err = (await exchange(attestation).catch((e: unknown) => e)) as CrosscredError;
      expect(err).toBeInstanceOf(CrosscredError);
      expect(err.message).toMatch(why);
      messages.push(err.message);
    };
    await refusedWith(once, /HTTP 400 \(invalid_grant: .*(already|replay)/i);
    const otherRole = remember(sts.issueRoleKey({ uin: UIN, roleId: '4611686018427000001', roleName: 'other' }));
    await refusedWith(
      signTencentGetCallerIdentity({ credentials: otherRole, issuerUrl, stsEndpoint: sts.url, timestamp: nowSeconds() }),
      /HTTP 400 \(invalid_grant: .*4611686018427000001/,
    );
    const user = remember(sts.issueUserKey({ uin: UIN, subUin: '100099999999' }));
    await refusedWith(
      signTencentGetCallerIdentity({ credentials: user, issuerUrl, stsEndpoint: sts.url, timestamp: nowSeconds() }),
      /HTTP 400 \(invalid_grant: .*CAMUser/,
    );
    await refusedWith(
      signTencentGetCallerIdentity({ credentials: key, issuerUrl: 'https://elsewhere.test', stsEndpoint: sts.url, timestamp: nowSeconds() - 20 }),
      /HTTP 400 \(invalid_grant: .*bound to the issuer/,
    );
    for (const message of messages) for (const secret of secrets) expect(message).not.toContain(secret);
  });

  it('a fleet of CVMs sharing one CAM role is rate-limited per role session, not as one identity', async () => {
    // The default rateLimit is a burst of 10 per identity. Twenty booting CVMs with the same role:
    // each one's session is its own bucket, so every one gets its token.
    const fleet = Array.from({ length: 20 }, (_, i) =>
      remember(sts.issueRoleKey({ uin: UIN, roleId: ROLE_ID, roleName: ROLE_NAME, sessionName: `ins-fleet${String(i).padStart(3, '0')}` })),
    );
    const at = nowSeconds();
    const exchange = (key: IssuedKey, timestamp: number) =>
      client.exchange(
        SUBJECT_TOKEN_TYPES.tencentCamRole,
        token(signTencentGetCallerIdentity({ credentials: key, issuerUrl, stsEndpoint: sts.url, timestamp })),
      );
    const results = await Promise.allSettled(fleet.map((key) => exchange(key, at)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(20);

    // One session asking again and again still meets its own bucket: 10 more fresh signatures (each
    // its own second) after the one above, and the last is refused with slow_down.
    const one = fleet[0]!;
    const again: Array<PromiseSettledResult<unknown>> = [];
    for (let i = 1; i <= 10; i++) again.push(...(await Promise.allSettled([exchange(one, at - i)])));
    expect(again.filter((r) => r.status === 'fulfilled')).toHaveLength(9);
    const refused = again.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(String(refused.reason)).toMatch(/HTTP 429 \(slow_down/);
  });
});

function credentialsOf(key: IssuedKey): TencentRoleCredentials {
  return { secretId: key.secretId, secretKey: key.secretKey, token: key.token };
}
