import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';

type PrivateKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

/**
 * A minimal OIDC issuer for the demo and the tests: it publishes discovery and a JWKS over HTTP on
 * loopback and signs ES256 JWTs, as a Kubernetes API server does for projected ServiceAccount
 * tokens. It is not a production issuer (no HTTPS, one key, no token endpoint).
 */
export class DemoOidcIssuer {
  readonly url: string;
  readonly #server: Server;
  readonly #privateKey: PrivateKey;
  readonly #kid: string;

  private constructor(server: Server, url: string, privateKey: PrivateKey, kid: string) {
    this.#server = server;
    this.url = url;
    this.#privateKey = privateKey;
    this.#kid = kid;
  }

  /** `tls`: serve HTTPS with this PEM key and certificate, as IAM requires of real issuers. */
  static async start(options: { host?: string; port?: number; tls?: { key: string; cert: string } } = {}): Promise<DemoOidcIssuer> {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: false });
    const kid = `demo-${Date.now().toString(36)}`;
    const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
    const host = options.host ?? '127.0.0.1';
    let issuerUrl = '';
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      const path = (req.url ?? '').split('?')[0];
      let body: unknown;
      if (req.method === 'GET' && path === '/.well-known/openid-configuration') {
        body = {
          issuer: issuerUrl,
          jwks_uri: `${issuerUrl}/keys`,
          response_types_supported: ['id_token'],
          subject_types_supported: ['public'],
          id_token_signing_alg_values_supported: ['ES256'],
        };
      } else if (req.method === 'GET' && path === '/keys') {
        body = { keys: [jwk] };
      }
      if (body === undefined) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    const server = options.tls ? createHttpsServer({ key: options.tls.key, cert: options.tls.cert }, handler) : createServer(handler);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, resolve);
    });
    const port = (server.address() as AddressInfo).port;
    issuerUrl = `${options.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
    return new DemoOidcIssuer(server, issuerUrl, privateKey, kid);
  }

  /** Signs a token for `sub` and `aud` that expires in `ttlSeconds` (negative for an already expired one). */
  async mint(claims: { sub: string; aud: string; ttlSeconds: number; extra?: Record<string, unknown> }): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ ...claims.extra })
      .setProtectedHeader({ alg: 'ES256', kid: this.#kid, typ: 'JWT' })
      .setIssuer(this.url)
      .setSubject(claims.sub)
      .setAudience(claims.aud)
      .setIssuedAt(now)
      .setNotBefore(now - 5)
      .setExpirationTime(now + claims.ttlSeconds)
      .sign(this.#privateKey);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}
