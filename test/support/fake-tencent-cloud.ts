import { execFile } from 'node:child_process';
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http, { Agent, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Stand-ins for the two Tencent Cloud services the tencent-cvm chain touches, as real HTTP servers
 * on 127.0.0.1:
 * - FakeTencentSts: Tencent STS (API 3.0). It verifies TC3-HMAC-SHA256 signatures with any
 *   SignedHeaders, recomputing them from its own table of the temporary keys it issued; it refuses
 *   unknown and expired keys, a token that is not the key's, stale timestamps and bad signatures,
 *   with Tencent's error codes; and it answers GetCallerIdentity for the key's CAM role (or user).
 * - FakeCvmMetadata: the CVM metadata server, `/latest/meta-data/…`, handing out a role key that
 *   the fake STS issued and re-issuing it before it expires, as the real one does.
 *
 * The TC3 verification here is written from Tencent's "Signature v3" page, separately from
 * src/platform/tencent/tc3-signature.ts, and the tests check it against the official SDK's own requests
 * (CommonClient through `stsAgent`), so a signer we wrote is checked by a verifier that a signer we
 * did not write agrees with.
 */

export const METADATA_HOST = 'metadata.tencentyun.com';
/** Tencent refuses a signature more than 5 minutes from its clock. */
const SIGNATURE_WINDOW_SECONDS = 300;
const MAX_BODY_BYTES = 64 * 1024;

export type CamIdentity =
  | { readonly type: 'CAMRole'; readonly uin: string; readonly roleId: string; readonly roleName: string; readonly sessionName: string }
  | { readonly type: 'CAMUser'; readonly uin: string; readonly subUin: string };

export interface IssuedKey {
  readonly secretId: string;
  readonly secretKey: string;
  /** Empty for a permanent (CAMUser) key. */
  readonly token: string;
  /** Unix seconds; Infinity for a permanent key. */
  readonly expiredTime: number;
  readonly identity: CamIdentity;
}

/** One request the fake STS received, and what it answered (`ok` or the error code). */
export interface StsRecord {
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: string;
  readonly outcome: string;
}

/** How the next answer goes wrong, once. */
export type StsFault =
  | { readonly kind: 'error'; readonly code: string; readonly message?: string }
  | { readonly kind: 'status'; readonly status: number; readonly body?: string }
  | { readonly kind: 'redirect'; readonly location: string }
  | { readonly kind: 'huge' }
  /** Answers correctly after `ms` of real time. */
  | { readonly kind: 'delay'; readonly ms: number }
  /** Answers 200 with this Response object instead of the real identity (after verifying the signature). */
  | { readonly kind: 'identity'; readonly response: Record<string, unknown> };

export class FakeTencentSts {
  readonly url: string;
  readonly port: number;
  readonly records: StsRecord[] = [];
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #keys = new Map<string, IssuedKey>();
  readonly #now: () => number;
  #fault: StsFault | undefined;

  /** PEM of the test CA that signed the serving certificate, when started with `tls: true`. */
  readonly caPem: string | undefined;

  private constructor(server: Server, now: () => number, caPem: string | undefined) {
    this.#server = server;
    this.#now = now;
    this.caPem = caPem;
    this.port = (server.address() as AddressInfo).port;
    this.url = `${caPem ? 'https' : 'http'}://127.0.0.1:${this.port}/`;
    server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  /** `now` is the STS's wall clock in ms (default Date.now); give it a FakeClock's to stay in step. */
  /** `tls: true` serves HTTPS with a certificate for 127.0.0.1 from a test CA made here by openssl (see caPem). */
  static async start(options: { now?: () => number; tls?: boolean } = {}): Promise<FakeTencentSts> {
    const tls = options.tls ? await makeServingCertificate() : undefined;
    const server: Server = tls ? createHttpsServer({ key: tls.key, cert: tls.cert }) : createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const sts = new FakeTencentSts(server, options.now ?? Date.now, tls?.ca);
    server.on('request', (req, res) => {
      sts.#inflight += 1;
      void sts.#handle(req, res).finally(() => {
        sts.#inflight -= 1;
        if (sts.#inflight === 0) for (const wake of sts.#idleWaiters.splice(0)) wake();
      });
    });
    return sts;
  }

  /** A CAM role's temporary key, as the CVM metadata server would hand it out. */
  issueRoleKey(role: { uin: string; roleId: string; roleName: string; sessionName?: string }, ttlSeconds = 7200): IssuedKey {
    return this.#issue(
      { type: 'CAMRole', uin: role.uin, roleId: role.roleId, roleName: role.roleName, sessionName: role.sessionName ?? 'ins-fake0001' },
      randomBytes(96).toString('base64url'),
      Math.floor(this.#now() / 1000) + ttlSeconds,
    );
  }

  /** A sub-user's permanent key (no token): a CAMUser, which the issuer must refuse. */
  issueUserKey(user: { uin: string; subUin: string }): IssuedKey {
    return this.#issue({ type: 'CAMUser', uin: user.uin, subUin: user.subUin }, '', Infinity);
  }

  revoke(secretId: string): void {
    this.#keys.delete(secretId);
  }

  /** The next request is answered this way (after the signature check, except for 'status', 'redirect' and 'huge'). */
  failNext(fault: StsFault): void {
    this.#fault = fault;
  }

  /** Requests that were verified and answered with an identity. */
  get accepted(): StsRecord[] {
    return this.records.filter((r) => r.outcome === 'ok');
  }

  /** Requests being handled now; a delayed one is recorded only when its delay ends. */
  #inflight = 0;
  readonly #idleWaiters: Array<() => void> = [];

  /**
   * Resolves once no request is being handled. A test whose client gave up on a delayed answer
   * waits for it, so the late record lands in its own window and not in the next test's.
   */
  idle(): Promise<void> {
    return this.#inflight === 0 ? Promise.resolve() : new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #issue(identity: CamIdentity, token: string, expiredTime: number): IssuedKey {
    const key: IssuedKey = {
      secretId: `AKID${randomBytes(16).toString('hex')}`,
      secretKey: randomBytes(24).toString('base64url'),
      token,
      expiredTime,
      identity,
    };
    this.#keys.set(key.secretId, key);
    return key;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > MAX_BODY_BYTES) {
        res.writeHead(413).end();
        return;
      }
      chunks.push(chunk as Buffer);
    }
    const body = Buffer.concat(chunks);
    const fault = this.#fault;
    this.#fault = undefined;
    const record = (outcome: string) => this.records.push({ headers: { ...req.headers }, body: body.toString('utf8'), outcome });
    const requestId = `${randomBytes(4).toString('hex')}-fake-${randomBytes(6).toString('hex')}`;
    const answer = (response: Record<string, unknown>) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ Response: { ...response, RequestId: requestId } }));
    };
    const refuse = (code: string, message: string) => {
      record(code);
      answer({ Error: { Code: code, Message: message } });
    };

    if (fault?.kind === 'status') {
      record(`http-${fault.status}`);
      res.writeHead(fault.status, { 'content-type': 'text/plain' }).end(fault.body ?? 'fault');
      return;
    }
    if (fault?.kind === 'redirect') {
      record('redirect');
      res.writeHead(302, { location: fault.location }).end();
      return;
    }
    if (fault?.kind === 'huge') {
      record('huge');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`{"Response":{"Pad":"${'x'.repeat(1024 * 1024)}"}}`);
      return;
    }
    if (req.method !== 'POST' || req.url !== '/') return refuse('InvalidParameter', 'only POST / is served here');

    const verdict = this.#verify(req, body);
    if (verdict.error) return refuse(verdict.error[0], verdict.error[1]);
    const key = verdict.key;
    if (fault?.kind === 'delay') await new Promise((r) => setTimeout(r, fault.ms));
    if (fault?.kind === 'error') return refuse(fault.code, fault.message ?? 'fault injected');
    if (fault?.kind === 'identity') {
      record('ok');
      return answer(fault.response);
    }
    record('ok');
    const id = key.identity;
    if (id.type === 'CAMRole') {
      answer({
        Arn: `qcs::sts:${id.uin}:assumed-role/${id.roleId}`,
        AccountId: id.uin,
        UserId: `${id.roleId}:${id.sessionName}`,
        PrincipalId: id.uin,
        Type: 'CAMRole',
      });
    } else {
      answer({ Arn: `qcs::cam::uin/${id.uin}:uin/${id.subUin}`, AccountId: id.uin, UserId: id.subUin, PrincipalId: id.subUin, Type: 'CAMUser' });
    }
  }

  /** Tencent API 3.0 request checks, in roughly the order Tencent reports them. */
  #verify(req: IncomingMessage, body: Buffer): { key: IssuedKey; error?: undefined } | { key?: undefined; error: [string, string] } {
    const header = (name: string): string | undefined => {
      const v = req.headers[name];
      return Array.isArray(v) ? v.join(', ') : v;
    };
    const fail = (code: string, message: string) => ({ error: [code, message] as [string, string] });

    const authorization = header('authorization') ?? '';
    const m =
      /^TC3-HMAC-SHA256 Credential=([^/\s,]+)\/(\d{4}-\d{2}-\d{2})\/([a-z0-9-]+)\/tc3_request, ?SignedHeaders=([^,\s]+), ?Signature=([0-9a-f]{64})$/.exec(
        authorization,
      );
    if (!m) return fail('AuthFailure.InvalidAuthorization', 'Authorization is not TC3-HMAC-SHA256');
    const [, secretId, date, service, signedList, signature] = m as unknown as [string, string, string, string, string, string];
    const signedNames = signedList.split(';');
    if (!signedNames.includes('content-type') || !signedNames.includes('host'))
      return fail('AuthFailure.InvalidAuthorization', 'content-type and host must be signed');

    const timestampText = header('x-tc-timestamp') ?? '';
    if (!/^\d+$/.test(timestampText)) return fail('MissingParameter', 'X-TC-Timestamp is missing');
    const timestamp = Number(timestampText);
    if (Math.abs(this.#now() / 1000 - timestamp) > SIGNATURE_WINDOW_SECONDS)
      return fail('AuthFailure.SignatureExpire', 'signature expired: the timestamp is more than 5 minutes from server time');
    if (new Date(timestamp * 1000).toISOString().slice(0, 10) !== date)
      return fail('AuthFailure.SignatureFailure', "the credential date is not the timestamp's date");
    if (service !== 'sts') return fail('AuthFailure.SignatureFailure', 'the credential scope is not for sts');

    const key = this.#keys.get(secretId);
    if (!key) return fail('AuthFailure.SecretIdNotFound', `SecretId ${secretId} not found`);
    if (key.expiredTime * 1000 <= this.#now()) return fail('AuthFailure.TokenFailure', 'the temporary key has expired');
    if ((header('x-tc-token') ?? '') !== key.token) return fail('AuthFailure.TokenFailure', 'X-TC-Token does not belong to the SecretId');

    // The canonical request, from the headers as received (key and value lower-cased and trimmed).
    let canonicalHeaders = '';
    for (const name of signedNames) {
      const value = header(name);
      if (value === undefined) return fail('AuthFailure.SignatureFailure', `signed header ${name} is missing`);
      canonicalHeaders += `${name}:${value.trim().toLowerCase()}\n`;
    }
    const [path, query = ''] = (req.url ?? '/').split('?', 2) as [string, string?];
    const canonicalRequest = `${req.method}\n${path}\n${query}\n${canonicalHeaders}\n${signedList}\n${sha256(body)}`;
    const stringToSign = `TC3-HMAC-SHA256\n${timestampText}\n${date}/${service}/tc3_request\n${sha256(Buffer.from(canonicalRequest))}`;
    let k = hmac(Buffer.from(`TC3${key.secretKey}`), date);
    k = hmac(k, service);
    k = hmac(k, 'tc3_request');
    const expected = hmac(k, stringToSign);
    if (!timingSafeEqual(expected, Buffer.from(signature, 'hex')))
      return fail('AuthFailure.SignatureFailure', 'the request signature we calculated does not match the signature you provided');

    if (header('x-tc-action') !== 'GetCallerIdentity') return fail('InvalidAction', 'only GetCallerIdentity is served here');
    if (header('x-tc-version') !== '2018-08-13') return fail('NoSuchVersion', 'the version is not 2018-08-13');
    let params: unknown;
    try {
      params = JSON.parse(body.toString('utf8'));
    } catch {
      return fail('InvalidParameter', 'the body is not JSON');
    }
    if (params === null || typeof params !== 'object' || Object.keys(params).length > 0)
      return fail('UnknownParameter', 'GetCallerIdentity takes no parameters');
    return { key };
  }
}

/** What the fake metadata server serves; change fields between requests to simulate events. */
export interface MetadataState {
  /** The bound role's name, or undefined when no role is bound (404, as on a CVM without one). */
  roleName: string | undefined;
  instanceId: string;
  region: string;
  zone: string;
  /** Code of the credentials answer; anything but Success makes the SDK refuse it. */
  code: string;
}

export class FakeCvmMetadata {
  readonly url: string;
  readonly port: number;
  /** Paths requested, in order. */
  readonly paths: string[] = [];
  readonly state: MetadataState;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #sts: FakeTencentSts;
  readonly #role: { uin: string; roleId: string };
  readonly #now: () => number;
  #current: IssuedKey | undefined;

  private constructor(server: Server, sts: FakeTencentSts, role: { uin: string; roleId: string }, state: MetadataState, now: () => number) {
    this.#server = server;
    this.#sts = sts;
    this.#role = role;
    this.state = state;
    this.#now = now;
    this.port = (server.address() as AddressInfo).port;
    this.url = `http://127.0.0.1:${this.port}`;
    server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  static async start(options: {
    sts: FakeTencentSts;
    uin: string;
    roleId: string;
    roleName: string;
    instanceId?: string;
    region?: string;
    now?: () => number;
  }): Promise<FakeCvmMetadata> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const state: MetadataState = {
      roleName: options.roleName,
      instanceId: options.instanceId ?? 'ins-fake0001',
      region: options.region ?? 'ap-guangzhou',
      zone: 'ap-guangzhou-3',
      code: 'Success',
    };
    const metadata = new FakeCvmMetadata(server, options.sts, { uin: options.uin, roleId: options.roleId }, state, options.now ?? Date.now);
    server.on('request', (req, res) => metadata.#handle(req, res));
    return metadata;
  }

  /** The key currently handed out (issuing one if none is), for tests that sign by hand. */
  currentKey(): IssuedKey {
    const roleName = this.state.roleName ?? 'unbound';
    // Renewed well before expiry, like the real service (which hands out keys valid for hours).
    if (!this.#current || this.#current.expiredTime * 1000 - this.#now() < 30 * 60_000) {
      this.#current = this.#sts.issueRoleKey({ ...this.#role, roleName, sessionName: this.state.instanceId });
    }
    return this.#current;
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const path = req.url ?? '/';
    this.paths.push(path);
    const text = (status: number, body: string) => res.writeHead(status, { 'content-type': 'text/plain' }).end(body);
    if (req.method !== 'GET') return void text(405, 'method not allowed');
    const base = '/latest/meta-data/';
    const credentialsPath = `${base}cam/security-credentials/`;
    if (path === `${base}instance-id`) return void text(200, this.state.instanceId);
    if (path === `${base}placement/region`) return void text(200, this.state.region);
    if (path === `${base}placement/zone`) return void text(200, this.state.zone);
    if (path === credentialsPath) return void (this.state.roleName ? text(200, this.state.roleName) : text(404, 'Not Found'));
    if (path.startsWith(credentialsPath)) {
      const name = decodeURIComponent(path.slice(credentialsPath.length));
      if (!this.state.roleName || name !== this.state.roleName) return void text(404, 'Not Found');
      const key = this.currentKey();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          TmpSecretId: key.secretId,
          TmpSecretKey: key.secretKey,
          Token: key.token,
          ExpiredTime: key.expiredTime,
          Expiration: new Date(key.expiredTime * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
          Code: this.state.code,
        }),
      );
      return;
    }
    text(404, 'Not Found');
  }
}

