import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveWebhookConfig } from '../../src/webhook/webhook-config.js';
import { type RunningWebhook, startWebhook } from '../../src/webhook/webhook-server.js';
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
} from '../support/admission-pods.js';
import { memoryLogger } from '../support/chain.js';
import { FakeKubeApiServer } from '../support/fake-kube-apiserver.js';
import { selfSignedCert } from '../support/self-signed.js';

/**
 * Roles in Alibaba Cloud and Tencent Cloud through the real webhook server over HTTPS, reading the
 * ServiceAccounts' annotations from the fake API server: each answer's patch applied with
 * fast-json-patch, validated with kubernetes-models, every original field kept.
 */

const AWS_ROLE = 'arn:aws:iam::111122223333:role/team/payments-api';
const RAM_ROLE = 'acs:ram::1234567890123456:role/payments-oss';
const RAM_PROVIDER = 'acs:ram::1234567890123456:oidc-provider/eks-cluster';
const CAM_ROLE = 'qcs::cam::uin/100012345678:roleName/payments-cos';
const BEARER = 'webhook-sa-token-abcdefghijklmnop';
const IMAGE = 'registry.example.com/crosscred:1.0.0';

const ALIBABA = { 'crosscred.io/alibaba-role-arn': RAM_ROLE, 'crosscred.io/alibaba-oidc-provider-arn': RAM_PROVIDER };
const TENCENT = { 'crosscred.io/tencent-role-arn': CAM_ROLE, 'crosscred.io/tencent-provider-id': 'eks-cluster', 'crosscred.io/tencent-region': 'ap-guangzhou' };

let dir: string;
let kube: FakeKubeApiServer;
let ca: Buffer;
const webhooks: RunningWebhook[] = [];

async function startOne(flags: Record<string, string>): Promise<RunningWebhook> {
  const config = resolveWebhookConfig(
    {
      listen: '127.0.0.1:0',
      'admin-listen': '127.0.0.1:0',
      'tls-cert-file': join(dir, 'tls.crt'),
      'tls-key-file': join(dir, 'tls.key'),
      'kube-api-url': kube.url,
      'kube-token-file': join(dir, 'sa-token'),
      'kube-ca-file': kube.caFile,
      ...flags,
    },
    {},
  );
  const running = await startWebhook(config, { logger: memoryLogger('debug').logger });
  webhooks.push(running);
  return running;
}

let webhook: RunningWebhook;
let imageless: RunningWebhook;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'crosscred-webhook-clouds-'));
  await selfSignedCert({ cn: 'crosscred-webhook', keyFile: join(dir, 'tls.key'), certFile: join(dir, 'tls.crt'), ips: ['127.0.0.1'] });
  ca = await readFile(join(dir, 'tls.crt'));
  await writeFile(join(dir, 'sa-token'), `${BEARER}\n`);
  kube = await FakeKubeApiServer.start({ bearer: BEARER });
  kube.addServiceAccount({ namespace: 'payments', name: 'alibaba', annotations: ALIBABA });
  kube.addServiceAccount({ namespace: 'payments', name: 'tencent', annotations: TENCENT });
  kube.addServiceAccount({ namespace: 'payments', name: 'three', annotations: { 'crosscred.io/role-arn': AWS_ROLE, ...ALIBABA, ...TENCENT } });
  kube.addServiceAccount({ namespace: 'payments', name: 'half-alibaba', annotations: { 'crosscred.io/alibaba-role-arn': RAM_ROLE } });
  kube.addServiceAccount({ namespace: 'payments', name: 'aws', annotations: { 'crosscred.io/role-arn': AWS_ROLE } });
  webhook = await startOne({ 'sidecar-image': IMAGE });
  imageless = await startOne({});
}, 60_000);

afterAll(async () => {
  for (const w of webhooks) await w.close();
  await kube?.close();
  await rm(dir, { recursive: true, force: true });
});

async function send(target: RunningWebhook, pod: Json): Promise<Json> {
  const answer = await postToWebhook(target.address.port, ca, JSON.stringify(admissionReview(pod)));
  expect(answer.status).toBe(200);
  return (JSON.parse(answer.text) as Json)['response'] as Json;
}

function withoutOurSidecars(after: Json): Json {
  const copy = structuredClone(after);
  const spec = copy['spec'] as Json;
  spec['initContainers'] = (spec['initContainers'] as Json[]).filter((c) => !String(c['name']).startsWith('crosscred'));
  return copy;
}

