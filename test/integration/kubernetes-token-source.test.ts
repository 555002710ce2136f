import { chmod, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CrosscredError } from '../../src/core/errors.js';
import { KubernetesTokenSource, type KubernetesTokenSourceOptions } from '../../src/sources/kubernetes-token-source.js';
import { FakeClock } from '../support/fake-clock.js';
import { FAKE_KUBE_ISSUER, FakeKubeApiServer, makeUnrelatedCa } from '../support/fake-kube-apiserver.js';

/**
 * The Kubernetes TokenRequest source against a fake API server on loopback: real HTTPS with a
 * test CA, real ServiceAccount token files, real JWTs. Time-dependent behaviour (caching, renewal
 * at 80%, falling back on the cached token) runs on a fake clock that the fake server shares, so
 * `exp` and expirationTimestamp are in the clock's time.
 */
const NAMESPACE = 'payments';
const SERVICE_ACCOUNT = 'api';
const AUDIENCE = 'sts.amazonaws.com';
const SECOND = 1000;

let clock = new FakeClock();
let kube: FakeKubeApiServer;
let dir: string;
let saTokenFile: string;
let saToken: string;
let saKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
const sources: KubernetesTokenSource[] = [];

/** A pod ServiceAccount token as the kubelet projects it (a real JWT, so leak checks mean something). */
async function mintSaToken(n: number): Promise<string> {
  const now = Math.floor(clock.wallNow() / 1000);
  return new SignJWT({ 'kubernetes.io': { namespace: NAMESPACE, serviceaccount: { name: SERVICE_ACCOUNT, uid: 'sa-uid' } }, n })
    .setProtectedHeader({ alg: 'ES256', kid: 'kubelet-key' })
    .setIssuer(FAKE_KUBE_ISSUER)
    .setSubject(`system:serviceaccount:${NAMESPACE}:${SERVICE_ACCOUNT}`)
    .setAudience(FAKE_KUBE_ISSUER)
    .setExpirationTime(now + 3607)
    .sign(saKey);
}

/** Rotates the pod's token file as the kubelet does: write aside, rename over. */
async function writeSaToken(token: string): Promise<void> {
  await writeFile(`${saTokenFile}.tmp`, `${token}\n`);
  await rename(`${saTokenFile}.tmp`, saTokenFile);
}

function source(overrides: Partial<KubernetesTokenSourceOptions> = {}): KubernetesTokenSource {
  const s = new KubernetesTokenSource({
    apiServer: kube.url,
    caFile: kube.caFile,
    serviceAccountTokenFile: saTokenFile,
    namespace: NAMESPACE,
    serviceAccount: SERVICE_ACCOUNT,
    audience: AUDIENCE,
    expirationSeconds: 3600,
    requestTimeoutMs: 5_000,
    clock,
    ...overrides,
  });
  sources.push(s);
  return s;
}

async function caught(promise: Promise<unknown>): Promise<CrosscredError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(CrosscredError);
    return err as CrosscredError;
  }
  throw new Error('expected a CrosscredError, but the token came back');
}

/** Neither the pod's token nor any token the server minted, nor any part of one, is in the error. */
function expectNoTokenText(err: CrosscredError, extraTokens: string[] = []): void {
  const texts = [err.message, err.describe(), String(err.stack)];
  for (const token of [saToken, ...extraTokens]) {
    for (const text of texts) {
      expect(text).not.toContain(token);
      for (const part of token.split('.')) expect(text).not.toContain(part);
    }
  }
}

beforeAll(async () => {
  ({ privateKey: saKey } = await generateKeyPair('ES256'));
  dir = await mkdtemp(join(tmpdir(), 'crosscred-kube-test-'));
  saTokenFile = join(dir, 'token');
  saToken = await mintSaToken(1);
  kube = await FakeKubeApiServer.start({ bearer: saToken, now: () => clock.wallNow() });
});

beforeEach(async () => {
  clock = new FakeClock();
  saToken = await mintSaToken(1);
  await writeSaToken(saToken);
  kube.expectBearer(saToken);
  kube.grant(undefined);
  kube.respond();
  kube.requestCount = 0;
  kube.requests.length = 0;
  kube.rejections.length = 0;
});

