import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  diagnoseNodeAgent,
  formatNodeAgentReport,
  type NodeAgentDoctorOptions,
  type NodeAgentReport,
  nodeAgentExitCode,
} from '../../src/advice/node-agent-doctor.js';
import { systemClock } from '../../src/core/clock.js';
import { DemoOidcIssuer } from '../../src/demo/oidc-issuer.js';
import { CREDENTIALS_PATH_PREFIX, DEFAULT_AUDIENCE, ENV } from '../../src/protocol/pod-identity.js';
import { ACCOUNT, CLI_ARGS, CLI_EXEC } from '../support/chain.js';

/**
 * `doctor --node-agent` against loopback stand-ins: an "agent" (FULL_URI on 127.0.0.1, which the
 * SDKs allow too) that answers as told, and an IMDS reached through AWS_EC2_METADATA_SERVICE_ENDPOINT.
 * Every environment here names a loopback IMDS, so no probe ever leaves the machine. The real agent
 * is checked in test/e2e/node-agent-pods.test.ts.
 */
const ROLE = `arn:aws:iam::${ACCOUNT}:role/pods/app`;
const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const SESSION_TOKEN = `IQoJb3JpZ2luX2VjE${'A'.repeat(200)}`;
const POD = { namespace: 'payments', pod: { name: 'api-7c9d5-x2p4q', uid: 'pod-uid-1' }, serviceaccount: { name: 'api', uid: 'sa-uid-1' } };

type AgentBehaviour = { kind: 'credentials'; expiration?: string } | { kind: 'error'; status: number; body: string; retryAfter?: string } | { kind: 'hang' };

let issuer: DemoOidcIssuer;
let agent: Server;
let imds: Server;
let dir: string;
let agentBase: string;
let imdsBase: string;
/** A loopback port nothing listens on. */
let closedBase: string;
let behaviour: AgentBehaviour;
let imdsRole: string | undefined;
const seen: Array<{ path: string; authorization: string | undefined }> = [];
const sockets = new Set<Socket>();
let token: string;
let tokenFile: string;

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; base: string }> {
  const server = createServer(handler);
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function mint(claims: { aud?: string; ttlSeconds?: number; pod?: boolean } = {}): Promise<string> {
  return issuer.mint({
    sub: 'system:serviceaccount:payments:api',
    aud: claims.aud ?? DEFAULT_AUDIENCE,
    ttlSeconds: claims.ttlSeconds ?? 3600,
    extra: claims.pod === false ? { 'kubernetes.io': { namespace: 'payments', serviceaccount: POD.serviceaccount } } : { 'kubernetes.io': POD },
  });
}

async function fileWith(content: string, name = `token-${Math.random().toString(36).slice(2)}`): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, content);
  return file;
}

/** What the webhook injects, pointed at the stand-in agent, with a loopback IMDS that answers nothing. */
function injected(extra: Record<string, string> = {}): Record<string, string> {
  return {
    [ENV.fullUri]: `${agentBase}${CREDENTIALS_PATH_PREFIX}${ROLE}`,
    [ENV.authorizationTokenFile]: tokenFile,
    AWS_EC2_METADATA_SERVICE_ENDPOINT: closedBase,
    ...extra,
  };
}

function options(env: Record<string, string>, more: Partial<NodeAgentDoctorOptions> = {}): NodeAgentDoctorOptions {
  if (!env['AWS_EC2_METADATA_SERVICE_ENDPOINT'] && env['AWS_EC2_METADATA_DISABLED'] !== 'true') throw new Error('every test names a loopback IMDS');
  return { env, clock: systemClock, audience: DEFAULT_AUDIENCE, allowedIssuers: [issuer.url], agentTimeoutMs: 2000, imdsTimeoutMs: 1000, ...more };
}

/** Every check as "status title", for matching. */
function lines(report: NodeAgentReport): string[] {
  return report.sections.flatMap((s) => s.checks.map((c) => `${c.status} ${c.title}`));
}

