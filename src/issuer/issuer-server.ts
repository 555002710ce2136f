import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Logger } from 'pino';
import { type Clock, systemClock } from '../core/clock.js';
import type { ListenAddress } from '../core/listen-address.js';
import { formatAddress } from '../core/listen-address.js';
import { HTTP_LIMITS } from '../http/limits.js';
import { HttpListener } from '../http/listener.js';
import { type Refusal, refusalAnswer } from '../http/refusals.js';
import { APPLICATION_JSON, refuse as refuseRequest, send, sendError, TEXT_PLAIN } from '../http/responses.js';
import { pathOf } from '../http/route-table.js';
import { readTlsFile } from '../http/tls-files.js';
import { ISSUER_PATHS, type SubjectTokenType } from '../protocol/issuer-token-exchange.js';
import { AttestationPools, ClientAdmission, poolSizes } from './admission.js';
import type { Attestor } from './attestor.js';
import { createAttestors } from './attestors/index.js';
import { type DiscoveryDocuments, renderDiscovery } from './discovery.js';
import type { IssuerConfig } from './issuer-config.js';
import { IssuerMetrics } from './issuer-metrics.js';
import { loadKeySet } from './keys.js';
import { IssuerPolicy } from './policy.js';
import { createStateStore, DEFAULT_STATE } from './state/create-state-store.js';
import { MemoryStateStore } from './state/memory-store.js';
import type { StateStore } from './state/ports.js';
import { MAX_TENANT_SHARE } from './state-keys.js';
import { type IssuerState, MAX_TOKEN_REQUEST_BYTES, sendOAuthError, TokenEndpoint } from './token-endpoint.js';

/**
 * `crosscred issuer serve`: discovery, JWKS and the token endpoint on one listener (HTTPS when a
 * certificate is configured), `/healthz` and `/metrics` on an admin listener. Stateless apart from
 * the replay guard and rate limiter in memory, so replicas can serve behind a load balancer.
 */

export interface IssuerDependencies {
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Builds the attestors for a configuration; tests pass fakes. Default: createAttestors. */
  readonly createAttestors?: (config: IssuerConfig) => Promise<ReadonlyMap<SubjectTokenType, Attestor>>;
}

export interface RunningIssuer {
  readonly address: ListenAddress;
  readonly admin: ListenAddress | null;
  readonly metrics: IssuerMetrics;
  /** The discovery documents being served now. */
  discovery(): DiscoveryDocuments;
  /**
   * Applies a new configuration's keys, audiences, lifetime, policy and attestors (and the TLS
   * certificate, re-read from its files). Listen addresses, TLS on/off, rate and replay bounds
   * need a restart: they are listed in the answer.
   */
  reload(next: IssuerConfig): Promise<{ restartNeeded: string[]; kids: string[]; activeKid: string }>;
  close(): Promise<void>;
}

const OK = Buffer.from('ok\n');
/** AWS and other relying parties may cache discovery and keys briefly; a rotation is seen within this, in s. */
const DISCOVERY_MAX_AGE_SECONDS = 300;

/** Everything built from a configuration that a reload swaps at once. */
async function buildState(config: IssuerConfig, deps: IssuerDependencies): Promise<{ state: IssuerState; discovery: DiscoveryDocuments }> {
  const keys = await loadKeySet(config.keys);
  const attestors = await (deps.createAttestors ?? createAttestors)(config);
  const state: IssuerState = {
    issuerUrl: config.publicUrl,
    keys,
    audiences: config.audiences,
    tokenLifetimeSeconds: config.tokenLifetimeSeconds,
    attestationTimeoutMs: config.attestationTimeoutMs,
    policy: new IssuerPolicy(config.policy),
    attestors,
  };
  return { state, discovery: renderDiscovery({ issuerUrl: config.publicUrl, tokenEndpointUrl: config.tokenEndpointUrl, keys }) };
}

async function readTls(config: IssuerConfig): Promise<{ key: Buffer; cert: Buffer } | undefined> {
  if (!config.tls) return undefined;
  const { certFile, keyFile } = config.tls;
  const [cert, key] = await Promise.all([readTlsFile('certificate', certFile, false), readTlsFile('key', keyFile, true)]);
  return { key, cert };
}