afterEach(async () => {
  await Promise.all(sources.splice(0).map((s) => s.close()));
  // Every request the source sent was a valid TokenRequest, whatever the test made the server answer.
  expect(kube.rejections).toEqual([]);
});

afterAll(async () => {
  await kube?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('a TokenRequest that succeeds', () => {
  it('sends the TokenRequest the API server expects and returns the JWT with its claims', async () => {
    const s = source();
    expect(s.description).toBe('Kubernetes TokenRequest for payments/api (audience sts.amazonaws.com)');
    const t = await s.getToken();

    expect(kube.requestCount).toBe(1);
    const req = kube.requests[0]!;
    expect(req.method).toBe('POST');
    expect(req.path).toBe('/api/v1/namespaces/payments/serviceaccounts/api/token');
    expect(req.authorization).toBe(`Bearer ${saToken}`);
    expect(req.contentType).toBe('application/json');
    expect(req.body).toEqual({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: [AUDIENCE], expirationSeconds: 3600 } });

    expect(t.token.split('.')).toHaveLength(3);
    expect(t.claims).toMatchObject({ iss: FAKE_KUBE_ISSUER, sub: 'system:serviceaccount:payments:api', aud: [AUDIENCE], kid: 'fake-kube-key-1' });
    expect(t.expiresAtWall).toBe(Math.floor(clock.wallNow() / 1000) * 1000 + 3600 * SECOND);
    expect(t.claims.exp * 1000).toBe(t.expiresAtWall);
  });

  it('binds the token to the pod only when a pod is given', async () => {
    await source({ pod: { name: 'api-7d9f-abcde', uid: '0c1e4f1a-1111-4222-8333-444455556666' } }).getToken();
    expect(kube.lastBody).toEqual({
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: {
        audiences: [AUDIENCE],
        expirationSeconds: 3600,
        boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: 'api-7d9f-abcde', uid: '0c1e4f1a-1111-4222-8333-444455556666' },
      },
    });
    await source().getToken();
    expect((kube.lastBody as { spec: object }).spec).not.toHaveProperty('boundObjectRef');
  });

  it('asks for the configured audience and lifetime', async () => {
    const t = await source({ audience: 'https://sts.example.internal', expirationSeconds: 7200 }).getToken();
    expect(kube.lastBody).toMatchObject({ spec: { audiences: ['https://sts.example.internal'], expirationSeconds: 7200 } });
    expect(t.claims.aud).toEqual(['https://sts.example.internal']);
    expect(t.expiresAtWall - clock.wallNow()).toBe(7200 * SECOND);
  });
});