beforeAll(async () => {
  issuer = await DemoOidcIssuer.start();
  dir = await mkdtemp(join(tmpdir(), 'crosscred-na-doctor-'));
  ({ server: agent, base: agentBase } = await listen((req, res) => {
    seen.push({ path: req.url ?? '', authorization: req.headers.authorization });
    const b = behaviour;
    if (b.kind === 'hang') return;
    if (b.kind === 'error') {
      res.writeHead(b.status, { 'content-type': 'application/json', ...(b.retryAfter ? { 'retry-after': b.retryAfter } : {}) }).end(b.body);
      return;
    }
    const expiration = b.expiration ?? new Date(Math.floor(Date.now() / 1000 + 3600) * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ AccessKeyId: 'ASIAEXAMPLEPODKEY01', SecretAccessKey: SECRET, Token: SESSION_TOKEN, Expiration: expiration, RoleArn: ROLE }));
  }));
  ({ server: imds, base: imdsBase } = await listen((req, res) => {
    if (req.method === 'PUT' && req.url === '/latest/api/token') return void res.writeHead(200).end('imds-session-token');
    if (req.url === '/latest/meta-data/iam/security-credentials/' && imdsRole) return void res.writeHead(200).end(imdsRole);
    res.writeHead(404).end();
  }));
  const closed = await listen(() => undefined);
  closedBase = closed.base;
  await new Promise<void>((resolve) => closed.server.close(() => resolve()));
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all([new Promise((r) => agent?.close(r)), new Promise((r) => imds?.close(r)), issuer?.close()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  behaviour = { kind: 'credentials' };
  imdsRole = undefined;
  seen.length = 0;
  token = await mint();
  tokenFile = await fileWith(token);
});

describe('a pod set up as the webhook does it', () => {
  it('every check is ok, the agent got the token as the SDKs send it, and nothing secret is printed', async () => {
    const report = await diagnoseNodeAgent(options(injected()));
    const text = formatNodeAgentReport(report);
    // The one warning is the stand-in's loopback address; everything else is ok.
    expect(
      lines(report).filter((l) => !l.startsWith('ok ')),
      text,
    ).toEqual(["warn 127.0.0.1 is not the node agent's address (169.254.170.23 or [fd00:ec2::23])"]);
    expect(nodeAgentExitCode(report)).toBe(0);
    expect(seen).toEqual([{ path: `${CREDENTIALS_PATH_PREFIX}${ROLE}`, authorization: token }]);
    expect(lines(report)).toEqual(
      expect.arrayContaining([
        `ok the URI names the role ${ROLE}`,
        `ok aud includes ${DEFAULT_AUDIENCE}`,
        `ok iss ${issuer.url} is allowed`,
        'ok the token is bound to pod payments/api-7c9d5-x2p4q',
        'ok no trailing newline (the JS SDK and botocore would refuse one)',
        `ok the node agent answered 200 with credentials for ${ROLE} (not shown)`,
        expect.stringMatching(/^ok the instance metadata service \(IMDS\) does not answer from this pod/),
      ]),
    );
    expect(text).toContain('the node agent names its STS session payments.api-7c9d5-x2p4q (CloudTrail shows it)');
    for (const secret of [token.split('.')[2]!, SECRET, SESSION_TOKEN, 'ASIAEXAMPLEPODKEY01']) expect(text).not.toContain(secret);
    expect(text).toMatch(/This pod can get its credentials from the node agent, with 1 warning\.\n$/);
  });

  it('without --allowed-issuer, iss is shown for information', async () => {
    const report = await diagnoseNodeAgent(options(injected(), { allowedIssuers: [] }));
    expect(lines(report)).toContain(`info iss is ${issuer.url}`);
    expect(nodeAgentExitCode(report)).toBe(0);
  });
});

