import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignatureV4 } from '@smithy/signature-v4';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CrosscredError } from '../../src/core/errors.js';
import { StsEmulator } from '../../src/demo/sts-emulator.js';
import { WebIdentityVerifier } from '../../src/demo/web-identity-verifier.js';
import { AwsOutboundTokenSource, type AwsOutboundTokenSourceOptions } from '../../src/sources/aws-outbound-token-source.js';
import { roleArn, startChain, startInProcess } from '../support/chain.js';
import { FakeClock } from '../support/fake-clock.js';

/**
 * The aws-outbound source against the STS emulator on loopback: the real @aws-sdk/client-sts
 * signs GetWebIdentityToken with host credentials from its own default chain (the environment, or
 * EC2 instance metadata served by crosscred itself), and the emulator checks that SigV4 signature
 * with @smithy/signature-v4 against the secret it knows before minting a JWT with its own keys.
 * Caching and renewal run on a fake clock that the emulator shares, so `exp` is in the clock's time.
 */

const ACCOUNT = '111122223333';
const AUDIENCE = 'sts.ap-southeast-1.aliyuncs.com';
const SECOND = 1000;

let sts: StsEmulator;
let dir: string;
let closedPort: number;
let clock: FakeClock;
const sources: AwsOutboundTokenSource[] = [];
/** Every secret handed to the SDK or minted here, for the "no secret in any message" checks. */
const secrets = new Set<string>();
const savedEnv = { ...process.env };

