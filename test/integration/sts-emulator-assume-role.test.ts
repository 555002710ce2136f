import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AssumeRoleCommand,
  type AssumeRoleCommandInput,
  type AssumeRoleCommandOutput,
  AssumeRoleWithWebIdentityCommand,
  type Credentials,
  STSClient,
} from '@aws-sdk/client-sts';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DemoOidcIssuer } from '../../src/demo/oidc-issuer.js';
import { StsEmulator } from '../../src/demo/sts-emulator.js';
import { CLIENTS, clientAvailable, clientEnv, runClient } from '../support/clients.js';

/**
 * The STS emulator's AssumeRole (#18), driven by the real @aws-sdk/client-sts (and once by the AWS
 * CLI v2): a hub role's web-identity session signs AssumeRole into a role of another account, and
 * that session signs the next hop. The emulator recomputes each SigV4 signature from the secret it
 * issued, so a request signed with another secret is refused.
 */

const HUB_ACCOUNT = '111122223333';
const WORKLOAD_ACCOUNT = '444455556666';
const DEEP_ACCOUNT = '777788889999';
const HUB = `arn:aws:iam::${HUB_ACCOUNT}:role/hub`;
const WORKLOAD = `arn:aws:iam::${WORKLOAD_ACCOUNT}:role/workload`;
const DEEP = `arn:aws:iam::${DEEP_ACCOUNT}:role/deep`;
const UNTAGGED = `arn:aws:iam::${WORKLOAD_ACCOUNT}:role/no-tags`;
const LONG = `arn:aws:iam::${WORKLOAD_ACCOUNT}:role/long-sessions`;
const USER = `arn:aws:iam::${HUB_ACCOUNT}:user/deployer`;
const EXTERNAL_ID = 'crosscred-ext-7f3a';
const SUBJECT = 'system:serviceaccount:payments:api';
const AUDIENCE = 'sts.amazonaws.com';

let issuer: DemoOidcIssuer;
let sts: StsEmulator;
/** How far the emulator's clock runs ahead of the real one (ms). */
let offset = 0;
const clients: STSClient[] = [];

function client(credentials?: Credentials | { AccessKeyId: string; SecretAccessKey: string; SessionToken?: string }): STSClient {
  const c = new STSClient({
    region: 'us-east-1',
    endpoint: sts.url,
    maxAttempts: 1,
    ...(credentials
      ? {
          credentials: {
            accessKeyId: credentials.AccessKeyId!,
            secretAccessKey: credentials.SecretAccessKey!,
            ...(credentials.SessionToken ? { sessionToken: credentials.SessionToken } : {}),
          },
        }
      : {}),
  });
  clients.push(c);
  return c;
}

/** The hub role's session, from AssumeRoleWithWebIdentity with a token of the demo issuer. */
async function hubSession(): Promise<Credentials> {
  const token = await issuer.mint({ sub: SUBJECT, aud: AUDIENCE, ttlSeconds: 3600 });
  const out = await client().send(new AssumeRoleWithWebIdentityCommand({ RoleArn: HUB, RoleSessionName: 'hub-session', WebIdentityToken: token }));
  return out.Credentials!;
}

function assumeRole(credentials: Credentials, input: Partial<AssumeRoleCommandInput> = {}): Promise<AssumeRoleCommandOutput> {
  return client(credentials).send(
    new AssumeRoleCommand({ RoleArn: WORKLOAD, RoleSessionName: 'payments-api', ExternalId: EXTERNAL_ID, ...input } as AssumeRoleCommandInput),
  );
}

/** The refusal of `promise`: the SDK's error name (STS's wire code), its HTTP status and its message. */
async function refusal(promise: Promise<unknown>): Promise<{ name: string; status: number | undefined; message: string }> {
  const err = (await promise.then(
    () => {
      throw new Error('expected a refusal');
    },
    (e: unknown) => e,
  )) as { name: string; message: string; $metadata?: { httpStatusCode?: number } };
  return { name: err.name, status: err.$metadata?.httpStatusCode, message: err.message };
}

