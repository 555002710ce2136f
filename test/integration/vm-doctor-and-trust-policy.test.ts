import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diagnoseRole, formatReport } from '../../src/advice/doctor.js';
import { vmSubjectPattern, vmSubjectPatternProblem, vmTrustPolicyFor } from '../../src/advice/trust-policy.js';
import { loadConfig } from '../../src/config/load.js';
import { systemClock } from '../../src/core/clock.js';
import type { Attestor } from '../../src/issuer/attestor.js';
import { AlibabaEcsIdentityAttestor } from '../../src/issuer/attestors/alibaba-ecs-identity.js';
import { type RunningIssuer, startIssuer } from '../../src/issuer/issuer-server.js';
import { SUBJECT_TOKEN_TYPES, type SubjectTokenType } from '../../src/protocol/issuer-token-exchange.js';
import { AlibabaEcsTokenSource } from '../../src/sources/alibaba-ecs-token-source.js';
import { IssuerClient } from '../../src/sources/issuer-client.js';
import { memoryLogger } from '../support/chain.js';
import { FakeEcsMetadata, makeSigningCa, type SigningCa, sampleInstance } from '../support/fake-alibaba-cloud.js';
import { baseConfig, configFrom, ECS_ACCOUNT, freePort, makeKey, tempDir } from '../support/issuer-fixtures.js';
import { crosscred } from '../support/run-cli.js';

/**
 * `crosscred trust-policy` and `crosscred doctor` for instances attested by crosscred issuer:
 * trust-policy from flags alone (no token, no network), doctor step by step against a fake ECS
 * metadata server and the real issuer with the real ecs-identity attestor, all on loopback.
 */
const ROLE_ARN = 'arn:aws:iam::111122223333:role/ecs-app';
const ISSUER = 'https://issuer.example.com';