describe('the variables', () => {
  it('nothing injected: both variables fail, the agent is not asked', async () => {
    const report = await diagnoseNodeAgent(options({ AWS_EC2_METADATA_SERVICE_ENDPOINT: closedBase }));
    expect(lines(report)).toEqual(
      expect.arrayContaining([`fail ${ENV.fullUri} is not set`, `fail ${ENV.authorizationTokenFile} is not set`, 'info no token to check']),
    );
    expect(seen).toEqual([]);
    expect(nodeAgentExitCode(report)).toBe(1);
  });

  it('variables earlier in the SDK chain warn, without showing their values', async () => {
    const report = await diagnoseNodeAgent(
      options(
        injected({
          AWS_ACCESS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE',
          AWS_SECRET_ACCESS_KEY: SECRET,
          AWS_PROFILE: 'default',
          [ENV.roleArn]: ROLE,
          [ENV.webIdentityTokenFile]: tokenFile,
          [ENV.authorizationToken]: token,
        }),
      ),
    );
    const text = formatNodeAgentReport(report);
    const warnings = lines(report).filter((l) => l.startsWith('warn '));
    expect(warnings).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^warn AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY are set: the SDKs use these environment credentials before the node agent/),
        expect.stringMatching(/^warn AWS_PROFILE is set \(default\)/),
        expect.stringMatching(/^warn AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE are set/),
        `warn ${ENV.authorizationToken} is set beside ${ENV.authorizationTokenFile}`,
      ]),
    );
    expect(text).not.toContain('AKIAIOSFODNN7EXAMPLE');
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(token.split('.')[2]!);
    // Warnings only: the agent itself still works.
    expect(nodeAgentExitCode(report)).toBe(0);
  });

  it('a FULL_URI host the SDKs refuse for plain HTTP fails, and nothing is sent there', async () => {
    const report = await diagnoseNodeAgent(options(injected({ [ENV.fullUri]: `http://10.96.0.99${CREDENTIALS_PATH_PREFIX}${ROLE}` })));
    expect(lines(report)).toContain('fail the SDKs refuse plain HTTP to 10.96.0.99');
    expect(lines(report)).toContain('info not checked: no usable AWS_CONTAINER_CREDENTIALS_FULL_URI');
    expect(nodeAgentExitCode(report)).toBe(1);
  });

  it('a path that is not /v1/credentials/<valid role ARN> fails', async () => {
    const bad = await diagnoseNodeAgent(options(injected({ [ENV.fullUri]: `${agentBase}${CREDENTIALS_PATH_PREFIX}arn:aws:iam::12345:role/app` })));
    expect(lines(bad)).toContainEqual(expect.stringMatching(/^fail the URI's role arn:aws:iam::12345:role\/app is not an IAM role ARN/));
    const noPrefix = await diagnoseNodeAgent(options(injected({ [ENV.fullUri]: `${agentBase}/v1/credentials` })));
    expect(lines(noPrefix)).toContain(`fail the URI's path does not start with ${CREDENTIALS_PATH_PREFIX}`);
    expect(seen).toEqual([]);
  });

  it('the IPv6 URI without AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6 warns (Java)', async () => {
    // Only the variables are judged here: the agent check would go to fd00:ec2::23, so it is given no token.
    const report = await diagnoseNodeAgent(
      options(
        { [ENV.fullUri]: `http://[fd00:ec2::23]${CREDENTIALS_PATH_PREFIX}${ROLE}`, AWS_EC2_METADATA_SERVICE_ENDPOINT: closedBase },
        { agentTimeoutMs: 100 },
      ),
    );
    expect(lines(report)).toContain(`warn the URI is IPv6 but ${ENV.endpointMode} is not IPv6`);
    expect(lines(report)).toContain("ok its host [fd00:ec2::23] is on every current SDK's allow-list");
  });
});

