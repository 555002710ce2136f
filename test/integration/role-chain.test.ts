import { readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type ServeFlags } from '../../src/config/load.js';
import { sanitizeTagValue } from '../../src/platform/aws/session-tags.js';
import { type Chain, type InProcessDaemon, roleArn, startChain, startInProcess, viewEndpoints } from '../support/chain.js';
import { FakeClock } from '../support/fake-clock.js';

/**
 * Role chains (#18) through the real daemon in this process, over loopback, against the STS
 * emulator: the web-identity step assumes the hub role, each hop is an sts:AssumeRole the emulator
 * verifies by SigV4 against the keys it issued to the step before, with its trust rules and
 * ExternalId. A fake clock runs hours of refreshes in seconds.
 */

const TARGET_ACCOUNT = '444455556666';
const THIRD_ACCOUNT = '777788889999';
const HUB = roleArn('hub');
const TARGET = `arn:aws:iam::${TARGET_ACCOUNT}:role/deploy`;
const THIRD = `arn:aws:iam::${THIRD_ACCOUNT}:role/reader`;
const EXTERNAL_ID = 'crosscred-test-external-id';
const POLICY = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::reports/*' }] };
const MINUTE = 60_000;

let clock = new FakeClock(Date.now());
/** How far STS's clock runs ahead of this host's (a host without NTP). */
let stsAheadMs = 0;
let chain: Chain;
let d: InProcessDaemon | undefined;

beforeAll(async () => {
  chain = await startChain({
    roles: ['hub'],
    stsNow: () => clock.wallNow() + stsAheadMs,
    assumeRoleTrust: [
      { roleArn: TARGET, principal: HUB, externalId: EXTERNAL_ID, allowTagSession: true },
      { roleArn: THIRD, principal: `arn:aws:iam::${TARGET_ACCOUNT}:role/deploy`, allowTagSession: true },
    ],
  });
});
afterAll(() => chain?.close());
afterEach(async () => {
  stsAheadMs = 0;
  chain.sts.heal();
  await d?.close();
  d = undefined;
});

interface HopSpec {
  roleArn: string;
  externalId?: string;
  sessionName?: string;
  durationSeconds?: number;
  policy?: unknown;
  tags?: Record<string, string>;
  transitiveTagKeys?: string[];
}

async function start(
  hops: HopSpec[],
  role: Record<string, unknown> = {},
  flags: ServeFlags = {},
  more: Record<string, unknown>[] = [],
): Promise<InProcessDaemon> {
  clock = new FakeClock(Date.now());
  await chain.writeToken({ ttlSeconds: 48 * 3600 });
  const file = join(chain.dir, `chain-${Math.random().toString(36).slice(2)}.json`);
  const common = { roleArn: HUB, tokenFile: chain.tokenFile, region: 'us-east-1', stsEndpoint: chain.sts.url };
  await writeFile(file, JSON.stringify({ roles: [{ name: 'app', ...common, chain: hops, ...role }, ...more.map((r) => ({ ...common, ...r }))] }));
  d = await startInProcess(
    chain,
    { config: file, 'role-arn': undefined, 'token-file': undefined, region: undefined, 'sts-endpoint': undefined, ...flags },
    {},
    { clock },
  );
  await d.daemon.firstFetch;
  return d;
}

const busy = () => d!.daemon.roles.get('app')!.cache.status().refreshing;

