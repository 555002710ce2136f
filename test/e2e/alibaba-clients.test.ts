import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/config.js';
import { AlibabaStsEmulator } from '../../src/demo/alibaba-sts-emulator.js';
import { DemoOidcIssuer } from '../../src/demo/oidc-issuer.js';
import { type RunningDaemon, startDaemon } from '../../src/serve/daemon.js';
import { CLI_ARGS, CLI_EXEC, memoryLogger, REPO_ROOT } from '../support/chain.js';
import { clientAvailable, clientEnv, runClient } from '../support/clients.js';

/**
 * Alibaba Cloud's own clients reading a RAM role's credentials from crosscred:
 * - @alicloud/credentials (2.4.7, the Node SDK's credential library), its default chain
 *   (`new Credential()` with no configuration), in a child process with a clean environment:
 *   (1) ALIBABA_CLOUD_CREDENTIALS_URI pointed at crosscred on loopback, with and without the path
 *   secret; (2) the ECS metadata server at 100.100.100.200:80 inside a network namespace, where
 *   `crosscred net-setup --alibaba-metadata` put the address and crosscred listens (the daemon
 *   runs there from dist/, as `npm test` builds it);
 * - aliyungo's metadata client (Debian's golang-github-denverdino-aliyungo-dev), a Go program
 *   built offline, which reads ECS metadata without a token (so against --allow-imdsv1).
 * Each checks that the keys the client got are the ones the STS emulator issued. Nothing leaves
 * the machine: the URI tests set ALIBABA_CLOUD_ECS_METADATA_DISABLED=true, so that the chain's ECS
 * step, which comes before the URI step, never reaches for 100.100.100.200.
 */
const run = promisify(execFile);
const ACCOUNT = '1234567890123456';
const ROLE_NAME = 'oss-reader';
const ROLE_ARN = `acs:ram::${ACCOUNT}:role/${ROLE_NAME}`;
const PROVIDER_ARN = `acs:ram::${ACCOUNT}:oidc-provider/eks-cluster`;
const AUDIENCE = 'sts.aliyuncs.com';
const SUBJECT = 'system:serviceaccount:payments:api';
const GO_PATH = '/usr/share/gocode';
const NS = `crosscred-ali-${process.pid}`;

let issuer: DemoOidcIssuer;
let sts: AlibabaStsEmulator;
let dir: string;
let tokenFile: string;
const daemons: RunningDaemon[] = [];

function config(options: { authTokenFile?: string; allowImdsV1?: boolean } = {}): Config {
  return {
    roles: [
      {
        cloud: 'alibaba',
        name: ROLE_NAME,
        roleArn: ROLE_ARN,
        accountId: ACCOUNT,
        oidcProviderArn: PROVIDER_ARN,
        vpcEndpoint: false,
        region: '',
        stsEndpoint: sts.url,
        sessionName: 'crosscred-e2e',
        token: { source: { kind: 'file', path: tokenFile, platform: 'configured' }, reason: 'test', notes: [] },
      },
    ],
    listeners: [{ host: '127.0.0.1', port: 0, role: ROLE_NAME }],
    admin: null,
    ...(options.authTokenFile ? { authTokenFile: options.authTokenFile } : {}),
    allowImdsV1: options.allowImdsV1 ?? false,
    imdsEnabled: true,
    allowedHosts: [],
    sts: { connectTimeoutMs: 5_000, responseTimeoutMs: 15_000 },
    logLevel: 'warn',
  };
}

/** A daemon in this process; resolves with its base URL and the AccessKeyId it serves (one the emulator issued). */
async function startServe(options: { authTokenFile?: string; allowImdsV1?: boolean } = {}): Promise<{ base: string; accessKeyId: string }> {
  const daemon = await startDaemon(config(options), { logger: memoryLogger().logger });
  daemons.push(daemon);
  await daemon.firstFetch;
  const current = daemon.roles.get(ROLE_NAME)!.cache.current();
  if (current?.credentials.cloud !== 'alibaba') throw new Error('the daemon has no Alibaba credentials');
  return { base: `http://127.0.0.1:${daemon.listeners[0]!.port}`, accessKeyId: current.credentials.accessKeyId };
}

