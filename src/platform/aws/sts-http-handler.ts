import { Readable } from 'node:stream';
import { type Dispatcher, EnvHttpProxyAgent, Pool, request } from 'undici';
import { Turns } from '../../util/turns.js';

/**
 * The HTTP transport under the STS client: undici, so that the STS connection honours
 * HTTPS_PROXY / HTTP_PROXY / NO_PROXY (cross-cloud traffic often leaves through an egress proxy),
 * a custom CA bundle (a private STS endpoint over a dedicated line), and bounded connect and
 * response timeouts. The AWS SDK's own transport does none of the proxy part.
 *
 * It implements the smithy request-handler contract structurally: `handle(request)` resolves to
 * `{ response: { statusCode, headers, body } }`.
 */
export interface StsTransportOptions {
  /** PEM text of the CA certificates to trust instead of Node's bundled roots (AWS_CA_BUNDLE). */
  readonly caBundle?: string;
  readonly connectTimeoutMs: number;
  /** Time allowed for the whole answer: headers and body. */
  readonly responseTimeoutMs: number;
  readonly httpProxy?: string;
  readonly httpsProxy?: string;
  readonly noProxy?: string;
}

/** STS answers are a few KiB; anything much larger is not an STS answer and is cut off. */
const MAX_RESPONSE_BYTES = 256 * 1024;

/**
 * STS requests in flight at once through one client (one connection each); more wait their turn
 * here, in order. The per-request timeouts start only once a request has its turn, so a burst of
 * many roles (10,000 first fetches at start-up) is not failed by time spent queueing, which used
 * to turn the tail of such a burst into timed-out calls that STS had answered and then retries.
 */
export const MAX_CONCURRENT_STS_REQUESTS = 8;

interface SmithyRequest {
  method: string;
  protocol: string;
  hostname: string;
  port?: number;
  path: string;
  query?: Record<string, string | Array<string> | null>;
  headers: Record<string, string>;
  body?: unknown;
}

/** A request as `send` takes it. */
export interface StsHttpRequest {
  readonly url: URL;
  readonly method: string;
  readonly headers: Record<string, string>;
  readonly body?: string | Buffer;
}

/** An answer as `send` returns it: status, headers (lower-case names, repeated ones joined) and the whole body. */
export interface StsHttpAnswer {
  readonly statusCode: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

export class StsHttpHandler {
  readonly metadata = { handlerProtocol: 'http/1.1' };
  readonly #dispatcher: Dispatcher;
  readonly #options: StsTransportOptions;
  readonly #turns = new Turns(MAX_CONCURRENT_STS_REQUESTS);

  constructor(options: StsTransportOptions) {
    this.#options = options;
    const tls = { ...(options.caBundle ? { ca: options.caBundle } : {}), timeout: options.connectTimeoutMs };
    this.#dispatcher = new EnvHttpProxyAgent({
      // Passed explicitly (they come from the frozen config), so a later change to
      // process.env cannot redirect credentials traffic.
      httpProxy: options.httpProxy ?? '',
      httpsProxy: options.httpsProxy ?? '',
      noProxy: options.noProxy ?? '',
      connect: tls,
      requestTls: tls,
      proxyTls: tls,
      headersTimeout: options.responseTimeoutMs,
      bodyTimeout: options.responseTimeoutMs,
      connections: MAX_CONCURRENT_STS_REQUESTS,
      // The connection to the proxy itself (the CONNECT request) otherwise waits undici's default
      // 300 s for a proxy that accepts and never answers.
      clientFactory: (origin: URL, opts: object) =>
        new Pool(origin, { ...opts, headersTimeout: options.connectTimeoutMs, bodyTimeout: options.responseTimeoutMs }),
    } as ConstructorParameters<typeof EnvHttpProxyAgent>[0]);
  }

  async handle(
    req: SmithyRequest,
    handlerOptions?: { abortSignal?: AbortSignal },
  ): Promise<{ response: { statusCode: number; headers: Record<string, string>; body: Readable } }> {
    const url = new URL(`${req.protocol}//${req.hostname}${req.port ? `:${req.port}` : ''}${req.path}`);
    for (const [key, value] of Object.entries(req.query ?? {})) {
      if (value === null) url.searchParams.append(key, '');
      else for (const v of Array.isArray(value) ? value : [value]) url.searchParams.append(key, v);
    }
    const answer = await this.send(
      { url, method: req.method, headers: req.headers, body: req.body as string | Buffer | undefined },
      handlerOptions?.abortSignal,
    );
    return { response: { statusCode: answer.statusCode, headers: answer.headers, body: Readable.from([answer.body]) } };
  }

  /**
   * One request through this transport, in its turn, with its timeouts, proxies and CA bundle: the
   * AWS SDK's path (`handle`) and the Alibaba and Tencent exchanges, which speak their STS's plain
   * HTTP APIs without an SDK, both come here. The body is read whole, up to MAX_RESPONSE_BYTES.
   */
  async send(req: StsHttpRequest, signal?: AbortSignal): Promise<StsHttpAnswer> {
    await this.#turns.take(signal);
    try {
      return await this.#send(req, signal);
    } finally {
      this.#turns.give();
    }
  }

  async #send(req: StsHttpRequest, callerSignal: AbortSignal | undefined): Promise<StsHttpAnswer> {
    const deadline = AbortSignal.timeout(this.#options.connectTimeoutMs + this.#options.responseTimeoutMs);
    const signal = callerSignal ? AbortSignal.any([deadline, callerSignal]) : deadline;
    const res = await request(req.url, {
      method: req.method as Dispatcher.HttpMethod,
      headers: req.headers,
      body: req.body,
      dispatcher: this.#dispatcher,
      signal,
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > MAX_RESPONSE_BYTES) {
        res.body.destroy();
        throw Object.assign(new Error(`STS answer larger than ${MAX_RESPONSE_BYTES} bytes`), { name: 'ResponseTooLarge' });
      }
      chunks.push(chunk as Buffer);
    }
    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(res.headers)) {
      if (value !== undefined) headers[key] = Array.isArray(value) ? value.join(', ') : value;
    }
    return { statusCode: res.statusCode, headers, body: Buffer.concat(chunks) };
  }

  updateHttpClientConfig(): void {
    // Configuration is fixed at construction; the SDK's per-client tweaks do not apply.
  }

  httpHandlerConfigs(): Record<string, never> {
    return {};
  }

  destroy(): void {
    void this.#dispatcher.close();
  }
}
