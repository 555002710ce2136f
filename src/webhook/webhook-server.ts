import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Logger } from 'pino';
import { type Clock, systemClock } from '../core/clock.js';
import { formatAddress, type ListenAddress } from '../core/listen-address.js';
import { HttpListener } from '../http/listener.js';
import { refusalAnswer } from '../http/refusals.js';
import { readBody } from '../http/request-body.js';
import { APPLICATION_JSON, refuse, send, sendError, TEXT_PLAIN } from '../http/responses.js';
import { pathOf } from '../http/route-table.js';
import { readTlsPair, TlsFileWatcher } from '../http/tls-files.js';
import { admissionAnswer, admissionReviewSchema, describeSchemaProblem, jsonShapeProblem } from '../platform/kubernetes/admission-review.js';
import { ServiceAccountReader } from '../platform/kubernetes/service-accounts.js';
import { Turns } from '../util/turns.js';
import { type AdmissionContext, admit, type ServiceAccountSource } from './admission.js';
import type { WebhookConfig } from './webhook-config.js';
import { WebhookMetrics } from './webhook-metrics.js';

/**
 * `crosscred webhook`: `POST /mutate` over HTTPS for the API server's AdmissionReviews, and a
 * plain-HTTP admin listener with /healthz, /readyz and /metrics for the kubelet and Prometheus.
 */

export const MUTATE_PATH = '/mutate';

/**
 * Largest AdmissionReview read, in bytes. The review carries the Pod (at most etcd's 1.5 MiB) and,
 * for updates, the old one too: 3 MiB holds both; a larger body is answered 413 unread.
 */
export const MAX_REVIEW_BYTES = 3 * 1024 * 1024;
/** The whole body must arrive within this, in ms: the API server's own budget is timeoutSeconds (5 s in our manifest). */
const BODY_READ_TIMEOUT_MS = 5_000;
/** A ServiceAccount GET is given this long (ms), so the answer still fits in the API server's 5 s. */
export const SERVICE_ACCOUNT_LOOKUP_TIMEOUT_MS = 2_000;
/** Admissions worked on at once; more wait their turn, up to the budget below. */
const MAX_CONCURRENT_ADMISSIONS = 32;
/**
 * Longest wait for a turn, in ms; past it the review is answered 503 and the API server applies
 * failurePolicy (Fail: the pod is retried). Plus the 2 s lookup, the answer fits the 5 s timeoutSeconds.
 */
const ADMISSION_QUEUE_BUDGET_MS = 2_000;
/** The API server holds a few connections per replica; this bounds what anything else can hold. */
const MAX_CONNECTIONS = 512;
/** A real review nests about 15 levels and holds a few thousand values; these only stop what no API server sends. */
const REVIEW_SHAPE_LIMITS = { maxDepth: 100, maxValues: 200_000 };
/** Files re-read at least this often, whatever the directory watch says, in ms. */
const TLS_POLL_INTERVAL_MS = 10_000;

export interface WebhookDependencies {
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Replaces the API client (unit tests); default: a ServiceAccountReader on config.kube. */
  readonly serviceAccounts?: ServiceAccountSource;
  readonly tlsPollIntervalMs?: number;
}

export interface RunningWebhook {
  readonly address: ListenAddress;
  readonly admin: ListenAddress;
  readonly metrics: WebhookMetrics;
  /** Certificates installed since start. */
  tlsReloads(): number;
  close(): Promise<void>;
}

/** `application/json`, with or without parameters (`; charset=utf-8`). */
function isJson(contentType: string | undefined): boolean {
  return contentType !== undefined && /^application\/json\s*(;|$)/i.test(contentType.trim());
}

