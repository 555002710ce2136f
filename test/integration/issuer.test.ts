import { chmod, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { join } from 'node:path';
import fc from 'fast-check';
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, type JSONWebKeySet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { StsEmulator } from '../../src/demo/sts-emulator.js';
import { startIssuer } from '../../src/issuer/issuer-server.js';
import { JWT_TOKEN_TYPE, SUBJECT_TOKEN_TYPES, TOKEN_EXCHANGE_GRANT_TYPE } from '../../src/protocol/issuer-token-exchange.js';
import { memoryLogger } from '../support/chain.js';
import {
  baseConfig,
  configFrom,
  ECS_ACCOUNT,
  fakeSubjectToken,
  freePort,
  makeKey,
  startTestIssuer,
  TENCENT_UIN,
  type TestIssuer,
  tempDir,
} from '../support/issuer-fixtures.js';
import { crosscred } from '../support/run-cli.js';
import { selfSignedCert } from '../support/self-signed.js';

/**
 * `crosscred issuer` end to end on loopback, with fake attestors (test/support/issuer-fixtures.ts)
 * standing in for the Alibaba and Tencent ones: discovery and JWKS, the token endpoint's answers
 * to good and bad requests, tokens verified the way AWS does (discovery → jwks_uri → JWKS) and
 * accepted by the STS emulator, key rotation, replay, rate limits, policy, and the CLI.
 */

const scratchDirs: string[] = [];
async function scratch(): Promise<string> {
  const dir = await tempDir();
  scratchDirs.push(dir);
  return dir;
}
afterAll(async () => {
  await Promise.all(scratchDirs.map((d) => rm(d, { recursive: true, force: true })));
});

interface Discovery {
  issuer: string;
  jwks_uri: string;
  token_endpoint: string;
  authorization_endpoint: string;
  response_types_supported: string[];
  subject_types_supported: string[];
  id_token_signing_alg_values_supported: string[];
  grant_types_supported: string[];
  claims_supported: string[];
}

async function discover(base: string): Promise<{ doc: Discovery; jwks: JSONWebKeySet }> {
  const res = await fetch(`${base}/.well-known/openid-configuration`);
  expect(res.status).toBe(200);
  const doc = (await res.json()) as Discovery;
  const keys = await fetch(doc.jwks_uri);
  expect(keys.status).toBe(200);
  return { doc, jwks: (await keys.json()) as JSONWebKeySet };
}

/** Verifies as a relying party that knows only the issuer URL: discovery, then its JWKS as served now. */
async function verifyLikeAws(issuerUrl: string, token: string, audience = 'sts.amazonaws.com') {
  const { doc, jwks } = await discover(issuerUrl);
  return jwtVerify(token, createLocalJWKSet(jwks), {
    issuer: doc.issuer,
    audience,
    algorithms: ['ES256', 'RS256'],
    requiredClaims: ['iat', 'exp', 'sub', 'jti', 'nbf'],
  });
}

async function tokenOf(res: Response): Promise<string> {
  const body = (await res.json()) as { access_token: string };
  expect(res.status, JSON.stringify(body)).toBe(200);
  return body.access_token;
}

async function expectOAuthError(res: Response, status: number, error: string, codeFragment?: string): Promise<{ error: string; error_description: string }> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  expect(res.headers.get('cache-control')).toBe('no-store');
  const body = JSON.parse(text) as { error: string; error_description: string };
  expect(body.error).toBe(error);
  expect(body.error_description).toMatch(/^[\x20-\x21\x23-\x5b\x5d-\x7e]+$/);
  if (codeFragment) expect(body.error_description).toContain(codeFragment);
  expect(text).not.toContain('access_token');
  return body;
}

