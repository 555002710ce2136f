import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  agentRoleArn,
  askAgent,
  craftJwt,
  credentialsPath,
  decodeJwt,
  forgeToken,
  mintPodToken,
  type NodeAgentProcess,
  type PodChain,
  spawnNodeAgent,
  startPodChain,
} from '../support/node-agent.js';
import { crosscred } from '../support/run-cli.js';

/**
 * The real `crosscred node-agent` command against the STS emulator (which verifies every token's
 * signature through the demo issuer's JWKS) on loopback: docs/research/kubernetes-cluster.md §7,
 * tests 1 to 7 and 10.
 */

const PARTITIONS = ['aws', 'aws-cn', 'aws-us-gov', 'aws-iso', 'aws-iso-b'];
const APP = agentRoleArn('team/app');
/** A role the allow-list leaves out (another account). */
const FOREIGN = agentRoleArn('app', 'aws', '999999999999');

let chain: PodChain;
let agent: NodeAgentProcess;
let base: string;
/** Every token and secret the tests handled: none may appear in the agent's output. */
const secrets: string[] = [];

async function podToken(options: Parameters<typeof mintPodToken>[1] = {}): Promise<string> {
  const token = await mintPodToken(chain.issuer, options);
  secrets.push(token);
  return token;
}

function json(text: string): Record<string, string> {
  return JSON.parse(text) as Record<string, string>;
}

beforeAll(async () => {
  chain = await startPodChain({ roleArns: [...PARTITIONS.map((p) => agentRoleArn('team/app', p)), FOREIGN] });
  agent = await spawnNodeAgent(['--allowed-issuer', chain.issuer.url, '--sts-endpoint', chain.sts.url, '--allowed-role', 'arn:*:iam::111122223333:role/*']);
  base = agent.listeners[0]!;
}, 60_000);

afterAll(async () => {
  await agent?.stop();
  await chain?.close();
});

