import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../support/fake-clock.js';
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
 * startNodeAgent() in this process. First, idle entries and renewals (docs/research/kubernetes-cluster.md
 * §5.3, §7 test 8), on a fake clock
 * that moves the agent, its cache and the STS emulator's clock together; requests and STS calls
 * are real HTTP on loopback. `advanceSettling` waits, in real time, for each exchange that a fired
 * timer put on the wire before moving fake time on. Then what STS answers, passed on to the pod.
 */

const MINUTE = 60_000;
const ROLE = agentRoleArn('team/app');

let chain: PodChain | undefined;
let agent: InProcessAgent | undefined;

afterEach(async () => {
  await agent?.close();
  await chain?.close();
  agent = undefined;
  chain = undefined;
});

async function start(): Promise<{ clock: FakeClock; chain: PodChain; agent: InProcessAgent }> {
  // The demo issuer stamps tokens with the real time: the fake clock starts there.
  const clock = new FakeClock(Date.now());
  chain = await startPodChain({ roleArns: [ROLE], stsNow: () => clock.wallNow() });
  // random() = 0: no jitter, so the renewal falls due exactly half-way through a one-hour session.
  agent = await startAgentInProcess({ 'allowed-issuer': [chain.issuer.url], 'sts-endpoint': chain.sts.url }, { clock, random: () => 0 });
  return { clock, chain, agent };
}

