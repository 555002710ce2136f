import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_ARGS, CLI_EXEC } from '../support/chain.js';
import {
  agentRoleArn,
  askAgent,
  credentialsPath,
  mintPodToken,
  type NodeAgentProcess,
  type PodChain,
  spawnNodeAgent,
  startAgentInProcess,
  startPodChain,
} from '../support/node-agent.js';
import { crosscred } from '../support/run-cli.js';

/**
 * What the node agent does around requests rather than in them:
 * - `--run-as`: it binds as root (port 80 of the node, which Kubernetes gives a non-root container no
 *   way to bind), then becomes an ordinary user holding no capability;
 * - a request never waits longer than MAX_WAIT_FOR_EXCHANGE_MS (900 ms) for STS: it gets 503
 *   CredentialsPending with Retry-After, under the JS SDK's 1 s timeout, and the exchange goes on;
 * - SIGHUP is logged and ignored (Node's default would end the process: an outage for a reload).
 */

const APP = agentRoleArn('team/app');
const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

let chain: PodChain;
const agents: NodeAgentProcess[] = [];

beforeAll(async () => {
  chain = await startPodChain({ roleArns: [APP] });
}, 60_000);

afterAll(async () => {
  for (const a of agents) await a.stop();
  await chain?.close();
});

async function start(args: string[] = []): Promise<NodeAgentProcess> {
  const agent = await spawnNodeAgent(['--allowed-issuer', chain.issuer.url, '--sts-endpoint', chain.sts.url, ...args]);
  agents.push(agent);
  return agent;
}

/** The process's ids and effective capabilities, as the kernel reports them. */
async function identityOf(pid: number): Promise<{ uid: string; gid: string; groups: string; capEff: string }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1]?.trim() ?? '';
  return { uid: field('Uid'), gid: field('Gid'), groups: field('Groups'), capEff: field('CapEff') };
}

async function waitForLine(agent: NodeAgentProcess, text: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!agent.output.some((line) => line.includes(text))) {
    if (agent.child.exitCode !== null) throw new Error(`the agent exited (${agent.child.exitCode}):\n${agent.output.join('\n')}`);
    if (Date.now() > deadline) throw new Error(`no "${text}" line:\n${agent.output.join('\n')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('node-agent --run-as', () => {
  it.skipIf(!isRoot)('binds as root, then runs as the given user with no capability left, and still exchanges tokens', async () => {
    const agent = await start(['--run-as', `${NOBODY}:${NOBODY}`]);
    await waitForLine(agent, 'now running as an unprivileged user');
    const ids = await identityOf(agent.child.pid!);
    expect(ids.uid.split(/\s+/)).toEqual([`${NOBODY}`, `${NOBODY}`, `${NOBODY}`, `${NOBODY}`]);
    expect(ids.gid.split(/\s+/)).toEqual([`${NOBODY}`, `${NOBODY}`, `${NOBODY}`, `${NOBODY}`]);
    expect(ids.groups).toBe(`${NOBODY}`);
    expect(ids.capEff).toBe('0000000000000000');
    // A new STS connection after the switch: nothing the exchange needs was root's.
    const before = chain.sts.calls;
    const res = await askAgent(agent.listeners[0]!, credentialsPath(APP), { token: await mintPodToken(chain.issuer, { pod: 'after-drop' }) });
    expect(res.status).toBe(200);
    expect(chain.sts.calls).toBe(before + 1);
  });

  it('answers nothing but 503 Starting until the switch is done (holdRequests), then serves', async () => {
    const held = await startAgentInProcess({ 'allowed-issuer': [chain.issuer.url], 'sts-endpoint': chain.sts.url }, { holdRequests: true });
    try {
      const token = await mintPodToken(chain.issuer, { pod: 'held' });
      const before = chain.sts.calls;
      const early = await askAgent(held.base, credentialsPath(APP), { token });
      expect(early.status).toBe(503);
      expect(JSON.parse(early.text)['Code']).toBe('Starting');
      expect(early.headers['retry-after']).toBe('1');
      expect(chain.sts.calls).toBe(before);
      held.agent.accept();
      expect((await askAgent(held.base, credentialsPath(APP), { token })).status).toBe(200);
    } finally {
      await held.close();
    }
  });

  it.each([
    ['root', '0:0'],
    ['a name', 'crosscred:crosscred'],
    ['a user without a group', '10001'],
  ])('refuses %s with exit 78, naming the flag', async (_why, value) => {
    const result = await crosscred(['node-agent', '--allowed-issuer', 'https://issuer.example', '--region', 'us-east-1', '--run-as', value]);
    expect(result.code).toBe(78);
    expect(result.stderr).toContain('--run-as');
  });

  it.skipIf(!isRoot)('exits 1 with PRIVILEGE_DROP_FAILED when the starting user may not switch, instead of serving as it', async () => {
    const args = [
      'node-agent',
      '--allowed-issuer',
      chain.issuer.url,
      '--sts-endpoint',
      chain.sts.url,
      '--region',
      'us-east-1',
      '--listen',
      '127.0.0.1:0',
      '--admin-listen',
      'off',
      '--run-as',
      '10001:10001',
    ];
    const result = await promisify(execFile)(CLI_EXEC, [...CLI_ARGS, ...args], {
      uid: NOBODY,
      gid: NOBODY,
      env: { PATH: process.env['PATH'] ?? '' },
      timeout: 20_000,
    }).then(
      (r) => ({ code: 0, stderr: r.stderr }),
      (err: { code?: number; stderr?: string }) => ({ code: err.code, stderr: err.stderr ?? '' }),
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('CROSSCRED_ERR_PRIVILEGE_DROP_FAILED');
    expect(result.stderr).toContain('SETUID and SETGID');
  });
});

describe('node-agent: a request waits for STS at most 900 ms', () => {
  it('answers 503 CredentialsPending with Retry-After while STS is slow, then serves what the same exchange brought, with no second call', async () => {
    const agent = await start();
    const token = await mintPodToken(chain.issuer, { pod: 'slow-sts' });
    chain.sts.failNext({ kind: 'delay', ms: 4_000 });
    const before = chain.sts.calls;
    const first = await askAgent(agent.listeners[0]!, credentialsPath(APP), { token });
    expect(first.status).toBe(503);
    expect(JSON.parse(first.text)['Code']).toBe('CredentialsPending');
    expect(first.headers['retry-after']).toBe('1');
    // The retry while the exchange is still on its way waits on it too (single flight): no new call.
    const second = await askAgent(agent.listeners[0]!, credentialsPath(APP), { token });
    expect(second.status).toBe(503);
    const deadline = Date.now() + 30_000;
    let last = second;
    while (last.status !== 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      last = await askAgent(agent.listeners[0]!, credentialsPath(APP), { token });
    }
    expect(last.status).toBe(200);
    expect(chain.sts.calls).toBe(before + 1);
  }, 60_000);
});

describe('node-agent: signals', () => {
  it('logs and ignores SIGHUP, and keeps serving', async () => {
    const agent = await start();
    agent.child.kill('SIGHUP');
    await waitForLine(agent, 'SIGHUP ignored');
    expect(agent.child.exitCode).toBeNull();
    const res = await askAgent(agent.listeners[0]!, credentialsPath(APP), { token: await mintPodToken(chain.issuer, { pod: 'after-hangup' }) });
    expect(res.status).toBe(200);
  });
});
