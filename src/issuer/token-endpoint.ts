import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import { ErrorCodes, type ErrorName } from '../core/errors.js';
import { readBody } from '../http/request-body.js';
import {
  INSTANCE_SECRET_PARAMETER,
  INSTANCE_SECRET_PATTERN,
  JWT_TOKEN_TYPE,
  SUBJECT_TOKEN_TYPES,
  type SubjectTokenType,
  TOKEN_EXCHANGE_GRANT_TYPE,
  type TokenExchangeError,
  type TokenExchangeResponse,
} from '../protocol/issuer-token-exchange.js';
import type { AttestationPools, ClientAdmission } from './admission.js';
import { AttestationError, type AttestedIdentity, type Attestor } from './attestor.js';
import type { IssuerMetrics, KindLabel } from './issuer-metrics.js';
import type { IssuerKeySet } from './keys.js';
import { type AttestationKind, type IssuerPolicy, kindOfTokenType } from './policy.js';
import { kindLabelOf } from './session-tags.js';
import { MAX_CLAIM_TTL_MS, type RateLimit, type StateStore } from './state/ports.js';
import { rateLimitKey, stateTenant } from './state-keys.js';
import { mintToken } from './token-minter.js';

/**
 * The token endpoint: OAuth 2.0 Token Exchange (RFC 8693) as src/protocol/issuer-token-exchange.ts describes.
 * The client address's bucket is taken first (admission.ts); then a form POST is read (bounded in
 * size and time), checked, its attestation verified by the attestor of its kind (in that kind's
 * pool, under a deadline), judged by the policy, rate-limited per attested identity, and only
 * then entered into the seen-set (refused if seen before), so nothing refused takes room there;
 * for a kind with trustOnFirstUse, the instance secret is then bound or checked (firstUse); it is
 * answered with a freshly signed JWT. Every refusal is an
 * RFC 6749 §5.2 JSON error with `Cache-Control: no-store`.
 *
 * Neither the subject token, nor any part of it, nor the JWT is ever logged; only the facts an
 * attestor established (ids and names) and the catalogue code of a refusal.
 */

/** A token request is a few kilobytes (the largest attestation, a signed Alibaba request, ~3 KB). */
export const MAX_TOKEN_REQUEST_BYTES = 64 * 1024;
/** The whole body must arrive within this time once the handler starts reading, in ms. */
export const BODY_READ_TIMEOUT_MS = 5_000;
/** Retry-After for answers that mean "busy, come back soon", in seconds. */
const BUSY_RETRY_AFTER_SECONDS = 1;
/** Retry-After when the cloud service behind an attestor could not be reached, in seconds. */
const UNAVAILABLE_RETRY_AFTER_SECONDS = 5;
/** RFC 6749 §5.2: error_description is printable ASCII without `"` and `\`; it is also cut short. */
const MAX_DESCRIPTION_LENGTH = 400;

/** Everything a reload replaces together, so one request sees one consistent configuration. */
export interface IssuerState {
  readonly issuerUrl: string;
  readonly keys: IssuerKeySet;
  /** Allowed audiences; the first is the default. */
  readonly audiences: readonly string[];
  readonly tokenLifetimeSeconds: number;
  readonly attestationTimeoutMs: number;
  readonly policy: IssuerPolicy;
  readonly attestors: ReadonlyMap<SubjectTokenType, Attestor>;
}

export interface TokenEndpointOptions {
  readonly state: () => IssuerState;
  readonly metrics: IssuerMetrics;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Per-client-address buckets, taken before the body is read. */
  readonly admission: ClientAdmission;
  /** One concurrency pool per attestation kind. */
  readonly pools: AttestationPools;
  /**
   * The replay claims, per-identity rate limits and first-use bindings: this process's memory by
   * default, or shared by every replica (`state: redis://…`). One path for both; when the store
   * does not answer, requests fail closed with 503 ISSUER_STATE_UNAVAILABLE, never open.
   */
  readonly stateStore: StateStore;
  /** The per-identity token bucket (`rateLimit`). */
  readonly rateLimit: RateLimit;
}

