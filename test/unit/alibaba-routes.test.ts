import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CachedCredentials } from '../../src/cache/role-credential-cache.js';
import type { AlibabaRoleConfig } from '../../src/config/config.js';
import type { HttpListener } from '../../src/http/listener.js';
import { ContainerSecret } from '../../src/serve/container-secret.js';
import { buildCredentialListener } from '../../src/serve/credential-listener.js';
import type { CredentialResolver } from '../../src/serve/credential-resolver.js';
import type { ListenerContext, ServedRole } from '../../src/serve/listener-context.js';
import { Metrics } from '../../src/serve/metrics.js';
import { SessionTokenIssuer } from '../../src/serve/session-tokens.js';
import { memoryLogger } from '../support/chain.js';
import { FakeClock } from '../support/fake-clock.js';

/** The Alibaba routes of a credential listener, on loopback, over a stub cache: who may read what, and how refusals look. */
const ROLE: AlibabaRoleConfig = {
  cloud: 'alibaba',
  name: 'oss-reader',
  roleArn: 'acs:ram::1234567890123456:role/oss-reader',
  accountId: '1234567890123456',
  oidcProviderArn: 'acs:ram::1234567890123456:oidc-provider/eks',
  vpcEndpoint: false,
  region: '',
  sessionName: 'crosscred',
  token: { source: { kind: 'file', path: '/nonexistent', platform: 'configured' }, reason: 'test', notes: [] },
};

const ENTRY: CachedCredentials = {
  credentials: {
    cloud: 'alibaba',
    accessKeyId: 'STS.Abcdefghijklmnop',
    accessKeySecret: 'the-secret',
    securityToken: 'the-token',
    expirationWall: Date.UTC(2030, 0, 1),
    roleArn: ROLE.roleArn,
    accountId: ROLE.accountId,
  },
  receivedAtWall: Date.UTC(2029, 11, 31),
  serveUntilMono: Number.MAX_SAFE_INTEGER,
  serveUntilWall: Date.UTC(2030, 0, 1),
};

let held: CachedCredentials | undefined = ENTRY;
const resolver: CredentialResolver = { current: () => held, waitForCurrent: async () => held, retryAfterSeconds: () => 7 };
const listeners: HttpListener[] = [];
let dir: string;
let secret: ContainerSecret;
let secretText: string;

async function listen(context: Partial<ListenerContext>): Promise<string> {
  const roles = new Map<string, ServedRole>([[ROLE.name, { config: ROLE, cache: resolver }]]);
  const listener = buildCredentialListener({
    address: { host: '127.0.0.1', port: 0 },
    allowedHosts: [],
    context: {
      roleName: ROLE.name,
      roles,
      sessionTokens: new SessionTokenIssuer(new FakeClock()),
      containerSecret: undefined,
      allowImdsV1: false,
      imdsEnabled: true,
      loopback: true,
      ...context,
    },
    metrics: new Metrics(() => []),
    logger: memoryLogger().logger,
  });
  listeners.push(listener);
  return `http://127.0.0.1:${await listener.listen({ host: '127.0.0.1', port: 0 })}`;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'crosscred-alibaba-routes-'));
  secret = (await ContainerSecret.load(join(dir, 'auth'))).secret;
  secretText = await readFile(join(dir, 'auth'), 'utf8');
});

afterEach(async () => {
  held = ENTRY;
  await Promise.all(listeners.splice(0).map((l) => l.close()));
});

afterAll(() => rm(dir, { recursive: true, force: true }));

