import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { join } from 'node:path';
import { Client, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIENCE, type Chain, type DaemonProcess, roleArn, SUBJECT, spawnDaemon, startChain, waitUntilReady } from '../support/chain.js';
import { crosscred } from '../support/run-cli.js';

/**
 * Secret hygiene (issue 6, item 5). The real daemon runs as a process at trace level against the
 * STS emulator, through a recording tap that learns every secret on the wire: each JWT sent and
 * each key, secret key and session token STS answered. Every IMDS session token issued and the
 * container secret (a canary of our own) join them. After a wide mix of successful and refused
 * requests, STS failures and a token file caught mid-rotation or full of garbage, plus `doctor`
 * and `credential-process` runs, every log line (all levels), every HTTP answer that is not a
 * credential answer, /metrics, /readyz and every CLI diagnostic is searched for every canary.
 * The same canaries are shown to be in the credential answers, so the search is not vacuous.
 */

const ARN = roleArn('app');
const TTL = 'x-aws-ec2-metadata-token-ttl-seconds';
const TOKEN = 'x-aws-ec2-metadata-token';
const CREDENTIALS = '/latest/meta-data/iam/security-credentials/app';
const EXTENDED = '/latest/meta-data/iam/security-credentials-extended/app';
const CLI_ENV = { HOME: process.env['HOME'] ?? '/root' };

interface Text {
  readonly where: string;
  readonly text: string;
}

interface IssuedSecret {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken: string;
}

/** Everything searched for canaries: logs, error answers, admin pages, CLI diagnostics. */
const searched: Text[] = [];
/** Successful credential answers: the canaries must be here (they are what clients are given). */
const served: Text[] = [];
/** What each error answer's status was, by label, to show the refusal paths really ran. */
const statuses = new Map<string, number>();
const imdsTokens = new Set<string>();
const jwts: string[] = [];
/** Distinct runs of the tests: every canary is prefixed so it cannot occur by chance. */
const secret = `canary-container-secret-${randomBytes(24).toString('hex')}`;
const secretB = `canary-container-secret-b-${randomBytes(24).toString('hex')}`;
const garbageCanary = `canary-garbage-${randomBytes(16).toString('hex')}`;

let chain: Chain;
let tap: StsTap;
let daemonA: DaemonProcess | undefined;
let daemonB: DaemonProcess | undefined;
let readyzA: { status: number; body: string };
let readyzB: { status: number; body: string };
let metricsB = '';
let cliRuns: Record<string, { code: number; stdout: string; stderr: string }> = {};

