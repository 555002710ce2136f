import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DemoOidcIssuer } from '../../src/demo/oidc-issuer.js';
import { type Chain, roleArn, SUBJECT, startChain } from '../support/chain.js';
import { crosscred } from '../support/run-cli.js';
import { selfSignedCert } from '../support/self-signed.js';
import { startGlewlwyd, startOauth2MockServer, type ThirdPartyIssuer } from '../support/third-party-issuers.js';

/**
 * `crosscred doctor` and `crosscred trust-policy` as a person runs them, on tokens from our demo
 * issuer (over HTTP and over HTTPS with a private CA) and from two issuers we did not write.
 */

let chain: Chain;
let dir: string;
let httpsIssuer: DemoOidcIssuer;
let caFile: string;
let httpsTokenFile: string;
let httpsToken: string;

beforeAll(async () => {
  chain = await startChain();
  dir = await mkdtemp(join(tmpdir(), 'crosscred-doctor-'));
  caFile = join(dir, 'ca.pem');
  const keyFile = join(dir, 'key.pem');
  await selfSignedCert({ cn: 'issuer', keyFile, certFile: caFile, ips: ['127.0.0.1'] });
  httpsIssuer = await DemoOidcIssuer.start({ tls: { key: await readFile(keyFile, 'utf8'), cert: await readFile(caFile, 'utf8') } });
  httpsToken = await httpsIssuer.mint({ sub: SUBJECT, aud: 'sts.amazonaws.com', ttlSeconds: 3600 });
  httpsTokenFile = join(dir, 'https-token');
  await writeFile(httpsTokenFile, httpsToken);
});
afterAll(async () => {
  await chain?.close();
  await httpsIssuer?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function env(extra: Record<string, string>): Record<string, string> {
  return { HOME: dir, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...extra };
}

describe('crosscred doctor', () => {
  it('passes a healthy chain with an HTTPS issuer (exit 0), warning that a loopback issuer is not public', async () => {
    const { code, stdout } = await crosscred(
      ['doctor', '--no-exchange'],
      env({ AWS_ROLE_ARN: roleArn('app'), AWS_WEB_IDENTITY_TOKEN_FILE: httpsTokenFile, NODE_EXTRA_CA_CERTS: caFile }),
    );
    expect(stdout).toContain(`[info] token source: token file ${httpsTokenFile}`);
    expect(stdout).toContain('AWS_WEB_IDENTITY_TOKEN_FILE is set (EKS IRSA or a projected ServiceAccount token)');
    expect(stdout).toContain(`iss ${httpsIssuer.url}`);
    expect(stdout).toContain(`sub ${SUBJECT}`);
    expect(stdout).toMatch(/exp \d{4}-\d\d-\d\dT.* \(59 min \d+ s left\)|\(1 h 0 min 0 s left\)/);
    expect(stdout).toContain("[warn] the issuer's host 127.0.0.1 looks private");
    expect(stdout).toContain('[ok]   discovery document found');
    expect(stdout).toMatch(/\[ok\] {3}JWKS found at .* \(1 key, including kid demo-/);
    expect(stdout).toContain('The chain can work, with 1 warning.');
    expect(stdout).not.toContain(httpsToken.split('.')[2]!);
    expect(code).toBe(0);
  });

  it('tries the real exchange and explains an HTTP issuer and an untrusted role, with fixes (exit 1)', async () => {
    // The emulator trusts role "app" only; "other" is refused as STS refuses a trust-policy mismatch.
    const { code, stdout } = await crosscred(
      ['doctor', '--role-arn', roleArn('other'), '--token-file', chain.tokenFile, '--sts-endpoint', chain.sts.url],
      env({}),
    );
    expect(stdout).toContain(`[FAIL] the issuer ${chain.issuer.url} is not HTTPS`);
    expect(stdout).toContain('[FAIL] STS at http://127.0.0.1:');
    expect(stdout).toContain('AccessDenied');
    expect(stdout).toMatch(/fix: the role's trust policy does not let this token in/);
    expect(stdout).toMatch(/The chain cannot work: 2 problems/);
    expect(code).toBe(1);
  });

  it('confirms an accepted exchange without showing the credentials', async () => {
    const before = chain.sts.issued.length;
    const { stdout } = await crosscred(['doctor', '--role-arn', roleArn('app'), '--token-file', chain.tokenFile, '--sts-endpoint', chain.sts.url], env({}));
    expect(stdout).toContain(`[ok]   STS at ${chain.sts.url} accepted the token for ${roleArn('app')}`);
    expect(chain.sts.issued.length).toBe(before + 1);
    expect(stdout).not.toContain(chain.sts.issued.at(-1)!.accessKeyId);
  });

  it('says where it looked when there is no token at all, and that no role is set', async () => {
    const nothing = await crosscred(['doctor'], env({}));
    expect(nothing.code).toBe(1);
    expect(nothing.stdout).toContain('[FAIL] the configuration is not valid');
    expect(nothing.stdout).toContain('AWS_WEB_IDENTITY_TOKEN_FILE');
    expect(nothing.stdout).toContain('ALIBABA_CLOUD_OIDC_TOKEN_FILE');
    const noRole = await crosscred(['doctor', '--no-exchange'], env({ AWS_WEB_IDENTITY_TOKEN_FILE: httpsTokenFile, NODE_EXTRA_CA_CERTS: caFile }));
    expect(noRole.stdout).toContain('[FAIL] no AWS role is configured');
    expect(noRole.code).toBe(1);
  });

  it('explains an ACK RRSA pod: the token file is used, the Alibaba role is not', async () => {
    const { stdout } = await crosscred(
      ['doctor', '--no-exchange'],
      env({
        AWS_ROLE_ARN: roleArn('app'),
        ALIBABA_CLOUD_OIDC_TOKEN_FILE: httpsTokenFile,
        ALIBABA_CLOUD_ROLE_ARN: 'acs:ram::1234:role/x',
        NODE_EXTRA_CA_CERTS: caFile,
      }),
    );
    expect(stdout).toContain('ALIBABA_CLOUD_OIDC_TOKEN_FILE is set (ACK RRSA)');
    expect(stdout).toMatch(/\[info\] ALIBABA_CLOUD_ROLE_ARN is set: the Alibaba RAM role for Alibaba STS/);
  });

  it('reports an issuer that accepts and never answers, within --timeout-ms, without losing the report', async () => {
    const { createServer } = await import('node:net');
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const { generateKeyPair, SignJWT } = await import('jose');
      const { privateKey } = await generateKeyPair('ES256');
      const iss = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
      const token = await new SignJWT({})
        .setProtectedHeader({ alg: 'ES256', kid: 'k' })
        .setIssuer(iss)
        .setSubject('s')
        .setAudience('sts.amazonaws.com')
        .setIssuedAt()
        .setExpirationTime('1h')
        .sign(privateKey);
      const file = join(dir, 'silent-issuer-token');
      await writeFile(file, token);
      const { code, stdout } = await crosscred(['doctor', '--no-exchange', '--timeout-ms', '500', '--role-arn', roleArn('app'), '--token-file', file], env({}));
      expect(stdout).toContain(`[FAIL] cannot fetch ${iss}/.well-known/openid-configuration`);
      expect(stdout).toMatch(/no (answer|connection) within 500 ms/);
      expect(stdout).toContain('The chain cannot work');
      expect(code).toBe(1);
    } finally {
      silent.close();
    }
  });

  it('refuses a --timeout-ms that is not a sane number', async () => {
    const { code, stderr } = await crosscred(['doctor', '--timeout-ms=-1'], env({}));
    expect(code).toBe(78);
    expect(stderr).toContain('--timeout-ms must be a whole number');
  });

  it('reports a missing or truncated token file in plain words', async () => {
    const truncated = join(dir, 'truncated');
    await writeFile(truncated, httpsToken.slice(0, httpsToken.length - 10));
    const { code, stdout } = await crosscred(['doctor', '--no-exchange', '--role-arn', roleArn('app'), '--token-file', truncated], env({}));
    expect(code).toBe(1);
    expect(stdout).toContain('[FAIL] no usable token');
    expect(stdout).toContain('signature is incomplete (truncated?)');
  });
});

describe('crosscred trust-policy', () => {
  it('prints the provider command and a trust policy pinned to the token, as text and JSON', async () => {
    const issuerPath = new URL(httpsIssuer.url).host;
    const text = await crosscred(['trust-policy', '--role-arn', roleArn('app')], env({ AWS_WEB_IDENTITY_TOKEN_FILE: httpsTokenFile }));
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`aws iam create-open-id-connect-provider --url https://${issuerPath} --client-id-list sts.amazonaws.com`);
    expect(text.stdout).toContain('aws iam update-assume-role-policy --role-name app');
    const json = await crosscred(['trust-policy', '--role-arn', roleArn('app'), '--format', 'json'], env({ AWS_WEB_IDENTITY_TOKEN_FILE: httpsTokenFile }));
    const advice = JSON.parse(json.stdout) as {
      trustPolicy: { Statement: Array<{ Principal: { Federated: string }; Condition: Record<string, Record<string, string>> }> };
    };
    const statement = advice.trustPolicy.Statement[0]!;
    expect(statement.Principal.Federated).toBe(`arn:aws:iam::111122223333:oidc-provider/${issuerPath}`);
    expect(statement.Condition).toEqual({ StringEquals: { [`${issuerPath}:aud`]: 'sts.amazonaws.com', [`${issuerPath}:sub`]: SUBJECT } });
    // The text form embeds the same policy.
    expect(text.stdout).toContain(JSON.stringify(advice.trustPolicy, null, 2));
  });

  it('uses StringLike for a subject pattern, and a placeholder account without a role', async () => {
    const { stdout } = await crosscred(
      ['trust-policy', '--format', 'json', '--sub-pattern', 'system:serviceaccount:payments:*'],
      env({ AWS_WEB_IDENTITY_TOKEN_FILE: httpsTokenFile }),
    );
    const advice = JSON.parse(stdout) as {
      trustPolicy: { Statement: Array<{ Principal: { Federated: string }; Condition: Record<string, Record<string, string>> }> };
      notes: string[];
    };
    const host = new URL(httpsIssuer.url).host;
    expect(advice.trustPolicy.Statement[0]!.Condition).toEqual({
      StringEquals: { [`${host}:aud`]: 'sts.amazonaws.com' },
      StringLike: { [`${host}:sub`]: 'system:serviceaccount:payments:*' },
    });
    expect(advice.trustPolicy.Statement[0]!.Principal.Federated).toContain(':<ACCOUNT_ID>:');
    expect(advice.notes.join(' ')).toContain('<ACCOUNT_ID>');
  });
});

describe('on tokens from issuers we did not write', () => {
  const issuers: ThirdPartyIssuer[] = [];
  const unavailable: string[] = [];
  beforeAll(async () => {
    issuers.push(await startOauth2MockServer());
    const glewlwyd = await startGlewlwyd();
    if ('unavailable' in glewlwyd) unavailable.push(glewlwyd.unavailable);
    else issuers.push(glewlwyd);
  }, 60_000);
  afterAll(async () => {
    for (const i of issuers) await i.close();
  });

  for (const name of ['oauth2-mock-server', 'glewlwyd']) {
    it(`${name}: doctor reads the claims and fetches discovery and JWKS; trust-policy pins its iss, aud and sub`, async (ctx) => {
      const issuer = issuers.find((i) => i.name === name);
      if (!issuer) ctx.skip(unavailable.join('; ') || `${name} did not start`);
      const token = await issuer!.mintToken({ audience: 'sts.amazonaws.com', subject: 'workload-7' });
      const claims = decodeJwt(token);
      const file = join(dir, `${name}-token`);
      await writeFile(file, token);

      const doctor = await crosscred(['doctor', '--no-exchange', '--role-arn', roleArn('app'), '--token-file', file], env({}));
      expect(doctor.stdout).toContain(`iss ${issuer!.issuer}`);
      expect(doctor.stdout).toContain('sub workload-7');
      expect(doctor.stdout).toContain('[ok]   discovery document found');
      expect(doctor.stdout).toMatch(/\[ok\] {3}JWKS found at .*including kid/);
      // Both serve plain HTTP on loopback: AWS could never use them, and doctor says so.
      expect(doctor.stdout).toContain(`[FAIL] the issuer ${issuer!.issuer} is not HTTPS`);
      expect(doctor.code).toBe(1);

      const policy = await crosscred(['trust-policy', '--format', 'json', '--role-arn', roleArn('app'), '--token-file', file], env({}));
      expect(policy.code).toBe(0);
      const advice = JSON.parse(policy.stdout) as {
        oidcProvider: { url: string; clientIds: string[] };
        trustPolicy: { Statement: Array<{ Condition: Record<string, Record<string, string>> }> };
      };
      const path = `${new URL(String(claims.iss)).host}${new URL(String(claims.iss)).pathname}`.replace(/\/$/, '');
      expect(advice.oidcProvider).toMatchObject({ url: `https://${path}`, clientIds: ['sts.amazonaws.com'] });
      expect(advice.trustPolicy.Statement[0]!.Condition['StringEquals']).toEqual({ [`${path}:aud`]: 'sts.amazonaws.com', [`${path}:sub`]: 'workload-7' });
    });
  }
});
