import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCOUNT, type Chain, type DaemonProcess, REPO_ROOT, roleArn, spawnDaemon, startChain, waitUntilReady } from '../support/chain.js';
import { CLIENTS, clientAvailable, clientEnv, runClient } from '../support/clients.js';

/**
 * Role chains (#18) as unmodified AWS clients see them: the real `crosscred serve` binary, given a
 * config file whose role chains from the web-identity hub (account 111122223333) to a target role
 * in another account (with an ExternalId) and from there to a third role in a third account. The
 * STS emulator verifies each hop's signature against the keys it issued to the step before, so a
 * client holding the last hop's key proves the whole chain ran; none may ever see the hub's.
 */
const JS_CLIENT = join(REPO_ROOT, 'test/e2e/clients/js-sdk-credentials.mjs');
const BOTOCORE_CLIENT = join(REPO_ROOT, 'test/e2e/clients/botocore-credentials.py');
/**
 * botocore 1.4x keeps the container document's AccountId as the credentials' account_id (1.29
 * has no such field): the account a client reads, not just the one the document carries.
 */
const BOTOCORE_ACCOUNT_ID = `import json, botocore.session
frozen = botocore.session.get_session().get_credentials().get_frozen_credentials()
print(json.dumps({"accessKeyId": frozen.access_key, "accountId": frozen.account_id}))`;

const TARGET_ACCOUNT = '444455556666';
const THIRD_ACCOUNT = '777788889999';
const HUB = roleArn('hub');
const TARGET = `arn:aws:iam::${TARGET_ACCOUNT}:role/deploy`;
const THIRD = `arn:aws:iam::${THIRD_ACCOUNT}:role/reader`;
/** The served name when the config names none: the last segment of the last hop's ARN. */
const SERVED_ROLE = 'reader';
const EXTERNAL_ID = 'crosscred-e2e-external-id';

let chain: Chain;
let daemon: DaemonProcess;
let home: string;
let authFile: string;
let secret: string;
let imdsEnv: Record<string, string>;
let containerEnv: Record<string, string>;
/** The access keys STS issued for each step, in the order the chain ran. */
let keys: { hub: string; target: string; third: string };

beforeAll(async () => {
  chain = await startChain({
    roles: ['hub'],
    assumeRoleTrust: [
      { roleArn: TARGET, principal: HUB, externalId: EXTERNAL_ID },
      { roleArn: THIRD, principal: TARGET },
    ],
  });
  home = await mkdtemp(join(tmpdir(), 'crosscred-client-home-'));
  authFile = join(chain.dir, 'auth-token');
  const configFile = join(chain.dir, 'chained.json');
  await writeFile(
    configFile,
    JSON.stringify({
      roles: [
        {
          roleArn: HUB,
          tokenFile: chain.tokenFile,
          region: 'us-east-1',
          stsEndpoint: chain.sts.url,
          chain: [{ roleArn: TARGET, externalId: EXTERNAL_ID }, { roleArn: THIRD }],
        },
      ],
    }),
  );
  daemon = await spawnDaemon(['--config', configFile, '--listen', '127.0.0.1:0', '--auth-token-file', authFile]);
  secret = await readFile(authFile, 'utf8');
  await waitUntilReady(daemon.admin);
  keys = issuedKeys();
  const base = daemon.listeners[0]!;
  // With the trailing slash: AWS CLI 2.9's botocore appends "latest/api/token" without one.
  imdsEnv = { AWS_EC2_METADATA_SERVICE_ENDPOINT: `${base}/` };
  containerEnv = { AWS_CONTAINER_CREDENTIALS_FULL_URI: `${base}/v1/credentials`, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: authFile };
});
afterAll(async () => {
  if (daemon) expect(await daemon.stop()).toBe(0);
  await chain?.close();
  if (home) await rm(home, { recursive: true, force: true });
});

