import type { IncomingMessage, ServerResponse } from 'node:http';
import { type CachedCredentials, ofCloud } from '../cache/role-credential-cache.js';
import { APPLICATION_JSON, send, sendError, TEXT_PLAIN } from '../http/responses.js';
import type { RouteTable } from '../http/route-table.js';
import { alibabaDocumentsFor } from '../platform/alibaba/credential-documents.js';
import { answerFromCache, type ListenerContext, type ServedRole } from './listener-context.js';
import { addMetadataTokens, type MetadataTokenDialect } from './metadata-tokens.js';

/** The URI provider's path on a loopback listener without a secret. */
const ALIBABA_URI_PATH = '/v1/alibaba/credentials';
/** The URI provider's path with the container secret as its last segment (URL-encoded). */
const ALIBABA_URI_SECRET_ROUTE = `${ALIBABA_URI_PATH}/:role`;

const CREDENTIALS_LIST = '/latest/meta-data/ram/security-credentials';
/**
 * The same with a capital R, as aliyungo's metadata client (denverdino/aliyungo metadata/client.go,
 * `RAM_SECURITY`) asks for a role's credentials; the ECS server's paths are not case-sensitive there.
 */
const CREDENTIALS_LIST_ALIYUNGO = '/latest/meta-data/Ram/security-credentials';

/** ECS metadata's hardened mode: the same handshake as IMDSv2 under Alibaba's header names, no TTL echo. */
const ECS_METADATA_TOKENS: MetadataTokenDialect = {
  ttlHeader: 'X-aliyun-ecs-metadata-token-ttl-seconds',
  tokenHeader: 'X-aliyun-ecs-metadata-token',
  ttlInvalid: 'ECS_METADATA_TTL_INVALID',
  tokenRequired: 'ECS_METADATA_TOKEN_REQUIRED',
  tokenWords: 'metadata token',
  echoTtl: false,
};

/**
 * What Alibaba Cloud's SDKs read, for a listener whose role is a RAM role: the URI provider's
 * endpoint (ALIBABA_CLOUD_CREDENTIALS_URI) and the ECS metadata server's RAM-role credentials.
 * Both serve only this listener's role (docs/alibaba-cloud.md).
 */
export function addAlibabaRoutes(table: RouteTable, ctx: ListenerContext): void {
  addUriRoutes(table, ctx);
  if (ctx.imdsEnabled) addEcsMetadataRoutes(table, ctx);
}

/** The listener's role as now configured (a reload may have replaced it; it is never removed). */
function currentRole(ctx: ListenerContext): ServedRole {
  return ctx.roles.get(ctx.roleName)!;
}

/** The URI provider's JSON, and ECS metadata's: built once, not per request. */
const renderUri = (entry: CachedCredentials) => (ofCloud(entry, 'alibaba') ? alibabaDocumentsFor(entry).uri : undefined);
const renderEcsMetadata = (entry: CachedCredentials) => (ofCloud(entry, 'alibaba') ? alibabaDocumentsFor(entry).ecsMetadata : undefined);

/**
 * The URI provider. Alibaba's SDKs send a plain GET to ALIBABA_CLOUD_CREDENTIALS_URI with no auth
 * header, so it is served as the container endpoint's rules allow: openly at
 * `/v1/alibaba/credentials` only on a loopback listener without --auth-token-file, else only at
 * `/v1/alibaba/credentials/<secret>`, the secret compared in constant time. The route's template,
 * never the path sent, is what metrics and logs see.
 */
function addUriRoutes(table: RouteTable, ctx: ListenerContext): void {
  const serve = (res: ServerResponse) => answerFromCache(res, currentRole(ctx), APPLICATION_JSON, 'json', renderUri);
  table.add(ALIBABA_URI_PATH, 'json', {
    get: (_req, res) => {
      if (ctx.containerSecret)
        return sendError(res, 'ALIBABA_URI_SECRET_REQUIRED', 'this listener serves the Alibaba URI endpoint only with its secret in the path', 'json');
      if (!ctx.loopback) return sendError(res, 'ALIBABA_URI_DISABLED', 'the Alibaba URI endpoint is off on a non-loopback listener without a secret', 'json');
      return serve(res);
    },
  });
  table.add(ALIBABA_URI_SECRET_ROUTE, 'json', {
    get: (_req, res, secret) => {
      if (!ctx.containerSecret) return sendError(res, 'ALIBABA_URI_DISABLED', 'no --auth-token-file is configured, so there is no path secret', 'json');
      if (!ctx.containerSecret.matches(secret)) return sendError(res, 'ALIBABA_URI_SECRET_INVALID', 'wrong secret in the path', 'json');
      return serve(res);
    },
  });
}

/**
 * The ECS metadata server's RAM-role paths, as Alibaba's SDKs read them from 100.100.100.200:
 * hardened (token) mode by default, like an instance with `HttpTokens=required`: `PUT
 * /latest/api/token` with `X-aliyun-ecs-metadata-token-ttl-seconds` (1–21600), then GETs with
 * `X-aliyun-ecs-metadata-token`. The SDKs ask for a token first whatever the instance's mode, so
 * they work in either; `--allow-imdsv1` also accepts token-less GETs.
 */
function addEcsMetadataRoutes(table: RouteTable, ctx: ListenerContext): void {
  /** The token gate: true when the request may read metadata; otherwise it has been answered 401. */
  const authorized = addMetadataTokens(table, ctx, ECS_METADATA_TOKENS);

  const roleList = Buffer.from(ctx.roleName);
  const listRoles = (req: IncomingMessage, res: ServerResponse) => {
    if (authorized(req, res)) send(res, 200, TEXT_PLAIN, roleList);
  };
  const serveCredentials = (req: IncomingMessage, res: ServerResponse, name: string) => {
    if (!authorized(req, res)) return;
    if (name !== ctx.roleName) return sendError(res, 'NOT_FOUND', 'no such RAM role on this listener', 'text');
    return answerFromCache(res, currentRole(ctx), TEXT_PLAIN, 'text', renderEcsMetadata);
  };
  for (const base of [CREDENTIALS_LIST, CREDENTIALS_LIST_ALIYUNGO]) {
    table.add(base, 'text', { get: listRoles });
    table.add(`${base}/`, 'text', { get: listRoles });
    table.add(`${base}/:role`, 'text', { get: serveCredentials });
  }
}
