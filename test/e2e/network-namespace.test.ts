import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, REPO_ROOT } from '../support/chain.js';
import { clientAvailable, clientEnv, CLIENTS, runClient } from '../support/clients.js';

/**
 * The VM experience, on a test host of our own: a network namespace where `crosscred net-setup`
 * puts 169.254.169.254 and 169.254.170.2 on a local link and crosscred (the demo chain: issuer,
 * STS emulator and daemon, all inside the namespace) listens on port 80 of both. Unmodified
 * clients run inside the namespace with NO endpoint variable and find the credentials where they
 * look by default. The namespace is deleted afterwards, also on failure.
 */
const run = promisify(execFile);
const NS = `crosscred-e2e-${process.pid}`;
const JS_CLIENT = join(REPO_ROOT, 'test/e2e/clients/js-sdk-credentials.mjs');
const BOTOCORE_CLIENT = join(REPO_ROOT, 'test/e2e/clients/botocore-credentials.py');

let unavailable: string | undefined;
let demo: ChildProcess | undefined;
let demoOutput = '';
let home: string;
let authTokenFile: string;

function inNs(command: string, args: string[]): [string, string[]] {
  return ['ip', ['netns', 'exec', NS, command, ...args]];
}

async function netSetup(action: 'up' | 'down'): Promise<string> {
  const [cmd, args] = inNs(process.execPath, [CLI, 'net-setup', action, '--container-address']);
  return (await run(cmd, args)).stdout;
}

async function addressesOn(device: string): Promise<string[]> {
  const { stdout } = await run('ip', ['-n', NS, '-j', 'addr', 'show', 'dev', device]);
  return (JSON.parse(stdout) as Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>).flatMap((l) => l.addr_info.map((a) => `${a.local}/${a.prefixlen}`));
}

beforeAll(async () => {
  try {
    await run('ip', ['netns', 'add', NS]);
  } catch (err) {
    unavailable = `cannot create a network namespace here: ${String((err as { stderr?: string }).stderr ?? err).trim()}`;
    if (process.env['CROSSCRED_E2E_STRICT'] === '1') throw new Error(unavailable);
    return;
  }
  home = await mkdtemp(join(tmpdir(), 'crosscred-netns-'));
  await run('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
}, 30_000);

afterAll(async () => {
  demo?.kill('SIGTERM');
  if (!unavailable) {
    await netSetup('down').catch(() => undefined);
    await run('ip', ['netns', 'del', NS]).catch(() => undefined);
  }
  if (home) await rm(home, { recursive: true, force: true });
});

describe('crosscred net-setup', () => {
  it('puts the metadata addresses on a local link, idempotently, and takes them away again', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    await netSetup('up');
    const second = await netSetup('up');
    expect(second).toContain('169.254.169.254/32 is already on');
    // A dummy link where the kernel has them; otherwise (as on these build machines) the loopback.
    const device = await run('ip', ['-n', NS, 'link', 'show', 'dev', 'crosscred0']).then(() => 'crosscred0', () => 'lo');
    expect(await addressesOn(device)).toEqual(expect.arrayContaining(['169.254.169.254/32', '169.254.170.2/32']));
    await netSetup('down');
    await netSetup('down');
    expect(await addressesOn('lo')).not.toContain('169.254.169.254/32');
    await expect(run('ip', ['-n', NS, 'link', 'show', 'dev', 'crosscred0'])).rejects.toBeTruthy();
    // Up again for the tests below.
    await netSetup('up');
  });
});

describe('unmodified clients find crosscred with no configuration', () => {
  beforeAll(async () => {
    if (unavailable) return;
    const [cmd, args] = inNs(process.execPath, [CLI, 'demo', '--listen', '169.254.169.254:80', '--listen', '169.254.170.2:80', '--admin-listen', '127.0.0.1:8171', '--log-level', 'warn']);
    demo = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' } });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`demo did not start:\n${demoOutput}`)), 20_000);
      const onData = (chunk: Buffer) => {
        demoOutput += chunk.toString('utf8');
        if (demoOutput.includes('Press Ctrl-C')) {
          clearTimeout(timer);
          resolve();
        }
      };
      demo!.stdout!.on('data', onData);
      demo!.stderr!.on('data', onData);
      demo!.once('exit', (code) => reject(new Error(`demo exited with ${code}:\n${demoOutput}`)));
    });
    authTokenFile = /AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=(\S+)/.exec(demoOutput)![1]!;
  }, 40_000);

  /** Runs a client inside the namespace with a clean environment: no AWS_* endpoint at all. */
  async function client(command: string, args: string[], extra: Record<string, string> = {}): Promise<Record<string, string>> {
    const [cmd, nsArgs] = inNs(command, args);
    return JSON.parse(await runClient(cmd, nsArgs, clientEnv(home, extra))) as Record<string, string>;
  }

  it('the AWS CLI v2, botocore and the JS SDK default chain all get the same credentials from 169.254.169.254', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const keys = new Set<string>();
    const js = await client(process.execPath, [JS_CLIENT, 'node-provider-chain']);
    keys.add(js['accessKeyId']!);
    const boto = await client(CLIENTS.pyenvPython, [BOTOCORE_CLIENT]);
    expect(boto['method']).toBe('iam-role');
    keys.add(boto['accessKeyId']!);
    if (await clientAvailable(CLIENTS.awsCliV2)) {
      const cli = await client(CLIENTS.awsCliV2, ['configure', 'export-credentials', '--format', 'process']);
      keys.add(cli['AccessKeyId']!);
    } else {
      ctx.annotate('AWS CLI v2 not installed: checked the JS SDK and botocore only');
    }
    expect(keys.size).toBe(1);
    expect([...keys][0]).toMatch(/^ASIA/);
  });

  it('the container endpoint answers at 169.254.170.2 with the token file', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const env = { AWS_CONTAINER_CREDENTIALS_FULL_URI: 'http://169.254.170.2/v1/credentials', AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: authTokenFile };
    const js = await client(process.execPath, [JS_CLIENT, 'http'], env);
    const boto = await client(CLIENTS.pyenvPython, [BOTOCORE_CLIENT], env);
    expect(boto['method']).toBe('container-role');
    expect(boto['accessKeyId']).toBe(js['accessKeyId']);
    expect(await readFile(authTokenFile, 'utf8')).not.toMatch(/\n$/);
  });

  it('nothing outside the namespace sees the address', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    const { stdout } = await run('ip', ['-j', 'addr', 'show']);
    expect(stdout).not.toContain('169.254.169.254');
  });
});

// Last: taking the hop-limit rule down may also take the dummy link (where there is one) with it.
describe('crosscred net-setup --hop-limit', () => {
  it('with --hop-limit, installs and removes an nftables rule that sends replies with TTL 1', async (ctx) => {
    if (unavailable) ctx.skip(unavailable);
    if (!(await clientAvailable('nft', ['--version']))) ctx.skip('nft is not installed (Debian package nftables)');
    const [cmd, args] = inNs(process.execPath, [CLI, 'net-setup', 'up', '--hop-limit']);
    await run(cmd, args);
    await run(cmd, args);
    const [nft, nftArgs] = inNs('nft', ['list', 'table', 'inet', 'crosscred_metadata']);
    expect((await run(nft, nftArgs)).stdout).toMatch(/ip saddr 169\.254\.169\.254 ip ttl set 1/);
    const [downCmd, downArgs] = inNs(process.execPath, [CLI, 'net-setup', 'down', '--hop-limit', '--address', '203.0.113.1/32']);
    await run(downCmd, downArgs);
    await expect(run(nft, nftArgs)).rejects.toBeTruthy();
  });
});
