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