describe('the token', () => {
  it('a wrong audience, an issuer not allowed, no pod binding and expiry each fail by name', async () => {
    const cases: Array<[string, () => Promise<string>, RegExp]> = [
      ['aud', () => mint({ aud: 'https://kubernetes.default.svc' }), /^fail aud is https:\/\/kubernetes\.default\.svc, not sts\.amazonaws\.com$/],
      ['pod', () => mint({ pod: false }), /^fail the token is not bound to a pod \(no kubernetes\.io\.pod claim\)/],
      ['exp', () => mint({ ttlSeconds: -120 }), /^fail the token expired 2 min \d+ s ago$/],
    ];
    for (const [, make, expected] of cases) {
      tokenFile = await fileWith(await make());
      const report = await diagnoseNodeAgent(options(injected()));
      expect(lines(report)).toContainEqual(expect.stringMatching(expected));
      expect(nodeAgentExitCode(report)).toBe(1);
    }
    const otherIssuer = await diagnoseNodeAgent(options(injected(), { allowedIssuers: ['https://oidc.example.com/cluster-1'] }));
    expect(lines(otherIssuer)).toContain(`fail iss ${issuer.url} is not among --allowed-issuer`);
  });

  it('a sub that is not a ServiceAccount, a kubernetes.io claim that contradicts it, and an iat in the future fail as the agent refuses them', async () => {
    tokenFile = await fileWith(await issuer.mint({ sub: 'user:alice', aud: DEFAULT_AUDIENCE, ttlSeconds: 3600, extra: { 'kubernetes.io': POD } }));
    expect(lines(await diagnoseNodeAgent(options(injected())))).toContainEqual(
      expect.stringMatching(/^fail sub user:alice is not system:serviceaccount:<namespace>:<name>: the node agent refuses it$/),
    );
    const otherNamespace = { ...POD, namespace: 'kube-system' };
    tokenFile = await fileWith(
      await issuer.mint({ sub: 'system:serviceaccount:payments:api', aud: DEFAULT_AUDIENCE, ttlSeconds: 3600, extra: { 'kubernetes.io': otherNamespace } }),
    );
    expect(lines(await diagnoseNodeAgent(options(injected())))).toContain(
      "fail the token's kubernetes.io claim names namespace kube-system, unlike its sub: the node agent refuses it",
    );
    // Signed by a key of this test's own: doctor never verifies signatures (STS does).
    const { privateKey } = await generateKeyPair('ES256');
    const now = Math.floor(Date.now() / 1000);
    const future = await new SignJWT({ 'kubernetes.io': POD })
      .setProtectedHeader({ alg: 'ES256' })
      .setIssuer(issuer.url)
      .setSubject('system:serviceaccount:payments:api')
      .setAudience(DEFAULT_AUDIENCE)
      .setIssuedAt(now + 600)
      .setExpirationTime(now + 3600)
      .sign(privateKey);
    tokenFile = await fileWith(future);
    expect(lines(await diagnoseNodeAgent(options(injected())))).toContainEqual(
      expect.stringMatching(/^fail the token's iat is (599|600) s in this node's future: the node agent refuses it$/),
    );
  });

  it('a trailing newline fails (the JS SDK and botocore refuse it); the agent is still asked with the token trimmed', async () => {
    tokenFile = await fileWith(`${token}\n`);
    const report = await diagnoseNodeAgent(options(injected()));
    expect(lines(report)).toContain('fail the token ends (or starts) with whitespace, such as a trailing newline');
    expect(seen.map((s) => s.authorization)).toEqual([token]);
    expect(nodeAgentExitCode(report)).toBe(1);
  });

  it('a missing file, and a file that is not a JWT, fail', async () => {
    const missing = await diagnoseNodeAgent(options(injected({ [ENV.authorizationTokenFile]: join(dir, 'absent') })));
    expect(lines(missing)).toContain(`fail cannot read the token file ${join(dir, 'absent')}`);
    expect(lines(missing)).toContain('info no GET sent: there is no usable token to send');
    tokenFile = await fileWith('not-a-jwt');
    const junk = await diagnoseNodeAgent(options(injected()));
    expect(lines(junk)).toContain('fail the token is not a usable JWT');
    expect(seen).toEqual([]);
  });
});

describe('the agent', () => {
  it('a port nothing listens on: the connection fails, refused', async () => {
    const report = await diagnoseNodeAgent(options(injected({ [ENV.fullUri]: `${closedBase}${CREDENTIALS_PATH_PREFIX}${ROLE}` })));
    const check = report.sections[2]!.checks[0]!;
    expect(check).toMatchObject({ status: 'fail', title: expect.stringMatching(/^cannot connect to 127\.0\.0\.1:\d+: ECONNREFUSED$/) });
    expect(check.fix).toMatch(/nothing listens there/);
  });

  it('a refusal is shown with its status and Code, and whatever token-shaped text it echoes is masked', async () => {
    behaviour = {
      kind: 'error',
      status: 403,
      body: JSON.stringify({ Code: 'InvalidIdentityToken', Message: `STS refused the token ${token}` }),
    };
    const report = await diagnoseNodeAgent(options(injected()));
    const check = report.sections[2]!.checks.at(-1)!;
    expect(check).toMatchObject({ status: 'fail', title: 'the node agent answered HTTP 403 InvalidIdentityToken' });
    expect(check.detail).toBe('STS refused the token [token]');
    expect(check.fix).toMatch(/trust policy/);
    expect(formatNodeAgentReport(report)).not.toContain(token.split('.')[1]!);
  });

  it('throttling (503 + Retry-After) is shown with the wait', async () => {
    behaviour = { kind: 'error', status: 503, retryAfter: '2', body: JSON.stringify({ Code: 'Throttling', Message: 'too many requests from this pod' }) };
    const report = await diagnoseNodeAgent(options(injected()));
    expect(lines(report)).toContain('fail the node agent answered HTTP 503 Throttling; Retry-After 2 s');
  });

  it('an agent that accepts and never answers fails within the budget', async () => {
    behaviour = { kind: 'hang' };
    const report = await diagnoseNodeAgent(options(injected(), { agentTimeoutMs: 300 }));
    expect(lines(report)).toContainEqual(
      expect.stringMatching(/^fail GET \/v1\/credentials\/arn:aws:iam::111122223333:role\/pods\/app got no answer: no answer within 300 ms$/),
    );
  });

  it('credentials dated with +00:00 (which the JS SDK refuses) warn; 200 without all fields fails', async () => {
    behaviour = { kind: 'credentials', expiration: new Date(Date.now() + 3_600_000).toISOString().replace(/\.\d+Z$/, '+00:00') };
    const dated = await diagnoseNodeAgent(options(injected()));
    expect(lines(dated)).toContainEqual(expect.stringMatching(/^warn Expiration .*\+00:00 is not in the YYYY-MM-DDTHH:MM:SSZ form/));
    behaviour = { kind: 'error', status: 200, body: JSON.stringify({ AccessKeyId: 'ASIAEXAMPLEPODKEY01' }) };
    const partial = await diagnoseNodeAgent(options(injected()));
    expect(lines(partial)).toContain('fail the node agent answered 200 without complete credentials');
    expect(formatNodeAgentReport(partial)).not.toContain('ASIAEXAMPLEPODKEY01');
  });
});