interface HostKey {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** Host credentials of an IAM role session the emulator knows, as an instance profile's would be. */
function hostSession(options: { expiresInMs?: number; role?: string } = {}): HostKey {
  const key = {
    accessKeyId: `ASIA${randomBytes(8).toString('hex').toUpperCase()}`,
    secretAccessKey: randomBytes(30).toString('base64'),
    sessionToken: randomBytes(200).toString('base64'),
  };
  sts.addHostCredentials({
    ...key,
    expiration: new Date(clock.wallNow() + (options.expiresInMs ?? 6 * 3600 * SECOND)),
    arn: `arn:aws:sts::${ACCOUNT}:assumed-role/${options.role ?? 'web-tier'}/i-0123456789abcdef0`,
  });
  secrets.add(key.secretAccessKey);
  secrets.add(key.sessionToken);
  return key;
}

/** Puts host credentials where the SDK's default chain looks first: the environment. */
function useEnvCredentials(key: HostKey): void {
  process.env['AWS_ACCESS_KEY_ID'] = key.accessKeyId;
  process.env['AWS_SECRET_ACCESS_KEY'] = key.secretAccessKey;
  if (key.sessionToken) process.env['AWS_SESSION_TOKEN'] = key.sessionToken;
  else delete process.env['AWS_SESSION_TOKEN'];
}

/** Leaves the SDK's default chain nothing but files that do not exist and an IMDS at a closed loopback port. */
function isolateDefaultChain(): void {
  for (const name of Object.keys(process.env)) if (name.startsWith('AWS_')) delete process.env[name];
  process.env['AWS_SHARED_CREDENTIALS_FILE'] = join(dir, 'no-credentials');
  process.env['AWS_CONFIG_FILE'] = join(dir, 'no-config');
  process.env['AWS_EC2_METADATA_SERVICE_ENDPOINT'] = `http://127.0.0.1:${closedPort}`;
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';
}

function source(overrides: Partial<AwsOutboundTokenSourceOptions> = {}): AwsOutboundTokenSource {
  const s = new AwsOutboundTokenSource({
    audience: AUDIENCE,
    signingAlgorithm: 'RS256',
    durationSeconds: 300,
    region: 'us-east-1',
    stsEndpoint: sts.url,
    transport: { connectTimeoutMs: 5_000, responseTimeoutMs: 10_000 },
    clock,
    ...overrides,
  });
  sources.push(s);
  return s;
}

/** The rejection of `promise`, which must be a CrosscredError that names no secret. */
async function refusal(promise: Promise<unknown>): Promise<CrosscredError> {
  const err = await promise.then(
    () => {
      throw new Error('expected a refusal');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CrosscredError);
  const text = `${(err as CrosscredError).describe()} ${JSON.stringify(err)}`;
  for (const secret of secrets) expect(text).not.toContain(secret);
  return err as CrosscredError;
}

/** Verifies `token` as the other cloud would: discovery at the issuer, then its JWKS. */
async function verifyAsRelyingParty(token: string, algorithm: string) {
  const discovery = (await (await fetch(`${sts.url}/.well-known/openid-configuration`)).json()) as { issuer: string; jwks_uri: string };
  expect(discovery.issuer).toBe(sts.url);
  return jwtVerify(token, createRemoteJWKSet(new URL(discovery.jwks_uri)), {
    issuer: sts.url,
    audience: AUDIENCE,
    algorithms: [algorithm],
    currentDate: new Date(clock.wallNow()),
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'crosscred-aws-outbound-'));
  // A port that was free a moment ago and is closed now: the default chain's IMDS step finds nothing there.
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  closedPort = (probe.address() as { port: number }).port;
  await new Promise((resolve) => probe.close(resolve));
  sts = await StsEmulator.start({ trust: [] });
});

beforeEach(() => {
  clock = new FakeClock(Date.now());
  sts.now = () => clock.wallNow();
  sts.outboundFederationEnabled = true;
  isolateDefaultChain();
});

afterEach(() => {
  for (const s of sources.splice(0)) s.close();
});

afterAll(async () => {
  process.env = savedEnv;
  await sts.close();
  await rm(dir, { recursive: true, force: true });
});

describe('aws-outbound: a JWT from GetWebIdentityToken, signed with the host credentials', () => {
  for (const algorithm of ['RS256', 'ES384'] as const) {
    it(`gets a ${algorithm} token with the audience and lifetime asked for, verifiable at the issuer's JWKS`, async () => {
      const key = hostSession({ role: 'web-tier' });
      useEnvCredentials(key);
      const got = await source({ signingAlgorithm: algorithm, durationSeconds: 900 }).getToken();
      const { payload, protectedHeader } = await verifyAsRelyingParty(got.token, algorithm);
      expect(protectedHeader.alg).toBe(algorithm);
      expect(payload.aud).toBe(AUDIENCE);
      expect(payload.sub).toBe(`arn:aws:iam::${ACCOUNT}:role/web-tier`);
      expect(payload.exp! - payload.iat!).toBe(900);
      expect(got.expiresAtWall).toBe(payload.exp! * 1000);
      expect(got.claims).toMatchObject({ iss: sts.url, sub: `arn:aws:iam::${ACCOUNT}:role/web-tier`, alg: algorithm });
      expect(sts.minted.at(-1)).toMatchObject({ accessKeyId: key.accessKeyId, signingAlgorithm: algorithm, audience: [AUDIENCE] });
    });
  }

  it('the token passes the check the fake Alibaba and Tencent STS make (discovery, JWKS, iss, aud, exp)', async () => {
    useEnvCredentials(hostSession({ role: 'exporter' }));
    const got = await source({ signingAlgorithm: 'ES384' }).getToken();
    const verifier = new WebIdentityVerifier(() => clock.wallNow());
    expect(await verifier.verify(got.token, { issuer: sts.url, audience: AUDIENCE })).toMatchObject({
      ok: true,
      subject: `arn:aws:iam::${ACCOUNT}:role/exporter`,
    });
    expect(await verifier.verify(got.token, { issuer: sts.url, audience: 'another-audience' })).toMatchObject({ ok: false, why: 'invalid' });
  });

  it("an IAM user's long-term key works too: the token's sub is the user's ARN", async () => {
    const key = { accessKeyId: `AKIA${randomBytes(8).toString('hex').toUpperCase()}`, secretAccessKey: randomBytes(30).toString('base64') };
    secrets.add(key.secretAccessKey);
    sts.addHostCredentials({ ...key, arn: `arn:aws:iam::${ACCOUNT}:user/batch` });
    useEnvCredentials(key);
    const got = await source().getToken();
    expect(decodeJwt(got.token).sub).toBe(`arn:aws:iam::${ACCOUNT}:user/batch`);
  });

  it('keeps the token, one request for many callers, and asks again after invalidate()', async () => {
    useEnvCredentials(hostSession());
    const s = source();
    const before = sts.minted.length;
    const [a, b, c] = await Promise.all([s.getToken(), s.getToken(), s.getToken()]);
    expect(b.token).toBe(a.token);
    expect(c.token).toBe(a.token);
    expect((await s.getToken()).token).toBe(a.token);
    expect(sts.minted.length - before).toBe(1);
    s.invalidate();
    const fresh = await s.getToken();
    expect(fresh.token).not.toBe(a.token);
    expect(sts.minted.length - before).toBe(2);
  });

  it('renews before expiry: a 300 s token is kept for half its life, then replaced', async () => {
    useEnvCredentials(hostSession());
    const s = source({ durationSeconds: 300 });
    const before = sts.minted.length;
    const first = await s.getToken();
    await clock.advance(149 * SECOND);
    expect((await s.getToken()).token).toBe(first.token);
    expect(sts.minted.length - before).toBe(1);
    await clock.advance(2 * SECOND);
    const second = await s.getToken();
    expect(second.token).not.toBe(first.token);
    expect(second.expiresAtWall).toBe(first.expiresAtWall + 151 * SECOND);
    expect(sts.minted.length - before).toBe(2);
  });

  it('a 3600 s token is renewed at 80% of its life', async () => {
    // The SDK signs with the real time, which STS must find within 15 minutes of its own: here
    // STS keeps the real time while the source's clock runs 48 minutes ahead.
    sts.now = Date.now;
    useEnvCredentials(hostSession());
    const s = source({ durationSeconds: 3600 });
    const before = sts.minted.length;
    const first = await s.getToken();
    await clock.advance(2879 * SECOND);
    expect((await s.getToken()).token).toBe(first.token);
    expect(sts.minted.length - before).toBe(1);
    await clock.advance(2 * SECOND);
    expect((await s.getToken()).token).not.toBe(first.token);
    expect(sts.minted.length - before).toBe(2);
  });

  it('a failed renewal hands out the held token while it has a minute left, then the error', async () => {
    const key = hostSession({ expiresInMs: 6 * 3600 * SECOND });
    useEnvCredentials(key);
    const s = source({ durationSeconds: 300 });
    const first = await s.getToken();
    sts.outboundFederationEnabled = false;
    await clock.advance(200 * SECOND);
    expect((await s.getToken()).token).toBe(first.token);
    await clock.advance(50 * SECOND);
    expect((await refusal(s.getToken())).message).toMatch(/has not enabled outbound identity federation/);
  });
});

describe('aws-outbound: refusals, each with a clear message and no secret', () => {
  it('a wrong secret key: the emulator recomputes the signature and refuses it (SignatureDoesNotMatch)', async () => {
    const key = hostSession();
    const wrong = randomBytes(30).toString('base64');
    secrets.add(wrong);
    useEnvCredentials({ ...key, secretAccessKey: wrong });
    const before = sts.minted.length;
    const err = await refusal(source().getToken());
    expect(err.code).toBe('CROSSCRED_ERR_TOKEN_REQUEST_FAILED');
    expect(err.message).toMatch(/SignatureDoesNotMatch.*secret key is not the access key id's/);
    expect(sts.minted.length).toBe(before);
  });

  it('an access key id STS does not know (InvalidClientTokenId)', async () => {
    const key = { accessKeyId: 'ASIAUNKNOWNKEY000000', secretAccessKey: randomBytes(30).toString('base64'), sessionToken: 'c2Vzc2lvbg' };
    secrets.add(key.secretAccessKey);
    useEnvCredentials(key);
    expect((await refusal(source().getToken())).message).toMatch(/InvalidClientTokenId/);
  });

  it("a session token that is not the key's (InvalidClientTokenId)", async () => {
    const key = hostSession();
    useEnvCredentials({ ...key, sessionToken: randomBytes(200).toString('base64') });
    expect((await refusal(source().getToken())).message).toMatch(/InvalidClientTokenId/);
  });

  it('expired host session credentials (ExpiredToken)', async () => {
    const key = hostSession({ expiresInMs: -60 * SECOND });
    useEnvCredentials(key);
    expect((await refusal(source().getToken())).message).toMatch(/ExpiredToken.*have expired/);
  });

  it("a host clock 20 minutes off STS's: the signature has expired (SignatureDoesNotMatch)", async () => {
    useEnvCredentials(hostSession());
    clock.jumpWall(20 * 60 * SECOND);
    expect((await refusal(source().getToken())).message).toMatch(/SignatureDoesNotMatch.*clock/);
  });

  it('a token that would outlive the host session (SessionDurationEscalationException)', async () => {
    useEnvCredentials(hostSession({ expiresInMs: 100 * SECOND }));
    expect((await refusal(source({ durationSeconds: 300 }).getToken())).message).toMatch(/SessionDurationEscalationException.*shorter duration/);
  });

  it('an account without outbound identity federation enabled (OutboundWebIdentityFederationDisabledException)', async () => {
    useEnvCredentials(hostSession());
    sts.outboundFederationEnabled = false;
    const err = await refusal(source().getToken());
    expect(err.message).toMatch(/has not enabled outbound identity federation/);
    expect(err.message).toContain('aws iam enable-outbound-web-identity-federation');
  });

  it('no AWS credentials on this host: none in the environment or files, and no instance metadata', async () => {
    const before = sts.minted.length;
    const err = await refusal(source().getToken());
    expect(err.message).toMatch(/this host has no AWS credentials/);
    expect(sts.minted.length).toBe(before);
  });

  it('settings out of range are refused before any request', () => {
    expect(() => source({ durationSeconds: 59 })).toThrow(/60-3600/);
    expect(() => source({ durationSeconds: 3601 })).toThrow(/60-3600/);
    expect(() => source({ region: 'not a region' })).toThrow(/not an AWS region/);
    expect(() => source({ audience: '' })).toThrow(/audience/);
    expect(() => source({ stsEndpoint: 'ftp://sts.example' })).toThrow(/STS endpoint/);
  });
});

describe('the emulator checks SigV4 as STS does', () => {
  async function post(body: string, headers: Record<string, string>): Promise<{ status: number; text: string }> {
    const res = await fetch(sts.url, { method: 'POST', headers, body });
    return { status: res.status, text: await res.text() };
  }

  async function signed(key: HostKey, body: string): Promise<Record<string, string>> {
    const { host } = new URL(sts.url);
    const signer = new SignatureV4({
      service: 'sts',
      region: 'us-east-1',
      credentials: key,
      sha256: (await import('@smithy/core/checksum')).Sha256,
      // No x-amz-content-sha256 header: the body is then covered by the signature alone.
      applyChecksum: false,
    });
    const request = await signer.sign({
      method: 'POST',
      protocol: 'http:',
      hostname: host,
      path: '/',
      query: {},
      headers: { host, 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
    return request.headers as Record<string, string>;
  }

  const form = (audience: string) => `Action=GetWebIdentityToken&Version=2011-06-15&Audience.member.1=${encodeURIComponent(audience)}&SigningAlgorithm=ES384`;

  it('an unsigned request is refused (MissingAuthenticationToken)', async () => {
    const answer = await post(form(AUDIENCE), { 'content-type': 'application/x-www-form-urlencoded' });
    expect(answer.status).toBe(403);
    expect(answer.text).toContain('<Code>MissingAuthenticationToken</Code>');
  });

  it('a body changed after signing is refused (SignatureDoesNotMatch), the same body signed is accepted', async () => {
    const key = hostSession();
    const headers = await signed(key, form(AUDIENCE));
    const tampered = await post(form('https://attacker.example'), headers);
    expect(tampered.status).toBe(403);
    expect(tampered.text).toContain('<Code>SignatureDoesNotMatch</Code>');
    const honest = await post(form(AUDIENCE), headers);
    expect(honest.status).toBe(200);
    expect(honest.text).toMatch(/<WebIdentityToken>[\w-]+\.[\w-]+\.[\w-]+<\/WebIdentityToken>/);
  });
});

describe('aws-outbound on an EC2-like host: the SDK default chain reads instance metadata', () => {
  it('signs with the role credentials crosscred serve hands out as IMDS, which the emulator issued', async () => {
    const chain = await startChain({ roles: ['app'] });
    const daemon = await startInProcess(chain);
    try {
      process.env['AWS_EC2_METADATA_SERVICE_ENDPOINT'] = daemon.base;
      const s = new AwsOutboundTokenSource({
        audience: AUDIENCE,
        signingAlgorithm: 'ES384',
        durationSeconds: 600,
        region: 'us-east-1',
        stsEndpoint: chain.sts.url,
        transport: { connectTimeoutMs: 5_000, responseTimeoutMs: 10_000 },
        clock: new FakeClock(Date.now()),
      });
      sources.push(s);
      const got = await s.getToken();
      expect(chain.sts.minted).toHaveLength(1);
      const minted = chain.sts.minted[0]!;
      // The key that signed is one the emulator issued to crosscred for role `app`, read by the SDK from IMDS.
      expect(chain.sts.issued.map((c) => c.accessKeyId)).toContain(minted.accessKeyId);
      expect(minted.subject).toBe(roleArn('app'));
      const { payload } = await jwtVerify(got.token, createRemoteJWKSet(new URL(`${chain.sts.url}/.well-known/jwks.json`)), {
        issuer: chain.sts.url,
        audience: AUDIENCE,
        algorithms: ['ES384'],
      });
      expect(payload.sub).toBe(roleArn('app'));
      expect(payload.exp! - payload.iat!).toBe(600);
    } finally {
      await daemon.close();
      await chain.close();
    }
  });
});
