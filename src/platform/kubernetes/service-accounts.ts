import { STATUS_CODES } from 'node:http';
import { request } from 'undici';
import type { Clock } from '../../core/clock.js';
import { isObject, parseJson, readBoundedBody } from '../../util/bounded-body.js';
import { readRegularFile } from '../../util/read-regular-file.js';
import { ApiServerDispatcher } from './api-server-dispatcher.js';

/**
 * Reads ServiceAccounts from the Kubernetes API (`GET /api/v1/namespaces/<ns>/serviceaccounts/<name>`)
 * for the admission webhook, with a short TTL cache in front.
 *
 * A miss is always a live GET, never "not found": the IRSA webhook answered from an informer and
 * left pods unmutated when they were created with, or just after, their ServiceAccount (its
 * #174). A 404 is not cached either, so a ServiceAccount created a moment later is found on the
 * pod's next attempt. Concurrent misses for one ServiceAccount share one GET (a Deployment scaled
 * to 100 replicas asks 100 times at once).
 */

export interface ServiceAccount {
  readonly namespace: string;
  readonly name: string;
  readonly annotations: Readonly<Record<string, string>>;
}

export type ServiceAccountLookup =
  | { readonly found: true; readonly account: ServiceAccount; readonly source: 'cache' | 'live' }
  | { readonly found: false; readonly source: 'live' };

/** The API server refused or failed a read, or could not be reached: the message is safe to show (no token). */
export class KubernetesApiError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KubernetesApiError';
  }
}

export interface ServiceAccountReaderOptions {
  /** `https://host:port`. */
  readonly apiServer: string;
  /** The webhook's own ServiceAccount token, re-read on each GET (the kubelet rotates it). */
  readonly tokenFile: string;
  /** The cluster CA the API server's certificate must chain to; re-read when it changes. */
  readonly caFile: string;
  /** How long a found ServiceAccount is answered from memory, in seconds (0: never cached). */
  readonly cacheSeconds: number;
  /** Budget of one live GET (connect, TLS, whole answer), in ms. */
  readonly requestTimeoutMs: number;
  readonly clock: Clock;
  /** At most this many ServiceAccounts are held; the oldest entry goes first. */
  readonly maxEntries?: number;
}