async function imdsDocument(path: string): Promise<Record<string, unknown>> {
  const token = await (await request(`${d!.base}/latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '60' } })).body.text();
  const res = await request(`${d!.base}/latest/meta-data/iam/${path}`, { headers: { 'x-aws-ec2-metadata-token': token } });
  expect(res.statusCode).toBe(200);
  return (await res.body.json()) as Record<string, unknown>;
}

describe('a role chain', () => {
  it("serves the last hop's credentials, each hop signed with the step before's keys, the target account named", async () => {
    await start([{ roleArn: TARGET, externalId: EXTERNAL_ID, tags: { host: '{host}' } }]);
    const hub = chain.sts.issued.findLast((c) => c.roleArn === HUB)!;
    const target = chain.sts.issued.findLast((c) => c.roleArn === TARGET)!;
    // {host} fills in whether or not the hub's own session name is a template.
    expect(chain.sts.assumeRoleRequests.at(-1)!.tags).toEqual([{ key: 'host', value: sanitizeTagValue(hostname()) }]);
    expect(hub.action).toBe('AssumeRoleWithWebIdentity');
    expect(target.action).toBe('AssumeRole');
    const call = chain.sts.assumeRoleRequests.at(-1)!;
    expect(call).toMatchObject({ roleArn: TARGET, externalId: EXTERNAL_ID, callerAccessKeyId: hub.accessKeyId, fault: null });

    const served = await imdsDocument('security-credentials/app');
    expect(served['AccessKeyId']).toBe(target.accessKeyId);
    expect(served['AccessKeyId']).not.toBe(hub.accessKeyId);
    const extended = await imdsDocument('security-credentials-extended/app');
    expect(extended['AccountId']).toBe(TARGET_ACCOUNT);
    expect(extended['AccessKeyId']).toBe(target.accessKeyId);
  });

  it('runs two hops, with session policies on each step, tags and session names filled in from the token', async () => {
    const before = chain.sts.assumeRoleRequests.length;
    const webBefore = chain.sts.requests.length;
    await start(
      [
        {
          roleArn: TARGET,
          externalId: EXTERNAL_ID,
          tags: { team: 'payments', namespace: '{namespace}' },
          transitiveTagKeys: ['namespace'],
          sessionName: 'hop-{serviceAccount}',
        },
        { roleArn: THIRD, policy: POLICY, durationSeconds: 900 },
      ],
      { sessionName: '{namespace}.{serviceAccount}', policy: POLICY, policyArns: ['arn:aws:iam::aws:policy/ReadOnlyAccess'] },
    );
    const web = chain.sts.requests.slice(webBefore);
    expect(web).toHaveLength(1);
    expect(web[0]).toMatchObject({ roleArn: HUB, policyLength: JSON.stringify(POLICY).length, policyArns: ['arn:aws:iam::aws:policy/ReadOnlyAccess'] });
    expect(chain.sts.issued.findLast((c) => c.roleArn === HUB)!.sessionName).toBe('payments.api');
    const hops = chain.sts.assumeRoleRequests.slice(before);
    expect(hops.map((h) => [h.roleArn, h.sessionName])).toEqual([
      [TARGET, 'hop-api'],
      [THIRD, 'payments.api'],
    ]);
    expect(hops[0]!.tags).toEqual([
      { key: 'team', value: 'payments' },
      { key: 'namespace', value: 'payments' },
    ]);
    expect(hops[0]!.transitiveTagKeys).toEqual(['namespace']);
    expect(hops[1]).toMatchObject({ policyLength: JSON.stringify(POLICY).length, durationSeconds: 900 });
    // The transitive tag reaches the third session.
    expect(chain.sts.issued.findLast((c) => c.roleArn === THIRD)!.sessionTags).toEqual([{ key: 'namespace', value: 'payments' }]);
    expect((await imdsDocument('security-credentials-extended/app'))['AccountId']).toBe(THIRD_ACCOUNT);
  });

  it('keeps the same session names across refreshes and a restart', async () => {
    const hops = [{ roleArn: TARGET, externalId: EXTERNAL_ID, sessionName: '{namespace}-{serviceAccount}-chained' }];
    const before = chain.sts.assumeRoleRequests.length;
    await start(hops, { sessionName: '{serviceAccount}@{namespace}' });
    await clock.advanceSettling(3 * 60 * MINUTE, busy);
    await d!.close();
    d = undefined;
    await start(hops, { sessionName: '{serviceAccount}@{namespace}' });
    const names = chain.sts.assumeRoleRequests.slice(before).map((r) => r.sessionName);
    expect(names.length).toBeGreaterThanOrEqual(4);
    expect(new Set(names)).toEqual(new Set(['payments-api-chained']));
  });

  it('refreshes as one unit, reusing the hub session while it has time left and renewing it from the first step after', async () => {
    const webBefore = chain.sts.requests.length;
    const hopsBefore = chain.sts.assumeRoleRequests.length;
    await start([{ roleArn: TARGET, externalId: EXTERNAL_ID, durationSeconds: 3600 }], { durationSeconds: 3600 });
    await clock.advanceSettling(4 * 60 * MINUTE, busy);
    const web = chain.sts.requests.length - webBefore;
    const hops = chain.sts.assumeRoleRequests.length - hopsBefore;
    // Four hours of one-hour sessions: a target refresh at least every hour; the hub is reused when it can be.
    expect(hops).toBeGreaterThanOrEqual(5);
    expect(web).toBeGreaterThanOrEqual(3);
    expect(web).toBeLessThan(hops);
    const view = await viewEndpoints(d!);
    expect(view.imds.status).toBe(200);
  });
});

describe('a host whose clock is wrong', () => {
  it("still gets its chain: hops are dated by STS's clock, learned from its last answer", async () => {
    // Beyond the 15 minutes STS allows a signature's date.
    stsAheadMs = 25 * MINUTE;
    const hopsBefore = chain.sts.assumeRoleRequests.length;
    await start([{ roleArn: TARGET, externalId: EXTERNAL_ID, durationSeconds: 900 }], { durationSeconds: 3600 });
    expect((await viewEndpoints(d!)).imds.status).toBe(200);
    await clock.advanceSettling(3 * 60 * MINUTE, busy);
    const hops = chain.sts.assumeRoleRequests.slice(hopsBefore);
    expect(hops.length).toBeGreaterThanOrEqual(4);
    expect(d!.daemon.roles.get('app')!.cache.status().consecutiveFailures).toBe(0);
    expect((await viewEndpoints(d!)).imds.status).toBe(200);
  });
});

describe('chains that start at one hub', () => {
  it('share its web-identity step: one call for both, and both renew from it when STS ends it early', async () => {
    const webBefore = chain.sts.requests.length;
    await start([{ roleArn: TARGET, externalId: EXTERNAL_ID, durationSeconds: 900 }], { durationSeconds: 3600 }, { listen: ['127.0.0.1:0=app'] }, [
      { name: 'reports', durationSeconds: 3600, chain: [{ roleArn: TARGET, externalId: EXTERNAL_ID, durationSeconds: 900, sessionName: 'reports' }] },
    ]);
    await d!.daemon.roles.get('reports')!.cache.current();
    expect(chain.sts.requests.length - webBefore).toBe(1);
    const hub = chain.sts.issued.findLast((c) => c.roleArn === HUB)!;
    expect(chain.sts.expireCredentials((c) => c.accessKeyId === hub.accessKeyId)).toBe(1);
    const both = () => ['app', 'reports'].some((r) => d!.daemon.roles.get(r)!.cache.status().refreshing);
    await clock.advanceSettling(12 * MINUTE, both);
    // Each chain found the hub's session refused and asked for a new one: at most one call each, and shared when at once.
    const web = chain.sts.requests.length - webBefore;
    expect(web).toBeGreaterThanOrEqual(2);
    expect(web).toBeLessThanOrEqual(3);
    for (const role of ['app', 'reports']) expect(d!.daemon.roles.get(role)!.cache.status().expiresInSeconds).toBeGreaterThan(600);
    expect((await viewEndpoints(d!)).imds.status).toBe(200);
  });
});

describe('a role chain when a step fails', () => {
  it('a wrong ExternalId on hop 2 is terminal: nothing served, /readyz names AccessDenied', async () => {
    const before = chain.sts.assumeRoleRequests.length;
    await start([{ roleArn: TARGET, externalId: 'not-the-one' }]);
    const view = await viewEndpoints(d!);
    expect(view.imds.status).toBe(503);
    expect(view.readyz.status).toBe(503);
    expect(view.readyz.body.roles[0]!.lastError).toMatchObject({ kind: 'terminal', code: 'AccessDenied' });
    expect(chain.sts.assumeRoleRequests.slice(before).map((r) => r.roleArn)).toEqual([TARGET]);
    expect(d!.logs.some((l) => l.includes('hop 1') && l.includes(TARGET) && l.includes('AccessDenied'))).toBe(true);
  });

  it('a reload that gives a hop a wrong ExternalId keeps the previous chain serving', async () => {
    await start([{ roleArn: TARGET, externalId: EXTERNAL_ID }]);
    const good = await imdsDocument('security-credentials/app');
    const file = join(chain.dir, 'reload-wrong-external-id.json');
    const common = { roleArn: HUB, tokenFile: chain.tokenFile, region: 'us-east-1', stsEndpoint: chain.sts.url };
    await writeFile(file, JSON.stringify({ roles: [{ name: 'app', ...common, chain: [{ roleArn: TARGET, externalId: 'not-the-one' }] }] }));
    const summary = await d!.daemon.reload(loadConfig({ flags: { config: file, listen: ['127.0.0.1:0'], 'admin-listen': '127.0.0.1:0' }, env: {} }));
    expect(summary.keptPrevious).toEqual(['app (AccessDenied)']);
    expect(summary.replaced).toEqual([]);
    const view = await viewEndpoints(d!);
    expect(view.imds.status).toBe(200);
    expect(JSON.parse(view.imds.text)['AccessKeyId']).toBe(good['AccessKeyId']);
    expect(view.readyz.status).toBe(200);
  });

  it('the second hop failing while the first succeeds: last-good credentials served while valid, then 503', async () => {
    await start([{ roleArn: TARGET, externalId: EXTERNAL_ID }, { roleArn: THIRD }]);
    const good = await imdsDocument('security-credentials/app');
    chain.sts.failAlwaysAssumeRole({ kind: 'error', status: 503, code: 'ServiceUnavailable' });
    // Past the refresh point but before expiry: still the last good credentials.
    await clock.advanceSettling(50 * MINUTE, busy);
    const during = await viewEndpoints(d!);
    expect(during.imds.status).toBe(200);
    expect(JSON.parse(during.imds.text)['AccessKeyId']).toBe(good['AccessKeyId']);
    expect(d!.daemon.roles.get('app')!.cache.status().consecutiveFailures).toBeGreaterThan(0);
    // Past expiry: never served expired.
    await clock.advanceSettling(15 * MINUTE, busy);
    const after = await viewEndpoints(d!);
    expect(after.imds.status).toBe(503);
    expect(after.readyz.body.roles[0]!.lastError).toMatchObject({ kind: 'retryable', code: 'ServiceUnavailable' });
    chain.sts.heal();
    await clock.advanceSettling(10 * MINUTE, busy);
    expect((await viewEndpoints(d!)).imds.status).toBe(200);
  });

  it("the hub's credentials expiring mid-chain: the hop's ExpiredToken renews the chain from its first step, at once", async () => {
    await start([{ roleArn: TARGET, externalId: EXTERNAL_ID, durationSeconds: 900 }], { durationSeconds: 3600 });
    const hub = chain.sts.issued.findLast((c) => c.roleArn === HUB)!;
    const webBefore = chain.sts.requests.length;
    // STS ends the hub session early (revoked, or its clock ahead): crosscred still thinks it has 45 minutes.
    expect(chain.sts.expireCredentials((c) => c.accessKeyId === hub.accessKeyId)).toBe(1);
    const failuresBefore = chain.sts.assumeRoleRequests.length;
    await clock.advanceSettling(12 * MINUTE, busy);
    const calls = chain.sts.assumeRoleRequests.slice(failuresBefore);
    expect(calls[0]!.callerAccessKeyId).toBe(hub.accessKeyId);
    expect(chain.sts.requests.length - webBefore).toBe(1);
    const newHub = chain.sts.issued.findLast((c) => c.roleArn === HUB)!;
    expect(newHub.accessKeyId).not.toBe(hub.accessKeyId);
    expect(calls[1]!.callerAccessKeyId).toBe(newHub.accessKeyId);
    const view = await viewEndpoints(d!);
    expect(view.imds.status).toBe(200);
    expect(view.readyz.body.roles[0]!.consecutiveFailures).toBe(0);
  });

  it('a hub session revoked after use (AccessDenied where it was accepted before) is renewed from the first step, once', async () => {
    await start([{ roleArn: TARGET, externalId: EXTERNAL_ID, durationSeconds: 900 }], { durationSeconds: 3600 });
    const hub = chain.sts.issued.findLast((c) => c.roleArn === HUB)!;
    const webBefore = chain.sts.requests.length;
    const hopsBefore = chain.sts.assumeRoleRequests.length;
    // IAM's "revoke active sessions" is an explicit deny on sessions issued before a time.
    chain.sts.failNextAssumeRole({ kind: 'error', status: 403, code: 'AccessDenied' });
    await clock.advanceSettling(12 * MINUTE, busy);
    const hops = chain.sts.assumeRoleRequests.slice(hopsBefore);
    expect(hops[0]!.callerAccessKeyId).toBe(hub.accessKeyId);
    expect(chain.sts.requests.length - webBefore).toBe(1);
    expect(hops[1]!.callerAccessKeyId).toBe(chain.sts.issued.findLast((c) => c.roleArn === HUB)!.accessKeyId);
    expect(hops[1]!.callerAccessKeyId).not.toBe(hub.accessKeyId);
    expect((await viewEndpoints(d!)).readyz.body.roles[0]!.consecutiveFailures).toBe(0);
  });

  it('a template the token cannot fill is a terminal, coded error', async () => {
    await start([{ roleArn: TARGET, externalId: EXTERNAL_ID, tags: { instance: '{instance}' } }]);
    const view = await viewEndpoints(d!);
    expect(view.imds.status).toBe(503);
    expect(view.readyz.body.roles[0]!.lastError).toMatchObject({ kind: 'terminal', code: 'CROSSCRED_ERR_SESSION_TEMPLATE_UNRESOLVED' });
  });

  it('no hop secret, session token or policy document reaches a log line', async () => {
    await start([{ roleArn: TARGET, externalId: EXTERNAL_ID, policy: POLICY }, { roleArn: THIRD }], { policy: POLICY }, { 'log-level': 'trace' } as ServeFlags);
    chain.sts.failNextAssumeRole({ kind: 'error', status: 403, code: 'AccessDenied', message: 'echo Statement s3:GetObject' });
    await clock.advanceSettling(70 * MINUTE, busy);
    // What the daemon holds and serves after the refreshes: the last hop's secret and session token.
    const served = await imdsDocument('security-credentials/app');
    const log = d!.logs.join('\n');
    expect(log.length).toBeGreaterThan(0);
    for (const secret of [served['SecretAccessKey'], served['Token']]) {
      expect(typeof secret === 'string' && secret.length > 20).toBe(true);
      expect(log).not.toContain(secret as string);
    }
    expect(log).not.toContain(await readFile(chain.tokenFile, 'utf8'));
    expect(log).not.toContain('s3:GetObject');
    expect(log).not.toContain('reports/*');
    expect(log).not.toContain('Statement');
  });
});