describe('crosscred trust-policy for issuer tokens (no token needed)', () => {
  const env = { HOME: '/nonexistent' };

  it('builds an alibaba-ecs sub pattern from the flags, provider = issuer URL, aud = sts.amazonaws.com', async () => {
    const { code, stdout } = await crosscred(
      [
        'trust-policy',
        '--format',
        'json',
        '--issuer-url',
        ISSUER,
        '--token-source',
        'alibaba-ecs',
        '--role-arn',
        ROLE_ARN,
        '--cloud-account',
        ECS_ACCOUNT,
        '--cloud-region',
        'cn-hangzhou',
      ],
      env,
    );
    expect(code).toBe(0);
    const advice = JSON.parse(stdout) as {
      oidcProvider: { url: string; arn: string };
      createProviderCommand: string[];
      trustPolicy: { Statement: Array<{ Action: unknown; Condition: Record<string, Record<string, string>> }> };
    };
    expect(advice.oidcProvider).toMatchObject({ url: ISSUER, arn: 'arn:aws:iam::111122223333:oidc-provider/issuer.example.com' });
    expect(advice.createProviderCommand).toEqual(['aws', 'iam', 'create-open-id-connect-provider', '--url', ISSUER, '--client-id-list', 'sts.amazonaws.com']);
    const statement = advice.trustPolicy.Statement[0]!;
    expect(statement.Action).toBe('sts:AssumeRoleWithWebIdentity');
    expect(statement.Condition).toEqual({
      StringEquals: { 'issuer.example.com:aud': 'sts.amazonaws.com' },
      StringLike: { 'issuer.example.com:sub': `alibaba-ecs:${ECS_ACCOUNT}:cn-hangzhou:*` },
    });
  });

  it('tencent-cvm with --session-tags allows sts:TagSession; an exact role id uses StringEquals', async () => {
    const { code, stdout } = await crosscred(
      [
        'trust-policy',
        '--format',
        'json',
        '--issuer-url',
        ISSUER,
        '--token-source',
        'tencent-cvm',
        '--token-audience',
        'crosscred-test',
        '--cloud-account',
        '100012345678',
        '--cloud-role',
        '4611686018427397919',
        '--session-tags',
      ],
      env,
    );
    expect(code).toBe(0);
    const advice = JSON.parse(stdout) as {
      trustPolicy: { Statement: Array<{ Action: unknown; Condition: Record<string, Record<string, string>> }> };
      notes: string[];
    };
    expect(advice.trustPolicy.Statement[0]!.Action).toEqual(['sts:AssumeRoleWithWebIdentity', 'sts:TagSession']);
    expect(advice.trustPolicy.Statement[0]!.Condition).toEqual({
      StringEquals: { 'issuer.example.com:aud': 'crosscred-test', 'issuer.example.com:sub': 'tencent-cam:100012345678:role/4611686018427397919' },
    });
    expect(advice.notes.join('\n')).toContain('<ACCOUNT_ID>');
  });

  it('text output mentions sts:TagSession when session tags are not asked for; --sub-pattern is used as given', async () => {
    const { code, stdout } = await crosscred(
      ['trust-policy', '--issuer-url', ISSUER, '--role-arn', ROLE_ARN, '--sub-pattern', `alibaba-ram:${ECS_ACCOUNT}:role/app-role`],
      env,
    );
    expect(code).toBe(0);
    expect(stdout).toContain('aws iam create-open-id-connect-provider --url https://issuer.example.com --client-id-list sts.amazonaws.com');
    expect(stdout).toContain('aws iam create-role --role-name ecs-app --assume-role-policy-document file://trust-policy.json');
    expect(stdout).toContain(`"issuer.example.com:sub": "alibaba-ram:${ECS_ACCOUNT}:role/app-role"`);
    expect(stdout).toContain('rerun with --session-tags');
  });

  it('refuses what would trust too much or cannot be known, saying what to give', async () => {
    const wildAccount = await crosscred(['trust-policy', '--issuer-url', ISSUER, '--sub-pattern', 'alibaba-ecs:1335*'], env);
    expect(wildAccount.code).toBe(78);
    expect(wildAccount.stderr).toContain('a wildcard there would trust other accounts');
    const noCloud = await crosscred(['trust-policy', '--issuer-url', ISSUER], env);
    expect(noCloud.code).toBe(78);
    expect(noCloud.stderr).toContain('--token-source alibaba-ecs or tencent-cvm');
    const noAccount = await crosscred(['trust-policy', '--issuer-url', ISSUER, '--token-source', 'tencent-cvm'], env);
    expect(noAccount.code).toBe(78);
    expect(noAccount.stderr).toContain('--cloud-account');
    const badUrl = await crosscred(['trust-policy', '--issuer-url', `${ISSUER}/`, '--token-source', 'tencent-cvm', '--cloud-account', '100012345678'], env);
    expect(badUrl.code).not.toBe(0);
  });

  it('pattern helpers follow the issuer sub formats', () => {
    expect(vmSubjectPattern('alibaba-ram', { cloudAccount: ECS_ACCOUNT })).toEqual({ pattern: `alibaba-ram:${ECS_ACCOUNT}:role/*` });
    expect(vmSubjectPattern('alibaba-ecs', { cloudAccount: ECS_ACCOUNT, instanceId: 'i-bp1' })).toEqual({ pattern: `alibaba-ecs:${ECS_ACCOUNT}:*:i-bp1` });
    expect(vmSubjectPattern('tencent-cam', { cloudAccount: '1', instanceId: 'ins-1' })).toHaveProperty('problem');
    expect(vmSubjectPatternProblem('tencent-cam:*:role/x', undefined)).toMatch(/literally/);
    expect(vmSubjectPatternProblem(`alibaba-ecs:${ECS_ACCOUNT}:cn-hangzhou:*`, 'tencent-cam')).toMatch(/tencent-cam/);
    expect(vmSubjectPatternProblem(`alibaba-ecs:${ECS_ACCOUNT}:cn-hangzhou:*`, 'alibaba-ecs')).toBeUndefined();
    expect(
      vmTrustPolicyFor({
        issuerUrl: 'https://issuer.example.com:8443',
        audience: 'sts.amazonaws.com',
        kind: 'alibaba-ecs',
        facts: { cloudAccount: ECS_ACCOUNT },
      }),
    ).toHaveProperty('problem');
  });
});

