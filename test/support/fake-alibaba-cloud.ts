import { execFile } from 'node:child_process';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * Stand-ins for the two Alibaba Cloud services the alibaba-ecs chain touches, as real HTTP servers
 * on 127.0.0.1 (or any address, e.g. 100.100.100.200:80 inside a network namespace):
 * - FakeEcsMetadata: the ECS metadata server with its hardened (token) mode, the instance identity
 *   document, its PKCS#7 signed by `openssl cms` with a test CA made by `makeSigningCa` (detached
 *   over the document with the audience appended, as Alibaba documents it; attached optionally),
 *   and the instance's RAM-role credentials, issued by a FakeAlibabaSts.
 * - FakeAlibabaSts: Alibaba STS. It verifies ACS3-HMAC-SHA256 signatures with the official
 *   `OpenApiUtil.getAuthorization` of @alicloud/openapi-core (a signer we did not write) against
 *   its own table of the keys it issued; it refuses unknown and expired keys, a token that is not
 *   the key's, stale dates, reused nonces and bad signatures with Alibaba's error codes, and
 *   answers GetCallerIdentity for the key's assumed role (`vm-ram-<instance-id>` session) or user.
 *
 * Nothing here imports crosscred's code: the fakes are written from Alibaba's documentation
 * (docs/research/vm-attestation.md §1, §3), so crosscred is checked against them, not against itself.
 */

const run = promisify(execFile);
/** The official signer (CommonJS; required as such, see src/platform/alibaba/ram-request-signer.ts). */
const { OpenApiUtil } = createRequire(import.meta.url)('@alicloud/openapi-core') as typeof import('@alicloud/openapi-core');
const MAX_BODY_BYTES = 64 * 1024;
/** Alibaba's gateway refuses an x-acs-date this far from its clock (s); the v1 Timestamp window is 15 min. */
const DATE_WINDOW_SECONDS = 15 * 60;
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

// ---------------------------------------------------------------------------------------------
// Test CA and signing with openssl

export interface SigningCa {
  readonly dir: string;
  /** The CA certificate (PEM). */
  readonly caPem: string;
  /** The certificate that signs identity documents (PEM): what an issuer pins, as Alibaba publishes its own. */
  readonly signerCertPem: string;
  readonly signerCertPath: string;
  readonly signerKeyPath: string;
  readonly caPath: string;
  close(): Promise<void>;
}

/** A CA and a signing certificate issued by it, made with openssl (research §5 recipe). */
export async function makeSigningCa(name: string, keyType: 'rsa' | 'ec' = 'rsa'): Promise<SigningCa> {
  const dir = await mkdtemp(join(tmpdir(), `crosscred-alibaba-ca-${name}-`));
  const p = (file: string) => join(dir, file);
  const newkey = keyType === 'rsa' ? 'rsa:2048' : 'ec';
  const ecParams = keyType === 'ec' ? ['-pkeyopt', 'ec_paramgen_curve:P-256'] : [];
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    newkey,
    ...ecParams,
    '-nodes',
    '-keyout',
    p('ca.key'),
    '-out',
    p('ca.pem'),
    '-subj',
    `/CN=${name} test CA`,
    '-days',
    '2',
  ]);
  await run('openssl', [
    'req',
    '-newkey',
    newkey,
    ...ecParams,
    '-nodes',
    '-keyout',
    p('signer.key'),
    '-out',
    p('signer.csr'),
    '-subj',
    `/CN=${name} ECS identity signer`,
  ]);
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    p('signer.csr'),
    '-CA',
    p('ca.pem'),
    '-CAkey',
    p('ca.key'),
    '-CAcreateserial',
    '-out',
    p('signer.pem'),
    '-days',
    '1',
  ]);
  return {
    dir,
    caPem: await readFile(p('ca.pem'), 'utf8'),
    signerCertPem: await readFile(p('signer.pem'), 'utf8'),
    signerCertPath: p('signer.pem'),
    signerKeyPath: p('signer.key'),
    caPath: p('ca.pem'),
    close: () => rm(dir, { recursive: true, force: true }),
  };
}

