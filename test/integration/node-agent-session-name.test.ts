import { createHash, randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  agentRoleArn,
  askAgent,
  credentialsPath,
  type InProcessAgent,
  mintPodToken,
  type PodChain,
  startAgentInProcess,
  startPodChain,
} from '../support/node-agent.js';

/**
 * --session-name-template (#18, point 4), end to end: startNodeAgent() in this process, pods'
 * tokens from the demo issuer, and the RoleSessionName the STS emulator received for each exchange.
 */

const ROLE = agentRoleArn('team/app');
const TEMPLATE = '{namespace}-{serviceAccount}-{pod}';

let chain: PodChain | undefined;
let agent: InProcessAgent | undefined;

afterEach(async () => {
  await agent?.close();
  await chain?.close();
  agent = undefined;
  chain = undefined;
});

async function startAgent(flags: { template?: string; allowUnbound?: boolean } = {}): Promise<InProcessAgent> {
  if (chain === undefined) throw new Error('start the chain first');
  agent = await startAgentInProcess({
    'allowed-issuer': [chain.issuer.url],
    'sts-endpoint': chain.sts.url,
    ...(flags.template !== undefined ? { 'session-name-template': flags.template } : {}),
    ...(flags.allowUnbound ? { 'allow-unbound-tokens': true } : {}),
  });
  return agent;
}

async function credentialsFor(token: string): Promise<void> {
  const res = await askAgent(agent!.base, credentialsPath(ROLE), { token });
  expect(res.status, res.text).toBe(200);
}

function metric(text: string, series: string): number {
  return Number(new RegExp(`^${series.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
}

describe('node-agent: --session-name-template', () => {
  it("names the session from the template, the same for one pod's rotated tokens and after a restart", async () => {
    chain = await startPodChain({ roleArns: [ROLE] });
    await startAgent({ template: TEMPLATE });
    const podUid = randomUUID();
    await credentialsFor(await mintPodToken(chain.issuer, { pod: 'api-0', podUid }));
    // The kubelet's rotated token: other bytes, so another cache entry and another STS call.
    await credentialsFor(await mintPodToken(chain.issuer, { pod: 'api-0', podUid, ttlSeconds: 7200 }));
    await credentialsFor(await mintPodToken(chain.issuer, { pod: 'api-1' }));
    await agent!.close();
    agent = undefined;
    await startAgent({ template: TEMPLATE });
    await credentialsFor(await mintPodToken(chain.issuer, { pod: 'api-0', podUid }));
    expect(chain.sts.issued.map((i) => i.sessionName)).toEqual(['payments-api-api-0', 'payments-api-api-0', 'payments-api-api-1', 'payments-api-api-0']);
  });

  it('names the session <namespace>.<pod> without a template, as before', async () => {
    chain = await startPodChain({ roleArns: [ROLE] });
    await startAgent();
    await credentialsFor(await mintPodToken(chain.issuer, { pod: 'api-0' }));
    expect(chain.sts.issued.map((i) => i.sessionName)).toEqual(['payments.api-0']);
  });

  it('sends STS a long name trimmed to 64 characters that it accepts, the same for each token', async () => {
    chain = await startPodChain({ roleArns: [ROLE] });
    await startAgent({ template: '{namespace}-{serviceAccount}-{pod}-{podUid}' });
    const pod = { namespace: 'a-very-long-namespace-name-for-the-team', pod: 'deployment-with-a-long-name-7d9f8c6b5-x2k4q', podUid: randomUUID() };
    await credentialsFor(await mintPodToken(chain.issuer, pod));
    await credentialsFor(await mintPodToken(chain.issuer, { ...pod, ttlSeconds: 7200 }));
    const [first, second] = chain.sts.issued.map((i) => i.sessionName);
    expect(first).toHaveLength(64);
    const rendered = `${pod.namespace}-api-${pod.pod}-${pod.podUid}`;
    expect(first).toBe(`${rendered.slice(0, 55)}-${createHash('sha256').update(rendered).digest('hex').slice(0, 8)}`);
    expect(second).toBe(first);
  });

  it('refuses an unbound token under a template naming {pod}, counted, with no STS call', async () => {
    chain = await startPodChain({ roleArns: [ROLE] });
    await startAgent({ template: TEMPLATE, allowUnbound: true });
    const res = await askAgent(agent!.base, credentialsPath(ROLE), { token: await mintPodToken(chain.issuer, { unbound: true }) });
    expect(res.status).toBe(401);
    expect(JSON.parse(res.text)).toMatchObject({ Code: 'TOKEN_LACKS_SESSION_NAME' });
    expect(chain.sts.calls).toBe(0);
    const metrics = (await askAgent(agent!.admin, '/metrics')).text;
    expect(metric(metrics, 'crosscred_node_agent_refusals_total{reason="token_lacks_session_name"}')).toBe(1);
    // A bound token of the same ServiceAccount is still served.
    await credentialsFor(await mintPodToken(chain.issuer, { pod: 'api-0' }));
    expect(chain.sts.issued.map((i) => i.sessionName)).toEqual(['payments-api-api-0']);
  });
});
