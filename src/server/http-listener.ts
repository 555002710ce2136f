import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { ListenAddress } from '../config/config.js';
import { formatAddress } from '../config/listen-address.js';
import { CrosscredError } from '../errors.js';

/**
 * Limits for untrusted clients; nothing a credential client sends comes near them.
 * Requests beyond them are answered by Node's HTTP parser (400, 408, 431) or by us (413, 503).
 */
export const HTTP_LIMITS = {
  /**
   * Credential requests carry no body. A declared body up to this size is tolerated (and never
   * read); a larger one is answered 413.
   */
  maxRequestBodyBytes: 1024,
  /** A client must send its whole request within this time (slow-loris protection), in ms. */
  requestTimeoutMs: 10_000,
  /**
   * How often Node looks for requests past that timeout, in ms. Its default (30 s) let a slow-loris
   * connection live up to 40 s; the soak measured every one closed at 30.0 s.
   */
  connectionsCheckingIntervalMs: 1_000,
  /** Idle keep-alive connections are closed after this long, in ms. */
  keepAliveTimeoutMs: 5_000,
  /** Request line plus headers; Node answers 431 beyond it. */
  maxHeaderBytes: 16 * 1024,
  /**
   * Open connections per listener beyond which a request is answered 503 with Retry-After and the
   * connection closed: an overloaded daemon says so at once instead of letting clients time out.
   */
  maxConnections: 4_096,
} as const;

/** What a listener does with a request it will not route: closing, or over its connection limit. */
export type Refusal = 'closing' | 'overloaded' | 'body-too-large';

export interface HttpListenerOptions {
  readonly handler: (req: IncomingMessage, res: ServerResponse) => void;
  /** Answers a request the listener refuses before routing; must end the response. */
  readonly refuse: (req: IncomingMessage, res: ServerResponse, why: Refusal) => void;
  readonly maxConnections?: number;
}

/**
 * A plain `node:http` server with the limits above, a connection cap and a graceful close. The
 * credential and admin listeners are built on it directly, without a framework: the benchmark
 * suite measured Fastify's routing and hooks at 41% of a bare `node:http` server's throughput on
 * the credential hot path (bench/results/ from before this module), and these listeners have about
 * ten fixed routes that a map answers.
 */
export class HttpListener {
  readonly server: Server;
  #closing = false;
  #connections = 0;
  readonly #maxConnections: number;

  constructor(private readonly options: HttpListenerOptions) {
    this.#maxConnections = options.maxConnections ?? HTTP_LIMITS.maxConnections;
    this.server = createServer(
      {
        requestTimeout: HTTP_LIMITS.requestTimeoutMs,
        headersTimeout: HTTP_LIMITS.requestTimeoutMs,
        connectionsCheckingInterval: HTTP_LIMITS.connectionsCheckingIntervalMs,
        keepAliveTimeout: HTTP_LIMITS.keepAliveTimeoutMs,
        maxHeaderSize: HTTP_LIMITS.maxHeaderBytes,
        // Requests are tiny and answered from memory; Nagle would only add latency.
        noDelay: true,
      },
      (req, res) => this.#onRequest(req, res),
    );
    this.server.on('connection', (socket) => {
      this.#connections++;
      socket.once('close', () => this.#connections--);
    });
  }

  get closing(): boolean {
    return this.#closing;
  }

  /** Binds `address`; resolves with the bound port (useful when 0 was asked for). */
  listen(address: ListenAddress): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        reject(new CrosscredError('LISTEN_FAILED', `cannot listen on ${formatAddress(address)} (${err.code ?? err.message})`));
      };
      this.server.once('error', onError);
      this.server.listen({ host: address.host, port: address.port, exclusive: true }, () => {
        this.server.off('error', onError);
        const bound = this.server.address();
        resolve(typeof bound === 'object' && bound !== null ? bound.port : address.port);
      });
    });
  }

  /**
   * Stops accepting connections, closes idle keep-alive connections, answers requests that arrive
   * on open connections with 503 and `Connection: close`, and resolves once in-flight requests
   * have been answered and every connection is gone. The caller bounds the wait (serve: 5 s).
   */
  close(): Promise<void> {
    if (!this.server.listening) return Promise.resolve();
    this.#closing = true;
    return new Promise((resolve) => {
      // A keep-alive connection whose last response was still in flight when closing began turns
      // idle only later; sweeping idle connections until the server is closed ends it promptly
      // instead of after the keep-alive timeout.
      const sweep = setInterval(() => this.server.closeIdleConnections(), 25);
      this.server.close(() => {
        clearInterval(sweep);
        resolve();
      });
      this.server.closeIdleConnections();
    });
  }

  /** Closes every connection at once, in-flight requests included (after a graceful close timed out). */
  destroyConnections(): void {
    this.server.closeAllConnections();
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    if (this.#closing) {
      res.shouldKeepAlive = false;
      this.options.refuse(req, res, 'closing');
      return;
    }
    if (this.#connections > this.#maxConnections) {
      res.shouldKeepAlive = false;
      this.options.refuse(req, res, 'overloaded');
      return;
    }
    // A request with a body is never one of ours; it is answered without reading the body, and
    // the connection is not reused, so an unread body can never be taken for the next request.
    const length = req.headers['content-length'];
    if (length !== undefined ? length !== '0' : req.headers['transfer-encoding'] !== undefined) {
      res.shouldKeepAlive = false;
      if (length !== undefined && Number(length) > HTTP_LIMITS.maxRequestBodyBytes) {
        this.options.refuse(req, res, 'body-too-large');
        return;
      }
    }
    this.options.handler(req, res);
  }
}
