import type { IncomingMessage, ServerResponse } from 'node:http';
import { type CachedCredentials, ofCloud } from '../cache/role-credential-cache.js';
import { APPLICATION_JSON, sendError } from '../http/responses.js';
import type { RouteTable } from '../http/route-table.js';
import { documentsFor } from '../platform/aws/credential-documents.js';
import { answerFromCache, type ListenerContext, type ServedRole } from './listener-context.js';

/**
 * The container-credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI), as ECS and the EKS Pod
 * Identity Agent serve it: `GET /v1/credentials` for the listener's role, `/v1/credentials/<name>`
 * for any configured role, each guarded by the shared secret in the Authorization header.
 */
export function addContainerRoutes(table: RouteTable, ctx: ListenerContext): void {
  const render = (entry: CachedCredentials) => (ofCloud(entry, 'aws') ? documentsFor(entry).container : undefined);

  const serve = (req: IncomingMessage, res: ServerResponse, role: ServedRole | undefined) => {
    if (!ctx.containerSecret) return sendError(res, 'CONTAINER_ENDPOINT_DISABLED', 'the container endpoint is off', 'json');
    const auth = req.headers.authorization;
    if (auth === undefined || auth === '') return sendError(res, 'CONTAINER_AUTH_MISSING', 'missing Authorization header', 'json');
    if (!ctx.containerSecret.matches(auth)) return sendError(res, 'CONTAINER_AUTH_INVALID', 'wrong Authorization header', 'json');
    // Authorization is checked before the role name, so the list of roles is not probeable without the secret.
    // An Alibaba or Tencent role is not an AWS role: its SDKs read it elsewhere (serve/alibaba-routes.ts, serve/tencent-routes.ts).
    if (role?.config.cloud !== 'aws') return sendError(res, 'NOT_FOUND', 'no such role', 'json');
    return answerFromCache(res, role, APPLICATION_JSON, 'json', render);
  };

  table.add('/v1/credentials', 'json', { get: (req, res) => serve(req, res, ctx.roles.get(ctx.roleName)) });
  table.add('/v1/credentials/:role', 'json', { get: (req, res, name) => serve(req, res, ctx.roles.get(name)) });
}
