import { createHash, timingSafeEqual } from 'node:crypto';
import { createClient, ErrorReply } from 'redis';
import { digestKey } from './digest.js';
import {
  type BindVerdict,
  type ClaimVerdict,
  checkClaimTtl,
  checkRateLimit,
  DEFAULT_TENANT_BOUNDS,
  type FirstUseStore,
  type RateLimit,
  type RateLimitStore,
  type ReplayStore,
  type ResetVerdict,
  retryAfterSeconds,
  type StateHealth,
  type StateHealthListener,
  type StateStore,
  type TakeVerdict,
  type TenantBounds,
  type VerifyVerdict,
} from './ports.js';

/**
 * The shared state of an issuer fleet, in one Redis (`state: redis://host:6379/0`, or `rediss://`
 * for TLS). Every decision is one Lua script on one key, so it is atomic on the server whichever
 * replica sends it, and every script reads the time with Redis `TIME`: replicas share Redis's clock.
 *
 * Failure: commands are never queued while disconnected (`disableOfflineQueue`) and each has a
 * deadline, so a Redis that is down or stalled costs a caller at most `commandTimeoutMs` and
 * answers `unavailable`, never an exception and never `accepted`. The client reconnects by itself,
 * with backoff, for as long as the store is open; the first command after that works again.
 *
 * A command that times out may still run on the server later: a claim can then be recorded while
 * the caller was told `unavailable`, so the same attestation is refused as `replayed` next time.
 * That errs towards refusing, never towards accepting twice.
 *
 * Keys (KEY_PREFIX by default; tenants and keys are SHA-256 digests, never raw input):
 *   <prefix>replay:<tenant>          sorted set: claim digest → until (ms by Redis's clock); PEXPIRE
 *                                    to its latest claim, so an idle tenant's set disappears
 *   <prefix>rate:<tenant>:<key>      hash {tokens, at}; PEXPIRE to when it has refilled completely
 *   <prefix>first-use:<tenant>       hash: instance digest → the caller's hash; no expiry
 * Redis must run with `maxmemory-policy noeviction`: an evicted claim would let its attestation be
 * replayed. With noeviction a full Redis refuses writes (OOM), which this store answers `unavailable`.
 */

export const KEY_PREFIX = 'crosscred:issuer:';
/** Time allowed to open a connection, in ms. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 2_000;
/** Time allowed for one command's answer, in ms: Redis answers in well under one; a caller waits at most this. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 1_000;
/** Commands waiting for an answer at once, beyond which new ones are refused at once (a stalled Redis cannot grow memory). */
const MAX_QUEUED_COMMANDS = 1_000;
/** Reconnect backoff: 50 ms doubling up to 2 s, with jitter so a fleet does not reconnect in step. */
const RECONNECT_BASE_MS = 50;
const RECONNECT_MAX_MS = 2_000;

export interface RedisStateOptions {
  /** `redis://[user:password@]host[:port][/db]` or `rediss://…`. */
  readonly url: string;
  readonly keyPrefix?: string;
  readonly connectTimeoutMs?: number;
  readonly commandTimeoutMs?: number;
  readonly bounds?: Partial<TenantBounds>;
  /** Called on every change of health (ready ↔ not ready, or a new problem code). */
  readonly onHealthChange?: StateHealthListener;
}

const NOW_MS = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/** KEYS[1] the tenant's set; ARGV: claim digest, TTL ms, the tenant's bound. */
const CLAIM_SCRIPT = `${NOW_MS}
local ttl = tonumber(ARGV[2])
local held = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if held and held > now then return 'replayed' end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 'full' end
redis.call('ZADD', KEYS[1], string.format('%d', now + ttl), ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 'accepted'`;

/** KEYS[1] the bucket; ARGV: burst, per minute. Returns {1 if allowed else 0, tokens left}. */
const TAKE_SCRIPT = `${NOW_MS}
local burst = tonumber(ARGV[1])
local perMs = tonumber(ARGV[2]) / 60000
local h = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = burst
if h[1] and h[2] then tokens = math.min(burst, tonumber(h[1]) + math.max(0, now - tonumber(h[2])) * perMs) end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
local left = string.format('%.17g', tokens)
redis.call('HSET', KEYS[1], 'tokens', left, 'at', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.max(1, math.ceil((burst - tokens) / perMs))))
return {allowed, left}`;

/** KEYS[1] the tenant's records; ARGV: instance digest, hash, the tenant's bound. */
const BIND_SCRIPT = `
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held then
  if held == ARGV[2] then return 'matches' end
  return 'mismatch'
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 'full' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 'bound'`;