type OAuthErrorCode = TokenExchangeError['error'] | 'server_error';

/** How each catalogue refusal is answered: the RFC 6749 error code and the HTTP status. */
const REFUSALS: Partial<Record<ErrorName, { error: OAuthErrorCode; status: number }>> = {
  ISSUER_REQUEST_INVALID: { error: 'invalid_request', status: 400 },
  ISSUER_METHOD_NOT_ALLOWED: { error: 'invalid_request', status: 405 },
  ISSUER_GRANT_TYPE_UNSUPPORTED: { error: 'unsupported_grant_type', status: 400 },
  ISSUER_TOKEN_TYPE_UNSUPPORTED: { error: 'invalid_request', status: 400 },
  ISSUER_AUDIENCE_REFUSED: { error: 'invalid_target', status: 400 },
  ISSUER_ATTESTATION_INVALID: { error: 'invalid_grant', status: 400 },
  ISSUER_ATTESTATION_REPLAYED: { error: 'invalid_grant', status: 400 },
  ISSUER_POLICY_REFUSED: { error: 'invalid_grant', status: 400 },
  ISSUER_INSTANCE_SECRET_MISMATCH: { error: 'invalid_grant', status: 403 },
  ISSUER_RATE_LIMITED: { error: 'slow_down', status: 429 },
  ISSUER_CLIENT_RATE_LIMITED: { error: 'slow_down', status: 429 },
  ISSUER_BUSY: { error: 'temporarily_unavailable', status: 503 },
  ISSUER_ATTESTATION_UNAVAILABLE: { error: 'temporarily_unavailable', status: 503 },
  ISSUER_STATE_UNAVAILABLE: { error: 'temporarily_unavailable', status: 503 },
};

const JSON_HEADERS = ['content-type', 'application/json;charset=UTF-8', 'cache-control', 'no-store', 'pragma', 'no-cache'];

