import { randomBytes } from 'node:crypto';
import {
  AssumeRoleCommand,
  type AssumeRoleCommandOutput,
  AssumeRoleWithWebIdentityCommand,
  type AssumeRoleWithWebIdentityCommandInput,
  type AssumeRoleWithWebIdentityCommandOutput,
  type Credentials,
  STSClient,
} from '@aws-sdk/client-sts';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DemoOidcIssuer } from '../../src/demo/oidc-issuer.js';
import { StsEmulator } from '../../src/demo/sts-emulator.js';

/**
 * The STS emulator's web-identity step as #18 needs it, driven by the real @aws-sdk/client-sts:
 * session policies on AssumeRoleWithWebIdentity, session tags read from the token's
 * `https://aws.amazon.com/tags` claim (and their transitive keys reaching the next hop), and
 * `expireCredentials`, which ends a hub session half-way through a chain.
 */

const HUB_ACCOUNT = '111122223333';
const WORKLOAD_ACCOUNT = '444455556666';
const HUB = `arn:aws:iam::${HUB_ACCOUNT}:role/hub`;
const UNTAGGABLE_HUB = `arn:aws:iam::${HUB_ACCOUNT}:role/hub-without-tag-session`;
const WORKLOAD = `arn:aws:iam::${WORKLOAD_ACCOUNT}:role/workload`;
const SUBJECT = 'system:serviceaccount:payments:api';
const AUDIENCE = 'sts.amazonaws.com';
const TAGS_CLAIM = 'https://aws.amazon.com/tags';
const POLICY = JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::payments/*' }] });

let issuer: DemoOidcIssuer;
let sts: StsEmulator;
const clients: STSClient[] = [];

function client(credentials?: Credentials): STSClient {
  const c = new STSClient({
    region: 'us-east-1',
    endpoint: sts.url,
    maxAttempts: 1,
    ...(credentials
      ? { credentials: { accessKeyId: credentials.AccessKeyId!, secretAccessKey: credentials.SecretAccessKey!, sessionToken: credentials.SessionToken! } }
      : {}),
  });
  clients.push(c);
  return c;
}

/** AssumeRoleWithWebIdentity into `RoleArn` (the hub by default) with a demo-issuer token carrying `claims`. */
async function webIdentity(
  input: Partial<AssumeRoleWithWebIdentityCommandInput> = {},
  claims: Record<string, unknown> = {},
): Promise<AssumeRoleWithWebIdentityCommandOutput> {
  const token = await issuer.mint({ sub: SUBJECT, aud: AUDIENCE, ttlSeconds: 3600, extra: claims });
  return client().send(
    new AssumeRoleWithWebIdentityCommand({
      RoleArn: HUB,
      RoleSessionName: 'hub-session',
      WebIdentityToken: token,
      ...input,
    } as AssumeRoleWithWebIdentityCommandInput),
  );
}

function assumeWorkload(credentials: Credentials): Promise<AssumeRoleCommandOutput> {
  return client(credentials).send(new AssumeRoleCommand({ RoleArn: WORKLOAD, RoleSessionName: 'payments-api' }));
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
    trust: [
      { roleArn: HUB, issuer: issuer.url, audience: AUDIENCE, subject: SUBJECT },
      { roleArn: UNTAGGABLE_HUB, issuer: issuer.url, audience: AUDIENCE, subject: SUBJECT, allowTagSession: false },
    ],
    assumeRoleTrust: [{ roleArn: WORKLOAD, principal: HUB }],
  });
});

beforeEach(() => sts.heal());

afterAll(async () => {
  for (const c of clients) c.destroy();
  await Promise.all([sts?.close(), issuer?.close()]);
});

