import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { RoleStatus } from '../cache/role-credential-cache.js';
import type { Metrics } from '../observability/metrics.js';

export interface AdminListenerOptions {
  readonly metrics: Metrics;
  readonly roleStatuses: () => readonly RoleStatus[];
  readonly logger: Logger;
}

/**
 * Health, readiness and metrics, on their own address so probes and scrapers never share a port
 * (or a Host rule) with the credential endpoints.
 * - `/healthz`: the process answers.
 * - `/readyz`: 200 only when every role has valid credentials; the body says, per role, why not.
 * - `/metrics`: Prometheus text format.
 */
export function buildAdminListener(options: AdminListenerOptions): FastifyInstance {
  const app = Fastify({ loggerInstance: options.logger as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }), return503OnClosing: true });
  app.get('/healthz', (_req, reply) => reply.type('text/plain').send('ok\n'));
  app.get('/readyz', (_req, reply) => {
    const roles = options.roleStatuses();
    const ready = roles.every((r) => r.ready);
    return reply.code(ready ? 200 : 503).type('application/json').send(JSON.stringify({ ready, roles }, null, 2));
  });
  app.get('/metrics', async (_req, reply) => {
    const body = await options.metrics.registry.metrics();
    return reply.type(options.metrics.registry.contentType).send(body);
  });
  return app;
}