export interface CmsSignOptions {
  /** Detached (default, Alibaba's documented layout) or the content inside the message. */
  readonly layout?: 'detached' | 'attached';
  /** Put the signer certificate into the message (verifiers must not trust it). Default: no certificates. */
  readonly embedCertificate?: boolean;
  readonly digest?: 'sha256' | 'sha1' | 'sha512';
}

let signSeq = 0;

/** `openssl cms -sign` over exactly `content` (-binary: no S/MIME canonicalisation); the DER. */
export async function cmsSign(ca: SigningCa, content: Buffer, options: CmsSignOptions = {}): Promise<Buffer> {
  const n = signSeq++;
  const input = join(ca.dir, `content-${n}`);
  const output = join(ca.dir, `sig-${n}.der`);
  await writeFile(input, content);
  const args = [
    'cms',
    '-sign',
    '-binary',
    '-in',
    input,
    '-signer',
    ca.signerCertPath,
    '-inkey',
    ca.signerKeyPath,
    '-md',
    options.digest ?? 'sha256',
    '-outform',
    'DER',
    '-out',
    output,
  ];
  if (!options.embedCertificate) args.push('-nocerts');
  if (options.layout === 'attached') args.push('-nodetach');
  await run('openssl', args);
  const der = await readFile(output);
  await Promise.all([rm(input), rm(output)]);
  return der;
}

/** `openssl cms -verify` as an oracle: does `der` verify over `content` (detached) with the signer certificate, chained to the CA? */
export async function cmsVerify(ca: SigningCa, der: Buffer, content?: Buffer): Promise<boolean> {
  const n = signSeq++;
  const sig = join(ca.dir, `verify-${n}.der`);
  const data = join(ca.dir, `verify-${n}.data`);
  await writeFile(sig, der);
  if (content) await writeFile(data, content);
  try {
    await run('openssl', [
      'cms',
      '-verify',
      '-binary',
      '-inform',
      'DER',
      '-in',
      sig,
      ...(content ? ['-content', data] : []),
      '-certfile',
      ca.signerCertPath,
      '-CAfile',
      ca.caPath,
      '-purpose',
      'any',
      '-out',
      '/dev/null',
    ]);
    return true;
  } catch {
    return false;
  } finally {
    await Promise.all([rm(sig, { force: true }), rm(data, { force: true })]);
  }
}

/** Base64 of `der` in 64-character lines, as the metadata server serves it (no PEM armour). */
export function base64Lines(der: Buffer): string {
  return `${der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .trimEnd()}\n`;
}

// ---------------------------------------------------------------------------------------------
// Fake Alibaba STS

export type AlibabaIdentity =
  | { readonly type: 'AssumedRoleUser'; readonly accountId: string; readonly roleName: string; readonly roleId: string; readonly sessionName: string }
  | { readonly type: 'RAMUser'; readonly accountId: string; readonly userId: string; readonly userName: string };

export interface IssuedAlibabaKey {
  readonly accessKeyId: string;
  readonly accessKeySecret: string;
  /** Empty for a permanent (RAMUser) key. */
  readonly securityToken: string;
  /** Epoch ms; Infinity for a permanent key. */
  readonly expiresAt: number;
  readonly identity: AlibabaIdentity;
}

export interface AlibabaStsRecord {
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: string;
  /** `ok`, or the error code answered. */
  readonly outcome: string;
}

/** How the next answer goes wrong, once. */
export type AlibabaStsFault =
  | { readonly kind: 'status'; readonly status: number; readonly code?: string }
  | { readonly kind: 'redirect'; readonly location: string }
  | { readonly kind: 'huge' }
  /** Answers correctly after `ms` of real time. */
  | { readonly kind: 'delay'; readonly ms: number }
  /** Answers 200 with this body instead of the key's identity (after verifying the signature). */
  | { readonly kind: 'identity'; readonly body: Record<string, unknown> };

