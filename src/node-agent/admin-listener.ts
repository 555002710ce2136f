import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { ListenAddress } from '../core/listen-address.js';
import { HostGuard } from '../http/host-guard.js';
import { HttpListener } from '../http/listener.js';
import { APPLICATION_JSON, refuse, send, sendError, TEXT_PLAIN } from '../http/responses.js';
import { pathOf } from '../http/route-table.js';
import type { NodeAgentMetrics } from './metrics.js';

const OK = Buffer.from('ok\n');
/**
 * The agent holds no credentials of its own: it is ready as soon as it listens, and each pod's
 * answer depends on that pod's token and role, which no probe can stand in for.
 */
const READY = Buffer.from(`${JSON.stringify({ ready: true })}\n`);

/**
 * `/healthz`, `/readyz` and `/metrics` on their own address (the DaemonSet's probes and the
 * scraper), behind the same Host guard as the credential listeners. It serves no credentials.
 */
export function buildAgentAdminListener(address: ListenAddress, metrics: NodeAgentMetrics, logger: Logger): HttpListener {
  const routes = new Map<string, (res: ServerResponse) => void | Promise<void>>([
    ['/healthz', (res) => send(res, 200, TEXT_PLAIN, OK)],
    ['/readyz', (res) => send(res, 200, APPLICATION_JSON, READY)],
    [
      '/metrics',
      async (res) => {
        const body = await metrics.registry.metrics();
        send(res, 200, metrics.registry.contentType, Buffer.from(body));
      },
    ],
  ]);
  const hostGuard = new HostGuard(address, []);

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    if (!hostGuard.allows(req.headers.host)) return sendError(res, 'HOST_FORBIDDEN', 'Host header is not an address of this agent', 'text');
    const route = routes.get(pathOf(req.url));
    if (route === undefined) return sendError(res, 'NOT_FOUND', 'the admin listener serves /healthz, /readyz and /metrics only', 'text');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return sendError(res, 'METHOD_NOT_ALLOWED', 'admin paths answer GET and HEAD only', 'text', { headers: ['allow', 'GET, HEAD'] });
    }
    const pending = route(res);
    pending?.catch((err: unknown) => {
      logger.error({ errorName: (err as Error)?.name }, 'unexpected error while answering an admin request');
      if (!res.headersSent) res.writeHead(500, ['content-type', TEXT_PLAIN]).end('internal error\n');
      else res.destroy();
    });
  };

  return new HttpListener({ handler: handle, refuse: (_req, res, why) => refuse(res, why, 'text') });
}
