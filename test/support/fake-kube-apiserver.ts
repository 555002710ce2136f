import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { generateKeyPair, SignJWT } from 'jose';
import { selfSignedCert } from './self-signed.js';

const run = promisify(execFile);

type PrivateKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

/** How the next answers go wrong (until `respond()` is called again). */
export type FakeKubeFailure =
  | { readonly kind: 'status'; readonly status: 401 | 403 | 404 | 500; readonly message?: string }
  /** Any status and raw body, e.g. garbage, a TokenRequest without fields, an HTML error page. */
  | { readonly kind: 'raw'; readonly status: number; readonly body: string; readonly contentType?: string }
  /** Answers correctly, but only after `ms` of real time. */
  | { readonly kind: 'delay'; readonly ms: number }
  /** Reads the request and never answers. */
  | { readonly kind: 'hang' };

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly authorization: string | undefined;
  readonly contentType: string | undefined;
  /** The parsed JSON body, or the raw text when it was not JSON. */
  readonly body: unknown;
}

export interface FakeKubeApiServerOptions {
  /** The Bearer token accepted (the pod's ServiceAccount token); can be changed later with `expectBearer`. */
  readonly bearer: string;
  /** Wall clock for `iat`/`exp`/expirationTimestamp (ms); pass a FakeClock's wallNow to keep both in step. */
  readonly now?: () => number;
}

/** A real TokenRequest answer's issuer in most clusters. */
export const FAKE_KUBE_ISSUER = 'https://kubernetes.default.svc';

/**
 * A stand-in for the Kubernetes API server's TokenRequest endpoint and its ServiceAccount reads
 * (`get` and `list`, with ServiceAccounts added at any time): HTTPS on 127.0.0.1 with a
 * serving certificate signed by a test CA (both made here by openssl), Bearer authentication,
 * request validation as the API server does it (answering 400/422 Status objects), and 201
 * answers carrying real ES256 JWTs. It can grant another lifetime than asked and fail on command.
 */
export class FakeKubeApiServer {
  readonly url: string;
  /** PEM file of the CA that signed the serving certificate: give it to the client as caFile. */
  readonly caFile: string;
  /** Requests received on the TokenRequest path, valid or not. */
  requestCount = 0;
  /** Every request received, in order. */
  readonly requests: RecordedRequest[] = [];
  /** Why requests were refused as invalid (400/415/422), so tests can assert there were none. */
  readonly rejections: string[] = [];
  readonly #server: Server;
  readonly #dir: string;
  readonly #sockets = new Set<Socket>();
  readonly #key: PrivateKey;
  readonly #now: () => number;
  #bearer: string;
  #grantSeconds: number | undefined;
  #failure: FakeKubeFailure | undefined;
  #tokens = 0;
  readonly #serviceAccounts = new Map<string, FakeServiceAccount>();
  /** GETs of a single ServiceAccount (found or not), for tests that count live lookups. */
  serviceAccountReads = 0;

