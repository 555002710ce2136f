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