describe('crosscred issuer (in process)', () => {
  let t: TestIssuer;
  beforeAll(async () => {
    // Many requests from one loopback address in quick succession: the per-address limit is tested in issuer-admission.test.ts.
    t = await startTestIssuer({ overrides: { rateLimit: { burst: 3, perMinute: 1 }, clientRateLimit: { burst: 100_000, perSecond: 100_000 } } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('serves discovery with what AWS reads, and a JWKS of public keys only', async () => {
    const { doc, jwks } = await discover(t.url);
    expect(doc.issuer).toBe(t.url);
    expect(doc.jwks_uri).toBe(`${t.url}/.well-known/jwks.json`);
    expect(doc.token_endpoint).toBe(`${t.url}/token`);
    expect(doc.authorization_endpoint).toMatch(/^urn:/);
    expect(doc.response_types_supported).toEqual(['id_token']);
    expect(doc.subject_types_supported).toEqual(['public']);
    expect(doc.id_token_signing_alg_values_supported).toEqual(['ES256']);
    expect(doc.grant_types_supported).toEqual([TOKEN_EXCHANGE_GRANT_TYPE]);
    expect(doc.claims_supported).toEqual(expect.arrayContaining(['iss', 'sub', 'aud', 'iat', 'exp', 'https://aws.amazon.com/tags']));
    expect(jwks.keys).toHaveLength(1);
    const [key] = jwks.keys;
    expect(key).toMatchObject({ kty: 'EC', crv: 'P-256', use: 'sig', alg: 'ES256', kid: t.keys[0]!.kid });
    expect(Object.keys(key!).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
  });

  it('serves the same bytes that export-discovery writes', async () => {
    const served = await Promise.all(
      [fetch(`${t.url}/.well-known/openid-configuration`), fetch(`${t.url}/.well-known/jwks.json`)].map(async (p) =>
        Buffer.from(await (await p).arrayBuffer()),
      ),
    );
    const out = join(t.dir, 'export');
    const result = await crosscred(['issuer', 'export-discovery', '--config', join(t.dir, 'issuer.yaml'), '--out', out]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('(active)');
    expect((await readFile(join(out, '.well-known/openid-configuration'))).equals(served[0]!)).toBe(true);
    expect((await readFile(join(out, '.well-known/jwks.json'))).equals(served[1]!)).toBe(true);
    expect((await stat(join(out, '.well-known/jwks.json'))).mode & 0o777).toBe(0o644);
  });

  it('mints a JWT that verifies through discovery and carries every claim', async () => {
    const before = Math.floor(Date.now() / 1000);
    const res = await t.requestToken({
      region: 'cn-hangzhou',
      instanceId: 'i-bp1abc',
      attributes: { 'zone-id': 'cn-hangzhou-h', 'instance-type': 'ecs.g7.large' },
    });
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('pragma')).toBe('no-cache');
    const body = (await res.clone().json()) as Record<string, unknown>;
    expect(body).toMatchObject({ issued_token_type: JWT_TOKEN_TYPE, token_type: 'N_A', expires_in: 3600 });
    const token = await tokenOf(res);
    const { payload, protectedHeader } = await verifyLikeAws(t.url, token);
    expect(protectedHeader).toEqual({ alg: 'ES256', kid: t.keys[0]!.kid, typ: 'JWT' });
    expect(payload.iss).toBe(t.url);
    expect(payload.sub).toBe(`alibaba-ecs:${ECS_ACCOUNT}:cn-hangzhou:i-bp1abc`);
    expect(payload.aud).toBe('sts.amazonaws.com');
    expect(payload.iat).toBeGreaterThanOrEqual(before);
    expect(payload.nbf).toBe(payload.iat);
    expect(payload.exp).toBe(payload.iat! + 3600);
    expect(payload.jti).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(payload['https://crosscred.dev/claims']).toEqual({
      kind: 'alibaba-ecs-identity',
      cloud: 'alibaba',
      account_id: ECS_ACCOUNT,
      region: 'cn-hangzhou',
      instance_id: 'i-bp1abc',
      attributes: { 'zone-id': 'cn-hangzhou-h', 'instance-type': 'ecs.g7.large' },
    });
    expect(payload['https://aws.amazon.com/tags']).toEqual({
      principal_tags: { 'crosscred-account': [ECS_ACCOUNT], 'crosscred-region': ['cn-hangzhou'], 'crosscred-instance': ['i-bp1abc'], zone: ['cn-hangzhou-h'] },
      transitive_tag_keys: ['crosscred-account'],
    });
    // Two tokens never share a jti.
    const again = decodeJwt(await tokenOf(await t.requestToken({ instanceId: 'i-bp1abc' })));
    expect(again.jti).not.toBe(payload.jti);
  });

  it('gives each kind its documented sub', async () => {
    const ram = decodeJwt(await tokenOf(await t.requestToken({ kind: 'alibabaRamRole', roleName: 'app-role', instanceId: 'i-bp1ram' })));
    expect(ram.sub).toBe(`alibaba-ram:${ECS_ACCOUNT}:role/app-role`);
    const cam = decodeJwt(await tokenOf(await t.requestToken({ kind: 'tencentCamRole', roleId: '4611686018427397919', instanceId: 'ins-abc' })));
    expect(cam.sub).toBe(`tencent-cam:${TENCENT_UIN}:role/4611686018427397919`);
    expect(cam['https://crosscred.dev/claims']).toMatchObject({ kind: 'tencent-cam-role', cloud: 'tencent', role_id: '4611686018427397919' });
  });

  it('issues for an allowed audience, refuses others with invalid_target', async () => {
    const token = await tokenOf(await t.requestToken({ instanceId: 'i-aud' }, { audience: 'crosscred-test' }));
    expect(decodeJwt(token).aud).toBe('crosscred-test');
    await expectOAuthError(await t.requestToken({ instanceId: 'i-aud' }, { audience: 'https://evil.example' }), 400, 'invalid_target', 'AUDIENCE_REFUSED');
    await expectOAuthError(await t.requestToken({ instanceId: 'i-aud' }, { resource: 'https://x.example' }), 400, 'invalid_target');
  });

  it('refuses a replayed attestation', async () => {
    const subjectToken = fakeSubjectToken({ region: 'cn-hangzhou', instanceId: 'i-replay', nonce: 'replay-1' });
    await tokenOf(await t.requestToken({}, { subject_token: subjectToken }));
    await expectOAuthError(await t.requestToken({}, { subject_token: subjectToken }), 400, 'invalid_grant', 'ATTESTATION_REPLAYED');
  });

  it('rate-limits per identity with 429 slow_down and Retry-After, other identities unaffected', async () => {
    for (let i = 0; i < 3; i++) await tokenOf(await t.requestToken({ instanceId: 'i-busy' }));
    const limited = await t.requestToken({ instanceId: 'i-busy' });
    expect(limited.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    await expectOAuthError(limited, 429, 'slow_down', 'RATE_LIMITED');
    await tokenOf(await t.requestToken({ instanceId: 'i-calm' }));
  });

  it('refuses identities outside the policy, with invalid_grant and no token', async () => {
    await expectOAuthError(await t.requestToken({ accountId: '999999999' }), 400, 'invalid_grant', 'POLICY_REFUSED');
    await expectOAuthError(await t.requestToken({ region: 'us-east-1', instanceId: 'i-1' }), 400, 'invalid_grant', 'POLICY_REFUSED');
    await expectOAuthError(await t.requestToken({ kind: 'alibabaRamRole', roleName: 'other-role', instanceId: 'i-2' }), 400, 'invalid_grant', 'POLICY_REFUSED');
    await expectOAuthError(await t.requestToken({ kind: 'tencentCamRole', roleId: '1', instanceId: 'i-3' }), 400, 'invalid_grant', 'POLICY_REFUSED');
    // An attestor reporting a fact the sub cannot carry unambiguously.
    await expectOAuthError(await t.requestToken({ instanceId: 'i-x:evil' }), 400, 'invalid_grant', 'POLICY_REFUSED');
  });

  it('answers attestor refusals, outages and deadlines with the right errors', async () => {
    await expectOAuthError(await t.requestToken({ fail: 'invalid' }), 400, 'invalid_grant', 'ATTESTATION_INVALID');
    await expectOAuthError(await t.requestToken({ fail: 'malformed' }), 400, 'invalid_request');
    await expectOAuthError(await t.requestToken({ aud: 'https://another-issuer.example' }), 400, 'invalid_grant');
    const down = await t.requestToken({ fail: 'unavailable' });
    expect(down.headers.get('retry-after')).toBe('5');
    await expectOAuthError(down, 503, 'temporarily_unavailable', 'ATTESTATION_UNAVAILABLE');
    await expectOAuthError(await t.requestToken({ fail: 'throw' }), 503, 'temporarily_unavailable');
  });

  it('answers each malformed request with its RFC 6749 error', async () => {
    await expectOAuthError(await t.requestToken({}, { grant_type: 'client_credentials' }), 400, 'unsupported_grant_type');
    await expectOAuthError(await t.requestToken({}, { grant_type: undefined }), 400, 'invalid_request');
    await expectOAuthError(await t.requestToken({}, { subject_token: undefined }), 400, 'invalid_request');
    await expectOAuthError(await t.requestToken({}, { subject_token_type: undefined }), 400, 'invalid_request');
    await expectOAuthError(
      await t.requestToken({}, { subject_token_type: 'urn:ietf:params:oauth:token-type:jwt' }),
      400,
      'invalid_request',
      'TOKEN_TYPE_UNSUPPORTED',
    );
    await expectOAuthError(await t.requestToken({}, { requested_token_type: 'urn:ietf:params:oauth:token-type:access_token' }), 400, 'invalid_request');
    await expectOAuthError(await t.requestToken({}, { actor_token: 'x', actor_token_type: JWT_TOKEN_TYPE }), 400, 'invalid_request');
    const form = `grant_type=${encodeURIComponent(TOKEN_EXCHANGE_GRANT_TYPE)}&grant_type=${encodeURIComponent(TOKEN_EXCHANGE_GRANT_TYPE)}&subject_token=a&subject_token_type=b`;
    await expectOAuthError(
      await fetch(t.tokenUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form }),
      400,
      'invalid_request',
    );
    await expectOAuthError(
      await fetch(t.tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ grant_type: TOKEN_EXCHANGE_GRANT_TYPE }),
      }),
      400,
      'invalid_request',
    );
    await expectOAuthError(await fetch(t.tokenUrl, { method: 'POST', body: 'grant_type=x' }), 400, 'invalid_request');
    const get = await fetch(t.tokenUrl);
    expect(get.headers.get('allow')).toBe('POST');
    await expectOAuthError(get, 405, 'invalid_request');
    const huge = `grant_type=${encodeURIComponent(TOKEN_EXCHANGE_GRANT_TYPE)}&subject_token=${'A'.repeat(70_000)}`;
    await expectOAuthError(
      await fetch(t.tokenUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: huge }),
      413,
      'invalid_request',
    );
  });

  it('refuses a chunked body (411) and a body that never arrives (408), without reading them', async () => {
    const raw = (request: string, endAfterWrite: boolean) =>
      new Promise<string>((resolve, reject) => {
        const { port } = new URL(t.url);
        const socket = connect(Number(port), '127.0.0.1', () => {
          socket.write(request);
          if (endAfterWrite) socket.end();
        });
        let data = '';
        socket.on('data', (c: Buffer) => (data += c.toString('utf8')));
        socket.on('close', () => resolve(data));
        socket.on('error', reject);
        socket.setTimeout(15_000, () => socket.destroy());
      });
    const chunked = await raw(
      'POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
      false,
    );
    expect(chunked).toMatch(/^HTTP\/1\.1 411 /);
    expect(chunked).toContain('"error":"invalid_request"');
    const slow = await raw(
      'POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=',
      false,
    );
    expect(slow).toMatch(/^HTTP\/1\.1 408 /);
  }, 20_000);

  it('answers any form that is not a valid exchange with an RFC 6749 error, never a token (property)', async () => {
    const names = fc.constantFrom(
      'grant_type',
      'subject_token',
      'subject_token_type',
      'audience',
      'requested_token_type',
      'scope',
      'resource',
      'actor_token',
      'x',
    );
    const values = fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.constantFrom(TOKEN_EXCHANGE_GRANT_TYPE, SUBJECT_TOKEN_TYPES.alibabaEcsIdentity, JWT_TOKEN_TYPE, 'sts.amazonaws.com', 'e30'),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(names, values), { maxLength: 8 }), async (pairs) => {
        const body = new URLSearchParams(pairs).toString();
        const res = await fetch(t.tokenUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
        const text = await res.text();
        expect([400, 429, 503], text).toContain(res.status);
        const answer = JSON.parse(text) as { error: string; error_description: string };
        expect(['invalid_request', 'invalid_grant', 'unsupported_grant_type', 'invalid_target', 'temporarily_unavailable', 'slow_down']).toContain(
          answer.error,
        );
        expect(answer.error_description).toMatch(/^[\x20-\x21\x23-\x5b\x5d-\x7e]+$/);
      }),
      { numRuns: 150 },
    );
  });

  it('never logs a subject token or a JWT', async () => {
    const subjectToken = fakeSubjectToken({ region: 'cn-hangzhou', instanceId: 'i-logged', nonce: 'log-check' });
    const token = await tokenOf(await t.requestToken({}, { subject_token: subjectToken }));
    await t.requestToken({}, { subject_token: subjectToken });
    const all = t.logs.join('\n');
    expect(all).toContain('token issued');
    expect(all).toContain('i-logged');
    expect(all).not.toContain(subjectToken);
    expect(all).not.toContain(token.split('.')[2]!);
    expect(all).not.toContain(token.split('.')[1]!);
  });

  it('counts issued and refused tokens by kind and reason on /metrics', async () => {
    const res = await fetch(`${t.admin}/metrics`);
    const text = await res.text();
    expect(text).toMatch(/crosscred_issuer_tokens_issued_total\{kind="alibaba-ecs-identity"\} \d+/);
    expect(text).toMatch(/crosscred_issuer_tokens_refused_total\{kind="alibaba-ecs-identity",reason="ISSUER_ATTESTATION_REPLAYED"\} [1-9]/);
    expect(text).toMatch(/crosscred_issuer_tokens_refused_total\{kind="unknown",reason="ISSUER_TOKEN_TYPE_UNSUPPORTED"\} [1-9]/);
    expect(text).toContain('crosscred_issuer_attestation_duration_seconds_bucket');
    expect(text).not.toContain('evil');
    expect((await fetch(`${t.admin}/healthz`)).status).toBe(200);
    expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
  });
});

