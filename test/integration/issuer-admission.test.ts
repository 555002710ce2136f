import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { createServer, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Attestor } from '../../src/issuer/attestor.js';
import { AlibabaEcsIdentityAttestor } from '../../src/issuer/attestors/alibaba-ecs-identity.js';
import { TencentCamRoleAttestor } from '../../src/issuer/attestors/tencent-cam-role.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/issuer-server.js';
import { EcsMetadataClient } from '../../src/platform/alibaba/ecs-metadata.js';
import { encodeSubjectToken, SUBJECT_TOKEN_TYPES, type SubjectTokenType, TOKEN_EXCHANGE_GRANT_TYPE } from '../../src/protocol/issuer-token-exchange.js';
import { signTencentGetCallerIdentity } from '../../src/sources/tencent-cvm-token-source.js';
import { memoryLogger } from '../support/chain.js';
import { FakeEcsMetadata, makeSigningCa, type SigningCa, sampleInstance } from '../support/fake-alibaba-cloud.js';
import { baseConfig, configFrom, ECS_ACCOUNT, FakeAttestor, fakeSubjectToken, freePort, makeKey, TENCENT_UIN, tempDir } from '../support/issuer-fixtures.js';

/**
 * Issue #11 item 1: forged Tencent CAM-role requests (random signatures, bound to this issuer's
 * public URL, so they pass every local check) each hold an attestation slot while Tencent STS is
 * asked. Here "Tencent STS" holds every answer until the test lets go; 80 forged requests come
 * from 127.0.0.2, and a genuine ECS attestation (a PKCS#7 signed by openssl through the fake
 * metadata server, verified by the real attestor) from 127.0.0.1 must still get its token. The
 * RAM-role kind has a fake attestor, for cheap requests in the per-address test. Bounded by
 * counts and generous deadlines, not timings.
 */

const FORGED = 80;
const DEADLINE_MS = 20_000;

