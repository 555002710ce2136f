import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Chain, type InProcessDaemon, startChain, startInProcess } from '../support/chain.js';

/**
 * The exchange against a misbehaving STS, through the real code path and real sockets. The
 * schedule's arithmetic is covered under a fake clock in test/unit; here each fault is injected
 * into the emulator and the daemon's visible behaviour is checked.
 */
let chain: Chain;
let d: InProcessDaemon | undefined;

beforeAll(async () => {
  chain = await startChain();
});
afterEach(async () => {
  chain.sts.heal();
  await d?.close();
  d = undefined;
});
afterAll(() => chain?.close());

const credentialsPath = '/latest/meta-data/iam/security-credentials/app';

async function imdsToken(base: string): Promise<string> {
  return (await request(`${base}/latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '60' } })).body.text();
}

async function imdsGet(base: string, path = credentialsPath) {
  const token = await imdsToken(base);
  const res = await request(`${base}${path}`, { headers: { 'x-aws-ec2-metadata-token': token } });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

async function readyz(admin: string) {
  const res = await request(`${admin}/readyz`);
  return {
    status: res.statusCode,
    body: (await res.body.json()) as { ready: boolean; roles: Array<{ lastError: { code: string; kind: string } | null; consecutiveFailures: number }> },
  };
}

describe('STS failures', () => {
  it('retries a 500 and then serves what the retry got', async () => {
    chain.sts.failNext({ kind: 'error', status: 500, code: 'InternalFailure' });
    const before = chain.sts.calls;
    d = await startInProcess(chain);
    await d.daemon.firstFetch;
    expect((await imdsGet(d.base)).status).toBe(503);
    // The first retry comes after 0.5–1 s of backoff.
    await waitFor(() => chain.sts.calls - before === 2, 5000);
    await waitFor(async () => (await imdsGet(d!.base)).status === 200, 2000);
    expect((await readyz(d.admin)).status).toBe(200);
  });

  it('treats Throttling and IDPCommunicationError as transient', async () => {
    chain.sts.failNext({ kind: 'error', status: 400, code: 'Throttling' }, { kind: 'error', status: 400, code: 'IDPCommunicationError' });
    d = await startInProcess(chain);
    await d.daemon.firstFetch;
    const status = (await readyz(d.admin)).body.roles[0]!;
    expect(status.lastError).toMatchObject({ kind: 'retryable', code: 'Throttling' });
    await waitFor(async () => (await readyz(d!.admin)).status === 200, 8000);
  });

  it('makes InvalidIdentityToken terminal: no retry storm, visible in /readyz, logs and metrics, 503 with Retry-After', async () => {
    chain.sts.failAlways({ kind: 'error', status: 400, code: 'InvalidIdentityToken' });
    const before = chain.sts.calls;
    d = await startInProcess(chain);
    await d.daemon.firstFetch;
    await new Promise((r) => setTimeout(r, 1500));
    expect(chain.sts.calls - before).toBe(1);
    const ready = await readyz(d.admin);
    expect(ready.status).toBe(503);
    expect(ready.body.roles[0]!.lastError).toMatchObject({ kind: 'terminal', code: 'InvalidIdentityToken' });
    const res = await imdsGet(d.base);
    expect(res.status).toBe(503);
    // Terminal errors are retried about every 5 minutes; Retry-After says so.
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(200);
    expect(d.logs.some((l) => l.includes('"code":"InvalidIdentityToken"') && l.includes('"level":"error"'))).toBe(true);
    const metrics = await (await request(`${d.admin}/metrics`)).body.text();
    expect(metrics).toMatch(/crosscred_sts_calls_total\{role="app",outcome="terminal",code="InvalidIdentityToken"\} 1/);
  });

  it('re-reads the token once and retries at once when STS says ExpiredToken', async () => {
    chain.sts.failNext({ kind: 'error', status: 400, code: 'ExpiredTokenException' });
    const before = chain.sts.calls;
    d = await startInProcess(chain);
    await d.daemon.firstFetch;
    expect(chain.sts.calls - before).toBe(2);
    expect((await imdsGet(d.base)).status).toBe(200);
  });

  it('gives up on a hanging STS after the response timeout and answers 503, not a hang', async () => {
    chain.sts.failAlways({ kind: 'hang' });
    d = await startInProcess(chain, { 'sts-timeout-ms': '300' });
    // While the first exchange hangs, a request waits only the cold-wait bound (400 ms): a client
    // that gives up after 1.5 s (the SDKs wait 1 s; slack for a loaded machine) still gets its 503.
    const res = await request(`${d.base}${credentialsPath}`, { headers: { 'x-aws-ec2-metadata-token': await imdsToken(d.base) }, headersTimeout: 1500 });
    expect(res.statusCode).toBe(503);
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    await res.body.dump();
    await d.daemon.firstFetch;
    expect((await readyz(d.admin)).body.roles[0]!.lastError?.kind).toBe('retryable');
  });

  it('retries garbage and refuses credentials that are already expired', async () => {
    chain.sts.failNext({ kind: 'garbage' }, { kind: 'lifetime', seconds: -10 });
    d = await startInProcess(chain);
    await d.daemon.firstFetch;
    expect((await imdsGet(d.base)).status).toBe(503);
    await waitFor(() => d!.daemon.roles.get('app')!.cache.status().consecutiveFailures >= 2, 5000);
    expect(d.logs.some((l) => l.includes('CROSSCRED_ERR_STS_BAD_RESPONSE'))).toBe(true);
    await waitFor(async () => (await imdsGet(d!.base)).status === 200, 8000);
  });

  it('does not serve credentials that expire within a minute', async () => {
    chain.sts.failAlways({ kind: 'lifetime', seconds: 30 });
    d = await startInProcess(chain);
    await d.daemon.firstFetch;
    expect((await imdsGet(d.base)).status).toBe(503);
  });
});

describe('cold start', () => {
  it('makes exactly one STS call for 500 simultaneous first requests, and answers every one', async () => {
    chain.sts.failNext({ kind: 'delay', ms: 200 });
    const before = chain.sts.calls;
    d = await startInProcess(chain, { 'allow-imdsv1': true });
    const base = d.base;
    const answers = await Promise.all(
      Array.from({ length: 500 }, () =>
        request(`${base}${credentialsPath}`).then(async (r) => {
          await r.body.text();
          return r.statusCode;
        }),
      ),
    );
    expect(chain.sts.calls - before).toBe(1);
    expect(answers.every((s) => s === 200)).toBe(true);
  });

  it('answers 503 with Retry-After within the bound when STS is slower than the SDKs wait', async () => {
    chain.sts.failNext({ kind: 'delay', ms: 2000 });
    d = await startInProcess(chain, { 'allow-imdsv1': true });
    const res = await request(`${d.base}${credentialsPath}`, { headersTimeout: 1500 });
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
    await res.body.dump();
    await d.daemon.firstFetch;
    const again = await request(`${d.base}${credentialsPath}`);
    expect(again.statusCode).toBe(200);
    await again.body.dump();
  });
});

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
