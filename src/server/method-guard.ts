import type { FastifyInstance } from 'fastify';
import { sendError } from './listener-context.js';

const ALL_METHODS = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'] as const;

/**
 * Answers 405 on `path` for every method but `allowed` (HEAD is allowed with GET, as fastify
 * serves it), so a wrong method is told apart from a wrong path.
 */
export function allowOnly(app: FastifyInstance, path: string, allowed: ReadonlyArray<'GET' | 'PUT'>): void {
  const permitted = new Set<string>(allowed);
  if (permitted.has('GET')) permitted.add('HEAD');
  const others = ALL_METHODS.filter((m) => !permitted.has(m));
  app.route({
    method: others,
    url: path,
    handler: (_req, reply) => {
      reply.header('allow', [...permitted].join(', '));
      return sendError(reply, 'METHOD_NOT_ALLOWED', `${path} answers ${[...permitted].join(', ')} only`, path.startsWith('/v1/') ? 'json' : 'text');
    },
  });
}
