import type { Logger } from 'pino';
import { RoleCredentialCache } from '../cache/role-credential-cache.js';
import type { Config, RoleConfig, StsConnectionConfig } from '../config/config.js';
import { type Clock, type RandomSource, systemClock, systemRandom } from '../core/clock.js';
import type { ListenAddress } from '../core/listen-address.js';
import { formatAddress } from '../core/listen-address.js';
import { isLoopbackHost } from '../core/url-checks.js';
import type { HttpListener } from '../http/listener.js';
import { MAX_CONCURRENT_STS_REQUESTS } from '../platform/aws/sts-http-handler.js';
import { roleExchangeFor, type WebIdentityStep, webIdentityStepFor, webIdentityStepKey } from '../roles/role-chain.js';
import { openStsConnection, otherCloudStsEndpoint, type StsConnection, stsConnectionKey } from '../roles/web-identity-role.js';
import { createTokenSource } from '../sources/create-token-source.js';
import type { SourceWarning } from '../sources/source-warnings.js';
import { Turns } from '../util/turns.js';
import { buildAdminListener } from './admin-listener.js';
import { ContainerSecret } from './container-secret.js';
import { buildCredentialListener } from './credential-listener.js';
import { Metrics } from './metrics.js';
import { SessionTokenIssuer } from './session-tokens.js';

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
  readonly roles: ReadonlyMap<string, DaemonRole>;
  readonly metrics: Metrics;
  /** Resolves when every role's first fetch has finished (successfully or not). */
  readonly firstFetch: Promise<void>;
  /** Applies a new configuration without dropping cached credentials (SIGHUP); see ReloadSummary. */
  reload(next: Config): Promise<ReloadSummary>;
  /** Stops accepting, lets in-flight requests finish, stops refreshing. */
  close(): Promise<void>;
}

/**
 * Wires the layers together for `crosscred serve`: sources → exchange → cache → server.
 * The listeners are bound first and the first fetch starts right after, before the event loop can
 * hand them a request: a start-up that cannot bind (port in use) fails with that cause alone,
 * without an exchange begun and then cut off, and the first SDK request finds the fetch in flight.
 */