describe('crosscred issuer with the STS emulator', () => {
  it('mints a token that the emulator (discovery → JWKS, as AWS) accepts for AssumeRoleWithWebIdentity', async () => {
    const t = await startTestIssuer();
    const roleArn = 'arn:aws:iam::111122223333:role/from-ecs';
    const sts = await StsEmulator.start({
      trust: [{ roleArn, issuer: t.url, audience: 'sts.amazonaws.com', subject: `alibaba-ecs:${ECS_ACCOUNT}:cn-hangzhou:*` }],
    });
    try {
      const token = await tokenOf(await t.requestToken({ region: 'cn-hangzhou', instanceId: 'i-bp1sts' }));
      const form = new URLSearchParams({
        Action: 'AssumeRoleWithWebIdentity',
        Version: '2011-06-15',
        RoleArn: roleArn,
        RoleSessionName: 'ecs-i-bp1sts',
        WebIdentityToken: token,
      });
      const res = await fetch(sts.url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() });
      const xml = await res.text();
      expect(res.status, xml).toBe(200);
      expect(xml).toContain(`<SubjectFromWebIdentityToken>alibaba-ecs:${ECS_ACCOUNT}:cn-hangzhou:i-bp1sts</SubjectFromWebIdentityToken>`);
      expect(sts.issued).toHaveLength(1);
      // A token for another region does not match the role's trust rule.
      const other = await tokenOf(await t.requestToken({ region: 'cn-shanghai', instanceId: 'i-bp1sts' }));
      form.set('WebIdentityToken', other);
      const refused = await fetch(sts.url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() });
      expect(refused.status).toBe(403);
    } finally {
      await sts.close();
      await t.close();
    }
  });
});