describe('the silent fallback to the node role', () => {
  it('IMDS that offers a role warns, naming the role and the fix', async () => {
    imdsRole = 'eks-node-role';
    const report = await diagnoseNodeAgent(options(injected({ AWS_EC2_METADATA_SERVICE_ENDPOINT: imdsBase })));
    const check = report.sections[3]!.checks[0]!;
    expect(check).toMatchObject({ status: 'warn', title: `IMDS answers from this pod at ${new URL(imdsBase).host} and offers the node's role eks-node-role` });
    expect(check.detail).toContain('IMDSv2 session token: HTTP 200');
    expect(check.fix).toMatch(/hop-limit 1/);
    expect(nodeAgentExitCode(report)).toBe(0);
  });

  it('IMDS that answers but offers no role is information only; AWS_EC2_METADATA_DISABLED=true is not probed', async () => {
    const report = await diagnoseNodeAgent(options(injected({ AWS_EC2_METADATA_SERVICE_ENDPOINT: imdsBase })));
    expect(report.sections[3]!.checks[0]).toMatchObject({ status: 'info', title: expect.stringMatching(/but offers it no role$/) });
    const disabled = await diagnoseNodeAgent(options(injected({ AWS_EC2_METADATA_SERVICE_ENDPOINT: '', AWS_EC2_METADATA_DISABLED: 'true' })));
    expect(disabled.sections[3]!.checks).toEqual([{ status: 'ok', title: 'AWS_EC2_METADATA_DISABLED=true: the SDKs never fall back to IMDS here' }]);
  });
});

describe('crosscred doctor --node-agent (the CLI)', () => {
  const cli = (env: Record<string, string>, args: string[] = []) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        CLI_EXEC,
        [...CLI_ARGS, 'doctor', '--node-agent', ...args],
        { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env }, timeout: 30_000 },
        (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: unknown }).code) : 0, stdout, stderr }),
      );
    });

  it('exits 0 with the report when the pod can get credentials, 1 when it cannot', async () => {
    const good = await cli(injected(), ['--allowed-issuer', issuer.url]);
    expect(good.code, good.stdout + good.stderr).toBe(0);
    expect(good.stdout).toMatch(/^variables \(what the webhook injects, and what would win over it\)\n {2}\[ok\] {3}AWS_CONTAINER_CREDENTIALS_FULL_URI is set/);
    expect(good.stdout).not.toContain(token.split('.')[2]!);
    const bad = await cli(injected(), ['--audience', 'https://kubernetes.default.svc']);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain('[FAIL] aud is sts.amazonaws.com, not https://kubernetes.default.svc');
  });

  it('refuses an option it does not know with exit 2', async () => {
    const result = await cli(injected(), ['--role-arn', ROLE]);
    expect(result.code).toBe(2);
  });
});
