import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlibabaStsEmulator } from '../../src/demo/alibaba-sts-emulator.js';
import { StsEmulator } from '../../src/demo/sts-emulator.js';
import { TencentStsEmulator } from '../../src/demo/tencent-sts-emulator.js';
import { type DaemonProcess, REPO_ROOT, spawnDaemon, waitUntilReady } from '../support/chain.js';
import { clientEnv, runClient } from '../support/clients.js';

/**
 * An AWS workload going out (issue #13): an EC2 instance's own AWS credentials sign
 * GetWebIdentityToken at AWS STS, whose JWT (issuer: the account's, here the AWS emulator's own
 * discovery and JWKS) is traded at Alibaba's or Tencent's STS for a role there. The whole chain runs
 * through the real `crosscred serve` process configured as an operator would, with the host's
 * credentials in the AWS SDK's variables, and the Alibaba key is read by Alibaba's unmodified SDK.
 */
const HOST = {
  accessKeyId: 'AKIAHOSTEXAMPLE00001',
  secretAccessKey: 'host-secret-0123456789abcdefghijklmnopqrstu',
  arn: 'arn:aws:iam::111122223333:user/ec2-app',
};
/** GetWebIdentityToken's `sub` is the caller's ARN. */
const SUBJECT = HOST.arn;
const RAM_ROLE = 'acs:ram::1234567890123456:role/oss-reader';
const RAM_PROVIDER = 'acs:ram::1234567890123456:oidc-provider/aws-111122223333';
const CAM_ROLE = 'qcs::cam::uin/100012345678:roleName/cos-reader';

let aws: StsEmulator;
let alibaba: AlibabaStsEmulator;
let tencent: TencentStsEmulator;
let home: string;
const daemons: DaemonProcess[] = [];

/** The host's AWS credentials as an EC2 SDK chain would find them, and nothing else. */
const hostEnv = () => ({ AWS_ACCESS_KEY_ID: HOST.accessKeyId, AWS_SECRET_ACCESS_KEY: HOST.secretAccessKey, AWS_EC2_METADATA_DISABLED: 'true' });

beforeAll(async () => {
  aws = await StsEmulator.start({ trust: [] });
  aws.addHostCredentials(HOST);
  alibaba = await AlibabaStsEmulator.start({
    trust: [{ roleArn: RAM_ROLE, oidcProviderArn: RAM_PROVIDER, issuer: aws.url, audience: 'sts.aliyuncs.com', subject: SUBJECT }],
  });
  tencent = await TencentStsEmulator.start({
    trust: [{ roleArn: CAM_ROLE, providerId: 'aws-111122223333', issuer: aws.url, audience: 'sts.cloud.tencent.com', subject: SUBJECT }],
  });
  home = await mkdtemp(join(tmpdir(), 'crosscred-outbound-'));
}, 30_000);

afterAll(async () => {
  for (const daemon of daemons) expect(await daemon.stop()).toBe(0);
  await Promise.all([aws?.close(), alibaba?.close(), tencent?.close()]);
  if (home) await rm(home, { recursive: true, force: true });
});

const outbound = ['--token-source', 'aws-outbound', '--aws-outbound-region', 'us-east-1', '--listen', '127.0.0.1:0'];
/** The CAM role, at the Tencent emulator. */
const tencentRole = () => [
  '--cloud',
  'tencent',
  '--role-arn',
  CAM_ROLE,
  '--provider-id',
  'aws-111122223333',
  '--region',
  'ap-guangzhou',
  '--sts-endpoint',
  tencent.url,
];

