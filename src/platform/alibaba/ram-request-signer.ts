import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import alicloudCredentials from '@alicloud/credentials';
import alicloudOpenapiCore from '@alicloud/openapi-core';
import alicloudSts from '@alicloud/sts20150401';
import darabonba from '@darabonba/typescript';
import { CrosscredError } from '../../core/errors.js';
import { BINDING_HEADERS, type SignedRequestAttestation } from '../../protocol/issuer-token-exchange.js';
import { ECS_METADATA_URL } from './ecs-metadata.js';

/**
 * The alibaba-ecs source's RAM-role half: the instance's RAM-role credentials from the official
 * `@alicloud/credentials` (type ecs_ram_role, hardened metadata mode only), and a GetCallerIdentity
 * request signed, not sent, by the official `@alicloud/sts20150401` client (ACS3-HMAC-SHA256),
 * with the binding header `x-acs-crosscred-audience: <issuer URL>` added through
 * `RuntimeOptions.extendsParameters`, which the SDK signs like every `x-acs-*` header.
 *
 * How the signed request is caught before it leaves: the SDK builds its URL as
 * `<protocol>://<host header><path>` (@darabonba/typescript buildURL) and signs only the method,
 * path, query and headers, never the protocol. Given the protocol
 * `http://127.0.0.1:<port>/<random id>#`, the URL becomes
 * `http://127.0.0.1:<port>/<id>#://sts.aliyuncs.com/`: the fragment swallows the real host, so
 * the request, with its Host header and signature for the real STS host untouched, goes to a
 * one-shot server on this host's loopback, which records it and answers. Nothing reaches STS
 * (whose nonce check would then refuse the issuer's replay). The SDK's own code paths (header
 * set, signer, transport) all run, so the captured request is byte for byte what it would send.
 */

// The official packages are CommonJS. A default import is their whole `module.exports` under Node
// and under esbuild (which follows Node's interop in a "type": "module" package), so `default`
// below is always the class; a static import lets the single-executable bundle include them.
const { default: Credential, ECSRAMRoleCredentialsProvider } = alicloudCredentials;
const { $OpenApiUtil } = alicloudOpenapiCore;
const { default: Sts } = alicloudSts;
const $dara = darabonba;

/** What signs: an official Credential (ecs_ram_role by default; any type the SDK supports). */
export type AlibabaCredential = InstanceType<typeof Credential>;

/** Where GetCallerIdentity is addressed by default: the global endpoint, reachable from anywhere the issuer runs. */
export const DEFAULT_ALIBABA_STS_URL = 'https://sts.aliyuncs.com/';

/** The signed request is a couple of KiB; anything larger reaching the capture server is not it. */
const MAX_CAPTURED_BYTES = 64 * 1024;
const AUTHORIZATION = /^ACS3-HMAC-SHA256 Credential=[^,\s]+,SignedHeaders=([a-z0-9;-]+),Signature=[0-9a-f]{64}$/;
/** Long runs of key or token characters (an AccessKeySecret, an STS token); paths and host names stay readable. */
const KEY_LIKE = /[A-Za-z0-9+=_-]{32,}/g;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

export interface RamRoleCredentialOptions {
  /** The instance's RAM role; when absent the SDK asks the metadata server which one is attached. */
  readonly roleName?: string;
  /**
   * The metadata server. The SDK hard-codes http://100.100.100.200; another base URL (tests) is
   * applied through the provider's request hook, the seam the SDK keeps for this ("for mock").
   */
  readonly metadataUrl: string;
  readonly timeoutMs: number;
}

/** The official ecs_ram_role credential, token mode only (no fallback to token-less metadata reads). */
export function ecsRamRoleCredential(options: RamRoleCredentialOptions): AlibabaCredential {
  let builder = ECSRAMRoleCredentialsProvider.builder().withDisableIMDSv1(true).withReadTimeout(options.timeoutMs).withConnectTimeout(options.timeoutMs);
  if (options.roleName) builder = builder.withRoleName(options.roleName);
  let provider: ReturnType<typeof builder.build>;
  try {
    provider = builder.build();
  } catch (err) {
    // The SDK refuses when ALIBABA_CLOUD_ECS_METADATA_DISABLED=true.
    throw new CrosscredError('ALIBABA_METADATA_FAILED', `the Alibaba SDK will not read RAM-role credentials: ${shortMessage(err)}`);
  }
  const base = new URL(options.metadataUrl);
  if (base.origin !== new URL(ECS_METADATA_URL).origin) {
    const hooked = provider as unknown as { doRequest: (req: { protocol: string; host: string }) => Promise<unknown> };
    const send = hooked.doRequest;
    hooked.doRequest = (req) => {
      req.protocol = base.protocol.slice(0, -1);
      req.host = base.host;
      return send(req);
    };
  }
  return new Credential(null, provider);
}

/** The RAM-role credentials now (the SDK caches and refreshes them), or ALIBABA_METADATA_FAILED. */
export async function loadRamRoleCredentials(credential: AlibabaCredential): Promise<void> {
  let model: { accessKeyId?: string; accessKeySecret?: string; securityToken?: string } | undefined;
  try {
    model = await credential.getCredential();
  } catch (err) {
    throw new CrosscredError('ALIBABA_METADATA_FAILED', `could not get the instance's RAM-role credentials through the Alibaba SDK: ${shortMessage(err)}`);
  }
  if (!model?.accessKeyId || !model.accessKeySecret) {
    throw new CrosscredError('ALIBABA_METADATA_FAILED', 'the Alibaba SDK returned RAM-role credentials without an AccessKeyId or AccessKeySecret');
  }
}

