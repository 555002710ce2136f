import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { clientAddressKey } from '../core/client-address.js';
import { CrosscredError } from '../core/errors.js';
import type { ListenAddress } from '../core/listen-address.js';
import { formatAddress } from '../core/listen-address.js';
import { HTTP_LIMITS } from './limits.js';
import type { Refusal } from './refusals.js';
import { type ErrorFormat, renderError } from './responses.js';

/** The whole answer to a CONNECT request, which arrives as a bare socket, in the given format. */
function connectRefusal(format: ErrorFormat): Buffer {
  const answer = renderError('REQUEST_INVALID', 'CONNECT is not served here', format);
  const head = `HTTP/1.1 ${answer.status} Bad Request\r\ncontent-type: ${answer.contentType}\r\ncontent-length: ${answer.body.length}\r\nconnection: close\r\n\r\n`;
  return Buffer.concat([Buffer.from(head), answer.body]);
}

/** True when the raw header list (name, value, name, value…) has more than one Host line. */
function repeatsHost(raw: readonly string[]): boolean {
  let seen = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') {
      if (seen) return true;
      seen = true;
    }
  }
  return false;
}

export interface HttpListenerOptions {
  readonly handler: (req: IncomingMessage, res: ServerResponse) => void;
  /** Answers a request the listener refuses before routing; must end the response. */
  readonly refuse: (req: IncomingMessage, res: ServerResponse, why: Refusal) => void;
  readonly maxConnections?: number;
  /** The error format for a request target (answers made before routing, such as to CONNECT). */
  readonly errorFormat?: (target: string) => ErrorFormat;
  /**
   * Largest declared body passed to the handler, which then reads it itself (only the issuer's
   * token endpoint does). Default HTTP_LIMITS.maxRequestBodyBytes, for listeners that never read one.
   */
  readonly maxRequestBodyBytes?: number;
  /** Serve HTTPS with this PEM key and certificate chain (the issuer); plain HTTP without. */
  readonly tls?: { readonly key: string | Buffer; readonly cert: string | Buffer };
  /** With tls: a handshake not finished within this many ms closes the connection. Default HTTP_LIMITS.tlsHandshakeTimeoutMs. */
  readonly tlsHandshakeTimeoutMs?: number;
  /**
   * At most this many open connections from one client address (an IPv6 address counts by its
   * /64). A connection beyond it is closed as soon as it is accepted: nothing is read or sent, no
   * TLS handshake is started. Default: no per-address cap (only maxConnections).
   */
  readonly maxConnectionsPerAddress?: number;
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
  readonly #maxBodyBytes: number;
  /** Connections accepted while the listener was over its cap: each request on them is refused. */
  readonly #overCap = new WeakSet<object>();
  /** Open connections per clientAddressKey, when there is a per-address cap; an entry goes with its last connection. */
  readonly #perAddress = new Map<string, number>();
  #refusedPerAddress = 0;