/** Makes a description safe for error_description (and for the log): RFC 6749's character set, bounded. */
export function oauthDescription(text: string): string {
  return text
    .replace(/"/g, "'")
    .replace(/\\/g, '/')
    .replace(/[^\x20-\x7e]/g, '?')
    .slice(0, MAX_DESCRIPTION_LENGTH);
}

/** Answers an RFC 6749 error; the description ends with the catalogue code. */
export function sendOAuthError(
  res: ServerResponse,
  name: ErrorName,
  description: string,
  options: { status?: number; error?: OAuthErrorCode; headers?: readonly string[] } = {},
): number {
  const mapping = REFUSALS[name] ?? { error: 'invalid_request' as const, status: ErrorCodes[name].status };
  const status = options.status ?? mapping.status;
  const body = Buffer.from(
    JSON.stringify({ error: options.error ?? mapping.error, error_description: oauthDescription(`${description} (CROSSCRED_ERR_${name})`) }),
  );
  res.writeHead(status, [...JSON_HEADERS, 'content-length', String(body.length), ...(options.headers ?? [])]);
  res.end(body);
  return status;
}

class Refusal extends Error {
  constructor(
    readonly code: ErrorName,
    readonly description: string,
    readonly options: { status?: number; headers?: readonly string[] } = {},
  ) {
    super(description);
  }
}

/** The form parameters this endpoint reads; each may appear at most once (RFC 6749 §3.2). */
const SINGLE_PARAMETERS = [
  'grant_type',
  'subject_token',
  'subject_token_type',
  'audience',
  'requested_token_type',
  'resource',
  'scope',
  'actor_token',
  'actor_token_type',
  INSTANCE_SECRET_PARAMETER,
];

export class TokenEndpoint {
  constructor(private readonly options: TokenEndpointOptions) {}

  get attestationsInFlight(): number {
    return this.options.pools.inFlight;
  }

  /** Answers one request to the token path; resolves with the HTTP status sent. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<number> {
    const requestId = randomBytes(6).toString('hex');
    const log = this.options.logger.child({ requestId, client: req.socket.remoteAddress });
    let kind: KindLabel = 'unknown';
    let bodyRead = false;
    try {
      // First and cheapest: one map look-up per request, before the body is read or anything verified.
      const admitted = this.options.admission.admit(req.socket.remoteAddress, this.options.clock.monotonicNow());
      if (!admitted.admitted) {
        throw new Refusal('ISSUER_CLIENT_RATE_LIMITED', 'too many token requests from this client address', {
          headers: ['retry-after', String(admitted.retryAfterSeconds)],
        });
      }
      if (req.method !== 'POST') {
        throw new Refusal('ISSUER_METHOD_NOT_ALLOWED', 'the token endpoint answers POST only', { headers: ['allow', 'POST'] });
      }
      const type = (req.headers['content-type'] ?? '')
        .toLowerCase()
        .split(';')
        .map((p) => p.trim());
      if (type[0] !== 'application/x-www-form-urlencoded') {
        throw new Refusal('ISSUER_REQUEST_INVALID', 'send the request as Content-Type: application/x-www-form-urlencoded');
      }
      const charset = type.slice(1).find((p) => p.startsWith('charset='));
      if (charset !== undefined && !/^charset="?utf-8"?$/.test(charset)) throw new Refusal('ISSUER_REQUEST_INVALID', 'the form must be UTF-8');
      const read = await readBody(req, MAX_TOKEN_REQUEST_BYTES, BODY_READ_TIMEOUT_MS);
      if ('failure' in read) {
        if (read.failure === 'too-large')
          throw new Refusal('ISSUER_REQUEST_INVALID', `the request body exceeds ${MAX_TOKEN_REQUEST_BYTES} bytes`, { status: 413 });
        if (read.failure === 'timeout')
          throw new Refusal('ISSUER_REQUEST_INVALID', `the request body did not arrive within ${BODY_READ_TIMEOUT_MS} ms`, { status: 408 });
        res.destroy();
        return 0;
      }
      bodyRead = true;
      const form = new URLSearchParams(read.body.toString('utf8'));
      for (const name of SINGLE_PARAMETERS) {
        if (form.getAll(name).length > 1) throw new Refusal('ISSUER_REQUEST_INVALID', `parameter ${name} appears more than once`);
      }
      const grantType = form.get('grant_type');
      if (!grantType) throw new Refusal('ISSUER_REQUEST_INVALID', 'grant_type is missing');
      if (grantType !== TOKEN_EXCHANGE_GRANT_TYPE) throw new Refusal('ISSUER_GRANT_TYPE_UNSUPPORTED', 'only the token-exchange grant type is supported');
      const subjectTokenType = form.get('subject_token_type');
      const subjectToken = form.get('subject_token');
      if (!subjectTokenType) throw new Refusal('ISSUER_REQUEST_INVALID', 'subject_token_type is missing');
      if (!subjectToken) throw new Refusal('ISSUER_REQUEST_INVALID', 'subject_token is missing');
      const attestationKind = kindOfTokenType(subjectTokenType);
      if (attestationKind !== undefined) kind = kindLabelOf(SUBJECT_TOKEN_TYPES[attestationKind]) as KindLabel;
      if (form.has('actor_token') || form.has('actor_token_type')) throw new Refusal('ISSUER_REQUEST_INVALID', 'delegation (actor_token) is not supported');
      const requested = form.get('requested_token_type');
      if (requested !== null && requested !== JWT_TOKEN_TYPE) throw new Refusal('ISSUER_REQUEST_INVALID', `requested_token_type must be ${JWT_TOKEN_TYPE}`);
      if (form.has('resource')) throw new Refusal('ISSUER_AUDIENCE_REFUSED', 'resource is not supported; name the target with audience');
      const instanceSecret = instanceSecretOf(form);

      const state = this.options.state();
      const audienceParam = form.get('audience');
      const audience = audienceParam ?? state.audiences[0]!;
      if (!state.audiences.includes(audience)) throw new Refusal('ISSUER_AUDIENCE_REFUSED', 'this issuer does not issue tokens for the requested audience');
      const attestor = attestationKind === undefined ? undefined : state.attestors.get(subjectTokenType as SubjectTokenType);
      if (attestor === undefined || attestationKind === undefined || !state.policy.kinds.includes(attestationKind)) {
        throw new Refusal('ISSUER_TOKEN_TYPE_UNSUPPORTED', 'this issuer does not accept that subject_token_type');
      }

      const identity = await this.#attest(attestor, attestationKind, subjectToken, state, kind, log);
      // Policy and the per-identity rate limit come before the seen-set: only an attestation this
      // issuer accepts may take room there, so an identity outside the policy cannot fill it.
      const decision = state.policy.decide(identity, subjectTokenType as SubjectTokenType);
      if (!decision.allowed) {
        log.info(
          { kind, account: identity.accountId, instance: identity.instanceId, role: identity.roleName ?? identity.roleId },
          'attested identity refused by policy',
        );
        throw new Refusal('ISSUER_POLICY_REFUSED', decision.reason);
      }
      await this.#takeRate(identity);
      const nowWall = this.options.clock.wallNow();
      await this.#remember(identity, nowWall);
      if (state.policy.trustsOnFirstUse(attestationKind)) await this.#checkFirstUse(identity, instanceSecret, kind, log);
      const minted = await mintToken(
        state.issuerUrl,
        state.keys,
        { subject: decision.subject, audience, lifetimeSeconds: state.tokenLifetimeSeconds, identity, ...(decision.tags ? { tags: decision.tags } : {}) },
        nowWall,
      );
      const answer: TokenExchangeResponse = {
        access_token: minted.jwt,
        issued_token_type: JWT_TOKEN_TYPE,
        token_type: 'N_A',
        expires_in: minted.expiresAt - minted.issuedAt,
      };
      const body = Buffer.from(JSON.stringify(answer));
      res.writeHead(200, [...JSON_HEADERS, 'content-length', String(body.length)]);
      res.end(body);
      this.options.metrics.issued(kind);
      log.info(
        { kind, sub: decision.subject, aud: audience, jti: minted.jti, kid: minted.kid, exp: minted.expiresAt, instance: identity.instanceId },
        'token issued',
      );
      return 200;
    } catch (err) {
      if (!bodyRead) res.shouldKeepAlive = false;
      if (err instanceof Refusal) {
        this.options.metrics.refused(kind, err.code);
        log.info({ kind, errorCode: `CROSSCRED_ERR_${err.code}`, reason: oauthDescription(err.description) }, 'token request refused');
        return sendOAuthError(res, err.code, err.description, err.options);
      }
      log.error({ kind, errorName: (err as Error)?.name }, 'unexpected error while answering a token request');
      if (res.headersSent) {
        res.destroy();
        return 500;
      }
      return sendOAuthError(res, 'ISSUER_BUSY', 'the issuer failed unexpectedly; see its log', { status: 500, error: 'server_error' });
    }
  }

  /** One request from the identity's bucket, timed by the store's clock; refused with the seconds until the next one. */
  async #takeRate(identity: AttestedIdentity): Promise<void> {
    const verdict = await this.options.stateStore.rateLimits.take(stateTenant(identity), rateLimitKey(identity), this.options.rateLimit);
    switch (verdict.outcome) {
      case 'allowed':
        return;
      case 'limited':
        throw new Refusal('ISSUER_RATE_LIMITED', 'too many token requests for this identity', { headers: ['retry-after', String(verdict.retryAfterSeconds)] });
      case 'full':
        // The store's bound is per tenant (cloud account), or over all of them: other accounts keep their share.
        throw new Refusal('ISSUER_RATE_LIMITED', "the rate limiter has no room for this account's identities", {
          headers: ['retry-after', String(verdict.retryAfterSeconds)],
        });
      case 'unavailable':
        throw stateUnavailable();
    }
  }

  /** Claims an accepted attestation in the seen-set: the first claim wins (in the fleet, with Redis); a replay is refused. */
  async #remember(identity: AttestedIdentity, nowWall: number): Promise<void> {
    const ttlMs = Math.ceil(identity.replayUntilWall - nowWall);
    if (!(ttlMs > 0)) throw new Refusal('ISSUER_ATTESTATION_INVALID', 'the attestation is past its validity window');
    if (ttlMs > MAX_CLAIM_TTL_MS) {
      throw new Refusal('ISSUER_ATTESTATION_INVALID', 'the attestation claims a validity window longer than this issuer keeps replay records');
    }
    switch (await this.options.stateStore.replay.claim(stateTenant(identity), identity.replayKey, ttlMs)) {
      case 'accepted':
        return;
      case 'replayed':
        throw new Refusal('ISSUER_ATTESTATION_REPLAYED', 'this attestation was already used');
      case 'full':
        throw new Refusal('ISSUER_RATE_LIMITED', "the replay set has no room for this account's attestations", {
          headers: ['retry-after', String(BUSY_RETRY_AFTER_SECONDS)],
        });
      case 'unavailable':
        throw stateUnavailable();
    }
  }

  /**
   * Trust on first use: binds the instance to the presented secret's hash if nothing is bound yet,
   * else requires the same secret. Runs after policy, rate limit and replay, so only accepted,
   * fresh attestations of allowed accounts can take room in the bindings.
   */
  async #checkFirstUse(identity: AttestedIdentity, secret: string | undefined, kind: KindLabel, log: Logger): Promise<void> {
    if (identity.instanceId === undefined) throw new Refusal('ISSUER_ATTESTATION_INVALID', 'the attestation states no instance id to bind');
    const tenant = stateTenant(identity);
    // No secret: nothing could be bound, so a first attestation without one is refused too; an
    // unbound instance would otherwise get tokens that whoever fetched its document could also get.
    if (secret === undefined) {
      const known = await this.options.stateStore.firstUse.verify(tenant, identity.instanceId, '');
      if (known === 'unavailable') throw stateUnavailable();
      if (known === 'unknown') throw new Refusal('ISSUER_REQUEST_INVALID', `${INSTANCE_SECRET_PARAMETER} is required for this kind (trustOnFirstUse)`);
      throw secretMismatch(identity, kind, log);
    }
    switch (await this.options.stateStore.firstUse.bind(tenant, identity.instanceId, hashInstanceSecret(secret))) {
      case 'bound':
        log.info({ kind, account: identity.accountId, instance: identity.instanceId }, 'instance bound to its instance secret on first use');
        return;
      case 'matches':
        return;
      case 'mismatch':
        throw secretMismatch(identity, kind, log);
      case 'full':
        throw new Refusal('ISSUER_POLICY_REFUSED', "this account's instances fill its share of first-use bindings; reset those of retired instances");
      case 'unavailable':
        throw stateUnavailable();
    }
  }

  /** Runs the attestor in its kind's pool, under the deadline; maps its refusals. */
  async #attest(
    attestor: Attestor,
    attestationKind: AttestationKind,
    subjectToken: string,
    state: IssuerState,
    kind: KindLabel,
    log: Logger,
  ): Promise<AttestedIdentity> {
    const release = this.options.pools.tryAcquire(attestationKind);
    if (release === undefined) {
      throw new Refusal('ISSUER_BUSY', `too many ${kind} attestations in progress`, { headers: ['retry-after', String(BUSY_RETRY_AFTER_SECONDS)] });
    }
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const started = performance.now();
    try {
      // The deadline holds even for an attestor that ignores its signal.
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          controller.abort(new Error('attestation deadline'));
          reject(
            new Refusal('ISSUER_ATTESTATION_UNAVAILABLE', `the attestation could not be verified within ${state.attestationTimeoutMs} ms`, {
              headers: ['retry-after', String(UNAVAILABLE_RETRY_AFTER_SECONDS)],
            }),
          );
        }, state.attestationTimeoutMs);
        timer.unref();
      });
      const identity = await Promise.race([
        attestor.attest(subjectToken, { issuerUrl: state.issuerUrl, nowWall: this.options.clock.wallNow(), signal: controller.signal }),
        deadline,
      ]);
      if (!isIdentity(identity)) {
        log.error({ kind }, 'the attestor returned no usable identity');
        throw new Refusal('ISSUER_ATTESTATION_INVALID', 'the attestation did not yield an identity');
      }
      this.options.metrics.attested(kind, 'ok', (performance.now() - started) / 1000);
      return identity;
    } catch (err) {
      const seconds = (performance.now() - started) / 1000;
      if (err instanceof AttestationError) {
        const unavailable = err.oauthError === 'temporarily_unavailable';
        this.options.metrics.attested(kind, unavailable ? 'unavailable' : 'refused', seconds);
        if (unavailable)
          throw new Refusal('ISSUER_ATTESTATION_UNAVAILABLE', err.message, { headers: ['retry-after', String(UNAVAILABLE_RETRY_AFTER_SECONDS)] });
        if (err.oauthError === 'invalid_request') throw new Refusal('ISSUER_REQUEST_INVALID', err.message);
        throw new Refusal('ISSUER_ATTESTATION_INVALID', err.message);
      }
      if (err instanceof Refusal) {
        this.options.metrics.attested(kind, err.code === 'ISSUER_ATTESTATION_UNAVAILABLE' ? 'unavailable' : 'refused', seconds);
        throw err;
      }
      this.options.metrics.attested(kind, 'unavailable', seconds);
      log.error({ kind, errorName: (err as Error)?.name }, 'the attestor failed unexpectedly');
      throw new Refusal('ISSUER_ATTESTATION_UNAVAILABLE', 'the attestation could not be verified', {
        headers: ['retry-after', String(UNAVAILABLE_RETRY_AFTER_SECONDS)],
      });
    } finally {
      clearTimeout(timer);
      release();
    }
  }
}

