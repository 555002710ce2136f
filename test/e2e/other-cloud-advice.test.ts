import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlibabaStsEmulator } from '../../src/demo/alibaba-sts-emulator.js';
import { DemoOidcIssuer } from '../../src/demo/oidc-issuer.js';
import { TencentStsEmulator } from '../../src/demo/tencent-sts-emulator.js';
import { crosscred } from '../support/run-cli.js';

/**
 * `crosscred doctor` and `crosscred trust-policy` for roles in Alibaba Cloud and Tencent Cloud, as
 * a person runs them in an ACK or TKE pod: only that platform's variables and `--cloud`.
 */
const SUBJECT = 'system:serviceaccount:payments:api';
const RAM_ROLE = 'acs:ram::1234567890123456:role/oss-reader';
const RAM_PROVIDER = 'acs:ram::1234567890123456:oidc-provider/ack-prod';
const CAM_ROLE = 'qcs::cam::uin/100012345678:roleName/cos-reader';

let issuer: DemoOidcIssuer;
let alibaba: AlibabaStsEmulator;
let tencent: TencentStsEmulator;
let dir: string;
let alibabaToken: string;
let tencentToken: string;

beforeAll(async () => {
  issuer = await DemoOidcIssuer.start();
  alibaba = await AlibabaStsEmulator.start({
    trust: [{ roleArn: RAM_ROLE, oidcProviderArn: RAM_PROVIDER, issuer: issuer.url, audience: 'sts.aliyuncs.com', subject: SUBJECT }],
  });
  tencent = await TencentStsEmulator.start({
    trust: [{ roleArn: CAM_ROLE, providerId: 'tke-prod', issuer: issuer.url, audience: 'sts.cloud.tencent.com', subject: SUBJECT }],
  });
  dir = await mkdtemp(join(tmpdir(), 'crosscred-advice-'));
  alibabaToken = join(dir, 'rrsa-token');
  tencentToken = join(dir, 'tke-token');
  await writeFile(alibabaToken, await issuer.mint({ sub: SUBJECT, aud: 'sts.aliyuncs.com', ttlSeconds: 3600 }));
  await writeFile(tencentToken, await issuer.mint({ sub: SUBJECT, aud: 'sts.cloud.tencent.com', ttlSeconds: 3600 }));
});

afterAll(async () => {
  await Promise.all([issuer?.close(), alibaba?.close(), tencent?.close()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** An ACK pod with RRSA, pointed at the emulator. */
const rrsa = () => ({
  HOME: dir,
  CROSSCRED_CLOUD: 'alibaba',
  ALIBABA_CLOUD_ROLE_ARN: RAM_ROLE,
  ALIBABA_CLOUD_OIDC_PROVIDER_ARN: RAM_PROVIDER,
  ALIBABA_CLOUD_OIDC_TOKEN_FILE: alibabaToken,
});
/** A TKE pod, pointed at the emulator. */
const tke = () => ({
  HOME: dir,
  CROSSCRED_CLOUD: 'tencent',
  TKE_ROLE_ARN: CAM_ROLE,
  TKE_PROVIDER_ID: 'tke-prod',
  TKE_REGION: 'ap-guangzhou',
  TKE_WEB_IDENTITY_TOKEN_FILE: tencentToken,
});

describe('crosscred doctor for a role in another cloud', () => {
  it('exchanges at Alibaba STS and judges the token by Alibaba’s audience', async () => {
    const before = alibaba.calls;
    const { code, stdout } = await crosscred(['doctor', '--sts-endpoint', alibaba.url], rrsa());
    expect(stdout).toContain(`ALIBABA_CLOUD_OIDC_TOKEN_FILE is set (ACK RRSA)`);
    expect(stdout).not.toContain('not sts.aliyuncs.com');
    expect(stdout).toContain(`[ok]   STS at ${alibaba.url} accepted the token for ${RAM_ROLE}`);
    expect(alibaba.calls).toBe(before + 1);
    // The only failure: a loopback issuer over plain HTTP, which no cloud can fetch.
    expect(stdout).toContain('[FAIL] the issuer http://127.0.0.1');
    expect(stdout).toContain('fix: Alibaba Cloud accepts only https:// issuers');
    expect(code).toBe(1);
  });

  it('names the Tencent refusal and what to check when the trust does not match', async () => {
    const { code, stdout } = await crosscred(['doctor', '--sts-endpoint', tencent.url, '--provider-id', 'another-provider'], tke());
    expect(stdout).toContain(`[FAIL] STS at ${tencent.url}: Tencent Cloud STS refused the exchange`);
    expect(stdout).toContain('the provider id (--provider-id)');
    expect(code).toBe(1);
  });
});

describe('crosscred trust-policy for a role in another cloud', () => {
  it('prints the RAM provider command and a trust policy pinning the token’s iss, aud and sub', async () => {
    const { code, stdout } = await crosscred(['trust-policy', '--format', 'json'], rrsa());
    expect(code).toBe(0);
    const advice = JSON.parse(stdout) as { createProviderCommand: string[]; trustPolicy: unknown };
    expect(advice.createProviderCommand.slice(0, 5)).toEqual(['aliyun', 'ims', 'CreateOIDCProvider', '--OIDCProviderName', 'ack-prod']);
    expect(advice.trustPolicy).toMatchObject({
      Statement: [
        {
          Principal: { Federated: [RAM_PROVIDER] },
          Condition: { StringEquals: { 'oidc:iss': issuer.url, 'oidc:aud': 'sts.aliyuncs.com', 'oidc:sub': SUBJECT } },
        },
      ],
    });
  });

  it('prints the CAM provider command and policy, with a sub pattern', async () => {
    const { code, stdout } = await crosscred(['trust-policy', '--sub-pattern', 'system:serviceaccount:payments:*'], tke());
    expect(code).toBe(0);
    expect(stdout).toContain(`tccli cam CreateOIDCConfig --Name tke-prod --IdentityUrl ${issuer.url}`);
    expect(stdout).toContain('"qcs::cam::uin/100012345678:oidc-provider/tke-prod"');
    expect(stdout).toContain('"string_like"');
    expect(stdout).toContain('tccli cam UpdateAssumeRolePolicy --RoleName cos-reader');
  });
});