beforeAll(async () => {
  chain = await startChain();
  tap = await startStsTap(chain.sts.url);
  const dir = chain.dir;
  const authFile = join(dir, 'auth-a');
  await writeFile(authFile, secret, { mode: 0o600 });
  const forgedFile = join(dir, 'auth-forged');
  await writeFile(forgedFile, `${secret.slice(0, -1)}X`, { mode: 0o600 });
  jwts.push(await readFile(chain.tokenFile, 'utf8'));

  // Daemon A: STS fails (500), then the token file is caught mid-rotation, then STS says the JWT
  // expired (one re-read, one retry) and the exchange succeeds.
  chain.sts.failNext({ kind: 'error', status: 500, code: 'InternalFailure' });
  daemonA = await spawnDaemon([...roleFlags(chain.tokenFile), '--listen', '127.0.0.1:0', '--auth-token-file', authFile, '--log-level', 'trace']);
  await waitFor(() => tap.tokens.length >= 1, 'the first STS call');
  await writeAtomically(chain.tokenFile, jwts[0]!.slice(0, -12));
  await waitFor(async () => (await readyz(daemonA!.admin)).body.includes('CROSSCRED_ERR_TOKEN_NOT_JWT'), 'the truncated token file to be refused');
  jwts.push(await chain.writeToken());
  chain.sts.failNext({ kind: 'error', status: 400, code: 'ExpiredTokenException' });
  await waitUntilReady(daemonA.admin, 10_000);
  await exerciseListener('A', daemonA.listeners[0]!, forgedFile);

  // Daemon B: STS answers garbage, then really refuses the token (wrong audience): terminal.
  const tokenB = join(dir, 'token-b');
  const jwtWrongAudience = await chain.issuer.mint({ sub: SUBJECT, aud: 'not-sts.example', ttlSeconds: 3600 });
  jwts.push(jwtWrongAudience);
  await writeAtomically(tokenB, jwtWrongAudience);
  const authFileB = join(dir, 'auth-b');
  await writeFile(authFileB, secretB, { mode: 0o600 });
  chain.sts.failNext({ kind: 'garbage' });
  daemonB = await spawnDaemon([...roleFlags(tokenB), '--listen', '127.0.0.1:0', '--auth-token-file', authFileB, '--log-level', 'trace']);
  await waitFor(async () => (await readyz(daemonB!.admin)).body.includes('InvalidIdentityToken'), 'STS to refuse the token');
  await exerciseTerminal(daemonB.listeners[0]!, secretB);

  // The CLI: credential-process from the daemon (right and forged secret) and by its own exchange
  // (good token, garbage file); doctor with a good token, garbage, and a token STS refuses.
  const garbageFile = join(dir, 'token-garbage');
  await writeAtomically(garbageFile, `${garbageCanary}\u0000\u0001 not a token at all ${garbageCanary}\n`);
  const goodForCli = join(dir, 'token-cli');
  const goodForDoctor = join(dir, 'token-doctor');
  jwts.push(await writeMinted(goodForCli), await writeMinted(goodForDoctor));
  const endpoint = `${daemonA.listeners[0]}/v1/credentials`;
  const runs = {
    'credential-process (daemon)': ['credential-process', '--endpoint', endpoint, '--auth-token-file', authFile],
    'credential-process (daemon, forged secret)': ['credential-process', '--endpoint', endpoint, '--auth-token-file', forgedFile],
    'credential-process (exchange)': ['credential-process', ...roleFlags(goodForCli)],
    'credential-process (exchange, garbage token file)': ['credential-process', ...roleFlags(garbageFile)],
    'doctor (good token)': ['doctor', ...roleFlags(goodForDoctor)],
    'doctor (garbage token file)': ['doctor', ...roleFlags(garbageFile)],
    'doctor (token STS refuses)': ['doctor', ...roleFlags(tokenB)],
  };
  const results = await Promise.all(Object.entries(runs).map(async ([name, args]) => [name, await crosscred(args, CLI_ENV)] as const));
  cliRuns = Object.fromEntries(results);
  for (const [name, run] of results) {
    const succeededWithCredentials = name.startsWith('credential-process') && run.code === 0;
    (succeededWithCredentials ? served : searched).push({ where: `${name} stdout`, text: run.stdout });
    searched.push({ where: `${name} stderr`, text: run.stderr });
  }

  // Admin pages last, once every scenario has left its trace in them.
  const admin: Record<string, { status: number; body: string }> = {};
  for (const [name, d] of [
    ['A', daemonA],
    ['B', daemonB],
  ] as const) {
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      const res = await rawRequest(d.admin, 'GET', path, {});
      searched.push({ where: `daemon ${name} admin ${path}`, text: res.body });
      admin[`${name}${path}`] = res;
    }
  }
  readyzA = admin['A/readyz']!;
  readyzB = admin['B/readyz']!;
  metricsB = admin['B/metrics']!.body;

  // Stop both and wait until their output is drained: the last log lines are searched too.
  for (const [name, d] of [
    ['A', daemonA],
    ['B', daemonB],
  ] as const) {
    await stopAndDrain(d);
    for (const [i, line] of d.output.entries()) searched.push({ where: `daemon ${name} log line ${i + 1}`, text: line });
  }
}, 60_000);

afterAll(async () => {
  for (const d of [daemonA, daemonB]) if (d && d.child.exitCode === null) await d.stop();
  await tap?.close();
  await chain?.close();
});