export class FakeAlibabaSts {
  readonly url: string;
  /** The `host[:port]` this server answers as (what a signed host header must say to reach it). */
  readonly host: string;
  readonly records: AlibabaStsRecord[] = [];
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #keys = new Map<string, IssuedAlibabaKey>();
  /** Nonce → epoch ms it was used, for SignatureNonceUsed. */
  readonly #nonces = new Map<string, number>();
  readonly #now: () => number;
  #faults: AlibabaStsFault[] = [];

  private constructor(server: Server, now: () => number) {
    this.#server = server;
    this.#now = now;
    const { port } = server.address() as AddressInfo;
    this.host = `127.0.0.1:${port}`;
    this.url = `http://${this.host}/`;
    server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  static async start(options: { readonly now?: () => number } = {}): Promise<FakeAlibabaSts> {
    let sts: FakeAlibabaSts | undefined;
    const server = createServer((req, res) => {
      sts!.#inflight += 1;
      void sts!.#handle(req, res).finally(() => {
        sts!.#inflight -= 1;
        if (sts!.#inflight === 0) for (const wake of sts!.#idleWaiters.splice(0)) wake();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    sts = new FakeAlibabaSts(server, options.now ?? Date.now);
    return sts;
  }

  /** Issues temporary credentials for an instance's RAM role (session `vm-ram-<instance-id>`, as ECS names it). */
  issueRoleKey(identity: { accountId: string; roleName: string; instanceId?: string; sessionName?: string }, ttlSeconds = 3600): IssuedAlibabaKey {
    const sessionName = identity.sessionName ?? `vm-ram-${identity.instanceId ?? 'i-unknown'}`;
    return this.#store({
      accessKeyId: `STS.${randomBytes(12).toString('hex')}`,
      accessKeySecret: randomBytes(24).toString('base64'),
      securityToken: `CAIS${randomBytes(96).toString('base64')}`,
      expiresAt: this.#now() + ttlSeconds * 1000,
      identity: {
        type: 'AssumedRoleUser',
        accountId: identity.accountId,
        roleName: identity.roleName,
        roleId: `3${randomBytes(8).readBigUInt64BE() % 10n ** 17n}`,
        sessionName,
      },
    });
  }

  /** Issues a permanent key of a RAM user (not a role: the issuer must refuse what it signs). */
  issueUserKey(accountId: string, userName: string): IssuedAlibabaKey {
    return this.#store({
      accessKeyId: `LTAI${randomBytes(10).toString('hex')}`,
      accessKeySecret: randomBytes(24).toString('base64'),
      securityToken: '',
      expiresAt: Number.POSITIVE_INFINITY,
      identity: { type: 'RAMUser', accountId, userId: `2${randomBytes(8).readBigUInt64BE() % 10n ** 17n}`, userName },
    });
  }

  /** Makes a key unknown to STS, as if revoked. */
  revoke(accessKeyId: string): void {
    this.#keys.delete(accessKeyId);
  }

