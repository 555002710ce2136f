import { STATUS_CODES } from 'node:http';
import { request } from 'undici';
import type { KubernetesTokenRequestConfig } from '../config/config.js';
import type { Clock } from '../core/clock.js';
import { CrosscredError } from '../core/errors.js';
import { ApiServerDispatcher } from '../platform/kubernetes/api-server-dispatcher.js';
import { isObject, parseJson, readBoundedBody } from '../util/bounded-body.js';
import { readRegularFile } from '../util/read-regular-file.js';
import { inspectJwt } from './jwt-shape.js';
import { type RenewableToken, RenewingToken } from './renewing-token.js';
import type { TokenSource, WebIdentityToken } from './token-source.js';

export interface KubernetesTokenSourceOptions extends KubernetesTokenRequestConfig {
  /** Bound on one request: connect, TLS handshake and the whole answer, in ms. */
  readonly requestTimeoutMs: number;
  readonly clock: Clock;
}

/** A TokenRequest answer is a few KiB (the JWT and the echoed spec); more is not one. */
const MAX_RESPONSE_BYTES = 64 * 1024;
/** A ServiceAccount token is about 1 KiB; more means the path points at something else. */
const MAX_SA_TOKEN_BYTES = 64 * 1024;
/** The API server refuses expirationSeconds below 10 minutes (ValidateTokenRequest). */
const MIN_EXPIRATION_SECONDS = 600;
/** Renew once this fraction of the granted lifetime has passed, as the kubelet's token manager does. */
const RENEW_AT_FRACTION = 0.8;
/** …and at the latest after 24 h, the kubelet's other renewal bound, for very long grants. */
const MAX_TOKEN_AGE_MS = 24 * 60 * 60 * 1000;
/** Kubernetes Status.message and transport error texts are cut to this many characters. */
const MAX_SHOWN_MESSAGE_CHARS = 200;

const TLS_VERIFY_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** What each refusal usually means in a cluster, so the message says where to look. */
const STATUS_EXPLANATION: Record<number, string> = {
  401: "the API server did not accept the pod's ServiceAccount token",
  403: 'RBAC does not let the ServiceAccount create serviceaccounts/token',
  404: 'no such namespace or ServiceAccount',
};

