import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Chain, type DaemonProcess, REPO_ROOT, roleArn, spawnDaemon, startChain, waitUntilReady } from '../support/chain.js';
import { buildGoClients, clientEnv, goClientsAvailable, runClient } from '../support/clients.js';

/**
 * The AWS SDKs for Go v1 (1.44) and v2 (1.17), built offline from Debian's packages. Go is the
 * strictest IMDS client: it requires the TTL header echoed on the token PUT and `Code: Success`.
 * Neither reads AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, only the token value.
 */
let available = false;
let binDir: string;
let chain: Chain;
let daemon: DaemonProcess | undefined;
let key: string;
let secret: string;

beforeAll(async () => {
  // The Go toolchain, and the SDK sources Debian installs under GOPATH (checked with test(1)).
  available = await goClientsAvailable();
  if (!available) return;
  binDir = await mkdtemp(join(tmpdir(), 'crosscred-go-'));
  await buildGoClients(REPO_ROOT, binDir);
  chain = await startChain();
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
    join(chain.dir, 'auth'),
  ]);
  await waitUntilReady(daemon.admin);
  key = chain.sts.issued[0]!.accessKeyId;
  secret = await readFile(join(chain.dir, 'auth'), 'utf8');
}, 240_000);

afterAll(async () => {
  if (daemon) expect(await daemon.stop()).toBe(0);
  await chain?.close();
  if (binDir) await rm(binDir, { recursive: true, force: true });
});

describe.each([
  ['v1', 'EC2RoleProvider', 'CredentialsEndpointProvider', 'provider'],
  ['v2', 'EC2RoleProvider', 'CredentialsEndpointProvider', 'source'],
] as const)('AWS SDK for Go %s', (version, imdsProvider, containerProvider, field) => {
  it('gets the credentials over IMDSv2', async (ctx) => {
    if (!available) ctx.skip("go and Debian's aws-sdk-go packages are not installed");
    const env = clientEnv(chain.dir, { AWS_EC2_METADATA_SERVICE_ENDPOINT: `${daemon!.listeners[0]}/`, AWS_REGION: 'us-east-1' });
    const out = JSON.parse(await runClient(join(binDir, `go-sdk-${version}`), [], env)) as Record<string, string>;
    expect(out[field]).toBe(imdsProvider);
    expect(out['accessKeyId']).toBe(key);
  });

  it('gets the credentials from the container endpoint', async (ctx) => {
    if (!available) ctx.skip("go and Debian's aws-sdk-go packages are not installed");
    const env = clientEnv(chain.dir, {
      AWS_CONTAINER_CREDENTIALS_FULL_URI: `${daemon!.listeners[0]}/v1/credentials`,
      AWS_CONTAINER_AUTHORIZATION_TOKEN: secret,
      AWS_REGION: 'us-east-1',
    });
    const out = JSON.parse(await runClient(join(binDir, `go-sdk-${version}`), [], env)) as Record<string, string>;
    expect(out[field]).toBe(containerProvider);
    expect(out['accessKeyId']).toBe(key);
  });
});