export async function startWebhook(config: WebhookConfig, deps: WebhookDependencies): Promise<RunningWebhook> {
  const log = deps.logger;
  const clock = deps.clock ?? systemClock;
  const metrics = new WebhookMetrics();
  const reader =
    deps.serviceAccounts === undefined
      ? new ServiceAccountReader({
          apiServer: config.kube.apiServer,
          tokenFile: config.kube.tokenFile,
          caFile: config.kube.caFile,
          cacheSeconds: config.serviceAccountCacheSeconds,
          requestTimeoutMs: SERVICE_ACCOUNT_LOOKUP_TIMEOUT_MS,
          clock,
        })
      : undefined;
  const context: AdmissionContext = {
    serviceAccounts: deps.serviceAccounts ?? reader!,
    defaultMode: config.defaultMode,
    patch: {
      ipFamily: config.ipFamily,
      ...(config.region !== undefined ? { region: config.region } : {}),
      ...(config.sidecarImage !== undefined ? { sidecarImage: config.sidecarImage } : {}),
    },
    log,
    onLookup: (source) => metrics.serviceAccountLookup(source),
  };
  const turns = new Turns(MAX_CONCURRENT_ADMISSIONS);

  /** A request answered without a review: malformed (`invalid`), or the webhook cannot take it now (`busy`, `error`). */
  const fail = (res: ServerResponse, status: number, message: string, headers?: readonly string[]) => {
    log.debug({ status, reason: message }, 'review refused');
    res.shouldKeepAlive = false;
    const name = status === 503 ? 'OVERLOADED' : status === 500 ? 'INTERNAL_ERROR' : 'REQUEST_INVALID';
    sendError(res, name, message, 'json', { status, ...(headers ? { headers } : {}) });
    metrics.admitted(status === 503 ? 'busy' : status === 500 ? 'error' : 'invalid', undefined);
  };

  const mutate = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'POST') return fail(res, 405, `${MUTATE_PATH} answers POST only`, ['allow', 'POST']);
    if (!isJson(req.headers['content-type'])) return fail(res, 415, 'send the AdmissionReview as Content-Type application/json');
    const read = await readBody(req, MAX_REVIEW_BYTES, BODY_READ_TIMEOUT_MS);
    if (!('body' in read)) {
      if (read.failure === 'too-large') return fail(res, 413, `the AdmissionReview exceeds ${MAX_REVIEW_BYTES} bytes`);
      if (read.failure === 'timeout') return fail(res, 408, `the AdmissionReview did not arrive within ${BODY_READ_TIMEOUT_MS} ms`);
      res.destroy();
      return;
    }
    const started = clock.monotonicNow();
    let value: unknown;
    try {
      value = JSON.parse(read.body.toString('utf8'));
    } catch {
      return fail(res, 400, 'the body is not JSON');
    }
    const shape = jsonShapeProblem(value, REVIEW_SHAPE_LIMITS);
    if (shape !== undefined) return fail(res, 400, shape);
    const parsed = admissionReviewSchema.safeParse(value);
    if (!parsed.success) return fail(res, 400, `not an admission.k8s.io/v1 AdmissionReview: ${describeSchemaProblem(parsed.error)}`);

    const budget = AbortSignal.timeout(ADMISSION_QUEUE_BUDGET_MS);
    try {
      await turns.take(budget);
    } catch {
      log.warn('too many admissions at once; one was refused to be retried');
      return fail(res, 503, 'the webhook is busy; the API server retries', ['retry-after', '1']);
    }
    try {
      const outcome = await admit(parsed.data, context);
      if (outcome.kind === 'invalid') return fail(res, 400, outcome.problem);
      send(res, 200, APPLICATION_JSON, Buffer.from(JSON.stringify(admissionAnswer(outcome.response))));
      metrics.admitted(outcome.result, (clock.monotonicNow() - started) / 1000);
    } finally {
      turns.give();
    }
  };

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    if (pathOf(req.url) !== MUTATE_PATH) {
      res.shouldKeepAlive = false;
      sendError(res, 'NOT_FOUND', `the webhook serves ${MUTATE_PATH} only (health and metrics are on the admin listener)`, 'json');
      metrics.admitted('invalid', undefined);
      return;
    }
    mutate(req, res).catch((err: unknown) => {
      log.error({ errorName: (err as Error)?.name }, 'unexpected error while answering an AdmissionReview');
      if (!res.headersSent) fail(res, 500, 'internal error');
      else res.destroy();
    });
  };

  const tls = await readTlsPair(config.tls.certFile, config.tls.keyFile, { privateKey: false });
  const listener = new HttpListener({
    handler,
    refuse: (_req, res, why) => {
      const answer = refusalAnswer(why, { maxRequestBodyBytes: MAX_REVIEW_BYTES, readsBodies: true });
      sendError(res, answer.name, answer.message, 'json', { status: answer.status, ...(answer.headers ? { headers: answer.headers } : {}) });
      metrics.admitted(answer.busy ? 'busy' : 'invalid', undefined);
    },
    tls,
    maxRequestBodyBytes: MAX_REVIEW_BYTES,
    maxConnections: MAX_CONNECTIONS,
  });
  const port = await listener.listen(config.listen);
  const address = { host: config.listen.host, port };

  // The key sits in a Secret volume, whose mode and owner the kubelet sets (defaultMode, fsGroup):
  // the issuer's "0600 and ours" rule would refuse every ordinary mount, so it is not applied.
  const watcher = new TlsFileWatcher({
    certFile: config.tls.certFile,
    keyFile: config.tls.keyFile,
    privateKey: false,
    current: tls,
    pollIntervalMs: deps.tlsPollIntervalMs ?? TLS_POLL_INTERVAL_MS,
    onChange: (pair) => {
      (listener.server as unknown as HttpsServer).setSecureContext({ key: pair.key, cert: pair.cert, minVersion: 'TLSv1.2' });
      log.info({ certFile: config.tls.certFile }, 'TLS certificate reloaded; new connections use it');
    },
    onError: (err) => log.warn({ reason: (err as Error).message }, 'TLS files changed but are not a usable pair yet; still serving the previous certificate'),
  });

  let closing = false;
  const admin = buildAdminListener(metrics, () => !closing, log);
  let adminPort: number;
  try {
    adminPort = await admin.listen(config.adminListen);
  } catch (err) {
    watcher.close();
    await listener.close();
    throw err;
  }
  log.info(
    { address: formatAddress(address), admin: formatAddress({ host: config.adminListen.host, port: adminPort }), defaultMode: config.defaultMode },
    'webhook listening',
  );

  return {
    address,
    admin: { host: config.adminListen.host, port: adminPort },
    metrics,
    tlsReloads: () => watcher.reloads,
    async close() {
      closing = true;
      watcher.close();
      await Promise.all([listener.close(), admin.close()]);
      await reader?.close();
    },
  };
}

