import { Agent, type Dispatcher, request } from 'undici';
import { CrosscredError } from '../../core/errors.js';
import { readBoundedBody } from '../../util/bounded-body.js';

/** The ECS metadata server, reachable from every ECS instance (and only from it). */
export const ECS_METADATA_URL = 'http://100.100.100.200';

/**
 * Lifetime asked for a metadata session token, in seconds: it is used for the two or three reads
 * right after it, so a leaked one is soon useless. The server accepts 1 to 21600.
 */
const METADATA_TOKEN_TTL_SECONDS = 300;
/** A metadata token is a short opaque string. */
const MAX_TOKEN_BYTES = 1024;
/** Visible ASCII only: it goes back into a header. */
const TOKEN_TEXT = /^[\x21-\x7e]+$/;
/** A harmless path to probe with: the instance id is no secret, and every instance has one. */
const PROBE_PATH = '/latest/meta-data/instance-id';
/** An ECS instance id (`i-` and lower-case letters and digits), the only thing the probe ever shows. */
const INSTANCE_ID = /^i-[a-z0-9]{1,64}$/;

/**
 * What a GET without a session token got (`HttpTokens` of the instance's metadata options):
 * `optional` (HTTP 200: any process of the instance can read the signed identity document and the
 * RAM role's keys with a plain GET), `required` (HTTP 401 or 403), or `unknown` (anything else).
 */
export type TokenlessReadProbe =
  | { readonly httpTokens: 'optional'; readonly instanceId?: string }
  | { readonly httpTokens: 'required' }
  | { readonly httpTokens: 'unknown'; readonly reason: string };

/**
 * The fix for `HttpTokens=optional`. `ModifyInstanceMetadataOptions` and its `HttpTokens` parameter
 * are documented (docs/research/vm-attestation.md §1.1); the `aliyun` CLI spelling is its generic
 * `aliyun <product> <ApiName> --Param value` form, not run against a real account.
 */
export function requireTokensCommand(instance: { readonly instanceId?: string | undefined; readonly regionId?: string | undefined }): string {
  const { instanceId = '<instance id>', regionId = '<region>' } = instance;
  return `aliyun ecs ModifyInstanceMetadataOptions --RegionId ${regionId} --InstanceId ${instanceId} --HttpTokens required`;
}

/**
 * The ECS metadata server in hardened (token) mode only: `PUT /latest/api/token` with
 * `X-aliyun-ecs-metadata-token-ttl-seconds`, then GETs with `X-aliyun-ecs-metadata-token`
 * (docs/research/vm-attestation.md §1.1). There is no fallback to token-less reads: an instance
 * whose server requires tokens would refuse them, and one that allows both accepts this.
 */
export class EcsMetadataClient {
  readonly #baseUrl: string;
  readonly #timeoutMs: number;
  readonly #dispatcher: Dispatcher;

  constructor(options: { readonly baseUrl: string; readonly timeoutMs: number }) {
    this.#baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#timeoutMs = options.timeoutMs;
    // The metadata server is link-local: never through a proxy, one connection is plenty.
    this.#dispatcher = new Agent({
      connect: { timeout: options.timeoutMs },
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      connections: 1,
    });
  }

  /** A fresh session token (secret: never logged). */
  async token(signal?: AbortSignal): Promise<string> {
    const text = await this.#call(
      'PUT',
      '/latest/api/token',
      { 'x-aliyun-ecs-metadata-token-ttl-seconds': String(METADATA_TOKEN_TTL_SECONDS) },
      MAX_TOKEN_BYTES,
      'a metadata session token',
      signal,
    );
    if (!TOKEN_TEXT.test(text)) throw failure(`the ECS metadata server at ${this.#baseUrl} answered the token request with something that is not a token`);
    return text;
  }

  /** The body of `path` (which may carry a query), at most `maxBytes`. */
  get(path: string, token: string, maxBytes: number, what: string, signal?: AbortSignal): Promise<string> {
    return this.#call('GET', path, { 'x-aliyun-ecs-metadata-token': token }, maxBytes, what, signal);
  }

  /**
   * One GET of a harmless path without a session token, to learn whether the instance still allows
   * token-less reads. Never throws: the answer is advice, not a reason to stop.
   */
  async probeTokenlessRead(signal?: AbortSignal): Promise<TokenlessReadProbe> {
    const deadline = AbortSignal.timeout(this.#timeoutMs);
    try {
      const res = await request(`${this.#baseUrl}${PROBE_PATH}`, {
        method: 'GET',
        dispatcher: this.#dispatcher,
        signal: signal ? AbortSignal.any([signal, deadline]) : deadline,
      });
      const text = (await readBoundedBody(res.body, MAX_TOKEN_BYTES))?.trim();
      if (res.statusCode === 200) return { httpTokens: 'optional', ...(text !== undefined && INSTANCE_ID.test(text) ? { instanceId: text } : {}) };
      if (res.statusCode === 401 || res.statusCode === 403) return { httpTokens: 'required' };
      return { httpTokens: 'unknown', reason: `HTTP ${res.statusCode}` };
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      return { httpTokens: 'unknown', reason: deadline.aborted ? `no answer within ${this.#timeoutMs} ms` : typeof code === 'string' ? code : 'no answer' };
    }
  }

  close(): Promise<void> {
    return this.#dispatcher.close();
  }

  async #call(method: 'GET' | 'PUT', path: string, headers: Record<string, string>, maxBytes: number, what: string, signal?: AbortSignal): Promise<string> {
    const shownPath = path.split('?')[0]!;
    const deadline = AbortSignal.timeout(this.#timeoutMs);
    let statusCode: number;
    let text: string | undefined;
    try {
      const res = await request(`${this.#baseUrl}${path}`, {
        method,
        headers,
        dispatcher: this.#dispatcher,
        signal: signal ? AbortSignal.any([signal, deadline]) : deadline,
      });
      statusCode = res.statusCode;
      text = await readBoundedBody(res.body, maxBytes);
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      const why = deadline.aborted ? `no answer within ${this.#timeoutMs} ms` : typeof code === 'string' ? code : ((err as Error | null)?.name ?? 'Error');
      throw failure(`could not get ${what} from the ECS metadata server at ${this.#baseUrl} (${method} ${shownPath}: ${why})`);
    }
    if (statusCode !== 200) {
      const hint =
        statusCode === 401 || statusCode === 403 ? ' (the session token was refused)' : statusCode === 404 ? ' (not available on this instance)' : '';
      throw failure(`could not get ${what}: the ECS metadata server at ${this.#baseUrl} answered ${method} ${shownPath} with HTTP ${statusCode}${hint}`);
    }
    if (text === undefined) throw failure(`could not get ${what}: the ECS metadata server's answer to ${method} ${shownPath} is larger than ${maxBytes} bytes`);
    return text;
  }
}

function failure(text: string): CrosscredError {
  return new CrosscredError('ALIBABA_METADATA_FAILED', text);
}