interface Script {
  readonly source: string;
  readonly sha1: string;
}

const script = (source: string): Script => ({ source, sha1: createHash('sha1').update(source).digest('hex') });
const SCRIPTS = { claim: script(CLAIM_SCRIPT), take: script(TAKE_SCRIPT), bind: script(BIND_SCRIPT) };

/** What a command came to when Redis could not answer. */
const UNAVAILABLE: unique symbol = Symbol('unavailable');
type Reply = unknown;

export class RedisStateStore implements StateStore {
  readonly replay: ReplayStore;
  readonly rateLimits: RateLimitStore;
  readonly firstUse: FirstUseStore;
  readonly description: string;
  readonly #client: ReturnType<typeof createClient>;
  readonly #prefix: string;
  readonly #commandTimeoutMs: number;
  readonly #bounds: TenantBounds;
  readonly #onHealthChange: StateHealthListener | undefined;
  #problem: string | undefined = 'connecting';
  #lastHealth: string | undefined;
  #closed = false;

  constructor(options: RedisStateOptions) {
    this.description = redactStateUrl(options.url);
    this.#prefix = options.keyPrefix ?? KEY_PREFIX;
    this.#commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    this.#bounds = { ...DEFAULT_TENANT_BOUNDS, ...options.bounds };
    this.#onHealthChange = options.onHealthChange;
    this.#client = createClient({
      url: options.url,
      disableOfflineQueue: true,
      commandsQueueMaxLength: MAX_QUEUED_COMMANDS,
      socket: { connectTimeout: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, reconnectStrategy: reconnectDelayMs },
    });
    // Without an error listener node-redis's errors would be thrown from the event emitter.
    this.#client.on('error', (err: unknown) => this.#setProblem(problemCode(err)));
    this.#client.on('ready', () => this.#setProblem(undefined));
    // The promise settles only when connected (or closed): reconnectStrategy always retries.
    this.#client.connect().catch((err: unknown) => this.#setProblem(problemCode(err)));
    this.replay = { claim: (tenant, key, ttlMs) => this.#claim(tenant, key, ttlMs) };
    this.rateLimits = { take: (tenant, key, limit) => this.#take(tenant, key, limit) };
    this.firstUse = {
      bind: (tenant, id, hash) => this.#bind(tenant, id, hash),
      verify: (tenant, id, hash) => this.#verify(tenant, id, hash),
      reset: (tenant, id) => this.#reset(tenant, id),
    };
  }

  health(): StateHealth {
    const ready = !this.#closed && this.#client.isReady && this.#problem === undefined;
    if (this.#closed) return { backend: 'redis', ready: false, problem: 'closed' };
    return ready ? { backend: 'redis', ready } : { backend: 'redis', ready, problem: this.#problem ?? 'connecting' };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // destroy(), not close(): close() waits for answers a dead Redis will never send.
    try {
      this.#client.destroy();
    } catch {
      // Already closed: nothing to release.
    }
  }

  async #claim(tenant: string, key: string, ttlMs: number): Promise<ClaimVerdict> {
    checkClaimTtl(ttlMs);
    const reply = await this.#eval(SCRIPTS.claim, this.#key('replay', tenant), [digestKey(key), String(ttlMs), String(this.#bounds.maxClaimsPerTenant)]);
    return reply === 'accepted' || reply === 'replayed' || reply === 'full' ? reply : this.#unexpected(reply);
  }

  async #take(tenant: string, key: string, limit: RateLimit): Promise<TakeVerdict> {
    checkRateLimit(limit);
    const reply = await this.#eval(SCRIPTS.take, `${this.#key('rate', tenant)}:${digestKey(key)}`, [String(limit.burst), String(limit.perMinute)]);
    if (!Array.isArray(reply) || reply.length !== 2) {
      this.#unexpected(reply);
      return { outcome: 'unavailable', retryAfterSeconds: 1 };
    }
    const tokens = Number(String(reply[1]));
    if (Number(reply[0]) === 1) return { outcome: 'allowed' };
    return { outcome: 'limited', retryAfterSeconds: Number.isFinite(tokens) ? retryAfterSeconds(tokens, limit.perMinute) : 1 };
  }

  async #bind(tenant: string, instanceId: string, secretHash: string): Promise<BindVerdict> {
    const reply = await this.#eval(SCRIPTS.bind, this.#key('first-use', tenant), [
      digestKey(instanceId),
      secretHash,
      String(this.#bounds.maxFirstUsePerTenant),
    ]);
    return reply === 'bound' || reply === 'matches' || reply === 'mismatch' || reply === 'full' ? reply : this.#unexpected(reply);
  }

  async #verify(tenant: string, instanceId: string, secretHash: string): Promise<VerifyVerdict> {
    const reply = await this.#command(['HGET', this.#key('first-use', tenant), digestKey(instanceId)]);
    if (reply === UNAVAILABLE) return 'unavailable';
    if (reply === null) return 'unknown';
    const held = Buffer.from(String(reply));
    const given = Buffer.from(secretHash);
    return held.length === given.length && timingSafeEqual(held, given) ? 'matches' : 'mismatch';
  }

  async #reset(tenant: string, instanceId: string): Promise<ResetVerdict> {
    const reply = await this.#command(['HDEL', this.#key('first-use', tenant), digestKey(instanceId)]);
    if (reply === UNAVAILABLE) return 'unavailable';
    return Number(reply) === 1 ? 'reset' : 'absent';
  }

  #key(table: string, tenant: string): string {
    return `${this.#prefix}${table}:${digestKey(tenant)}`;
  }

  /** Runs a script by its digest, sending its source once if this Redis has not seen it (NOSCRIPT). */
  async #eval(s: Script, key: string, args: readonly string[]): Promise<Reply> {
    const reply = await this.#command(['EVALSHA', s.sha1, '1', key, ...args], true);
    if (reply !== NOSCRIPT) return reply;
    return this.#command(['EVAL', s.source, '1', key, ...args]);
  }

  /** One command with a deadline; UNAVAILABLE (and a health problem) when Redis cannot answer. */
  async #command(args: readonly string[], noScriptIsReply = false): Promise<Reply | typeof UNAVAILABLE | typeof NOSCRIPT> {
    if (this.#closed || !this.#client.isReady) return UNAVAILABLE;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<typeof TIMED_OUT>((resolve) => {
      timer = setTimeout(() => resolve(TIMED_OUT), this.#commandTimeoutMs);
      timer.unref();
    });
    try {
      const reply = await Promise.race([this.#client.sendCommand(args), deadline]);
      if (reply === TIMED_OUT) return this.#fail('timeout');
      this.#setProblem(undefined);
      return reply;
    } catch (err) {
      if (noScriptIsReply && err instanceof ErrorReply && err.message.startsWith('NOSCRIPT')) return NOSCRIPT;
      return this.#fail(problemCode(err));
    } finally {
      clearTimeout(timer);
    }
  }

  #fail(problem: string): typeof UNAVAILABLE {
    this.#setProblem(problem);
    return UNAVAILABLE;
  }

  /** A reply no script returns: treated as unavailable (fail closed), never as success. */
  #unexpected(reply: Reply): 'unavailable' {
    if (reply !== UNAVAILABLE) this.#setProblem('unexpected-reply');
    return 'unavailable';
  }

  #setProblem(problem: string | undefined): void {
    this.#problem = problem;
    const health = this.health();
    const summary = `${health.ready}:${health.problem ?? ''}`;
    if (summary === this.#lastHealth) return;
    this.#lastHealth = summary;
    try {
      this.#onHealthChange?.(health);
    } catch {
      // A listener's bug must not turn a verdict into an exception, nor break the client's events.
    }
  }
}

const TIMED_OUT: unique symbol = Symbol('timed out');
const NOSCRIPT: unique symbol = Symbol('NOSCRIPT');

/** Always a delay, never an error: the store keeps trying for as long as it is open. */
function reconnectDelayMs(retries: number): number {
  const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** Math.min(retries, 10));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}

/**
 * A short code for logs and metric labels, never a message: a socket error's code (ECONNREFUSED),
 * a Redis error reply's first word (OOM, READONLY, NOAUTH), or the error's class name.
 */
export function problemCode(err: unknown): string {
  if (!(err instanceof Error)) return 'error';
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && /^[A-Z][A-Z0-9_]{1,31}$/.test(code)) return code;
  if (err instanceof ErrorReply) return /^[A-Z][A-Z_]{1,31}(?=\s|$)/.exec(err.message)?.[0] ?? 'error-reply';
  return /^[A-Za-z]{1,40}$/.test(err.constructor.name) ? err.constructor.name : 'error';
}

/** The URL without user, password, query or fragment: what may be logged. */
export function redactStateUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return 'redis (unparsable URL)';
  }
}
