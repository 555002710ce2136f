import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { OAuth2Server } from 'oauth2-mock-server';

/**
 * Two real OIDC issuers that crosscred did not write, run on loopback for tests of `crosscred doctor`
 * and `crosscred trust-policy`. Both mint RS256 JWTs at their own token endpoint (client_credentials
 * grant) and publish a discovery document and a JWKS over plain http on 127.0.0.1.
 *
 * | issuer              | `iss` in tokens = discovery `issuer`   | jwks_uri                               |
 * |---------------------|----------------------------------------|----------------------------------------|
 * | oauth2-mock-server  | `http://127.0.0.1:<port>` (no slash)   | `http://127.0.0.1:<port>/jwks`         |
 * | glewlwyd            | `http://127.0.0.1:<port>/api/oidc`     | `http://127.0.0.1:<port>/api/oidc/jwks`|
 *
 * In both, the token's `iss` and the discovery `issuer` are the same string. Both jwks_uri are http,
 * not https: fine for local verification, but AWS itself would only fetch a public https issuer.
 */
export interface ThirdPartyIssuer {
  readonly name: string; // 'oauth2-mock-server' | 'glewlwyd'
  readonly issuer: string; // the `iss` its tokens carry
  readonly discoveryUrl: string; // its /.well-known/openid-configuration
  /** A fresh JWT from the issuer's own token endpoint, for the given audience where the issuer lets the caller choose it. */
  mintToken(options?: { audience?: string; subject?: string }): Promise<string>;
  close(): Promise<void>;
}

export const DEFAULT_AUDIENCE = 'sts.amazonaws.com';
export const DEFAULT_SUBJECT = 'crosscred-test';

const run = promisify(execFile);

// ---------------------------------------------------------------------------------------------
// oauth2-mock-server (npm, devDependency)
// ---------------------------------------------------------------------------------------------

/**
 * oauth2-mock-server 8.x in-process on 127.0.0.1 with a random port and one fresh RS256 key.
 *
 * - Its `client_credentials` grant takes the audience from the request's `aud` form field and
 *   sets no `sub`; a `beforeTokenSigning` hook (its documented customization point) copies the
 *   request's `client_id` into `sub`, so the subject is the client_id as with glewlwyd. It
 *   authenticates no client (discovery says `token_endpoint_auth_methods_supported: ["none"]`).
 * - Left alone, it names itself `http://localhost:<port>` even when bound to 127.0.0.1, and
 *   `localhost` may resolve to ::1 where nothing listens; the issuer URL is therefore set to
 *   `http://127.0.0.1:<port>` after start. Tokens, discovery and jwks_uri all follow it.
 * - Tokens: header `{typ: "JWT", kid, alg: "RS256"}`; claims `iss, iat, exp (iat + 3600), nbf
 *   (iat - 10), scope, aud, sub`.
 */