/** The one web-identity exchange and the two hops the daemon made to get ready, checked in order. */
function issuedKeys(): { hub: string; target: string; third: string } {
  expect(chain.sts.issued.map((c) => [c.action, c.roleArn])).toEqual([
    ['AssumeRoleWithWebIdentity', HUB],
    ['AssumeRole', TARGET],
    ['AssumeRole', THIRD],
  ]);
  const [hub, target, third] = chain.sts.issued.map((c) => c.accessKeyId) as [string, string, string];
  return { hub, target, third };
}

/** What a client must report: the last hop's key, which is neither the hub's nor the middle hop's. */
function expectLastHopKey(accessKeyId: string | undefined): void {
  expect(accessKeyId).toBe(keys.third);
  expect(accessKeyId).not.toBe(keys.hub);
  expect(accessKeyId).not.toBe(keys.target);
}

/** An IMDSv2 GET under /latest/meta-data/iam/, after the token PUT, as the SDKs do it. */
async function imdsGet(path: string): Promise<{ status: number; text: string }> {
  const base = daemon.listeners[0]!;
  const tokenRes = await request(`${base}/latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '60' } });
  const token = await tokenRes.body.text();
  const res = await request(`${base}/latest/meta-data/iam/${path}`, { headers: { 'x-aws-ec2-metadata-token': token } });
  return { status: res.statusCode, text: await res.body.text() };
}

describe('the chain behind the daemon', () => {
  it('signed each hop with the keys of the step before, with the target ExternalId', () => {
    expect(chain.sts.assumeRoleRequests.map((r) => [r.roleArn, r.callerAccessKeyId, r.externalId])).toEqual([
      [TARGET, keys.hub, EXTERNAL_ID],
      [THIRD, keys.target, null],
    ]);
  });
});

describe('the documents name the last hop', () => {
  it("IMDS's security-credentials/ lists the role under the last hop's role name", async () => {
    const listing = await imdsGet('security-credentials/');
    expect(listing.status).toBe(200);
    expect(listing.text.split('\n').filter(Boolean)).toEqual([SERVED_ROLE]);
  });

  it("security-credentials-extended/<role> carries the last hop's key and account", async () => {
    const extended = await imdsGet(`security-credentials-extended/${SERVED_ROLE}`);
    expect(extended.status).toBe(200);
    const doc = JSON.parse(extended.text) as Record<string, string>;
    expectLastHopKey(doc['AccessKeyId']);
    expect(doc['AccountId']).toBe(THIRD_ACCOUNT);
    expect(doc['AccountId']).not.toBe(ACCOUNT);
  });

  it("the container JSON carries the last hop's key, account and role ARN", async () => {
    const res = await request(`${daemon.listeners[0]}/v1/credentials`, { headers: { authorization: secret } });
    expect(res.statusCode).toBe(200);
    const doc = (await res.body.json()) as Record<string, string>;
    expectLastHopKey(doc['AccessKeyId']);
    expect(doc['AccountId']).toBe(THIRD_ACCOUNT);
    expect(doc['RoleArn']).toBe(THIRD);
  });
});

describe('AWS SDK for JavaScript v3', () => {
  it("fromInstanceMetadata gets the last hop's credentials over IMDSv2", async () => {
    const out = JSON.parse(await runClient(process.execPath, [JS_CLIENT, 'instance-metadata'], clientEnv(home, imdsEnv))) as Record<string, string>;
    expectLastHopKey(out['accessKeyId']);
    expect(out['sessionToken']!.length).toBeGreaterThan(100);
    // AWS caps a chained session at one hour; the emulator issues exactly that.
    expect(Date.parse(out['expiration']!)).toBeGreaterThan(Date.now() + 50 * 60_000);
  });

  it("fromHttp gets the last hop's credentials from the container endpoint", async () => {
    const out = JSON.parse(await runClient(process.execPath, [JS_CLIENT, 'http'], clientEnv(home, containerEnv))) as Record<string, string>;
    expectLastHopKey(out['accessKeyId']);
  });

  it('fromNodeProviderChain finds them through IMDS and through the container endpoint', async () => {
    for (const env of [imdsEnv, containerEnv]) {
      const out = JSON.parse(await runClient(process.execPath, [JS_CLIENT, 'node-provider-chain'], clientEnv(home, env))) as Record<string, string>;
      expectLastHopKey(out['accessKeyId']);
    }
  });
});

describe('AWS CLI v2 (Debian awscli)', () => {
  let available = false;
  beforeAll(async () => {
    available = await clientAvailable(CLIENTS.awsCliV2);
  });

  it("exports the last hop's credentials it got from IMDS", async (ctx) => {
    if (!available) ctx.skip('/usr/bin/aws (apt-get install awscli) is not installed');
    const out = JSON.parse(await runClient(CLIENTS.awsCliV2, ['configure', 'export-credentials', '--format', 'process'], clientEnv(home, imdsEnv))) as Record<
      string,
      string
    >;
    expectLastHopKey(out['AccessKeyId']);
    expect(out['Version']).toBe(1);
  });

  it("exports the last hop's credentials it got from the container endpoint (CLI 2.9 reads only the token variable)", async (ctx) => {
    if (!available) ctx.skip('/usr/bin/aws (apt-get install awscli) is not installed');
    const env = clientEnv(home, {
      AWS_CONTAINER_CREDENTIALS_FULL_URI: containerEnv['AWS_CONTAINER_CREDENTIALS_FULL_URI']!,
      AWS_CONTAINER_AUTHORIZATION_TOKEN: secret,
    });
    const out = JSON.parse(await runClient(CLIENTS.awsCliV2, ['configure', 'export-credentials', '--format', 'process'], env)) as Record<string, string>;
    expectLastHopKey(out['AccessKeyId']);
  });
});

describe('botocore', () => {
  for (const [label, python, supportsTokenFile] of [
    ['botocore 1.4x (pyenv)', CLIENTS.pyenvPython, true],
    ['botocore 1.29 (Debian python3-botocore)', CLIENTS.debianPython, false],
  ] as const) {
    describe(label, () => {
      let available = false;
      beforeAll(async () => {
        available = await clientAvailable(python, ['-c', 'import botocore']);
      });
      // botocore 1.29 predates AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE; it reads the token variable.
      const env = () =>
        supportsTokenFile
          ? containerEnv
          : { AWS_CONTAINER_CREDENTIALS_FULL_URI: containerEnv['AWS_CONTAINER_CREDENTIALS_FULL_URI']!, AWS_CONTAINER_AUTHORIZATION_TOKEN: secret };

      it("gets the last hop's credentials from IMDS (method iam-role)", async (ctx) => {
        if (!available) ctx.skip(`${python} cannot import botocore`);
        const out = JSON.parse(await runClient(python, [BOTOCORE_CLIENT], clientEnv(home, imdsEnv))) as Record<string, string>;
        expect(out['method']).toBe('iam-role');
        expectLastHopKey(out['accessKeyId']);
      });

      it("gets the last hop's credentials from the container endpoint (method container-role)", async (ctx) => {
        if (!available) ctx.skip(`${python} cannot import botocore`);
        const out = JSON.parse(await runClient(python, [BOTOCORE_CLIENT], clientEnv(home, env()))) as Record<string, string>;
        expect(out['method']).toBe('container-role');
        expectLastHopKey(out['accessKeyId']);
      });

      if (supportsTokenFile) {
        it("reads the last hop's account from the container JSON as the credentials' account_id", async (ctx) => {
          if (!available) ctx.skip(`${python} cannot import botocore`);
          const out = JSON.parse(await runClient(python, ['-c', BOTOCORE_ACCOUNT_ID], clientEnv(home, env()))) as Record<string, string>;
          expectLastHopKey(out['accessKeyId']);
          expect(out['accountId']).toBe(THIRD_ACCOUNT);
        });
      }
    });
  }
});