/** The path part of a URL without a trailing slash ('' for the root). */
function basePath(url: string): string {
  return new URL(url).pathname.replace(/\/$/, '');
}

export async function startIssuer(config: IssuerConfig, deps: IssuerDependencies): Promise<RunningIssuer> {
  const clock = deps.clock ?? systemClock;
  const log = deps.logger;
  let current = await buildState(config, deps);
  let currentConfig = config;
  const admission = new ClientAdmission(config.clientRateLimit);
  // The listener is made after the metrics it reports to; until then it has refused nothing.
  let refusedConnections = () => 0;
  const pools = new AttestationPools(poolSizes(config.maxConcurrentAttestations));
  // One store for the replay claims, rate limits and first-use bindings, whichever the setting:
  // with state: memory they live in this process and are forgotten when it stops.
  const memory = config.state === DEFAULT_STATE ? memoryState(config) : undefined;
  const stateStore = memory ?? (await openSharedState(config.state, log));
  const metrics = new IssuerMetrics({
    // Counted in memory only: Redis's own INFO is where its tables are watched.
    ...(memory ? { replayEntries: () => memory.replay.table.size, rateLimitedIdentities: () => memory.rateLimits.table.size } : {}),
    attestationsInFlight: () => pools.inFlight,
    admissionClients: () => admission.size,
    stateReady: () => (stateStore.health().ready ? 1 : 0),
    connectionsRefusedPerAddress: () => refusedConnections(),
  });
  const endpoint = new TokenEndpoint({
    state: () => current.state,
    metrics,
    logger: log,
    clock,
    admission,
    pools,
    stateStore,
    rateLimit: config.rateLimit,
  });
  const tokenEndpoint = endpoint;

  // Routes are fixed at start: they follow publicUrl's and tokenEndpointUrl's paths, which a
  // reload cannot change (see reload()).
  const issuerBase = basePath(config.publicUrl);
  const discoveryPath = `${issuerBase}${ISSUER_PATHS.discovery}`;
  const jwksPath = `${issuerBase}${ISSUER_PATHS.jwks}`;
  const tokenPath = new URL(config.tokenEndpointUrl).pathname;

  const serveDocument = (req: IncomingMessage, res: ServerResponse, body: Buffer, route: string) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.shouldKeepAlive = false;
      sendError(res, 'ISSUER_METHOD_NOT_ALLOWED', `${route} answers GET and HEAD only`, 'text', { headers: ['allow', 'GET, HEAD'] });
      return metrics.requestAnswered(route, 405);
    }
    send(res, 200, APPLICATION_JSON, body, ['cache-control', `public, max-age=${DISCOVERY_MAX_AGE_SECONDS}`]);
    metrics.requestAnswered(route, 200);
  };

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const path = pathOf(req.url);
    if (path === tokenPath) {
      tokenEndpoint.handle(req, res).then(
        (status) => metrics.requestAnswered(ISSUER_PATHS.token, status),
        (err: unknown) => {
          log.error({ errorName: (err as Error)?.name }, 'unexpected error while answering a token request');
          res.destroy();
        },
      );
      return;
    }
    // Nothing but the token endpoint reads a body; a request that sent one is not reused.
    if (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') res.shouldKeepAlive = false;
    if (path === discoveryPath) return serveDocument(req, res, current.discovery.openidConfiguration, ISSUER_PATHS.discovery);
    if (path === jwksPath) return serveDocument(req, res, current.discovery.jwks, ISSUER_PATHS.jwks);
    if (path === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) {
      send(res, 200, TEXT_PLAIN, OK);
      return metrics.requestAnswered('/healthz', 200);
    }
    sendError(res, 'NOT_FOUND', 'the issuer serves its discovery document, JWKS, token endpoint and /healthz only', 'text');
    metrics.requestAnswered('other', 404);
  };

  // The one refusal table (src/http/refusals.ts), rendered as an OAuth error on the token endpoint
  // (whose clients parse one) and as text elsewhere.
  const refuse = (req: IncomingMessage, res: ServerResponse, why: Refusal) => {
    const onToken = pathOf(req.url) === tokenPath;
    const answer = refusalAnswer(why, { maxRequestBodyBytes: MAX_TOKEN_REQUEST_BYTES, readsBodies: onToken });
    const options = { status: answer.status, ...(answer.headers ? { headers: answer.headers } : {}) };
    if (onToken) sendOAuthError(res, answer.busy ? 'ISSUER_BUSY' : 'ISSUER_REQUEST_INVALID', answer.message, options);
    else sendError(res, answer.name, answer.message, 'text', options);
    metrics.requestAnswered(onToken ? ISSUER_PATHS.token : 'refused', answer.status);
  };

  const tls = await readTls(config);
  // The per-address cap applies only where the issuer terminates TLS itself: behind a
  // TLS-terminating load balancer (plain HTTP) every connection comes from the balancer.
  const listener = new HttpListener({
    handler,
    refuse,
    maxRequestBodyBytes: MAX_TOKEN_REQUEST_BYTES,
    ...(tls ? { tls, maxConnectionsPerAddress: HTTP_LIMITS.maxConnectionsPerAddress } : {}),
  });
  refusedConnections = () => listener.connectionsRefusedPerAddress;
  const port = await listener.listen(config.listen);
  const address = { host: config.listen.host, port };
  log.info(
    {
      address: formatAddress(address),
      tls: tls !== undefined,
      issuer: config.publicUrl,
      activeKid: current.state.keys.active.kid,
      kinds: current.state.policy.kinds,
    },
    'issuer listener open',
  );

  let admin: { listener: HttpListener; address: ListenAddress } | null = null;
  if (config.admin) {
    const adminListener = buildIssuerAdminListener(metrics, log);
    try {
      const adminPort = await adminListener.listen(config.admin);
      admin = { listener: adminListener, address: { host: config.admin.host, port: adminPort } };
    } catch (err) {
      await listener.close();
      throw err;
    }
    log.info({ address: formatAddress(admin.address) }, 'issuer admin listener open (/healthz, /metrics)');
  }

  return {
    address,
    admin: admin?.address ?? null,
    metrics,
    discovery: () => current.discovery,
    async reload(next) {
      const restartNeeded: string[] = [];
      if (formatAddress(next.listen) !== formatAddress(currentConfig.listen)) restartNeeded.push('listen');
      if (JSON.stringify(next.admin) !== JSON.stringify(currentConfig.admin)) restartNeeded.push('adminListen');
      if ((next.tls === undefined) !== (currentConfig.tls === undefined)) restartNeeded.push('tls');
      if (basePath(next.publicUrl) !== issuerBase || new URL(next.tokenEndpointUrl).pathname !== tokenPath)
        restartNeeded.push('publicUrl/tokenEndpointUrl paths');
      if (JSON.stringify(next.rateLimit) !== JSON.stringify(currentConfig.rateLimit)) restartNeeded.push('rateLimit');
      if (next.replayCacheEntries !== currentConfig.replayCacheEntries) restartNeeded.push('replayCacheEntries');
      if (JSON.stringify(next.clientRateLimit) !== JSON.stringify(currentConfig.clientRateLimit)) restartNeeded.push('clientRateLimit');
      if (next.maxConcurrentAttestations !== currentConfig.maxConcurrentAttestations) restartNeeded.push('maxConcurrentAttestations');
      if (next.state !== currentConfig.state) restartNeeded.push('state');
      const built = await buildState(next, deps);
      if (next.tls && currentConfig.tls) {
        const nextTls = await readTls(next);
        (listener.server as unknown as HttpsServer).setSecureContext({ key: nextTls!.key, cert: nextTls!.cert, minVersion: 'TLSv1.2' });
      }
      const previous = current;
      current = built;
      currentConfig = next;
      // Requests that started with the previous attestors may still use them until their deadline.
      const retire = setTimeout(() => void closeAttestors(previous.state.attestors, log), previous.state.attestationTimeoutMs + 1_000);
      retire.unref();
      return { restartNeeded, kids: built.state.keys.published.map((k) => k.kid), activeKid: built.state.keys.active.kid };
    },
    async close() {
      await Promise.all([listener.close(), admin?.listener.close()]);
      await closeAttestors(current.state.attestors, log);
      await stateStore.close();
    },
  };
}