function metric(text: string, series: string): number {
  return Number(new RegExp(`^${series.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
}

describe('node-agent: idle entries and renewal', () => {
  it('drops an entry unread for the idle window, clears its timers and never renews it', async () => {
    const { clock, chain, agent } = await start();
    const token = await mintPodToken(chain.issuer, { ttlSeconds: 86_400 });
    expect((await askAgent(agent.base, credentialsPath(ROLE), { token })).status).toBe(200);
    expect(chain.sts.calls).toBe(1);
    expect(agent.agent.cache.size).toBe(1);
    const busy = () => agent.agent.cache.fetching > 0;
    await clock.advanceSettling(16 * MINUTE, busy);
    expect(agent.agent.cache.size).toBe(0);
    // Only the idle sweep is left on the clock: the entry's refresh timer went with it.
    expect(clock.pendingDelays()).toHaveLength(1);
    await clock.advanceSettling(3 * 60 * MINUTE, busy);
    expect(chain.sts.calls).toBe(1);
    const metrics = (await askAgent(agent.admin, '/metrics')).text;
    expect(metric(metrics, 'crosscred_node_agent_evictions_total{cause="idle"}')).toBe(1);
    expect(metric(metrics, 'crosscred_node_agent_entries')).toBe(0);
    // Asked again later: a miss, one new call.
    expect((await askAgent(agent.base, credentialsPath(ROLE), { token })).status).toBe(200);
    expect(chain.sts.calls).toBe(2);
  });

  it('renews an entry read every 5 minutes before its credentials expire, with no miss', async () => {
    const { clock, chain, agent } = await start();
    const token = await mintPodToken(chain.issuer, { ttlSeconds: 86_400 });
    const keys: string[] = [];
    const read = async () => {
      const res = await askAgent(agent.base, credentialsPath(ROLE), { token });
      expect(res.status).toBe(200);
      keys.push((JSON.parse(res.text) as { AccessKeyId: string }).AccessKeyId);
    };
    await read();
    const busy = () => agent.agent.cache.fetching > 0;
    for (let i = 0; i < 15; i++) {
      await clock.advanceSettling(5 * MINUTE, busy);
      await read();
    }
    // 75 minutes of one-hour sessions, renewed at half-life: the first call and two renewals.
    expect(chain.sts.calls).toBe(3);
    expect(new Set(keys).size).toBe(3);
    expect(agent.agent.cache.size).toBe(1);
    expect(chain.sts.issued.map((i) => i.sessionName)).toEqual(['payments.api-0', 'payments.api-0', 'payments.api-0']);
  });

  it('does not renew for a token that expires first, and drops the entry when it does', async () => {
    const { clock, chain, agent } = await start();
    // The renewal falls due at about 30 min; the token then has about 30 s left (< 60 s).
    const token = await mintPodToken(chain.issuer, { ttlSeconds: 30 * 60 + 30 });
    const busy = () => agent.agent.cache.fetching > 0;
    expect((await askAgent(agent.base, credentialsPath(ROLE), { token })).status).toBe(200);
    for (let i = 0; i < 6; i++) {
      await clock.advanceSettling(5 * MINUTE, busy);
      expect((await askAgent(agent.base, credentialsPath(ROLE), { token })).status).toBe(200);
    }
    await clock.advanceSettling(10 * MINUTE, busy);
    expect(chain.sts.calls).toBe(1);
    expect(agent.agent.cache.size).toBe(0);
    const metrics = (await askAgent(agent.admin, '/metrics')).text;
    expect(metric(metrics, 'crosscred_node_agent_evictions_total{cause="token_expired"}')).toBe(1);
    const late = await askAgent(agent.base, credentialsPath(ROLE), { token });
    expect(late.status).toBe(401);
    expect(JSON.parse(late.text)).toMatchObject({ Code: 'TOKEN_EXPIRED' });
  });

  it('throttles misses by the fake clock: the bucket refills at --rate-per-second', async () => {
    const { clock, chain, agent } = await start();
    const tokens = await Promise.all(Array.from({ length: 25 }, (_, i) => mintPodToken(chain.issuer, { pod: `p-${i}` })));
    const statuses: number[] = [];
    for (const token of tokens.slice(0, 21)) statuses.push((await askAgent(agent.base, credentialsPath(ROLE), { token })).status);
    expect(statuses.slice(0, 20).every((s) => s === 200)).toBe(true);
    expect(statuses[20]).toBe(503);
    // Hits are never limited.
    expect((await askAgent(agent.base, credentialsPath(ROLE), { token: tokens[0]! })).status).toBe(200);
    await clock.advance(1_000);
    // Five new tokens per second.
    const after: number[] = [];
    for (const token of tokens.slice(20)) after.push((await askAgent(agent.base, credentialsPath(ROLE), { token })).status);
    expect(after).toEqual([200, 200, 200, 200, 200]);
    expect(chain.sts.calls).toBe(25);
  });
});

describe('node-agent: what STS says, passed on', () => {
  async function startReal(flags: { stsEndpoint?: boolean } = {}) {
    chain = await startPodChain({ roleArns: [ROLE] });
    agent = await startAgentInProcess({ 'allowed-issuer': [chain.issuer.url], ...(flags.stsEndpoint === false ? {} : { 'sts-endpoint': chain.sts.url }) });
    return { chain, agent };
  }

  it('answers a transient STS failure 503 with Retry-After, remembers nothing, and serves the next request', async () => {
    const { chain, agent } = await startReal();
    const token = await mintPodToken(chain.issuer);
    chain.sts.failNext({ kind: 'error', status: 503, code: 'ServiceUnavailable' });
    const first = await askAgent(agent.base, credentialsPath(ROLE), { token });
    expect(first.status).toBe(503);
    expect(Number(first.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(first.text)).toMatchObject({ Code: 'CredentialsUnavailable' });
    expect(agent.agent.cache.size).toBe(0);
    expect((await askAgent(agent.base, credentialsPath(ROLE), { token })).status).toBe(200);
    expect(chain.sts.calls).toBe(2);
  });

  it("answers STS's ExpiredToken 401 TOKEN_EXPIRED without remembering it", async () => {
    const { chain, agent } = await startReal();
    const token = await mintPodToken(chain.issuer);
    chain.sts.failNext({ kind: 'error', status: 400, code: 'ExpiredTokenException' });
    const res = await askAgent(agent.base, credentialsPath(ROLE), { token });
    expect(res.status).toBe(401);
    expect(JSON.parse(res.text)).toMatchObject({ Code: 'TOKEN_EXPIRED' });
    expect(agent.agent.cache.refusedSize).toBe(0);
    expect((await askAgent(agent.base, credentialsPath(ROLE), { token })).status).toBe(200);
  });

  it("answers a role that does not trust the token 403 with STS's code, once", async () => {
    const { chain, agent } = await startReal();
    const token = await mintPodToken(chain.issuer);
    const untrusted = agentRoleArn('other');
    const first = await askAgent(agent.base, credentialsPath(untrusted), { token });
    expect(first.status).toBe(403);
    expect(JSON.parse(first.text)).toMatchObject({ Code: 'AccessDenied' });
    expect((await askAgent(agent.base, credentialsPath(untrusted), { token })).status).toBe(403);
    expect(chain.sts.calls).toBe(1);
    // The same token for a role that trusts it is another key.
    expect((await askAgent(agent.base, credentialsPath(ROLE), { token })).status).toBe(200);
  });

  it('refuses a role of another partition than --region when no --sts-endpoint is set, before any call', async () => {
    const { chain, agent } = await startReal({ stsEndpoint: false });
    const token = await mintPodToken(chain.issuer);
    const res = await askAgent(agent.base, credentialsPath(agentRoleArn('app', 'aws-cn')), { token });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.text)).toMatchObject({ Code: 'ROLE_ARN_PARTITION' });
    expect(chain.sts.calls).toBe(0);
  });
});

describe('node-agent: on an IPv6 address', () => {
  it('serves [::1] by its bracketed Host and refuses another Host', async (context) => {
    const probe = createServer();
    const v6 = await new Promise<boolean>((resolve) => {
      probe.once('error', () => resolve(false));
      probe.listen(0, '::1', () => probe.close(() => resolve(true)));
    });
    if (!v6) return context.skip('this machine has no IPv6 loopback (::1) to listen on');
    chain = await startPodChain({ roleArns: [ROLE] });
    agent = await startAgentInProcess({ 'allowed-issuer': [chain.issuer.url], 'sts-endpoint': chain.sts.url, listen: ['[::1]:0'] });
    const port = agent.agent.listeners[0]!.port;
    const base = `http://[::1]:${port}`;
    const token = await mintPodToken(chain.issuer);
    expect((await askAgent(base, credentialsPath(ROLE), { token })).status).toBe(200);
    expect((await askAgent(base, credentialsPath(ROLE), { token, host: `[::1]:${port}` })).status).toBe(200);
    expect((await askAgent(base, credentialsPath(ROLE), { token, host: `[fd00:ec2::23]:${port}` })).status).toBe(403);
  });
});
