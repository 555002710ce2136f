import { X509Certificate } from 'node:crypto';
import { copyFile, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveWebhookConfig } from '../../src/webhook/webhook-config.js';
import { MAX_REVIEW_BYTES, type RunningWebhook, startWebhook } from '../../src/webhook/webhook-server.js';
import {
  admissionReview,
  applyAndValidate,
  barePod,
  changedOriginals,
  container,
  decodePatch,
  deploymentPod,
  envOf,
  type Json,
  postToWebhook,
  servedFingerprint,
} from '../support/admission-pods.js';
import { memoryLogger } from '../support/chain.js';
import { FakeKubeApiServer } from '../support/fake-kube-apiserver.js';
import { selfSignedCert } from '../support/self-signed.js';

/**
 * The webhook in this process, over real HTTPS on loopback, reading ServiceAccounts from the fake
 * API server (also real HTTPS, its own CA): research §7 tests 21 and 23, the hostile-input bounds
 * and the metrics.
 */

const ROLE = 'arn:aws:iam::111122223333:role/team/payments-api';
const WEBHOOK_BEARER = 'webhook-sa-token-abcdefghijklmnop';

let dir: string;
let kube: FakeKubeApiServer;
let webhook: RunningWebhook;
let ca: Buffer;
const { logger, lines } = memoryLogger('debug');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'crosscred-webhook-'));
  await selfSignedCert({ cn: 'crosscred-webhook', keyFile: join(dir, 'tls.key'), certFile: join(dir, 'tls.crt'), ips: ['127.0.0.1'] });
  ca = await readFile(join(dir, 'tls.crt'));
  await writeFile(join(dir, 'sa-token'), `${WEBHOOK_BEARER}\n`);
  kube = await FakeKubeApiServer.start({ bearer: WEBHOOK_BEARER });
  kube.addServiceAccount({ namespace: 'payments', name: 'payments-api', annotations: { 'crosscred.io/role-arn': ROLE } });
  const config = resolveWebhookConfig(
    {
      listen: '127.0.0.1:0',
      'admin-listen': '127.0.0.1:0',
      'tls-cert-file': join(dir, 'tls.crt'),
      'tls-key-file': join(dir, 'tls.key'),
      'kube-api-url': kube.url,
      'kube-token-file': join(dir, 'sa-token'),
      'kube-ca-file': kube.caFile,
      'service-account-cache-seconds': '300',
    },
    {},
  );
  webhook = await startWebhook(config, { logger });
});

afterAll(async () => {
  await webhook?.close();
  await kube?.close();
  await rm(dir, { recursive: true, force: true });
});

async function send(review: unknown): Promise<{ status: number; body: Json }> {
  const answer = await postToWebhook(webhook.address.port, ca, JSON.stringify(review));
  return { status: answer.status, body: JSON.parse(answer.text) as Json };
}

