import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_ARGS, CLI_EXEC, REPO_ROOT } from '../support/chain.js';
import { clientEnv, runClient } from '../support/clients.js';

/**
 * `crosscred demo --cloud alibaba|tencent`, as a newcomer runs it: a child process whose printed
 * lines are used as printed. The `export` block is evaluated by a real shell and handed, alone, to
 * Alibaba's unmodified Node SDK (its default chain); the printed `curl` line is run by real curl.
 */
const run = promisify(execFile);

let home: string;
const demos: ChildProcess[] = [];

/** Starts the demo for `cloud`; resolves with what it printed once it serves. */
async function startDemo(cloud: 'alibaba' | 'tencent'): Promise<string> {
  const child = spawn(CLI_EXEC, [...CLI_ARGS, 'demo', '--cloud', cloud, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'], {
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  demos.push(child);
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the demo did not start in time:\n${output}`)), 30_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (output.includes('Press Ctrl-C to stop.')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the demo exited with ${code} before it was ready:\n${output}`));
    });
  });
  return output;
}

/** The variables the printed `export` lines set, as a POSIX shell evaluates them. */
async function exported(output: string): Promise<Record<string, string>> {
  const block = output
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('export '))
    .join('\n');
  const { stdout } = await run('/bin/sh', ['-c', `${block}\nexec "$0" -e 'process.stdout.write(JSON.stringify(process.env))'`, process.execPath], {
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' },
    timeout: 10_000,
  });
  const all = JSON.parse(stdout) as Record<string, string>;
  return Object.fromEntries(Object.entries(all).filter(([k]) => k.startsWith('ALIBABA_') || k.startsWith('AWS_') || k.startsWith('TENCENT')));
}

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'crosscred-demo-clouds-'));
});

afterAll(async () => {
  for (const child of demos) {
    if (child.exitCode !== null) continue;
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  }
  if (home) await rm(home, { recursive: true, force: true });
});

describe('crosscred demo --cloud alibaba', () => {
  it("prints the variables with which Alibaba's SDK default chain reads the demo's credentials", async () => {
    const output = await startDemo('alibaba');
    const vars = await exported(output);
    expect(Object.keys(vars).sort()).toEqual(['ALIBABA_CLOUD_CREDENTIALS_URI', 'ALIBABA_CLOUD_ECS_METADATA_DISABLED']);
    const served = (await (await request(vars['ALIBABA_CLOUD_CREDENTIALS_URI']!)).body.json()) as Record<string, string>;
    expect(served['Code']).toBe('Success');

    const script = `
      const Credential = require('@alicloud/credentials').default;
      new Credential().getCredential().then(
        (c) => process.stdout.write(JSON.stringify({ accessKeyId: c.accessKeyId, accessKeySecret: c.accessKeySecret, providerName: c.providerName })),
        (e) => { process.stderr.write(String(e && e.message)); process.exit(3); });`;
    const got = JSON.parse(
      await runClient(process.execPath, ['-e', script], { ...clientEnv(home, vars), NODE_PATH: join(REPO_ROOT, 'node_modules') }),
    ) as Record<string, string>;
    expect(got).toEqual({ accessKeyId: served['AccessKeyId'], accessKeySecret: served['AccessKeySecret'], providerName: 'default/credential_uri' });
    expect(got['accessKeyId']).toMatch(/^STS\./);
  });
});

describe('crosscred demo --cloud tencent', () => {
  it('prints a curl line that reads the CVM metadata document Tencent’s SDKs read', async () => {
    const output = await startDemo('tencent');
    const curl = /^\s*curl (\S+)$/m.exec(output);
    expect(curl, output).not.toBeNull();
    const { stdout } = await run('curl', ['-fsS', curl![1]!], { timeout: 10_000 });
    const document = JSON.parse(stdout) as Record<string, unknown>;
    expect(document).toMatchObject({
      Code: 'Success',
      TmpSecretId: expect.stringMatching(/^AKID/),
      TmpSecretKey: expect.any(String),
      Token: expect.any(String),
    });
    expect(document['ExpiredTime']).toBeGreaterThan(Date.now() / 1000);
  });
});