  constructor(private readonly options: HttpListenerOptions) {
    this.#maxConnections = options.maxConnections ?? HTTP_LIMITS.maxConnections;
    this.#maxBodyBytes = options.maxRequestBodyBytes ?? HTTP_LIMITS.maxRequestBodyBytes;
    const httpOptions = {
      requestTimeout: HTTP_LIMITS.requestTimeoutMs,
      headersTimeout: HTTP_LIMITS.requestTimeoutMs,
      connectionsCheckingInterval: HTTP_LIMITS.connectionsCheckingIntervalMs,
      keepAliveTimeout: HTTP_LIMITS.keepAliveTimeoutMs,
      maxHeaderSize: HTTP_LIMITS.maxHeaderBytes,
      // Requests are tiny and answered from memory; Nagle would only add latency.
      noDelay: true,
    };
    const onRequest = (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req, res);
    // An https.Server is an http.Server over TLS (the same request events and limits).
    this.server = options.tls
      ? (createHttpsServer(
          {
            ...httpOptions,
            key: options.tls.key,
            cert: options.tls.cert,
            minVersion: 'TLSv1.2',
            handshakeTimeout: options.tlsHandshakeTimeoutMs ?? HTTP_LIMITS.tlsHandshakeTimeoutMs,
          },
          onRequest,
        ) as unknown as Server)
      : createServer(httpOptions, onRequest);
    // Every header line counts: Node's default keeps only the first 1,000 and drops the rest
    // silently, so an X-Forwarded-For or a second Host after 1,000 filler lines went unseen. The
    // 16 KiB header limit still bounds the request.
    this.server.maxHeadersCount = 0;
    // CONNECT is not a request for a path: without this, Node closes the connection unanswered.
    this.server.on('connect', (req: IncomingMessage, socket: Duplex) => {
      socket.end(connectRefusal(options.errorFormat?.(req.url ?? '') ?? 'text'));
    });
    this.server.on('connection', (socket: Socket) => {
      if (!this.#admitFrom(socket)) return;
      this.#connections++;
      if (this.#connections > this.#maxConnections) this.#overCap.add(socket);
      socket.once('close', () => this.#connections--);
    });
    // Over TLS, requests arrive on the TLS socket wrapped around the TCP one counted above.
    if (options.tls) {
      this.server.on('secureConnection', (tlsSocket: object) => {
        if (this.#connections > this.#maxConnections) this.#overCap.add(tlsSocket);
      });
    }
  }

  /** Connections closed on arrival because their address was at maxConnectionsPerAddress. */
  get connectionsRefusedPerAddress(): number {
    return this.#refusedPerAddress;
  }

  /**
   * Counts `socket` against its address's cap, or closes it when the address is at the cap. A
   * refused socket is destroyed at once, unanswered: answering (a 503 over TLS) would cost the
   * handshake that the cap is there to spare, and a client that holds that many connections is
   * not waiting for an explanation.
   */
  #admitFrom(socket: Socket): boolean {
    const cap = this.options.maxConnectionsPerAddress;
    if (cap === undefined) return true;
    const key = clientAddressKey(socket.remoteAddress);
    const open = this.#perAddress.get(key) ?? 0;
    if (open >= cap) {
      this.#refusedPerAddress++;
      socket.destroy();
      return false;
    }
    this.#perAddress.set(key, open + 1);
    socket.once('close', () => {
      const left = (this.#perAddress.get(key) ?? 1) - 1;
      if (left <= 0) this.#perAddress.delete(key);
      else this.#perAddress.set(key, left);
    });
    return true;
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

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    if (this.#closing) {
      res.shouldKeepAlive = false;
      this.options.refuse(req, res, 'closing');
      return;
    }
    if (this.#overCap.has(req.socket)) {
      res.shouldKeepAlive = false;
      this.options.refuse(req, res, 'overloaded');
      return;
    }
    // RFC 9112 §3.2: more than one Host line is 400. Node keeps only the first in req.headers, so
    // the Host guard would judge a request by the line of the client's choosing.
    if (repeatsHost(req.rawHeaders)) {
      res.shouldKeepAlive = false;
      this.options.refuse(req, res, 'host-repeated');
      return;
    }
    // A request with a body is never one of ours (except on a listener that reads bodies, up to
    // its maxRequestBodyBytes); it is answered without reading the body, and the connection is not
    // reused, so an unread body can never be taken for the next request.
    const length = req.headers['content-length'];
    const codings = req.headers['transfer-encoding'];
    if (codings !== undefined) {
      res.shouldKeepAlive = false;
      // RFC 9112 §6.3: a final coding other than chunked leaves the length unknowable: 400. A
      // chunked body's size is not declared, and it is never read to find out: 413.
      this.options.refuse(req, res, /(?:^|,)\s*chunked\s*$/i.test(codings) ? 'body-chunked' : 'transfer-coding-invalid');
      return;
    }
    if (length !== undefined && length !== '0') {
      if (!(Number(length) <= this.#maxBodyBytes)) {
        res.shouldKeepAlive = false;
        this.options.refuse(req, res, 'body-too-large');
        return;
      }
      // A listener that reads bodies reads them whole (or closes the connection itself).
      if (this.options.maxRequestBodyBytes === undefined) res.shouldKeepAlive = false;
    }
    this.options.handler(req, res);
  }
}