export interface SignGetCallerIdentityOptions {
  readonly credential: AlibabaCredential;
  /** The STS endpoint the request is signed for, as a URL (`https://sts.aliyuncs.com/`). */
  readonly stsUrl: string;
  /** The issuer the request is bound to (the binding header's value). */
  readonly issuerUrl: string;
  readonly timeoutMs: number;
}

/** A GetCallerIdentity request signed by the official SDK for `stsUrl` and bound to `issuerUrl`, not sent. */
export async function signGetCallerIdentity(options: SignGetCallerIdentityOptions): Promise<SignedRequestAttestation> {
  const signed = await captureSignedRequest({ ...options, extraHeaders: { [BINDING_HEADERS.alibaba]: options.issuerUrl } });
  const signedHeaders = /SignedHeaders=([a-z0-9;-]+)/.exec(signed.headers['authorization'] ?? '')?.[1]?.split(';') ?? [];
  if (!signedHeaders.includes(BINDING_HEADERS.alibaba) || signed.headers[BINDING_HEADERS.alibaba] !== options.issuerUrl) {
    throw new CrosscredError(
      'ALIBABA_SIGNING_FAILED',
      `the Alibaba SDK signed GetCallerIdentity without covering ${BINDING_HEADERS.alibaba}, so the issuer would refuse it`,
    );
  }
  return signed;
}

/**
 * GetCallerIdentity as the official SDK signs it for `stsUrl`, with `extraHeaders` added through
 * `RuntimeOptions.extendsParameters` (merged after the SDK's own, and signed when `x-acs-*`),
 * caught before it leaves: the signed headers, the host and the Authorization header.
 */
export async function captureSignedRequest(options: {
  readonly credential: AlibabaCredential;
  readonly stsUrl: string;
  readonly extraHeaders: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
}): Promise<SignedRequestAttestation> {
  const sts = new URL(options.stsUrl);
  const capture = await startCapture();
  try {
    const client = new Sts(
      new $OpenApiUtil.Config({
        credential: options.credential,
        endpoint: sts.host,
        // See the module comment: the fragment sends the request to the capture server.
        protocol: `http://127.0.0.1:${capture.port}/${capture.id}#`,
        readTimeout: options.timeoutMs,
        connectTimeout: options.timeoutMs,
      }),
    );
    const runtime = new $dara.RuntimeOptions({
      extendsParameters: new $dara.ExtendsParameters({ headers: { ...options.extraHeaders } }),
      readTimeout: options.timeoutMs,
      connectTimeout: options.timeoutMs,
      autoretry: false,
    });
    try {
      await client.getCallerIdentityWithOptions(runtime);
    } catch (err) {
      throw new CrosscredError('ALIBABA_SIGNING_FAILED', `the Alibaba SDK could not sign GetCallerIdentity: ${shortMessage(err)}`);
    }
    const captured = capture.result();
    if (!captured) throw new CrosscredError('ALIBABA_SIGNING_FAILED', 'the Alibaba SDK finished without producing a signed GetCallerIdentity request');
    return toAttestation(captured, sts);
  } finally {
    capture.close();
  }
}

interface CapturedRequest {
  readonly method: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: string;
}

function toAttestation(captured: CapturedRequest, sts: URL): SignedRequestAttestation {
  const fail = (why: string) => new CrosscredError('ALIBABA_SIGNING_FAILED', `the Alibaba SDK signed GetCallerIdentity unexpectedly: ${why}`);
  if (captured.method !== 'POST' || captured.body !== '') throw fail('not as a POST with an empty body');
  const authorization = captured.headers['authorization'];
  const match = typeof authorization === 'string' ? AUTHORIZATION.exec(authorization) : null;
  if (!match || typeof authorization !== 'string') throw fail('without an ACS3-HMAC-SHA256 Authorization header');
  const signed = match[1]!.split(';');
  if (captured.headers['host'] !== sts.host) throw fail(`for the host ${String(captured.headers['host'])}, not ${sts.host}`);
  const headers: Record<string, string> = { authorization };
  for (const name of signed) {
    const value = captured.headers[name];
    if (typeof value !== 'string') throw fail(`the signed header ${name} is missing or repeated`);
    headers[name] = value;
  }
  return { method: 'POST', url: `${sts.protocol}//${sts.host}/`, headers, body: '' };
}

interface Capture {
  readonly port: number;
  readonly id: string;
  result(): CapturedRequest | undefined;
  close(): void;
}

/**
 * A loopback server that takes exactly one request, on a path only this process knows, for the
 * time one signing takes. Anything else is answered 404 and not recorded.
 */
async function startCapture(): Promise<Capture> {
  const id = randomBytes(16).toString('hex');
  let captured: CapturedRequest | undefined;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_CAPTURED_BYTES) chunks.push(chunk);
    });
    req.on('end', () => {
      const mine = req.url === `/${id}` && captured === undefined && size <= MAX_CAPTURED_BYTES;
      if (mine) captured = { method: req.method ?? '', headers: { ...req.headers }, body: Buffer.concat(chunks).toString('utf8') };
      res.writeHead(mine ? 200 : 404, { 'content-type': 'application/json', connection: 'close' });
      // The SDK parses this as its GetCallerIdentity answer; nothing in it is used.
      res.end(mine ? '{"RequestId":"crosscred-capture"}' : '{}');
    });
  });
  server.maxHeadersCount = 64;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    id,
    result: () => captured,
    close: () => {
      server.close();
      server.closeAllConnections();
    },
  };
}

/** An SDK error's message, made safe to show: no long token-like runs (keys, tokens), no control characters, short. */
function shortMessage(err: unknown): string {
  const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return text
    .replace(/message = .*/s, '')
    .replace(KEY_LIKE, '[redacted]')
    .replace(CONTROL_CHARS, ' ')
    .replace(/ {2,}/g, ' ')
    .trim()
    .slice(0, 200);
}