describe('the Alibaba URI endpoint', () => {
  it('is open on a loopback listener without a secret', async () => {
    const base = await listen({});
    const res = await fetch(`${base}/v1/alibaba/credentials`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.json()).toMatchObject({ Code: 'Success', AccessKeyId: 'STS.Abcdefghijklmnop', Expiration: '2030-01-01T00:00:00Z' });
  });

  it('is off on a non-loopback listener without a secret', async () => {
    const base = await listen({ loopback: false });
    const res = await fetch(`${base}/v1/alibaba/credentials`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { Code: string }).Code).toBe('CROSSCRED_ERR_ALIBABA_URI_DISABLED');
    expect((await fetch(`${base}/v1/alibaba/credentials/anything-at-all-here`)).status).toBe(404);
  });

  it('with a secret, answers only on the path that carries it', async () => {
    for (const loopback of [true, false]) {
      const base = await listen({ containerSecret: secret, loopback });
      expect((await fetch(`${base}/v1/alibaba/credentials`)).status).toBe(401);
      expect((await fetch(`${base}/v1/alibaba/credentials/${'x'.repeat(secretText.length)}`)).status).toBe(403);
      const res = await fetch(`${base}/v1/alibaba/credentials/${encodeURIComponent(secretText)}`);
      expect(res.status).toBe(200);
      expect(((await res.json()) as { AccessKeyId: string }).AccessKeyId).toBe('STS.Abcdefghijklmnop');
    }
  });

  it('answers 503 with Retry-After when nothing valid is held, and never serves another cloud', async () => {
    const base = await listen({});
    held = undefined;
    const res = await fetch(`${base}/v1/alibaba/credentials`);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('7');
    held = {
      ...ENTRY,
      credentials: { cloud: 'aws', accessKeyId: 'ASIA', secretAccessKey: 's', sessionToken: 't', expirationWall: 1, roleArn: 'r', accountId: 'a' },
    };
    expect((await fetch(`${base}/v1/alibaba/credentials`)).status).toBe(503);
  });
});

describe('the ECS metadata emulation', () => {
  const tokenFor = async (base: string, ttl = '60') =>
    fetch(`${base}/latest/api/token`, { method: 'PUT', headers: { 'x-aliyun-ecs-metadata-token-ttl-seconds': ttl } });

  it('serves the role and its credentials with a session token', async () => {
    const base = await listen({});
    const put = await tokenFor(base);
    expect(put.status).toBe(200);
    const headers = { 'x-aliyun-ecs-metadata-token': await put.text() };
    for (const path of ['/latest/meta-data/ram/security-credentials/', '/latest/meta-data/ram/security-credentials']) {
      expect(await (await fetch(`${base}${path}`, { headers })).text()).toBe('oss-reader');
    }
    for (const path of ['/latest/meta-data/ram/security-credentials/oss-reader', '/latest/meta-data/Ram/security-credentials/oss-reader']) {
      const doc = (await (await fetch(`${base}${path}`, { headers })).json()) as Record<string, string>;
      expect(doc).toMatchObject({ Code: 'Success', AccessKeyId: 'STS.Abcdefghijklmnop', LastUpdated: '2029-12-31T00:00:00Z' });
    }
    expect((await fetch(`${base}/latest/meta-data/ram/security-credentials/other`, { headers })).status).toBe(404);
  });

  it('refuses reads without a valid token unless token-less reads are allowed', async () => {
    const base = await listen({});
    const path = '/latest/meta-data/ram/security-credentials/oss-reader';
    const missing = await fetch(`${base}${path}`);
    expect(missing.status).toBe(401);
    expect(await missing.text()).toContain('CROSSCRED_ERR_ECS_METADATA_TOKEN_REQUIRED');
    expect((await fetch(`${base}${path}`, { headers: { 'x-aliyun-ecs-metadata-token': 'cc1forged' } })).status).toBe(401);
    // An AWS IMDS token header is not Alibaba's.
    expect((await fetch(`${base}${path}`, { headers: { 'x-aws-ec2-metadata-token': await (await tokenFor(base)).text() } })).status).toBe(401);
    const open = await listen({ allowImdsV1: true });
    expect((await fetch(`${open}${path}`)).status).toBe(200);
  });

  it('issues tokens only for a TTL of 1-21600 and never to a forwarded request', async () => {
    const base = await listen({});
    for (const ttl of ['0', '21601', '1e3', '-1', 'abc']) expect((await tokenFor(base, ttl)).status).toBe(400);
    expect((await fetch(`${base}/latest/api/token`, { method: 'PUT' })).status).toBe(400);
    const forwarded = await fetch(`${base}/latest/api/token`, {
      method: 'PUT',
      headers: { 'x-aliyun-ecs-metadata-token-ttl-seconds': '60', 'x-forwarded-for': '10.0.0.1' },
    });
    expect(forwarded.status).toBe(403);
    expect((await tokenFor(base, '21600')).status).toBe(200);
  });

  it('is absent with --disable-imds, while the URI endpoint stays', async () => {
    const base = await listen({ imdsEnabled: false });
    expect((await tokenFor(base)).status).toBe(404);
    expect((await fetch(`${base}/v1/alibaba/credentials`)).status).toBe(200);
  });

  it('answers 503 with Retry-After when nothing valid is held', async () => {
    const base = await listen({ allowImdsV1: true });
    held = undefined;
    const res = await fetch(`${base}/latest/meta-data/ram/security-credentials/oss-reader`);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('7');
  });
});
