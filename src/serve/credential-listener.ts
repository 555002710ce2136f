import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { ListenAddress } from '../core/listen-address.js';
import { HostGuard } from '../http/host-guard.js';
import { HttpListener } from '../http/listener.js';
import { type ErrorFormat, refuse, sendError } from '../http/responses.js';
import { pathOf, type Route, RouteTable } from '../http/route-table.js';
import { CVM_METADATA_HOST } from '../platform/tencent/cvm-metadata.js';
import { addAlibabaRoutes } from './alibaba-routes.js';
import { addContainerRoutes } from './container-routes.js';
import { addImdsRoutes } from './imds-routes.js';
import type { ListenerContext } from './listener-context.js';
import type { Metrics } from './metrics.js';
import { addTencentRoutes } from './tencent-routes.js';

/** Metrics label for requests that matched no route (never the path the client sent). */
const UNMATCHED = 'unmatched';

export interface CredentialListenerOptions {
  readonly address: ListenAddress;
  readonly allowedHosts: readonly string[];
  readonly context: ListenerContext;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly maxConnections?: number;
}

/**
 * One credential listener: the IMDS and container endpoints for one address. It only adapts
 * HTTP to the cache; it never refreshes anything itself. Every answer to a known request is
 * prepared before the request arrives (credential documents at refresh, errors at first use), so
 * the hot path is a map lookup, a token or secret check and one write.
 */
export function buildCredentialListener(options: CredentialListenerOptions): HttpListener {
  const { metrics, logger } = options;
  const table = new RouteTable();
  // A listener speaks its role's cloud: the metadata server its SDKs know, and AWS's container endpoint for AWS roles.
  const cloud = options.context.roles.get(options.context.roleName)!.config.cloud;
  if (cloud === 'alibaba') addAlibabaRoutes(table, options.context);
  else if (cloud === 'tencent') addTencentRoutes(table, options.context);
  else {
    if (options.context.imdsEnabled) addImdsRoutes(table, options.context);
    addContainerRoutes(table, options.context);
  }
  // Tencent's SDKs ask http://metadata.tencentyun.com, by that name fixed in their code (a pod's
  // hostAliases or a hosts entry points it here): a Tencent listener accepts it as its own.
  const hostGuard = new HostGuard(options.address, cloud === 'tencent' ? [...options.allowedHosts, CVM_METADATA_HOST] : options.allowedHosts);

  /** Counts the answer under the route's template once the response is written. */
  const count = (res: ServerResponse, template: string) => metrics.requestAnswered(template, res.statusCode);

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = pathOf(req.url);
    const match = table.match(path);
    const template = match.kind === 'not-found' ? UNMATCHED : match.route.template;
    if (!hostGuard.allows(req.headers.host)) {
      logger.debug({ route: template }, 'refused a request for a foreign Host');
      sendError(res, 'HOST_FORBIDDEN', 'Host header is not an address of this daemon', formatFor(path));
      count(res, template);
      return;
    }
    switch (match.kind) {
      case 'not-found':
        sendError(res, 'NOT_FOUND', 'no such path', formatFor(path));
        count(res, template);
        return;
      case 'too-long':
        sendError(res, 'PATH_TOO_LONG', 'a path segment is too long', match.route.format);
        count(res, template);
        return;
      case 'malformed':
        sendError(res, 'REQUEST_INVALID', 'the request URL is malformed', match.route.format);
        count(res, template);
        return;
      case 'route':
        dispatch(req, res, match.route, match.param);
        return;
    }
  };

  const dispatch = (req: IncomingMessage, res: ServerResponse, route: Route, param: string): void => {
    const handler = req.method === 'GET' || req.method === 'HEAD' ? route.get : req.method === 'PUT' ? route.put : undefined;
    if (handler === undefined) {
      sendError(res, 'METHOD_NOT_ALLOWED', `${route.template} answers ${route.allow} only`, route.format, { headers: ['allow', route.allow] });
      count(res, route.template);
      return;
    }
    let pending: void | Promise<void>;
    try {
      pending = handler(req, res, param);
    } catch (err) {
      internalError(res, route, err);
      return;
    }
    if (pending === undefined) {
      count(res, route.template);
      return;
    }
    pending.then(
      () => count(res, route.template),
      (err: unknown) => internalError(res, route, err),
    );
  };

  const internalError = (res: ServerResponse, route: Route, err: unknown) => {
    logger.error({ route: route.template, errorCode: (err as { code?: unknown })?.code ?? (err as Error)?.name }, 'unexpected error while answering');
    if (!res.headersSent) res.writeHead(500, ['content-type', 'text/plain']).end('internal error\n');
    else res.destroy();
    count(res, route.template);
  };

  return new HttpListener({
    handler: handle,
    maxConnections: options.maxConnections,
    errorFormat: (target) => formatFor(pathOf(target)),
    refuse: (req, res, why) => {
      refuse(res, why, formatFor(pathOf(req.url)));
      count(res, UNMATCHED);
    },
  });
}

/** The container endpoint answers errors as JSON (the SDKs read them); IMDS as text, like EC2. */
function formatFor(path: string): ErrorFormat {
  return path.startsWith('/v1/') ? 'json' : 'text';
}
