import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/config.js';
import { loadConfig } from '../../src/config/load.js';
import { systemClock } from '../../src/core/clock.js';
import { DemoOidcIssuer } from '../../src/demo/oidc-issuer.js';
import { TencentStsEmulator } from '../../src/demo/tencent-sts-emulator.js';
import { CloudStsRefusal } from '../../src/exchange/cloud-sts-refusal.js';
import { classifyFailure } from '../../src/exchange/failure.js';
import { TencentWebIdentityExchange } from '../../src/exchange/tencent-web-identity-exchange.js';
import { StsHttpHandler } from '../../src/platform/aws/sts-http-handler.js';
import { startDaemon } from '../../src/serve/daemon.js';
import { memoryLogger } from '../support/chain.js';

/**
 * The Tencent AssumeRoleWithWebIdentity exchange against the Tencent STS emulator, over real
 * sockets: the request as Tencent's SDKs send it, the answer checked field by field, and every
 * kind of failure classified (terminal, retryable, token-expired) both by the classifier and by
 * what the daemon (WebIdentityRole, RoleCredentialCache, the CVM metadata routes) then does. The
 * token must never appear in an error message or a log line.
 */

// The official SDK, required as the CommonJS it is (its exports are getters that ESM interop misses).
const tencentcloud = createRequire(import.meta.url)('tencentcloud-sdk-nodejs-common') as typeof import('tencentcloud-sdk-nodejs-common');

const UIN = '100012345678';
const ROLE = 'crosscred-tencent';
const ROLE_ARN = `qcs::cam::uin/${UIN}:roleName/${ROLE}`;
const PROVIDER = 'crosscred-oidc';
const AUDIENCE = 'crosscred-tencent-client';
const SUBJECT = 'system:serviceaccount:payments:api';
const REGION = 'ap-guangzhou';
const CREDENTIALS_PATH = `/latest/meta-data/cam/security-credentials/${ROLE}`;

let issuer: DemoOidcIssuer;
let sts: TencentStsEmulator;
let dir: string;
let tokenFile: string;
let transport: StsHttpHandler;
/** Every token written, for the "never in a message or log" checks. */
const tokens = new Set<string>();

async function writeToken(claims: { sub?: string; ttlSeconds?: number } = {}): Promise<string> {
  const token = await issuer.mint({ sub: claims.sub ?? SUBJECT, aud: AUDIENCE, ttlSeconds: claims.ttlSeconds ?? 3600 });
  tokens.add(token);
  await writeFile(`${tokenFile}.tmp`, token);
  await rename(`${tokenFile}.tmp`, tokenFile);
  return token;
}

function exchange(overrides: Partial<ConstructorParameters<typeof TencentWebIdentityExchange>[0]> = {}): TencentWebIdentityExchange {
  return new TencentWebIdentityExchange(
    { roleName: ROLE, roleArn: ROLE_ARN, accountId: UIN, providerId: PROVIDER, sessionName: 'crosscred-test', region: REGION, endpoint: sts.url, ...overrides },
    transport,
    systemClock,
  );
}

/** What the exchange throws, classified; the message is checked to hold no token. */
async function failure(token: string, ex = exchange()) {
  const err = await ex.exchange(token).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Error);
  const message = (err as Error).message;
  for (const t of tokens) expect(message).not.toContain(t);
  return { err, classified: classifyFailure(err) };
}

/** A crosscred configuration with one Tencent role (`--cloud tencent`), served on an ephemeral loopback port. */
function tencentConfig(): Config {
  return loadConfig({
    flags: {
      cloud: 'tencent',
      'role-arn': ROLE_ARN,
      'provider-id': PROVIDER,
      'token-file': tokenFile,
      region: REGION,
      'sts-endpoint': sts.url,
      'role-session-name': 'crosscred-test',
      listen: ['127.0.0.1:0'],
      'admin-listen': '127.0.0.1:0',
    },
    env: {},
  });
}