describe('canary secrets', () => {
  it('are really in the credential answers: the tap saw what the daemon served, and the search finds them', () => {
    const a = served.find((s) => s.where === `A GET ${CREDENTIALS}`);
    expect(a, 'the IMDS credential answer of daemon A').toBeDefined();
    const doc = JSON.parse(a!.text.slice(a!.text.indexOf('\n') + 1)) as Record<string, string>;
    const issued = tap.credentials.find((c) => c.accessKeyId === doc['AccessKeyId']);
    expect(issued, 'the served AccessKeyId is one STS issued').toBeDefined();
    expect(doc['SecretAccessKey']).toBe(issued!.secretAccessKey);
    expect(doc['Token']).toBe(issued!.sessionToken);
    for (const label of [
      `A GET ${EXTENDED}`,
      'A GET /v1/credentials',
      'A GET /v1/credentials/app',
      'A HTTP/1.0 without Host',
      'credential-process (daemon) stdout',
    ]) {
      const answer = served.find((s) => s.where === label);
      expect(answer, label).toBeDefined();
      expect(
        findCanaries([answer!]).map((h) => h.canary),
        label,
      ).toEqual(expect.arrayContaining(['credentials[0].secretAccessKey', 'credentials[0].sessionToken']));
    }
    // credential-process by exchange got its own credentials from STS, through the tap.
    const own = findCanaries(served.filter((s) => s.where === 'credential-process (exchange) stdout')).map((h) => h.canary);
    expect(
      own.some((c) => /^credentials\[[1-9]\d*\]\.sessionToken$/.test(c)),
      own.join(', '),
    ).toBe(true);
    // The search also reads bytes that a logger wrote as a serialized Buffer.
    const planted = { where: 'self-test', text: JSON.stringify({ err: { rawPacket: Buffer.from(`Authorization: ${secret}\r\n`) } }) };
    expect(findCanaries([planted]).map((h) => h.canary)).toContain('container secret');
  });

  it('cover every kind of secret, each long enough never to match by chance', () => {
    const names = [...canaries().keys()];
    for (const kind of [
      'jwt[0]',
      'jwt[0].signature',
      'credentials[0].accessKeyId',
      'credentials[0].secretAccessKey',
      'credentials[0].sessionToken',
      'imds token[0]',
      'container secret',
      'container secret (forged prefix)',
      'token file garbage',
    ]) {
      expect(names, kind).toContain(kind);
    }
    // JWTs: the two daemon A read, the one STS refused, the CLI's two.
    expect(jwts).toHaveLength(5);
    // A: first fetch, plus doctor and credential-process by exchange.
    expect(tap.credentials.length).toBeGreaterThanOrEqual(3);
    expect(imdsTokens.size).toBeGreaterThanOrEqual(4);
    for (const [name, value] of canaries()) expect(value.length, name).toBeGreaterThanOrEqual(16);
  });
});