async function metrics(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${webhook.admin.port}/metrics`)).text();
}

function metricValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1));
}

describe('POST /mutate over HTTPS (test 23)', () => {
  it('echoes apiVersion, kind and uid, and answers a patch that applies and validates', async () => {
    const pod = deploymentPod();
    const { status, body } = await send(admissionReview(pod, { uid: 'e911857d-c318-11e8-bbad-025000000001' }));
    expect(status).toBe(200);
    expect(body['apiVersion']).toBe('admission.k8s.io/v1');
    expect(body['kind']).toBe('AdmissionReview');
    const response = body['response'] as { uid: string; allowed: boolean; patchType: string; patch: string };
    expect(response.uid).toBe('e911857d-c318-11e8-bbad-025000000001');
    expect(response.allowed).toBe(true);
    expect(response.patchType).toBe('JSONPatch');
    const after = applyAndValidate(pod, decodePatch(response));
    expect(changedOriginals(pod, after)).toEqual([]);
    expect(envOf(container(after, 'app'))['AWS_CONTAINER_CREDENTIALS_FULL_URI']).toBe(`http://169.254.170.23/v1/credentials/${ROLE}`);
  });

  it('answers 415 to another Content-Type, 405 to GET, 404 elsewhere', async () => {
    const body = JSON.stringify(admissionReview(barePod()));
    const wrongType = await postToWebhook(webhook.address.port, ca, body, { contentType: 'application/yaml' });
    expect(wrongType.status).toBe(415);
    expect(wrongType.text).toMatch(/application\/json/);
    expect((await postToWebhook(webhook.address.port, ca, '', { method: 'GET' })).status).toBe(405);
    expect((await postToWebhook(webhook.address.port, ca, body, { path: '/validate' })).status).toBe(404);
  });

  it(`answers 413 to a body over ${MAX_REVIEW_BYTES} bytes, declared or sent`, async () => {
    const declared = await postToWebhook(webhook.address.port, ca, '{}', { declaredLength: MAX_REVIEW_BYTES + 1 });
    expect(declared.status).toBe(413);
    const sent = await postToWebhook(webhook.address.port, ca, Buffer.alloc(MAX_REVIEW_BYTES + 1, 0x20));
    expect(sent.status).toBe(413);
  });

  it('answers a hostile or malformed review 400 with the reason, and keeps serving', async () => {
    const deep = `${'['.repeat(5_000)}${']'.repeat(5_000)}`;
    const manyContainers = barePod();
    (manyContainers['spec'] as Json)['containers'] = Array.from({ length: 5_000 }, (_, i) => ({ name: `c${i}`, image: 'x' }));
    const oddTypes = barePod();
    (oddTypes['spec'] as Json)['containers'] = 'all of them';
    const cases: Array<[string, string | unknown, RegExp]> = [
      ['not JSON', '{"apiVersion":', /not JSON/],
      ['deep nesting', `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":${deep}}}`, /nests deeper than/],
      ['v1beta1', { ...admissionReview(barePod()), apiVersion: 'admission.k8s.io/v1beta1' }, /apiVersion/],
      ['no uid', { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { kind: { group: '', version: 'v1', kind: 'Pod' } } }, /request\.uid/],
      ['5,000 containers', admissionReview(manyContainers), /spec\.containers/],
      ['containers a string', admissionReview(oddTypes), /spec\.containers/],
      ['annotations not strings', admissionReview({ ...barePod(), metadata: { annotations: { a: 1 } } }), /metadata\.annotations/],
      ['an array', [1, 2, 3], /expected object/],
    ];
    for (const [what, review, reason] of cases) {
      const answer = await postToWebhook(webhook.address.port, ca, typeof review === 'string' ? review : JSON.stringify(review));
      expect(answer.status, what).toBe(400);
      expect(JSON.parse(answer.text).Message, what).toMatch(reason);
    }
    expect((await send(admissionReview(barePod()))).status).toBe(200);
  });

  it('answers any JSON, as the review or as its Pod, with 200 or 400 and never fails', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue({ maxDepth: 6 }), fc.boolean(), async (value, asPod) => {
        const body = asPod ? admissionReview(value) : value;
        const answer = await postToWebhook(webhook.address.port, ca, JSON.stringify(body));
        expect([200, 400]).toContain(answer.status);
        if (answer.status === 200) expect((JSON.parse(answer.text) as Json)['kind']).toBe('AdmissionReview');
      }),
      { numRuns: 60 },
    );
    expect((await send(admissionReview(barePod()))).status).toBe(200);
  });

  it('allows what is not a Pod CREATE without a patch', async () => {
    const { body } = await send(admissionReview(deploymentPod(), { operation: 'DELETE' }));
    expect(body['response']).toEqual({ uid: '705ab4f5-6393-11e8-b7cc-42010a800002', allowed: true });
  });
});