  private constructor(server: Server, url: string, dir: string, key: PrivateKey, options: FakeKubeApiServerOptions) {
    this.#server = server;
    this.url = url;
    this.#dir = dir;
    this.caFile = join(dir, 'ca.crt');
    this.#key = key;
    this.#bearer = options.bearer;
    this.#now = options.now ?? Date.now;
    server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  static async start(options: FakeKubeApiServerOptions): Promise<FakeKubeApiServer> {
    const dir = await mkdtemp(join(tmpdir(), 'crosscred-kube-'));
    const { key, cert } = await makeServingCertificate(dir);
    const { privateKey } = await generateKeyPair('ES256', { extractable: false });
    let self: FakeKubeApiServer | undefined;
    const server = createServer({ key, cert }, (req, res) => {
      void self!.#handle(req, res);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    const { port } = server.address() as AddressInfo;
    self = new FakeKubeApiServer(server, `https://127.0.0.1:${port}`, dir, privateKey, options);
    return self;
  }

  /** The last request's parsed body. */
  get lastBody(): unknown {
    return this.requests.at(-1)?.body;
  }

  /** Accept another Bearer token from now on (the pod's token rotated). */
  expectBearer(token: string): void {
    this.#bearer = token;
  }

  /** Grant this lifetime in seconds whatever is asked (`undefined`: grant what is asked). */
  grant(seconds: number | undefined): void {
    this.#grantSeconds = seconds;
  }

  /** Adds (or replaces) a ServiceAccount; it is served from the next request on, as one created after start. */
  addServiceAccount(account: { namespace: string; name: string; annotations?: Record<string, string> }): void {
    this.#serviceAccounts.set(`${account.namespace}/${account.name}`, {
      namespace: account.namespace,
      name: account.name,
      annotations: { ...account.annotations },
      uid: `5b0c1e2a-0000-4000-8000-${String(this.#serviceAccounts.size + 1).padStart(12, '0')}`,
    });
  }

  removeServiceAccount(namespace: string, name: string): void {
    this.#serviceAccounts.delete(`${namespace}/${name}`);
  }

  /** Fail every request this way until called again; no argument restores normal answers. */
  respond(failure?: FakeKubeFailure): void {
    this.#failure = failure;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      for (const socket of this.#sockets) socket.destroy();
      this.#server.closeAllConnections();
    });
    await rm(this.#dir, { recursive: true, force: true });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const text = await readBody(req, 1024 * 1024);
    let body: unknown = text;
    try {
      body = JSON.parse(text ?? '') as unknown;
    } catch {
      // Kept as text; validation below refuses it.
    }
    const path = req.url ?? '';
    this.requests.push({ method: req.method ?? '', path, authorization: req.headers.authorization, contentType: req.headers['content-type'], body });
    if (/^\/api\/v1\/(?:namespaces\/[^/]+\/)?serviceaccounts(?:\/[^/]+)?(?:\?.*)?$/.test(path)) {
      this.#serviceAccountRead(req, res, path);
      return;
    }
    const match = /^\/api\/v1\/namespaces\/([^/]+)\/serviceaccounts\/([^/]+)\/token$/.exec(path);
    if (!match) {
      sendStatus(res, 404, 'NotFound', 'the server could not find the requested resource');
      return;
    }
    this.requestCount += 1;
    const namespace = decodeURIComponent(match[1]!);
    const serviceAccount = decodeURIComponent(match[2]!);

    if (req.headers.authorization !== `Bearer ${this.#bearer}`) {
      sendStatus(res, 401, 'Unauthorized', 'Unauthorized');
      return;
    }
    const failure = this.#failure;
    if (failure?.kind === 'hang') return;
    if (failure?.kind === 'status') {
      const reason = { 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 500: 'InternalError' }[failure.status];
      const message =
        failure.message ??
        {
          401: 'Unauthorized',
          403: `serviceaccounts "${serviceAccount}" is forbidden: User "system:serviceaccount:${namespace}:${serviceAccount}" cannot create resource "serviceaccounts/token" in API group "" in the namespace "${namespace}"`,
          404: `serviceaccounts "${serviceAccount}" not found`,
          500: 'Internal error occurred: failed to sign token',
        }[failure.status];
      sendStatus(res, failure.status, reason, message);
      return;
    }
    if (failure?.kind === 'raw') {
      res.writeHead(failure.status, { 'content-type': failure.contentType ?? 'application/json' }).end(failure.body);
      return;
    }
    if (req.method !== 'POST') {
      sendStatus(res, 405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`);
      return;
    }
    if (!(req.headers['content-type'] ?? '').startsWith('application/json')) {
      this.#reject(res, 415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json`);
      return;
    }
    const problem = validateTokenRequest(body);
    if (problem) {
      this.#reject(res, problem.status, problem.status === 400 ? 'BadRequest' : 'Invalid', problem.message);
      return;
    }
    const spec = (body as { spec: TokenRequestSpec }).spec;
    if (failure?.kind === 'delay') await new Promise((resolve) => setTimeout(resolve, failure.ms));
    if (res.destroyed) return;

    const granted = this.#grantSeconds ?? spec.expirationSeconds;
    const nowSeconds = Math.floor(this.#now() / 1000);
    const exp = nowSeconds + granted;
    this.#tokens += 1;
    const kubernetesClaim: Record<string, unknown> = {
      namespace,
      serviceaccount: { name: serviceAccount, uid: '4e2a9d2b-0000-4000-8000-00000000000a' },
      ...(spec.boundObjectRef ? { pod: { name: spec.boundObjectRef.name, uid: spec.boundObjectRef.uid } } : {}),
    };
    const token = await new SignJWT({ 'kubernetes.io': kubernetesClaim })
      .setProtectedHeader({ alg: 'ES256', kid: 'fake-kube-key-1', typ: 'JWT' })
      .setIssuer(FAKE_KUBE_ISSUER)
      .setSubject(`system:serviceaccount:${namespace}:${serviceAccount}`)
      .setAudience(spec.audiences)
      .setIssuedAt(nowSeconds)
      .setNotBefore(nowSeconds)
      .setExpirationTime(exp)
      .setJti(`fake-${this.#tokens}`)
      .sign(this.#key);
    const answer = {
      kind: 'TokenRequest',
      apiVersion: 'authentication.k8s.io/v1',
      metadata: { name: serviceAccount, namespace, creationTimestamp: null },
      spec: { ...spec, expirationSeconds: granted, boundObjectRef: spec.boundObjectRef ?? null },
      status: { token, expirationTimestamp: rfc3339(exp) },
    };
    res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
  }

  /** GET of one ServiceAccount, of a namespace's list, or of all of them, as the API server answers them. */
  #serviceAccountRead(req: IncomingMessage, res: ServerResponse, url: string): void {
    const path = url.replace(/\?.*$/, '');
    const one = /^\/api\/v1\/namespaces\/([^/]+)\/serviceaccounts\/([^/]+)$/.exec(path);
    if (one) this.serviceAccountReads += 1;
    if (req.headers.authorization !== `Bearer ${this.#bearer}`) {
      sendStatus(res, 401, 'Unauthorized', 'Unauthorized');
      return;
    }
    if (req.method !== 'GET') {
      sendStatus(res, 405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
      return;
    }
    const failure = this.#failure;
    if (failure?.kind === 'hang') return;
    if (failure?.kind === 'status') {
      const reason = { 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 500: 'InternalError' }[failure.status];
      sendStatus(res, failure.status, reason, failure.message ?? reason);
      return;
    }
    if (failure?.kind === 'raw') {
      res.writeHead(failure.status, { 'content-type': failure.contentType ?? 'application/json' }).end(failure.body);
      return;
    }
    const answer = () => {
      if (res.destroyed) return;
      if (one) {
        const namespace = decodeURIComponent(one[1]!);
        const name = decodeURIComponent(one[2]!);
        const account = this.#serviceAccounts.get(`${namespace}/${name}`);
        if (!account) {
          sendStatus(res, 404, 'NotFound', `serviceaccounts "${name}" not found`);
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(serviceAccountObject(account)));
        return;
      }
      const inNamespace = /^\/api\/v1\/namespaces\/([^/]+)\/serviceaccounts$/.exec(path);
      const items = [...this.#serviceAccounts.values()]
        .filter((a) => !inNamespace || a.namespace === decodeURIComponent(inNamespace[1]!))
        .map(serviceAccountObject);
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ kind: 'ServiceAccountList', apiVersion: 'v1', metadata: { resourceVersion: String(1000 + items.length) }, items }));
    };
    if (failure?.kind === 'delay') setTimeout(answer, failure.ms);
    else answer();
  }