/** What @alicloud/credentials' default chain returns, run in a child with a clean environment. */
const NODE_SDK_SCRIPT = `
  const Credential = require('@alicloud/credentials').default;
  new Credential().getCredential().then(
    (c) => process.stdout.write(JSON.stringify({ accessKeyId: c.accessKeyId, accessKeySecret: c.accessKeySecret, securityToken: c.securityToken, providerName: c.providerName })),
    (e) => { process.stderr.write(String(e && e.message)); process.exit(3); },
  );`;

async function nodeSdk(extraEnv: Record<string, string>, netns?: string): Promise<Record<string, string>> {
  const env = { ...clientEnv(dir, extraEnv), NODE_PATH: join(REPO_ROOT, 'node_modules') };
  const [command, args] = netns ? ['ip', ['netns', 'exec', netns, process.execPath, '-e', NODE_SDK_SCRIPT]] : [process.execPath, ['-e', NODE_SDK_SCRIPT]];
  return JSON.parse(await runClient(command, args as string[], env)) as Record<string, string>;
}

function issuedSecretOf(accessKeyId: string): string {
  const issued = sts.issued.find((i) => i.accessKeyId === accessKeyId);
  if (!issued) throw new Error(`${accessKeyId} was not issued by the emulator`);
  return issued.accessKeySecret;
}

beforeAll(async () => {
  issuer = await DemoOidcIssuer.start();
  sts = await AlibabaStsEmulator.start({
    trust: [{ roleArn: ROLE_ARN, oidcProviderArn: PROVIDER_ARN, issuer: issuer.url, audience: AUDIENCE, subject: SUBJECT }],
  });
  dir = await mkdtemp(join(tmpdir(), 'crosscred-alibaba-e2e-'));
  tokenFile = join(dir, 'token');
  await writeFile(`${tokenFile}.tmp`, await issuer.mint({ sub: SUBJECT, aud: AUDIENCE, ttlSeconds: 3600 }));
  await rename(`${tokenFile}.tmp`, tokenFile);
}, 30_000);

