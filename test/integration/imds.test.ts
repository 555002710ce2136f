import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCOUNT, type Chain, type InProcessDaemon, roleArn, startChain, startInProcess } from '../support/chain.js';

const TTL = 'x-aws-ec2-metadata-token-ttl-seconds';
const TOKEN = 'x-aws-ec2-metadata-token';
const AWS_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

let chain: Chain;
let d: InProcessDaemon;

async function sessionToken(ttl = '21600'): Promise<string> {
  const res = await request(`${d.base}/latest/api/token`, { method: 'PUT', headers: { [TTL]: ttl } });
  expect(res.statusCode).toBe(200);
  return res.body.text();
}

async function get(path: string, headers: Record<string, string> = {}) {
  const res = await request(`${d.base}${path}`, { headers });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

beforeAll(async () => {
  chain = await startChain();
  d = await startInProcess(chain);
  await d.daemon.firstFetch;
});
afterAll(async () => {
  await d?.close();
  await chain?.close();
});

describe('IMDSv2 session tokens', () => {
  it('issues a token and echoes the TTL header, as the Go SDK requires', async () => {
    const res = await request(`${d.base}/latest/api/token`, { method: 'PUT', headers: { [TTL]: '300' } });
    expect(res.statusCode).toBe(200);
    expect(res.headers[TTL]).toBe('300');
    expect((await res.body.text()).length).toBeGreaterThan(20);
  });

  it.each([' 5', '5 '])('reads TTL %j as 5: HTTP strips optional whitespace around a field value (RFC 9110 §5.5)', async (ttl) => {
    const res = await request(`${d.base}/latest/api/token`, { method: 'PUT', headers: { [TTL]: ttl } });
    expect(res.statusCode).toBe(200);
    expect(res.headers[TTL]).toBe('5');
    await res.body.dump();
  });

  it.each(['0', '21601', '-1', '1e3', '+5', '5.0', '0x10', '', 'abc', '99999999'])('refuses TTL %j with 400', async (ttl) => {
    const res = await request(`${d.base}/latest/api/token`, { method: 'PUT', headers: { [TTL]: ttl } });
    expect(res.statusCode).toBe(400);
    await res.body.dump();
  });

  it('refuses a PUT without a TTL with 400', async () => {
    const res = await request(`${d.base}/latest/api/token`, { method: 'PUT' });
    expect(res.statusCode).toBe(400);
    await res.body.dump();
  });

  it('refuses a PUT carrying X-Forwarded-For with 403', async () => {
    const res = await request(`${d.base}/latest/api/token`, { method: 'PUT', headers: { [TTL]: '60', 'X-Forwarded-For': '10.0.0.1' } });
    expect(res.statusCode).toBe(403);
    await res.body.dump();
  });

  it.each([
    ['Forwarded', 'for=10.0.0.1'],
    ['X-Real-IP', '10.0.0.1'],
    ['Via', '1.1 proxy'],
    ['via', ''],
  ])('refuses a PUT carrying %s (a proxy header) with 403 IMDS_FORWARDED', async (name, value) => {
    const res = await request(`${d.base}/latest/api/token`, { method: 'PUT', headers: { [TTL]: '60', [name]: value } });
    expect(res.statusCode).toBe(403);
    expect(await res.body.text()).toContain('CROSSCRED_ERR_IMDS_FORWARDED');
  });

  it('answers GET on the token path with 405', async () => {
    expect((await get('/latest/api/token')).status).toBe(405);
  });
});

describe('IMDS credentials', () => {
  it('refuses reads without a session token (IMDSv2 required) with 401', async () => {
    expect((await get('/latest/meta-data/iam/security-credentials/')).status).toBe(401);
    expect((await get('/latest/meta-data/iam/security-credentials/app')).status).toBe(401);
  });

  it('refuses a forged or malformed session token with 401', async () => {
    const good = await sessionToken();
    const forged = good.slice(0, -2) + (good.endsWith('AA') ? 'BB' : 'AA');
    for (const token of [forged, 'x', `${good}x`, '']) {
      expect((await get('/latest/meta-data/iam/security-credentials/', { [TOKEN]: token })).status).toBe(401);
    }
  });

  it('lists the role, with and without the trailing slash', async () => {
    const token = await sessionToken();
    for (const path of ['/latest/meta-data/iam/security-credentials/', '/latest/meta-data/iam/security-credentials']) {
      const res = await get(path, { [TOKEN]: token });
      expect(res.status).toBe(200);
      expect(res.text).toBe('app');
    }
  });

  it('serves the credentials document byte-compatible with EC2', async () => {
    const token = await sessionToken();
    const res = await get('/latest/meta-data/iam/security-credentials/app', { [TOKEN]: token });
    expect(res.status).toBe(200);
    const doc = JSON.parse(res.text) as Record<string, string>;
    expect(Object.keys(doc)).toEqual(['Code', 'LastUpdated', 'Type', 'AccessKeyId', 'SecretAccessKey', 'Token', 'Expiration']);
    expect(doc['Code']).toBe('Success');
    expect(doc['Type']).toBe('AWS-HMAC');
    expect(doc['LastUpdated']).toMatch(AWS_TIMESTAMP);
    expect(doc['Expiration']).toMatch(AWS_TIMESTAMP);
    const issued = chain.sts.issued.at(-1)!;
    expect(doc['AccessKeyId']).toBe(issued.accessKeyId);
    expect(Date.parse(doc['Expiration']!)).toBe(Math.floor(issued.expiration.getTime() / 1000) * 1000);
    expect(issued.roleArn).toBe(roleArn('app'));
  });

  it('serves the extended document with AccountId', async () => {
    const token = await sessionToken();
    const list = await get('/latest/meta-data/iam/security-credentials-extended/', { [TOKEN]: token });
    expect(list.text).toBe('app');
    const res = await get('/latest/meta-data/iam/security-credentials-extended/app', { [TOKEN]: token });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toMatchObject({ Code: 'Success', AccountId: ACCOUNT });
  });

  it('answers 404 for another role name, and for names that try to escape the path', async () => {
    const token = await sessionToken();
    for (const path of ['other', 'App', '..', '%2e%2e', 'app/', 'app%2F..']) {
      const res = await get(`/latest/meta-data/iam/security-credentials/${path}`, { [TOKEN]: token });
      expect(res.status, path).toBe(404);
      expect(res.text).not.toContain('SecretAccessKey');
    }
  });

  it('serves region, identity document and iam/info for SDK region and profile lookups', async () => {
    const token = await sessionToken();
    expect((await get('/latest/meta-data/placement/region', { [TOKEN]: token })).text).toBe('us-east-1');
    const doc = JSON.parse((await get('/latest/dynamic/instance-identity/document', { [TOKEN]: token })).text) as Record<string, string>;
    expect(doc).toEqual({ accountId: ACCOUNT, region: 'us-east-1' });
    const info = JSON.parse((await get('/latest/meta-data/iam/info', { [TOKEN]: token })).text) as Record<string, string>;
    expect(info['Code']).toBe('Success');
    expect(info['InstanceProfileArn']).toBe(`arn:aws:iam::${ACCOUNT}:instance-profile/app`);
    expect(info['InstanceProfileId']).toMatch(/^AIPA[A-Z2-7]{17}$/);
  });

  it('answers 405 for writes to metadata paths and 404 for unknown paths', async () => {
    const token = await sessionToken();
    const post = await request(`${d.base}/latest/meta-data/iam/security-credentials/app`, { method: 'POST', headers: { [TOKEN]: token } });
    expect(post.statusCode).toBe(405);
    await post.body.dump();
    expect((await get('/latest/meta-data/', { [TOKEN]: token })).status).toBe(404);
    expect((await get('/nope', { [TOKEN]: token })).status).toBe(404);
  });

  it('answers HEAD without a body', async () => {
    const token = await sessionToken();
    const res = await request(`${d.base}/latest/meta-data/iam/security-credentials/app`, { method: 'HEAD', headers: { [TOKEN]: token } });
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('');
  });

  it('refuses a foreign Host header (DNS rebinding) with 403, accepts its own address and localhost', async () => {
    const token = await sessionToken();
    const path = '/latest/meta-data/iam/security-credentials/app';
    expect((await get(path, { [TOKEN]: token, host: 'attacker.example' })).status).toBe(403);
    expect((await get(path, { [TOKEN]: token, host: 'attacker.example:80' })).status).toBe(403);
    expect((await get(path, { [TOKEN]: token, host: `localhost:${new URL(d.base).port}` })).status).toBe(200);
    expect((await get(path, { [TOKEN]: token, host: '127.0.0.1' })).status).toBe(200);
  });
});

describe('IMDSv1 opt-in', () => {
  it('answers token-less GETs only with --allow-imdsv1, and still checks a token that is sent', async () => {
    const v1 = await startInProcess(chain, { 'allow-imdsv1': true });
    try {
      await v1.daemon.firstFetch;
      const res = await request(`${v1.base}/latest/meta-data/iam/security-credentials/app`);
      expect(res.statusCode).toBe(200);
      expect(JSON.parse(await res.body.text())).toMatchObject({ Code: 'Success' });
      const bad = await request(`${v1.base}/latest/meta-data/iam/security-credentials/app`, { headers: { [TOKEN]: 'forged' } });
      expect(bad.statusCode).toBe(401);
      await bad.body.dump();
    } finally {
      await v1.close();
    }
  });
});

describe('requests the router refuses', () => {
  it('answers an over-long role name with 414 and a malformed escape with 400, in our format, without echoing the URL', async () => {
    const token = await sessionToken();
    const long = 'a'.repeat(300);
    const tooLong = await get(`/latest/meta-data/iam/security-credentials/${long}`, { [TOKEN]: token });
    expect(tooLong.status).toBe(414);
    expect(tooLong.text).toMatch(/^CROSSCRED_ERR_PATH_TOO_LONG: /);
    expect(tooLong.text).not.toContain(long);
    const bad = await get('/latest/meta-data/iam/security-credentials/%zz', { [TOKEN]: token });
    expect(bad.status).toBe(400);
    expect(bad.text).toMatch(/^CROSSCRED_ERR_REQUEST_INVALID: /);
    const json = await get(`/v1/credentials/${long}`);
    expect(json.status).toBe(414);
    expect(JSON.parse(json.text)).toMatchObject({ Code: 'CROSSCRED_ERR_PATH_TOO_LONG' });
  });

  it('refuses a body larger than the limit with 413 in our format', async () => {
    const res = await request(`${d.base}/latest/api/token`, {
      method: 'PUT',
      headers: { [TTL]: '60', 'content-type': 'application/octet-stream' },
      body: Buffer.alloc(64 * 1024),
    });
    expect(res.statusCode).toBe(413);
    expect(await res.body.text()).toMatch(/^CROSSCRED_ERR_REQUEST_INVALID: /);
  });
});