/** Enough for every ServiceAccount of a large cluster's opted-in namespaces. */
const DEFAULT_MAX_ENTRIES = 10_000;
/** A ServiceAccount is a few KiB (annotations included); more is not one. */
const MAX_RESPONSE_BYTES = 1024 * 1024;
const MAX_TOKEN_BYTES = 64 * 1024;
const MAX_SHOWN_MESSAGE_CHARS = 200;
const BEARER_TOKEN = /^[\x21-\x7e]+$/;
const JWT_LIKE = /[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g;
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

export class ServiceAccountReader {
  readonly #options: ServiceAccountReaderOptions;
  readonly #base: URL;
  /** Insertion-ordered, so the first key is the oldest entry. */
  readonly #cache = new Map<string, { account: ServiceAccount; until: number }>();
  readonly #inFlight = new Map<string, Promise<ServiceAccountLookup>>();
  readonly #api: ApiServerDispatcher;

  constructor(options: ServiceAccountReaderOptions) {
    let url: URL;
    try {
      url = new URL(options.apiServer);
    } catch {
      throw new KubernetesApiError(`the Kubernetes API URL ${JSON.stringify(options.apiServer.slice(0, 100))} is not a URL`);
    }
    if (url.protocol !== 'https:' || url.search || url.hash || url.username || url.password)
      throw new KubernetesApiError(`the Kubernetes API URL ${JSON.stringify(options.apiServer.slice(0, 100))} must be a plain https:// URL`);
    this.#base = url;
    this.#options = options;
    // Admissions arrive in bursts (a rollout); a few connections serve them all.
    this.#api = new ApiServerDispatcher({
      caFile: options.caFile,
      requestTimeoutMs: options.requestTimeoutMs,
      connections: 4,
      fail: (text) => new KubernetesApiError(`the ServiceAccount reader ${text}`),
    });
  }

  /** Entries held now (for tests and metrics). */
  get size(): number {
    return this.#cache.size;
  }

  /** The ServiceAccount from the cache, else from the API server; throws KubernetesApiError when the API cannot say. */
  async get(namespace: string, name: string): Promise<ServiceAccountLookup> {
    const key = `${namespace}/${name}`;
    const now = this.#options.clock.monotonicNow();
    const cached = this.#cache.get(key);
    if (cached !== undefined && cached.until > now) return { found: true, account: cached.account, source: 'cache' };
    if (cached !== undefined) this.#cache.delete(key);
    let pending = this.#inFlight.get(key);
    if (pending === undefined) {
      pending = this.#fetch(namespace, name).finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, pending);
    }
    return pending;
  }

  async close(): Promise<void> {
    await this.#api.close();
  }

  async #fetch(namespace: string, name: string): Promise<ServiceAccountLookup> {
    const { requestTimeoutMs } = this.#options;
    const url = new URL(this.#base);
    url.pathname = `${url.pathname.replace(/\/+$/, '')}/api/v1/namespaces/${encodeURIComponent(namespace)}/serviceaccounts/${encodeURIComponent(name)}`;
    const bearer = await this.#bearer();
    const dispatcher = await this.#api.get();
    const deadline = AbortSignal.timeout(requestTimeoutMs);
    let statusCode: number;
    let text: string | undefined;
    try {
      const res = await request(url, {
        method: 'GET',
        headers: { authorization: `Bearer ${bearer}`, accept: 'application/json', 'user-agent': 'crosscred-webhook' },
        dispatcher,
        signal: deadline,
      });
      statusCode = res.statusCode;
      text = await readBoundedBody(res.body, MAX_RESPONSE_BYTES);
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      const codeText = typeof code === 'string' ? code : ((err as Error | null)?.name ?? 'Error');
      if (deadline.aborted || codeText === 'TimeoutError' || codeText.endsWith('_TIMEOUT'))
        throw new KubernetesApiError(`the Kubernetes API at ${url.origin} gave no complete answer within ${requestTimeoutMs} ms`);
      throw new KubernetesApiError(`could not reach the Kubernetes API at ${url.origin} (${codeText})`);
    }
    if (text === undefined) throw new KubernetesApiError(`the Kubernetes API answered HTTP ${statusCode} with more than ${MAX_RESPONSE_BYTES} bytes`);
    const body = parseJson(text);
    if (statusCode === 404) return { found: false, source: 'live' };
    if (statusCode !== 200) {
      const phrase = STATUS_CODES[statusCode] ?? '';
      const message = isObject(body) && typeof body['message'] === 'string' ? `: ${sanitize(body['message'], bearer)}` : '';
      const why = statusCode === 401 || statusCode === 403 ? ' (check the webhook ServiceAccount may get serviceaccounts)' : '';
      throw new KubernetesApiError(`the Kubernetes API answered HTTP ${statusCode} ${phrase}${why}${message}`);
    }
    const account = readServiceAccount(body, namespace, name);
    if (account === undefined) throw new KubernetesApiError('the Kubernetes API answered 200 with something that is not a ServiceAccount');
    this.#remember(`${namespace}/${name}`, account);
    return { found: true, account, source: 'live' };
  }

  #remember(key: string, account: ServiceAccount): void {
    const { cacheSeconds, clock } = this.#options;
    if (cacheSeconds <= 0) return;
    this.#cache.delete(key);
    this.#cache.set(key, { account, until: clock.monotonicNow() + cacheSeconds * 1000 });
    const max = this.#options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    while (this.#cache.size > max) this.#cache.delete(this.#cache.keys().next().value as string);
  }

  async #bearer(): Promise<string> {
    const path = this.#options.tokenFile;
    let data: Buffer | undefined;
    try {
      data = await readRegularFile(path, MAX_TOKEN_BYTES);
    } catch (err) {
      throw new KubernetesApiError(`cannot read the webhook's ServiceAccount token ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    const token = data?.toString('utf8').trim() ?? '';
    if (!BEARER_TOKEN.test(token)) throw new KubernetesApiError(`the webhook's ServiceAccount token ${path} does not hold a bearer token`);
    return token;
  }
}

/** The ServiceAccount's annotations, keeping only string values; undefined when the body is not a ServiceAccount. */
function readServiceAccount(body: unknown, namespace: string, name: string): ServiceAccount | undefined {
  if (!isObject(body) || body['kind'] !== 'ServiceAccount') return undefined;
  const metadata = body['metadata'];
  if (!isObject(metadata)) return undefined;
  const annotations: Record<string, string> = {};
  const raw = metadata['annotations'];
  if (isObject(raw)) for (const [k, v] of Object.entries(raw)) if (typeof v === 'string') annotations[k] = v;
  return Object.freeze({ namespace, name, annotations: Object.freeze(annotations) });
}

/** Text from the API server, safe to put in a denial: no token, nothing JWT-shaped, no control characters, 200 characters at most. */
function sanitize(text: string, bearer: string): string {
  let out = bearer.length >= 8 ? text.split(bearer).join('[redacted]') : text;
  out = out.replace(JWT_LIKE, '[redacted]').replace(CONTROL_CHARS, ' ').replace(/ {2,}/g, ' ').trim();
  return out.length > MAX_SHOWN_MESSAGE_CHARS ? `${out.slice(0, MAX_SHOWN_MESSAGE_CHARS - 1)}…` : out;
}