describe('key rotation', () => {
  it('tokens of the previous key verify while it is published, not after it is removed', async () => {
    const t = await startTestIssuer();
    try {
      const path = join(t.dir, 'issuer.yaml');
      const keyA = t.keys[0]!;
      const keyB = await makeKey(t.dir, 'key-b.pem', 'RS256');
      const tokenA = await tokenOf(await t.requestToken({ instanceId: 'i-rot' }));
      expect(decodeProtectedHeader(tokenA).kid).toBe(keyA.kid);

      // Step 1: publish B, A still signs.
      const step1 = await t.issuer.reload(configFrom({ ...t.configObject, keys: [{ file: keyA.file, active: true }, { file: keyB.file }] }, path));
      expect(step1).toMatchObject({ activeKid: keyA.kid, kids: [keyA.kid, keyB.kid], restartNeeded: [] });
      expect((await discover(t.url)).doc.id_token_signing_alg_values_supported).toEqual(['ES256', 'RS256']);
      expect(decodeProtectedHeader(await tokenOf(await t.requestToken({ instanceId: 'i-rot' }))).kid).toBe(keyA.kid);

      // Step 2: B signs, A stays published.
      await t.issuer.reload(configFrom({ ...t.configObject, keys: [{ file: keyA.file }, { file: keyB.file, active: true }] }, path));
      const tokenB = await tokenOf(await t.requestToken({ instanceId: 'i-rot' }));
      expect(decodeProtectedHeader(tokenB)).toMatchObject({ kid: keyB.kid, alg: 'RS256' });
      await verifyLikeAws(t.url, tokenA);
      await verifyLikeAws(t.url, tokenB);

      // Step 3: A removed. Its tokens no longer verify; B's do.
      await t.issuer.reload(configFrom({ ...t.configObject, keys: [{ file: keyB.file, active: true }] }, path));
      await expect(verifyLikeAws(t.url, tokenA)).rejects.toThrow(/no applicable key|matching/i);
      await verifyLikeAws(t.url, tokenB);
      const { jwks } = await discover(t.url);
      expect(jwks.keys.map((k) => k.kid)).toEqual([keyB.kid]);
      // A remote JWKS cache (jose's, as a relying party keeps one) also stops accepting A.
      const remote = createRemoteJWKSet(new URL(`${t.url}/.well-known/jwks.json`));
      await expect(jwtVerify(tokenA, remote, { issuer: t.url, audience: 'sts.amazonaws.com' })).rejects.toThrow();
    } finally {
      await t.close();
    }
  });
});