/**
 * An http.Agent that dials `target` (a loopback port) for every connection, whatever the URL's
 * host: how the SDK's CommonClient reaches the fake STS while it still signs for
 * `sts.tencentcloudapi.com` (it takes the service name from the endpoint's first label).
 */
export function agentTo(port: number): Agent {
  const agent = new Agent({ keepAlive: false });
  agent.createConnection = () => connect({ host: '127.0.0.1', port });
  return agent;
}

/**
 * Routes connections for `metadata.tencentyun.com` (the host the SDK's CvmRoleCredential has
 * hard-coded, resolved by DNS) to the fake metadata server, by replacing http.globalAgent, which
 * the SDK's node-fetch uses; other hosts connect as usual. Returns the function that undoes it.
 */
export async function routeMetadataHostTo(metadata: FakeCvmMetadata): Promise<() => void> {
  const previous = http.globalAgent;
  const agent = new Agent({ keepAlive: false });
  const original = agent.createConnection.bind(agent);
  agent.createConnection = (options, callback) => {
    if ((options as { host?: string }).host === METADATA_HOST) return connect({ host: '127.0.0.1', port: metadata.port });
    return original(options, callback);
  };
  http.globalAgent = agent;
  return () => {
    http.globalAgent = previous;
    agent.destroy();
  };
}

