import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AlibabaRoleConfig, Config } from '../../src/config/config.js';
import { type Clock, systemClock } from '../../src/core/clock.js';
import { isCrosscredError } from '../../src/core/errors.js';
import { AlibabaStsEmulator } from '../../src/demo/alibaba-sts-emulator.js';
import { DemoOidcIssuer } from '../../src/demo/oidc-issuer.js';
import { AlibabaOidcExchange, type AlibabaRoleExchangeOptions } from '../../src/exchange/alibaba-oidc-exchange.js';
import { CloudStsRefusal } from '../../src/exchange/cloud-sts-refusal.js';
import { classifyFailure } from '../../src/exchange/failure.js';
import { StsHttpHandler } from '../../src/platform/aws/sts-http-handler.js';
import { WebIdentityRole } from '../../src/roles/web-identity-role.js';
import { type RunningDaemon, startDaemon } from '../../src/serve/daemon.js';
import { FileTokenSource } from '../../src/sources/file-token-source.js';
import { memoryLogger } from '../support/chain.js';

/**
 * The Alibaba AssumeRoleWithOIDC exchange against the Alibaba STS emulator (a real HTTP server that
 * verifies the token through discovery and JWKS), and through the daemon: success, each kind of
 * refusal and how the one classifier judges it, garbage, a hang cut off by the transport, answers
 * that are already expired, and the token in no error message and no log line.
 */
const ACCOUNT = '1234567890123456';
const ROLE_ARN = `acs:ram::${ACCOUNT}:role/oss-reader`;
const PROVIDER_ARN = `acs:ram::${ACCOUNT}:oidc-provider/eks-cluster`;
const AUDIENCE = 'sts.aliyuncs.com';
const SUBJECT = 'system:serviceaccount:payments:api';

let issuer: DemoOidcIssuer;
let sts: AlibabaStsEmulator;
let transport: StsHttpHandler;
let dir: string;
let tokenFile: string;
/** Every error message the tests saw, checked for the tokens at the end. */
const messages: string[] = [];
const tokens: string[] = [];

async function mint(claims: { sub?: string; aud?: string; ttlSeconds?: number } = {}): Promise<string> {
  const token = await issuer.mint({ sub: claims.sub ?? SUBJECT, aud: claims.aud ?? AUDIENCE, ttlSeconds: claims.ttlSeconds ?? 3600 });
  tokens.push(token);
  return token;
}

async function writeToken(token: string): Promise<void> {
  await writeFile(`${tokenFile}.tmp`, token);
  await rename(`${tokenFile}.tmp`, tokenFile);
}

function exchangeFor(options: Partial<AlibabaRoleExchangeOptions> = {}, clock: Clock = systemClock, via: StsHttpHandler = transport): AlibabaOidcExchange {
  return new AlibabaOidcExchange(
    {
      roleName: 'oss-reader',
      roleArn: ROLE_ARN,
      accountId: ACCOUNT,
      oidcProviderArn: PROVIDER_ARN,
      sessionName: 'crosscred-test',
      endpoint: sts.url,
      ...options,
    },
    via,
    clock,
  );
}

/** The exchange's failure, recorded for the token check. */
async function failureOf(promise: Promise<unknown>): Promise<Error> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  if (err === undefined) throw new Error('the exchange succeeded');
  messages.push(err.message, classifyFailure(err).message);
  return err;
}

beforeAll(async () => {
  issuer = await DemoOidcIssuer.start();
  sts = await AlibabaStsEmulator.start({
    trust: [
      {
        roleArn: ROLE_ARN,
        oidcProviderArn: PROVIDER_ARN,
        issuer: issuer.url,
        audience: AUDIENCE,
        subject: 'system:serviceaccount:payments:*',
        maxSessionDuration: 7200,
      },
    ],
  });
  transport = new StsHttpHandler({ connectTimeoutMs: 5_000, responseTimeoutMs: 15_000 });
  dir = await mkdtemp(join(tmpdir(), 'crosscred-alibaba-'));
  tokenFile = join(dir, 'token');
});

afterEach(() => sts.heal());

afterAll(async () => {
  // The token never reaches an error message or a classifier's message.
  for (const message of messages) for (const token of tokens) expect(message).not.toContain(token.split('.')[2]!);
  transport.destroy();
  await Promise.all([sts.close(), issuer.close()]);
  await rm(dir, { recursive: true, force: true });
});

