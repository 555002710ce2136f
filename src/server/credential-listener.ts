import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { ListenAddress } from '../config/config.js';
import type { Metrics } from '../observability/metrics.js';
import { registerContainerRoutes } from './container-routes.js';
import { HostGuard } from './host-guard.js';
import { registerImdsRoutes } from './imds-routes.js';
import { sendError, type ListenerContext } from './listener-context.js';

/** Limits for untrusted clients; nothing a credential client sends comes near them. */
const LIMITS = {
  /** Credential requests carry no body; a small allowance keeps odd clients working. */
  bodyLimit: 1024,
  /** Longest role name (64) plus room; a longer path parameter is answered 414 without further work. */
  maxParamLength: 128,
  /** A client must send its whole request within this time (slow-loris protection), in ms. */
  requestTimeout: 10_000,
  /** Idle keep-alive connections are closed after this long, in ms. */
  keepAliveTimeout: 5_000,
} as const;

export interface CredentialListenerOptions {
  readonly address: ListenAddress;
  readonly allowedHosts: readonly string[];
  readonly context: ListenerContext;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

/**
 * One credential listener: the IMDS and container endpoints for one address. It only adapts
 * HTTP to the cache; it never refreshes anything itself.
 */
export function buildCredentialListener(options: CredentialListenerOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    // No per-request child logger: creating one (bindings, redaction set-up) cost about 3% of the
    // hot path in the benchmark profile, and these handlers log only rare refusals.
    childLoggerFactory: (logger) => logger,
    bodyLimit: LIMITS.bodyLimit,
    requestTimeout: LIMITS.requestTimeout,
    keepAliveTimeout: LIMITS.keepAliveTimeout,
    return503OnClosing: true,
    // Requests the router itself rejects (a bad percent-encoding, an over-long parameter) get the
    // same error format as everything else, and never an echo of the URL.
    frameworkErrors: (err, req, reply) => {
      const name = err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'PATH_TOO_LONG' : 'REQUEST_INVALID';
      void sendError(reply, name, name === 'PATH_TOO_LONG' ? 'a path segment is too long' : 'the request URL is malformed', formatFor(req.url));
    },
    routerOptions: { maxParamLength: LIMITS.maxParamLength, caseSensitive: true, ignoreTrailingSlash: false, ignoreDuplicateSlashes: false },
  });

  // Bodies are never used: accept and ignore any content type rather than parsing attacker JSON.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: LIMITS.bodyLimit }, (_req, _body, done) => done(null, undefined));

  const hostGuard = new HostGuard(options.address, options.allowedHosts);
  app.addHook('onRequest', (req, reply, done) => {
    if (!hostGuard.allows(req.headers.host)) {
      req.log.debug({ route: req.routeOptions.url ?? 'unmatched' }, 'refused a request for a foreign Host');
      void sendError(reply, 'HOST_FORBIDDEN', 'Host header is not an address of this daemon', formatFor(req.url));
      return;
    }
    done();
  });
  app.addHook('onResponse', (req, reply, done) => {
    options.metrics.requestAnswered(req.routeOptions.url ?? 'unmatched', reply.statusCode);
    done();
  });

  registerImdsRoutes(app, options.context);
  registerContainerRoutes(app, options.context);

  app.setNotFoundHandler((req, reply) => sendError(reply, 'NOT_FOUND', 'no such path', formatFor(req.url)));
  app.setErrorHandler((err: { statusCode?: number; code?: string }, req, reply) => {
    // Rejections from request handling (a body too large, a bad content length). Never echo the request.
    const status = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status === 500) {
      req.log.error({ errorCode: err.code }, 'unexpected error while answering');
      return reply.code(500).type('text/plain').send('internal error\n');
    }
    return sendError(reply, 'REQUEST_INVALID', 'the request was refused', formatFor(req.url), status);
  });
  return app;
}

/** The container endpoint answers errors as JSON (the SDKs read them); IMDS as text, like EC2. */
function formatFor(url: string): 'json' | 'text' {
  return url.startsWith('/v1/') ? 'json' : 'text';
}
