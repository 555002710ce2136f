import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Chain, type InProcessDaemon, startChain, startInProcess } from '../support/chain.js';

let chain: Chain;
let d: InProcessDaemon;
let jwt: string;
let authSecret: string;
const imdsTokens: string[] = [];
let served: Record<string, string>;

beforeAll(async () => {
  chain = await startChain();
  jwt = await chain.writeToken();
  d = await startInProcess(chain, { 'auth-token-file': join(chain.dir, 'auth'), 'log-level': 'trace' });
  await d.daemon.firstFetch;
  authSecret = await readFile(join(chain.dir, 'auth'), 'utf8');
  // Exercise every path that touches a secret, including the failing ones.
  for (let i = 0; i < 3; i++) {
    const token = await (await request(`${d.base}/latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '60' } })).body.text();
    imdsTokens.push(token);
    served = (await (
      await request(`${d.base}/latest/meta-data/iam/security-credentials/app`, { headers: { 'x-aws-ec2-metadata-token': token } })
    ).body.json()) as Record<string, string>;
  }
  await (
    await request(`${d.base}/latest/meta-data/iam/security-credentials/app`, { headers: { 'x-aws-ec2-metadata-token': `${imdsTokens[0]}x` } })
  ).body.dump();
  await (await request(`${d.base}/v1/credentials`, { headers: { authorization: `${authSecret}x` } })).body.dump();
  await (await request(`${d.base}/v1/credentials`, { headers: { authorization: authSecret } })).body.dump();
  await (await request(`${d.base}/v1/credentials`, { headers: { authorization: authSecret, host: 'evil.example' } })).body.dump();
  // A refresh that fails (terminal) and one that succeeds, so error paths log too.
  chain.sts.failNext({ kind: 'error', status: 403, code: 'AccessDenied' });
  await d.daemon.roles.get('app')!.cache.refreshNow();
  await d.daemon.roles.get('app')!.cache.refreshNow();
});
afterAll(async () => {
  await d?.close();
  await chain?.close();
});

describe('admin endpoints', () => {
  it('reports alive and ready, with per-role detail', async () => {
    expect((await request(`${d.admin}/healthz`)).statusCode).toBe(200);
    const ready = await request(`${d.admin}/readyz`);
    expect(ready.statusCode).toBe(200);
    const body = (await ready.body.json()) as { ready: boolean; roles: Array<{ role: string; expiresInSeconds: number }> };
    expect(body.ready).toBe(true);
    expect(body.roles[0]!.role).toBe('app');
    expect(body.roles[0]!.expiresInSeconds).toBeGreaterThan(3000);
  });

  it('exports Prometheus metrics: requests by route and status, STS calls by outcome, expiry and refresh latency', async () => {
    const text = await (await request(`${d.admin}/metrics`)).body.text();
    expect(text).toMatch(/crosscred_http_requests_total\{route="\/latest\/meta-data\/iam\/security-credentials\/:role",status="200"\} 3/);
    expect(text).toMatch(/crosscred_http_requests_total\{route="\/latest\/meta-data\/iam\/security-credentials\/:role",status="401"\} 1/);
    expect(text).toMatch(/crosscred_http_requests_total\{route="\/v1\/credentials",status="403"\} 2/);
    expect(text).toMatch(/crosscred_sts_calls_total\{role="app",outcome="success",code=""\} 2/);
    expect(text).toMatch(/crosscred_sts_calls_total\{role="app",outcome="terminal",code="AccessDenied"\} 1/);
    expect(text).toMatch(/crosscred_credentials_expiry_seconds\{role="app"\} \d{4}/);
    expect(text).toMatch(/crosscred_refresh_duration_seconds_count\{role="app"\} 3/);
    expect(text).toMatch(/crosscred_role_ready\{role="app"\} 1/);
  });
});

describe('secret hygiene', () => {
  it('never writes a secret to any log line, at trace level, on success and failure paths', async () => {
    await new Promise((r) => setTimeout(r, 100));
    const secrets = {
      jwt,
      jwtSignature: jwt.split('.')[2]!,
      accessKeyId: served['AccessKeyId']!,
      secretAccessKey: served['SecretAccessKey']!,
      sessionToken: served['Token']!,
      sessionTokenStart: served['Token']!.slice(0, 40),
      authSecret,
      ...Object.fromEntries(imdsTokens.map((t, i) => [`imdsToken${i}`, t])),
      ...Object.fromEntries(chain.sts.issued.map((c, i) => [`issuedKey${i}`, c.accessKeyId])),
    };
    expect(d.logs.length).toBeGreaterThan(5);
    for (const [name, value] of Object.entries(secrets)) {
      expect(value.length, name).toBeGreaterThan(10);
      const hits = d.logs.filter((l) => l.includes(value));
      expect(hits, `${name} appears in the log`).toEqual([]);
    }
  });

  it('never puts a secret into metrics', async () => {
    const text = await (await request(`${d.admin}/metrics`)).body.text();
    for (const value of [jwt, served['AccessKeyId']!, served['SecretAccessKey']!, served['Token']!, authSecret, ...imdsTokens]) {
      expect(text.includes(value)).toBe(false);
    }
  });
});