const OK = Buffer.from('ok\n');

/**
 * /healthz (the process answers), /readyz (200 while serving, 503 once stopping, so the Service
 * stops sending reviews before the listener closes) and /metrics. Nothing here is secret: the
 * webhook holds no credentials.
 */
function buildAdminListener(metrics: WebhookMetrics, ready: () => boolean, log: Logger): HttpListener {
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const path = pathOf(req.url);
    if (path !== '/healthz' && path !== '/readyz' && path !== '/metrics')
      return sendError(res, 'NOT_FOUND', 'the admin listener serves /healthz, /readyz and /metrics only', 'text');
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return sendError(res, 'METHOD_NOT_ALLOWED', 'admin paths answer GET and HEAD only', 'text', { headers: ['allow', 'GET, HEAD'] });
    if (path === '/healthz') return send(res, 200, TEXT_PLAIN, OK);
    if (path === '/readyz') return ready() ? send(res, 200, TEXT_PLAIN, OK) : send(res, 503, TEXT_PLAIN, Buffer.from('stopping\n'));
    metrics.registry.metrics().then(
      (body) => send(res, 200, metrics.registry.contentType, Buffer.from(body)),
      (err: unknown) => {
        log.error({ errorName: (err as Error)?.name }, 'metrics could not be rendered');
        res.destroy();
      },
    );
  };
  return new HttpListener({ handler: handle, refuse: (_req, res, why) => refuse(res, why, 'text') });
}