describe('crosscred issuer options', () => {
  it('bounds and applies the token lifetime', async () => {
    const t = await startTestIssuer({ overrides: { tokenLifetimeSeconds: 300 } });
    try {
      const res = await t.requestToken({ instanceId: 'i-short' });
      const body = (await res.json()) as { access_token: string; expires_in: number };
      expect(body.expires_in).toBe(300);
      const claims = decodeJwt(body.access_token);
      expect(claims.exp! - claims.iat!).toBe(300);
    } finally {
      await t.close();
    }
  });

  it('answers 503 temporarily_unavailable when an attestation passes its deadline, and aborts it', async () => {
    const t = await startTestIssuer({ overrides: { attestationTimeoutMs: 500 } });
    try {
      const started = Date.now();
      await expectOAuthError(await t.requestToken({ fail: 'hang' }), 503, 'temporarily_unavailable', 'ATTESTATION_UNAVAILABLE');
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(t.attestors.get(SUBJECT_TOKEN_TYPES.alibabaEcsIdentity)!.lastSignal!.aborted).toBe(true);
    } finally {
      await t.close();
    }
  });

  it('refuses token types whose kind is not configured', async () => {
    const dir = await scratch();
    const key = await makeKey(dir, 'k.pem');
    const url = `http://127.0.0.1:${await freePort()}`;
    const object = baseConfig(url, [{ file: key.file, active: true }]);
    object['attestors'] = { alibabaRamRole: {} };
    object['policy'] = { alibabaRamRole: (object['policy'] as Record<string, unknown>)['alibabaRamRole'] };
    const config = configFrom(object, join(dir, 'x.yaml'));
    const { logger } = memoryLogger();
    const issuer = await startIssuer(config, { logger, createAttestors: async () => new Map() });
    try {
      const body = new URLSearchParams({
        grant_type: TOKEN_EXCHANGE_GRANT_TYPE,
        subject_token_type: SUBJECT_TOKEN_TYPES.alibabaEcsIdentity,
        subject_token: fakeSubjectToken(),
      });
      const res = await fetch(config.tokenEndpointUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: body.toString(),
      });
      await expectOAuthError(res, 400, 'invalid_request', 'TOKEN_TYPE_UNSUPPORTED');
    } finally {
      await issuer.close();
    }
  });

  it('serves HTTPS with the configured certificate', async () => {
    const dir = await scratch();
    await selfSignedCert({ cn: 'localhost', keyFile: join(dir, 'tls.key'), certFile: join(dir, 'tls.crt'), ips: ['127.0.0.1'] });
    const key = await makeKey(dir, 'k.pem');
    const port = await freePort();
    // https://127.0.0.1 without a port is what a real issuer looks like; the listener is elsewhere.
    const object = baseConfig('https://127.0.0.1', [{ file: key.file, active: true }], {
      listen: `127.0.0.1:${port}`,
      tls: { certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') },
    });
    const config = configFrom(object, join(dir, 'x.yaml'));
    const { logger } = memoryLogger();
    const issuer = await startIssuer(config, { logger, createAttestors: async () => new Map() });
    try {
      const ca = await readFile(join(dir, 'tls.crt'));
      const body = await new Promise<string>((resolve, reject) => {
        httpsRequest({ host: '127.0.0.1', port, path: '/.well-known/openid-configuration', ca }, (res) => {
          let data = '';
          res.on('data', (c: Buffer) => (data += c.toString('utf8')));
          res.on('end', () => resolve(data));
        })
          .on('error', reject)
          .end();
      });
      expect(Buffer.from(body).equals(issuer.discovery().openidConfiguration)).toBe(true);
      expect(JSON.parse(body)).toMatchObject({ issuer: 'https://127.0.0.1', jwks_uri: 'https://127.0.0.1/.well-known/jwks.json' });
    } finally {
      await issuer.close();
    }
  });
});

