import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_ARGS, CLI_EXEC, REPO_ROOT } from '../support/chain.js';
import { buildGoClients, CLIENTS, clientAvailable, goClientsAvailable, runClient } from '../support/clients.js';

/**
 * What a newcomer does after `npm run demo`: paste one of the printed `export` blocks into a shell
 * and run an AWS client there. The demo runs as a child process, as a user starts it; each block
 * is evaluated by a real shell, and every installed client runs with exactly the variables that
 * block sets: no other AWS_* variable, HOME an empty directory (no ~/.aws), nothing inherited but
 * PATH (and PYENV_ROOT, which pyenv's shims need to find their interpreter).
 */
const run = promisify(execFile);
const JS_CLIENT = join(REPO_ROOT, 'test/e2e/clients/js-sdk-credentials.mjs');
const BOTOCORE_CLIENT = join(REPO_ROOT, 'test/e2e/clients/botocore-credentials.py');

const BLOCKS = {
  IMDS: 'AWS_EC2_METADATA_SERVICE_ENDPOINT',
  'container endpoint': 'AWS_CONTAINER_CREDENTIALS_FULL_URI',
} as const;
type BlockName = keyof typeof BLOCKS;

/** What a client reports: the access key it got (or its last four characters) and, where it says, how. */
interface Got {
  readonly accessKeyId?: string;
  readonly accessKeyLast4?: string;
  readonly via?: string;
}

interface Client {
  readonly name: string;
  readonly available: () => Promise<boolean>;
  readonly missing: string;
  /** What the client calls each block's provider, when it says. */
  readonly via?: Record<BlockName, string>;
  readonly get: (env: Record<string, string>) => Promise<Got>;
  /** Built from source in beforeAll. */
  readonly go?: true;
}

let goBin = '';
const json = (text: string) => JSON.parse(text) as Record<string, string>;

const CLIENT_LIST: Client[] = [
  {
    name: 'AWS CLI v2 (Debian /usr/bin/aws)',
    available: () => clientAvailable(CLIENTS.awsCliV2),
    missing: '/usr/bin/aws (apt-get install awscli) is not installed',
    get: async (env) => ({
      accessKeyId: json(await runClient(CLIENTS.awsCliV2, ['configure', 'export-credentials', '--format', 'process'], env))['AccessKeyId'],
    }),
  },
  {
    name: 'AWS CLI v1 (pyenv aws)',
    available: () => clientAvailable(CLIENTS.awsCliV1),
    missing: 'the pyenv AWS CLI v1 (aws on PATH) is not runnable',
    via: { IMDS: 'iam-role', 'container endpoint': 'container-role' },
    // CLI v1 has no export-credentials; configure list shows the key's last four characters and its source.
    get: async (env) => {
      const out = await runClient(CLIENTS.awsCliV1, ['configure', 'list'], env);
      const m = /^\s*access_key\s+\*+(\w{4})\s+(\S+)/m.exec(out);
      if (!m) throw new Error(`aws configure list showed no access key:\n${out}`);
      return { accessKeyLast4: m[1]!, via: m[2]! };
    },
  },
  ...(
    [
      ['botocore 1.29 (Debian /usr/bin/python3)', CLIENTS.debianPython],
      ['botocore 1.4x (pyenv python3)', CLIENTS.pyenvPython],
    ] as const
  ).map(
    ([name, python]): Client => ({
      name,
      available: () => clientAvailable(python, ['-c', 'import botocore']),
      missing: `${python} cannot import botocore`,
      via: { IMDS: 'iam-role', 'container endpoint': 'container-role' },
      get: async (env) => {
        const out = json(await runClient(python, [BOTOCORE_CLIENT], env));
        return { accessKeyId: out['accessKeyId'], via: out['method'] };
      },
    }),
  ),
  {
    name: 'AWS SDK for JavaScript v3 (fromNodeProviderChain)',
    available: async () => true,
    missing: '',
    get: async (env) => {
      const { stdout, stderr } = await run(process.execPath, [JS_CLIENT, 'node-provider-chain'], { env, timeout: 60_000 });
      // The SDK warns on stderr when a block sets both the token and the token-file variable.
      expect(stderr, 'the JS SDK complained').toBe('');
      return { accessKeyId: json(stdout)['accessKeyId'] };
    },
  },
  ...(['v1', 'v2'] as const).map(
    (v): Client => ({
      name: `AWS SDK for Go ${v} (Debian)`,
      available: goClientsAvailable,
      missing: "go and Debian's aws-sdk-go packages are not installed",
      go: true,
      via: { IMDS: 'EC2RoleProvider', 'container endpoint': 'CredentialsEndpointProvider' },
      get: async (env) => {
        const out = json(await runClient(join(goBin, `go-sdk-${v}`), [], env));
        return { accessKeyId: out['accessKeyId'], via: out[v === 'v1' ? 'provider' : 'source'] };
      },
    }),
  ),
];

let home: string;
let demo: ChildProcess;
let demoOutput = '';
const blocks: Partial<Record<BlockName, Record<string, string>>> = {};
let servedKey: string;
const available = new Map<string, boolean>();

