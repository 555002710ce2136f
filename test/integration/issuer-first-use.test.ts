import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resetInstance } from '../../src/issuer/first-use-admin.js';
import { parseIssuerConfigText } from '../../src/issuer/issuer-config.js';
import { INSTANCE_SECRET_PARAMETER, SUBJECT_TOKEN_TYPES } from '../../src/protocol/issuer-token-exchange.js';
import { IssuerClient } from '../../src/sources/issuer-client.js';
import { ECS_ACCOUNT, fakeSubjectToken, startTestIssuer, type TestIssuer } from '../support/issuer-fixtures.js';
import { type RedisServer, redisServerUnavailable, startRedisServer } from '../support/redis-server.js';
import { crosscred } from '../support/run-cli.js';

/**
 * Trust on first use (issue #11, item 6): with policy.alibabaEcsIdentity.trustOnFirstUse, an
 * instance's first accepted attestation binds the instance secret it presents; a later attestation
 * of the same instance without it (what an SSRF on the VM can send: a freshly signed identity
 * document, but not the secret file) is refused.
 */

/** The token endpoint's answer: status and the CROSSCRED_ERR_ code in its description. */
async function outcome(res: Response): Promise<string> {
  const body = (await res.json()) as { error?: string; error_description?: string };
  if (res.status === 200) return '200';
  return `${res.status} ${body.error} ${/CROSSCRED_ERR_[A-Z_]+/.exec(body.error_description ?? '')?.[0] ?? '?'}`;
}

const newSecret = () => randomBytes(32).toString('base64url');
const withSecret = (secret: string) => ({ [INSTANCE_SECRET_PARAMETER]: secret });
const MISMATCH = '403 invalid_grant CROSSCRED_ERR_ISSUER_INSTANCE_SECRET_MISMATCH';

/** The test issuer's policy with trustOnFirstUse for alibabaEcsIdentity. */
function firstUseOverrides(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    clientRateLimit: { burst: 100_000, perSecond: 100_000 },
    rateLimit: { burst: 100, perMinute: 600 },
    policy: {
      alibabaEcsIdentity: { accounts: [ECS_ACCOUNT], regions: ['cn-hangzhou'], instanceIds: ['*'], trustOnFirstUse: true },
      alibabaRamRole: { accounts: [ECS_ACCOUNT], roles: ['app-role'], instanceIds: ['*'] },
      tencentCamRole: { accounts: ['100012345678'], roles: ['4611686018427397919'], instanceIds: ['*'] },
    },
    ...extra,
  };
}

