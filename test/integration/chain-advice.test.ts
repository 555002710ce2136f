import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DemoOidcIssuer } from '../../src/demo/oidc-issuer.js';
import { StsEmulator } from '../../src/demo/sts-emulator.js';
import { crosscred } from '../support/run-cli.js';

/**
 * `crosscred doctor` (the built CLI, on a config file with a `chain`) and `crosscred trust-policy`
 * on a role chain (#18), against the STS emulator on loopback: the web-identity
 * step and each sts:AssumeRole hop on its own line, the failing hop named with its code and what
 * to check, the steps after it not tried, and nothing secret printed.
 */

const HUB = 'arn:aws:iam::111122223333:role/hub';
const SHARED = 'arn:aws:iam::444455556666:role/shared-services';
const TARGET = 'arn:aws:iam::777788889999:role/app';
const UNTRUSTED = 'arn:aws:iam::444455556666:role/nobody-trusts-the-hub';
const SUBJECT = 'system:serviceaccount:payments:api';
const AUDIENCE = 'sts.amazonaws.com';
const RIGHT_EXTERNAL_ID = 'ext-app-7f3a';
/** A session policy whose text must never reach the report. */
const POLICY = JSON.stringify({
  Version: '2012-10-17',
  Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::policy-text-marker-bucket/*' }],
});

let issuer: DemoOidcIssuer;
let sts: StsEmulator;
let dir: string;
let tokenFile: string;
let token: string;
let configs = 0;
/** The CLI's environment: nothing from this machine's AWS set-up. */
const ENV = { HOME: '/nonexistent', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };

beforeAll(async () => {
  issuer = await DemoOidcIssuer.start();
  sts = await StsEmulator.start({
    trust: [{ roleArn: HUB, issuer: issuer.url, audience: AUDIENCE, subject: SUBJECT }],
    assumeRoleTrust: [
      { roleArn: SHARED, principal: HUB, allowTagSession: true },
      { roleArn: TARGET, principal: SHARED, externalId: RIGHT_EXTERNAL_ID },
    ],
  });
  dir = await mkdtemp(join(tmpdir(), 'crosscred-chain-doctor-'));
  tokenFile = join(dir, 'token');
  token = await issuer.mint({ sub: SUBJECT, aud: AUDIENCE, ttlSeconds: 3600 });
  await writeFile(tokenFile, token);
}, 60_000);
afterAll(async () => {
  await sts?.close();
  await issuer?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A hop as the config file writes it. */
interface FileHop {
  readonly roleArn: string;
  readonly externalId?: string;
  readonly policy?: string;
  readonly tags?: Record<string, string>;
  readonly transitiveTagKeys?: string[];
}

/** A config file whose one role is the hub with `chain`; returns its path. */
async function writeConfig(chain: FileHop[]): Promise<string> {
  const file = join(dir, `config-${++configs}.yaml`);
  const config = {
    tokenFile,
    region: 'us-east-1',
    stsEndpoint: sts.url,
    roles: [{ name: 'app', roleArn: HUB, chain }],
    listen: [{ address: '127.0.0.1:0', role: 'app' }],
  };
  await writeFile(file, JSON.stringify(config));
  return file;
}

/** Runs the built `crosscred doctor` on that config file. */
async function doctor(chain: FileHop[]): Promise<{ out: string; code: number }> {
  const { code, stdout, stderr } = await crosscred(['doctor', '--config', await writeConfig(chain)], ENV, 60_000);
  expect(stderr).toBe('');
  return { out: stdout, code };
}

/** Lines of the report that are about the chain's steps (the issuer checks are another matter). */
function stepLines(out: string): string[] {
  return out.split('\n').filter((l) => /\[(ok|FAIL|info|warn)\]\s+(web identity|hop \d+):/.test(l));
}

function expectNothingSecret(out: string): void {
  expect(out).not.toContain(token);
  expect(out).not.toContain(token.split('.')[2]!);
  for (const issued of sts.issued) expect(out).not.toContain(issued.accessKeyId);
  expect(out).not.toMatch(/ASIA[A-Z0-9]{12,}/);
  // Secret keys and session tokens are long base64; nothing in a report is.
  expect(out).not.toMatch(/[A-Za-z0-9+/]{40,}/);
  expect(out).not.toContain('policy-text-marker-bucket');
  expect(out).not.toContain('s3:GetObject');
  expect(out).not.toContain(RIGHT_EXTERNAL_ID);
}

const HOP_ONE: FileHop = { roleArn: SHARED, policy: POLICY, tags: { team: 'payments' }, transitiveTagKeys: ['team'] };

describe('crosscred doctor on a role chain', () => {
  it('every step ok: each on its own line with its account and expiry', async () => {
    const { out, code } = await doctor([HOP_ONE, { roleArn: TARGET, externalId: RIGHT_EXTERNAL_ID }]);
    const steps = stepLines(out);
    expect(steps).toEqual([
      `  [ok]   web identity: STS at ${sts.url} accepted the token for ${HUB}`,
      `  [ok]   hop 1: ${SHARED} assumed`,
      `  [ok]   hop 2: ${TARGET} assumed`,
    ]);
    expect(out).toMatch(/account 111122223333, credentials valid until \d{4}-\d\d-\d\dT[\d:.]+Z \((\d+ h )?\d+ min \d+ s left; not shown\)/);
    expect(out).toContain('account 444455556666, credentials valid until');
    expect(out).toContain('account 777788889999, credentials valid until');
    // The loopback demo issuer is plain HTTP, which IAM would refuse: that, and nothing in the chain, fails.
    expect(out.split('\n').filter((l) => l.includes('[FAIL]'))).toEqual([`  [FAIL] the issuer ${issuer.url} is not HTTPS`]);
    expect(code).toBe(1);
    expectNothingSecret(out);
  });

  it("hop 2's ExternalId is wrong: doctor names hop 2, says AccessDenied and what to check, and fails", async () => {
    const { out, code } = await doctor([HOP_ONE, { roleArn: TARGET, externalId: 'ext-wrong-0000' }]);
    expect(stepLines(out)).toEqual([
      `  [ok]   web identity: STS at ${sts.url} accepted the token for ${HUB}`,
      `  [ok]   hop 1: ${SHARED} assumed`,
      `  [FAIL] hop 2: ${TARGET} failed: AccessDenied`,
    ]);
    expect(out).toContain(`hop 2 (${TARGET}): STS refused the exchange: AccessDenied`);
    expect(out).toContain("fix: check that this hop's target role trusts the previous step's role");
    expect(out).toContain('sts:ExternalId condition equals this hop');
    expect(code).toBe(1);
    expect(out).not.toContain('ext-wrong-0000');
    expectNothingSecret(out);
  });

  it('a failing first hop: the hops after it are reported as not tried', async () => {
    const { out, code } = await doctor([{ roleArn: UNTRUSTED }, { roleArn: TARGET, externalId: RIGHT_EXTERNAL_ID }]);
    expect(stepLines(out)).toEqual([
      `  [ok]   web identity: STS at ${sts.url} accepted the token for ${HUB}`,
      `  [FAIL] hop 1: ${UNTRUSTED} failed: AccessDenied`,
      `  [info] hop 2: ${TARGET} not tried (a step before it failed)`,
    ]);
    expect(code).toBe(1);
    expectNothingSecret(out);
  });

  it('tags too large for STS: PackedPolicyTooLarge, with what to shorten', async () => {
    // Random values do not compress: twenty of 256 characters overflow the packed budget.
    const tags = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, randomBytes(128).toString('hex')]));
    const { out, code } = await doctor([{ roleArn: SHARED, tags }]);
    expect(stepLines(out)).toContain(`  [FAIL] hop 1: ${SHARED} failed: PackedPolicyTooLarge`);
    expect(out).toContain('send fewer or shorter tags');
    expect(code).toBe(1);
    for (const value of Object.values(tags)) expect(out).not.toContain(value);
  });
});

describe('crosscred trust-policy on a role chain', () => {
  it("prints the hub's web-identity trust, then each hop's trust and caller policy, as JSON and text", async () => {
    const file = await writeConfig([HOP_ONE, { roleArn: TARGET, externalId: RIGHT_EXTERNAL_ID }]);
    const json = await crosscred(['trust-policy', '--config', file, '--format', 'json'], ENV, 60_000);
    expect(json.code).toBe(0);
    const advice = JSON.parse(json.stdout) as {
      trustPolicy: { Statement: Array<{ Principal: Record<string, string> }> };
      chain: Array<{ hop: number; trustPolicy: unknown; callerPolicy: unknown; commands: string[][] }>;
    };
    expect(advice.trustPolicy.Statement[0]!.Principal['Federated']).toMatch(/:oidc-provider\/127\.0\.0\.1:/);
    expect(advice.chain.map((h) => h.trustPolicy)).toEqual([
      { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { AWS: HUB }, Action: ['sts:AssumeRole', 'sts:TagSession'] }] },
      {
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Allow',
            Principal: { AWS: SHARED },
            Action: ['sts:AssumeRole', 'sts:TagSession'],
            Condition: { StringEquals: { 'sts:ExternalId': RIGHT_EXTERNAL_ID } },
          },
        ],
      },
    ]);
    expect(advice.chain[1]!.callerPolicy).toEqual({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'sts:AssumeRole', Resource: TARGET }] });
    const text = await crosscred(['trust-policy', '--config', file], ENV, 60_000);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('aws iam update-assume-role-policy --role-name hub --policy-document file://trust-policy.json');
    expect(text.stdout).toContain(`# 4. Hop 2: ${SHARED} assumes ${TARGET} with sts:AssumeRole.`);
    expect(text.stdout).toContain('aws iam update-assume-role-policy --role-name app --policy-document file://trust-policy-hop-2.json');
    expect(text.stdout).toContain(
      'aws iam put-role-policy --role-name shared-services --policy-name crosscred-assume-app --policy-document file://assume-hop-2.json',
    );
  });
});