  /** The next answers go wrong in these ways, one each. */
  fault(...faults: AlibabaStsFault[]): void {
    this.#faults.push(...faults);
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

  #store(key: IssuedAlibabaKey): IssuedAlibabaKey {
    this.#keys.set(key.accessKeyId, key);
    return key;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req);
    const headers = req.headers;
    const record = (outcome: string) => this.records.push({ headers: { ...headers }, body: body ?? '', outcome });
    const fault = this.#faults.shift();
    if (fault?.kind === 'delay') await new Promise((resolve) => setTimeout(resolve, fault.ms));
    if (fault?.kind === 'status') {
      record(fault.code ?? `HTTP ${fault.status}`);
      return sendJson(res, fault.status, { RequestId: requestId(), Code: fault.code ?? 'InternalError', Message: 'injected fault' });
    }
    if (fault?.kind === 'redirect') {
      record('redirect');
      res.writeHead(302, { location: fault.location }).end();
      return;
    }
    if (fault?.kind === 'huge') {
      record('huge');
      return sendJson(res, 200, { RequestId: requestId(), Padding: 'x'.repeat(1024 * 1024) });
    }
    const refuse = (status: number, code: string, message: string) => {
      record(code);
      sendJson(res, status, {
        RequestId: requestId(),
        HostId: 'sts.aliyuncs.com',
        Code: code,
        Message: message,
        Recommend: 'https://api.aliyun.com/troubleshoot',
      });
    };
    if (body === undefined) return refuse(400, 'InvalidParameter', 'body too large');
    if (req.method !== 'POST' || (req.url ?? '') !== '/') return refuse(404, 'InvalidAction.NotFound', 'Specified api is not found');
    const header = (name: string) => (typeof headers[name] === 'string' ? (headers[name] as string) : undefined);
    if (header('x-acs-action') !== 'GetCallerIdentity' || header('x-acs-version') !== '2015-04-01')
      return refuse(404, 'InvalidAction.NotFound', 'Specified api is not found, please check your url and method.');
    const authorization = /^ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]{64})$/.exec(header('authorization') ?? '');
    if (!authorization) return refuse(400, 'IncompleteSignature', 'The request signature does not conform to Aliyun standards.');
    const key = this.#keys.get(authorization[1]!);
    if (!key) return refuse(404, 'InvalidAccessKeyId.NotFound', 'Specified access key is not found.');
    if (key.securityToken !== '' && header('x-acs-security-token') !== key.securityToken)
      return refuse(400, 'InvalidSecurityToken.Mismatch', 'Specified SecurityToken mismatch with the AccessKey.');
    if (key.expiresAt <= this.#now()) return refuse(400, 'InvalidSecurityToken.Expired', 'Specified SecurityToken is expired.');
    const date = Date.parse(header('x-acs-date') ?? '');
    if (!Number.isFinite(date) || Math.abs(date - this.#now()) > DATE_WINDOW_SECONDS * 1000)
      return refuse(400, 'InvalidTimeStamp.Expired', 'Specified time stamp or date value is expired.');
    const contentSha256 = header('x-acs-content-sha256') ?? '';
    if (contentSha256 !== EMPTY_SHA256 || (body ?? '') !== '') return refuse(400, 'SignatureDoesNotMatch', 'body hash mismatch');
    // The official signer, over the headers as received (it covers every x-acs-* header, host and content-type).
    const signedView: Record<string, string> = {};
    for (const [name, value] of Object.entries(headers)) if (typeof value === 'string') signedView[name] = value;
    const expected = OpenApiUtil.getAuthorization(
      { method: 'POST', pathname: '/', query: {}, headers: signedView } as never,
      'ACS3-HMAC-SHA256',
      contentSha256,
      key.accessKeyId,
      key.accessKeySecret,
    );
    const expectedMatch = /SignedHeaders=([^,]+),Signature=([0-9a-f]{64})$/.exec(expected)!;
    const given = Buffer.from(authorization[3]!, 'hex');
    if (expectedMatch[1] !== authorization[2] || !timingSafeEqual(given, Buffer.from(expectedMatch[2]!, 'hex'))) {
      return refuse(400, 'SignatureDoesNotMatch', 'Specified signature is not matched with our calculation.');
    }
    const nonce = header('x-acs-signature-nonce') ?? '';
    for (const [seen, at] of this.#nonces) if (at < this.#now() - 2 * DATE_WINDOW_SECONDS * 1000) this.#nonces.delete(seen);
    if (nonce === '' || this.#nonces.has(nonce)) return refuse(400, 'SignatureNonceUsed', 'Specified signature nonce was used already.');
    this.#nonces.set(nonce, this.#now());
    if (fault?.kind === 'identity') {
      record('ok');
      return sendJson(res, 200, fault.body);
    }
    record('ok');
    const identity = key.identity;
    if (identity.type === 'AssumedRoleUser') {
      return sendJson(res, 200, {
        RequestId: requestId(),
        AccountId: identity.accountId,
        Arn: `acs:ram::${identity.accountId}:assumed-role/${identity.roleName}/${identity.sessionName}`,
        IdentityType: 'AssumedRoleUser',
        PrincipalId: `${identity.roleId}:${identity.sessionName}`,
        RoleId: identity.roleId,
      });
    }
    return sendJson(res, 200, {
      RequestId: requestId(),
      AccountId: identity.accountId,
      Arn: `acs:ram::${identity.accountId}:user/${identity.userName}`,
      IdentityType: 'RAMUser',
      PrincipalId: identity.userId,
      UserId: identity.userId,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Fake ECS metadata server

export interface EcsInstance {
  readonly accountId: string;
  readonly regionId: string;
  readonly zoneId: string;
  readonly instanceId: string;
  readonly instanceType: string;
  readonly imageId: string;
  readonly privateIpv4: string;
  readonly mac: string;
  readonly serialNumber: string;
  /** The attached RAM role, if any. */
  readonly roleName?: string;
}

export interface FakeEcsMetadataOptions {
  readonly instance: EcsInstance;
  /** Signs the instance identity (can be swapped later with `signer`). */
  readonly signer: SigningCa;
  /** Issues the RAM role's credentials; without it the role path answers 404. */
  readonly sts?: FakeAlibabaSts;
  /** Refuse token-less reads (ModifyInstanceMetadataOptions HttpTokens=required). Default false. */
  readonly requireToken?: boolean;
  readonly signOptions?: CmsSignOptions;
  /** Where to listen; default 127.0.0.1 on a free port. */
  readonly host?: string;
  readonly port?: number;
}

export interface MetadataRecord {
  readonly method: string;
  readonly path: string;
  /** The query string (the audience), if any. */
  readonly query: string;
  readonly token: 'none' | 'valid' | 'invalid';
}

export class FakeEcsMetadata {
  readonly url: string;
  readonly records: MetadataRecord[] = [];
  signer: SigningCa;
  signOptions: CmsSignOptions;
  requireToken: boolean;
  readonly #instance: EcsInstance;
  readonly #sts: FakeAlibabaSts | undefined;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  /** Session token → expiry (epoch ms). */
  readonly #tokens = new Map<string, number>();
  #roleKey: IssuedAlibabaKey | undefined;

  private constructor(server: Server, options: FakeEcsMetadataOptions) {
    this.#server = server;
    this.#instance = options.instance;
    this.#sts = options.sts;
    this.signer = options.signer;
    this.signOptions = options.signOptions ?? {};
    this.requireToken = options.requireToken ?? false;
    const { address, port } = server.address() as AddressInfo;
    this.url = `http://${address}${port === 80 ? '' : `:${port}`}`;
    server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  static async start(options: FakeEcsMetadataOptions): Promise<FakeEcsMetadata> {
    let fake: FakeEcsMetadata | undefined;
    const server = createServer((req, res) => void fake!.#handle(req, res));
    await new Promise<void>((resolve) => server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve));
    fake = new FakeEcsMetadata(server, options);
    return fake;
  }

  /** The identity document, compact, in the field order a real instance uses. */
  get document(): string {
    const i = this.#instance;
    return JSON.stringify({
      'zone-id': i.zoneId,
      'serial-number': i.serialNumber,
      'instance-id': i.instanceId,
      'region-id': i.regionId,
      'private-ipv4': i.privateIpv4,
      'owner-account-id': i.accountId,
      mac: i.mac,
      'image-id': i.imageId,
      'instance-type': i.instanceType,
    });
  }

  /** The role credentials most recently handed out (the test owns them, as the instance would). */
  get roleKey(): IssuedAlibabaKey | undefined {
    return this.#roleKey;
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    await readBody(req);
    const url = new URL(req.url ?? '/', 'http://metadata');
    const path = url.pathname;
    const given = req.headers['x-aliyun-ecs-metadata-token'];
    const tokenState = given === undefined ? 'none' : typeof given === 'string' && (this.#tokens.get(given) ?? 0) > Date.now() ? 'valid' : 'invalid';
    this.records.push({ method: req.method ?? '', path, query: url.search, token: tokenState });
    const text = (status: number, body: string) => {
      res.writeHead(status, { 'content-type': 'text/plain' }).end(body);
    };

    if (path === '/latest/api/token') {
      if (req.method !== 'PUT') return text(405, 'Method Not Allowed');
      if (req.headers['x-forwarded-for'] !== undefined) return text(403, 'Forbidden');
      const ttl = Number(req.headers['x-aliyun-ecs-metadata-token-ttl-seconds']);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21600) return text(400, 'Bad Request');
      const token = randomBytes(32).toString('base64url');
      this.#tokens.set(token, Date.now() + ttl * 1000);
      res.writeHead(200, { 'content-type': 'text/plain', 'x-aliyun-ecs-metadata-token-ttl-seconds': String(ttl) }).end(token);
      return;
    }
    if (req.method !== 'GET') return text(405, 'Method Not Allowed');
    if (tokenState === 'invalid' || (tokenState === 'none' && this.requireToken)) return text(401, 'Unauthorized');

    const i = this.#instance;
    switch (path) {
      case '/latest/dynamic/instance-identity/document':
        return text(200, this.document);
      case '/latest/dynamic/instance-identity/pkcs7': {
        const audience = url.searchParams.get('audience');
        const document = this.document;
        // Alibaba: with an audience, the signed text is the document with ,"audience":"<value>" appended inside it.
        const content = audience === null ? document : `${document.slice(0, -1)},"audience":${JSON.stringify(audience)}}`;
        const der = await cmsSign(this.signer, Buffer.from(content, 'utf8'), this.signOptions);
        return text(200, base64Lines(der));
      }
      case '/latest/meta-data/instance-id':
        return text(200, i.instanceId);
      case '/latest/meta-data/region-id':
        return text(200, i.regionId);
      case '/latest/meta-data/owner-account-id':
        return text(200, i.accountId);
      case '/latest/meta-data/ram/security-credentials/':
        return i.roleName ? text(200, `${i.roleName}\n`) : text(404, 'Not Found');
    }
    const role = /^\/latest\/meta-data\/ram\/security-credentials\/([^/]+)$/.exec(path)?.[1];
    if (role !== undefined && role === i.roleName && this.#sts) {
      // Re-issued within an hour of expiry, as the real server rotates them.
      if (!this.#roleKey || this.#roleKey.expiresAt - Date.now() < 3600_000) {
        this.#roleKey = this.#sts.issueRoleKey({ accountId: i.accountId, roleName: i.roleName!, instanceId: i.instanceId }, 6 * 3600);
      }
      const key = this.#roleKey;
      return text(
        200,
        JSON.stringify({
          AccessKeyId: key.accessKeyId,
          AccessKeySecret: key.accessKeySecret,
          Expiration: new Date(key.expiresAt).toISOString().replace(/\.\d{3}Z$/, 'Z'),
          SecurityToken: key.securityToken,
          LastUpdated: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
          Code: 'Success',
        }),
      );
    }
    return text(404, 'Not Found');
  }
}

/** A plausible instance (ids in Alibaba's formats). */
export function sampleInstance(overrides: Partial<EcsInstance> = {}): EcsInstance {
  return {
    accountId: '1335926999564873',
    regionId: 'cn-zhangjiakou',
    zoneId: 'cn-zhangjiakou-a',
    instanceId: 'i-8vb8p62ryuejka7tcz4p',
    instanceType: 'ecs.s6-c1m1.small',
    imageId: 'centos_7_8_x64_20G_alibase_20200914.vhd',
    privateIpv4: '192.168.1.215',
    mac: '00:16:3e:13:9a:81',
    serialNumber: '8e794d59-a809-453b-8f5a-9d0a0b29660a',
    roleName: 'app-role',
    ...overrides,
  };
}

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size <= MAX_BODY_BYTES) chunks.push(chunk as Buffer);
  }
  return size > MAX_BODY_BYTES ? undefined : Buffer.concat(chunks).toString('utf8');
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json;charset=utf-8' }).end(JSON.stringify(body));
}

function requestId(): string {
  const hex = randomBytes(16).toString('hex').toUpperCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