  #reject(res: ServerResponse, status: number, reason: string, message: string): void {
    this.rejections.push(message);
    sendStatus(res, status, reason, message);
  }
}

interface FakeServiceAccount {
  readonly namespace: string;
  readonly name: string;
  readonly annotations: Record<string, string>;
  readonly uid: string;
}

/** A ServiceAccount as `kubectl get -o json` shows it. */
function serviceAccountObject(account: FakeServiceAccount): Record<string, unknown> {
  return {
    kind: 'ServiceAccount',
    apiVersion: 'v1',
    metadata: {
      name: account.name,
      namespace: account.namespace,
      uid: account.uid,
      resourceVersion: '4242',
      creationTimestamp: '2026-12-01T10:00:00Z',
      ...(Object.keys(account.annotations).length > 0 ? { annotations: account.annotations } : {}),
    },
  };
}

interface TokenRequestSpec {
  audiences: string[];
  expirationSeconds: number;
  boundObjectRef?: { kind: string; apiVersion: string; name: string; uid: string };
}

/** The checks the API server applies to a TokenRequest (ValidateTokenRequest), in its words where it has them. */
function validateTokenRequest(body: unknown): { status: 400 | 422; message: string } | undefined {
  if (!isObject(body)) return { status: 400, message: 'the request body is not a JSON object' };
  if (body['apiVersion'] !== 'authentication.k8s.io/v1' || body['kind'] !== 'TokenRequest') {
    return {
      status: 400,
      message: `the body is not an authentication.k8s.io/v1 TokenRequest (apiVersion ${JSON.stringify(body['apiVersion'])}, kind ${JSON.stringify(body['kind'])})`,
    };
  }
  const spec = body['spec'];
  if (!isObject(spec)) return { status: 422, message: 'spec: Required value' };
  const known = new Set(['audiences', 'expirationSeconds', 'boundObjectRef']);
  const unknown = Object.keys(spec).filter((k) => !known.has(k));
  if (unknown.length > 0) return { status: 400, message: `strict decoding error: unknown field "spec.${unknown[0]}"` };
  const audiences = spec['audiences'];
  if (!Array.isArray(audiences) || audiences.length !== 1 || typeof audiences[0] !== 'string' || audiences[0] === '') {
    return { status: 422, message: `spec.audiences: Invalid value: ${JSON.stringify(audiences)}: expected exactly one non-empty audience` };
  }
  const seconds = spec['expirationSeconds'];
  if (typeof seconds !== 'number' || !Number.isInteger(seconds)) {
    return { status: 400, message: `spec.expirationSeconds: Invalid value: ${JSON.stringify(seconds)}: must be an integer` };
  }
  if (seconds < 600) return { status: 422, message: 'spec.expirationSeconds: Invalid value: may not specify a duration less than 10 minutes' };
  if (seconds > 2 ** 32) return { status: 422, message: 'spec.expirationSeconds: Invalid value: may not specify a duration larger than 2^32 seconds' };
  const ref = spec['boundObjectRef'];
  if (ref !== undefined) {
    if (!isObject(ref)) return { status: 422, message: 'spec.boundObjectRef: Invalid value: must be an object' };
    const keys = Object.keys(ref).sort().join(',');
    if (keys !== 'apiVersion,kind,name,uid')
      return { status: 422, message: `spec.boundObjectRef: Invalid value: fields ${keys}, want apiVersion,kind,name,uid` };
    if (ref['kind'] !== 'Pod' || ref['apiVersion'] !== 'v1')
      return { status: 422, message: `spec.boundObjectRef.kind: Unsupported value: ${JSON.stringify(ref['kind'])}` };
    for (const field of ['name', 'uid'] as const) {
      if (typeof ref[field] !== 'string' || ref[field] === '') return { status: 422, message: `spec.boundObjectRef.${field}: Required value` };
    }
  }
  return undefined;
}