describe('trust on first use, state: memory', () => {
  let issuer: TestIssuer;
  beforeAll(async () => {
    issuer = await startTestIssuer({ overrides: firstUseOverrides() });
  }, 30_000);
  afterAll(async () => issuer?.close());

  it('binds on the first attestation, refuses one without or with another secret, renews with the same', async () => {
    const instance = { instanceId: 'i-bp1firstuse00001' };
    const secret = newSecret();
    expect(await outcome(await issuer.requestToken(instance, withSecret(secret)))).toBe('200');
    // The SSRF case: a freshly signed document of the same instance, without the secret.
    expect(await outcome(await issuer.requestToken(instance))).toBe(MISMATCH);
    expect(await outcome(await issuer.requestToken(instance, withSecret(newSecret())))).toBe(MISMATCH);
    expect(await outcome(await issuer.requestToken(instance, withSecret(secret)))).toBe('200');
    // The secret is never logged, nor its hash's input.
    expect(issuer.logs.join('\n')).not.toContain(secret);
    expect(issuer.logs.some((l) => l.includes('bound to its instance secret on first use'))).toBe(true);
  });

  it('requires the secret on an instance first attestation, and refuses a malformed one', async () => {
    expect(await outcome(await issuer.requestToken({ instanceId: 'i-bp1firstuse00002' }))).toBe('400 invalid_request CROSSCRED_ERR_ISSUER_REQUEST_INVALID');
    expect(await outcome(await issuer.requestToken({ instanceId: 'i-bp1firstuse00002' }, withSecret('short')))).toBe(
      '400 invalid_request CROSSCRED_ERR_ISSUER_REQUEST_INVALID',
    );
    // Nothing was bound by those: a secret presented now binds.
    expect(await outcome(await issuer.requestToken({ instanceId: 'i-bp1firstuse00002' }, withSecret(newSecret())))).toBe('200');
  });

  it('crosscred issuer reset-instance refuses state: memory (the bindings live in the running issuer)', async () => {
    const args = ['--kind', 'alibabaEcsIdentity', '--account', ECS_ACCOUNT, '--instance-id', 'i-bp1firstuse00001'];
    const result = await crosscred(['issuer', 'reset-instance', '--config', join(issuer.dir, 'issuer.yaml'), ...args]);
    expect(result.code).toBe(78);
    expect(result.stderr).toMatch(/state is memory/);
    const badKind = await crosscred([
      'issuer',
      'reset-instance',
      '--config',
      join(issuer.dir, 'issuer.yaml'),
      ...args.slice(0, 1),
      'alibabaRamRole',
      ...args.slice(2),
    ]);
    expect(badKind.code).toBe(78);
    expect(badKind.stderr).toMatch(/--kind must be one of alibabaEcsIdentity/);
  }, 60_000);

  it('binds each instance separately, and leaves kinds without the option alone', async () => {
    expect(await outcome(await issuer.requestToken({ instanceId: 'i-bp1firstuse00003' }, withSecret(newSecret())))).toBe('200');
    expect(await outcome(await issuer.requestToken({ instanceId: 'i-bp1firstuse00004' }, withSecret(newSecret())))).toBe('200');
    expect(await outcome(await issuer.requestToken({ kind: 'alibabaRamRole', roleName: 'app-role' }))).toBe('200');
  });
});

describe('trust on first use, the VM side (IssuerClient with --instance-secret-file)', () => {
  let issuer: TestIssuer;
  beforeAll(async () => {
    issuer = await startTestIssuer({ overrides: firstUseOverrides() });
  }, 30_000);
  afterAll(async () => issuer?.close());

  const client = (file: string) => new IssuerClient({ issuerUrl: issuer.url, connectTimeoutMs: 2_000, responseTimeoutMs: 5_000, instanceSecretFile: file });
  const attestation = (instanceId: string) => fakeSubjectToken({ region: 'cn-hangzhou', instanceId });

  it('makes the secret, binds with it, renews with it; another VM with the same instance id (a re-image) is refused', async () => {
    const vm = client(join(issuer.dir, 'vm-secret'));
    const reimaged = client(join(issuer.dir, 'reimaged-secret'));
    try {
      const type = SUBJECT_TOKEN_TYPES.alibabaEcsIdentity;
      await expect(vm.exchange(type, attestation('i-bp1vmside000001'))).resolves.toMatchObject({ token: expect.any(String) });
      await expect(vm.exchange(type, attestation('i-bp1vmside000001'))).resolves.toMatchObject({ token: expect.any(String) });
      await expect(reimaged.exchange(type, attestation('i-bp1vmside000001'))).rejects.toThrow(/HTTP 403 .*INSTANCE_SECRET_MISMATCH/);
      // The file is gone (re-imaged, or an operator deleted it): a new secret is made and refused too.
      await rm(join(issuer.dir, 'vm-secret'));
      const fresh = client(join(issuer.dir, 'vm-secret'));
      await expect(fresh.exchange(type, attestation('i-bp1vmside000001'))).rejects.toThrow(/INSTANCE_SECRET_MISMATCH/);
      await fresh.close();
    } finally {
      await Promise.all([vm.close(), reimaged.close()]);
    }
  });
});

describe('trustOnFirstUse in the config', () => {
  it('is refused for the role kinds, whose instance id is a caller-chosen session name', () => {
    const text = JSON.stringify({
      publicUrl: 'https://issuer.example.com',
      keys: [{ file: 'k.pem', active: true }],
      attestors: { alibabaRamRole: {} },
      policy: { alibabaRamRole: { accounts: [ECS_ACCOUNT], roles: ['app-role'], trustOnFirstUse: true } },
    });
    const result = parseIssuerConfigText(text, '/tmp/issuer.yaml');
    expect('problems' in result && result.problems.join('\n')).toMatch(/policy\.alibabaRamRole\.trustOnFirstUse: .*session name/);
  });
});

