import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlibabaStsEmulator } from '../../src/demo/alibaba-sts-emulator.js';
import { DemoOidcIssuer } from '../../src/demo/oidc-issuer.js';
import { CLI_ARGS, CLI_EXEC, type DaemonProcess, REPO_ROOT, spawnDaemon, waitUntilReady } from '../support/chain.js';
import { clientAvailable, clientEnv, runClient } from '../support/clients.js';

/**
 * Alibaba Cloud's own clients reading a RAM role's credentials from the real `crosscred serve
 * --config` (dist/, as `npm test` builds it), with a config file of one `cloud: alibaba` role:
 * - @alicloud/credentials (2.4.7, the Node SDK's credential library), its default chain
 *   (`new Credential()` with no configuration), in a child process with a clean environment:
 *   (1) ALIBABA_CLOUD_CREDENTIALS_URI pointed at crosscred on loopback, with and without the path
 *   secret; (2) the ECS metadata server at 100.100.100.200:80 inside a network namespace, where
 *   `crosscred net-setup --alibaba-metadata` put the address and crosscred listens (with the OIDC
 *   issuer and the STS emulator, which run there too);
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

const daemons: DaemonProcess[] = [];

/** The config file of one Alibaba role, as an operator writes it. */
function configYaml(options: {
  stsUrl: string;
  tokenFile: string;
  listen: string;
  authTokenFile?: string;
  allowImdsV1?: boolean;
  allowRemote?: boolean;
}): string {
  return [
    `tokenFile: "${options.tokenFile}"`,
    `listen: ["${options.listen}"]`,
    ...(options.authTokenFile ? [`authTokenFile: "${options.authTokenFile}"`] : []),
    ...(options.allowImdsV1 ? ['allowImdsV1: true'] : []),
    ...(options.allowRemote ? ['allowRemote: true'] : []),
    'roles:',
    '  - cloud: alibaba',
    `    roleArn: "${ROLE_ARN}"`,
    `    oidcProviderArn: "${PROVIDER_ARN}"`,
    `    stsEndpoint: "${options.stsUrl}"`,
    '    sessionName: crosscred-e2e',
    '',
  ].join('\n');
}