/** The environment nothing else can feed a client from: PATH, an empty HOME, PYENV_ROOT. */
function bareEnv(): Record<string, string> {
  return { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: home, ...(process.env['PYENV_ROOT'] ? { PYENV_ROOT: process.env['PYENV_ROOT'] } : {}) };
}

/** The printed paragraphs made only of `export` lines, as a person would copy them. */
function exportBlocks(stdout: string): string[] {
  return stdout
    .split(/\n\s*\n/)
    .map((p) =>
      p
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean),
    )
    .filter((lines) => lines.length > 0 && lines.every((l) => l.startsWith('export ')))
    .map((lines) => lines.join('\n'));
}

/** The variables a block sets, as a POSIX shell evaluates it (quoting, command substitution and all). */
async function evaluate(block: string): Promise<Record<string, string>> {
  const base = bareEnv();
  const { stdout } = await run('/bin/sh', ['-c', `${block}\nexec "$0" -e 'process.stdout.write(JSON.stringify(process.env))'`, process.execPath], {
    env: base,
    timeout: 10_000,
  });
  const after = json(stdout);
  return Object.fromEntries(Object.entries(after).filter(([k, v]) => base[k] !== v && k !== 'PWD' && k !== 'SHLVL' && k !== '_'));
}

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'crosscred-demo-user-'));
  demo = spawn(CLI_EXEC, [...CLI_ARGS, 'demo', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'], {
    env: bareEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the demo did not start in time:\n${demoOutput}`)), 30_000);
    const onData = (chunk: Buffer) => {
      demoOutput += chunk.toString('utf8');
      if (demoOutput.includes('Press Ctrl-C to stop.')) {
        clearTimeout(timer);
        resolve();
      }
    };
    demo.stdout!.on('data', onData);
    demo.stderr!.on('data', onData);
    demo.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the demo exited with ${code} before it was ready:\n${demoOutput}`));
    });
  });
  for (const block of exportBlocks(demoOutput)) {
    const vars = await evaluate(block);
    const name = (Object.keys(BLOCKS) as BlockName[]).find((n) => BLOCKS[n] in vars);
    if (name) blocks[name] = vars;
  }
  // The key the demo's daemon serves (the emulator's), asked of its IMDS the way the SDKs do.
  const endpoint = blocks.IMDS?.['AWS_EC2_METADATA_SERVICE_ENDPOINT'];
  if (endpoint) {
    const put = await request(`${endpoint}latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '60' } });
    const token = await put.body.text();
    const list = await request(`${endpoint}latest/meta-data/iam/security-credentials/`, { headers: { 'x-aws-ec2-metadata-token': token } });
    const role = await list.body.text();
    const creds = await request(`${endpoint}latest/meta-data/iam/security-credentials/${role}`, { headers: { 'x-aws-ec2-metadata-token': token } });
    servedKey = ((await creds.body.json()) as { AccessKeyId: string }).AccessKeyId;
  }
  for (const client of CLIENT_LIST) available.set(client.name, await client.available());
  if (CLIENT_LIST.some((c) => c.go && available.get(c.name))) {
    goBin = join(home, 'go-bin');
    await buildGoClients(REPO_ROOT, goBin);
  }
}, 240_000);

afterAll(async () => {
  if (demo && demo.exitCode === null) {
    const exited = new Promise<number | null>((resolve) => demo.once('exit', resolve));
    demo.kill('SIGTERM');
    expect(await exited).toBe(0);
  }
  if (home) await rm(home, { recursive: true, force: true });
});

describe('the variables `crosscred demo` prints', () => {
  it('are two export blocks, IMDS and the container endpoint, that set only AWS_* variables', () => {
    expect(Object.keys(blocks).sort()).toEqual(Object.keys(BLOCKS).sort());
    for (const vars of Object.values(blocks)) for (const name of Object.keys(vars)) expect(name).toMatch(/^AWS_/);
    expect(servedKey).toMatch(/^ASIA/);
  });

  it("keep the container secret off the demo's output: the shell reads it from the file", () => {
    const secret = blocks['container endpoint']?.['AWS_CONTAINER_AUTHORIZATION_TOKEN'];
    expect(secret?.length).toBeGreaterThanOrEqual(16);
    expect(demoOutput).not.toContain(secret);
  });
});

describe.each(CLIENT_LIST.map((c) => [c.name, c] as const))('%s, with exactly a printed block exported', (_name, client) => {
  it.for(Object.keys(BLOCKS) as BlockName[])("gets the emulator's credentials through the %s block", async (block, ctx) => {
    if (!available.get(client.name)) ctx.skip(client.missing);
    const vars = blocks[block];
    expect(vars, `no ${block} block was printed`).toBeDefined();
    const env = { ...bareEnv(), ...vars };
    const got = await client.get(env);
    if (got.accessKeyLast4 !== undefined) expect(got.accessKeyLast4).toBe(servedKey.slice(-4));
    else expect(got.accessKeyId).toBe(servedKey);
    if (client.via) expect(got.via).toBe(client.via[block]);
  });
});
