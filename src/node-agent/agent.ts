import type { Logger } from 'pino';
import { TokenKeyedCredentialCache } from '../cache/token-keyed-credential-cache.js';
import { type Clock, type RandomSource, systemClock, systemRandom } from '../core/clock.js';
import { formatAddress, type ListenAddress } from '../core/listen-address.js';
import { AwsWebIdentityExchange, createStsClient } from '../exchange/aws-web-identity-exchange.js';
import type { CredentialExchange } from '../exchange/credentials.js';
import type { HttpListener } from '../http/listener.js';
import { MAX_CONCURRENT_STS_REQUESTS } from '../platform/aws/sts-http-handler.js';
import { TokenBuckets } from '../util/token-bucket.js';
import { Turns } from '../util/turns.js';
import { buildAgentAdminListener } from './admin-listener.js';
import type { NodeAgentConfig } from './config.js';
import { buildAgentListener } from './credential-listener.js';
import { NodeAgentMetrics } from './metrics.js';
import { partitionOfRegion, roleGlob } from './role-path.js';
import type { AdmittedToken } from './token-admission.js';

/** Time allowed beyond the STS transport's own timeouts for the SDK's work, in ms. */
const EXCHANGE_SLACK_MS = 5_000;

export interface NodeAgentDependencies {
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly random?: RandomSource;
  /**
   * Open the listeners but answer every credential request 503 `Starting` until `accept()`: the
   * CLI uses it to give up root (--run-as) before the first pod is answered.
   */
  readonly holdRequests?: boolean;
}

export interface RunningNodeAgent {
  /** The bound credential addresses (ports resolved when 0 was asked for), in configuration order. */
  readonly listeners: readonly ListenAddress[];
  readonly admin: ListenAddress | null;
  readonly metrics: NodeAgentMetrics;
  readonly cache: TokenKeyedCredentialCache;
  /** Starts answering credential requests (with `holdRequests`; otherwise they are answered from the start). */
  accept(): void;
  /** Stops accepting, lets in-flight requests finish, drops every entry and its timers. */
  close(): Promise<void>;
}

/**
 * `crosscred node-agent`: one per Kubernetes node, serving every pod's container-credentials
 * requests from the pod's own projected token. It talks to STS and never to the Kubernetes API;
 * it holds no credentials of its own, only what pods' tokens were exchanged for.
 */
export async function startNodeAgent(config: NodeAgentConfig, deps: NodeAgentDependencies): Promise<RunningNodeAgent> {
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? systemRandom;
  const log = deps.logger;

  const client = createStsClient({ region: config.region, ...(config.stsEndpoint ? { endpoint: config.stsEndpoint } : {}), ...config.sts });
  // Read at scrape time only, when the cache below exists.
  const metrics: NodeAgentMetrics = new NodeAgentMetrics(() => ({ size: cache.size, bytes: cache.bytes }));
  const cache: TokenKeyedCredentialCache = new TokenKeyedCredentialCache({
    maxEntries: config.maxEntries,
    maxBytes: config.maxCacheBytes,
    idleMs: config.idleSeconds * 1000,
    clock,
    random,
    logger: log,
    observer: metrics,
    // One gate for every entry: however many pods miss at once, at most this many calls are on the wire.
    turns: new Turns(MAX_CONCURRENT_STS_REQUESTS),
    // One STS call per exchange (no token to re-read: it is the pod's), bounded by the transport.
    exchangeTimeoutMs: config.sts.connectTimeoutMs + config.sts.responseTimeoutMs + EXCHANGE_SLACK_MS,
    onEviction: (cause) => metrics.evicted(cause),
  });
  const limiter = new TokenBuckets({ ratePerSecond: config.ratePerSecond, burst: config.rateBurst, maxKeys: config.maxRateKeys });

  const listeners: HttpListener[] = [];
  const close = async () => {
    await Promise.allSettled(listeners.map((l) => l.close()));
    cache.close();
    client.destroy();
  };

  let accepting = deps.holdRequests !== true;
  const context = {
    accepting: () => accepting,
    policy: {
      audience: config.audience,
      allowedIssuers: new Set(config.allowedIssuers),
      allowUnboundTokens: config.allowUnboundTokens,
      ...(config.sessionNameTemplate !== undefined ? { sessionNameTemplate: config.sessionNameTemplate } : {}),
    },
    allowedRoles: config.allowedRoles.map(roleGlob),
    // With an endpoint override (a VPC endpoint, a test double) the operator has chosen where calls go.
    stsPartition: config.stsEndpoint === undefined ? partitionOfRegion(config.region) : undefined,
    cache,
    limiter,
    clock,
    metrics,
    logger: log,
    exchangeFor: (roleArn: string, accountId: string, admitted: AdmittedToken): CredentialExchange => {
      // Named in log lines by role and session: which pod asked, never its token. The entry's key
      // (role, token) fixes its session name too: the template is the process's and the name is
      // read from the token alone, so an entry and its renewals always ask under one name.
      const roleName = `${roleArn} as ${admitted.sessionName}`;
      const sts = new AwsWebIdentityExchange(
        { roleName, roleArn, accountId, sessionName: admitted.sessionName, ...(config.durationSeconds ? { durationSeconds: config.durationSeconds } : {}) },
        client,
        clock,
      );
      // The entry keeps the pod's token: its renewals present the same bytes, the cache key.
      const token = admitted.token;
      return { roleName, exchange: (signal) => sts.exchange(token, signal) };
    },
  };

  try {
    const bound: ListenAddress[] = [];
    for (const address of config.listeners) {
      const listener = buildAgentListener(address, context);
      listeners.push(listener);
      const port = await listener.listen(address);
      bound.push({ host: address.host, port });
      log.info({ address: formatAddress({ host: address.host, port }) }, 'credential listener open');
    }
    let admin: ListenAddress | null = null;
    if (config.admin) {
      const listener = buildAgentAdminListener(config.admin, metrics, log.child({ listener: 'admin' }));
      listeners.push(listener);
      admin = { host: config.admin.host, port: await listener.listen(config.admin) };
      log.info({ address: formatAddress(admin) }, 'admin listener open (/healthz, /readyz, /metrics)');
    }
    log.info(
      {
        region: config.region,
        stsEndpoint: config.stsEndpoint ?? `regional (sts.${config.region}.amazonaws.com)`,
        allowedIssuers: config.allowedIssuers,
        audience: config.audience,
        allowedRoles: config.allowedRoles.length > 0 ? config.allowedRoles : 'any',
        allowUnboundTokens: config.allowUnboundTokens,
        sessionNameTemplate: config.sessionNameTemplate?.text ?? '<namespace>.<pod> (default)',
        maxEntries: config.maxEntries,
        maxCacheBytes: config.maxCacheBytes,
        idleSeconds: config.idleSeconds,
        ratePerSecond: config.ratePerSecond,
        rateBurst: config.rateBurst,
      },
      'node agent ready',
    );
    return {
      listeners: bound,
      admin,
      metrics,
      cache,
      accept: () => {
        accepting = true;
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