/** A throwaway CA and a P-256 serving certificate for IP 127.0.0.1 signed by it. */
async function makeServingCertificate(): Promise<{ ca: string; key: string; cert: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'crosscred-fake-tencent-'));
  try {
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    await run('openssl', ['req', '-x509', ...ec, '-days', '1', '-subj', '/CN=fake-tencent-ca', '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.crt')]);
    await run('openssl', ['req', '-new', ...ec, '-subj', '/CN=fake-tencent-sts', '-keyout', join(dir, 'server.key'), '-out', join(dir, 'server.csr')]);
    await writeFile(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
    await run('openssl', [
      'x509',
      '-req',
      '-in',
      join(dir, 'server.csr'),
      '-CA',
      join(dir, 'ca.crt'),
      '-CAkey',
      join(dir, 'ca.key'),
      '-set_serial',
      '1',
      '-days',
      '1',
      '-extfile',
      join(dir, 'server.ext'),
      '-out',
      join(dir, 'server.crt'),
    ]);
    const [ca, key, cert] = await Promise.all(['ca.crt', 'server.key', 'server.crt'].map((f) => readFile(join(dir, f), 'utf8')));
    return { ca: ca!, key: key!, cert: cert! };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function hmac(key: Buffer, message: string): Buffer {
  return createHmac('sha256', key).update(message, 'utf8').digest();
}