describe('ServiceAccount lookups (test 21)', () => {
  it('reads a ServiceAccount live once, then from the cache', async () => {
    kube.addServiceAccount({ namespace: 'payments', name: 'cached', annotations: { 'crosscred.io/role-arn': ROLE } });
    const pod = deploymentPod({ serviceAccountName: 'cached' });
    const reads = kube.serviceAccountReads;
    const before = await metrics();
    for (let i = 0; i < 3; i++) expect(((await send(admissionReview(pod))).body['response'] as Json)['patchType']).toBe('JSONPatch');
    expect(kube.serviceAccountReads - reads).toBe(1);
    const after = await metrics();
    const series = (source: string) => `crosscred_webhook_service_account_lookups_total{source="${source}"}`;
    expect(metricValue(after, series('live')) - metricValue(before, series('live'))).toBe(1);
    expect(metricValue(after, series('cache')) - metricValue(before, series('cache'))).toBe(2);
    // The reader authenticated with the webhook's own token, from its file.
    expect(kube.requests.at(-1)?.authorization).toBe(`Bearer ${WEBHOOK_BEARER}`);
  });

  it('denies a pod whose ServiceAccount does not exist, and finds it live once it is created (IRSA webhook #174)', async () => {
    const pod = deploymentPod({ serviceAccountName: 'created-late' });
    const first = (await send(admissionReview(pod))).body['response'] as { allowed: boolean; status: { message: string } };
    expect(first.allowed).toBe(false);
    expect(first.status.message).toMatch(/ServiceAccount payments\/created-late does not exist/);
    kube.addServiceAccount({ namespace: 'payments', name: 'created-late', annotations: { 'eks.amazonaws.com/role-arn': ROLE } });
    const second = (await send(admissionReview(pod))).body['response'] as Json;
    expect(second['allowed']).toBe(true);
    expect(envOf(container(applyAndValidate(pod, decodePatch(second)), 'app'))['AWS_CONTAINER_CREDENTIALS_FULL_URI']).toContain(ROLE);
  });

  it('denies, so that the pod is retried, while the API server fails or does not answer within 2 s', async () => {
    const pod = deploymentPod({ serviceAccountName: 'never-seen' });
    try {
      kube.respond({ kind: 'status', status: 500 });
      const failed = (await send(admissionReview(pod))).body['response'] as { allowed: boolean; status: { code: number; message: string } };
      expect(failed.allowed).toBe(false);
      expect(failed.status.code).toBe(503);
      expect(failed.status.message).toMatch(/cannot read ServiceAccount payments\/never-seen.*HTTP 500/);
      kube.respond({ kind: 'hang' });
      const hung = (await send(admissionReview(pod))).body['response'] as { allowed: boolean; status: { message: string } };
      expect(hung.allowed).toBe(false);
      expect(hung.status.message).toMatch(/no complete answer within 2000 ms/);
    } finally {
      kube.respond();
    }
    expect(metricValue(await metrics(), 'crosscred_webhook_admissions_total{result="unavailable"}')).toBeGreaterThanOrEqual(2);
  });
});

describe('the admin listener', () => {
  it('serves /healthz, /readyz and the webhook metrics, and no secret reaches the log', async () => {
    expect((await fetch(`http://127.0.0.1:${webhook.admin.port}/healthz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${webhook.admin.port}/readyz`)).status).toBe(200);
    const text = await metrics();
    expect(metricValue(text, 'crosscred_webhook_admissions_total{result="mutated"}')).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'crosscred_webhook_admissions_total{result="invalid"}')).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'crosscred_webhook_admissions_total{result="ignored"}')).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'crosscred_webhook_admission_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(lines.join('\n')).not.toContain(WEBHOOK_BEARER);
    expect(lines.join('\n')).toContain('pod mutated');
    // The serving certificate is the one given.
    expect(new X509Certificate(ca).subject).toContain('crosscred-webhook');
  });
});

describe('certificate files changed in place', () => {
  it('keeps the served certificate while the files do not match, and installs the pair once they do', async () => {
    const served = await servedFingerprint(webhook.address.port);
    expect(served).toBe(new X509Certificate(ca).fingerprint256);
    const reloads = webhook.tlsReloads();
    await selfSignedCert({ cn: 'next', keyFile: join(dir, 'next.key'), certFile: join(dir, 'next.crt'), ips: ['127.0.0.1'] });
    // The certificate first, as a hand edit might: it does not match the old key.
    await copyFile(join(dir, 'next.crt'), join(dir, 'tls.crt.tmp'));
    await rename(join(dir, 'tls.crt.tmp'), join(dir, 'tls.crt'));
    const deadline = Date.now() + 30_000;
    while (!lines.some((l) => l.includes('not a usable pair')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(lines.some((l) => l.includes('not a usable pair'))).toBe(true);
    expect(await servedFingerprint(webhook.address.port)).toBe(served);
    expect(webhook.tlsReloads()).toBe(reloads);
    await copyFile(join(dir, 'next.key'), join(dir, 'tls.key.tmp'));
    await rename(join(dir, 'tls.key.tmp'), join(dir, 'tls.key'));
    const next = new X509Certificate(await readFile(join(dir, 'next.crt'))).fingerprint256;
    while ((await servedFingerprint(webhook.address.port)) !== next && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await servedFingerprint(webhook.address.port)).toBe(next);
    expect(webhook.tlsReloads()).toBe(reloads + 1);
  });
});