describe('caching and renewal', () => {
  it('keeps the token until 80% of its life has passed, then asks for a new one', async () => {
    const s = source();
    const first = await s.getToken();
    await clock.advance(2870 * SECOND);
    expect((await s.getToken()).token).toBe(first.token);
    expect(kube.requestCount).toBe(1);

    await clock.advance(20 * SECOND); // 2890 s: past 80% of 3600 s (2880 s)
    const second = await s.getToken();
    expect(kube.requestCount).toBe(2);
    expect(second.token).not.toBe(first.token);
    expect(second.expiresAtWall).toBeGreaterThan(first.expiresAtWall);
  });

  it('uses the lifetime the API server granted (expirationTimestamp), not the one asked for', async () => {
    kube.grant(1200);
    const s = source({ expirationSeconds: 3600 });
    const first = await s.getToken();
    expect(kube.lastBody).toMatchObject({ spec: { expirationSeconds: 3600 } });
    expect(first.expiresAtWall - clock.wallNow()).toBe(1200 * SECOND);

    await clock.advance(950 * SECOND);
    expect((await s.getToken()).token).toBe(first.token);
    expect(kube.requestCount).toBe(1);

    await clock.advance(20 * SECOND); // 970 s: past 80% of 1200 s (960 s), far before 80% of 3600 s (2880 s)
    expect((await s.getToken()).token).not.toBe(first.token);
    expect(kube.requestCount).toBe(2);
  });

  it('shares one request among 50 concurrent callers', async () => {
    kube.respond({ kind: 'delay', ms: 200 });
    const s = source();
    const tokens = await Promise.all(Array.from({ length: 50 }, () => s.getToken()));
    expect(kube.requestCount).toBe(1);
    expect(new Set(tokens.map((t) => t.token)).size).toBe(1);

    // …and once more at renewal time.
    await clock.advance(2900 * SECOND);
    const renewed = await Promise.all(Array.from({ length: 50 }, () => s.getToken()));
    expect(kube.requestCount).toBe(2);
    expect(new Set(renewed.map((t) => t.token)).size).toBe(1);
    expect(renewed[0]!.token).not.toBe(tokens[0]!.token);
  });

  it("re-reads the pod's ServiceAccount token for every request (the kubelet rotates it)", async () => {
    const s = source();
    await s.getToken();
    const rotated = await mintSaToken(2);
    expect(rotated).not.toBe(saToken);
    await writeSaToken(rotated);
    kube.expectBearer(rotated); // the old one is no longer accepted
    await clock.advance(2900 * SECOND);
    await s.getToken();
    expect(kube.requestCount).toBe(2);
    expect(kube.requests.map((r) => r.authorization)).toEqual([`Bearer ${saToken}`, `Bearer ${rotated}`]);
  });

  it('keeps handing out the cached token while renewal fails and it is still valid for a minute, then reports the failure', async () => {
    const s = source();
    const cached = await s.getToken();
    await clock.advance(2900 * SECOND);
    kube.respond({ kind: 'status', status: 500 });

    expect((await s.getToken()).token).toBe(cached.token);
    expect(kube.requestCount).toBe(2);
    // A broken API server is not asked again on every call…
    expect((await s.getToken()).token).toBe(cached.token);
    expect(kube.requestCount).toBe(2);
    // …but again a little later.
    await clock.advance(11 * SECOND);
    expect((await s.getToken()).token).toBe(cached.token);
    expect(kube.requestCount).toBe(3);

    // 59 s before it expires the cached token is no longer good enough: the failure shows.
    await clock.advance((3600 - 59 - 2911) * SECOND);
    const err = await caught(s.getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
    expect(err.message).toContain('HTTP 500');
    expectNoTokenText(err, [cached.token]);
    expect(kube.requestCount).toBe(4);

    kube.respond();
    const fresh = await s.getToken();
    expect(fresh.token).not.toBe(cached.token);
    expect(kube.requestCount).toBe(5);
  });

  it('falls back on the cached token when a renewal times out, too', async () => {
    const s = source({ requestTimeoutMs: 300 });
    const cached = await s.getToken();
    await clock.advance(3000 * SECOND);
    kube.respond({ kind: 'hang' });
    expect((await s.getToken()).token).toBe(cached.token);
    expect(kube.requestCount).toBe(2);
  });
});

describe('failures', () => {
  it.each([
    { status: 401 as const, expected: ['HTTP 401 Unauthorized', "did not accept the pod's ServiceAccount token"] },
    {
      status: 403 as const,
      expected: ['HTTP 403 Forbidden', 'RBAC', 'cannot create resource "serviceaccounts/token" in API group "" in the namespace "payments"'],
    },
    { status: 404 as const, expected: ['HTTP 404 Not Found', 'serviceaccounts "api" not found'] },
    { status: 500 as const, expected: ['HTTP 500 Internal Server Error', 'failed to sign token'] },
  ])('HTTP $status is TOKEN_REQUEST_FAILED naming the status and the Kubernetes message', async ({ status, expected }) => {
    kube.respond({ kind: 'status', status });
    const err = await caught(source().getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
    expect(err.message).toMatch(/^Kubernetes TokenRequest for serviceaccount payments\/api /);
    for (const text of expected) expect(err.message).toContain(text);
    expectNoTokenText(err);
  });

  it('a pod token the API server does not accept is a 401 (the real check, not a simulated one)', async () => {
    kube.expectBearer('some-other-token');
    const err = await caught(source().getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
    expect(err.message).toContain('HTTP 401');
    expectNoTokenText(err);
  });

  it('shows at most 200 characters of the Kubernetes message, without control characters or anything like a token', async () => {
    const echoed = await mintSaToken(3);
    kube.respond({ kind: 'status', status: 403, message: `denied\r\n{"level":"fatal"}\u001b[31m token=${echoed} ${saToken} ${'x'.repeat(400)}` });
    const err = await caught(source().getToken());
    const shown = err.message.slice(err.message.indexOf('denied'));
    expect(shown.length).toBeLessThanOrEqual(200);
    expect(shown).toMatch(/^denied \{"level":"fatal"\} \[31m token=\[redacted\] \[redacted\] x+…$/);
    expect(err.message).not.toMatch(/[\u0000-\u001f\u007f]/);
    expectNoTokenText(err, [echoed]);
  });

  it('a 201 whose body is not JSON is TOKEN_REQUEST_FAILED', async () => {
    kube.respond({ kind: 'raw', status: 201, body: '<html>502 Bad Gateway</html>', contentType: 'text/html' });
    const err = await caught(source().getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
    expect(err.message).toContain('HTTP 201 with an answer that is not a TokenRequest JSON object');
  });

  it('an error status with a body that is not JSON still names the status', async () => {
    kube.respond({ kind: 'raw', status: 503, body: 'upstream connect error', contentType: 'text/plain' });
    const err = await caught(source().getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
    expect(err.message).toContain('HTTP 503 Service Unavailable');
    expect(err.message).not.toContain('upstream');
  });

  it.each([
    { what: 'no status.token', status: { expirationTimestamp: '2026-11-30T13:00:00Z' }, expected: 'without "status.token"' },
    { what: 'no expirationTimestamp', status: { token: 'x.y.z' }, expected: 'without a valid RFC 3339 "status.expirationTimestamp"' },
    { what: 'an unparseable expirationTimestamp', status: { token: 'x.y.z', expirationTimestamp: 'tomorrow' }, expected: 'without a valid RFC 3339' },
  ])('a TokenRequest answer with $what is TOKEN_REQUEST_FAILED', async ({ status, expected }) => {
    kube.respond({ kind: 'raw', status: 201, body: JSON.stringify({ kind: 'TokenRequest', apiVersion: 'authentication.k8s.io/v1', status }) });
    const err = await caught(source().getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
    expect(err.message).toContain(expected);
  });

  it('a status.token that is not a complete JWT is refused by inspectJwt, naming the source', async () => {
    const token = (await mintSaToken(4)).slice(0, -10);
    kube.respond({ kind: 'raw', status: 201, body: JSON.stringify({ kind: 'TokenRequest', status: { token, expirationTimestamp: '2026-11-30T13:00:00Z' } }) });
    const err = await caught(source().getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_NOT_JWT');
    expect(err.message).toContain('Kubernetes TokenRequest for serviceaccount payments/api');
    expectNoTokenText(err, [token]);
  });

  it('an answer larger than 64 KiB is cut off', async () => {
    kube.respond({ kind: 'raw', status: 201, body: JSON.stringify({ status: { token: 'a'.repeat(70_000) } }) });
    const err = await caught(source().getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
    expect(err.message).toContain('larger than 65536 bytes');
  });

  it('a slow answer beyond requestTimeoutMs is TOKEN_REQUEST_FAILED, bounded by the timeout', async () => {
    kube.respond({ kind: 'delay', ms: 3_000 });
    const err = await caught(source({ requestTimeoutMs: 300 }).getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
    expect(err.message).toContain('got no complete answer from https://127.0.0.1:');
    expect(err.message).toContain('within 300 ms');
    expectNoTokenText(err);
  });

  it('an API server that never answers is TOKEN_REQUEST_FAILED within requestTimeoutMs', async () => {
    kube.respond({ kind: 'hang' });
    const err = await caught(source({ requestTimeoutMs: 300 }).getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
    expect(err.message).toContain('within 300 ms');
  });

  it('a server certificate not signed by the given CA is a TLS failure, and nothing is sent', async () => {
    const otherCa = await makeUnrelatedCa(dir);
    const err = await caught(source({ caFile: otherCa }).getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
    expect(err.message).toContain('could not verify the TLS certificate of https://127.0.0.1:');
    expect(err.message).toContain(`check that ${otherCa} is this cluster's CA`);
    expectNoTokenText(err);
    expect(kube.requestCount).toBe(0);
  });

  it('an unreadable pod ServiceAccount token is TOKEN_FILE_UNREADABLE, and nothing is sent', async () => {
    const missing = await caught(source({ serviceAccountTokenFile: join(dir, 'no-such-token') }).getToken());
    expect(missing.code).toBe('CROSSCRED_ERR_TOKEN_FILE_UNREADABLE');
    expect(missing.message).toContain('ENOENT');

    const empty = join(dir, 'empty-token');
    await writeFile(empty, '\n');
    expect((await caught(source({ serviceAccountTokenFile: empty }).getToken())).code).toBe('CROSSCRED_ERR_TOKEN_FILE_UNREADABLE');

    if (process.getuid?.() !== 0) {
      const unreadable = join(dir, 'unreadable-token');
      await writeFile(unreadable, saToken);
      await chmod(unreadable, 0o000);
      const err = await caught(source({ serviceAccountTokenFile: unreadable }).getToken());
      expect(err.code).toBe('CROSSCRED_ERR_TOKEN_FILE_UNREADABLE');
      expect(err.message).toContain('EACCES');
    }
    expect(kube.requestCount).toBe(0);
  });

  it('a missing CA file is TOKEN_REQUEST_FAILED naming the file', async () => {
    const err = await caught(source({ caFile: join(dir, 'no-ca.crt') }).getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
    expect(err.message).toContain('no-ca.crt (ENOENT)');
  });

  it('refuses a token for another audience than the one asked for', async () => {
    const other = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256' })
      .setAudience('https://kubernetes.default.svc')
      .setExpirationTime(Math.floor(clock.wallNow() / 1000) + 3600)
      .sign(saKey);
    kube.respond({ kind: 'raw', status: 201, body: JSON.stringify({ status: { token: other, expirationTimestamp: '2026-11-30T13:00:00Z' } }) });
    const err = await caught(source().getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
    expect(err.message).toContain('not "sts.amazonaws.com"');
    expectNoTokenText(err, [other]);
  });

  it('fails after close()', async () => {
    const s = source();
    await s.getToken();
    await s.close();
    const err = await caught(s.getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
    expect(err.message).toContain('closed');
  });
});

describe('options', () => {
  it.each([
    { what: 'an http:// API server', overrides: { apiServer: 'http://127.0.0.1:6443' }, expected: 'must be a plain https:// URL' },
    { what: 'a lifetime under 10 minutes', overrides: { expirationSeconds: 599 }, expected: 'expirationSeconds must be a whole number of seconds from 600' },
    { what: 'an empty audience', overrides: { audience: '' }, expected: 'audience must be a non-empty string' },
    { what: 'a pod without a uid', overrides: { pod: { name: 'p', uid: '' } }, expected: 'pod needs both a name and a uid' },
  ])('refuses $what', ({ overrides, expected }) => {
    let err: unknown;
    try {
      source(overrides as Partial<KubernetesTokenSourceOptions>);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CrosscredError);
    expect((err as CrosscredError).code).toBe('CROSSCRED_ERR_CONFIG_INVALID');
    expect((err as CrosscredError).message).toContain(expected);
  });

  it('encodes the path segments and keeps a path prefix of the API server URL', async () => {
    // A name that needs encoding never reaches a real cluster (names are DNS labels), but must not break the path.
    await caught(source({ apiServer: `${kube.url}/prefix/`, serviceAccount: 'a/b' }).getToken());
    expect(kube.requests.at(-1)!.path).toBe('/prefix/api/v1/namespaces/payments/serviceaccounts/a%2Fb/token');
  });
});