describe('AssumeRoleWithOIDC', () => {
  it('sends what the SDKs send and returns the credentials STS issued', async () => {
    const token = await mint();
    const creds = await exchangeFor().exchange(token);
    const issued = sts.issued.at(-1)!;
    expect(creds).toMatchObject({
      cloud: 'alibaba',
      accessKeyId: issued.accessKeyId,
      accessKeySecret: issued.accessKeySecret,
      securityToken: issued.securityToken,
      expirationWall: issued.expiration.getTime(),
      roleArn: ROLE_ARN,
      accountId: ACCOUNT,
    });
    expect(creds.stsDateWall).toBeTypeOf('number');
    expect(creds.accessKeyId).toMatch(/^STS\./);
    const request = sts.requests.at(-1)!;
    // POST, the token in the form body only: the query holds what Alibaba's SDKs put there.
    expect(request).toMatchObject({
      method: 'POST',
      token,
      roleArn: ROLE_ARN,
      oidcProviderArn: PROVIDER_ARN,
      sessionName: 'crosscred-test',
      durationSeconds: null,
    });
    expect(request.queryNames).toEqual(['Action', 'Version', 'Format', 'Timestamp']);
    expect(issued.subject).toBe(SUBJECT);
  });

  it('asks for the configured duration', async () => {
    const creds = await exchangeFor({ durationSeconds: 7200 }).exchange(await mint());
    expect(sts.requests.at(-1)!.durationSeconds).toBe('7200');
    expect(creds.expirationWall - Date.now()).toBeGreaterThan(3600_000);
  });

  const refusals: Array<[string, string, { sub?: string; aud?: string; ttlSeconds?: number }, Partial<AlibabaRoleExchangeOptions>, string]> = [
    ['a subject the trust rule does not allow', 'AuthenticationFail.NoPermission', { sub: 'system:serviceaccount:other:api' }, {}, 'terminal'],
    ['another audience', 'AuthenticationFail.OIDCToken.AudienceNotMatch', { aud: 'sts.amazonaws.com' }, {}, 'terminal'],
    ['an expired token', 'AuthenticationFail.OIDCToken.Expired', { ttlSeconds: -120 }, {}, 'token-expired'],
    ['a role that does not exist', 'EntityNotExist.Role', {}, { roleArn: `acs:ram::${ACCOUNT}:role/nobody` }, 'terminal'],
    [
      'an OIDC provider the role does not trust',
      'AuthenticationFail.NoPermission',
      {},
      { oidcProviderArn: `acs:ram::${ACCOUNT}:oidc-provider/other` },
      'terminal',
    ],
    ['a duration under 900 s', 'InvalidParameter.DurationSeconds', {}, { durationSeconds: 600 }, 'terminal'],
    ["a duration over the role's maximum", 'InvalidParameter.DurationSeconds', {}, { durationSeconds: 7201 }, 'terminal'],
    ['a session name STS refuses', 'InvalidParameter.RoleSessionName', {}, { sessionName: 'a' }, 'terminal'],
  ];
  for (const [what, code, claims, options, kind] of refusals) {
    it(`is refused for ${what}: ${code}, ${kind}`, async () => {
      const err = await failureOf(exchangeFor(options).exchange(await mint(claims)));
      expect(err).toBeInstanceOf(CloudStsRefusal);
      expect((err as CloudStsRefusal).stsCode).toBe(code);
      expect(classifyFailure(err)).toMatchObject({ kind, code });
      // Our words only: the emulator's message text (as real STS's, which may echo the request) is not repeated.
      expect(err.message).toBe(`Alibaba Cloud STS refused AssumeRoleWithOIDC for role oss-reader: ${code} (HTTP ${(err as CloudStsRefusal).httpStatus})`);
    });
  }

  it('rejects a token signed by another key', async () => {
    const other = await DemoOidcIssuer.start();
    try {
      const forged = await other.mint({ sub: SUBJECT, aud: AUDIENCE, ttlSeconds: 600, extra: {} });
      // Same claims, the issuer's name, another key's signature.
      const [header, , signature] = forged.split('.');
      const [, payload] = (await mint()).split('.');
      const err = await failureOf(exchangeFor().exchange(`${header}.${payload}.${signature}`));
      expect(classifyFailure(err)).toMatchObject({ kind: 'terminal', code: 'AuthenticationFail.OIDCToken.InvalidSignature' });
    } finally {
      await other.close();
    }
  });

  const faults: Array<[string, number, string, string]> = [
    ['Throttling.User', 400, 'retryable', 'Throttling.User'],
    ['ServiceUnavailable', 503, 'retryable', 'ServiceUnavailable'],
    ['InternalError', 500, 'retryable', 'InternalError'],
    ['AuthenticationFail.OIDCToken.IssuerConfigurationBroken', 401, 'retryable', 'AuthenticationFail.OIDCToken.IssuerConfigurationBroken'],
    ['Some.Unknown.Code', 400, 'terminal', 'Some.Unknown.Code'],
    ['Some.Unknown.Code', 502, 'retryable', 'Some.Unknown.Code'],
    ['<script>alert(1)</script>', 403, 'terminal', 'HTTP403'],
  ];
  for (const [code, status, kind, expected] of faults) {
    it(`classifies ${JSON.stringify(code)} with HTTP ${status} as ${kind} (${expected})`, async () => {
      sts.failNext({ kind: 'error', status, code, message: 'server words that must not be repeated' });
      const err = await failureOf(exchangeFor().exchange(await mint()));
      expect(classifyFailure(err)).toMatchObject({ kind, code: expected });
      expect(err.message).not.toContain('server words');
    });
  }

  it("judges a proxy's HTML error page by its status", async () => {
    sts.failNext({ kind: 'raw', status: 502, body: '<html><body>Bad Gateway</body></html>' });
    const err = await failureOf(exchangeFor().exchange(await mint()));
    expect(classifyFailure(err)).toMatchObject({ kind: 'retryable', code: 'HTTP502' });
  });

  it('retries garbage in a 200 answer as STS_BAD_RESPONSE', async () => {
    sts.failNext({ kind: 'garbage' });
    const err = await failureOf(exchangeFor().exchange(await mint()));
    expect(isCrosscredError(err, 'STS_BAD_RESPONSE')).toBe(true);
    expect(classifyFailure(err).kind).toBe('retryable');
  });

  it('gives up on a hanging STS when the transport times out, and retries', async () => {
    const quick = new StsHttpHandler({ connectTimeoutMs: 1_000, responseTimeoutMs: 1_500 });
    try {
      sts.failNext({ kind: 'hang' });
      const err = await failureOf(exchangeFor({}, systemClock, quick).exchange(await mint()));
      expect(classifyFailure(err).kind).toBe('retryable');
      expect(classifyFailure(err).code).toMatch(/^(?:UND_ERR_HEADERS_TIMEOUT|TimeoutError|AbortError)$/);
    } finally {
      quick.destroy();
    }
  });

  it('retries a reset connection', async () => {
    sts.failNext({ kind: 'reset' });
    const err = await failureOf(exchangeFor().exchange(await mint()));
    expect(classifyFailure(err).kind).toBe('retryable');
  });

  it("refuses credentials already expired by STS's own clock", async () => {
    sts.failNext({ kind: 'lifetime', seconds: 0 });
    const err = await failureOf(exchangeFor().exchange(await mint()));
    expect(isCrosscredError(err, 'STS_BAD_RESPONSE')).toBe(true);
    expect(err.message).toContain('already expired by its own clock');
  });

  it("refuses credentials already expired by this host's clock, and says the clock is ahead", async () => {
    const ahead: Clock = { ...systemClock, wallNow: () => Date.now() + 2 * 3600_000 };
    const err = await failureOf(exchangeFor({}, ahead).exchange(await mint()));
    expect(isCrosscredError(err, 'STS_BAD_RESPONSE')).toBe(true);
    expect(err.message).toMatch(/already expired by this host's clock \(this host's clock is 7\d{3} s ahead of STS's\)/);
  });
});

describe('an Alibaba role composed with its token file', () => {
  it('re-reads the token once when STS says it expired, and succeeds', async () => {
    await writeToken(await mint());
    const role = new WebIdentityRole('oss-reader', new FileTokenSource(tokenFile, systemClock), exchangeFor());
    const before = sts.calls;
    sts.failNext({ kind: 'error', status: 401, code: 'AuthenticationFail.OIDCToken.Expired', message: 'This JsonWebToken is expired.' });
    const creds = await role.exchange();
    expect(sts.calls - before).toBe(2);
    expect(creds).toMatchObject({ cloud: 'alibaba', accessKeyId: sts.issued.at(-1)!.accessKeyId });
  });

  it('gives up after the second expired answer', async () => {
    await writeToken(await mint());
    const role = new WebIdentityRole('oss-reader', new FileTokenSource(tokenFile, systemClock), exchangeFor());
    const before = sts.calls;
    sts.failAlways({ kind: 'error', status: 401, code: 'AuthenticationFail.OIDCToken.Expired' });
    const err = await failureOf(role.exchange());
    expect(sts.calls - before).toBe(2);
    expect(classifyFailure(err).kind).toBe('token-expired');
  });
});

describe('the daemon with an Alibaba role', () => {
  let daemon: RunningDaemon;
  let base: string;
  let lines: string[];

  function config(role: Partial<AlibabaRoleConfig> = {}): Config {
    return {
      roles: [
        {
          cloud: 'alibaba',
          name: 'oss-reader',
          roleArn: ROLE_ARN,
          accountId: ACCOUNT,
          oidcProviderArn: PROVIDER_ARN,
          vpcEndpoint: false,
          region: '',
          stsEndpoint: sts.url,
          sessionName: 'crosscred-daemon',
          token: { source: { kind: 'file', path: tokenFile, platform: 'configured' }, reason: 'test', notes: [] },
          ...role,
        },
      ],
      listeners: [{ host: '127.0.0.1', port: 0, role: 'oss-reader' }],
      admin: { host: '127.0.0.1', port: 0 },
      allowImdsV1: false,
      imdsEnabled: true,
      allowedHosts: [],
      sts: { connectTimeoutMs: 5_000, responseTimeoutMs: 15_000 },
      logLevel: 'debug',
    };
  }

  async function start(cfg: Config): Promise<void> {
    const memory = memoryLogger('trace');
    lines = memory.lines;
    daemon = await startDaemon(cfg, { logger: memory.logger });
    base = `http://127.0.0.1:${daemon.listeners[0]!.port}`;
  }

  afterEach(async () => {
    // Neither the token nor the keys reach a log line.
    for (const line of lines) {
      for (const token of tokens) expect(line).not.toContain(token.split('.')[2]!);
      for (const issued of sts.issued) {
        expect(line).not.toContain(issued.accessKeySecret);
        expect(line).not.toContain(issued.securityToken.slice(0, 40));
      }
    }
    await daemon.close();
  });

  it('serves what STS issued at the URI endpoint and as ECS metadata', async () => {
    await writeToken(await mint());
    await start(config());
    await daemon.firstFetch;
    const issued = sts.issued.at(-1)!;
    const uri = await fetch(`${base}/v1/alibaba/credentials`);
    expect(uri.status).toBe(200);
    expect(await uri.json()).toEqual({
      Code: 'Success',
      AccessKeyId: issued.accessKeyId,
      AccessKeySecret: issued.accessKeySecret,
      SecurityToken: issued.securityToken,
      Expiration: issued.expiration.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    });
    const token = await (await fetch(`${base}/latest/api/token`, { method: 'PUT', headers: { 'x-aliyun-ecs-metadata-token-ttl-seconds': '60' } })).text();
    const headers = { 'x-aliyun-ecs-metadata-token': token };
    expect(await (await fetch(`${base}/latest/meta-data/ram/security-credentials/`, { headers })).text()).toBe('oss-reader');
    const ecs = (await (await fetch(`${base}/latest/meta-data/ram/security-credentials/oss-reader`, { headers })).json()) as Record<string, string>;
    expect(ecs).toMatchObject({ Code: 'Success', AccessKeyId: issued.accessKeyId, Expiration: issued.expiration.toISOString().replace(/\.\d{3}Z$/, 'Z') });
    expect(ecs.LastUpdated).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    // No AWS endpoint on an Alibaba listener.
    expect((await fetch(`${base}/latest/meta-data/iam/security-credentials/`, { headers: { 'x-aws-ec2-metadata-token': token } })).status).toBe(404);
  });

  it('answers 503 with Retry-After, never 200, while STS refuses; the role reports a terminal error', async () => {
    await writeToken(await mint({ sub: 'system:serviceaccount:other:api' }));
    await start(config());
    await daemon.firstFetch;
    const res = await fetch(`${base}/v1/alibaba/credentials`);
    expect(res.status).toBe(503);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    const status = daemon.roles.get('oss-reader')!.cache.status();
    expect(status.lastError).toMatchObject({ kind: 'terminal', code: 'AuthenticationFail.NoPermission' });
    messages.push(status.lastError!.message);
  });
});