export async function startOauth2MockServer(): Promise<ThirdPartyIssuer> {
  const server = new OAuth2Server();
  await server.issuer.keys.generate('RS256');
  server.service.on('beforeTokenSigning', (token, req) => {
    if (req.body.grant_type !== 'client_credentials') return;
    const clientId = req.body.client_id;
    token.payload['sub'] = typeof clientId === 'string' && clientId !== '' ? clientId : DEFAULT_SUBJECT;
  });
  await server.start(0, '127.0.0.1');
  const issuer = `http://127.0.0.1:${server.address().port}`;
  server.issuer.url = issuer;
  const tokenEndpoint = `${issuer}/token`;

  return {
    name: 'oauth2-mock-server',
    issuer,
    discoveryUrl: `${issuer}/.well-known/openid-configuration`,
    async mintToken(options = {}) {
      return postForToken(tokenEndpoint, {
        grant_type: 'client_credentials',
        client_id: options.subject ?? DEFAULT_SUBJECT,
        aud: options.audience ?? DEFAULT_AUDIENCE,
      });
    },
    async close() {
      if (server.listening) await server.stop();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// glewlwyd (Debian package, C)
// ---------------------------------------------------------------------------------------------

/** Files of Debian bookworm's `glewlwyd` 2.7.5 package (and `sqlite3`, which it depends on). */
const GLEWLWYD = {
  bin: '/usr/bin/glewlwyd',
  sqlite3: '/usr/bin/sqlite3',
  initSql: '/usr/share/dbconfig-common/data/glewlwyd/install/sqlite3',
  moduleRoot: '/usr/lib/glewlwyd',
} as const;

/** The account the package's init script creates (documented in its GETTING_STARTED.md). */
const GLEWLWYD_ADMIN = { username: 'admin', password: 'password' } as const;

/**
 * A private glewlwyd: a fresh sqlite database from the package's init script, a config bound to
 * 127.0.0.1 on a free port, all in a temp directory, run as a child process. Then, through the
 * admin API (cookie session of the default admin): an `oidc` plugin instance signing with a
 * fresh RSA key (RS256, kid in the JWKS). Scopes and clients are created on demand by mintToken.
 *
 * - Audience: glewlwyd's `client_credentials` access token has `aud` = the granted scope list, so
 *   the audience is a scope name (created on first use, and granted to the client).
 * - Subject: `sub` = the client_id (public subject type), so each distinct subject gets its own
 *   confidential client, created on first use. The client authenticates with
 *   `client_secret_post`, which also allows ':' in the client_id (e.g. `system:serviceaccount:ns:sa`).
 * - Tokens: header `{typ: "at+jwt", alg: "RS256", kid}`; claims `iss, aud, client_id, sub, iat,
 *   exp (iat + 3600), nbf, jti, type: "access_token", scope`.
 * Startup (process up, admin login, plugin) takes well under a second on the 2-core machines.
 */
export async function startGlewlwyd(): Promise<ThirdPartyIssuer | { unavailable: string }> {
  const missing = Object.values(GLEWLWYD).filter((path) => !existsSync(path));
  if (missing.length > 0) return { unavailable: `glewlwyd is not installed (apt-get install glewlwyd); missing ${missing.join(', ')}` };

  const dir = await mkdtemp(join(tmpdir(), 'crosscred-glewlwyd-'));
  let child: GlewlwydProcess | undefined;
  try {
    const database = join(dir, 'glewlwyd.sqlite3');
    // One transaction: the script is ~100 statements, each an fsync otherwise (~1 s instead of ~0.1 s).
    await run(GLEWLWYD.sqlite3, [database, 'PRAGMA synchronous=OFF', 'BEGIN', `.read ${GLEWLWYD.initSql}`, 'COMMIT'], { timeout: 30_000 });

    // A port found free may be taken before glewlwyd binds it: try a few.
    let lastError: unknown;
    for (let attempt = 0; attempt < 3 && !child; attempt++) {
      const port = await freePort();
      try {
        child = await spawnGlewlwyd(dir, database, port);
      } catch (err) {
        lastError = err;
      }
    }
    if (!child) throw lastError;
    const started = child;

    const base = `http://127.0.0.1:${started.port}`;
    const issuer = `${base}/api/oidc`;
    const admin = new GlewlwydAdmin(base);
    await admin.call('POST', '/api/mod/plugin/', {
      module: 'oidc',
      name: 'oidc',
      display_name: 'crosscred test issuer',
      enabled: true,
      parameters: {
        iss: issuer,
        'jwks-private': JSON.stringify({ keys: [rsaSigningJwk('crosscred-glewlwyd-1')] }),
        'default-kid': 'crosscred-glewlwyd-1',
        'jwks-show': true,
        'access-token-duration': 3600,
        'refresh-token-duration': 1_209_600,
        'code-duration': 600,
        'allow-non-oidc': true, // client_credentials is not an OIDC flow
        'auth-type-client-enabled': true,
      },
    });

    const scopes = new Set<string>();
    const clients = new Map<string, { secret: string; scopes: string[] }>();
    let setup: Promise<unknown> = Promise.resolve();
    // Serialized: two concurrent mints must not both create the same scope or client.
    const ensure = (subject: string, audience: string) => {
      const next = setup.then(async () => {
        if (!scopes.has(audience)) {
          await admin.call('POST', '/api/scope/', {
            name: audience,
            display_name: audience,
            description: 'audience for crosscred tests',
            password_required: false,
          });
          scopes.add(audience);
        }
        const existing = clients.get(subject);
        if (!existing) {
          const secret = randomBytes(24).toString('base64url');
          await admin.call('POST', '/api/client/', { ...clientBody(subject, [audience]), password: secret });
          clients.set(subject, { secret, scopes: [audience] });
        } else if (!existing.scopes.includes(audience)) {
          existing.scopes.push(audience);
          // A PUT without `password` keeps the client's password.
          await admin.call('PUT', `/api/client/${encodeURIComponent(subject)}`, clientBody(subject, existing.scopes));
        }
        return clients.get(subject)!.secret;
      });
      setup = next.catch(() => undefined);
      return next;
    };

    return {
      name: 'glewlwyd',
      issuer,
      discoveryUrl: `${issuer}/.well-known/openid-configuration`,
      async mintToken(options = {}) {
        const audience = options.audience ?? DEFAULT_AUDIENCE;
        const subject = options.subject ?? DEFAULT_SUBJECT;
        if (/\s/.test(audience) || audience === '') throw new Error(`glewlwyd audiences are scope names: no whitespace (${JSON.stringify(audience)})`);
        const secret = await ensure(subject, audience);
        return postForToken(`${issuer}/token`, { grant_type: 'client_credentials', client_id: subject, client_secret: secret, scope: audience }, () =>
          started.output(),
        );
      },
      async close() {
        await started.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await child?.stop();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

function clientBody(clientId: string, scope: string[]) {
  return {
    client_id: clientId,
    name: clientId,
    description: 'crosscred test client',
    enabled: true,
    confidential: true,
    authorization_type: ['client_credentials'],
    // Without an explicit method, glewlwyd 2.7 refuses the client at the token endpoint (403).
    token_endpoint_auth_method: ['client_secret_post'],
    scope,
    redirect_uri: [],
  };
}

function rsaSigningJwk(kid: string): Record<string, unknown> {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}

interface GlewlwydProcess {
  readonly port: number;
  output(): string;
  stop(): Promise<void>;
}

async function spawnGlewlwyd(dir: string, database: string, port: number): Promise<GlewlwydProcess> {
  const config = join(dir, `glewlwyd-${port}.conf`);
  await writeFile(config, glewlwydConfig(port, database));
  const child = spawn(GLEWLWYD.bin, ['--config-file', config], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-20_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.once('error', (err) => {
      keep(Buffer.from(`spawn error: ${err.message}\n`));
      resolve(null);
    });
  });

  const stop = () => stopChild(child, exited);
  try {
    await waitForHttp(`http://127.0.0.1:${port}/api/auth/scheme/`, exited, 15_000);
  } catch (err) {
    await stop();
    throw new Error(`glewlwyd did not start on 127.0.0.1:${port}: ${(err as Error).message}\n${output}`);
  }
  return { port, output: () => output, stop };
}

function glewlwydConfig(port: number, database: string): string {
  const q = (s: string) => JSON.stringify(s); // libconfig strings use the same escapes
  return `port=${port}
bind_address="127.0.0.1"
external_url=${q(`http://127.0.0.1:${port}`)}
login_url="login.html"
api_prefix="api"
allow_origin="*"
log_mode="console"
log_level="WARNING"
cookie_secure=0
session_expiration=86400
session_key="GLEWLWYD2_SESSION_ID"
admin_session_authentication="cookie"
profile_session_authentication="cookie"
admin_scope="g_admin"
profile_scope="g_profile"
user_module_path=${q(`${GLEWLWYD.moduleRoot}/user`)}
client_module_path=${q(`${GLEWLWYD.moduleRoot}/client`)}
user_auth_scheme_module_path=${q(`${GLEWLWYD.moduleRoot}/scheme`)}
plugin_module_path=${q(`${GLEWLWYD.moduleRoot}/plugin`)}
database =
{
  type = "sqlite3"
  path = ${q(database)}
};
`;
  // use_secure_connection is left out on purpose: when present (even false) glewlwyd 2.7 demands
  // certificate paths and exits.
}

/** The admin API with the default admin's cookie session; logs in again if the session lapses. */
class GlewlwydAdmin {
  #cookie = '';
  constructor(private readonly base: string) {}

  async call(method: string, path: string, body?: unknown): Promise<unknown> {
    if (!this.#cookie) await this.#login();
    let res = await this.#send(method, path, body);
    if (res.status === 401) {
      await this.#login();
      res = await this.#send(method, path, body);
    }
    const text = await res.text();
    if (!res.ok) throw new Error(`glewlwyd admin ${method} ${path} answered ${res.status}: ${text}`);
    return text ? (JSON.parse(text) as unknown) : undefined;
  }

  #send(method: string, path: string, body: unknown) {
    return fetch(`${this.base}${path}`, {
      method,
      headers: { cookie: this.#cookie, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(15_000),
    });
  }

  async #login() {
    const res = await fetch(`${this.base}/api/auth/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(GLEWLWYD_ADMIN),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await res.text();
    const cookie = res.headers
      .getSetCookie()
      .map((c) => c.split(';')[0] ?? '')
      .find((c) => c.startsWith('GLEWLWYD2_SESSION_ID='));
    if (!res.ok || !cookie) throw new Error(`glewlwyd admin login answered ${res.status} without a session cookie: ${text}`);
    this.#cookie = cookie;
  }
}

// ---------------------------------------------------------------------------------------------
// shared helpers
// ---------------------------------------------------------------------------------------------

async function postForToken(url: string, form: Record<string, string>, context?: () => string): Promise<string> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  let token: unknown;
  try {
    token = (JSON.parse(text) as { access_token?: unknown }).access_token;
  } catch {
    token = undefined;
  }
  if (!res.ok || typeof token !== 'string') {
    throw new Error(`token endpoint ${url} answered ${res.status}: ${text}${context ? `\n${context()}` : ''}`);
  }
  return token;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('no port'))));
    });
  });
}

async function waitForHttp(url: string, exited: Promise<number | null>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  void exited.then((code) => {
    exitCode = code;
  });
  for (;;) {
    if (exitCode !== undefined) throw new Error(`exited with code ${exitCode}`);
    try {
      await (await fetch(url, { signal: AbortSignal.timeout(1_000) })).arrayBuffer();
      return; // any HTTP answer means it is listening
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`no answer within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}
