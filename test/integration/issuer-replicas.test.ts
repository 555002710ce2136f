import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestIssuer, type TestIssuer } from '../support/issuer-fixtures.js';
import { type RedisServer, redisServerUnavailable, startRedisServer } from '../support/redis-server.js';

/**
 * Three replicas of crosscred issuer on one real Redis (`state: redis://…`), as a fleet runs them
 * behind a load balancer: one replay set and one set of rate limits for all of them, and fail
 * closed while Redis does not answer.
 */
const unavailable = redisServerUnavailable();

/** The token endpoint's answer: status and the CROSSCRED_ERR_ code in its description. */
async function outcome(res: Response): Promise<string> {
  const body = (await res.json()) as { error_description?: string };
  if (res.status === 200) return '200';
  return `${res.status} ${/CROSSCRED_ERR_[A-Z_]+/.exec(body.error_description ?? '')?.[0] ?? '?'}`;
}

/** Generous, for a busy machine: Redis restarts and the client reconnects (backoff up to 2 s), in ms. */
const RECOVERY_DEADLINE_MS = 30_000;

describe('three issuer replicas sharing one Redis', () => {
  let redis: RedisServer;
  const replicas: TestIssuer[] = [];
  const overrides = () => ({
    state: redis.url,
    rateLimit: { burst: 5, perMinute: 1 },
    clientRateLimit: { burst: 100_000, perSecond: 100_000 },
  });

  beforeAll(async () => {
    if (unavailable !== undefined) return;
    redis = await startRedisServer();
    for (let i = 0; i < 3; i++) replicas.push(await startTestIssuer({ overrides: overrides() }));
  }, 60_000);

  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.close()));
    await redis?.close();
  });

  it('refuses on B, on C, and on A after a restart, an attestation A accepted', async (ctx) => {
    if (unavailable !== undefined) return ctx.skip(unavailable);
    const attestation = { nonce: 'captured-once', instanceId: 'i-bp1replay000001' };
    expect(await outcome(await replicas[0]!.requestToken(attestation))).toBe('200');
    expect(await outcome(await replicas[1]!.requestToken(attestation))).toBe('400 CROSSCRED_ERR_ISSUER_ATTESTATION_REPLAYED');
    expect(await outcome(await replicas[2]!.requestToken(attestation))).toBe('400 CROSSCRED_ERR_ISSUER_ATTESTATION_REPLAYED');
    await replicas[0]!.close();
    replicas[0] = await startTestIssuer({ overrides: overrides() });
    // It opened its listener once Redis answered, so its first request is judged, not refused 503.
    expect(replicas[0]!.logs.some((l) => l.includes('starting before the shared state answers'))).toBe(false);
    expect(await outcome(await replicas[0]!.requestToken(attestation))).toBe('400 CROSSCRED_ERR_ISSUER_ATTESTATION_REPLAYED');
  }, 60_000);

  it('keeps one rate limit per identity for all replicas, not one per replica', async (ctx) => {
    if (unavailable !== undefined) return ctx.skip(unavailable);
    // burst 5, 1 per minute: fifteen fresh attestations of one instance, five to each replica.
    const answers: string[] = [];
    for (let i = 0; i < 15; i++) answers.push(await outcome(await replicas[i % 3]!.requestToken({ instanceId: 'i-bp1ratelimit0001' })));
    expect(answers.filter((a) => a === '200')).toHaveLength(5);
    expect(answers.filter((a) => a === '429 CROSSCRED_ERR_ISSUER_RATE_LIMITED')).toHaveLength(10);
  }, 60_000);

  it('fails closed with 503, a log line and a metric while Redis is down, and recovers without a restart', async (ctx) => {
    if (unavailable !== undefined) return ctx.skip(unavailable);
    await redis.stop();
    const down = await outcome(await replicas[1]!.requestToken({ instanceId: 'i-bp1outage000001' }));
    expect(down).toBe('503 CROSSCRED_ERR_ISSUER_STATE_UNAVAILABLE');
    const metrics = await (await fetch(`${replicas[1]!.admin}/metrics`)).text();
    expect(metrics).toMatch(/^crosscred_issuer_state_ready 0$/m);
    expect(replicas[1]!.logs.some((l) => l.includes('shared state does not answer'))).toBe(true);

    // A replica started during the outage waits a bounded time for Redis, then opens anyway and
    // fails closed: an issuer that cannot start is no better than one that answers 503.
    const late = await startTestIssuer({ overrides: overrides() });
    replicas.push(late);
    expect(late.logs.some((l) => l.includes('starting before the shared state answers'))).toBe(true);
    expect(await outcome(await late.requestToken({ instanceId: 'i-bp1lateoutage01' }))).toBe('503 CROSSCRED_ERR_ISSUER_STATE_UNAVAILABLE');

    await redis.start();
    const deadline = Date.now() + RECOVERY_DEADLINE_MS;
    let again = '';
    for (let i = 0; Date.now() < deadline; i++) {
      again = await outcome(await replicas[1]!.requestToken({ instanceId: `i-bp1recovered${String(i).padStart(4, '0')}` }));
      if (again === '200') break;
      expect(again).toBe('503 CROSSCRED_ERR_ISSUER_STATE_UNAVAILABLE');
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(again).toBe('200');
    expect(await (await fetch(`${replicas[1]!.admin}/metrics`)).text()).toMatch(/^crosscred_issuer_state_ready 1$/m);
    expect(replicas[1]!.logs.some((l) => l.includes('shared state answers'))).toBe(true);
  }, 90_000);
});
