import type { STSClient } from '@aws-sdk/client-sts';
import type { Logger } from 'pino';
import { systemClock, systemRandom, type Clock, type RandomSource } from './cache/clock.js';
import { RoleCredentialCache } from './cache/role-credential-cache.js';
import type { Config, ListenAddress } from './config/config.js';
import { formatAddress } from './config/listen-address.js';
import { createStsClient, StsWebIdentityExchange } from './exchange/sts-exchange.js';
import { Metrics } from './observability/metrics.js';
import { buildAdminListener } from './server/admin-listener.js';
import { ContainerSecret } from './server/container-secret.js';
import { buildCredentialListener } from './server/credential-listener.js';
import type { HttpListener } from './server/http-listener.js';
import type { ServedRole } from './server/listener-context.js';
import { SessionTokenIssuer } from './server/session-tokens.js';
import { createTokenSource } from './sources/create-token-source.js';

/** Time allowed beyond the STS timeouts for reading the token and the SDK's own work, in ms. */
const EXCHANGE_SLACK_MS = 5_000;

export interface DaemonDependencies {
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly random?: RandomSource;
}

export interface RunningDaemon {
  /** The bound addresses (ports resolved when 0 was asked for), in configuration order. */
  readonly listeners: ReadonlyArray<ListenAddress & { readonly role: string }>;
  readonly admin: ListenAddress | null;
  readonly roles: ReadonlyMap<string, ServedRole>;
  readonly metrics: Metrics;
  /** Resolves when every role's first fetch has finished (successfully or not). */
  readonly firstFetch: Promise<void>;
  /** Stops accepting, lets in-flight requests finish, stops refreshing. */
  close(): Promise<void>;
}

/**
 * Wires the layers together for `crosscred serve`: sources → exchange → cache → server.
 * Credentials are fetched at once, before the listeners open, so the first SDK request finds them.
 */
export async function startDaemon(config: Config, deps: DaemonDependencies): Promise<RunningDaemon> {
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? systemRandom;
  const log = deps.logger;

  // One STS client per distinct (region, endpoint): roles that share it share its connection pool.
  const stsClients = new Map<string, STSClient>();
  const sources: Array<{ close?(): unknown }> = [];
  const roles = new Map<string, ServedRole>();
  const roleStatuses = () => [...roles.values()].map((r) => r.cache.status());
  const metrics = new Metrics(roleStatuses);

  for (const role of config.roles) {
    const key = `${role.region} ${role.stsEndpoint ?? ''}`;
    let client = stsClients.get(key);
    if (!client) {
      client = createStsClient({ region: role.region, ...(role.stsEndpoint ? { endpoint: role.stsEndpoint } : {}), ...config.sts });
      stsClients.set(key, client);
    }
    const source = createTokenSource(role.token.source, clock);
    sources.push(source);
    const exchange = new StsWebIdentityExchange(
      { roleName: role.name, roleArn: role.roleArn, accountId: role.accountId, sessionName: role.sessionName, ...(role.durationSeconds ? { durationSeconds: role.durationSeconds } : {}) },
      source,
      client,
      clock,
    );
    // An ExpiredToken answer costs a second STS call; each call is bounded by the transport's timeouts.
    const exchangeTimeoutMs = 2 * (config.sts.connectTimeoutMs + config.sts.responseTimeoutMs) + EXCHANGE_SLACK_MS;
    const cache = new RoleCredentialCache({ exchange, clock, random, logger: log, observer: metrics, exchangeTimeoutMs });
    roles.set(role.name, { config: role, cache });
    log.info(
      { role: role.name, roleArn: role.roleArn, sessionName: role.sessionName, region: role.region, stsEndpoint: role.stsEndpoint ?? `regional (sts.${role.region}.amazonaws.com)`, durationSeconds: role.durationSeconds ?? 'role default' },
      'role configured',
    );
    log.info({ role: role.name, source: source.description, why: role.token.reason }, `token source: ${source.description}`);
    for (const note of role.token.notes) log.info({ role: role.name }, note);
  }
  const firstFetch = Promise.all([...roles.values()].map((r) => r.cache.start())).then(() => undefined);

  const apps: HttpListener[] = [];
  const closeAll = async () => {
    await Promise.allSettled(apps.map((a) => a.close()));
    for (const r of roles.values()) r.cache.close();
    for (const c of stsClients.values()) c.destroy();
    for (const s of sources) await s.close?.();
  };

  try {
    let containerSecret: ContainerSecret | undefined;
    if (config.authTokenFile) {
      const loaded = await ContainerSecret.load(config.authTokenFile);
      containerSecret = loaded.secret;
      log.info({ authTokenFile: config.authTokenFile, generated: loaded.generated }, loaded.generated ? 'container endpoint secret generated' : 'container endpoint secret loaded');
    }

    const bound: Array<ListenAddress & { role: string }> = [];
    for (const listener of config.listeners) {
      const role = roles.get(listener.role)!;
      const app = buildCredentialListener({
        address: listener,
        allowedHosts: config.allowedHosts,
        context: { role, roles, sessionTokens: new SessionTokenIssuer(clock), containerSecret, allowImdsV1: config.allowImdsV1 },
        metrics,
        logger: log.child({ listener: formatAddress(listener) }),
      });
      apps.push(app);
      const port = await app.listen(listener);
      bound.push({ host: listener.host, port, role: listener.role });
      log.info({ address: formatAddress({ host: listener.host, port }), role: listener.role, imdsV1: config.allowImdsV1, containerEndpoint: containerSecret !== undefined }, 'credential listener open');
    }

    let admin: ListenAddress | null = null;
    if (config.admin) {
      const app = buildAdminListener({ metrics, roleStatuses, logger: log.child({ listener: 'admin' }) });
      apps.push(app);
      admin = { host: config.admin.host, port: await app.listen(config.admin) };
      log.info({ address: formatAddress(admin) }, 'admin listener open (/healthz, /readyz, /metrics)');
    }
    log.info({ httpsProxy: config.sts.httpsProxy !== undefined, caBundle: config.sts.caBundlePath ?? null }, 'STS connection settings');

    return { listeners: bound, admin, roles, metrics, firstFetch, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
