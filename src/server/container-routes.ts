import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { documentsFor } from './credential-documents.js';
import { credentialsFor, sendError, unavailable, type ListenerContext, type ServedRole } from './listener-context.js';
import { allowOnly } from './method-guard.js';

/**
 * The container-credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI), as ECS and the EKS Pod
 * Identity Agent serve it: `GET /v1/credentials` for the listener's role, `/v1/credentials/<name>`
 * for any configured role, each guarded by the shared secret in the Authorization header.
 */
export function registerContainerRoutes(app: FastifyInstance, ctx: ListenerContext): void {
  const serve = async (req: FastifyRequest, reply: FastifyReply, role: ServedRole | undefined) => {
    if (!ctx.containerSecret) return sendError(reply, 'CONTAINER_ENDPOINT_DISABLED', 'the container endpoint is off', 'json');
    const auth = req.headers.authorization;
    if (auth === undefined || auth === '') return sendError(reply, 'CONTAINER_AUTH_MISSING', 'missing Authorization header', 'json');
    if (!ctx.containerSecret.matches(auth)) return sendError(reply, 'CONTAINER_AUTH_INVALID', 'wrong Authorization header', 'json');
    // Authorization is checked before the role name, so the list of roles is not probeable without the secret.
    if (!role) return sendError(reply, 'NOT_FOUND', 'no such role', 'json');
    const entry = await credentialsFor(role);
    if (!entry) return unavailable(reply, role, 'json');
    return reply.type('application/json').send(documentsFor(entry).container);
  };

  app.get('/v1/credentials', (req, reply) => serve(req, reply, ctx.role));
  app.get<{ Params: { role: string } }>('/v1/credentials/:role', (req, reply) => serve(req, reply, ctx.roles.get(req.params.role)));
  allowOnly(app, '/v1/credentials', ['GET']);
  allowOnly(app, '/v1/credentials/:role', ['GET']);
}
