import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { roleArn, spawnDaemon, startChain, waitUntilReady, type Chain, type DaemonProcess } from '../support/chain.js';
import { clientAvailable, clientEnv, CLIENTS, runClient } from '../support/clients.js';

/**
 * An STS we did not write: moto_server. crosscred exchanges the token at moto, serves what moto
 * issued, and the AWS CLI then calls moto's GetCallerIdentity with the credentials it got from
 * crosscred. moto verifies no token (any JWT is accepted), so this proves wire compatibility of the
 * exchange and of the served credentials; the emulator's tests prove the verification.
 */
let available = false;
let moto: ChildProcess | undefined;
let motoUrl = '';
let chain: Chain;
let daemon: DaemonProcess | undefined;
let home: string;

beforeAll(async () => {
  available = await clientAvailable(CLIENTS.motoServer, ['--help']);
  if (!available) return;
  chain = await startChain();
  home = await mkdtemp(join(tmpdir(), 'crosscred-moto-home-'));
  const port = await freePort();
  moto = spawn(CLIENTS.motoServer, ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  motoUrl = `http://127.0.0.1:${port}`;
  await waitForHttp(motoUrl, 30_000);
  daemon = await spawnDaemon(
    ['--listen', '127.0.0.1:0', '--role-arn', roleArn('moto-app'), '--role-session-name', 'crosscred-e2e', '--token-file', chain.tokenFile, '--region', 'us-east-1', '--sts-endpoint', motoUrl, '--auth-token-file', join(chain.dir, 'auth')],
    { AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '' },
  );
  await waitUntilReady(daemon.admin);
}, 90_000);

afterAll(async () => {
  if (daemon) expect(await daemon.stop()).toBe(0);
  moto?.kill('SIGTERM');
  await chain?.close();
  if (home) await rm(home, { recursive: true, force: true });
});

describe('against moto_server as STS', () => {
  it('AWS CLI v2 calls sts get-caller-identity with the credentials served over IMDS', async (ctx) => {
    if (!available) ctx.skip('moto_server is not installed');
    if (!(await clientAvailable(CLIENTS.awsCliV2))) ctx.skip('/usr/bin/aws (apt-get install awscli) is not installed');
    const env = clientEnv(home, { AWS_EC2_METADATA_SERVICE_ENDPOINT: `${daemon!.listeners[0]}/`, AWS_DEFAULT_REGION: 'us-east-1' });
    const out = JSON.parse(await runClient(CLIENTS.awsCliV2, ['sts', 'get-caller-identity', '--endpoint-url', motoUrl, '--output', 'json'], env)) as Record<string, string>;
    expect(out['Arn']).toBe('arn:aws:sts::111122223333:assumed-role/moto-app/crosscred-e2e');
    expect(out['Account']).toBe('111122223333');
  });

  it('AWS CLI v1 does the same through the container endpoint', async (ctx) => {
    if (!available) ctx.skip('moto_server is not installed');
    if (!(await clientAvailable(CLIENTS.awsCliV1))) ctx.skip('the image\'s AWS CLI v1 is not installed');
    const secret = await readFile(join(chain.dir, 'auth'), 'utf8');
    const env = clientEnv(home, { AWS_CONTAINER_CREDENTIALS_FULL_URI: `${daemon!.listeners[0]}/v1/credentials`, AWS_CONTAINER_AUTHORIZATION_TOKEN: secret, AWS_DEFAULT_REGION: 'us-east-1' });
    const out = JSON.parse(await runClient(CLIENTS.awsCliV1, ['sts', 'get-caller-identity', '--endpoint-url', motoUrl, '--output', 'json'], env)) as Record<string, string>;
    expect(out['Arn']).toBe('arn:aws:sts::111122223333:assumed-role/moto-app/crosscred-e2e');
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await request(url);
      await res.body.dump();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