beforeAll(async () => {
  issuer = await DemoOidcIssuer.start();
  sts = await StsEmulator.start({
    trust: [{ roleArn: HUB, issuer: issuer.url, audience: AUDIENCE, subject: SUBJECT }],
    now: () => Date.now() + offset,
    assumeRoleTrust: [
      { roleArn: WORKLOAD, principal: HUB, externalId: EXTERNAL_ID, allowTagSession: true, maxSessionDuration: 43_200 },
      { roleArn: DEEP, principal: WORKLOAD },
      { roleArn: UNTAGGED, principal: HUB },
      { roleArn: LONG, principal: USER, maxSessionDuration: 43_200 },
    ],
  });
});

beforeEach(() => {
  offset = 0;
  sts.heal();
});

afterAll(async () => {
  for (const c of clients) c.destroy();
  await Promise.all([sts?.close(), issuer?.close()]);
});

describe('AssumeRole in the STS emulator, signed by the real JS SDK', () => {
  it('lets a web-identity session assume a role in another account', async () => {
    const hub = await hubSession();
    const before = Date.now();
    const out = await assumeRole(hub);
    expect(out.AssumedRoleUser?.Arn).toBe(`arn:aws:sts::${WORKLOAD_ACCOUNT}:assumed-role/workload/payments-api`);
    expect(out.AssumedRoleUser?.AssumedRoleId).toMatch(/^AROA[0-9A-F]{17}:payments-api$/);
    expect(out.Credentials?.AccessKeyId).toMatch(/^ASIA[0-9A-F]{16}$/);
    expect(out.Credentials?.AccessKeyId).not.toBe(hub.AccessKeyId);
    expect(out.PackedPolicySize).toBeUndefined();
    // The chained default is 3600 s.
    const lifetime = out.Credentials!.Expiration!.getTime() - before;
    expect(lifetime).toBeGreaterThan(3590_000);
    expect(lifetime).toBeLessThanOrEqual(3601_000);
    const issued = sts.issued.find((i) => i.accessKeyId === out.Credentials!.AccessKeyId)!;
    expect(issued).toMatchObject({
      action: 'AssumeRole',
      roleArn: WORKLOAD,
      sessionName: 'payments-api',
      subject: `arn:aws:sts::${HUB_ACCOUNT}:assumed-role/hub/hub-session`,
    });
    expect(sts.assumeRoleRequests.at(-1)).toMatchObject({
      roleArn: WORKLOAD,
      externalId: EXTERNAL_ID,
      callerAccessKeyId: hub.AccessKeyId,
      outcome: 'issued',
      fault: null,
    });
  });

  it('chains two hops, each signed with the previous one, and the role id stays the role', async () => {
    const hub = await hubSession();
    const first = await assumeRole(hub, { Tags: [{ Key: 'team', Value: 'payments' }], TransitiveTagKeys: ['team'] });
    const second = await assumeRole(first.Credentials!, { RoleArn: DEEP, RoleSessionName: 'deep-hop', ExternalId: undefined });
    expect(second.AssumedRoleUser?.Arn).toBe(`arn:aws:sts::${DEEP_ACCOUNT}:assumed-role/deep/deep-hop`);
    const hops = [hub, first.Credentials!, second.Credentials!].map((c) => sts.issued.find((i) => i.accessKeyId === c.AccessKeyId)!);
    expect(hops.map((h) => [h.action, h.roleArn])).toEqual([
      ['AssumeRoleWithWebIdentity', HUB],
      ['AssumeRole', WORKLOAD],
      ['AssumeRole', DEEP],
    ]);
    // The transitive tag reached the second hop, which sent none.
    expect(hops[2]!.sessionTags).toEqual([{ key: 'team', value: 'payments' }]);
    expect(sts.assumeRoleRequests.at(-1)?.callerAccessKeyId).toBe(first.Credentials!.AccessKeyId);
    // The same role gives the same role id, whatever the session.
    const again = await assumeRole(hub, { RoleSessionName: 'other' });
    expect(again.AssumedRoleUser!.AssumedRoleId!.split(':')[0]).toBe(first.AssumedRoleUser!.AssumedRoleId!.split(':')[0]);
  });

  it('refuses a request signed with the wrong secret: SignatureDoesNotMatch', async () => {
    const hub = await hubSession();
    const got = await refusal(assumeRole({ ...hub, SecretAccessKey: randomBytes(30).toString('base64') }));
    expect(got).toMatchObject({ name: 'SignatureDoesNotMatch', status: 403 });
    expect(sts.assumeRoleRequests.at(-1)?.outcome).toBe('SignatureDoesNotMatch');
  });

  it('refuses an access key it never issued: InvalidClientTokenId', async () => {
    const got = await refusal(
      assumeRole({
        AccessKeyId: `ASIA${randomBytes(8).toString('hex').toUpperCase()}`,
        SecretAccessKey: randomBytes(30).toString('base64'),
        SessionToken: randomBytes(100).toString('base64'),
        Expiration: new Date(Date.now() + 3600_000),
      }),
    );
    expect(got).toMatchObject({ name: 'InvalidClientTokenId', status: 403 });
  });

  it('refuses an expired hub session: ExpiredToken', async () => {
    const token = await issuer.mint({ sub: SUBJECT, aud: AUDIENCE, ttlSeconds: 3600 });
    sts.failNext({ kind: 'lifetime', seconds: 300 });
    const out = await client().send(new AssumeRoleWithWebIdentityCommand({ RoleArn: HUB, RoleSessionName: 'short', WebIdentityToken: token }));
    expect((await assumeRole(out.Credentials!)).Credentials?.AccessKeyId).toBeTruthy();
    // Ten minutes later by STS's clock: past the session's end, within SigV4's 15-minute skew.
    offset = 600_000;
    expect(await refusal(assumeRole(out.Credentials!))).toMatchObject({ name: 'ExpiredToken', status: 403 });
  });

  it('requires the ExternalId the trust policy names: missing or wrong is AccessDenied', async () => {
    const hub = await hubSession();
    for (const externalId of [undefined, 'not-the-external-id']) {
      const got = await refusal(assumeRole(hub, { ExternalId: externalId }));
      expect(got).toMatchObject({ name: 'AccessDenied', status: 403 });
      expect(got.message).toBe(
        `User: arn:aws:sts::${HUB_ACCOUNT}:assumed-role/hub/hub-session is not authorized to perform: sts:AssumeRole on resource: ${WORKLOAD}`,
      );
    }
    expect(sts.assumeRoleRequests.slice(-2).map((r) => [r.externalId, r.outcome])).toEqual([
      [null, 'AccessDenied'],
      ['not-the-external-id', 'AccessDenied'],
    ]);
  });

  it('refuses a principal the role does not trust', async () => {
    const hub = await hubSession();
    const got = await refusal(assumeRole(hub, { RoleArn: DEEP }));
    expect(got).toMatchObject({ name: 'AccessDenied', status: 403 });
    expect(got.message).toContain(`sts:AssumeRole on resource: ${DEEP}`);
  });

  it('caps a chained session at one hour, but not a user key under the role maximum', async () => {
    const hub = await hubSession();
    const got = await refusal(assumeRole(hub, { DurationSeconds: 7200 }));
    expect(got).toMatchObject({ name: 'ValidationError', status: 400 });
    expect(got.message).toBe('The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.');
    expect((await assumeRole(hub, { DurationSeconds: 3600 })).Credentials).toBeTruthy();
    expect(await refusal(assumeRole(hub, { DurationSeconds: 899 }))).toMatchObject({ name: 'ValidationError', status: 400 });

    const user = { AccessKeyId: `AKIA${randomBytes(8).toString('hex').toUpperCase()}`, SecretAccessKey: randomBytes(30).toString('base64') };
    sts.addHostCredentials({ accessKeyId: user.AccessKeyId, secretAccessKey: user.SecretAccessKey, arn: USER });
    const before = Date.now();
    const long = await assumeRole(user as Credentials, { RoleArn: LONG, ExternalId: undefined, DurationSeconds: 7200 });
    expect(long.Credentials!.Expiration!.getTime() - before).toBeGreaterThan(7190_000);
    const tooLong = await refusal(assumeRole(user as Credentials, { RoleArn: LONG, ExternalId: undefined, DurationSeconds: 43_201 }));
    expect(tooLong).toMatchObject({ name: 'ValidationError', status: 400 });
  });

  it('takes a session policy that is JSON of at most 2048 characters, and policy ARNs', async () => {
    const hub = await hubSession();
    const policy = JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::payments/*' }] });
    const ok = await assumeRole(hub, { Policy: policy, PolicyArns: [{ arn: 'arn:aws:iam::aws:policy/ReadOnlyAccess' }] });
    expect(ok.PackedPolicySize).toBeGreaterThan(0);
    expect(ok.PackedPolicySize).toBeLessThanOrEqual(100);
    expect(sts.assumeRoleRequests.at(-1)).toMatchObject({
      policyLength: policy.length,
      policyArns: ['arn:aws:iam::aws:policy/ReadOnlyAccess'],
      outcome: 'issued',
    });

    const tooLong = await refusal(assumeRole(hub, { Policy: JSON.stringify({ Version: '2012-10-17', Sid: 'x'.repeat(2100) }) }));
    expect(tooLong).toMatchObject({ name: 'ValidationError', status: 400 });
    expect(tooLong.message).toContain('2048');
    const notJson = await refusal(assumeRole(hub, { Policy: '{"Version": "2012-10-17", Statement: [' }));
    expect(notJson).toMatchObject({ name: 'MalformedPolicyDocumentException', status: 400 });
    const elevenArns = Array.from({ length: 11 }, (_, i) => ({ arn: `arn:aws:iam::${WORKLOAD_ACCOUNT}:policy/p${i}` }));
    expect(await refusal(assumeRole(hub, { PolicyArns: elevenArns }))).toMatchObject({ name: 'ValidationError', status: 400 });
    expect(await refusal(assumeRole(hub, { PolicyArns: [{ arn: 'not-an-arn-at-all-really' }] }))).toMatchObject({ name: 'ValidationError', status: 400 });
  });

  it('needs sts:TagSession for tags, and refuses duplicate keys whatever their case', async () => {
    const hub = await hubSession();
    const untagged = await refusal(assumeRole(hub, { RoleArn: UNTAGGED, ExternalId: undefined, Tags: [{ Key: 'team', Value: 'payments' }] }));
    expect(untagged).toMatchObject({ name: 'AccessDenied', status: 403 });
    expect(untagged.message).toContain(`sts:TagSession on resource: ${UNTAGGED}`);
    expect((await assumeRole(hub, { RoleArn: UNTAGGED, ExternalId: undefined })).Credentials).toBeTruthy();

    const duplicate = await refusal(
      assumeRole(hub, {
        Tags: [
          { Key: 'Team', Value: 'a' },
          { Key: 'team', Value: 'b' },
        ],
      }),
    );
    expect(duplicate).toMatchObject({ name: 'ValidationError', status: 400 });
    expect(duplicate.message).toContain('case insensitive');
    const tooMany = Array.from({ length: 51 }, (_, i) => ({ Key: `k${i}`, Value: 'v' }));
    expect(await refusal(assumeRole(hub, { Tags: tooMany }))).toMatchObject({ name: 'ValidationError', status: 400 });
    expect(await refusal(assumeRole(hub, { Tags: [{ Key: 'k'.repeat(129), Value: 'v' }] }))).toMatchObject({ name: 'ValidationError', status: 400 });
    expect(await refusal(assumeRole(hub, { Tags: [{ Key: 'k', Value: 'v'.repeat(257) }] }))).toMatchObject({ name: 'ValidationError', status: 400 });
    const tagged = await assumeRole(hub, { Tags: [{ Key: 'team', Value: 'payments' }] });
    expect(tagged.PackedPolicySize).toBeGreaterThan(0);
  });

  it('refuses tags that do not pack into the budget: PackedPolicyTooLarge, with the percentage', async () => {
    const hub = await hubSession();
    // 50 tags of 128-character keys and 256-character random values: within every plaintext limit.
    const tags = Array.from({ length: 50 }, (_, i) => ({ Key: `${i}-${'k'.repeat(120)}`, Value: randomBytes(192).toString('base64').replace(/[^\w]/g, '_') }));
    const got = await refusal(assumeRole(hub, { Tags: tags }));
    expect(got).toMatchObject({ name: 'PackedPolicyTooLargeException', status: 400 });
    const percent = Number(/consumes (\d+)% of allotted space/.exec(got.message)?.[1]);
    expect(percent).toBeGreaterThan(100);
    expect(sts.assumeRoleRequests.at(-1)).toMatchObject({ outcome: 'PackedPolicyTooLarge' });
    expect(sts.issued.some((i) => i.sessionTags?.length === 50)).toBe(false);
  });

  it('applies faults to AssumeRole only when asked, and leaves failNext to AssumeRoleWithWebIdentity', async () => {
    const hub = await hubSession();
    sts.failNextAssumeRole({ kind: 'error', status: 403, code: 'RegionDisabledException', message: 'STS is not activated in this region' });
    expect(await refusal(assumeRole(hub))).toMatchObject({ name: 'RegionDisabledException', status: 403 });
    expect(sts.assumeRoleRequests.at(-1)).toMatchObject({ fault: 'error', outcome: 'RegionDisabledException' });
    sts.failNext({ kind: 'error', status: 503, code: 'ServiceUnavailable' });
    expect((await assumeRole(hub)).Credentials).toBeTruthy();
    expect(await refusal(hubSession())).toMatchObject({ name: 'ServiceUnavailable', status: 503 });
    sts.failAlwaysAssumeRole({ kind: 'error', status: 400, code: 'Throttling', message: 'Rate exceeded' });
    expect(await refusal(assumeRole(hub))).toMatchObject({ name: 'Throttling' });
    expect(await refusal(assumeRole(hub))).toMatchObject({ name: 'Throttling' });
    sts.heal();
    expect((await assumeRole(hub)).Credentials).toBeTruthy();
  });
});

describe('AssumeRole signed by the AWS CLI v2', () => {
  let home: string;
  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), 'crosscred-assume-role-cli-'));
  });
  afterAll(() => rm(home, { recursive: true, force: true }));

  it('assumes the target role with the hub session from the environment', async (ctx) => {
    if (!(await clientAvailable(CLIENTS.awsCliV2))) ctx.skip(`${CLIENTS.awsCliV2} is not installed`);
    const hub = await hubSession();
    const env = clientEnv(home, {
      AWS_ACCESS_KEY_ID: hub.AccessKeyId!,
      AWS_SECRET_ACCESS_KEY: hub.SecretAccessKey!,
      AWS_SESSION_TOKEN: hub.SessionToken!,
      AWS_REGION: 'us-east-1',
    });
    const args = ['sts', 'assume-role', '--endpoint-url', sts.url, '--role-arn', WORKLOAD, '--role-session-name', 'from-cli', '--output', 'json'];
    const out = JSON.parse(await runClient(CLIENTS.awsCliV2, [...args, '--external-id', EXTERNAL_ID, '--tags', 'Key=team,Value=payments'], env)) as {
      AssumedRoleUser: { Arn: string };
      Credentials: { AccessKeyId: string };
      PackedPolicySize: number;
    };
    expect(out.AssumedRoleUser.Arn).toBe(`arn:aws:sts::${WORKLOAD_ACCOUNT}:assumed-role/workload/from-cli`);
    expect(out.PackedPolicySize).toBeGreaterThan(0);
    expect(sts.issued.find((i) => i.accessKeyId === out.Credentials.AccessKeyId)).toMatchObject({ action: 'AssumeRole', roleArn: WORKLOAD });
    // Signed with another secret, the CLI gets STS's refusal.
    await expect(
      runClient(CLIENTS.awsCliV2, [...args, '--external-id', EXTERNAL_ID], { ...env, AWS_SECRET_ACCESS_KEY: randomBytes(30).toString('base64') }),
    ).rejects.toThrow(/SignatureDoesNotMatch/);
  });
});