function isIdentity(value: unknown): value is AttestedIdentity {
  const v = value as Partial<AttestedIdentity> | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.accountId === 'string' &&
    v.accountId.length > 0 &&
    typeof v.replayKey === 'string' &&
    v.replayKey.length > 0 &&
    typeof v.replayUntilWall === 'number' &&
    typeof v.attributes === 'object' &&
    v.attributes !== null
  );
}

/** The instance secret the form carries, checked for shape; undefined when absent. Never logged. */
function instanceSecretOf(form: URLSearchParams): string | undefined {
  const secret = form.get(INSTANCE_SECRET_PARAMETER);
  if (secret === null) return undefined;
  if (!INSTANCE_SECRET_PATTERN.test(secret))
    throw new Refusal('ISSUER_REQUEST_INVALID', `${INSTANCE_SECRET_PARAMETER} must be 43 base64url characters (32 random bytes)`);
  return secret;
}

/** What the store keeps: the SHA-256 of the secret (base64url), never the secret itself. */
export function hashInstanceSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('base64url');
}

/** The SSRF case: the cloud signed the attestation, but whoever sent it does not hold the instance's secret. */
function secretMismatch(identity: AttestedIdentity, kind: KindLabel, log: Logger): Refusal {
  log.warn({ kind, account: identity.accountId, instance: identity.instanceId }, 'attestation refused: the instance secret does not match its binding');
  return new Refusal('ISSUER_INSTANCE_SECRET_MISMATCH', `instance ${identity.instanceId} is bound to another instance secret`);
}

/** Retry-After when the state store does not answer, in seconds: long enough for a reconnect. */
const STATE_RETRY_AFTER_SECONDS = 2;

function stateUnavailable(): Refusal {
  return new Refusal('ISSUER_STATE_UNAVAILABLE', 'the replay, rate-limit and first-use state does not answer; refused rather than risk a replay', {
    headers: ['retry-after', String(STATE_RETRY_AFTER_SECONDS)],
  });
}