afterAll(async () => {
  await Promise.all(daemons.map((d) => d.close()));
  await Promise.all([sts?.close(), issuer?.close()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('@alicloud/credentials default chain, URI provider (ALIBABA_CLOUD_CREDENTIALS_URI)', () => {
  it('reads the credentials from a loopback listener without a secret', async () => {
    const { base, accessKeyId } = await startServe();
    const got = await nodeSdk({ ALIBABA_CLOUD_CREDENTIALS_URI: `${base}/v1/alibaba/credentials`, ALIBABA_CLOUD_ECS_METADATA_DISABLED: 'true' });
    expect(got.providerName).toBe('default/credential_uri');
    expect(got.accessKeyId).toBe(accessKeyId);
    expect(got.accessKeySecret).toBe(issuedSecretOf(accessKeyId));
    expect(got.securityToken).toBe(sts.issued.find((i) => i.accessKeyId === accessKeyId)!.securityToken);
  });

  it('reads them with the secret in the path when --auth-token-file is set, and gets nothing without it', async () => {
    const authTokenFile = join(dir, 'auth');
    const { base, accessKeyId } = await startServe({ authTokenFile });
    const secret = await readFile(authTokenFile, 'utf8');
    const got = await nodeSdk({
      ALIBABA_CLOUD_CREDENTIALS_URI: `${base}/v1/alibaba/credentials/${encodeURIComponent(secret)}`,
      ALIBABA_CLOUD_ECS_METADATA_DISABLED: 'true',
    });
    expect(got.accessKeyId).toBe(accessKeyId);
    for (const uri of [`${base}/v1/alibaba/credentials`, `${base}/v1/alibaba/credentials/${'x'.repeat(secret.length)}`]) {
      await expect(nodeSdk({ ALIBABA_CLOUD_CREDENTIALS_URI: uri, ALIBABA_CLOUD_ECS_METADATA_DISABLED: 'true' })).rejects.toThrow(/httpStatus: 40[13]/);
    }
  });
});

describe('@alicloud/credentials default chain, ECS metadata at 100.100.100.200 in a network namespace', () => {
  let unavailable: string | undefined;
  let child: ChildProcess | undefined;
  let served: { accessKeyId: string; accessKeySecret: string } | undefined;

  const netSetup = (action: 'up' | 'down') => run('ip', ['netns', 'exec', NS, CLI_EXEC, ...CLI_ARGS, 'net-setup', action, '--alibaba-metadata']);

  beforeAll(async () => {
    try {
      await run('ip', ['netns', 'add', NS]);
    } catch (err) {
      unavailable = `cannot create a network namespace here: ${String((err as { stderr?: string }).stderr ?? err).trim()}`;
      if (process.env['CROSSCRED_E2E_STRICT'] === '1') throw new Error(unavailable);
      return;
    }
    await run('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
    const { stdout } = await netSetup('up');
    expect(stdout).toContain('added 100.100.100.200/32');
    // The whole chain inside the namespace: issuer, STS emulator and daemon, from the build in dist/.
    const script = `
      const dist = ${JSON.stringify(join(REPO_ROOT, 'dist'))};
      const { DemoOidcIssuer } = await import(dist + '/demo/oidc-issuer.js');
      const { AlibabaStsEmulator } = await import(dist + '/demo/alibaba-sts-emulator.js');
      const { startDaemon } = await import(dist + '/serve/daemon.js');
      const { writeFile } = await import('node:fs/promises');
      const pino = (await import('pino')).default;
      const issuer = await DemoOidcIssuer.start();
      const sts = await AlibabaStsEmulator.start({ trust: [{ roleArn: ${JSON.stringify(ROLE_ARN)}, oidcProviderArn: ${JSON.stringify(PROVIDER_ARN)}, issuer: issuer.url, audience: ${JSON.stringify(AUDIENCE)}, subject: ${JSON.stringify(SUBJECT)} }] });
      const tokenFile = ${JSON.stringify(join(dir, 'ns-token'))};
      await writeFile(tokenFile, await issuer.mint({ sub: ${JSON.stringify(SUBJECT)}, aud: ${JSON.stringify(AUDIENCE)}, ttlSeconds: 3600 }));
      const config = ${JSON.stringify({ ...config(), listeners: [{ host: '100.100.100.200', port: 80, role: ROLE_NAME }] })};
      config.roles[0].stsEndpoint = sts.url;
      config.roles[0].token.source.path = tokenFile;
      const daemon = await startDaemon(config, { logger: pino({ level: 'warn' }, pino.destination(2)) });
      await daemon.firstFetch;
      const served = daemon.roles.get(${JSON.stringify(ROLE_NAME)}).cache.current();
      const issued = sts.issued.find((i) => i.accessKeyId === served?.credentials.accessKeyId);
      process.stdout.write('SERVING ' + JSON.stringify({ accessKeyId: issued.accessKeyId, accessKeySecret: issued.accessKeySecret }) + '\\n');
      process.on('SIGTERM', async () => { await daemon.close(); await sts.close(); await issuer.close(); process.exit(0); });`;
    child = spawn('ip', ['netns', 'exec', NS, process.execPath, '--input-type=module', '-e', script], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    served = await new Promise((resolve, reject) => {
      let out = '';
      let err = '';
      child!.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString('utf8');
        const line = /SERVING (\{.*\})\n/.exec(out);
        if (line) resolve(JSON.parse(line[1]!) as { accessKeyId: string; accessKeySecret: string });
      });
      child!.stderr!.on('data', (chunk: Buffer) => {
        err += chunk.toString('utf8');
      });
      child!.once('exit', (code) => reject(new Error(`the daemon in the namespace exited (${code}): ${err}`)));
    });
  }, 60_000);

  afterAll(async () => {
    if (unavailable) return;
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    try {
      const { stdout } = await netSetup('down');
      expect(stdout).toContain('removed 100.100.100.200/32');
    } finally {
      await run('ip', ['netns', 'del', NS]).catch(() => undefined);
    }
  }, 30_000);

  it('gets the RAM role credentials through the token (hardened) mode', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const got = await nodeSdk({}, NS);
    expect(got.providerName).toBe('default/ecs_ram_role');
    expect(got.accessKeyId).toBe(served!.accessKeyId);
    expect(got.accessKeySecret).toBe(served!.accessKeySecret);
  });

  it('net-setup refuses --alibaba-metadata with --node-agent (exit 2) and changes nothing', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const clash = await run('ip', ['netns', 'exec', NS, CLI_EXEC, ...CLI_ARGS, 'net-setup', 'up', '--alibaba-metadata', '--node-agent']).then(
      () => 0,
      (err: { code?: number }) => err.code,
    );
    expect(clash).toBe(2);
    const { stdout } = await run('ip', ['-n', NS, '-j', 'addr', 'show']);
    const addresses = (JSON.parse(stdout) as Array<{ addr_info?: Array<{ local: string }> }>).flatMap((l) => (l.addr_info ?? []).map((a) => a.local));
    expect(addresses).toContain('100.100.100.200');
    expect(addresses).not.toContain('169.254.170.23');
  });

  it('refuses a token-less read, as an instance with HttpTokens=required does', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const probe = `fetch('http://100.100.100.200/latest/meta-data/ram/security-credentials/${ROLE_NAME}').then((r) => process.stdout.write(String(r.status)))`;
    const { stdout } = await run('ip', ['netns', 'exec', NS, process.execPath, '-e', probe]);
    expect(stdout).toBe('401');
  });
});

describe("aliyungo's ECS metadata client (Go, Debian's golang-github-denverdino-aliyungo-dev)", () => {
  const program = `package main

import (
	"encoding/json"
	"os"

	"github.com/denverdino/aliyungo/metadata"
)

func main() {
	m := metadata.NewMetaData(nil)
	role, err := m.RoleName()
	if err != nil {
		os.Stderr.WriteString(err.Error())
		os.Exit(3)
	}
	auth, err := m.RamRoleToken(role)
	if err != nil {
		os.Stderr.WriteString(err.Error())
		os.Exit(4)
	}
	json.NewEncoder(os.Stdout).Encode(map[string]string{"role": role, "accessKeyId": auth.AccessKeyId, "accessKeySecret": auth.AccessKeySecret, "code": auth.Code, "expiration": auth.Expiration.UTC().Format("2006-01-02T15:04:05Z")})
}
`;
  let binary: string | undefined;
  let skip: string | undefined;

  beforeAll(async () => {
    const present =
      (await clientAvailable('go', ['version'])) && (await clientAvailable('test', ['-d', `${GO_PATH}/src/github.com/denverdino/aliyungo/metadata`]));
    if (!present) {
      skip = "go and Debian's golang-github-denverdino-aliyungo-dev are not installed";
      return;
    }
    const source = join(dir, 'aliyungo-metadata.go');
    await writeFile(source, program);
    binary = join(dir, 'aliyungo-metadata');
    const env = { ...process.env, GO111MODULE: 'off', GOPATH: GO_PATH, GOPROXY: 'off', GOCACHE: join(dir, 'gocache'), GOFLAGS: '' };
    await run('go', ['build', '-o', binary, source], { env, timeout: 180_000 });
  }, 240_000);

  it('reads the role and its credentials with token-less GETs (--allow-imdsv1)', async (ctx) => {
    if (skip) ctx.skip(skip);
    const { base, accessKeyId } = await startServe({ allowImdsV1: true });
    const got = JSON.parse(await runClient(binary!, [], clientEnv(dir, { METADATA_ENDPOINT: base }))) as Record<string, string>;
    expect(got).toMatchObject({ role: ROLE_NAME, accessKeyId, accessKeySecret: issuedSecretOf(accessKeyId), code: 'Success' });
    const issued = sts.issued.find((i) => i.accessKeyId === accessKeyId)!;
    expect(got.expiration).toBe(issued.expiration.toISOString().replace(/\.\d{3}Z$/, 'Z'));
  });

  it('gets nothing from a hardened listener', async (ctx) => {
    if (skip) ctx.skip(skip);
    const { base } = await startServe();
    await expect(runClient(binary!, [], clientEnv(dir, { METADATA_ENDPOINT: base }))).rejects.toThrow(/Status Code: 401/);
  });
});