/** `crosscred serve --config` on loopback, ready (its first exchange done); resolves with its base URL. */
async function startServe(options: { authTokenFile?: string; allowImdsV1?: boolean } = {}): Promise<string> {
  const file = join(dir, `crosscred-${daemons.length}.yaml`);
  await writeFile(file, configYaml({ stsUrl: sts.url, tokenFile, listen: '127.0.0.1:0', ...options }));
  const daemon = await spawnDaemon(['--config', file]);
  daemons.push(daemon);
  await waitUntilReady(daemon.admin);
  return daemon.listeners[0]!;
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
  for (const daemon of daemons) expect(await daemon.stop()).toBe(0);
  await Promise.all([sts?.close(), issuer?.close()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('@alicloud/credentials default chain, URI provider (ALIBABA_CLOUD_CREDENTIALS_URI)', () => {
  it('reads the credentials from a loopback listener without a secret', async () => {
    const base = await startServe();
    const got = await nodeSdk({ ALIBABA_CLOUD_CREDENTIALS_URI: `${base}/v1/alibaba/credentials`, ALIBABA_CLOUD_ECS_METADATA_DISABLED: 'true' });
    expect(got.providerName).toBe('default/credential_uri');
    expect(got.accessKeyId).toBe(sts.issued.at(-1)!.accessKeyId);
    expect(got.accessKeySecret).toBe(issuedSecretOf(got.accessKeyId!));
    expect(got.securityToken).toBe(sts.issued.at(-1)!.securityToken);
  });

  it('reads them with the secret in the path when --auth-token-file is set, and gets nothing without it', async () => {
    const authTokenFile = join(dir, 'auth');
    const base = await startServe({ authTokenFile });
    const secret = await readFile(authTokenFile, 'utf8');
    const got = await nodeSdk({
      ALIBABA_CLOUD_CREDENTIALS_URI: `${base}/v1/alibaba/credentials/${encodeURIComponent(secret)}`,
      ALIBABA_CLOUD_ECS_METADATA_DISABLED: 'true',
    });
    expect(got.accessKeyId).toBe(sts.issued.at(-1)!.accessKeyId);
    expect(got.accessKeySecret).toBe(issuedSecretOf(got.accessKeyId!));
    for (const uri of [`${base}/v1/alibaba/credentials`, `${base}/v1/alibaba/credentials/${'x'.repeat(secret.length)}`]) {
      await expect(nodeSdk({ ALIBABA_CLOUD_CREDENTIALS_URI: uri, ALIBABA_CLOUD_ECS_METADATA_DISABLED: 'true' })).rejects.toThrow(/httpStatus: 40[13]/);
    }
  });
});

describe('@alicloud/credentials default chain, ECS metadata at 100.100.100.200 in a network namespace', () => {
  let unavailable: string | undefined;
  /** The OIDC issuer and the STS emulator, and `crosscred serve`, each a process inside the namespace. */
  let chainProcess: ChildProcess | undefined;
  let serveProcess: ChildProcess | undefined;
  /** What the emulator in the namespace issued, as it reports it. */
  const issuedInNs: Array<{ accessKeyId: string; accessKeySecret: string }> = [];

  const netSetup = (action: 'up' | 'down') => run('ip', ['netns', 'exec', NS, CLI_EXEC, ...CLI_ARGS, 'net-setup', action, '--alibaba-metadata']);

  /** Spawns `args` in the namespace and resolves with the first match of `ready` in its output (stdout and stderr). */
  function spawnInNs(args: string[], ready: RegExp): Promise<{ child: ChildProcess; match: RegExpExecArray }> {
    const child = spawn('ip', ['netns', 'exec', NS, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    return new Promise((resolve, reject) => {
      let output = '';
      const timer = setTimeout(() => reject(new Error(`not ready in time:\n${output}`)), 45_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString('utf8');
        const match = ready.exec(output);
        if (match) {
          clearTimeout(timer);
          resolve({ child, match });
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`exited (${code}) before it was ready:\n${output}`));
      });
    });
  }

  async function stop(child: ChildProcess | undefined): Promise<void> {
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }

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
    // The issuer and STS inside the namespace (from dist/), reporting each set of credentials it issues.
    const nsTokenFile = join(dir, 'ns-token');
    const script = `
      const dist = ${JSON.stringify(join(REPO_ROOT, 'dist'))};
      const { DemoOidcIssuer } = await import(dist + '/demo/oidc-issuer.js');
      const { AlibabaStsEmulator } = await import(dist + '/demo/alibaba-sts-emulator.js');
      const { writeFile } = await import('node:fs/promises');
      const issuer = await DemoOidcIssuer.start();
      const sts = await AlibabaStsEmulator.start({ trust: [{ roleArn: ${JSON.stringify(ROLE_ARN)}, oidcProviderArn: ${JSON.stringify(PROVIDER_ARN)}, issuer: issuer.url, audience: ${JSON.stringify(AUDIENCE)}, subject: ${JSON.stringify(SUBJECT)} }] });
      await writeFile(${JSON.stringify(nsTokenFile)}, await issuer.mint({ sub: ${JSON.stringify(SUBJECT)}, aud: ${JSON.stringify(AUDIENCE)}, ttlSeconds: 3600 }));
      let reported = 0;
      setInterval(() => {
        for (; reported < sts.issued.length; reported++) {
          const { accessKeyId, accessKeySecret } = sts.issued[reported];
          process.stdout.write('ISSUED ' + JSON.stringify({ accessKeyId, accessKeySecret }) + '\\n');
        }
      }, 50);
      process.stdout.write('STS ' + sts.url + '\\n');
      process.on('SIGTERM', async () => { await sts.close(); await issuer.close(); process.exit(0); });`;
    const chain = await spawnInNs([process.execPath, '--input-type=module', '-e', script], /STS (\S+)\n/);
    chainProcess = chain.child;
    chainProcess.stdout!.on('data', (chunk: Buffer) => {
      for (const m of chunk.toString('utf8').matchAll(/ISSUED (\{.*\})\n/g))
        issuedInNs.push(JSON.parse(m[1]!) as { accessKeyId: string; accessKeySecret: string });
    });
    const file = join(dir, 'ns-crosscred.yaml');
    // 100.100.100.200 is not one of the addresses crosscred calls host-local, hence allowRemote.
    await writeFile(file, configYaml({ stsUrl: chain.match[1]!, tokenFile: nsTokenFile, listen: '100.100.100.200:80', allowRemote: true }));
    const serve = await spawnInNs([CLI_EXEC, ...CLI_ARGS, 'serve', '--config', file, '--log-level', 'debug'], /"msg":"credentials refreshed"/);
    serveProcess = serve.child;
  }, 90_000);

  afterAll(async () => {
    if (unavailable) return;
    await stop(serveProcess);
    await stop(chainProcess);
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
    // The one exchange crosscred made; reported by the emulator within 50 ms of it.
    await expect.poll(() => issuedInNs.length, { timeout: 10_000 }).toBe(1);
    expect(got.accessKeyId).toBe(issuedInNs[0]!.accessKeyId);
    expect(got.accessKeySecret).toBe(issuedInNs[0]!.accessKeySecret);
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
    const base = await startServe({ allowImdsV1: true });
    const issued = sts.issued.at(-1)!;
    const got = JSON.parse(await runClient(binary!, [], clientEnv(dir, { METADATA_ENDPOINT: base }))) as Record<string, string>;
    expect(got).toMatchObject({ role: ROLE_NAME, accessKeyId: issued.accessKeyId, accessKeySecret: issued.accessKeySecret, code: 'Success' });
    expect(got.expiration).toBe(issued.expiration.toISOString().replace(/\.\d{3}Z$/, 'Z'));
  });

  it('gets nothing from a hardened listener', async (ctx) => {
    if (skip) ctx.skip(skip);
    const base = await startServe();
    await expect(runClient(binary!, [], clientEnv(dir, { METADATA_ENDPOINT: base }))).rejects.toThrow(/Status Code: 401/);
  });
});