describe('the scenarios really ran', () => {
  it('sent STS only whole JWTs: never the truncated file, never garbage; re-sent the token once when STS said it expired', () => {
    for (const sent of tap.tokens) expect(jwts, 'every token STS saw is one we wrote').toContain(sent);
    expect(tap.tokens.filter((t) => t === jwts[1]).length).toBeGreaterThanOrEqual(2);
  });

  it('logged the failures at every level they occur, with their codes', () => {
    const a = logEntries(daemonA!);
    const b = logEntries(daemonB!);
    expect(a.length).toBeGreaterThan(10);
    const levels = new Set(a.map((e) => e.level));
    for (const level of ['info', 'error']) expect(levels, level).toContain(level);
    expect(a.some((e) => e.code === 'InternalFailure')).toBe(true);
    expect(a.some((e) => e.code === 'CROSSCRED_ERR_TOKEN_NOT_JWT')).toBe(true);
    expect(a.some((e) => e.msg === 'credentials refreshed')).toBe(true);
    expect(b.some((e) => e.level === 'error' && e.code === 'InvalidIdentityToken')).toBe(true);
    expect(metricsB).toMatch(/crosscred_sts_calls_total\{role="app",outcome="terminal",code="InvalidIdentityToken"\} 1/);
    expect(readyzA.status).toBe(200);
    expect(readyzB.status).toBe(503);
    expect(readyzB.body).toContain('InvalidIdentityToken');
  });

  it('answered the refusals with their documented statuses', () => {
    const expected: Record<string, number> = {
      'A imds without token': 401,
      'A imds forged token': 401,
      'A imds token with last character changed': 401,
      'A imds JWT as token': 401,
      'A put with X-Forwarded-For': 403,
      'A put ttl 0': 400,
      'A put ttl 21601': 400,
      'A put ttl 1e3': 400,
      'A put without ttl': 400,
      'A foreign Host on imds': 403,
      'A foreign Host on container': 403,
      'A container without Authorization': 401,
      'A container forged secret (shared prefix)': 403,
      'A container secret plus one character': 403,
      'A container half the secret': 403,
      'A container unknown role with secret': 404,
      'A imds unknown path': 404,
      'A imds other role': 404,
      'A GET on the token path': 405,
      'A DELETE on the container path': 405,
      'A over-long role name': 414,
      'B imds while STS refuses': 503,
      'B container while STS refuses': 503,
      'B imds with A token': 401,
    };
    for (const [label, status] of Object.entries(expected)) expect(statuses.get(label), label).toBe(status);
    expect(cliRuns['credential-process (daemon)']!.code).toBe(0);
    expect(cliRuns['credential-process (exchange)']!.code).toBe(0);
    expect(cliRuns['credential-process (daemon, forged secret)']!.code).not.toBe(0);
    expect(cliRuns['credential-process (exchange, garbage token file)']!.code).not.toBe(0);
    // doctor did reach STS with the good token (credentials issued, not shown) and was refused with the bad one.
    expect(cliRuns['doctor (good token)']!.stdout).toMatch(/accepted the token/);
    expect(cliRuns['doctor (token STS refuses)']!.stdout).toMatch(/InvalidIdentityToken/);
  });
});

describe('secret hygiene', () => {
  it('no canary appears in any log line, error answer, admin page or CLI diagnostic', () => {
    // What was searched: both daemons' whole output, every refused answer, the admin pages, the CLI's words.
    const count = (prefix: string) => searched.filter((s) => s.where.startsWith(prefix)).length;
    expect(count('daemon A log line')).toBeGreaterThan(10);
    expect(count('daemon B log line')).toBeGreaterThan(5);
    expect(count('A ')).toBeGreaterThanOrEqual(45);
    expect(count('daemon A admin') + count('daemon B admin')).toBe(6);
    expect(count('doctor') + count('credential-process')).toBeGreaterThanOrEqual(10);
    const hits = findCanaries(searched);
    expect(hits.map((h) => `${h.canary} in ${h.where}${h.decoded ? ' (decoded from a serialized Buffer)' : ''}`)).toEqual([]);
  });
});

