import { request } from 'undici';
import type { IssuerConnection } from '../config/config.js';
import type { Clock } from '../core/clock.js';
import { CrosscredError } from '../core/errors.js';
import { ECS_METADATA_URL } from '../platform/alibaba/ecs-metadata.js';
import { CVM_METADATA_URL } from '../platform/tencent/cvm-metadata.js';
import { instanceSecretFileFor } from './instance-secret.js';
import { IssuerClient } from './issuer-client.js';
import type { SourceWarningSink } from './source-warnings.js';
import type { TokenSource, WebIdentityToken } from './token-source.js';

/** Each probe of a metadata server gives up after this long, in ms. */
const PROBE_TIMEOUT_MS = 1_000;
/** Connecting to the issuer, and waiting for its answer (it calls the cloud's STS), in ms. */
const ISSUER_CONNECT_TIMEOUT_MS = 3_000;
const ISSUER_RESPONSE_TIMEOUT_MS = 15_000;

export interface VmTokenSourceOptions {
  readonly cloud: 'alibaba-ecs' | 'tencent-cvm' | 'detect';
  readonly issuer: IssuerConnection;
  readonly alibabaAttestation: 'ecs-identity' | 'ram-role';
  /** The cloud STS endpoint signed requests are made for, when not the global one. */
  readonly cloudStsEndpoint?: string;
  readonly clock: Clock;
  /** Told of what the source learns at first use that an operator should fix. */
  readonly onWarning?: SourceWarningSink;
}

/**
 * The token source of a VM with no OIDC token: an attestation of the instance, traded at
 * `crosscred issuer` for a JWT. The cloud's own source (and its SDK) is loaded at the first fetch,
 * so a daemon that never uses it never holds it in memory; with `cloud: 'detect'` the cloud is
 * whichever metadata server answers first.
 */
export class VmTokenSource implements TokenSource {
  description: string;
  readonly #options: VmTokenSourceOptions;
  #inner: Promise<TokenSource & { close?(): unknown }> | undefined;

  constructor(options: VmTokenSourceOptions) {
    this.#options = options;
    this.description = `crosscred issuer ${options.issuer.url} (${options.cloud === 'detect' ? 'Alibaba ECS or Tencent CVM, detected at the first fetch' : options.cloud})`;
  }

  async getToken(): Promise<WebIdentityToken> {
    this.#inner ??= this.#load().catch((err: unknown) => {
      this.#inner = undefined;
      throw err;
    });
    return (await this.#inner).getToken();
  }

  invalidate(): void {
    void this.#inner?.then(
      (s) => s.invalidate?.(),
      () => undefined,
    );
  }

  async close(): Promise<void> {
    const inner = await this.#inner?.catch(() => undefined);
    await inner?.close?.();
  }

  async #load(): Promise<TokenSource & { close?(): unknown }> {
    const o = this.#options;
    const cloud = o.cloud === 'detect' ? await detectCloud() : o.cloud;
    const issuer = new IssuerClient({
      issuerUrl: o.issuer.url,
      ...(o.issuer.tokenEndpointUrl ? { tokenEndpointUrl: o.issuer.tokenEndpointUrl } : {}),
      ...(o.issuer.caBundle ? { caBundle: o.issuer.caBundle } : {}),
      audience: o.issuer.audience,
      connectTimeoutMs: ISSUER_CONNECT_TIMEOUT_MS,
      responseTimeoutMs: ISSUER_RESPONSE_TIMEOUT_MS,
      ...secretFileOption(instanceSecretFileFor(o.issuer.instanceSecretFile)),
    });
    const source =
      cloud === 'alibaba-ecs'
        ? new (await import('./alibaba-ecs-token-source.js')).AlibabaEcsTokenSource({
            issuer,
            issuerUrl: o.issuer.url,
            attestation: o.alibabaAttestation,
            ...(o.cloudStsEndpoint ? { stsUrl: o.cloudStsEndpoint } : {}),
            ...(o.onWarning ? { onWarning: o.onWarning } : {}),
            clock: o.clock,
          })
        : new (await import('./tencent-cvm-token-source.js')).TencentCvmTokenSource({
            issuer,
            issuerUrl: o.issuer.url,
            ...(o.cloudStsEndpoint ? { stsEndpoint: o.cloudStsEndpoint } : {}),
            clock: o.clock,
          });
    this.description = `crosscred issuer ${o.issuer.url} (${source.description})`;
    return source;
  }
}

const secretFileOption = (file: string | undefined) => (file === undefined ? {} : { instanceSecretFile: file });

/** Which cloud's metadata server answers here: Alibaba's token PUT first, then Tencent's instance id. */
async function detectCloud(): Promise<'alibaba-ecs' | 'tencent-cvm'> {
  const answers = async (url: string, init: { method: 'PUT' | 'GET'; headers?: Record<string, string> }): Promise<boolean> => {
    try {
      const res = await request(url, { ...init, signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
      await res.body.dump();
      return res.statusCode === 200;
    } catch {
      return false;
    }
  };
  if (await answers(`${ECS_METADATA_URL}/latest/api/token`, { method: 'PUT', headers: { 'x-aliyun-ecs-metadata-token-ttl-seconds': '60' } }))
    return 'alibaba-ecs';
  if (await answers(`${CVM_METADATA_URL}/latest/meta-data/instance-id`, { method: 'GET' })) return 'tencent-cvm';
  throw new CrosscredError(
    'TOKEN_SOURCE_NOT_FOUND',
    `--issuer-url is set, but neither the Alibaba ECS metadata server (${ECS_METADATA_URL}) nor the Tencent CVM one (${CVM_METADATA_URL}) answered within ${PROBE_TIMEOUT_MS} ms; set --token-source alibaba-ecs or tencent-cvm to skip detection`,
  );
}
