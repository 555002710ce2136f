import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { RoleStatus } from '../cache/role-credential-cache.js';
import type { ListenAddress } from '../core/listen-address.js';
import { HostGuard } from '../http/host-guard.js';
import { HttpListener } from '../http/listener.js';
import { APPLICATION_JSON, refuse, send, sendError, TEXT_PLAIN } from '../http/responses.js';
import { pathOf } from '../http/route-table.js';
import type { Metrics } from './metrics.js';

export interface AdminListenerOptions {
  /** The admin address and the extra Host names accepted (--allowed-host), as on the credential listeners. */
  readonly address: ListenAddress;
  readonly allowedHosts: readonly string[];
  readonly metrics: Metrics;
  readonly roleStatuses: () => readonly RoleStatus[];
  readonly logger: Logger;
}

const OK = Buffer.from('ok\n');

/**
 * Health, readiness and metrics, on their own address so probes and scrapers never share a port
 * (or a Host rule) with the credential endpoints. It serves no credentials, whatever is asked.
 * - `/healthz`: the process answers.
 * - `/readyz`: 200 only when every role has valid credentials; the body says, per role, what failed
 *   (kind and code, and crosscred's hint for its own codes) without quoting the failure's message.
 * Behind the same Host guard as the credential listeners: a DNS-rebinding page reads neither.
 * - `/metrics`: Prometheus text format.
 */
export function buildAdminListener(options: AdminListenerOptions): HttpListener {
  const routes = new Map<string, (res: ServerResponse) => void | Promise<void>>([
    ['/healthz', (res) => send(res, 200, TEXT_PLAIN, OK)],
    [
      '/readyz',
      (res) => {
        const roles = options.roleStatuses().map(publicStatus);
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

  const hostGuard = new HostGuard(options.address, options.allowedHosts);

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    if (!hostGuard.allows(req.headers.host)) {
      options.logger.debug('refused an admin request for a foreign Host');
      return sendError(res, 'HOST_FORBIDDEN', 'Host header is not an address of this daemon', 'text');
    }
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

/** A role's status as /readyz shows it. */
export interface PublicRoleStatus extends Omit<RoleStatus, 'lastError'> {
  readonly lastError: { readonly kind: string; readonly code: string; readonly hint?: string } | null;
}

/**
 * The status without the failure's message: a message can carry what an outside program or server
 * said (a token command's output, an STS or API server answer), which is not for an unauthenticated
 * page. The code names the failure, and its fixed hint (crosscred's catalogue, or the classifier's
 * per STS code) says what to check.
 */
export function publicStatus(status: RoleStatus): PublicRoleStatus {
  const failure = status.lastError;
  if (failure === null) return { ...status, lastError: null };
  const hint = failure.hint;
  return { ...status, lastError: { kind: failure.kind, code: failure.code, ...(hint !== undefined ? { hint } : {}) } };
}