describe('crosscred issuer CLI', () => {
  it('keygen writes a 0600 PKCS#8 key and never overwrites', async () => {
    const t = { dir: await scratch() };
    const out = join(t.dir, 'new.pem');
    const first = await crosscred(['issuer', 'keygen', '--alg', 'ES256', '--out', out]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/kid: [A-Za-z0-9_-]{43}/);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    const pem = await readFile(out, 'utf8');
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    const second = await crosscred(['issuer', 'keygen', '--alg', 'RS256', '--out', out]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain('CROSSCRED_ERR_ISSUER_KEY_FILE_EXISTS');
    expect(await readFile(out, 'utf8')).toBe(pem);
    const bad = await crosscred(['issuer', 'keygen', '--alg', 'EdDSA', '--out', join(t.dir, 'x.pem')]);
    expect(bad.code).toBe(78);
  });

  it('serve refuses a key file open to others, and a bad config, with exit 78 and every problem', async () => {
    const t = { dir: await scratch() };
    const key = await makeKey(t.dir, 'open.pem');
    await chmod(key.file, 0o644);
    const path = join(t.dir, 'issuer.yaml');
    await writeFile(path, stringify(baseConfig(`http://127.0.0.1:${await freePort()}`, [{ file: key.file, active: true }], { adminListen: 'off' })));
    const open = await crosscred(['issuer', 'serve', '--config', path]);
    expect(open.code).toBe(78);
    expect(open.stderr).toContain('CROSSCRED_ERR_ISSUER_KEY_INVALID');
    expect(open.stderr).toContain('chmod 600');

    await writeFile(
      path,
      stringify(
        baseConfig('https://issuer.example.com:8443/', [{ file: key.file }], {
          tokenLifetimeSeconds: 60,
          listen: '0.0.0.0:8443',
          policy: { alibabaEcsIdentity: { accounts: ['*'] } },
        }),
      ),
    );
    const bad = await crosscred(['issuer', 'serve', '--config', path]);
    expect(bad.code).toBe(78);
    expect(bad.stderr).toContain('CROSSCRED_ERR_CONFIG_INVALID');
    expect(bad.stderr).toContain('tokenLifetimeSeconds');
    const plain = await crosscred(['issuer', 'serve', '--config', join(t.dir, 'missing.yaml')]);
    expect(plain.code).toBe(78);
    const usage = await crosscred(['issuer', 'frobnicate']);
    expect(usage.code).toBe(2);
    const help = await crosscred(['issuer', '--help']);
    expect(help.stdout).toContain('export-discovery');
  });

  it('serve runs as a process: discovery, a token, SIGTERM', async () => {
    const t = { dir: await scratch() };
    const key = await makeKey(t.dir, 'k.pem');
    const url = `http://127.0.0.1:${await freePort()}`;
    const object = baseConfig(url, [{ file: key.file, active: true }]);
    object['attestors'] = { alibabaRamRole: {} };
    object['policy'] = { alibabaRamRole: (object['policy'] as Record<string, unknown>)['alibabaRamRole'] };
    const path = join(t.dir, 'issuer.yaml');
    await writeFile(path, stringify(object));
    const { spawn } = await import('node:child_process');
    const { CLI_ARGS, CLI_EXEC } = await import('../support/chain.js');
    const child = spawn(CLI_EXEC, [...CLI_ARGS, 'issuer', 'serve', '--config', path], { stdio: ['ignore', 'pipe', 'pipe'] });
    const output: string[] = [];
    child.stdout.on('data', (c: Buffer) => output.push(c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => output.push(c.toString('utf8')));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`issuer did not start:\n${output.join('')}`)), 15_000);
        const poll = setInterval(() => {
          if (output.join('').includes('issuer listener open')) {
            clearTimeout(timer);
            clearInterval(poll);
            resolve();
          }
        }, 50);
        child.once('exit', (code) => reject(new Error(`issuer exited ${code}:\n${output.join('')}`)));
      });
      const { doc } = await discover(url);
      expect(doc.issuer).toBe(url);
      // The real RAM-role attestor refuses a fake attestation: invalid_request or invalid_grant, never a token.
      const body = new URLSearchParams({
        grant_type: TOKEN_EXCHANGE_GRANT_TYPE,
        subject_token_type: SUBJECT_TOKEN_TYPES.alibabaRamRole,
        subject_token: fakeSubjectToken(),
      });
      const res = await fetch(`${url}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: body.toString() });
      expect([400]).toContain(res.status);
      expect(((await res.json()) as { error: string }).error).toMatch(/^invalid_(request|grant)$/);
    } finally {
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
  }, 30_000);
});

describe('replay-set poisoning (issue #11 item 4)', () => {
  const OTHER_ACCOUNT = '1777777777777777';
  let t: TestIssuer;
  beforeAll(async () => {
    const ecsPolicy = { accounts: [ECS_ACCOUNT, OTHER_ACCOUNT], regions: ['cn-hangzhou'], instanceIds: ['*'] };
    t = await startTestIssuer({
      overrides: {
        replayCacheEntries: 100,
        rateLimit: { burst: 1_000, perMinute: 60 },
        clientRateLimit: { burst: 10_000, perSecond: 1_000 },
        policy: {
          alibabaEcsIdentity: ecsPolicy,
          alibabaRamRole: { accounts: [ECS_ACCOUNT], roles: ['app-role'], instanceIds: ['*'] },
          tencentCamRole: { accounts: [TENCENT_UIN], roles: ['4611686018427397919'], instanceIds: ['*'] },
        },
      },
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('an account outside the policy cannot fill the replay set: 150 of its attestations later, a legitimate VM gets a token', async () => {
    for (let i = 0; i < 150; i++) {
      await expectOAuthError(await t.requestToken({ accountId: '999999999', instanceId: `i-intruder${i}` }), 400, 'invalid_grant', 'POLICY_REFUSED');
    }
    await tokenOf(await t.requestToken({ instanceId: 'i-legit' }));
  });

  it('an allowed account that fills its share is refused (429), and another account is still served', async () => {
    let refused: Response | undefined;
    for (let i = 0; i < 100 && refused === undefined; i++) {
      const res = await t.requestToken({ instanceId: `i-greedy${i}` });
      if (res.status !== 200) refused = res;
      else await res.arrayBuffer();
    }
    expect(refused).toBeDefined();
    expect(refused!.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    await expectOAuthError(refused!, 429, 'slow_down', 'RATE_LIMITED');
    await tokenOf(await t.requestToken({ accountId: OTHER_ACCOUNT, instanceId: 'i-neighbour' }));
  });
});
