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
  /** Longest role name (64) plus room; longer path parameters are a 404 without further work. */
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
    bodyLimit: LIMITS.bodyLimit,
    requestTimeout: LIMITS.requestTimeout,
    keepAliveTimeout: LIMITS.keepAliveTimeout,
    return503OnClosing: true,
    routerOptions: { maxParamLength: LIMITS.maxParamLength, caseSensitive: true, ignoreTrailingSlash: false, ignoreDuplicateSlashes: false },
  });

  // Bodies are never used: accept and ignore any content type rather than parsing attacker JSON.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: LIMITS.bodyLimit }, (_req, _body, done) => done(null, undefined));

  const hostGuard = new HostGuard(options.address, options.allowedHosts);
  app.addHook('onRequest', (req, reply, done) => {
    if (!hostGuard.allows(req.headers.host)) {
      req.log.debug({ route: req.routeOptions.url ?? 'unmatched' }, 'refused a request for a foreign Host');
      void sendError(reply, 'HOST_FORBIDDEN', 'Host header is not an address of this daemon', req.url.startsWith('/v1/') ? 'json' : 'text');
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

  app.setNotFoundHandler((req, reply) => sendError(reply, 'NOT_FOUND', 'no such path', req.url.startsWith('/v1/') ? 'json' : 'text'));
  app.setErrorHandler((err: { statusCode?: number }, req, reply) => {
    // Framework-level rejections (a malformed request, a body too large). Never echo the request.
    const status = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status === 500) req.log.error({ err }, 'unexpected error while answering');
    return reply.code(status).type('text/plain').send(status === 500 ? 'internal error\n' : 'bad request\n');
  });
  return app;
}
