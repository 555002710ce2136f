import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { RoleStatus } from '../cache/role-credential-cache.js';
import { HttpListener } from '../http/listener.js';
import { APPLICATION_JSON, refuse, send, sendError, TEXT_PLAIN } from '../http/responses.js';
import { pathOf } from '../http/route-table.js';
import type { Metrics } from './metrics.js';

export interface AdminListenerOptions {
  readonly metrics: Metrics;
  readonly roleStatuses: () => readonly RoleStatus[];
  readonly logger: Logger;
}

const OK = Buffer.from('ok\n');

/**
 * Health, readiness and metrics, on their own address so probes and scrapers never share a port
 * (or a Host rule) with the credential endpoints. It serves no credentials, whatever is asked.
 * - `/healthz`: the process answers.
 * - `/readyz`: 200 only when every role has valid credentials; the body says, per role, why not.
 * - `/metrics`: Prometheus text format.
 */
export function buildAdminListener(options: AdminListenerOptions): HttpListener {
  const routes = new Map<string, (res: ServerResponse) => void | Promise<void>>([
    ['/healthz', (res) => send(res, 200, TEXT_PLAIN, OK)],
    [
      '/readyz',
      (res) => {
        const roles = options.roleStatuses();
        const ready = roles.every((r) => r.ready);
        send(res, ready ? 200 : 503, APPLICATION_JSON, Buffer.from(JSON.stringify({ ready, roles }, null, 2)));
      },
    ],
    [
      '/metrics',
      async (res) => {
        const body = await options.metrics.registry.metrics();
        send(res, 200, options.metrics.registry.contentType, Buffer.from(body));
      },
    ],
  ]);

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const route = routes.get(pathOf(req.url));
    if (route === undefined) return sendError(res, 'NOT_FOUND', 'the admin listener serves /healthz, /readyz and /metrics only', 'text');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return sendError(res, 'METHOD_NOT_ALLOWED', 'admin paths answer GET and HEAD only', 'text', { headers: ['allow', 'GET, HEAD'] });
    }
    const pending = route(res);
    if (pending !== undefined) {
      pending.catch((err: unknown) => {
        options.logger.error({ errorCode: (err as Error)?.name }, 'unexpected error while answering an admin request');
        if (!res.headersSent) res.writeHead(500, ['content-type', TEXT_PLAIN]).end('internal error\n');
        else res.destroy();
      });
    }
  };

  return new HttpListener({
    handler: handle,
    refuse: (_req, res, why) => refuse(res, why, 'text'),
  });
}
