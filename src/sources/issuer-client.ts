import { Agent, type Dispatcher, request } from 'undici';
import { CrosscredError } from '../core/errors.js';
import {
  INSTANCE_SECRET_PARAMETER,
  ISSUER_PATHS,
  JWT_TOKEN_TYPE,
  type SubjectTokenType,
  TOKEN_EXCHANGE_GRANT_TYPE,
  type TokenExchangeError,
  type TokenExchangeResponse,
} from '../protocol/issuer-token-exchange.js';
import { readBoundedBody } from '../util/bounded-body.js';
import { type InstanceSecretUse, loadInstanceSecret, readInstanceSecret } from './instance-secret.js';

/** A token answer is a JWT and a few fields; anything much larger is not one. */
const MAX_ANSWER_BYTES = 64 * 1024;

export interface IssuerClientOptions {
  /** The issuer URL, exactly as it appears in the JWTs' `iss` (https, or http to loopback for tests). */
  readonly issuerUrl: string;
  /** The token endpoint, when it is not `issuerUrl` + `/token` (discovery in a public bucket, the endpoint private). */
  readonly tokenEndpointUrl?: string;
  /** PEM text of CA certificates to trust for the issuer instead of Node's bundled roots. */
  readonly caBundle?: string;
  /** The `aud` to ask for (default: the issuer's own default, sts.amazonaws.com). */
  readonly audience?: string;
  readonly connectTimeoutMs: number;
  readonly responseTimeoutMs: number;
  /**
   * The instance secret's file (trust on first use): made at the first exchange if missing, then
   * sent with every one. Unset: no secret is sent (an issuer that requires one refuses).
   */
  readonly instanceSecretFile?: string;
  /** `existing`: send the file's secret if it exists, never make it (doctor). Default `create`. */
  readonly instanceSecretUse?: InstanceSecretUse;
}

/**
 * The VM sources' side of the token endpoint (src/protocol/issuer-token-exchange.ts): sends one attestation,
 * returns the JWT. Errors are CrosscredError TOKEN_REQUEST_FAILED with the issuer's own
 * `error` / `error_description` (which never hold a secret), or the transport's failure.
 */
export class IssuerClient {
  readonly #dispatcher: Agent;
  readonly #tokenUrl: string;
  /** The instance secret, read (or made) once; a failed read is tried again at the next exchange. */
  #instanceSecret: Promise<string | undefined> | undefined;

  constructor(private readonly options: IssuerClientOptions) {
    this.#tokenUrl =
      options.tokenEndpointUrl ??
      new URL(ISSUER_PATHS.token.slice(1), options.issuerUrl.endsWith('/') ? options.issuerUrl : `${options.issuerUrl}/`).toString();
    const tls = { ...(options.caBundle ? { ca: options.caBundle } : {}), timeout: options.connectTimeoutMs };
    this.#dispatcher = new Agent({ connect: tls, headersTimeout: options.responseTimeoutMs, bodyTimeout: options.responseTimeoutMs, connections: 2 });
  }

  /** Trades `subjectToken` (an encoded attestation) for a JWT. */
  async exchange(subjectTokenType: SubjectTokenType, subjectToken: string, signal?: AbortSignal): Promise<{ token: string; expiresInSeconds: number }> {
    const form = new URLSearchParams({
      grant_type: TOKEN_EXCHANGE_GRANT_TYPE,
      subject_token_type: subjectTokenType,
      subject_token: subjectToken,
      requested_token_type: JWT_TOKEN_TYPE,
    });
    if (this.options.audience) form.set('audience', this.options.audience);
    const secret = await this.#secret();
    if (secret !== undefined) form.set(INSTANCE_SECRET_PARAMETER, secret);
    const deadline = AbortSignal.timeout(this.options.connectTimeoutMs + this.options.responseTimeoutMs);
    let res: Dispatcher.ResponseData;
    try {
      res = await request(this.#tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: form.toString(),
        dispatcher: this.#dispatcher,
        signal: signal ? AbortSignal.any([deadline, signal]) : deadline,
      });
    } catch (err) {
      throw new CrosscredError(
        'TOKEN_REQUEST_FAILED',
        `the issuer ${this.options.issuerUrl} could not be reached (${(err as NodeJS.ErrnoException).code ?? (err as Error).name})`,
      );
    }
    const text = await readBoundedBody(res.body, MAX_ANSWER_BYTES);
    let answer: unknown;
    try {
      answer = text === undefined ? undefined : JSON.parse(text);
    } catch {
      answer = undefined;
    }
    if (res.statusCode !== 200) {
      const e = answer as Partial<TokenExchangeError> | undefined;
      const why = typeof e?.error === 'string' ? `${e.error}: ${String(e.error_description ?? '').slice(0, 300)}` : 'not an OAuth error answer';
      throw new CrosscredError('TOKEN_REQUEST_FAILED', `the issuer ${this.options.issuerUrl} refused the attestation with HTTP ${res.statusCode} (${why})`);
    }
    const ok = answer as Partial<TokenExchangeResponse> | undefined;
    if (typeof ok?.access_token !== 'string' || ok.issued_token_type !== JWT_TOKEN_TYPE || typeof ok.expires_in !== 'number') {
      throw new CrosscredError(
        'TOKEN_REQUEST_FAILED',
        `the issuer ${this.options.issuerUrl} answered 200 without a JWT (access_token, issued_token_type, expires_in)`,
      );
    }
    return { token: ok.access_token, expiresInSeconds: ok.expires_in };
  }

  #secret(): Promise<string | undefined> {
    const file = this.options.instanceSecretFile;
    if (file === undefined) return Promise.resolve(undefined);
    this.#instanceSecret ??= (
      this.options.instanceSecretUse === 'existing' ? readInstanceSecret(file) : loadInstanceSecret(file).then((loaded) => loaded.secret)
    ).catch((err: unknown) => {
      this.#instanceSecret = undefined;
      throw err;
    });
    return this.#instanceSecret;
  }

  close(): Promise<void> {
    return this.#dispatcher.close();
  }
}