describe('POST /mutate with other clouds’ roles', () => {
  it('gives an Alibaba ServiceAccount’s pod the crosscred-alibaba sidecar and the URI variables', async () => {
    const pod = deploymentPod({ serviceAccountName: 'alibaba' });
    const response = await send(webhook, pod);
    expect(response['patchType']).toBe('JSONPatch');
    const after = applyAndValidate(pod, decodePatch(response as { patch: string }));
    expect(changedOriginals(pod, withoutOurSidecars(after))).toEqual([]);
    expect(envOf(container(after, 'app'))['ALIBABA_CLOUD_CREDENTIALS_URI']).toBe('http://127.0.0.1:8172/v1/alibaba/credentials');
    expect(envOf(container(after, 'crosscred-alibaba'))['ALIBABA_CLOUD_ROLE_ARN']).toBe(RAM_ROLE);
    expect(((after['metadata'] as Json)['annotations'] as Json)['crosscred.io/injected']).toBe('alibaba');
  });

  it('gives a Tencent ServiceAccount’s pod the crosscred-tencent sidecar, the hosts entry and the sysctl', async () => {
    const pod = deploymentPod({ serviceAccountName: 'tencent' });
    const after = applyAndValidate(pod, decodePatch((await send(webhook, pod)) as { patch: string }));
    expect(changedOriginals(pod, withoutOurSidecars(after))).toEqual([]);
    expect((after['spec'] as Json)['hostAliases']).toEqual([{ ip: '127.0.0.1', hostnames: ['metadata.tencentyun.com'] }]);
    expect(((after['spec'] as Json)['securityContext'] as Json)['sysctls']).toEqual([{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }]);
    expect(container(after, 'crosscred-tencent')['args']).toContain('127.0.0.1:80');
  });

  it('injects three clouds in one patch, and answers the patched pod (a reinvocation) with no patch', async () => {
    const pod = barePod();
    (pod['spec'] as Json)['serviceAccountName'] = 'three';
    const response = await send(webhook, pod);
    const after = applyAndValidate(pod, decodePatch(response as { patch: string }));
    expect(((after['metadata'] as Json)['annotations'] as Json)['crosscred.io/injected']).toBe('agent,alibaba,tencent');
    const env = envOf(container(after, 'main'));
    expect(Object.keys(env).sort()).toEqual([
      'ALIBABA_CLOUD_CREDENTIALS_URI',
      'ALIBABA_CLOUD_ECS_METADATA_DISABLED',
      'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE',
      'AWS_CONTAINER_CREDENTIALS_FULL_URI',
    ]);
    const again = await send(webhook, after);
    expect(again['allowed']).toBe(true);
    expect(again['patch']).toBeUndefined();
  });

  it('denies an incomplete Alibaba annotation, and an other-cloud role when the webhook has no --sidecar-image', async () => {
    const half = await send(webhook, deploymentPod({ serviceAccountName: 'half-alibaba' }));
    expect(half['allowed']).toBe(false);
    expect((half['status'] as Json)['message']).toMatch(/missing crosscred\.io\/alibaba-oidc-provider-arn/);
    for (const account of ['alibaba', 'tencent', 'three']) {
      const denied = await send(imageless, deploymentPod({ serviceAccountName: account }));
      expect(denied['allowed'], account).toBe(false);
      expect((denied['status'] as Json)['message']).toMatch(/--sidecar-image/);
    }
    // An AWS role alone in agent mode still needs no image.
    expect((await send(imageless, deploymentPod({ serviceAccountName: 'aws' })))['patchType']).toBe('JSONPatch');
  });

  it('answers every generated pod of a three-cloud ServiceAccount with a patch that applies and validates, or a reasoned denial', async () => {
    const portArb = fc.constantFrom(undefined, 8080, 80, 8172, 8174);
    await fc.assert(
      fc.asyncProperty(portArb, fc.boolean(), fc.boolean(), async (port, aliases, hostNetwork) => {
        const pod = deploymentPod({ serviceAccountName: 'three', hostNetwork });
        const spec = pod['spec'] as Json;
        if (port !== undefined) ((spec['containers'] as Json[])[0]!['ports'] as Json[]).push({ containerPort: port });
        if (aliases) spec['hostAliases'] = [{ ip: '10.0.0.9', hostnames: ['cache.internal'] }];
        const response = await send(webhook, pod);
        if (response['allowed'] === false) {
          expect(hostNetwork || [80, 8172, 8174].includes(port ?? 0)).toBe(true);
          return;
        }
        const after = applyAndValidate(pod, decodePatch(response as { patch: string }));
        expect(changedOriginals(pod, withoutOurSidecars(after))).toEqual([]);
      }),
      { numRuns: 30 },
    );
  });
});
