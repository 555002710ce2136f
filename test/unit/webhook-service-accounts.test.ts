import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubernetesApiError, ServiceAccountReader } from '../../src/platform/kubernetes/service-accounts.js';
import { FakeClock } from '../support/fake-clock.js';
import { FakeKubeApiServer, makeUnrelatedCa } from '../support/fake-kube-apiserver.js';

/**
 * The ServiceAccount reader against the fake API server (real HTTPS, its own CA), with a fake
 * clock for the cache's time to live.
 */

const BEARER = 'reader-token-0123456789abcdef';
let dir: string;
let kube: FakeKubeApiServer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'crosscred-sa-reader-'));
  await writeFile(join(dir, 'token'), `${BEARER}\n`);
  kube = await FakeKubeApiServer.start({ bearer: BEARER });
  kube.addServiceAccount({ namespace: 'team-a', name: 'app', annotations: { 'crosscred.io/role-arn': 'arn:aws:iam::111122223333:role/a' } });
});
afterAll(async () => {
  await kube?.close();
  await rm(dir, { recursive: true, force: true });
});

function reader(clock: FakeClock, options: { cacheSeconds?: number; caFile?: string; maxEntries?: number } = {}): ServiceAccountReader {
  return new ServiceAccountReader({
    apiServer: kube.url,
    tokenFile: join(dir, 'token'),
    caFile: options.caFile ?? kube.caFile,
    cacheSeconds: options.cacheSeconds ?? 30,
    requestTimeoutMs: 2_000,
    clock,
    ...(options.maxEntries !== undefined ? { maxEntries: options.maxEntries } : {}),
  });
}

describe('ServiceAccountReader', () => {
  it('reads live, answers from the cache within the TTL, and live again after it', async () => {
    const clock = new FakeClock();
    const r = reader(clock);
    try {
      const reads = kube.serviceAccountReads;
      const first = await r.get('team-a', 'app');
      expect(first).toMatchObject({ found: true, source: 'live', account: { annotations: { 'crosscred.io/role-arn': 'arn:aws:iam::111122223333:role/a' } } });
      expect((await r.get('team-a', 'app')).source).toBe('cache');
      await clock.advance(29_000);
      expect((await r.get('team-a', 'app')).source).toBe('cache');
      await clock.advance(2_000);
      expect((await r.get('team-a', 'app')).source).toBe('live');
      expect(kube.serviceAccountReads - reads).toBe(2);
    } finally {
      await r.close();
    }
  });

  it('shares one GET among concurrent misses, and does not cache a 404', async () => {
    const clock = new FakeClock();
    const r = reader(clock);
    try {
      const reads = kube.serviceAccountReads;
      const answers = await Promise.all(Array.from({ length: 20 }, () => r.get('team-a', 'app')));
      expect(answers.every((a) => a.found)).toBe(true);
      expect(kube.serviceAccountReads - reads).toBe(1);
      expect(await r.get('team-a', 'late')).toEqual({ found: false, source: 'live' });
      kube.addServiceAccount({ namespace: 'team-a', name: 'late' });
      expect(await r.get('team-a', 'late')).toMatchObject({ found: true, source: 'live', account: { annotations: {} } });
    } finally {
      await r.close();
    }
  });

  it('holds at most maxEntries ServiceAccounts, dropping the oldest', async () => {
    const clock = new FakeClock();
    const r = reader(clock, { maxEntries: 2 });
    try {
      for (const name of ['one', 'two', 'three']) kube.addServiceAccount({ namespace: 'team-b', name });
      for (const name of ['one', 'two', 'three']) await r.get('team-b', name);
      expect(r.size).toBe(2);
      expect((await r.get('team-b', 'one')).source).toBe('live');
      expect((await r.get('team-b', 'three')).source).toBe('cache');
    } finally {
      await r.close();
    }
  });

  it('throws a KubernetesApiError without the token for a refusal, a wrong CA and garbage', async () => {
    const clock = new FakeClock();
    const r = reader(clock, { cacheSeconds: 0 });
    const wrongCa = reader(clock, { caFile: await makeUnrelatedCa(dir) });
    try {
      kube.respond({ kind: 'status', status: 403, message: `forbidden for ${BEARER}` });
      const refused = await r.get('team-a', 'app').catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(KubernetesApiError);
      expect((refused as Error).message).toMatch(/HTTP 403 Forbidden \(check the webhook ServiceAccount may get serviceaccounts\)/);
      expect((refused as Error).message).not.toContain(BEARER);
      kube.respond({ kind: 'raw', status: 200, body: '<html>proxy</html>', contentType: 'text/html' });
      await expect(r.get('team-a', 'app')).rejects.toThrow(/not a ServiceAccount/);
      kube.respond();
      await expect(wrongCa.get('team-a', 'app')).rejects.toThrow(/could not reach the Kubernetes API .*(SELF_SIGNED|UNABLE_TO_VERIFY|CERT)/);
    } finally {
      kube.respond();
      await r.close();
      await wrongCa.close();
    }
  });
});

describe('the fake API server ServiceAccount list (for tests that list)', () => {
  it('lists a namespace and all namespaces, added ServiceAccounts included', async () => {
    const dispatcher = new Agent({ connect: { ca: await readFile(kube.caFile, 'utf8') } });
    try {
      kube.addServiceAccount({ namespace: 'team-c', name: 'listed', annotations: { 'crosscred.io/mode': 'sidecar' } });
      const get = async (path: string) => {
        const res = await request(`${kube.url}${path}`, { headers: { authorization: `Bearer ${BEARER}` }, dispatcher });
        return { status: res.statusCode, body: (await res.body.json()) as { kind: string; items: Array<{ metadata: { namespace: string; name: string } }> } };
      };
      const inNamespace = await get('/api/v1/namespaces/team-c/serviceaccounts');
      expect(inNamespace.status).toBe(200);
      expect(inNamespace.body.kind).toBe('ServiceAccountList');
      expect(inNamespace.body.items.map((i) => i.metadata.name)).toEqual(['listed']);
      const all = await get('/api/v1/serviceaccounts');
      expect(all.body.items.map((i) => `${i.metadata.namespace}/${i.metadata.name}`)).toContain('team-a/app');
      expect(all.body.items.length).toBeGreaterThan(1);
      const res = await request(`${kube.url}/api/v1/serviceaccounts`, { dispatcher });
      await res.body.dump();
      expect(res.statusCode).toBe(401);
    } finally {
      await dispatcher.close();
    }
  });
});