const unavailable = redisServerUnavailable();

describe('trust on first use, two replicas sharing one Redis', () => {
  let redis: RedisServer;
  const replicas: TestIssuer[] = [];

  beforeAll(async () => {
    if (unavailable !== undefined) return;
    redis = await startRedisServer();
    for (let i = 0; i < 2; i++) replicas.push(await startTestIssuer({ overrides: firstUseOverrides({ state: redis.url }) }));
  }, 60_000);

  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.close()));
    await redis?.close();
  });

  it('shares the binding: bound on A, refused without the secret on B, renewed on B', async (ctx) => {
    if (unavailable !== undefined) return ctx.skip(unavailable);
    const instance = { instanceId: 'i-bp1shared000001' };
    const secret = newSecret();
    expect(await outcome(await replicas[0]!.requestToken(instance, withSecret(secret)))).toBe('200');
    expect(await outcome(await replicas[1]!.requestToken(instance, withSecret(newSecret())))).toBe(MISMATCH);
    expect(await outcome(await replicas[1]!.requestToken(instance))).toBe(MISMATCH);
    expect(await outcome(await replicas[1]!.requestToken(instance, withSecret(secret)))).toBe('200');
  }, 30_000);

  it('lets a re-imaged instance bind anew after reset-instance, and only then', async (ctx) => {
    if (unavailable !== undefined) return ctx.skip(unavailable);
    const instance = { instanceId: 'i-bp1reimaged0001' };
    expect(await outcome(await replicas[0]!.requestToken(instance, withSecret(newSecret())))).toBe('200');
    const reimaged = newSecret();
    expect(await outcome(await replicas[1]!.requestToken(instance, withSecret(reimaged)))).toBe(MISMATCH);
    const request = { kind: 'alibabaEcsIdentity', account: ECS_ACCOUNT, instanceId: instance.instanceId };
    expect(await resetInstance(replicas[0]!.config, request)).toBe('reset');
    expect(await resetInstance(replicas[0]!.config, request)).toBe('absent');
    expect(await outcome(await replicas[1]!.requestToken(instance, withSecret(reimaged)))).toBe('200');
    expect(await outcome(await replicas[0]!.requestToken(instance, withSecret(newSecret())))).toBe(MISMATCH);
  }, 30_000);

  it('crosscred issuer reset-instance, the command, resets a binding in the shared store', async (ctx) => {
    if (unavailable !== undefined) return ctx.skip(unavailable);
    const instance = { instanceId: 'i-bp1clireset0001' };
    expect(await outcome(await replicas[0]!.requestToken(instance, withSecret(newSecret())))).toBe('200');
    const args = ['issuer', 'reset-instance', '--config', join(replicas[0]!.dir, 'issuer.yaml')];
    const ids = ['--kind', 'alibabaEcsIdentity', '--account', ECS_ACCOUNT, '--instance-id', instance.instanceId];
    const first = await crosscred([...args, ...ids]);
    expect(first).toMatchObject({ code: 0 });
    expect(first.stdout).toMatch(/reset the first-use binding of instance i-bp1clireset0001/);
    const second = await crosscred([...args, ...ids]);
    expect(second).toMatchObject({ code: 0 });
    expect(second.stdout).toMatch(/had no first-use binding/);
    expect(await outcome(await replicas[1]!.requestToken(instance, withSecret(newSecret())))).toBe('200');
  }, 60_000);

  it('fails closed (503) while Redis does not answer', async (ctx) => {
    if (unavailable !== undefined) return ctx.skip(unavailable);
    await redis.stop();
    try {
      const res = await replicas[0]!.requestToken({ instanceId: 'i-bp1down00000001' }, withSecret(newSecret()));
      expect(await outcome(res)).toBe('503 temporarily_unavailable CROSSCRED_ERR_ISSUER_STATE_UNAVAILABLE');
    } finally {
      await redis.start();
    }
  }, 60_000);
});
