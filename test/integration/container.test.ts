import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCOUNT, type Chain, type InProcessDaemon, roleArn, startChain, startInProcess } from '../support/chain.js';

let chain: Chain;

beforeAll(async () => {
  chain = await startChain({ roles: ['app', 'reports'] });
});
afterAll(async () => {
  await chain?.close();
});

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await request(url, { headers });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) as Record<string, string> };
}

describe('container credentials endpoint', () => {
  let d: InProcessDaemon;
  let authFile: string;
  let secret: string;

  beforeAll(async () => {
    authFile = join(chain.dir, 'auth-token');
    d = await startInProcess(chain, { 'auth-token-file': authFile });
    await d.daemon.firstFetch;
    secret = await readFile(authFile, 'utf8');
  });
  afterAll(() => d?.close());

  it('generates the secret file with mode 0600 and no trailing newline', async () => {
    const info = await stat(authFile);
    expect(info.mode & 0o777).toBe(0o600);
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(secret.endsWith('\n')).toBe(false);
  });

  it('answers the documented JSON with the right secret', async () => {
    const res = await get(`${d.base}/v1/credentials`, { authorization: secret });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const body = res.json();
    expect(Object.keys(body)).toEqual(['AccessKeyId', 'SecretAccessKey', 'Token', 'Expiration', 'RoleArn', 'AccountId']);
    expect(body['Expiration']).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(body['RoleArn']).toBe(roleArn('app'));
    expect(body['AccountId']).toBe(ACCOUNT);
  });

  it('answers 401 without Authorization and 403 with a wrong one, as JSON {Code, Message}', async () => {
    const missing = await get(`${d.base}/v1/credentials`);
    expect(missing.status).toBe(401);
    expect(missing.json()).toMatchObject({ Code: 'CROSSCRED_ERR_CONTAINER_AUTH_MISSING' });
    for (const wrong of [secret.slice(0, -1), `${secret}x`, `Bearer ${secret}`, secret.toUpperCase()]) {
      const res = await get(`${d.base}/v1/credentials`, { authorization: wrong });
      expect(res.status).toBe(403);
      expect(res.json()['Code']).toBe('CROSSCRED_ERR_CONTAINER_AUTH_INVALID');
      expect(res.text).not.toContain('AccessKeyId');
    }
  });

  it('checks the secret before telling whether a role exists', async () => {
    expect((await get(`${d.base}/v1/credentials/nope`, { authorization: 'wrong' })).status).toBe(403);
    expect((await get(`${d.base}/v1/credentials/nope`, { authorization: secret })).status).toBe(404);
  });
});

describe('several roles', () => {
  it('serves each role on its own listener (IMDS) and by name (container), each with its own credentials', async () => {
    const configFile = join(chain.dir, 'roles.yaml');
    await writeFile(
      configFile,
      `region: us-east-1
stsEndpoint: ${chain.sts.url}
tokenFile: ${chain.tokenFile}
authTokenFile: ${join(chain.dir, 'multi-auth')}
roles:
  - name: app
    roleArn: ${roleArn('app')}
  - name: reports
    roleArn: ${roleArn('reports')}
    durationSeconds: 900
listen:
  - 127.0.0.1:0=app
  - address: 127.0.0.1:0
    role: reports
adminListen: 127.0.0.1:0
`,
    );
    const before = chain.sts.calls;
    const d = await startInProcess(chain, {
      config: configFile,
      'role-arn': undefined,
      'token-file': undefined,
      region: undefined,
      'sts-endpoint': undefined,
      listen: undefined,
      'admin-listen': undefined,
    });
    try {
      await d.daemon.firstFetch;
      expect(chain.sts.calls - before).toBe(2);
      const secret = await readFile(join(chain.dir, 'multi-auth'), 'utf8');
      const [appListener, reportsListener] = d.daemon.listeners.map((l) => `http://127.0.0.1:${l.port}`);
      const docs: Record<string, string>[] = [];
      for (const [base, role] of [
        [appListener!, 'app'],
        [reportsListener!, 'reports'],
      ] as const) {
        const token = await (
          await request(`${base}/latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '60' } })
        ).body.text();
        expect((await get(`${base}/latest/meta-data/iam/security-credentials/`, { 'x-aws-ec2-metadata-token': token })).text).toBe(role);
        const other = role === 'app' ? 'reports' : 'app';
        expect((await get(`${base}/latest/meta-data/iam/security-credentials/${other}`, { 'x-aws-ec2-metadata-token': token })).status).toBe(404);
        docs.push((await get(`${base}/latest/meta-data/iam/security-credentials/${role}`, { 'x-aws-ec2-metadata-token': token })).json());
      }
      expect(docs[0]!['AccessKeyId']).not.toBe(docs[1]!['AccessKeyId']);
      const byName = (await get(`${appListener}/v1/credentials/reports`, { authorization: secret })).json();
      expect(byName['RoleArn']).toBe(roleArn('reports'));
      expect(byName['AccessKeyId']).toBe(docs[1]!['AccessKeyId']);
      expect((await get(`${reportsListener}/v1/credentials`, { authorization: secret })).json()['RoleArn']).toBe(roleArn('reports'));

      // Each role keeps its own schedule: the 15-minute session is refreshed far sooner than the 1-hour one.
      const statuses = Object.fromEntries([...d.daemon.roles.values()].map((r) => [r.config.name, r.cache.status()]));
      expect(statuses['reports']!.nextAttemptInSeconds).toBeLessThan(4 * 60);
      expect(statuses['app']!.nextAttemptInSeconds).toBeGreaterThan(20 * 60);
    } finally {
      await d.close();
    }
  });

  it('keeps the container endpoint off without --auth-token-file', async () => {
    const d = await startInProcess(chain);
    try {
      await d.daemon.firstFetch;
      const res = await get(`${d.base}/v1/credentials`, { authorization: 'anything' });
      expect(res.status).toBe(404);
      expect(res.json()['Code']).toBe('CROSSCRED_ERR_CONTAINER_ENDPOINT_DISABLED');
    } finally {
      await d.close();
    }
  });

  it('with --disable-imds serves only the container endpoint: no IMDS session token, no IMDS path', async () => {
    const d = await startInProcess(chain, { 'auth-token-file': join(chain.dir, 'auth-no-imds'), 'disable-imds': true });
    try {
      await d.daemon.firstFetch;
      const secret = await readFile(join(chain.dir, 'auth-no-imds'), 'utf8');
      expect((await get(`${d.base}/v1/credentials`, { authorization: secret })).status).toBe(200);
      const put = await request(`${d.base}/latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '60' } });
      expect(put.statusCode).toBe(404);
      expect(await put.body.text()).toMatch(/^CROSSCRED_ERR_NOT_FOUND: /);
      for (const path of [
        '/latest/meta-data/iam/security-credentials/',
        '/latest/meta-data/iam/security-credentials/app',
        '/latest/meta-data/placement/region',
      ]) {
        const res = await get(`${d.base}${path}`);
        expect(res.status, path).toBe(404);
        expect(res.text).not.toContain('SecretAccessKey');
      }
    } finally {
      await d.close();
    }
  });

  it('uses an existing secret file, trimmed', async () => {
    const file = join(chain.dir, 'given-secret');
    await writeFile(file, 'my-shared-secret\n', { mode: 0o600 });
    const d = await startInProcess(chain, { 'auth-token-file': file });
    try {
      await d.daemon.firstFetch;
      expect((await get(`${d.base}/v1/credentials`, { authorization: 'my-shared-secret' })).status).toBe(200);
    } finally {
      await d.close();
    }
  });
});