/**
 * The in-process state of `state: memory`, bounded as configured: `replayCacheEntries` claims and
 * `rateLimit.maxIdentities` buckets in all, of which one account (a tenant) may hold half.
 */
function memoryState(config: IssuerConfig): MemoryStateStore {
  const share = (n: number) => Math.max(1, Math.floor(n * MAX_TENANT_SHARE));
  return new MemoryStateStore({
    maxClaims: config.replayCacheEntries,
    maxClaimsPerTenant: share(config.replayCacheEntries),
    maxBuckets: config.rateLimit.maxIdentities,
    maxBucketsPerTenant: share(config.rateLimit.maxIdentities),
  });
}

/**
 * The replay set and rate limits shared by the replicas (`state: redis://…`). Its health is logged
 * as it changes: while it does not answer, token requests fail closed (503), and they are served
 * again as soon as it answers, without a restart.
 */
async function openSharedState(spec: string, log: Logger): Promise<StateStore> {
  const holder: { store?: StateStore } = {};
  const store = await createStateStore(spec, {
    onHealthChange: (health) => {
      const where = holder.store?.description ?? 'the shared state';
      if (health.ready) log.info({ state: where }, 'shared state answers: replay and rate-limit checks resume');
      else log.error({ state: where, problem: health.problem }, 'shared state does not answer: token requests fail closed (503) until it does');
    },
  });
  holder.store = store;
  log.info({ state: store.description }, 'replay set and rate limits are shared (state)');
  // Before the listener opens: a replica a load balancer sends traffic to as soon as its port
  // accepts would otherwise answer its first requests 503 while it connects. A store that is still
  // down after the wait is not waited for: requests fail closed until it answers.
  const until = Date.now() + STATE_STARTUP_WAIT_MS;
  while (!store.health().ready && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
  if (!store.health().ready) log.warn({ state: store.description, waitedMs: STATE_STARTUP_WAIT_MS }, 'starting before the shared state answers');
  return store;
}

/** How long a starting replica waits for its shared state before it opens its listener anyway, in ms. */
const STATE_STARTUP_WAIT_MS = 5_000;

/** Lets replaced attestors release their connection pools (each finishes the calls it has in flight). */
async function closeAttestors(attestors: ReadonlyMap<SubjectTokenType, Attestor>, log: Logger): Promise<void> {
  await Promise.all(
    [...attestors.values()].map((a) =>
      a.close?.().catch((err: unknown) => {
        log.warn({ kind: a.subjectTokenType, errorName: (err as Error)?.name }, 'an attestor did not close cleanly');
      }),
    ),
  );
}

/** `/healthz`, `/readyz` (the same: an issuer that runs has its keys) and `/metrics`. */
function buildIssuerAdminListener(metrics: IssuerMetrics, log: Logger): HttpListener {
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const path = pathOf(req.url);
    if (path !== '/healthz' && path !== '/readyz' && path !== '/metrics')
      return sendError(res, 'NOT_FOUND', 'the issuer admin listener serves /healthz, /readyz and /metrics only', 'text');
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return sendError(res, 'METHOD_NOT_ALLOWED', 'admin paths answer GET and HEAD only', 'text', { headers: ['allow', 'GET, HEAD'] });
    if (path !== '/metrics') return send(res, 200, TEXT_PLAIN, OK);
    metrics.registry.metrics().then(
      (body) => send(res, 200, metrics.registry.contentType, Buffer.from(body)),
      (err: unknown) => {
        log.error({ errorName: (err as Error)?.name }, 'cannot render metrics');
        if (!res.headersSent) res.writeHead(500, ['content-type', TEXT_PLAIN]).end('internal error\n');
      },
    );
  };
  return new HttpListener({
    handler: handle,
    refuse: (_req, res, why) => refuseRequest(res, why, 'text'),
  });
}