/** A bearer token is visible ASCII without spaces; anything else would break (or inject into) the header. */
const BEARER_TOKEN = /^[\x21-\x7e]+$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
/** Three base64url runs joined by dots: a JWT, redacted from any text we pass on. */
const JWT_LIKE = /[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

/**
 * Asks the Kubernetes API server for a ServiceAccount token with the AWS audience
 * (`POST …/serviceaccounts/{sa}/token`, the TokenRequest API), for a sidecar whose pod has no
 * projected token for that audience. It authenticates with the pod's own mounted ServiceAccount
 * token and trusts only the cluster CA.
 *
 * Unlike the file source it keeps the token: a TokenRequest is an API call, and the kubelet
 * itself renews projected tokens only after 80% of their life. The lifetime is the one the API
 * server granted (`status.expirationTimestamp`), which may differ from the one asked for (the
 * server clamps it, and stretches short ones to an hour when --service-account-extend-token-expiration is on).
 */
export class KubernetesTokenSource implements TokenSource {
  readonly description: string;
  readonly #options: KubernetesTokenSourceOptions;
  readonly #url: URL;
  /** Names the source in errors, as inspectJwt words them. */
  readonly #sourceName: string;
  #closed = false;
  readonly #api: ApiServerDispatcher;
  readonly #held: RenewingToken;

  /** STS said the token expired (a clock off, a token revoked): request a new one next time. */
  invalidate(): void {
    this.#held.invalidate();
  }

  constructor(options: KubernetesTokenSourceOptions) {
    this.#url = validateOptions(options);
    this.#options = options;
    const who = `${options.namespace}/${options.serviceAccount}`;
    this.description = `Kubernetes TokenRequest for ${who} (audience ${options.audience})`;
    this.#sourceName = `Kubernetes TokenRequest for serviceaccount ${who}`;
    this.#held = new RenewingToken(
      options.clock,
      () => this.#requestToken(),
      () => this.#closed,
    );
    this.#api = new ApiServerDispatcher({
      caFile: options.caFile,
      requestTimeoutMs: options.requestTimeoutMs,
      connections: 2,
      fail: (text) => this.#failure(text),
    });
  }

  /**
   * The cached token while less than 80% of its life has passed; otherwise a new one from the API
   * server. Concurrent callers share one request. If that request fails while the cached token is
   * still good for at least a minute, the cached token is returned instead of the failure.
   */
  async getToken(): Promise<WebIdentityToken> {
    if (this.#closed) throw this.#failure('was asked for a token after it was closed');
    return this.#held.get();
  }

  /** Closes the connection to the API server. A request still under way fails. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#api.close();
  }

  async #requestToken(): Promise<RenewableToken> {
    const { clock, requestTimeoutMs } = this.#options;
    const bearer = await this.#readServiceAccountToken();
    const dispatcher = await this.#api.get();
    const issuedAtWall = clock.wallNow();
    const deadline = AbortSignal.timeout(requestTimeoutMs);
    let statusCode: number;
    let text: string | undefined;
    try {
      const res = await request(this.#url, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${bearer}`,
          'content-type': 'application/json',
          accept: 'application/json',
          'user-agent': 'crosscred',
        },
        body: JSON.stringify(this.#requestBody()),
        dispatcher,
        signal: deadline,
      });
      statusCode = res.statusCode;
      text = await readBoundedBody(res.body, MAX_RESPONSE_BYTES);
    } catch (err) {
      throw this.#transportFailure(err, deadline.aborted, bearer);
    }
    if (text === undefined) {
      throw this.#failure(`got HTTP ${statusCode} with an answer larger than ${MAX_RESPONSE_BYTES} bytes`);
    }
    const body = parseJson(text);
    if (statusCode !== 200 && statusCode !== 201) {
      throw this.#failure(this.#describeRefusal(statusCode, body, bearer));
    }
    return this.#acceptAnswer(statusCode, body, issuedAtWall);
  }

  #requestBody(): unknown {
    const { audience, expirationSeconds, pod } = this.#options;
    return {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: {
        audiences: [audience],
        expirationSeconds,
        ...(pod ? { boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod.name, uid: pod.uid } } : {}),
      },
    };
  }

  #acceptAnswer(statusCode: number, body: unknown, issuedAtWall: number): RenewableToken {
    const status = isObject(body) && isObject(body['status']) ? body['status'] : undefined;
    if (!status) {
      throw this.#failure(`got HTTP ${statusCode} with an answer that is not a TokenRequest JSON object with a "status"`);
    }
    const token = status['token'];
    const expirationTimestamp = status['expirationTimestamp'];
    if (typeof token !== 'string' || token.length === 0) {
      throw this.#failure(`got HTTP ${statusCode} with an answer without "status.token"`);
    }
    const expiresAt = typeof expirationTimestamp === 'string' && RFC3339.test(expirationTimestamp) ? Date.parse(expirationTimestamp) : Number.NaN;
    if (!Number.isFinite(expiresAt)) {
      throw this.#failure(`got HTTP ${statusCode} with an answer without a valid RFC 3339 "status.expirationTimestamp"`);
    }
    const now = this.#options.clock.wallNow();
    // Throws TOKEN_NOT_JWT / TOKEN_TOO_LARGE / TOKEN_EXPIRED, naming this source, never the token.
    const claims = inspectJwt(token, now, this.#sourceName);
    const aud = claims.aud === undefined ? undefined : Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (aud && !aud.includes(this.#options.audience)) {
      throw this.#failure(
        `got a token for audience ${JSON.stringify(sanitize(aud.join(','), []))}, not ${JSON.stringify(this.#options.audience)}; STS would refuse it`,
      );
    }
    // The two should agree; if they do not, the earlier one is when the token really stops working.
    const expiresAtWall = Math.min(expiresAt, claims.exp * 1000);
    if (expiresAtWall <= now) {
      throw this.#failure(`got a token whose expirationTimestamp ${expirationTimestamp as string} has already passed (check this host's clock)`);
    }
    const lifetime = expiresAtWall - issuedAtWall;
    const renewAtWall = issuedAtWall + Math.min(lifetime * RENEW_AT_FRACTION, MAX_TOKEN_AGE_MS);
    return { token: { token, expiresAtWall, claims }, renewAtWall };
  }

  #describeRefusal(statusCode: number, body: unknown, bearer: string): string {
    const phrase = STATUS_CODES[statusCode];
    let text = `got HTTP ${statusCode}${phrase ? ` ${phrase}` : ''}`;
    const explanation = STATUS_EXPLANATION[statusCode];
    if (explanation) text += ` (${explanation})`;
    // The API server answers errors as a Kubernetes Status object; its message says what is wrong.
    const message = isObject(body) && typeof body['message'] === 'string' ? sanitize(body['message'], [bearer]) : '';
    if (message) text += `: ${message}`;
    return text;
  }

  #transportFailure(err: unknown, timedOut: boolean, bearer: string): CrosscredError {
    const { requestTimeoutMs, caFile } = this.#options;
    const code = (err as { code?: unknown } | null)?.code;
    const codeText = typeof code === 'string' ? code : ((err as Error | null)?.name ?? 'Error');
    const detail = sanitize(err instanceof Error ? err.message : String(err), [bearer]);
    let text: string;
    if (timedOut || TIMEOUT_CODES.has(codeText) || codeText === 'TimeoutError') {
      text = `got no complete answer from ${this.#url.origin} within ${requestTimeoutMs} ms (${codeText})`;
    } else if (TLS_VERIFY_CODES.has(codeText)) {
      text = `could not verify the TLS certificate of ${this.#url.origin} (${codeText}: ${detail}); check that ${caFile} is this cluster's CA`;
    } else {
      text = `could not talk to ${this.#url.origin} (${codeText}: ${detail})`;
    }
    return this.#failure(text, err);
  }

  #failure(text: string, cause?: unknown): CrosscredError {
    return new CrosscredError('TOKEN_REQUEST_FAILED', `${this.#sourceName} ${text}`, cause === undefined ? undefined : { cause });
  }

  async #readServiceAccountToken(): Promise<string> {
    const path = this.#options.serviceAccountTokenFile;
    let data: Buffer | undefined;
    try {
      data = await readRegularFile(path, MAX_SA_TOKEN_BYTES);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
      throw new CrosscredError(
        'TOKEN_FILE_UNREADABLE',
        `cannot read the pod's ServiceAccount token ${path} (${code}), needed to authenticate the TokenRequest`,
      );
    }
    if (data === undefined) {
      throw new CrosscredError('TOKEN_TOO_LARGE', `the pod's ServiceAccount token ${path} is larger than ${MAX_SA_TOKEN_BYTES} bytes`);
    }
    const token = data.toString('utf8').trim();
    if (!BEARER_TOKEN.test(token)) {
      const what = token.length === 0 ? 'is empty' : 'does not hold a bearer token (it contains spaces or non-ASCII characters)';
      throw new CrosscredError('TOKEN_FILE_UNREADABLE', `the pod's ServiceAccount token ${path} ${what}`);
    }
    return token;
  }
}

function validateOptions(options: KubernetesTokenSourceOptions): URL {
  const invalid = (text: string) => new CrosscredError('CONFIG_INVALID', `Kubernetes TokenRequest: ${text}`);
  let url: URL;
  try {
    url = new URL(options.apiServer);
  } catch {
    throw invalid(`API server ${JSON.stringify(options.apiServer)} is not a URL`);
  }
  if (url.protocol !== 'https:' || url.search || url.hash || url.username || url.password) {
    throw invalid(`API server ${JSON.stringify(options.apiServer)} must be a plain https:// URL`);
  }
  for (const [name, value] of [
    ['namespace', options.namespace],
    ['serviceAccount', options.serviceAccount],
    ['audience', options.audience],
  ] as const) {
    if (typeof value !== 'string' || value.trim() === '' || value !== value.trim())
      throw invalid(`${name} must be a non-empty string without surrounding spaces`);
  }
  if (!Number.isInteger(options.expirationSeconds) || options.expirationSeconds < MIN_EXPIRATION_SECONDS || options.expirationSeconds > 2 ** 32) {
    throw invalid(
      `expirationSeconds must be a whole number of seconds from ${MIN_EXPIRATION_SECONDS} (the API server's minimum) to 2^32, not ${options.expirationSeconds}`,
    );
  }
  if (!Number.isFinite(options.requestTimeoutMs) || options.requestTimeoutMs <= 0) {
    throw invalid(`requestTimeoutMs must be a positive number of milliseconds, not ${options.requestTimeoutMs}`);
  }
  if (options.pod && (!options.pod.name || !options.pod.uid)) {
    throw invalid('pod needs both a name and a uid (POD_NAME and POD_UID from the downward API)');
  }
  const base = url.pathname.replace(/\/+$/, '');
  url.pathname = `${base}/api/v1/namespaces/${encodeURIComponent(options.namespace)}/serviceaccounts/${encodeURIComponent(options.serviceAccount)}/token`;
  return url;
}

/**
 * Makes text from the other side safe to put in an error: no secrets (the given ones, and anything
 * shaped like a JWT), no control characters (log injection), at most 200 characters.
 */
function sanitize(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= 8) out = out.split(secret).join('[redacted]');
  out = out.replace(JWT_LIKE, '[redacted]').replace(CONTROL_CHARS, ' ').replace(/ {2,}/g, ' ').trim();
  return out.length > MAX_SHOWN_MESSAGE_CHARS ? `${out.slice(0, MAX_SHOWN_MESSAGE_CHARS - 1)}…` : out;
}