describe('node-agent: roles in the path', () => {
  it.each(PARTITIONS)('sends exactly the %s role ARN with its path to STS and serves the container document', async (partition) => {
    const arn = agentRoleArn('team/app', partition);
    const before = chain.sts.calls;
    const res = await askAgent(base, credentialsPath(arn), { token: await podToken({ pod: `pod-${partition}` }) });
    expect(res.status).toBe(200);
    expect(chain.sts.calls).toBe(before + 1);
    expect(chain.sts.requests.at(-1)!.roleArn).toBe(arn);
    const doc = json(res.text);
    expect(Object.keys(doc).sort()).toEqual(['AccessKeyId', 'AccountId', 'Expiration', 'RoleArn', 'SecretAccessKey', 'Token']);
    expect(doc['RoleArn']).toBe(arn);
    expect(doc['AccountId']).toBe('111122223333');
    expect(doc['Expiration']).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(doc['AccessKeyId']).toBe(chain.sts.issued.at(-1)!.accessKeyId);
    secrets.push(doc['SecretAccessKey']!, doc['Token']!);
  });

  it('decodes a percent-encoded ARN once, and answers HEAD like GET without a body', async () => {
    const token = await podToken({ pod: 'encoded' });
    const encoded = encodeURIComponent(APP);
    expect(encoded).toContain('%3A');
    const res = await askAgent(base, `/v1/credentials/${encoded}`, { token });
    expect(res.status).toBe(200);
    expect(chain.sts.requests.at(-1)!.roleArn).toBe(APP);
    const head = await askAgent(base, credentialsPath(APP), { token, method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.text).toBe('');
    // Decoded once only: %253A is the text "%3A", not a colon.
    const twice = await askAgent(base, `/v1/credentials/${encodeURIComponent(encoded)}`, { token });
    expect(twice.status).toBe(400);
  });

  it.each([
    ['an unknown partition', 'arn:gcp:iam::111122223333:role/app'],
    ['11 digits', 'arn:aws:iam::11112222333:role/app'],
    ['a user, not a role', 'arn:aws:iam::111122223333:user/app'],
    ['an empty name', 'arn:aws:iam::111122223333:role/'],
    ['a 65-character name', `arn:aws:iam::111122223333:role/${'n'.repeat(65)}`],
    ['a path with an empty segment', 'arn:aws:iam::111122223333:role/team//app'],
    ['no slash after role', 'arn:aws:iam::111122223333:roleapp'],
    ['a malformed escape', 'arn:aws:iam::111122223333:role/%zz'],
  ])('refuses %s with 400 ROLE_ARN_INVALID before STS', async (_why, arn) => {
    const before = chain.sts.calls;
    const res = await askAgent(base, `/v1/credentials/${arn}`, { token: await podToken() });
    expect(res.status).toBe(400);
    expect(json(res.text)['Code']).toBe('ROLE_ARN_INVALID');
    expect(chain.sts.calls).toBe(before);
  });

  it('answers 414 beyond 2048 characters, ROLE_ARN_MISSING on the bare path, 405 to other methods, 404 elsewhere', async () => {
    const token = await podToken();
    const long = `arn:aws:iam::111122223333:role/${'p/'.repeat(1010)}app`;
    expect(long.length).toBe(2054);
    expect((await askAgent(base, `/v1/credentials/${long}`, { token })).status).toBe(414);
    for (const path of ['/v1/credentials', '/v1/credentials/']) {
      const bare = await askAgent(base, path, { token });
      expect(bare.status).toBe(400);
      expect(json(bare.text)['Code']).toBe('ROLE_ARN_MISSING');
    }
    const post = await askAgent(base, credentialsPath(APP), { token, method: 'DELETE' });
    expect(post.status).toBe(405);
    expect(post.headers['allow']).toBe('GET, HEAD');
    expect((await askAgent(base, '/latest/meta-data/', { token })).status).toBe(404);
  });
});

describe('node-agent: tokens refused before STS', () => {
  const cases: Array<[string, () => Promise<string | undefined>, number, string]> = [
    ['no Authorization header', async () => undefined, 401, 'TOKEN_MISSING'],
    ['not a JWT', async () => 'not-a-jwt', 401, 'TOKEN_NOT_JWT'],
    [
      'alg none',
      async () => {
        const { payload } = decodeJwt(await podToken());
        return craftJwt({ alg: 'none', typ: 'JWT' }, payload);
      },
      401,
      'TOKEN_ALGORITHM',
    ],
    ['a truncated signature', async () => (await podToken()).slice(0, -10), 401, 'TOKEN_SIGNATURE_INCOMPLETE'],
    ['an expired token', () => podToken({ ttlSeconds: -120 }), 401, 'TOKEN_EXPIRED'],
    ['the wrong audience', () => podToken({ aud: 'pods.eks.amazonaws.com' }), 401, 'TOKEN_AUDIENCE'],
    [
      'an issuer not allowed',
      async () => {
        const { header, payload } = decodeJwt(await podToken());
        return craftJwt(header, { ...payload, iss: 'https://evil.example' });
      },
      401,
      'TOKEN_ISSUER',
    ],
    [
      'a legacy token without exp',
      async () => {
        const { header, payload } = decodeJwt(await podToken());
        const { exp: _exp, ...rest } = payload;
        return craftJwt(header, rest);
      },
      401,
      'TOKEN_NO_EXPIRY',
    ],
    [
      'a token issued in the future',
      async () => {
        const { header, payload } = decodeJwt(await podToken());
        return craftJwt(header, { ...payload, iat: Math.floor(Date.now() / 1000) + 3600, nbf: Math.floor(Date.now() / 1000) + 3600 });
      },
      401,
      'TOKEN_NOT_YET_VALID',
    ],
    [
      'a subject that is not a ServiceAccount',
      async () => {
        const { header, payload } = decodeJwt(await podToken());
        return craftJwt(header, { ...payload, sub: 'admin' });
      },
      401,
      'TOKEN_SUBJECT',
    ],
    ['a token bound to no pod', () => podToken({ unbound: true }), 401, 'TOKEN_NOT_POD_BOUND'],
    ['more than 16 KiB', async () => 'x'.repeat(16 * 1024 + 1), 400, 'TOKEN_TOO_LARGE'],
  ];

  it.each(cases)('refuses %s before STS, with its own code', async (_why, make, status, code) => {
    const token = await make();
    const before = chain.sts.calls;
    const res = await askAgent(base, credentialsPath(APP), token === undefined ? {} : { token });
    // Node's parser answers 431 itself when the whole header block passes 16 KiB.
    if (code === 'TOKEN_TOO_LARGE') expect([400, 431]).toContain(res.status);
    else {
      expect(res.status).toBe(status);
      expect(json(res.text)['Code']).toBe(code);
    }
    expect(chain.sts.calls).toBe(before);
  });

  it('refuses a role outside --allowed-role with 403 ROLE_NOT_ALLOWED before STS, though STS would trust it', async () => {
    const before = chain.sts.calls;
    const res = await askAgent(base, credentialsPath(FOREIGN), { token: await podToken() });
    expect(res.status).toBe(403);
    expect(json(res.text)['Code']).toBe('ROLE_NOT_ALLOWED');
    expect(chain.sts.calls).toBe(before);
  });

  it('accepts the token with a "Bearer " prefix as the same token (one STS call for both spellings)', async () => {
    const token = await podToken({ pod: 'bearer' });
    const before = chain.sts.calls;
    const raw = await askAgent(base, credentialsPath(APP), { token });
    const bearer = await askAgent(base, credentialsPath(APP), { token: `Bearer ${token}` });
    expect(raw.status).toBe(200);
    expect(bearer.text).toBe(raw.text);
    expect(chain.sts.calls).toBe(before + 1);
  });
});

describe('node-agent: one session per token, never shared', () => {
  it('gives two pods two STS sessions named <namespace>.<pod>, with different keys', async () => {
    const a = await podToken({ namespace: 'shop', pod: 'pod-a', serviceAccount: 'web' });
    const b = await podToken({ namespace: 'shop', pod: 'pod-b', serviceAccount: 'worker' });
    const before = chain.sts.issued.length;
    const resA = json((await askAgent(base, credentialsPath(APP), { token: a })).text);
    const resB = json((await askAgent(base, credentialsPath(APP), { token: b })).text);
    const issued = chain.sts.issued.slice(before);
    expect(issued.map((i) => i.sessionName)).toEqual(['shop.pod-a', 'shop.pod-b']);
    expect(issued.map((i) => i.subject)).toEqual(['system:serviceaccount:shop:web', 'system:serviceaccount:shop:worker']);
    expect(resA['AccessKeyId']).not.toBe(resB['AccessKeyId']);
    expect([resA['AccessKeyId'], resB['AccessKeyId']]).toEqual(issued.map((i) => i.accessKeyId));
    // Asked again: both from memory.
    expect(json((await askAgent(base, credentialsPath(APP), { token: a })).text)['AccessKeyId']).toBe(resA['AccessKeyId']);
    expect(chain.sts.issued.length).toBe(before + 2);
  });

  it('sends a forged token (same claims, another key) to STS, answers its refusal, never the cached credentials, and remembers it', async () => {
    const genuine = await podToken({ namespace: 'shop', pod: 'victim' });
    const served = json((await askAgent(base, credentialsPath(APP), { token: genuine })).text);
    const forged = await forgeToken(genuine);
    secrets.push(forged);
    expect(decodeJwt(forged).payload).toEqual(decodeJwt(genuine).payload);
    const before = chain.sts.calls;
    const first = await askAgent(base, credentialsPath(APP), { token: forged });
    expect(first.status).toBe(403);
    expect(json(first.text)['Code']).toBe('InvalidIdentityToken');
    expect(first.text).not.toContain(served['AccessKeyId']);
    expect(chain.sts.calls).toBe(before + 1);
    const again = await askAgent(base, credentialsPath(APP), { token: forged });
    expect(again.status).toBe(403);
    expect(json(again.text)['Code']).toBe('InvalidIdentityToken');
    expect(chain.sts.calls).toBe(before + 1);
    // The genuine pod is still served its own session from memory.
    expect(json((await askAgent(base, credentialsPath(APP), { token: genuine })).text)['AccessKeyId']).toBe(served['AccessKeyId']);
  });

  it('makes one STS call for 100 concurrent requests with one token (single flight)', async () => {
    const token = await podToken({ pod: 'busy' });
    // STS answers slowly, so every request arrives while the first call is on the wire.
    chain.sts.failNext({ kind: 'delay', ms: 500 });
    const before = chain.sts.calls;
    const answers = await Promise.all(Array.from({ length: 100 }, () => askAgent(base, credentialsPath(APP), { token })));
    expect(chain.sts.calls).toBe(before + 1);
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(new Set(answers.map((a) => json(a.text)['AccessKeyId'])).size).toBe(1);
  });
});

describe('node-agent: per-address limit on misses', () => {
  it('holds 1000 novel junk tokens from one address to burst + rate x time STS calls, while another address is served', async () => {
    const { header, payload } = decodeJwt(await podToken());
    const before = chain.sts.calls;
    const started = Date.now();
    const answers: Array<{ status: number; retryAfter: string | undefined }> = [];
    let neighbour: number | undefined;
    for (let batch = 0; batch < 50; batch++) {
      const junk = Array.from({ length: 20 }, (_, i) => craftJwt(header, { ...payload, jti: `junk-${batch}-${i}` }));
      const results = await Promise.all(junk.map((token) => askAgent(base, credentialsPath(APP), { token, localAddress: '127.0.0.9' })));
      for (const r of results) answers.push({ status: r.status, retryAfter: r.headers['retry-after'] as string | undefined });
      if (batch === 25) {
        // Mid-flood, a pod on another address with a genuine token.
        neighbour = (await askAgent(base, credentialsPath(APP), { token: await podToken({ pod: 'neighbour' }), localAddress: '127.0.0.10' })).status;
      }
    }
    const elapsedSeconds = (Date.now() - started) / 1000;
    const junkCalls = chain.sts.calls - before - 1; // the neighbour's one call
    expect(neighbour).toBe(200);
    expect(answers).toHaveLength(1000);
    expect(junkCalls).toBeGreaterThanOrEqual(20);
    expect(junkCalls).toBeLessThanOrEqual(20 + Math.ceil(5 * elapsedSeconds) + 1);
    const throttled = answers.filter((a) => a.status === 503);
    expect(throttled.length).toBe(1000 - junkCalls);
    expect(throttled.every((a) => Number(a.retryAfter) >= 1)).toBe(true);
    // Every junk token that did reach STS was refused there.
    expect(answers.filter((a) => a.status === 403)).toHaveLength(junkCalls);
  });
});

describe('node-agent: Host guard, admin listener, logs', () => {
  it('refuses a foreign Host with 403 before anything else', async () => {
    const before = chain.sts.calls;
    const res = await askAgent(base, credentialsPath(APP), { token: await podToken({ pod: 'rebinding' }), host: 'evil.example' });
    expect(res.status).toBe(403);
    expect(json(res.text)['Code']).toBe('HOST_FORBIDDEN');
    expect(chain.sts.calls).toBe(before);
  });

  it('answers /healthz, /readyz and /metrics with the node agent series', async () => {
    expect((await askAgent(agent.admin, '/healthz')).status).toBe(200);
    const ready = await askAgent(agent.admin, '/readyz');
    expect(ready.status).toBe(200);
    expect(json(ready.text)['ready']).toBe(true);
    const metrics = (await askAgent(agent.admin, '/metrics')).text;
    const value = (series: string) => Number(new RegExp(`^${series.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(metrics)?.[1]);
    expect(value('crosscred_node_agent_entries')).toBeGreaterThan(0);
    expect(value('crosscred_node_agent_cache_bytes')).toBeGreaterThan(0);
    expect(value('crosscred_node_agent_pods_served_total')).toBeGreaterThan(0);
    expect(value('crosscred_node_agent_sts_calls_total{outcome="success"}')).toBeGreaterThan(0);
    expect(value('crosscred_node_agent_sts_calls_total{outcome="terminal"}')).toBeGreaterThan(0);
    expect(value('crosscred_node_agent_refusals_total{reason="token_expired"}')).toBeGreaterThan(0);
    expect(value('crosscred_node_agent_refusals_total{reason="throttled"}')).toBeGreaterThan(0);
    expect(value('crosscred_node_agent_refusals_total{reason="host"}')).toBeGreaterThan(0);
    expect(value('crosscred_node_agent_evictions_total{cause="idle"}')).toBe(0);
    expect(metrics).not.toContain('111122223333');
  });

  it('never writes a token, secret key or session token to its log', async () => {
    // Wait for the log to catch up with the last request (pino writes asynchronously).
    await askAgent(base, credentialsPath(APP), {});
    await new Promise((resolve) => setTimeout(resolve, 200));
    const log = agent.output.join('\n');
    expect(log).toContain('request refused');
    expect(secrets.length).toBeGreaterThan(20);
    for (const secret of secrets) {
      expect(log).not.toContain(secret);
      // Nor the signature alone (the part that makes a token usable).
      if (secret.split('.').length === 3) expect(log).not.toContain(secret.split('.')[2]);
    }
  });

  it('stops gracefully on SIGTERM', async () => {
    expect(await agent.stop()).toBe(0);
    expect(agent.output.some((l) => l.includes('"stopped"'))).toBe(true);
  });
});

describe('node-agent: the command line', () => {
  it('prints its help with every default, and stops with 78 naming each missing setting', async () => {
    const help = await crosscred(['node-agent', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--allowed-issuer URL');
    expect(help.stdout).toContain('169.254.170.23:80');
    expect((await crosscred(['help'])).stdout).toContain('node-agent');
    const bad = await crosscred(['node-agent', '--listen', '127.0.0.1:0', '--rate-burst', 'many']);
    expect(bad.code).toBe(78);
    expect(bad.stderr).toContain('CROSSCRED_ERR_CONFIG_INVALID');
    expect(bad.stderr).toMatch(/--allowed-issuer: required[\s\S]*--region: required[\s\S]*--rate-burst/);
    const unknown = await crosscred(['node-agent', '--role-arn', 'x']);
    expect(unknown.code).toBe(2);
  });
});