function sendStatus(res: ServerResponse, code: number, reason: string, message: string): void {
  const status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, details: {}, code };
  res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(status));
}

async function readBody(req: IncomingMessage, maxBytes: number): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** RFC 3339 in whole seconds, as the API server writes metav1.Time. */
function rfc3339(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** A test CA and a serving certificate it signed for IP 127.0.0.1, as a cluster's CA signs the API server's. */
async function makeServingCertificate(dir: string): Promise<{ key: string; cert: string }> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-days', '1', '-subj', '/CN=fake-kube-ca', '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.crt')]);
  await run('openssl', ['req', '-new', ...ec, '-subj', '/CN=kube-apiserver', '-keyout', join(dir, 'server.key'), '-out', join(dir, 'server.csr')]);
  await writeFile(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
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
  return { key: await readFile(join(dir, 'server.key'), 'utf8'), cert: await readFile(join(dir, 'server.crt'), 'utf8') };
}

/** A self-signed CA that did not sign the fake API server's certificate, for the wrong-CA case. Written to `dir/other-ca.crt`. */
export async function makeUnrelatedCa(dir: string): Promise<string> {
  const file = join(dir, 'other-ca.crt');
  await selfSignedCert({ cn: 'other-ca', keyFile: join(dir, 'other-ca.key'), certFile: file });
  return file;
}
