import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Chain, type DaemonProcess, roleArn, spawnDaemon, startChain, waitUntilReady } from '../support/chain.js';
import { CLIENTS, clientAvailable, clientEnv, runClient } from '../support/clients.js';
import { startMoto } from '../support/moto.js';

/**
 * An STS we did not write: moto_server. crosscred exchanges the token at moto, serves what moto
 * issued, and the AWS CLI then calls moto's GetCallerIdentity with the credentials it got from
 * crosscred. moto verifies no token (any JWT is accepted), so this proves wire compatibility of the
 * exchange and of the served credentials; the emulator's tests prove the verification.
 */
let available = false;
let moto: { url: string; close(): void } | undefined;
let motoUrl = '';
let chain: Chain;
let daemon: DaemonProcess | undefined;
let home: string;

beforeAll(async () => {
  moto = await startMoto();
  available = moto !== undefined;
  if (!moto) return;
  motoUrl = moto.url;
  chain = await startChain();
  home = await mkdtemp(join(tmpdir(), 'crosscred-moto-home-'));
  daemon = await spawnDaemon(
    [
      '--listen',
      '127.0.0.1:0',
      '--role-arn',
      roleArn('moto-app'),
      '--role-session-name',
      'crosscred-e2e',
      '--token-file',
      chain.tokenFile,
      '--region',
      'us-east-1',
      '--sts-endpoint',
      motoUrl,
      '--auth-token-file',
      join(chain.dir, 'auth'),
    ],
    { AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '' },
  );
  await waitUntilReady(daemon.admin);
}, 90_000);

afterAll(async () => {
  if (daemon) expect(await daemon.stop()).toBe(0);
  moto?.close();
  await chain?.close();
  if (home) await rm(home, { recursive: true, force: true });
});

describe('against moto_server as STS', () => {
  it('AWS CLI v2 calls sts get-caller-identity with the credentials served over IMDS', async (ctx) => {
    if (!available) ctx.skip('moto_server is not installed');
    if (!(await clientAvailable(CLIENTS.awsCliV2))) ctx.skip('/usr/bin/aws (apt-get install awscli) is not installed');
    const env = clientEnv(home, { AWS_EC2_METADATA_SERVICE_ENDPOINT: `${daemon!.listeners[0]}/`, AWS_DEFAULT_REGION: 'us-east-1' });
    const out = JSON.parse(await runClient(CLIENTS.awsCliV2, ['sts', 'get-caller-identity', '--endpoint-url', motoUrl, '--output', 'json'], env)) as Record<
      string,
      string
    >;
    expect(out['Arn']).toBe('arn:aws:sts::111122223333:assumed-role/moto-app/crosscred-e2e');
    expect(out['Account']).toBe('111122223333');
  });

  it('AWS CLI v1 does the same through the container endpoint', async (ctx) => {
    if (!available) ctx.skip('moto_server is not installed');
    if (!(await clientAvailable(CLIENTS.awsCliV1))) ctx.skip("the image's AWS CLI v1 is not installed");
    const secret = await readFile(join(chain.dir, 'auth'), 'utf8');
    const env = clientEnv(home, {
      AWS_CONTAINER_CREDENTIALS_FULL_URI: `${daemon!.listeners[0]}/v1/credentials`,
      AWS_CONTAINER_AUTHORIZATION_TOKEN: secret,
      AWS_DEFAULT_REGION: 'us-east-1',
    });
    const out = JSON.parse(await runClient(CLIENTS.awsCliV1, ['sts', 'get-caller-identity', '--endpoint-url', motoUrl, '--output', 'json'], env)) as Record<
      string,
      string
    >;
    expect(out['Arn']).toBe('arn:aws:sts::111122223333:assumed-role/moto-app/crosscred-e2e');
  });
});

describe('crosscred trust-policy output, given to IAM (moto)', () => {
  it('registers the provider with the printed command and creates a role with the printed policy', async (ctx) => {
    if (!available) ctx.skip('moto_server is not installed');
    if (!(await clientAvailable(CLIENTS.awsCliV1))) ctx.skip("the image's AWS CLI v1 is not installed");
    const { crosscred } = await import('../support/run-cli.js');
    const printed = await crosscred(['trust-policy', '--format', 'json', '--role-arn', roleArn('trusting'), '--token-file', chain.tokenFile], { HOME: home });
    expect(printed.code).toBe(0);
    const advice = JSON.parse(printed.stdout) as { createProviderCommand: string[]; oidcProvider: { arn: string }; trustPolicy: unknown };
    // moto accepts any well-formed request here; this proves the printed command and JSON are what the CLI and IAM's API take.
    const env = clientEnv(home, { AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing', AWS_DEFAULT_REGION: 'us-east-1' });
    const [cli, ...args] = advice.createProviderCommand;
    expect(cli).toBe('aws');
    const created = JSON.parse(await runClient(CLIENTS.awsCliV1, [...args, '--endpoint-url', motoUrl, '--output', 'json'], env)) as {
      OpenIDConnectProviderArn: string;
    };
    expect(created.OpenIDConnectProviderArn.replace(/:\d{12}:/, ':111122223333:')).toBe(advice.oidcProvider.arn);
    const role = JSON.parse(
      await runClient(
        CLIENTS.awsCliV1,
        [
          'iam',
          'create-role',
          '--role-name',
          'trusting',
          '--assume-role-policy-document',
          JSON.stringify(advice.trustPolicy),
          '--endpoint-url',
          motoUrl,
          '--output',
          'json',
        ],
        env,
      ),
    ) as { Role: { AssumeRolePolicyDocument: unknown } };
    expect(role.Role.AssumeRolePolicyDocument).toEqual(advice.trustPolicy);
  });
});