async function startTencentDaemon() {
  const { logger, lines } = memoryLogger();
  const daemon = await startDaemon(tencentConfig(), { logger });
  return {
    daemon,
    logs: lines,
    base: `http://127.0.0.1:${daemon.listeners[0]!.port}`,
    admin: `http://127.0.0.1:${daemon.admin!.port}`,
  };
}
type Running = Awaited<ReturnType<typeof startTencentDaemon>>;
let running: Running | undefined;

async function get(url: string) {
  const res = await request(url);
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

async function lastError(admin: string) {
  const body = (await (await request(`${admin}/readyz`)).body.json()) as {
    roles: Array<{ lastError: { kind: string; code: string; message: string } | null }>;
  };
  return body.roles[0]!.lastError;
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  issuer = await DemoOidcIssuer.start();
  sts = await TencentStsEmulator.start({
    trust: [
      {
        roleArn: ROLE_ARN,
        providerId: PROVIDER,
        issuer: issuer.url,
        audience: AUDIENCE,
        subject: 'system:serviceaccount:payments:*',
        maxSessionDuration: 7200,
      },
    ],
  });
  dir = await mkdtemp(join(tmpdir(), 'crosscred-tencent-'));
  tokenFile = join(dir, 'token');
  await writeToken();
  transport = new StsHttpHandler({ connectTimeoutMs: 5_000, responseTimeoutMs: 10_000 });
});

afterEach(async () => {
  sts.heal();
  sts.now = Date.now;
  await running?.daemon.close();
  running = undefined;
  await writeToken();
});

