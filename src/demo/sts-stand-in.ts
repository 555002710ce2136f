import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';

/** Where a stand-in listens: loopback by default, any port, HTTPS with a PEM key and certificate. */
export interface StandInListenOptions {
  readonly host?: string;
  readonly port?: number;
  readonly tls?: { readonly key: string; readonly cert: string };
}

/**
 * The ways a test can make any stand-in misbehave besides answering its own cloud's `error`: never
 * answer, reset, answer garbage or another server's page, answer late, or succeed with credentials
 * of a given lifetime.
 */
export type TransportFault =
  | { readonly kind: 'hang' }
  | { readonly kind: 'garbage' }
  | { readonly kind: 'reset' }
  | { readonly kind: 'delay'; readonly ms: number }
  /** Succeed, but with credentials that expire this many seconds from now (may be ≤ 0). */
  | { readonly kind: 'lifetime'; readonly seconds: number }
  /** An answer that is not STS's at all, e.g. a load balancer's HTML 502 page. */
  | { readonly kind: 'raw'; readonly status: number; readonly body: string; readonly contentType?: string };

/** What is left to do after a transport fault: nothing (the request is dealt with), or go on, with a lifetime to give the credentials. */
export type AfterFault = { readonly answered: true } | { readonly answered: false; readonly lifetimeSeconds?: number };

/**
 * What every cloud's STS stand-in of the demo shares (AWS's, Alibaba's, Tencent's): a real HTTP(S)
 * server with its URL, closed with every open connection; STS's own clock; and faults a test asks
 * for, applied to the next requests or to all until healed. Each cloud's subclass answers its own
 * API in its own shapes and errors.
 */
export abstract class StsStandIn<Fault> {
  readonly url: string;
  /** STS's own clock (epoch ms): it dates answers and judges the token's `exp`. */
  now: () => number;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #queued: Fault[] = [];
  #persistent: Fault | undefined;

  protected constructor(server: Server, url: string, now: () => number) {
    this.#server = server;
    this.url = url;
    this.now = now;
    server.on('connection', (s) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
  }

  /** A listening server whose requests go to `handler`, and its base URL. */
  protected static async listen(
    options: StandInListenOptions,
    handler: (req: IncomingMessage, res: ServerResponse) => void,
  ): Promise<{ server: Server; url: string }> {
    const host = options.host ?? '127.0.0.1';
    const server = options.tls ? createHttpsServer({ key: options.tls.key, cert: options.tls.cert }, handler) : createServer(handler);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, resolve);
    });
    const port = (server.address() as AddressInfo).port;
    return { server, url: `${options.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}` };
  }

  /** Applies `faults` to the next requests, one each, in order. */
  failNext(...faults: Fault[]): void {
    this.#queued.push(...faults);
  }

  /** Applies `fault` to every request until `heal()`. */
  failAlways(fault: Fault): void {
    this.#persistent = fault;
  }

  heal(): void {
    this.#persistent = undefined;
    this.#queued = [];
  }

  /** The fault the request that just arrived gets, if any: the next queued one, else the persistent one. */
  protected takeFault(): Fault | undefined {
    return this.#queued.shift() ?? this.#persistent;
  }

  /**
   * Applies a transport fault to the request. `garbage` is what this cloud's garbage looks like
   * (a broken document of its own format).
   */
  protected async applyFault(
    fault: TransportFault,
    req: IncomingMessage,
    res: ServerResponse,
    garbage: { readonly contentType: string; readonly body: string },
  ): Promise<AfterFault> {
    switch (fault.kind) {
      case 'hang':
        return { answered: true }; // never answer; the socket is destroyed on close()
      case 'reset':
        req.socket.destroy();
        return { answered: true };
      case 'garbage':
        res.writeHead(200, { 'content-type': garbage.contentType }).end(garbage.body);
        return { answered: true };
      case 'raw':
        res.writeHead(fault.status, { 'content-type': fault.contentType ?? 'text/html' }).end(fault.body);
        return { answered: true };
      case 'delay':
        await new Promise((r) => setTimeout(r, fault.ms));
        return { answered: false };
      case 'lifetime':
        return { answered: false, lifetimeSeconds: fault.seconds };
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      for (const s of this.#sockets) s.destroy();
    });
  }

  /**
   * Stops listening and drops every open connection, so the next connection attempt is refused
   * (ECONNREFUSED), as when STS or the proxy in front of it is down. `acceptConnections()` listens
   * again on the same port.
   */
  refuseConnections(): Promise<void> {
    return this.close();
  }

  acceptConnections(): Promise<void> {
    const { hostname, port } = new URL(this.url);
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(Number(port), hostname.replace(/^\[|\]$/g, ''), () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
  }
}
