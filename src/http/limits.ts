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
   * Open connections per listener. A connection accepted beyond them has each request answered
   * 503 with Retry-After and is closed: an overloaded daemon says so at once instead of letting
   * clients time out, while the connections it already holds (SDKs on keep-alive) go on being
   * served. (Refusing every request while over the cap turned a boot storm of 10,000 first
   * requests into 97% 503s in the benchmark.)
   */
  maxConnections: 4_096,
  /**
   * A TLS client must finish its handshake within this time, in ms. Node's default (120 s) let a
   * client that opened TCP and sent nothing hold a place under the connection cap for two minutes.
   * A real handshake takes a few round trips: well under a second even across continents.
   */
  tlsHandshakeTimeoutMs: 5_000,
  /**
   * Open connections from one client address (an IPv6 client: its /64) on a listener that asks for
   * a per-address cap (the issuer, when it terminates TLS itself). One address can then hold at most
   * 1/16 of maxConnections, so one client cannot starve the others, while a NAT gateway in front of
   * thousands of VMs (each exchanging a token about once an hour, on a connection that lives a few
   * seconds) stays far below it. Connections beyond it are closed at once, before any TLS or HTTP work.
   */
  maxConnectionsPerAddress: 256,
} as const;
