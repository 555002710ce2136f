import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlibabaStsEmulator } from '../../src/demo/alibaba-sts-emulator.js';
import { DemoOidcIssuer } from '../../src/demo/oidc-issuer.js';
import { TencentStsEmulator } from '../../src/demo/tencent-sts-emulator.js';
import { type DaemonProcess, spawnDaemon, waitUntilReady } from '../support/chain.js';

/**
 * The listeners of Alibaba and Tencent roles, probed as an attacker on the host would (issue #13):
 * forged and replayed metadata tokens, tokens of another listener, a guessed or truncated path
 * secret, foreign Host headers (DNS rebinding), proxy headers on the token PUT, and a property run
 * of random methods, paths and headers. The oracle is docs/endpoints.md ("Listeners of Alibaba and
 * Tencent roles") and docs/errors.md: a 200 only on a documented route with what it requires, no
 * 5xx, and nothing sent back that was planted in the request. The daemons are real `crosscred
 * serve` processes; the secrets they hold are searched for in everything they print.
 */
const SUBJECT = 'system:serviceaccount:apps:web';
const RAM_ROLE = 'acs:ram::1234567890123456:role/oss-reader';
const RAM_PROVIDER = 'acs:ram::1234567890123456:oidc-provider/eks';
const CAM_ROLE = 'qcs::cam::uin/100012345678:roleName/cos-reader';
const MARKER = `zqMark${randomBytes(4).toString('hex')}`;

let issuer: DemoOidcIssuer;
let alibaba: AlibabaStsEmulator;
let tencent: TencentStsEmulator;
let dir: string;
/** An Alibaba role on loopback without a secret (URI open), one with a secret, and a Tencent role. */
let open: DaemonProcess;
let secured: DaemonProcess;
let cvm: DaemonProcess;
let secret: string;

async function writeToken(path: string, aud: string): Promise<void> {
  await writeFile(`${path}.tmp`, await issuer.mint({ sub: SUBJECT, aud, ttlSeconds: 3600 }));
  await rename(`${path}.tmp`, path);
}

beforeAll(async () => {
  issuer = await DemoOidcIssuer.start();
  alibaba = await AlibabaStsEmulator.start({
    trust: [{ roleArn: RAM_ROLE, oidcProviderArn: RAM_PROVIDER, issuer: issuer.url, audience: 'sts.aliyuncs.com', subject: SUBJECT }],
  });
  tencent = await TencentStsEmulator.start({
    trust: [{ roleArn: CAM_ROLE, providerId: 'eks', issuer: issuer.url, audience: 'sts.cloud.tencent.com', subject: SUBJECT }],
  });
  dir = await mkdtemp(join(tmpdir(), 'crosscred-hostile-clouds-'));
  await writeToken(join(dir, 'ali'), 'sts.aliyuncs.com');
  await writeToken(join(dir, 'tc'), 'sts.cloud.tencent.com');
  const ali = [
    '--cloud',
    'alibaba',
    '--role-arn',
    RAM_ROLE,
    '--oidc-provider-arn',
    RAM_PROVIDER,
    '--token-file',
    join(dir, 'ali'),
    '--sts-endpoint',
    alibaba.url,
  ];
  open = await spawnDaemon([...ali, '--listen', '127.0.0.1:0']);
  secured = await spawnDaemon([...ali, '--listen', '127.0.0.1:0', '--auth-token-file', join(dir, 'auth-token')]);
  cvm = await spawnDaemon([
    ...['--cloud', 'tencent', '--role-arn', CAM_ROLE, '--provider-id', 'eks', '--region', 'ap-guangzhou'],
    ...['--token-file', join(dir, 'tc'), '--sts-endpoint', tencent.url, '--listen', '127.0.0.1:0'],
  ]);
  await Promise.all([open, secured, cvm].map((d) => waitUntilReady(d.admin, 20_000)));
  secret = await readFile(join(dir, 'auth-token'), 'utf8');
}, 60_000);