describe('session policies on AssumeRoleWithWebIdentity', () => {
  it('accepts a policy and policy ARNs, answers PackedPolicySize, and records the policy by its length only', async () => {
    const out = await webIdentity({ Policy: POLICY, PolicyArns: [{ arn: 'arn:aws:iam::aws:policy/ReadOnlyAccess' }] });
    expect(out.Credentials?.AccessKeyId).toMatch(/^ASIA/);
    expect(out.PackedPolicySize).toBeGreaterThan(0);
    expect(out.PackedPolicySize).toBeLessThanOrEqual(100);
    const record = sts.requests.at(-1)!;
    expect(record).toMatchObject({ roleArn: HUB, policyLength: POLICY.length, policyArns: ['arn:aws:iam::aws:policy/ReadOnlyAccess'] });
    expect(JSON.stringify(record)).not.toContain('s3:GetObject');
  });

  it('records no policy and answers no PackedPolicySize when none was sent', async () => {
    const out = await webIdentity();
    expect(out.PackedPolicySize).toBeUndefined();
    expect(sts.requests.at(-1)).toMatchObject({ policyLength: 0, policyArns: [] });
  });

  it('refuses a policy over 2048 characters: ValidationError', async () => {
    const got = await refusal(webIdentity({ Policy: JSON.stringify({ Version: '2012-10-17', Sid: 'x'.repeat(2100) }) }));
    expect(got).toMatchObject({ name: 'ValidationError', status: 400 });
    expect(got.message).toContain('2048');
    expect(got.message).not.toContain('xxxx');
  });

  it('refuses a policy that is not a JSON object: MalformedPolicyDocument', async () => {
    for (const policy of ['{"Version": "2012-10-17", Statement: [', '["not", "an", "object"]']) {
      expect(await refusal(webIdentity({ Policy: policy }))).toMatchObject({ name: 'MalformedPolicyDocumentException', status: 400 });
    }
  });

  it('refuses 11 policy ARNs, and an ARN that is not a policy: ValidationError', async () => {
    const elevenArns = Array.from({ length: 11 }, (_, i) => ({ arn: `arn:aws:iam::${HUB_ACCOUNT}:policy/p${i}` }));
    const got = await refusal(webIdentity({ PolicyArns: elevenArns }));
    expect(got).toMatchObject({ name: 'ValidationError', status: 400 });
    expect(sts.requests.at(-1)?.policyArns).toHaveLength(11);
    expect((await webIdentity({ PolicyArns: elevenArns.slice(0, 10) })).Credentials).toBeTruthy();
    expect(await refusal(webIdentity({ PolicyArns: [{ arn: `arn:aws:iam::${HUB_ACCOUNT}:role/not-a-policy` }] }))).toMatchObject({
      name: 'ValidationError',
      status: 400,
    });
  });
});

describe("session tags from the token's https://aws.amazon.com/tags claim", () => {
  it('tags the web-identity session, and the transitive tag reaches the next hop', async () => {
    const hub = await webIdentity(
      { RoleSessionName: 'tagged-hub' },
      { [TAGS_CLAIM]: { principal_tags: { team: ['payments'], namespace: ['prod'] }, transitive_tag_keys: ['team'] } },
    );
    expect(hub.PackedPolicySize).toBeGreaterThan(0);
    const issuedHub = sts.issued.find((i) => i.accessKeyId === hub.Credentials!.AccessKeyId)!;
    expect(issuedHub.action).toBe('AssumeRoleWithWebIdentity');
    expect(issuedHub.sessionTags).toEqual([
      { key: 'team', value: 'payments' },
      { key: 'namespace', value: 'prod' },
    ]);

    const workload = await assumeWorkload(hub.Credentials!);
    const issuedWorkload = sts.issued.find((i) => i.accessKeyId === workload.Credentials!.AccessKeyId)!;
    // Only the transitive tag is inherited; the workload hop sent none of its own.
    expect(issuedWorkload.sessionTags).toEqual([{ key: 'team', value: 'payments' }]);
  });

  it('gives a token without the claim an untagged session', async () => {
    const hub = await webIdentity({ RoleSessionName: 'untagged-hub' });
    expect(sts.issued.find((i) => i.accessKeyId === hub.Credentials!.AccessKeyId)?.sessionTags).toBeUndefined();
    const workload = await assumeWorkload(hub.Credentials!);
    expect(sts.issued.find((i) => i.accessKeyId === workload.Credentials!.AccessKeyId)?.sessionTags).toEqual([]);
  });

  it('refuses tags when the trust does not allow sts:TagSession: AccessDenied', async () => {
    const claims = { [TAGS_CLAIM]: { principal_tags: { team: ['payments'] } } };
    const got = await refusal(webIdentity({ RoleArn: UNTAGGABLE_HUB }, claims));
    expect(got).toMatchObject({ name: 'AccessDenied', status: 403 });
    expect(got.message).toContain('sts:TagSession');
    expect((await webIdentity({ RoleArn: UNTAGGABLE_HUB })).Credentials).toBeTruthy();
  });

  it('refuses a claim that breaks the session-tag rules: InvalidIdentityToken, without echoing the tags', async () => {
    const broken: Record<string, unknown>[] = [
      { principal_tags: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, ['v']])) },
      { principal_tags: { ['k'.repeat(129)]: ['v'] } },
      { principal_tags: { team: ['secret-value-'.repeat(20)] } },
      { principal_tags: { team: ['payments', 'billing'] } },
      { principal_tags: { Team: ['a'], team: ['b'] } },
      { principal_tags: { team: ['payments'] }, transitive_tag_keys: ['namespace'] },
      { principal_tags: ['team'] },
    ];
    for (const claim of broken) {
      const got = await refusal(webIdentity({}, { [TAGS_CLAIM]: claim }));
      expect(got).toMatchObject({ name: 'InvalidIdentityTokenException', status: 400 });
      expect(got.message).not.toContain('secret-value');
    }
    const justFifty = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`k${i}`, ['v']]));
    expect((await webIdentity({}, { [TAGS_CLAIM]: { principal_tags: justFifty } })).Credentials).toBeTruthy();
  });

  it('counts the token tags in the packed budget with the policy: PackedPolicyTooLarge', async () => {
    // 15 random 256-character values: within every plaintext limit, and the token within STS's 20,000 characters.
    const tags = Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`k${i}`, [randomBytes(192).toString('base64').replace(/[^\w]/g, '_')]]));
    const got = await refusal(webIdentity({ Policy: POLICY }, { [TAGS_CLAIM]: { principal_tags: tags } }));
    expect(got).toMatchObject({ name: 'PackedPolicyTooLargeException', status: 400 });
    expect(Number(/consumes (\d+)% of allotted space/.exec(got.message)?.[1])).toBeGreaterThan(100);
  });
});