describe('a malformed request that carries secrets', () => {
  it('leaves neither the container secret nor the session token in the trace log (parser errors keep the raw bytes)', async () => {
    const authFile = join(chain.dir, 'auth-c');
    await writeFile(authFile, secret, { mode: 0o600 });
    const d = await spawnDaemon([...roleFlags(chain.tokenFile), '--listen', '127.0.0.1:0', '--auth-token-file', authFile, '--log-level', 'trace']);
    let token = '';
    try {
      await waitUntilReady(d.admin);
      token = await (await request(`${d.listeners[0]}/latest/api/token`, { method: 'PUT', headers: { [TTL]: '60' } })).body.text();
      const bad = [
        `GET /v1/credentials HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${secret}\r\nBad Header\r\n\r\n`,
        `GET ${CREDENTIALS} HTTP/1.1\r\nHost: 127.0.0.1\r\n${TOKEN}: ${token}\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n`,
        `GET ${CREDENTIALS} HTTP/1.1\r\nHost: 127.0.0.1\r\n${TOKEN}: ${token}\r\nX-Ctl: \u0001\r\n\r\n`,
      ];
      for (const base of [d.listeners[0]!, d.admin]) for (const bytes of bad) await rawSocket(base, bytes);
    } finally {
      await stopAndDrain(d);
    }
    const lines = d.output.map((text, i) => ({ where: `daemon C log line ${i + 1}`, text }));
    const hits = findCanaries(
      lines,
      new Map([
        ['container secret', secret],
        ['container secret (forged prefix)', secret.slice(0, -1)],
        ['imds token (daemon C)', token],
      ]),
    );
    expect(hits.map((h) => `${h.canary} in ${h.where}${h.decoded ? ' (decoded from a serialized Buffer)' : ''}`)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

function roleFlags(tokenFile: string): string[] {
  return ['--role-arn', ARN, '--token-file', tokenFile, '--region', 'us-east-1', '--sts-endpoint', tap.url];
}

async function writeMinted(path: string): Promise<string> {
  const jwt = await chain.issuer.mint({ sub: SUBJECT, aud: AUDIENCE, ttlSeconds: 3600 });
  await writeAtomically(path, jwt);
  return jwt;
}

async function writeAtomically(path: string, content: string): Promise<void> {
  await writeFile(`${path}.tmp`, content);
  await rename(`${path}.tmp`, path);
}

/** The successful, refused and malformed requests of the mix, against a ready daemon. */
async function exerciseListener(name: string, base: string, forgedFile: string): Promise<void> {
  const put = (label: string, headers: Record<string, string>, body?: string) => call(label, base, 'PUT', '/latest/api/token', headers, body);
  const t1 = (await put(`${name} put ttl 60`, { [TTL]: '60' })).body;
  const t2 = (await put(`${name} put ttl 21600`, { [TTL]: '21600' })).body;
  const forgedSecret = (await readFile(forgedFile, 'utf8')).trim();
  const jwt = jwts[1]!;
  const lastChanged = `${t1.slice(0, -1)}${t1.endsWith('A') ? 'B' : 'A'}`;

  // Successful answers.
  await call(`${name} GET ${CREDENTIALS}`, base, 'GET', CREDENTIALS, { [TOKEN]: t1 });
  await call(`${name} GET ${EXTENDED}`, base, 'GET', EXTENDED, { [TOKEN]: t2 });
  await call(`${name} HEAD ${CREDENTIALS}`, base, 'HEAD', CREDENTIALS, { [TOKEN]: t1 });
  for (const path of [
    '/latest/meta-data/iam/security-credentials/',
    '/latest/meta-data/iam/info',
    '/latest/meta-data/placement/region',
    '/latest/dynamic/instance-identity/document',
  ]) {
    await call(`${name} GET ${path}`, base, 'GET', path, { [TOKEN]: t1 });
  }
  await call(`${name} GET /v1/credentials`, base, 'GET', '/v1/credentials', { authorization: secret });
  await call(`${name} GET /v1/credentials/app`, base, 'GET', '/v1/credentials/app', { authorization: secret });
  served.push({ where: `${name} HTTP/1.0 without Host`, text: await rawSocket(base, `GET ${CREDENTIALS} HTTP/1.0\r\n${TOKEN}: ${t1}\r\n\r\n`) });

  // IMDS refusals, with forged tokens and secrets in the wrong places.
  await call(`${name} imds without token`, base, 'GET', CREDENTIALS, {});
  await call(`${name} imds forged token`, base, 'GET', CREDENTIALS, { [TOKEN]: `cc1${'A'.repeat(t1.length - 3)}` });
  await call(`${name} imds token with last character changed`, base, 'GET', CREDENTIALS, { [TOKEN]: lastChanged });
  await call(`${name} imds token plus one character`, base, 'GET', CREDENTIALS, { [TOKEN]: `${t1}x` });
  await call(`${name} imds JWT as token`, base, 'GET', CREDENTIALS, { [TOKEN]: jwt });
  await call(`${name} imds container secret as token`, base, 'GET', CREDENTIALS, { [TOKEN]: secret });
  await call(`${name} imds token in Authorization`, base, 'GET', CREDENTIALS, { authorization: t1 });
  await call(`${name} imds unknown path`, base, 'GET', '/latest/meta-data/nothing-here', { [TOKEN]: t1 });
  await call(`${name} imds other role`, base, 'GET', '/latest/meta-data/iam/security-credentials/other', { [TOKEN]: t1 });
  await call(`${name} over-long role name`, base, 'GET', `/latest/meta-data/iam/security-credentials/${'a'.repeat(200)}`, { [TOKEN]: t1 });
  await call(`${name} malformed escape`, base, 'GET', '/latest/meta-data/%zz', { [TOKEN]: t1 });
  await call(`${name} traversal`, base, 'GET', '/latest/meta-data/iam/security-credentials/..%2f..%2fapi%2ftoken', { [TOKEN]: t1 });
  await call(`${name} GET on the token path`, base, 'GET', '/latest/api/token', { [TTL]: '60' });
  await call(`${name} POST on credentials`, base, 'POST', CREDENTIALS, { [TOKEN]: t1 });
  await call(`${name} foreign Host on imds`, base, 'GET', CREDENTIALS, { [TOKEN]: t1, host: 'attacker.example' });

  // Session token requests that must be refused (and one that Node's parser may trim into a valid one).
  await put(`${name} put with X-Forwarded-For`, { [TTL]: '60', 'x-forwarded-for': '203.0.113.7' });
  for (const ttl of ['0', '21601', '-1', '1e3', 'abc', '']) await put(`${name} put ttl ${ttl}`, { [TTL]: ttl });
  await put(`${name} put without ttl`, {});
  await put(`${name} put ttl with spaces`, { [TTL]: ' 5 ' });
  await put(`${name} put foreign Host`, { [TTL]: '60', host: 'rebind.example' });
  await put(`${name} put with a body`, { [TTL]: '60', 'content-type': 'text/plain' }, 'A'.repeat(4096));

  // Container endpoint refusals.
  const container = (label: string, headers: Record<string, string>, path = '/v1/credentials', method: 'GET' | 'DELETE' | 'PUT' = 'GET') =>
    call(label, base, method, path, headers);
  await container(`${name} container without Authorization`, {});
  await container(`${name} container empty Authorization`, { authorization: '' });
  await container(`${name} container wrong secret`, { authorization: 'nope' });
  await container(`${name} container forged secret (shared prefix)`, { authorization: forgedSecret });
  await container(`${name} container secret plus one character`, { authorization: `${secret}x` });
  await container(`${name} container half the secret`, { authorization: secret.slice(0, secret.length / 2) });
  await container(`${name} container Bearer secret`, { authorization: `Bearer ${secret}` });
  await container(`${name} container upper-case secret`, { authorization: secret.toUpperCase() });
  await container(`${name} container session token as secret`, { authorization: t1 });
  await container(`${name} container JWT as secret`, { authorization: jwt });
  await container(`${name} container unknown role with secret`, { authorization: secret }, '/v1/credentials/other');
  await container(`${name} container unknown role without secret`, {}, '/v1/credentials/other');
  await container(`${name} container malformed escape`, { authorization: secret }, '/v1/credentials/%E0%A4%A');
  await container(`${name} foreign Host on container`, { authorization: secret, host: 'evil.example:8170' });
  await container(`${name} DELETE on the container path`, { authorization: secret }, '/v1/credentials', 'DELETE');
  await container(`${name} PUT on a container role`, { authorization: forgedSecret }, '/v1/credentials/app', 'PUT');

  // Bytes that are not (good) HTTP at all; none carries a secret, so their echo, if any, is harmless.
  for (const [label, bytes] of [
    ['tls client hello', '\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u01fc\u0003\u0003garbage'],
    ['http 9.9', 'GET / HTTP/9.9\r\n\r\n'],
    ['not http', 'NOT-HTTP AT ALL\r\n\r\n'],
    ['duplicate session token headers', `GET ${CREDENTIALS} HTTP/1.1\r\nHost: 127.0.0.1\r\n${TOKEN}: ${t1}\r\n${TOKEN}: ${t2}\r\n\r\n`],
    ['random bytes', randomBytes(512).toString('latin1')],
  ] as const) {
    const answer = await rawSocket(base, bytes);
    searched.push({ where: `${name} raw ${label}`, text: answer });
  }
}

/** Daemon B holds no credentials: every credential answer must be a 503 with Retry-After, never a 200. */
async function exerciseTerminal(base: string, secretOfB: string): Promise<void> {
  const tB = (await call('B put ttl 60', base, 'PUT', '/latest/api/token', { [TTL]: '60' })).body;
  const imds = await call('B imds while STS refuses', base, 'GET', CREDENTIALS, { [TOKEN]: tB });
  expect(imds.headers['retry-after']).toMatch(/^\d+$/);
  const container = await call('B container while STS refuses', base, 'GET', '/v1/credentials', { authorization: secretOfB });
  expect(container.headers['retry-after']).toMatch(/^\d+$/);
  const aToken = [...imdsTokens][0]!;
  await call('B imds with A token', base, 'GET', CREDENTIALS, { [TOKEN]: aToken });
  await call('B container with A secret', base, 'GET', '/v1/credentials', { authorization: secret });
}

/** One request; its answer filed as served (a credential answer with 200), a session token, or searched. */
async function call(
  label: string,
  base: string,
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE',
  path: string,
  headers: Record<string, string>,
  body?: string,
) {
  const res = await rawRequest(base, method, path, headers, body);
  statuses.set(label, res.status);
  const text = `${res.status} ${JSON.stringify(res.headers)}\n${res.body}`;
  if (method === 'PUT' && path === '/latest/api/token' && res.status === 200) imdsTokens.add(res.body);
  else if (res.status === 200 && /(security-credentials(-extended)?\/app|\/v1\/credentials(\/app)?)$/.test(path)) served.push({ where: label, text });
  else searched.push({ where: label, text });
  return res;
}

async function rawRequest(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const client = new Client(base);
  try {
    const res = await client.request({ method: method as 'GET', path, headers, ...(body !== undefined ? { body } : {}) });
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
  } finally {
    await client.close();
  }
}

/** Writes `bytes` on a fresh connection and returns whatever comes back before the server closes it (or 1 s passes). */
function rawSocket(base: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname, () => socket.write(Buffer.from(bytes, 'latin1')));
    const chunks: Buffer[] = [];
    const done = () => resolve(Buffer.concat(chunks).toString('latin1'));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('close', done);
    socket.on('error', () => undefined);
    setTimeout(() => socket.destroy(), 1000).unref();
  });
}

async function readyz(admin: string): Promise<{ status: number; body: string }> {
  const res = await request(`${admin}/readyz`);
  return { status: res.statusCode, body: await res.body.text() };
}

async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** SIGTERM, then wait until stdout and stderr are drained, so the last log lines are in `output`. */
async function stopAndDrain(d: DaemonProcess): Promise<void> {
  const drained = d.child.stdout!.readableEnded && d.child.stderr!.readableEnded ? Promise.resolve() : once(d.child, 'close');
  await d.stop();
  await drained;
}

function logEntries(d: DaemonProcess): Array<{ level?: string; msg?: string; code?: string }> {
  return d.output.flatMap((line) => {
    try {
      return [JSON.parse(line) as { level?: string; msg?: string; code?: string }];
    } catch {
      return [];
    }
  });
}

/** Every secret of the run by name: what the tap saw on the wire, what the daemons issued, our own canaries. */
function canaries(): Map<string, string> {
  const out = new Map<string, string>();
  const add = (name: string, value: string) => {
    if (![...out.values()].includes(value)) out.set(name, value);
  };
  const allJwts = [...jwts, ...tap.tokens.filter((t) => !jwts.includes(t))];
  allJwts.forEach((jwt, i) => {
    const signature = jwt.split('.')[2] ?? '';
    add(`jwt[${i}]`, jwt);
    add(`jwt[${i}].signature`, signature);
    add(`jwt[${i}].signature[0:40]`, signature.slice(0, 40));
  });
  tap.credentials.forEach((c, i) => {
    add(`credentials[${i}].accessKeyId`, c.accessKeyId);
    add(`credentials[${i}].secretAccessKey`, c.secretAccessKey);
    add(`credentials[${i}].sessionToken`, c.sessionToken);
    add(`credentials[${i}].sessionToken[0:40]`, c.sessionToken.slice(0, 40));
    add(`credentials[${i}].sessionToken[-40:]`, c.sessionToken.slice(-40));
  });
  [...imdsTokens].forEach((t, i) => {
    add(`imds token[${i}]`, t);
    // A forged token differing only in its last character still carries this.
    add(`imds token[${i}][0:-1]`, t.slice(0, -1));
  });
  add('container secret', secret);
  add('container secret (forged prefix)', secret.slice(0, -1));
  add('container secret random part[0:16]', secret.slice('canary-container-secret-'.length, 'canary-container-secret-'.length + 16));
  add('container secret of B', secretB);
  add('token file garbage', garbageCanary);
  return out;
}

interface Hit {
  readonly canary: string;
  readonly where: string;
  readonly decoded: boolean;
}

/**
 * Where any canary occurs in `texts`: as written, percent-encoded, or inside a Buffer that a
 * logger serialized as `{"type":"Buffer","data":[…]}` (pino's error serializer copies a Node
 * parser error's `rawPacket` that way, so a plain substring search would miss it).
 */
function findCanaries(texts: readonly Text[], secrets: Map<string, string> = canaries()): Hit[] {
  const hits: Hit[] = [];
  for (const { where, text } of texts) {
    const decoded = [...text.matchAll(/\{"type":"Buffer","data":\[([\d,]*)\]\}/g)].map((m) =>
      Buffer.from(m[1]!.split(',').filter(Boolean).map(Number)).toString('latin1'),
    );
    for (const [name, value] of secrets) {
      if (text.includes(value) || text.includes(encodeURIComponent(value))) hits.push({ canary: name, where, decoded: false });
      else if (decoded.some((d) => d.includes(value))) hits.push({ canary: name, where, decoded: true });
    }
  }
  return hits;
}

interface StsTap {
  readonly url: string;
  /** Every WebIdentityToken sent, in order. */
  readonly tokens: string[];
  /** Every set of credentials STS answered, in order. */
  readonly credentials: IssuedSecret[];
  close(): Promise<void>;
}

/** A loopback HTTP forwarder in front of the STS emulator that records the secrets crossing it. */
async function startStsTap(target: string): Promise<StsTap> {
  const tokens: string[] = [];
  const credentials: IssuedSecret[] = [];
  const server = createServer((req, res) => {
    void (async () => {
      const body = await readAll(req);
      const sent = new URLSearchParams(body.toString('utf8')).get('WebIdentityToken');
      if (sent) tokens.push(sent);
      const upstream = await request(`${target}${req.url ?? '/'}`, {
        method: (req.method ?? 'POST') as 'POST',
        headers: { 'content-type': req.headers['content-type'] ?? 'application/x-www-form-urlencoded' },
        body,
      });
      const answer = await upstream.body.text();
      const tag = (name: string) => new RegExp(`<${name}>([^<]+)</${name}>`).exec(answer)?.[1];
      const accessKeyId = tag('AccessKeyId');
      if (accessKeyId) credentials.push({ accessKeyId, secretAccessKey: tag('SecretAccessKey') ?? '', sessionToken: tag('SessionToken') ?? '' });
      res.writeHead(upstream.statusCode, { 'content-type': String(upstream.headers['content-type'] ?? 'text/xml') }).end(answer);
    })().catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    tokens,
    credentials,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function readAll(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
