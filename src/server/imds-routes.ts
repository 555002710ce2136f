import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { awsTimestamp, documentsFor } from './credential-documents.js';
import { credentialsFor, sendError, unavailable, type ListenerContext } from './listener-context.js';
import { parseTtlHeader, MAX_TTL_SECONDS } from './session-tokens.js';
import { allowOnly } from './method-guard.js';

const TOKEN_PATH = '/latest/api/token';
const CREDENTIALS_LIST = '/latest/meta-data/iam/security-credentials';
const CREDENTIALS_EXTENDED_LIST = '/latest/meta-data/iam/security-credentials-extended';

/**
 * The EC2 instance metadata service, as much of it as credential and region lookups use, byte for
 * byte what the AWS SDKs and CLI expect (see ../shared/CLIENTS.md). IMDSv2 by default: every GET
 * needs a session token from `PUT /latest/api/token`; `--allow-imdsv1` also accepts token-less GETs.
 */
export function registerImdsRoutes(app: FastifyInstance, ctx: ListenerContext): void {
  const role = ctx.role;
  const roleName = role.config.name;
  const textPlain = 'text/plain';
  const startedAt = Date.now();

  app.put(TOKEN_PATH, (req, reply) => {
    // A forwarded request came through a proxy or a misconfigured NAT: no token, as on EC2.
    if (req.headers['x-forwarded-for'] !== undefined) {
      return sendError(reply, 'IMDS_FORWARDED', 'request carries X-Forwarded-For', 'text');
    }
    const ttl = parseTtlHeader(req.headers['x-aws-ec2-metadata-token-ttl-seconds']);
    if (ttl === undefined) {
      return sendError(reply, 'IMDS_TTL_INVALID', `missing or invalid X-aws-ec2-metadata-token-ttl-seconds (1-${MAX_TTL_SECONDS})`, 'text');
    }
    // The Go SDK requires the TTL echoed back to cache the token.
    return reply.header('x-aws-ec2-metadata-token-ttl-seconds', String(ttl)).type(textPlain).send(ctx.sessionTokens.issue(ttl));
  });
  allowOnly(app, TOKEN_PATH, ['PUT']);

  /** The IMDSv2 gate: true when the request may read metadata; otherwise it has been answered 401. */
  const authorized = (req: FastifyRequest, reply: FastifyReply): boolean => {
    const token = req.headers['x-aws-ec2-metadata-token'];
    if (token === undefined && ctx.allowImdsV1) return true;
    if (typeof token === 'string' && ctx.sessionTokens.verify(token)) return true;
    void sendError(reply, 'IMDS_TOKEN_REQUIRED', token === undefined ? 'missing IMDSv2 session token' : 'invalid or expired IMDSv2 session token', 'text');
    return false;
  };

  const listRoles = (req: FastifyRequest, reply: FastifyReply) => {
    if (!authorized(req, reply)) return reply;
    return reply.type(textPlain).send(roleName);
  };
  for (const base of [CREDENTIALS_LIST, CREDENTIALS_EXTENDED_LIST]) {
    app.get(base, listRoles);
    app.get(`${base}/`, listRoles);
    allowOnly(app, base, ['GET']);
    allowOnly(app, `${base}/`, ['GET']);
  }

  const serveCredentials = (extended: boolean) => async (req: FastifyRequest<{ Params: { role: string } }>, reply: FastifyReply) => {
    if (!authorized(req, reply)) return reply;
    if (req.params.role !== roleName) return sendError(reply, 'NOT_FOUND', 'no such role on this listener', 'text');
    const entry = await credentialsFor(role);
    if (!entry) return unavailable(reply, role, 'text');
    const docs = documentsFor(entry);
    return reply.type(textPlain).send(extended ? docs.imdsExtended : docs.imds);
  };
  app.get(`${CREDENTIALS_LIST}/:role`, serveCredentials(false));
  app.get(`${CREDENTIALS_EXTENDED_LIST}/:role`, serveCredentials(true));
  allowOnly(app, `${CREDENTIALS_LIST}/:role`, ['GET']);
  allowOnly(app, `${CREDENTIALS_EXTENDED_LIST}/:role`, ['GET']);

  // Fixed documents, rendered once.
  const region = role.config.region;
  const accountId = role.config.accountId;
  const identityDocument = JSON.stringify({ accountId, region }, null, 2);
  const infoDocument = (lastUpdatedMs: number) =>
    JSON.stringify(
      {
        Code: 'Success',
        LastUpdated: awsTimestamp(lastUpdatedMs),
        // There is no instance profile; these name the role crosscred assumes, in the shape SDKs parse.
        InstanceProfileArn: `arn:aws:iam::${accountId}:instance-profile/${roleName}`,
        InstanceProfileId: syntheticProfileId(role.config.roleArn),
      },
      null,
      2,
    );

  const fixed: Array<[string, (req: FastifyRequest) => string]> = [
    ['/latest/meta-data/placement/region', () => region],
    ['/latest/dynamic/instance-identity/document', () => identityDocument],
    ['/latest/meta-data/iam/info', () => infoDocument(role.cache.current()?.receivedAtWall ?? startedAt)],
  ];
  for (const [path, body] of fixed) {
    app.get(path, (req, reply) => {
      if (!authorized(req, reply)) return reply;
      return reply.type(textPlain).send(body(req));
    });
    allowOnly(app, path, ['GET']);
  }
}

/** A stable, instance-profile-shaped id (AIPA + 17 characters) derived from the role ARN. */
function syntheticProfileId(roleArn: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const digest = createHash('sha256').update(roleArn).digest();
  let id = 'AIPA';
  for (let i = 0; i < 17; i++) id += alphabet[digest[i]! % 32];
  return id;
}
