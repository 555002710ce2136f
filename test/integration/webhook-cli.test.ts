import { type ChildProcess, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  admissionReview,
  applyAndValidate,
  changedOriginals,
  container,
  decodePatch,
  deploymentPod,
  envOf,
  type Json,
  postToWebhook,
  servedFingerprint,
} from '../support/admission-pods.js';
import { CLI_ARGS, CLI_EXEC } from '../support/chain.js';
import { FakeKubeApiServer } from '../support/fake-kube-apiserver.js';
import { freePort } from '../support/issuer-fixtures.js';
import { crosscred } from '../support/run-cli.js';
import { selfSignedCert } from '../support/self-signed.js';

/**
 * The real `crosscred webhook` command (node dist/cli/main.js, or the single executable in CI)
 * over HTTPS, its TLS files laid out as the kubelet lays out a Secret volume: research §7 test 24.
 * Run `npm run build` first.
 */

const ROLE = 'arn:aws:iam::111122223333:role/payments-api';
const BEARER = 'webhook-cli-sa-token-0123456789';

let dir: string;
let tlsDir: string;
let kube: FakeKubeApiServer;
let child: ChildProcess | undefined;
let output = '';
let port: number;
let adminPort: number;

/**
 * Writes a Secret's files as the kubelet does: the data in a timestamped directory, `..data` a
 * symlink to it, each key a symlink through `..data`. An update writes a new directory and renames
 * a new `..data` link over the old one: the key links themselves never change.
 */
async function writeSecret(generation: number): Promise<string> {
  const version = `..2026_12_07_19_00_0${generation}.${1000 + generation}`;
  await mkdir(join(tlsDir, version));
  await selfSignedCert({
    cn: `webhook-gen-${generation}`,
    keyFile: join(tlsDir, version, 'tls.key'),
    certFile: join(tlsDir, version, 'tls.crt'),
    ips: ['127.0.0.1'],
  });
  await symlink(version, join(tlsDir, '..data_tmp'));
  await rename(join(tlsDir, '..data_tmp'), join(tlsDir, '..data'));
  if (generation === 1) {
    await symlink('..data/tls.crt', join(tlsDir, 'tls.crt'));
    await symlink('..data/tls.key', join(tlsDir, 'tls.key'));
  }
  return new X509Certificate(await readFile(join(tlsDir, version, 'tls.crt'))).fingerprint256;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch {
      // Not there yet.
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; output:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'crosscred-webhook-cli-'));
  tlsDir = join(dir, 'webhook-tls');
  await mkdir(tlsDir);
  await writeFile(join(dir, 'token'), BEARER);
  kube = await FakeKubeApiServer.start({ bearer: BEARER });
  kube.addServiceAccount({ namespace: 'payments', name: 'payments-api', annotations: { 'crosscred.io/role-arn': ROLE } });
});

afterAll(async () => {
  child?.kill('SIGTERM');
  await kube?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('crosscred webhook (the real command)', () => {
  it('lists every flag with its default in --help, and refuses a bad value with exit 78 naming the flag', async () => {
    const help = await crosscred(['webhook', '--help']);
    expect(help.code).toBe(0);
    for (const text of [
      '--listen ADDR',
      '0.0.0.0:8443',
      '--admin-listen ADDR',
      '0.0.0.0:8081',
      '/etc/crosscred/webhook-tls/tls.crt',
      '/etc/crosscred/webhook-tls/tls.key',
      '--default-mode',
      '--sidecar-image',
      '--region',
      '--ip-family',
      '--kube-api-url',
      '--kube-token-file',
      '--kube-ca-file',
      '--service-account-cache-seconds',
      '(default 30',
      '--log-level',
    ])
      expect(help.stdout).toContain(text);
    const bad = await crosscred(['webhook', '--default-mode', 'sidecar', '--ip-family', 'ipv5', '--kube-api-url', 'https://127.0.0.1:1']);
    expect(bad.code).toBe(78);
    expect(bad.stderr).toMatch(/--ip-family: must be ipv4 or ipv6/);
    expect(bad.stderr).toMatch(/--sidecar-image: is needed when --default-mode is sidecar/);
  });

  it('mutates a pod over HTTPS, and new connections get a new certificate after the Secret ..data swap', async () => {
    const first = await writeSecret(1);
    port = await freePort();
    adminPort = await freePort();
    child = spawn(
      CLI_EXEC,
      [
        ...CLI_ARGS,
        'webhook',
        '--listen',
        `127.0.0.1:${port}`,
        '--admin-listen',
        `127.0.0.1:${adminPort}`,
        '--tls-cert-file',
        join(tlsDir, 'tls.crt'),
        '--tls-key-file',
        join(tlsDir, 'tls.key'),
        '--kube-api-url',
        kube.url,
        '--kube-token-file',
        join(dir, 'token'),
        '--kube-ca-file',
        kube.caFile,
        '--region',
        'eu-west-1',
      ],
      { env: { PATH: process.env['PATH'] ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout!.on('data', (c: Buffer) => {
      output += c.toString('utf8');
    });
    child.stderr!.on('data', (c: Buffer) => {
      output += c.toString('utf8');
    });
    await waitFor('the admin listener', async () => ((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 200 ? true : undefined));
    expect(await servedFingerprint(port)).toBe(first);

    const pod = deploymentPod();
    const ca1 = await readFile(join(tlsDir, 'tls.crt'));
    const answer = await postToWebhook(port, ca1, JSON.stringify(admissionReview(pod, { uid: 'cli-uid-1' })));
    expect(answer.status).toBe(200);
    const response = (JSON.parse(answer.text) as { response: Json })['response'];
    expect(response['uid']).toBe('cli-uid-1');
    const after = applyAndValidate(pod, decodePatch(response as { patch?: string }));
    expect(changedOriginals(pod, after)).toEqual([]);
    expect(envOf(container(after, 'app'))['AWS_REGION']).toBe('eu-west-1');

    const second = await writeSecret(2);
    expect(second).not.toBe(first);
    await waitFor('the new certificate', async () => ((await servedFingerprint(port)) === second ? true : undefined));
    const ca2 = await readFile(join(tlsDir, 'tls.crt'));
    expect((await postToWebhook(port, ca2, JSON.stringify(admissionReview(pod)))).status).toBe(200);
    // The old certificate no longer verifies a new connection.
    await expect(postToWebhook(port, ca1, JSON.stringify(admissionReview(pod)))).rejects.toThrow();
    expect(output).toContain('TLS certificate reloaded');
    expect(output).not.toContain(BEARER);

    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child!.once('exit', (c) => resolve(c)));
    expect(code).toBe(0);
    child = undefined;
  });
});