describe('an EC2 workload with a role in Alibaba Cloud', () => {
  it("gets the RAM role's key through its own AWS identity, read by Alibaba's SDK", async () => {
    const daemon = await spawnDaemon(
      [...outbound, '--cloud', 'alibaba', '--role-arn', RAM_ROLE, '--oidc-provider-arn', RAM_PROVIDER, '--sts-endpoint', alibaba.url],
      { ...hostEnv(), AWS_ENDPOINT_URL_STS: aws.url },
    );
    daemons.push(daemon);
    await waitUntilReady(daemon.admin, 20_000);
    // The token AWS minted: for Alibaba's audience, signed for the host's own identity.
    expect(aws.minted.at(-1)).toMatchObject({ accessKeyId: HOST.accessKeyId, subject: SUBJECT, audience: ['sts.aliyuncs.com'], signingAlgorithm: 'RS256' });
    const script = `
      const Credential = require('@alicloud/credentials').default;
      new Credential().getCredential().then(
        (c) => process.stdout.write(JSON.stringify({ accessKeyId: c.accessKeyId, accessKeySecret: c.accessKeySecret })),
        (e) => { process.stderr.write(String(e && e.message)); process.exit(3); });`;
    const env = {
      ...clientEnv(home, { ALIBABA_CLOUD_CREDENTIALS_URI: `${daemon.listeners[0]}/v1/alibaba/credentials` }),
      NODE_PATH: join(REPO_ROOT, 'node_modules'),
    };
    const got = JSON.parse(await runClient(process.execPath, ['-e', script], env)) as { accessKeyId: string; accessKeySecret: string };
    const issued = alibaba.issued.at(-1)!;
    expect(got).toEqual({ accessKeyId: issued.accessKeyId, accessKeySecret: issued.accessKeySecret });
    expect(issued).toMatchObject({ roleArn: RAM_ROLE, subject: SUBJECT });
    // Never the host's secret, nor the JWT, in what crosscred printed.
    expect(daemon.output.join('\n')).not.toContain(HOST.secretAccessKey);
  });
});

describe('an EC2 workload with a role in Tencent Cloud', () => {
  it("gets the CAM role's key through its own AWS identity, served as CVM metadata", async () => {
    const daemon = await spawnDaemon(
      [...outbound, '--aws-outbound-sts-endpoint', aws.url, '--aws-outbound-signing-algorithm', 'ES384', ...tencentRole()],
      hostEnv(),
    );
    daemons.push(daemon);
    await waitUntilReady(daemon.admin, 20_000);
    expect(aws.minted.at(-1)).toMatchObject({ audience: ['sts.cloud.tencent.com'], signingAlgorithm: 'ES384' });
    const res = await request(`${daemon.listeners[0]}/latest/meta-data/cam/security-credentials/cos-reader`);
    const document = (await res.body.json()) as Record<string, string>;
    expect(res.statusCode).toBe(200);
    expect(document['TmpSecretId']).toBe(tencent.issued.at(-1)!.secretId);
    expect(daemon.output.join('\n')).not.toContain(HOST.secretAccessKey);
  });

  it('is refused with a clear reason when the account has not enabled outbound federation', async () => {
    aws.outboundFederationEnabled = false;
    try {
      const daemon = await spawnDaemon([...outbound, '--aws-outbound-sts-endpoint', aws.url, ...tencentRole()], hostEnv());
      daemons.push(daemon);
      // The first fetch fails at once (a terminal refusal); poll until /readyz says why.
      let body: { roles: Array<{ lastError: { code: string; message: string } | null }> } | undefined;
      for (let i = 0; i < 100 && !body?.roles[0]?.lastError; i++) {
        const ready = await request(`${daemon.admin}/readyz`);
        body = (await ready.body.json()) as typeof body;
        expect(ready.statusCode).toBe(503);
        if (!body?.roles[0]?.lastError) await new Promise((r) => setTimeout(r, 100));
      }
      // /readyz names the code, never a message; the log line says what to do.
      expect(body?.roles[0]?.lastError?.code).toBe('CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
      // The cache records the failure before it logs it, and the line crosses the child's stdout
      // pipe after that: on a busy machine /readyz can say why before the line has arrived.
      const said = /OutboundWebIdentityFederationDisabled.*enable/i;
      for (let i = 0; i < 100 && !said.test(daemon.output.join('\n')); i++) await new Promise((r) => setTimeout(r, 100));
      expect(daemon.output.join('\n')).toMatch(said);
    } finally {
      aws.outboundFederationEnabled = true;
    }
  });
});
