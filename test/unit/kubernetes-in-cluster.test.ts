import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { inClusterDefaults, podFromEnv, SERVICE_ACCOUNT_MOUNT, serviceAccountFromToken } from '../../src/platform/kubernetes/in-cluster.js';

const MOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';
const ENV = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };

/** An unsigned token with this payload: the name is decoded, never verified, so the signature does not matter here. */
function tokenWith(payload: Record<string, unknown>): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${b64({ alg: 'RS256', kid: 'k' })}.${b64(payload)}.${Buffer.alloc(256, 7).toString('base64url')}`;
}

const SUB_TOKEN = tokenWith({ iss: 'https://kubernetes.default.svc', sub: 'system:serviceaccount:payments:api', exp: 2_000_000_000 });

/** readText over an in-memory mount; anything not listed is absent. */
function files(entries: Record<string, string>): (path: string) => string | undefined {
  return (path) => entries[path];
}

function mounted(overrides: Partial<Record<'token' | 'ca.crt' | 'namespace', string | undefined>> = {}, dir = MOUNT) {
  const contents: Record<string, string | undefined> = {
    token: `${SUB_TOKEN}\n`,
    'ca.crt': '-----BEGIN CERTIFICATE-----\nMII…\n-----END CERTIFICATE-----\n',
    namespace: 'payments',
    ...overrides,
  };
  const entries: Record<string, string> = {};
  for (const [name, text] of Object.entries(contents)) if (text !== undefined) entries[join(dir, name)] = text;
  return files(entries);
}

describe('inClusterDefaults', () => {
  it('finds the API server, the mounted credentials, the namespace and the ServiceAccount', () => {
    expect(inClusterDefaults(ENV, mounted())).toEqual({
      apiServer: 'https://10.96.0.1:443',
      caFile: `${MOUNT}/ca.crt`,
      serviceAccountTokenFile: `${MOUNT}/token`,
      namespace: 'payments',
      serviceAccount: 'api',
    });
    expect(SERVICE_ACCOUNT_MOUNT).toBe(MOUNT);
  });

  it('lists everything that is missing', () => {
    expect(inClusterDefaults({}, files({}))).toEqual({
      missing: ['KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT', `${MOUNT}/token`, `${MOUNT}/ca.crt`, `${MOUNT}/namespace`],
    });
    expect(inClusterDefaults({ KUBERNETES_SERVICE_HOST: '10.96.0.1' }, mounted())).toEqual({ missing: ['KUBERNETES_SERVICE_PORT'] });
    expect(inClusterDefaults({ ...ENV, KUBERNETES_SERVICE_HOST: '  ' }, mounted())).toEqual({ missing: ['KUBERNETES_SERVICE_HOST'] });
    expect(inClusterDefaults(ENV, mounted({ 'ca.crt': undefined }))).toEqual({ missing: [`${MOUNT}/ca.crt`] });
    expect(inClusterDefaults(ENV, mounted({ 'ca.crt': '\n' }))).toEqual({ missing: [`${MOUNT}/ca.crt`] });
    expect(inClusterDefaults(ENV, mounted({ token: '' }))).toEqual({ missing: [`${MOUNT}/token`] });
  });

  it('says so when the port is not a port', () => {
    for (const port of ['https', '0', '65536', '-1', '443/tcp']) {
      const result = inClusterDefaults({ ...ENV, KUBERNETES_SERVICE_PORT: port }, mounted());
      expect(result).toEqual({ missing: [expect.stringMatching(/^KUBERNETES_SERVICE_PORT \(.* is not a port number\)$/)] });
    }
  });

  it('brackets an IPv6 host, and leaves host names, IPv4 and already bracketed hosts alone', () => {
    const apiServer = (host: string, port = '443') =>
      (inClusterDefaults({ KUBERNETES_SERVICE_HOST: host, KUBERNETES_SERVICE_PORT: port }, mounted()) as { apiServer: string }).apiServer;
    expect(apiServer('fd00:10:96::1')).toBe('https://[fd00:10:96::1]:443');
    expect(apiServer('::1', '6443')).toBe('https://[::1]:6443');
    expect(apiServer('[fd00::1]')).toBe('https://[fd00::1]:443');
    expect(apiServer('kubernetes.default.svc')).toBe('https://kubernetes.default.svc:443');
    expect(apiServer('10.0.0.1', '6443')).toBe('https://10.0.0.1:6443');
    // The result is a URL a client can use.
    expect(new URL(apiServer('fd00:10:96::1')).hostname).toBe('[fd00:10:96::1]');
  });

  it('refuses a host that would change the URL', () => {
    const result = inClusterDefaults({ ...ENV, KUBERNETES_SERVICE_HOST: 'evil.example/x?' }, mounted());
    expect(result).toEqual({ missing: [expect.stringMatching(/^KUBERNETES_SERVICE_HOST \(.* is not a host name or IP address\)$/)] });
  });

  it('takes the ServiceAccount name from the kubernetes.io claim when sub does not name one', () => {
    const token = tokenWith({
      sub: 'someone-else',
      'kubernetes.io': { namespace: 'payments', serviceaccount: { name: 'billing-api', uid: 'u' } },
      exp: 2_000_000_000,
    });
    expect(inClusterDefaults(ENV, mounted({ token }))).toMatchObject({ serviceAccount: 'billing-api', namespace: 'payments' });
  });

  it('takes the name from a legacy secret-based token', () => {
    const token = tokenWith({
      iss: 'kubernetes/serviceaccount',
      'kubernetes.io/serviceaccount/namespace': 'payments',
      'kubernetes.io/serviceaccount/service-account.name': 'legacy',
    });
    expect(inClusterDefaults(ENV, mounted({ token }))).toMatchObject({ serviceAccount: 'legacy' });
  });

  it('prefers sub over the kubernetes.io claim', () => {
    const token = tokenWith({ sub: 'system:serviceaccount:payments:from-sub', 'kubernetes.io': { serviceaccount: { name: 'from-claim' } } });
    expect(serviceAccountFromToken(token)).toEqual({ namespace: 'payments', name: 'from-sub' });
  });

  it('says when the token names no ServiceAccount, or is not a JWT at all', () => {
    for (const token of [tokenWith({ sub: 'user:alice' }), 'not-a-jwt', 'a.%%%.c', `${tokenWith({})}`]) {
      const result = inClusterDefaults(ENV, mounted({ token }));
      expect(result).toEqual({ missing: [expect.stringContaining(`the ServiceAccount name (the token at ${MOUNT}/token has no "sub"`)] });
    }
  });

  it('refuses a ServiceAccount or namespace name Kubernetes could not have made', () => {
    const token = tokenWith({ sub: 'system:serviceaccount:payments:Not_Valid' });
    expect(inClusterDefaults(ENV, mounted({ token }))).toEqual({ missing: [expect.stringContaining('"Not_Valid" in the token')] });
    expect(inClusterDefaults(ENV, mounted({ namespace: 'Payments!' }))).toEqual({ missing: [expect.stringContaining('"Payments!" is not a namespace name')] });
  });

  it("falls back on the token's namespace when the namespace file is absent", () => {
    expect(inClusterDefaults(ENV, mounted({ namespace: undefined }))).toMatchObject({ namespace: 'payments' });
    const noNamespace = tokenWith({ 'kubernetes.io': { serviceaccount: { name: 'api' } } });
    expect(inClusterDefaults(ENV, mounted({ namespace: undefined, token: noNamespace }))).toEqual({ missing: [`${MOUNT}/namespace`] });
  });

  it('reads from another mount directory when told to, with the real file reader by default', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'crosscred-sa-'));
    try {
      await writeFile(join(dir, 'token'), SUB_TOKEN);
      await writeFile(join(dir, 'ca.crt'), '-----BEGIN CERTIFICATE-----\n');
      await writeFile(join(dir, 'namespace'), 'payments\n');
      expect(inClusterDefaults(ENV, undefined, dir)).toEqual({
        apiServer: 'https://10.96.0.1:443',
        caFile: join(dir, 'ca.crt'),
        serviceAccountTokenFile: join(dir, 'token'),
        namespace: 'payments',
        serviceAccount: 'api',
      });
      // A directory where a file should be reads as absent.
      expect(inClusterDefaults(ENV, undefined, join(dir, 'nowhere'))).toEqual({
        missing: [join(dir, 'nowhere', 'token'), join(dir, 'nowhere', 'ca.crt'), join(dir, 'nowhere', 'namespace')],
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('podFromEnv', () => {
  it('gives the pod when both POD_NAME and POD_UID are set', () => {
    expect(podFromEnv({ POD_NAME: 'api-7d9f-abcde', POD_UID: '0c1e4f1a-1111-4222-8333-444455556666' })).toEqual({
      name: 'api-7d9f-abcde',
      uid: '0c1e4f1a-1111-4222-8333-444455556666',
    });
  });

  it('gives nothing when either is missing or empty', () => {
    expect(podFromEnv({})).toBeUndefined();
    expect(podFromEnv({ POD_NAME: 'api' })).toBeUndefined();
    expect(podFromEnv({ POD_UID: 'u' })).toBeUndefined();
    expect(podFromEnv({ POD_NAME: 'api', POD_UID: ' ' })).toBeUndefined();
  });
});