/** An STS that accepts requests and answers none of them until release(). */
class HoldingSts {
  readonly held: ServerResponse[] = [];
  received = 0;
  private constructor(
    readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<HoldingSts> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const sts = new HoldingSts(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    server.on('request', (req, res) => {
      sts.received++;
      req.resume();
      sts.held.push(res);
    });
    return sts;
  }

  /** Answers every held request as Tencent does a bad signature. */
  release(): void {
    for (const res of this.held.splice(0)) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ Response: { Error: { Code: 'AuthFailure.SignatureFailure', Message: 'forged' }, RequestId: 'r-1' } }));
    }
  }

  async close(): Promise<void> {
    this.release();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** POSTs a token-exchange form from `localAddress`; resolves with the status, Retry-After and body. */
function post(
  tokenUrl: string,
  localAddress: string,
  type: SubjectTokenType,
  subjectToken: string,
): Promise<{ status: number; retryAfter: string | undefined; body: string }> {
  const body = new URLSearchParams({ grant_type: TOKEN_EXCHANGE_GRANT_TYPE, subject_token_type: type, subject_token: subjectToken }).toString();
  return new Promise((resolve, reject) => {
    const req = request(
      tokenUrl,
      {
        method: 'POST',
        localAddress,
        agent: false,
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const retryAfter = res.headers['retry-after'];
          resolve({ status: res.statusCode ?? 0, retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter, body: Buffer.concat(chunks).toString() });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Polls `condition` every 20 ms until it holds or DEADLINE_MS passes. */
async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const end = Date.now() + DEADLINE_MS;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function gauge(issuer: RunningIssuer, name: string): Promise<number> {
  const metric = await issuer.metrics.registry.getSingleMetric(name)!.get();
  return metric.values[0]?.value ?? 0;
}

/** What the alibaba-ecs source sends: token-mode session, document, PKCS#7 over the audience. */
async function ecsAttestation(metadata: FakeEcsMetadata, issuerUrl: string): Promise<string> {
  const client = new EcsMetadataClient({ baseUrl: metadata.url, timeoutMs: 3_000 });
  try {
    const audience = JSON.stringify({ aud: issuerUrl, signingTime: Math.floor(Date.now() / 1000) });
    const session = await client.token();
    const document = await client.get('/latest/dynamic/instance-identity/document', session, 8192, 'document');
    const pkcs7 = await client.get(`/latest/dynamic/instance-identity/pkcs7?audience=${encodeURIComponent(audience)}`, session, 32768, 'pkcs7');
    return encodeSubjectToken({ document, pkcs7, audience });
  } finally {
    await client.close();
  }
}

describe('admission before work (issue #11 item 1)', () => {
  const instance = sampleInstance();
  let ca: SigningCa;
  let metadata: FakeEcsMetadata;
  let dir: string;
  let sts: HoldingSts;
  let tencent: TencentCamRoleAttestor;
  let issuer: RunningIssuer;
  let issuerUrl: string;
  let tokenUrl: string;

  beforeAll(async () => {
    dir = await tempDir();
    ca = await makeSigningCa('alibaba');
    metadata = await FakeEcsMetadata.start({ instance, signer: ca, requireToken: true });
    sts = await HoldingSts.start();
    issuerUrl = `http://127.0.0.1:${await freePort()}`;
    const key = await makeKey(dir, 'key.pem');
    const config = configFrom(
      baseConfig(issuerUrl, [{ file: key.file, active: true }], {
        attestationTimeoutMs: 30_000,
        // A slow refill (1/s), so that the per-address test does not depend on how fast this machine is.
        clientRateLimit: { burst: 40, perSecond: 1 },
        attestors: { alibabaEcsIdentity: { signingCertificateFiles: [ca.signerCertPath] }, alibabaRamRole: {}, tencentCamRole: {} },
        policy: {
          alibabaEcsIdentity: { accounts: [instance.accountId], regions: [instance.regionId], instanceIds: ['*'] },
          alibabaRamRole: { accounts: [ECS_ACCOUNT], roles: ['app-role'] },
          tencentCamRole: { accounts: [TENCENT_UIN], roles: ['*'], instanceIds: ['*'] },
        },
      }),
      join(dir, 'issuer.yaml'),
    );
    tencent = new TencentCamRoleAttestor({ extraStsEndpoints: [sts.url], timeoutMs: 29_000 });
    const attestors = new Map<SubjectTokenType, Attestor>([
      [SUBJECT_TOKEN_TYPES.alibabaEcsIdentity, new AlibabaEcsIdentityAttestor({ signingCertificatesPem: [ca.signerCertPem] })],
      [SUBJECT_TOKEN_TYPES.alibabaRamRole, new FakeAttestor(SUBJECT_TOKEN_TYPES.alibabaRamRole)],
      [SUBJECT_TOKEN_TYPES.tencentCamRole, tencent],
    ]);
    issuer = await startIssuer(config, { logger: memoryLogger('info').logger, createAttestors: async () => attestors });
    tokenUrl = config.tokenEndpointUrl;
  });
  afterAll(async () => {
    await sts?.close();
    await issuer?.close();
    await tencent?.close();
    await metadata?.close();
    await ca?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('80 forged Tencent requests held by a slow STS leave a genuine ECS attestation its token; the excess is refused at once', async () => {
    const forged = () =>
      encodeSubjectToken(
        signTencentGetCallerIdentity({
          credentials: {
            secretId: `AKID${randomBytes(12).toString('hex')}`,
            secretKey: randomBytes(24).toString('hex'),
            token: randomBytes(32).toString('hex'),
          },
          issuerUrl,
          stsEndpoint: sts.url,
          timestamp: Math.floor(Date.now() / 1000),
        }),
      );
    const answers: Array<{ status: number; retryAfter: string | undefined; body: string }> = [];
    const pending = Array.from({ length: FORGED }, () =>
      post(tokenUrl, '127.0.0.2', SUBJECT_TOKEN_TYPES.tencentCamRole, forged()).then((a) => {
        answers.push(a);
        return a;
      }),
    );
    // Every forged request is either answered or holding an attestation slot.
    await until(async () => answers.length + (await gauge(issuer, 'crosscred_issuer_attestations_in_flight')) === FORGED, 'the forged requests to settle');
    await until(() => sts.received > 0, 'STS to be asked');

    const genuine = await post(tokenUrl, '127.0.0.1', SUBJECT_TOKEN_TYPES.alibabaEcsIdentity, await ecsAttestation(metadata, issuerUrl));
    expect(genuine.status, genuine.body).toBe(200);
    const jwt = (JSON.parse(genuine.body) as { access_token: string }).access_token;
    expect(JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString())).toMatchObject({
      sub: `alibaba-ecs:${instance.accountId}:${instance.regionId}:${instance.instanceId}`,
    });

    // Nothing refused was queued: each refusal came with Retry-After while the STS still held the rest.
    expect(answers.length).toBeGreaterThan(0);
    for (const a of answers) {
      expect([429, 503]).toContain(a.status);
      expect(a.retryAfter).toMatch(/^[1-9]\d*$/);
    }
    expect(answers.some((a) => a.body.includes('CROSSCRED_ERR_ISSUER_CLIENT_RATE_LIMITED'))).toBe(true);
    expect(await gauge(issuer, 'crosscred_issuer_attestations_in_flight')).toBeLessThanOrEqual(8);

    sts.release();
    await until(() => answers.length === FORGED, 'every forged request to be answered');
    const all = await Promise.all(pending);
    expect(all.filter((a) => a.status === 200)).toEqual([]);
  }, 60_000);

  it('refuses a client address past its burst with 429 and Retry-After, while another address is served', async () => {
    // Distinct identities (the fake attestor reports the instance it is told), so only the per-address bucket refuses.
    const ramToken = (session: string) => fakeSubjectToken({ kind: 'alibabaRamRole', roleName: 'app-role', instanceId: session });
    // A fresh address: a burst of 40, refilling at 1/s; 100 requests in a row overtake it unless they take over a minute.
    const results: number[] = [];
    let refused: { status: number; retryAfter: string | undefined; body: string } | undefined;
    for (let i = 0; i < 100 && refused === undefined; i++) {
      const a = await post(tokenUrl, '127.0.0.3', SUBJECT_TOKEN_TYPES.alibabaRamRole, ramToken(`i-c${i}`));
      results.push(a.status);
      if (a.status === 429 && a.body.includes('CLIENT_RATE_LIMITED')) refused = a;
    }
    expect(refused, `statuses: ${results.join(',')}`).toBeDefined();
    expect(refused!.retryAfter).toMatch(/^[1-9]\d*$/);
    expect(results.length).toBeGreaterThan(1);
    const other = await post(tokenUrl, '127.0.0.1', SUBJECT_TOKEN_TYPES.alibabaRamRole, ramToken('i-other'));
    expect(other.status, other.body).toBe(200);
  }, 60_000);
});
