import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DaemonProcess, roleArn, spawnDaemon, waitUntilReady } from '../support/chain.js';
import { CLIENTS, clientAvailable, clientEnv, runClient } from '../support/clients.js';
import { FAKE_KUBE_ISSUER, FakeKubeApiServer } from '../support/fake-kube-apiserver.js';
import { startMoto } from '../support/moto.js';

/**
 * crosscred as a sidecar in a pod that has no projected token for AWS: given only the role ARN, it
 * finds the in-cluster API server and the mounted ServiceAccount, requests a token for the AWS
 * audience bound to the pod, exchanges it at an STS we did not write (moto), and an unmodified AWS
 * CLI then uses the credentials it serves.
 */
let kube: FakeKubeApiServer;
let moto: { url: string; close(): void } | undefined;
let daemon: DaemonProcess | undefined;
let dir: string;
let saToken: string;

beforeAll(async () => {
  const { privateKey } = await generateKeyPair('ES256');
  saToken = await new SignJWT({ 'kubernetes.io': { namespace: 'payments', serviceaccount: { name: 'api', uid: 'sa-uid' } } })
    .setProtectedHeader({ alg: 'ES256', kid: 'kubelet' })
    .setIssuer(FAKE_KUBE_ISSUER)
    .setSubject('system:serviceaccount:payments:api')
    .setAudience(FAKE_KUBE_ISSUER)
    .setExpirationTime('1h')
    .sign(privateKey);
  kube = await FakeKubeApiServer.start({ bearer: saToken });
  moto = await startMoto();
  if (!moto) return;
  dir = await mkdtemp(join(tmpdir(), 'crosscred-pod-'));
  // The ServiceAccount mount, as the kubelet lays it out.
  await writeFile(join(dir, 'token'), saToken);
  await writeFile(join(dir, 'ca.crt'), await readFile(kube.caFile));
  await writeFile(join(dir, 'namespace'), 'payments');
  const port = new URL(kube.url).port;
  daemon = await spawnDaemon(['--listen', '127.0.0.1:0', '--role-arn', roleArn('pod-app'), '--kubernetes-sa-dir', dir, '--sts-endpoint', moto.url], {
    KUBERNETES_SERVICE_HOST: '127.0.0.1',
    KUBERNETES_SERVICE_PORT: port,
    POD_NAME: 'api-6d4f9',
    POD_UID: '3f1c0de2-77aa-4b1e-9f00-5a1b2c3d4e5f',
  });
  await waitUntilReady(daemon.admin);
}, 60_000);

afterAll(async () => {
  if (daemon) expect(await daemon.stop()).toBe(0);
  moto?.close();
  await kube?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('in a pod with only AWS_ROLE_ARN', () => {
  it('detects the Kubernetes TokenRequest source and says why at start-up', (ctx) => {
    if (!moto) ctx.skip('moto_server is not installed');
    const line = daemon!.output.find((l) => l.includes('"token source: Kubernetes TokenRequest'));
    expect(line).toContain('for payments/api (audience sts.amazonaws.com)');
    expect(line).toContain('running in Kubernetes as serviceaccount payments/api');
  });

  it("asks the API server for a token with the AWS audience, bound to the pod, with the pod's own credentials", (ctx) => {
    if (!moto) ctx.skip('moto_server is not installed');
    expect(kube.requests.length).toBe(1);
    expect(kube.rejections).toEqual([]);
    expect(kube.requests[0]!.authorization).toBe(`Bearer ${saToken}`);
    expect(kube.requests[0]!.path).toBe('/api/v1/namespaces/payments/serviceaccounts/api/token');
    expect(kube.lastBody).toMatchObject({
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: {
        audiences: ['sts.amazonaws.com'],
        expirationSeconds: 3600,
        boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: 'api-6d4f9', uid: '3f1c0de2-77aa-4b1e-9f00-5a1b2c3d4e5f' },
      },
    });
  });

  it('serves credentials from that exchange that the AWS CLI uses against STS', async (ctx) => {
    if (!moto) ctx.skip('moto_server is not installed');
    if (!(await clientAvailable(CLIENTS.awsCliV1))) ctx.skip("the image's AWS CLI v1 is not installed");
    const env = clientEnv(dir, { AWS_EC2_METADATA_SERVICE_ENDPOINT: `${daemon!.listeners[0]}/`, AWS_DEFAULT_REGION: 'us-east-1' });
    const out = JSON.parse(await runClient(CLIENTS.awsCliV1, ['sts', 'get-caller-identity', '--endpoint-url', moto!.url, '--output', 'json'], env)) as Record<
      string,
      string
    >;
    expect(out['Arn']).toMatch(/^arn:aws:sts::111122223333:assumed-role\/pod-app\/crosscred-/);
  });
});