afterAll(async () => {
  transport?.destroy();
  await Promise.all([sts?.close(), issuer?.close()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the request, as Tencent SDKs send it', () => {
  it('is an unsigned JSON POST with the X-TC headers and the five parameters, and its answer becomes the credentials STS issued', async () => {
    const token = await writeToken();
    const before = sts.requests.length;
    const credentials = await exchange({ durationSeconds: 3600 }).exchange(token);
    const record = sts.requests[before]!;
    expect(record.headers).toMatchObject({
      authorization: 'SKIP',
      'content-type': 'application/json',
      'x-tc-action': 'AssumeRoleWithWebIdentity',
      'x-tc-version': '2018-08-13',
      'x-tc-region': REGION,
      host: new URL(sts.url).host,
    });
    expect(Math.abs(Number(record.headers['x-tc-timestamp']) - Date.now() / 1000)).toBeLessThan(60);
    expect(record.params).toEqual({
      ProviderId: PROVIDER,
      WebIdentityToken: token,
      RoleArn: ROLE_ARN,
      RoleSessionName: 'crosscred-test',
      DurationSeconds: 3600,
    });
    const issued = sts.issued.at(-1)!;
    expect(credentials).toMatchObject({
      cloud: 'tencent',
      secretId: issued.secretId,
      secretKey: issued.secretKey,
      token: issued.token,
      expirationWall: issued.expiredTime * 1000,
      roleArn: ROLE_ARN,
      accountId: UIN,
    });
    expect(issued.expiredTime - Math.floor(Date.now() / 1000)).toBeGreaterThan(3500);
    expect(credentials.stsDateWall).toBeTypeOf('number');
  });

  it('leaves DurationSeconds out when none is configured (STS then gives 7200 s), and refuses more than 43200 before sending', async () => {
    const token = await writeToken();
    const before = sts.requests.length;
    await exchange().exchange(token);
    expect(sts.requests[before]!.params).not.toHaveProperty('DurationSeconds');
    expect(sts.issued.at(-1)!.expiredTime - Math.floor(Date.now() / 1000)).toBeGreaterThan(7100);
    expect(() => exchange({ durationSeconds: 43_201 })).toThrow(/1 to 43200 seconds/);
  });
});

describe('the emulator, held to the official SDK', () => {
  /** The SDK pointed at the emulator over plain HTTP; the call is unsigned (skipSign), so the key is never used. */
  const sdkClientConfig = () => ({
    credential: { secretId: '', secretKey: '' },
    region: REGION,
    profile: { httpProfile: { endpoint: new URL(sts.url).host, protocol: 'http://' } },
  });

  it("accepts the Node SDK's own OIDCRoleArnCredential request and the SDK reads its answer", async () => {
    const token = await writeToken();
    const before = sts.requests.length;
    const credential = new tencentcloud.OIDCRoleArnCredential(sdkClientConfig(), {
      ProviderId: PROVIDER,
      WebIdentityToken: token,
      RoleArn: ROLE_ARN,
      RoleSessionName: 'tencentcloud-node-sdk-test',
    });
    const got = await credential.getCredential();
    const issued = sts.issued.at(-1)!;
    expect(got).toEqual({ secretId: issued.secretId, secretKey: issued.secretKey, token: issued.token });
    // What the SDK sent is what the exchange sends (its extra X-TC-RequestClient and X-TC-TraceId aside).
    expect(sts.requests[before]!.headers).toMatchObject({ authorization: 'SKIP', 'x-tc-action': 'AssumeRoleWithWebIdentity', 'x-tc-version': '2018-08-13' });
  });

  it('answers the SDK an error it raises with the code, as Tencent STS does', async () => {
    const credential = new tencentcloud.OIDCRoleArnCredential(sdkClientConfig(), {
      ProviderId: PROVIDER,
      WebIdentityToken: 'not-a-jwt',
      RoleArn: ROLE_ARN,
      RoleSessionName: 'tencentcloud-node-sdk-test',
    });
    await expect(credential.getCredential()).rejects.toThrow(/the WebIdentityToken is invalid/);
  });
});

describe('STS refusals, classified', () => {
  it('reads a token STS calls bad (InvalidParameter.WebIdentityTokenError, also its answer to an expired token) as token-expired', async () => {
    const expiredToken = await issuer.mint({ sub: SUBJECT, aud: AUDIENCE, ttlSeconds: -60 });
    tokens.add(expiredToken);
    const { err, classified } = await failure(expiredToken);
    expect(err).toBeInstanceOf(CloudStsRefusal);
    expect(err).toMatchObject({ cloud: 'tencent', stsCode: 'InvalidParameter.WebIdentityTokenError', httpStatus: 200 });
    expect(classified).toMatchObject({ kind: 'token-expired', code: 'InvalidParameter.WebIdentityTokenError' });
  });

  it('makes a host clock more than five minutes off STS terminal (AuthFailure.SignatureExpire on X-TC-Timestamp)', async () => {
    sts.now = () => Date.now() + 2 * 3600_000;
    expect((await failure(await writeToken())).classified).toMatchObject({ kind: 'terminal', code: 'AuthFailure.SignatureExpire' });
  });

  it('makes a subject the trust policy does not allow terminal (UnauthorizedOperation)', async () => {
    const { classified } = await failure(await writeToken({ sub: 'system:serviceaccount:other:api' }));
    expect(classified).toMatchObject({ kind: 'terminal', code: 'UnauthorizedOperation' });
  });

  it('makes an unknown role, an untrusted provider and too long a session terminal', async () => {
    const token = await writeToken();
    expect((await failure(token, exchange({ roleArn: `qcs::cam::uin/${UIN}:roleName/nobody` }))).classified).toMatchObject({
      kind: 'terminal',
      code: 'ResourceNotFound.RoleNotFound',
    });
    expect((await failure(token, exchange({ providerId: 'someone-else' }))).classified).toMatchObject({
      kind: 'terminal',
      code: 'InvalidParameter.ParamError',
    });
    expect((await failure(token, exchange({ durationSeconds: 10_800 }))).classified).toMatchObject({
      kind: 'terminal',
      code: 'InvalidParameter.OverTimeError',
    });
  });

  it('retries throttling and STS trouble, and makes a code it does not know terminal', async () => {
    const token = await writeToken();
    for (const code of ['RequestLimitExceeded', 'InternalError.SystemError', 'InvalidParameter.OverLimit']) {
      sts.failNext({ kind: 'error', code });
      expect((await failure(token)).classified).toMatchObject({ kind: 'retryable', code });
    }
    sts.failNext({ kind: 'error', code: 'FailedOperation.SomethingNew' });
    expect((await failure(token)).classified).toMatchObject({ kind: 'terminal', code: 'FailedOperation.SomethingNew' });
  });

  it('never believes a code that does not look like one, and never repeats STS message text (which may echo the token)', async () => {
    const token = await writeToken();
    sts.failNext({ kind: 'error', code: 'Bad Code <script>', message: `your token ${token} is wrong` });
    const { err, classified } = await failure(token);
    expect(err).toMatchObject({ stsCode: 'UnexpectedError' });
    expect(classified.kind).toBe('terminal');
    expect((err as Error).message).not.toContain('is wrong');
  });
});

describe('answers that are not credentials', () => {
  it('retries garbage with HTTP 200 as a bad answer, a 502 page by its status, and makes a 403 page terminal', async () => {
    const token = await writeToken();
    sts.failNext({ kind: 'garbage' });
    expect((await failure(token)).classified).toMatchObject({ kind: 'retryable', code: 'CROSSCRED_ERR_STS_BAD_RESPONSE' });
    sts.failNext({ kind: 'raw', status: 502, body: '<html>502 Bad Gateway</html>' });
    expect((await failure(token)).classified).toMatchObject({ kind: 'retryable', code: 'HTTP502' });
    sts.failNext({ kind: 'raw', status: 403, body: '<html>Forbidden by proxy</html>' });
    expect((await failure(token)).classified).toMatchObject({ kind: 'terminal', code: 'HTTP403' });
  });

  it('refuses credentials that are already expired, by STS clock and by this host', async () => {
    const token = await writeToken();
    sts.failNext({ kind: 'lifetime', seconds: 0 });
    const expired = await failure(token);
    expect(expired.classified).toMatchObject({ kind: 'retryable', code: 'CROSSCRED_ERR_STS_BAD_RESPONSE' });
    expect((expired.err as Error).message).toMatch(/already expired by its own clock/);
    // This host's clock four minutes ahead (within X-TC-Timestamp's five): valid by STS's Date header, expired here.
    const ahead = { ...systemClock, wallNow: () => Date.now() + 240_000 };
    const hostAhead = new TencentWebIdentityExchange(
      { roleName: ROLE, roleArn: ROLE_ARN, accountId: UIN, providerId: PROVIDER, sessionName: 'crosscred-test', region: REGION, endpoint: sts.url },
      transport,
      ahead,
    );
    sts.failNext({ kind: 'lifetime', seconds: 120 });
    const behind = await failure(token, hostAhead);
    expect((behind.err as Error).message).toMatch(/already expired by this host's clock \(this host's clock is 2\d\d s ahead of STS's\)/);
  });

  it('gives up on a hung STS when the transport times out, as retryable', async () => {
    const impatient = new StsHttpHandler({ connectTimeoutMs: 1_000, responseTimeoutMs: 1_000 });
    try {
      sts.failNext({ kind: 'hang' });
      const ex = new TencentWebIdentityExchange(
        { roleName: ROLE, roleArn: ROLE_ARN, accountId: UIN, providerId: PROVIDER, sessionName: 'crosscred-test', region: REGION, endpoint: sts.url },
        impatient,
        systemClock,
      );
      const { classified } = await failure(await writeToken(), ex);
      expect(classified.kind).toBe('retryable');
    } finally {
      impatient.destroy();
    }
  }, 20_000);
});

describe('through the daemon: WebIdentityRole, RoleCredentialCache and the CVM metadata routes', () => {
  it('serves the role name and the document of the credentials STS issued', async () => {
    running = await startTencentDaemon();
    await running.daemon.firstFetch;
    const list = await get(`${running.base}/latest/meta-data/cam/security-credentials/`);
    expect(list).toMatchObject({ status: 200, text: ROLE });
    const doc = await get(`${running.base}${CREDENTIALS_PATH}`);
    expect(doc.status).toBe(200);
    const issued = sts.issued.at(-1)!;
    const body = JSON.parse(doc.text) as Record<string, unknown>;
    expect(Object.keys(body)).toEqual(['TmpSecretId', 'TmpSecretKey', 'ExpiredTime', 'Expiration', 'Token', 'Code']);
    expect(body).toEqual({
      TmpSecretId: issued.secretId,
      TmpSecretKey: issued.secretKey,
      ExpiredTime: issued.expiredTime,
      Expiration: new Date(issued.expiredTime * 1000).toISOString().replace('.000Z', 'Z'),
      Token: issued.token,
      Code: 'Success',
    });
    expect((await get(`${running.base}/latest/meta-data/placement/region`)).text).toBe(REGION);
    expect((await get(`${running.base}/latest/meta-data/cam/security-credentials/someone-else`)).status).toBe(404);
    // The AWS routes are not on a Tencent listener.
    expect((await get(`${running.base}/latest/meta-data/iam/security-credentials/`)).status).toBe(404);
  });

  it('re-reads the token once when STS calls it bad, and serves what the second try got without waiting', async () => {
    sts.failNext({ kind: 'error', code: 'InvalidParameter.WebIdentityTokenError' });
    const before = sts.calls;
    running = await startTencentDaemon();
    await running.daemon.firstFetch;
    expect(sts.calls - before).toBe(2);
    expect((await get(`${running.base}${CREDENTIALS_PATH}`)).status).toBe(200);
  });

  it('makes a terminal refusal visible in /readyz and answers 503 with Retry-After, never a token in a log line', async () => {
    await writeToken({ sub: 'system:serviceaccount:other:api' });
    running = await startTencentDaemon();
    await running.daemon.firstFetch;
    expect(await lastError(running.admin)).toMatchObject({ kind: 'terminal', code: 'UnauthorizedOperation' });
    const res = await get(`${running.base}${CREDENTIALS_PATH}`);
    expect(res.status).toBe(503);
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect(running.logs.some((l) => l.includes('UnauthorizedOperation'))).toBe(true);
    for (const line of running.logs) for (const t of tokens) expect(line).not.toContain(t);
  });

  it('retries a throttled first fetch with backoff and then serves', async () => {
    sts.failNext({ kind: 'error', code: 'RequestLimitExceeded' });
    running = await startTencentDaemon();
    await running.daemon.firstFetch;
    expect(await lastError(running.admin)).toMatchObject({ kind: 'retryable', code: 'RequestLimitExceeded' });
    const r = running;
    await waitFor(async () => (await get(`${r.base}${CREDENTIALS_PATH}`)).status === 200, 15_000);
    for (const line of running.logs) for (const t of tokens) expect(line).not.toContain(t);
  }, 30_000);

  it('never answers 200 with credentials STS handed out already expired', async () => {
    sts.failAlways({ kind: 'lifetime', seconds: -5 });
    running = await startTencentDaemon();
    await running.daemon.firstFetch;
    expect(await lastError(running.admin)).toMatchObject({ kind: 'retryable', code: 'CROSSCRED_ERR_STS_BAD_RESPONSE' });
    expect((await get(`${running.base}${CREDENTIALS_PATH}`)).status).toBe(503);
  });

  it('has no metadata routes with --disable-imds', async () => {
    const { logger } = memoryLogger();
    const daemon = await startDaemon({ ...tencentConfig(), imdsEnabled: false }, { logger });
    try {
      await daemon.firstFetch;
      expect((await get(`http://127.0.0.1:${daemon.listeners[0]!.port}${CREDENTIALS_PATH}`)).status).toBe(404);
    } finally {
      await daemon.close();
    }
  });
});