describe('crosscred doctor for an ECS instance attested by crosscred issuer', () => {
  const instance = sampleInstance();
  let dir: string;
  let ca: SigningCa;
  let metadata: FakeEcsMetadata;
  const issuers: RunningIssuer[] = [];

  async function startAlibabaIssuer(regions: string[], trustOnFirstUse = false): Promise<string> {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const key = await makeKey(dir, `key-${port}.pem`);
    const configObject = baseConfig(url, [{ file: key.file, active: true }], {
      attestors: { alibabaEcsIdentity: { signingCertificateFiles: [ca.signerCertPath] } },
      policy: {
        alibabaEcsIdentity: { accounts: [instance.accountId], regions, instanceIds: ['*'], sessionTags: {}, transitiveTagKeys: [], trustOnFirstUse },
      },
    });
    const config = configFrom(configObject, join(dir, `issuer-${port}.yaml`));
    const attestors = new Map<SubjectTokenType, Attestor>([
      [SUBJECT_TOKEN_TYPES.alibabaEcsIdentity, new AlibabaEcsIdentityAttestor({ signingCertificatesPem: [ca.signerCertPem] })],
    ]);
    issuers.push(await startIssuer(config, { logger: memoryLogger('info').logger, createAttestors: async () => attestors }));
    return url;
  }

  async function doctor(issuerUrl: string, metadataUrls: { alibaba: string; tencent: string }, extra: Record<string, string> = {}): Promise<string> {
    const config = loadConfig({ flags: { 'issuer-url': issuerUrl, 'role-arn': ROLE_ARN, listen: ['127.0.0.1:0'], 'admin-listen': 'off', ...extra }, env: {} });
    const report = await diagnoseRole(config, config.roles[0]!, { clock: systemClock, exchange: false, timeoutMs: 3000, roleConfigured: true, metadataUrls });
    return formatReport([report], []);
  }

  beforeAll(async () => {
    dir = await tempDir();
    ca = await makeSigningCa('alibaba');
    metadata = await FakeEcsMetadata.start({ instance, signer: ca, requireToken: true });
  }, 60_000);
  afterAll(async () => {
    for (const i of issuers) await i.close();
    await metadata?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('walks each step and shows the JWT claims, never the document, signature or token', async () => {
    const url = await startAlibabaIssuer([instance.regionId]);
    const out = await doctor(url, { alibaba: metadata.url, tencent: 'http://127.0.0.1:9' });
    expect(out).toContain(`[ok]   Alibaba ECS metadata server answered at ${metadata.url} (token mode)`);
    expect(out).toContain('[ok]   instance identity document read (not shown)');
    expect(out).toContain(`alibaba-ecs:${instance.accountId}:${instance.regionId}:${instance.instanceId}`);
    expect(out).toContain('[ok]   signed instance identity (PKCS#7) fetched');
    expect(out).toContain(`[ok]   issuer discovery document found at ${url}/.well-known/openid-configuration`);
    expect(out).toContain('[ok]   signing algorithms ES256 (AWS accepts them)');
    expect(out).toContain(`[ok]   JWKS found at ${url}/.well-known/jwks.json (1 key)`);
    expect(out).toMatch(/\[ok\] {3}token endpoint .*\/token reachable/);
    expect(out).toContain('[ok]   the issuer returned a JWT (never shown)');
    expect(out).toContain(`iss ${url}`);
    expect(out).toContain(`sub alibaba-ecs:${instance.accountId}:${instance.regionId}:${instance.instanceId}`);
    expect(out).toContain('aud sts.amazonaws.com');
    expect(out).toContain('STS exchange not tried');
    expect(out).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./);
    expect(out).not.toContain(instance.serialNumber);
    expect(out).not.toContain('[FAIL]');
  });

  it('fails when the metadata server answers a GET without a session token (HttpTokens=optional), with the command that fixes it', async () => {
    const url = await startAlibabaIssuer([instance.regionId]);
    const tokens = { alibaba: metadata.url, tencent: 'http://127.0.0.1:9' };
    expect(await doctor(url, tokens)).toContain('[ok]   the ECS metadata server refuses reads without a session token (HttpTokens=required)');
    metadata.requireToken = false;
    try {
      const out = await doctor(url, tokens);
      expect(out).toContain('[FAIL] the ECS metadata server answers reads without a session token (HttpTokens=optional)');
      expect(out).toContain(
        `aliyun ecs ModifyInstanceMetadataOptions --RegionId ${instance.regionId} --InstanceId ${instance.instanceId} --HttpTokens required`,
      );
      // The rest of the chain is still walked: the probe is advice.
      expect(out).toContain('[ok]   the issuer returned a JWT (never shown)');
    } finally {
      metadata.requireToken = true;
    }
  });

  it('explains an issuer refusal (policy) with its OAuth error and the fix', async () => {
    const url = await startAlibabaIssuer(['cn-beijing']);
    const out = await doctor(url, { alibaba: metadata.url, tencent: 'http://127.0.0.1:9' });
    expect(out).toContain('[FAIL] the issuer did not return a token');
    expect(out).toContain('invalid_grant');
    expect(out).toContain('its policy must list this account');
  });

  it('says when --issuer-url is not the issuer publicUrl, and when the audience is not allowed', async () => {
    const url = await startAlibabaIssuer([instance.regionId]);
    const out = await doctor(url.replace('127.0.0.1', 'localhost'), { alibaba: metadata.url, tencent: 'http://127.0.0.1:9' });
    expect(out).toContain('[FAIL] the discovery document names another issuer');
    const aud = await doctor(url, { alibaba: metadata.url, tencent: 'http://127.0.0.1:9' }, { 'token-audience': 'not-allowed' });
    expect(aud).toContain('invalid_target');
    expect(aud).toContain("is not among the issuer's audiences");
  });

  it('against an issuer that trusts on first use: sends the secret serve made, and never makes the file itself', async () => {
    const url = await startAlibabaIssuer([instance.regionId], true);
    const urls = { alibaba: metadata.url, tencent: 'http://127.0.0.1:9' };
    const file = join(dir, `instance-secret-${url.split(':').at(-1)}`);

    // Before serve ever ran: nothing to send, the issuer says the secret is required, and doctor
    // says how to get one without making it (as root it would make a file the daemon cannot read).
    const before = await doctor(url, urls, { 'instance-secret-file': file });
    expect(before).toContain(`[info] no instance secret in ${file} yet: none is sent`);
    expect(before).toContain('[FAIL] the issuer did not return a token');
    expect(before).toContain('start crosscred serve once');
    expect(existsSync(file)).toBe(false);

    // serve's client makes the secret and binds the instance; doctor then sends the same secret.
    const serveSide = new IssuerClient({ issuerUrl: url, connectTimeoutMs: 2_000, responseTimeoutMs: 5_000, instanceSecretFile: file });
    try {
      const source = new AlibabaEcsTokenSource({
        issuer: serveSide,
        issuerUrl: url,
        attestation: 'ecs-identity',
        metadataUrl: metadata.url,
        clock: systemClock,
      });
      await source.getToken();
    } finally {
      await serveSide.close();
    }
    const secret = await readFile(file, 'utf8');
    const after = await doctor(url, urls, { 'instance-secret-file': file });
    expect(after).toContain(`[ok]   instance secret read from ${file} (not shown)`);
    expect(after).toContain('[ok]   the issuer returned a JWT (never shown)');
    expect(after).not.toContain(secret);

    // Another secret for the bound instance is the SSRF case: refused, and the fix names the reset.
    await writeFile(file, `${'A'.repeat(42)}Q`, { mode: 0o600 });
    const other = await doctor(url, urls, { 'instance-secret-file': file });
    expect(other).toContain('[FAIL] the issuer did not return a token');
    expect(other).toContain('crosscred issuer reset-instance');
  });

  it('says that neither metadata server answered, and stops there', async () => {
    const out = await doctor('http://127.0.0.1:9', { alibaba: 'http://127.0.0.1:9', tencent: 'http://127.0.0.1:9' });
    expect(out).toContain('[FAIL] neither the Alibaba ECS metadata server (http://127.0.0.1:9) nor the Tencent CVM one (http://127.0.0.1:9) answered');
    expect(out).toContain('run this on the ECS or CVM instance itself');
    expect(out).not.toContain('the issuer returned');
  });
});
