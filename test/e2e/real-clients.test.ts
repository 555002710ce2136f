import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Chain, CLI_ARGS, CLI_EXEC, type DaemonProcess, REPO_ROOT, roleArn, spawnDaemon, startChain, waitUntilReady } from '../support/chain.js';
import { CLIENTS, clientAvailable, clientEnv, runClient } from '../support/clients.js';

/**
 * Unmodified AWS clients, configured only by the environment variables an application would set,
 * against the real `crosscred serve` binary. The STS behind it is the emulator (it verifies the
 * token); the moto test in moto-sts.test.ts puts an STS we did not write behind it.
 */
const JS_CLIENT = join(REPO_ROOT, 'test/e2e/clients/js-sdk-credentials.mjs');
const BOTOCORE_CLIENT = join(REPO_ROOT, 'test/e2e/clients/botocore-credentials.py');

let chain: Chain;
let daemon: DaemonProcess;
let home: string;
let authFile: string;
let secret: string;
let imdsEnv: Record<string, string>;
let containerEnv: Record<string, string>;

beforeAll(async () => {
  chain = await startChain();
  home = await mkdtemp(join(tmpdir(), 'crosscred-client-home-'));
  authFile = join(chain.dir, 'auth-token');
  daemon = await spawnDaemon([
    '--listen',
    '127.0.0.1:0',
    '--role-arn',
    roleArn('app'),
    '--token-file',
    chain.tokenFile,
    '--region',
    'us-east-1',
    '--sts-endpoint',
    chain.sts.url,
    '--auth-token-file',
    authFile,
  ]);
  secret = await readFile(authFile, 'utf8');
  await waitUntilReady(daemon.admin);
  expect(chain.sts.issued).toHaveLength(1);
  daemonKey = chain.sts.issued[0]!.accessKeyId;
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

let daemonKey: string;
/** The access key the daemon serves: the one the emulator issued for its first exchange. */
function servedKey(): string {
  return daemonKey;
}

describe('AWS SDK for JavaScript v3', () => {
  it('fromInstanceMetadata gets the credentials over IMDSv2', async () => {
    const out = JSON.parse(await runClient(process.execPath, [JS_CLIENT, 'instance-metadata'], clientEnv(home, imdsEnv))) as Record<string, string>;
    expect(out['accessKeyId']).toBe(servedKey());
    expect(out['sessionToken']!.length).toBeGreaterThan(100);
    expect(Date.parse(out['expiration']!)).toBeGreaterThan(Date.now() + 50 * 60_000);
  });

  it('fromHttp gets them from the container endpoint with AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE', async () => {
    const out = JSON.parse(await runClient(process.execPath, [JS_CLIENT, 'http'], clientEnv(home, containerEnv))) as Record<string, string>;
    expect(out['accessKeyId']).toBe(servedKey());
  });

  it('fromNodeProviderChain finds them through IMDS and through the container endpoint', async () => {
    for (const env of [imdsEnv, containerEnv]) {
      const out = JSON.parse(await runClient(process.execPath, [JS_CLIENT, 'node-provider-chain'], clientEnv(home, env))) as Record<string, string>;
      expect(out['accessKeyId']).toBe(servedKey());
    }
  });
});

describe('AWS CLI v2 (Debian awscli)', () => {
  let available = false;
  beforeAll(async () => {
    available = await clientAvailable(CLIENTS.awsCliV2);
  });

  it('exports the credentials it got from IMDS', async (ctx) => {
    if (!available) ctx.skip('/usr/bin/aws (apt-get install awscli) is not installed');
    const out = JSON.parse(await runClient(CLIENTS.awsCliV2, ['configure', 'export-credentials', '--format', 'process'], clientEnv(home, imdsEnv))) as Record<
      string,
      string
    >;
    expect(out['AccessKeyId']).toBe(servedKey());
    expect(out['Version']).toBe(1);
  });

  it('exports the credentials it got from the container endpoint (CLI 2.9 reads only the token variable)', async (ctx) => {
    if (!available) ctx.skip('/usr/bin/aws (apt-get install awscli) is not installed');
    const env = clientEnv(home, {
      AWS_CONTAINER_CREDENTIALS_FULL_URI: containerEnv['AWS_CONTAINER_CREDENTIALS_FULL_URI']!,
      AWS_CONTAINER_AUTHORIZATION_TOKEN: secret,
    });
    const out = JSON.parse(await runClient(CLIENTS.awsCliV2, ['configure', 'export-credentials', '--format', 'process'], env)) as Record<string, string>;
    expect(out['AccessKeyId']).toBe(servedKey());
  });

  it('runs crosscred credential-process from ~/.aws/config, against the daemon and by exchanging itself', async (ctx) => {
    if (!available) ctx.skip('/usr/bin/aws (apt-get install awscli) is not installed');
    const configFile = join(home, 'credential-process-config');
    const crosscred = [CLI_EXEC, ...CLI_ARGS].join(' ');
    await writeFile(
      configFile,
      `[profile daemon]
credential_process = ${crosscred} credential-process --endpoint ${daemon.listeners[0]}/v1/credentials --auth-token-file ${authFile}

[profile exchange]
credential_process = ${crosscred} credential-process --role-arn ${roleArn('app')} --token-file ${chain.tokenFile} --region us-east-1 --sts-endpoint ${chain.sts.url}
`,
    );
    const env = { ...clientEnv(home, {}), AWS_CONFIG_FILE: configFile };
    const fromDaemon = JSON.parse(await runClient(CLIENTS.awsCliV2, ['configure', 'export-credentials', '--profile', 'daemon'], env)) as Record<string, string>;
    expect(fromDaemon['AccessKeyId']).toBe(servedKey());
    const issuedBefore = chain.sts.issued.length;
    const byExchange = JSON.parse(await runClient(CLIENTS.awsCliV2, ['configure', 'export-credentials', '--profile', 'exchange'], env)) as Record<
      string,
      string
    >;
    expect(chain.sts.issued.length).toBe(issuedBefore + 1);
    expect(byExchange['AccessKeyId']).toBe(chain.sts.issued.at(-1)!.accessKeyId);
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

      it('gets the credentials from IMDS (method iam-role)', async (ctx) => {
        if (!available) ctx.skip(`${python} cannot import botocore`);
        const out = JSON.parse(await runClient(python, [BOTOCORE_CLIENT], clientEnv(home, imdsEnv))) as Record<string, string>;
        expect(out['method']).toBe('iam-role');
        expect(out['accessKeyId']).toBe(servedKey());
      });

      it('gets the credentials from the container endpoint (method container-role)', async (ctx) => {
        if (!available) ctx.skip(`${python} cannot import botocore`);
        // botocore 1.29 predates AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE; it reads the token variable.
        const env = supportsTokenFile
          ? containerEnv
          : { AWS_CONTAINER_CREDENTIALS_FULL_URI: containerEnv['AWS_CONTAINER_CREDENTIALS_FULL_URI']!, AWS_CONTAINER_AUTHORIZATION_TOKEN: secret };
        const out = JSON.parse(await runClient(python, [BOTOCORE_CLIENT], clientEnv(home, env))) as Record<string, string>;
        expect(out['method']).toBe('container-role');
        expect(out['accessKeyId']).toBe(servedKey());
      });
    });
  }
});