export async function startDaemon(config: Config, deps: DaemonDependencies): Promise<RunningDaemon> {
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? systemRandom;
  const log = deps.logger;

  // One STS client per distinct (region, endpoint, connection settings): roles that share it share
  // its connection pool. A reload that changes the settings gets new clients; old ones are
  // destroyed once no role uses them.
  const stsClients = new Map<string, { connection: StsConnection; close(): void; turns: Turns; users: number }>();
  // One web-identity step per distinct hub of the chained roles (webIdentityStepKey): chains that
  // start at the same hub with the same token share its session and its token source.
  const hubs = new Map<string, { step: WebIdentityStep; source: ReturnType<typeof createTokenSource>; users: number }>();
  const roles = new Map<string, RunningRole>();
  const served = new Map<string, DaemonRole>();
  const roleStatuses = () => [...served.values()].map((r) => r.cache.status());
  const metrics = new Metrics(roleStatuses);
  let current = config;

  /** Builds a role's source, exchange and cache (not started). */
  const buildRole = (role: RoleConfig, sts: StsConnectionConfig): RunningRole => {
    const clientKey = stsConnectionKey(role, sts);
    let shared = stsClients.get(clientKey);
    if (!shared) {
      shared = { ...openStsConnection(role, sts), turns: new Turns(MAX_CONCURRENT_STS_REQUESTS), users: 0 };
      stsClients.set(clientKey, shared);
    }
    shared.users++;
    const hubKey = webIdentityStepKey(role, clientKey);
    // The token source of a shared hub outlives the role that built it: its lines name the hub.
    const whose = hubKey === undefined ? { role: role.name } : { hub: role.roleArn };
    // Debug only, and masked: a vendor CLI's stderr can hold its refresh token and client secret.
    const tokenCommandStderr = (masked: string) => log.debug({ ...whose, stderr: masked }, 'token command wrote to stderr');
    // What a source learns at first use (an instance's metadata open to token-less reads) is a
    // warning in the log, never a failure.
    const sourceWarning = (w: SourceWarning) => log.warn({ ...whose, code: w.code, fix: w.fix }, w.message);
    let hub = hubKey === undefined ? undefined : hubs.get(hubKey);
    const source = hub?.source ?? createTokenSource(role.token.source, clock, { tokenCommandStderr, sourceWarning, stsTransport: sts });
    if (hubKey !== undefined && !hub) {
      hub = { step: webIdentityStepFor(role, source, shared.connection, clock), source, users: 0 };
      hubs.set(hubKey, hub);
    }
    if (hub) hub.users++;
    const exchange = roleExchangeFor(role, source, shared.connection, clock, hub ? { firstStep: hub.step } : {});
    // An ExpiredToken answer costs a second STS call, and a chain one more per hop (and, when a hop
    // finds its caller expired, a second run); each call is bounded by the transport's timeouts.
    const chain = role.cloud === 'aws' ? (role.chain ?? []) : [];
    const hops = chain.length;
    const exchangeTimeoutMs = (2 + 2 * hops) * (sts.connectTimeoutMs + sts.responseTimeoutMs) + EXCHANGE_SLACK_MS;
    const cache = new RoleCredentialCache({ exchange, clock, random, logger: log, observer: metrics, exchangeTimeoutMs, turns: shared.turns });
    log.info(
      {
        role: role.name,
        roleArn: role.roleArn,
        sessionName: role.sessionName,
        region: role.region,
        cloud: role.cloud,
        stsEndpoint: role.cloud === 'aws' ? (role.stsEndpoint ?? `regional (sts.${role.region}.amazonaws.com)`) : otherCloudStsEndpoint(role),
        durationSeconds: role.durationSeconds ?? 'role default',
        // The hops' roles only: a session policy or tag value is never logged.
        ...(hops > 0 ? { chain: chain.map((hop) => hop.roleArn) } : {}),
      },
      'role configured',
    );
    log.info({ role: role.name, source: source.description, why: role.token.reason }, `token source: ${source.description}`);
    for (const note of role.token.notes) log.info({ role: role.name }, note);
    const release = async () => {
      cache.close();
      if (!hub) await source.close?.();
      else if (--hub.users === 0) {
        await source.close?.();
        hubs.delete(hubKey!);
      }
      if (--shared.users === 0) {
        shared.close();
        stsClients.delete(clientKey);
      }
    };
    return { served: { config: role, cache }, sts, release };
  };

  for (const role of config.roles) {
    const built = buildRole(role, config.sts);
    roles.set(role.name, built);
    served.set(role.name, built.served);
  }

  const listeners: HttpListener[] = [];
  /** Child loggers keep the level they were made with; a reload sets it on each. */
  const listenerLoggers: Logger[] = [];
  const closeAll = async () => {
    await Promise.allSettled(listeners.map((l) => l.close()));
    for (const r of roles.values()) await r.release();
    roles.clear();
  };

  /**
   * Applies a new configuration (SIGHUP). Roles whose settings did not change keep their cache and
   * go on serving without a pause. A changed or added role is fetched first and swapped in once
   * that fetch has finished, so the old credentials are served until then. A changed role whose
   * first fetch is refused (a wrong ExternalId, a trust policy not updated yet: a terminal failure)
   * while the old one holds valid credentials is not swapped in: the old one keeps serving and the
   * summary says so. Settings that belong to
   * an open socket (listen and admin addresses, the container secret, IMDSv1, accepted Host names)
   * need a restart; a change to them is reported and otherwise ignored.
   */
  const reload = async (next: Config): Promise<ReloadSummary> => {
    const restartNeeded: string[] = [];
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    if (!same(next.listeners, current.listeners)) restartNeeded.push('listen');
    if (!same(next.admin, current.admin)) restartNeeded.push('admin-listen');
    if (next.authTokenFile !== current.authTokenFile) restartNeeded.push('auth-token-file');
    if (next.allowImdsV1 !== current.allowImdsV1) restartNeeded.push('allow-imdsv1');
    if (next.imdsEnabled !== current.imdsEnabled) restartNeeded.push('disable-imds');
    if (!same(next.allowedHosts, current.allowedHosts)) restartNeeded.push('allowed-host');

    const unchanged: string[] = [];
    const replaced: string[] = [];
    const added: string[] = [];
    const removed: string[] = [];
    const kept: string[] = [];
    const keptPrevious: string[] = [];
    const pending: Array<Promise<void>> = [];
    const listenedRoles = new Set(current.listeners.map((l) => l.role));
    const cloudChanged: string[] = [];
    for (const role of next.roles) {
      const old = roles.get(role.name);
      if (old && same(old.served.config, role) && same(old.sts, next.sts)) {
        unchanged.push(role.name);
        continue;
      }
      if (old && old.served.config.cloud !== role.cloud && listenedRoles.has(role.name)) {
        // A listener speaks its role's cloud (its routes are built at start): swapping in another
        // cloud's credentials would leave it answering 503. The old role keeps serving.
        cloudChanged.push(role.name);
        continue;
      }
      (old ? replaced : added).push(role.name);
      const built = buildRole(role, next.sts);
      pending.push(
        built.served.cache.start().then(async () => {
          const failure = built.served.cache.status().lastError;
          // Only a refusal keeps the old role: a transient failure (throttling, a 5xx, the network)
          // would have left the new settings dropped for nothing; the new role retries on its own.
          if (old && failure?.kind === 'terminal' && built.served.cache.current() === undefined && old.served.cache.current() !== undefined) {
            keptPrevious.push(`${role.name} (${failure.code})`);
            replaced.splice(replaced.indexOf(role.name), 1);
            await built.release();
            return;
          }
          roles.set(role.name, built);
          served.set(role.name, built.served);
          await old?.release();
        }),
      );
    }
    for (const name of roles.keys()) {
      if (next.roles.some((r) => r.name === name)) continue;
      if (listenedRoles.has(name)) {
        // A listener still serves it; dropping it would leave that IMDS with nothing to serve.
        kept.push(name);
        continue;
      }
      removed.push(name);
      const old = roles.get(name)!;
      roles.delete(name);
      served.delete(name);
      await old.release();
    }
    if (kept.length > 0) restartNeeded.push(`roles still served by a listener (${kept.join(', ')})`);
    if (cloudChanged.length > 0) restartNeeded.push(`roles whose cloud changed, served by a listener (${cloudChanged.join(', ')})`);
    await Promise.all(pending);
    for (const logger of [log, ...listenerLoggers]) logger.level = next.logLevel;
    current = next;
    return { unchanged, replaced, added, removed, keptPrevious, restartNeeded };
  };

  const listenerLogger = (name: string) => {
    const child = log.child({ listener: name });
    listenerLoggers.push(child);
    return child;
  };

  try {
    let containerSecret: ContainerSecret | undefined;
    if (config.authTokenFile) {
      const loaded = await ContainerSecret.load(config.authTokenFile);
      containerSecret = loaded.secret;
      log.info(
        { authTokenFile: config.authTokenFile, generated: loaded.generated },
        loaded.generated ? 'container endpoint secret generated' : 'container endpoint secret loaded',
      );
    }

    const bound: Array<ListenAddress & { role: string }> = [];
    for (const listener of config.listeners) {
      const app = buildCredentialListener({
        address: listener,
        allowedHosts: config.allowedHosts,
        context: {
          roleName: listener.role,
          roles: served,
          sessionTokens: new SessionTokenIssuer(clock),
          containerSecret,
          allowImdsV1: config.allowImdsV1,
          imdsEnabled: config.imdsEnabled,
          loopback: isLoopbackHost(listener.host),
        },
        metrics,
        logger: listenerLogger(formatAddress(listener)),
      });
      listeners.push(app);
      const port = await app.listen(listener);
      bound.push({ host: listener.host, port, role: listener.role });
      log.info(
        {
          address: formatAddress({ host: listener.host, port }),
          role: listener.role,
          imds: config.imdsEnabled ? (config.allowImdsV1 ? 'v1 and v2' : 'v2') : 'off',
          containerEndpoint: containerSecret !== undefined,
        },
        'credential listener open',
      );
    }

    let admin: ListenAddress | null = null;
    if (config.admin) {
      const app = buildAdminListener({
        address: config.admin,
        allowedHosts: config.allowedHosts,
        metrics,
        roleStatuses,
        logger: listenerLogger('admin'),
      });
      listeners.push(app);
      admin = { host: config.admin.host, port: await app.listen(config.admin) };
      log.info({ address: formatAddress(admin) }, 'admin listener open (/healthz, /readyz, /metrics)');
    }
    log.info({ httpsProxy: config.sts.httpsProxy !== undefined, caBundle: config.sts.caBundlePath ?? null }, 'STS connection settings');
    // Right after the last bind, with no I/O turn between (binding an IP address completes on
    // process.nextTick): no request can have been read before the fetch is in flight.
    const firstFetch = Promise.all([...served.values()].map((r) => r.cache.start())).then(() => undefined);

    return {
      listeners: bound,
      admin,
      roles: served,
      metrics,
      firstFetch,
      reload,
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** A role as the daemon runs it: what the listeners serve, and how to stop it. */
interface RunningRole {
  readonly served: DaemonRole;
  /** The STS connection settings its client was made with. */
  readonly sts: StsConnectionConfig;
  /** Stops its refreshes and releases its token source and (when unused) its STS client. */
  release(): Promise<void>;
}

/**
 * A role as the daemon runs it: its configuration and its concrete cache (started, refreshed and
 * closed here). The listeners are handed the same entries as ServedRole, which sees the cache only
 * through the CredentialResolver port.
 */
export interface DaemonRole {
  readonly config: RoleConfig;
  readonly cache: RoleCredentialCache;
}

/** What a reload did, by role name; `restartNeeded` names changed settings that were not applied. */
export interface ReloadSummary {
  readonly unchanged: readonly string[];
  /** Changed roles whose new settings got no credentials at their first fetch: the old ones keep serving (`name (code)`). */
  readonly keptPrevious: readonly string[];
  readonly replaced: readonly string[];
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly restartNeeded: readonly string[];
}