afterAll(async () => {
  for (const daemon of [open, secured, cvm]) if (daemon) expect(await daemon.stop()).toBe(0);
  // What the daemons printed holds none of the secrets they served or kept.
  const printed = [open, secured, cvm].flatMap((d) => d?.output ?? []).join('\n');
  for (const issued of alibaba?.issued ?? []) {
    expect(printed).not.toContain(issued.accessKeySecret);
    expect(printed).not.toContain(issued.securityToken);
  }
  for (const issued of tencent?.issued ?? []) expect(printed).not.toContain(issued.secretKey);
  if (secret) expect(printed).not.toContain(secret);
  await Promise.all([issuer?.close(), alibaba?.close(), tencent?.close()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function get(url: string, headers: Record<string, string> = {}, method = 'GET') {
  const res = await request(url, { method: method as 'GET', headers });
  const body = await res.body.text();
  return { status: res.statusCode, body };
}

async function ecsToken(base: string, ttl = '60'): Promise<string> {
  const res = await get(`${base}/latest/api/token`, { 'x-aliyun-ecs-metadata-token-ttl-seconds': ttl }, 'PUT');
  expect(res.status).toBe(200);
  return res.body;
}

const ECS_ROLE = '/latest/meta-data/ram/security-credentials/oss-reader';

describe('forged, replayed and borrowed metadata tokens (Alibaba ECS metadata)', () => {
  it('refuses a GET without a token, with a forged one, and with a token of another listener', async () => {
    const base = open.listeners[0]!;
    expect((await get(`${base}${ECS_ROLE}`)).status).toBe(401);
    const real = await ecsToken(base);
    // One character changed; the same length; a token of the other daemon (another key).
    const forged = `${real.slice(0, -1)}${real.endsWith('A') ? 'B' : 'A'}`;
    expect((await get(`${base}${ECS_ROLE}`, { 'x-aliyun-ecs-metadata-token': forged })).status).toBe(401);
    const borrowed = await ecsToken(secured.listeners[0]!);
    expect((await get(`${base}${ECS_ROLE}`, { 'x-aliyun-ecs-metadata-token': borrowed })).status).toBe(401);
    // AWS's header name is not Alibaba's: no token by another name.
    expect((await get(`${base}${ECS_ROLE}`, { 'x-aws-ec2-metadata-token': real })).status).toBe(401);
    const ok = await get(`${base}${ECS_ROLE}`, { 'x-aliyun-ecs-metadata-token': real });
    expect(ok.status).toBe(200);
    const document = JSON.parse(ok.body) as { Code: string; AccessKeyId: string };
    expect(document.Code).toBe('Success');
    expect(alibaba.issued.map((i) => i.accessKeyId)).toContain(document.AccessKeyId);
  });

  it('refuses a token replayed after its TTL', async () => {
    const base = open.listeners[0]!;
    const short = await ecsToken(base, '1');
    expect((await get(`${base}${ECS_ROLE}`, { 'x-aliyun-ecs-metadata-token': short })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 2_100));
    expect((await get(`${base}${ECS_ROLE}`, { 'x-aliyun-ecs-metadata-token': short })).status).toBe(401);
  });

  it('gives no token to a forwarded PUT, nor for a TTL out of range', async () => {
    const base = open.listeners[0]!;
    for (const header of ['x-forwarded-for', 'forwarded', 'x-real-ip', 'via']) {
      const res = await get(`${base}/latest/api/token`, { 'x-aliyun-ecs-metadata-token-ttl-seconds': '60', [header]: MARKER }, 'PUT');
      expect(res.status, header).toBe(403);
      expect(res.body).not.toContain(MARKER);
    }
    // (Leading and trailing blanks are not the value: HTTP strips them before anyone reads it.)
    for (const ttl of ['0', '21601', '-1', '1e3', '6 0', '0x3c', MARKER]) {
      const res = await get(`${base}/latest/api/token`, { 'x-aliyun-ecs-metadata-token-ttl-seconds': ttl }, 'PUT');
      expect(res.status, ttl).toBe(400);
      expect(res.body).not.toContain(MARKER);
    }
  });
});

describe('the credentials URI path secret', () => {
  it('serves only the exact secret, and never says what it is', async () => {
    const base = secured.listeners[0]!;
    expect((await get(`${base}/v1/alibaba/credentials/${encodeURIComponent(secret)}`)).status).toBe(200);
    for (const guess of ['', 'x', secret.slice(0, -1), `${secret}x`, secret.toUpperCase() === secret ? secret.toLowerCase() : secret.toUpperCase(), MARKER]) {
      const res = await get(`${base}/v1/alibaba/credentials/${encodeURIComponent(guess)}`);
      expect([401, 403, 404], guess).toContain(res.status);
      expect(res.body).not.toContain(secret);
      expect(res.body).not.toContain(MARKER);
    }
    // The bare path is not open on a listener that has a secret.
    expect((await get(`${base}/v1/alibaba/credentials`)).status).toBe(401);
  });
});

describe('foreign Host headers (DNS rebinding)', () => {
  it('are refused on every route of both clouds; Tencent accepts its SDKs’ metadata name only', async () => {
    for (const [daemon, path] of [
      [open, '/v1/alibaba/credentials'],
      [cvm, '/latest/meta-data/cam/security-credentials/cos-reader'],
    ] as const) {
      for (const host of ['attacker.example', `${MARKER}.example`, 'metadata.tencentyun.com.attacker.example', '100.100.100.200']) {
        const res = await get(`${daemon.listeners[0]}${path}`, { host });
        expect(res.status, `${path} ${host}`).toBe(403);
        expect(res.body).not.toContain(MARKER);
      }
    }
    expect((await get(`${cvm.listeners[0]}/latest/meta-data/cam/security-credentials/cos-reader`, { host: 'metadata.tencentyun.com' })).status).toBe(200);
    // Alibaba's listener does not take Tencent's name.
    expect((await get(`${open.listeners[0]}/v1/alibaba/credentials`, { host: 'metadata.tencentyun.com' })).status).toBe(403);
  });
});

describe('random methods, paths and headers', () => {
  /** The documented 200s: an open URI on `open`, a secret URI on `secured`, the two Tencent paths. */
  const served = (daemon: DaemonProcess, method: string, path: string): boolean => {
    if (method !== 'GET' && method !== 'HEAD') return false;
    if (daemon === open) return path === '/v1/alibaba/credentials';
    if (daemon === secured) return path === `/v1/alibaba/credentials/${encodeURIComponent(secret)}`;
    return (
      path === '/latest/meta-data/cam/security-credentials' ||
      path === '/latest/meta-data/cam/security-credentials/' ||
      path === '/latest/meta-data/cam/security-credentials/cos-reader' ||
      path === '/latest/meta-data/placement/region'
    );
  };

  it('answer only documented routes with 200, never 5xx, and never echo what they were sent', async () => {
    const segment = fc.oneof(
      fc.constantFrom(
        'latest',
        'meta-data',
        'ram',
        'Ram',
        'cam',
        'security-credentials',
        'oss-reader',
        'cos-reader',
        'v1',
        'alibaba',
        'credentials',
        'api',
        'token',
        '..',
        '.',
        '',
        '%2e%2e',
        '%00',
        MARKER,
      ),
      fc.string({ minLength: 1, maxLength: 12 }).map((s) => encodeURIComponent(s)),
    );
    const requestArb = fc.record({
      daemon: fc.constantFrom(open, secured, cvm),
      method: fc.constantFrom('GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'OPTIONS', 'PATCH'),
      path: fc.array(segment, { minLength: 1, maxLength: 6 }).map((parts) => `/${parts.join('/')}`),
      headers: fc.dictionary(
        fc.constantFrom('x-aliyun-ecs-metadata-token', 'x-aliyun-ecs-metadata-token-ttl-seconds', 'authorization', 'x-forwarded-for', 'x-marker'),
        fc.oneof(
          fc.constant(MARKER),
          fc.string({ maxLength: 20 }).filter((v) => /^[\x20-\x7e]*$/.test(v)),
        ),
      ),
    });
    await fc.assert(
      fc.asyncProperty(requestArb, async ({ daemon, method, path, headers }) => {
        const res = await request(`${daemon.listeners[0]}${path}`, { method: method as 'GET', headers });
        const body = await res.body.text();
        expect(res.statusCode, `${method} ${path}`).toBeLessThan(500);
        if (res.statusCode === 200 && method !== 'PUT') expect(served(daemon, method, path), `${method} ${path} answered 200`).toBe(true);
        expect(body).not.toContain(MARKER);
      }),
      { numRuns: 300, seed: Number(process.env['CROSSCRED_FUZZ_SEED'] ?? randomBytes(4).readUInt32BE(0) >>> 1) },
    );
  }, 120_000);
});