describe('expireCredentials', () => {
  it("ends the hub's session: the next AssumeRole signed with it is ExpiredToken, while a fresh hub session still works", async () => {
    const hub = await webIdentity({ RoleSessionName: 'hub-to-expire' });
    const other = await webIdentity({ RoleSessionName: 'hub-to-keep' });
    expect((await assumeWorkload(hub.Credentials!)).Credentials).toBeTruthy();

    const ended = sts.expireCredentials((i) => i.accessKeyId === hub.Credentials!.AccessKeyId);
    expect(ended).toBe(1);
    const got = await refusal(assumeWorkload(hub.Credentials!));
    expect(got).toMatchObject({ name: 'ExpiredToken', status: 403, message: 'The security token included in the request is expired' });
    expect(sts.assumeRoleRequests.at(-1)).toMatchObject({ callerAccessKeyId: hub.Credentials!.AccessKeyId, outcome: 'ExpiredToken' });

    expect((await assumeWorkload(other.Credentials!)).Credentials).toBeTruthy();
    const fresh = await webIdentity({ RoleSessionName: 'hub-renewed' });
    expect((await assumeWorkload(fresh.Credentials!)).Credentials).toBeTruthy();
    // A session already ended is not counted again.
    expect(sts.expireCredentials((i) => i.accessKeyId === hub.Credentials!.AccessKeyId)).toBe(0);
  });

  it('counts every session the filter selects, and selects by what was issued', async () => {
    const hubs = [await webIdentity({ RoleSessionName: 'many-1' }), await webIdentity({ RoleSessionName: 'many-2' })];
    const workload = await assumeWorkload(hubs[0]!.Credentials!);
    expect(sts.expireCredentials((i) => i.sessionName.startsWith('many-'))).toBe(2);
    for (const hub of hubs) expect(await refusal(assumeWorkload(hub.Credentials!))).toMatchObject({ name: 'ExpiredToken' });
    // The workload session issued from an ended hub session lives on until its own expiry.
    const deeper = client(workload.Credentials!).send(new AssumeRoleCommand({ RoleArn: WORKLOAD, RoleSessionName: 'again' }));
    expect(await refusal(deeper)).toMatchObject({ name: 'AccessDenied' });
  });
});
