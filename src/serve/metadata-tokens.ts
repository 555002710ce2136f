import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorName } from '../core/errors.js';
import { proxyHeaderOf } from '../http/proxy-headers.js';
import { send, sendError, TEXT_PLAIN } from '../http/responses.js';
import type { RouteTable } from '../http/route-table.js';
import type { ListenerContext } from './listener-context.js';
import { MAX_TTL_SECONDS, parseTtlHeader } from './session-tokens.js';

/**
 * The session-token handshake of a metadata server, as AWS's IMDSv2 and Alibaba's hardened ECS
 * metadata both have it: `PUT /latest/api/token` with a TTL header (1–21600 s; refused to a
 * forwarded request), then every GET with the token in a header. Only the header names, the error
 * codes and whether the TTL is echoed differ, so one mechanism serves both, with the listener's
 * own SessionTokenIssuer (a token works only on the listener that issued it).
 */
export interface MetadataTokenDialect {
  /** The TTL header of the PUT, as the cloud spells it in its documentation. */
  readonly ttlHeader: string;
  /** The token header of a GET, likewise. */
  readonly tokenHeader: string;
  readonly ttlInvalid: ErrorName;
  readonly tokenRequired: ErrorName;
  /** What a client is told is missing or invalid ("IMDSv2 session token"). */
  readonly tokenWords: string;
  /** Echo the TTL header in the PUT's answer (the AWS Go SDK caches the token only then). */
  readonly echoTtl: boolean;
}

export const TOKEN_PATH = '/latest/api/token';

/** Adds the token PUT and returns the gate every GET of these metadata paths passes first. */
export function addMetadataTokens(
  table: RouteTable,
  ctx: ListenerContext,
  dialect: MetadataTokenDialect,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  // Node lower-cases header names.
  const ttlHeader = dialect.ttlHeader.toLowerCase();
  const tokenHeader = dialect.tokenHeader.toLowerCase();
  table.add(TOKEN_PATH, 'text', {
    put: (req, res) => {
      const forwardedBy = proxyHeaderOf(req);
      if (forwardedBy !== undefined) return sendError(res, 'IMDS_FORWARDED', `request carries ${forwardedBy}`, 'text');
      const ttl = parseTtlHeader(req.headers[ttlHeader]);
      if (ttl === undefined) return sendError(res, dialect.ttlInvalid, `missing or invalid ${dialect.ttlHeader} (1-${MAX_TTL_SECONDS})`, 'text');
      send(res, 200, TEXT_PLAIN, Buffer.from(ctx.sessionTokens.issue(ttl)), dialect.echoTtl ? [ttlHeader, String(ttl)] : undefined);
    },
  });

  /** True when the request may read metadata; otherwise it has been answered 401. */
  return (req, res) => {
    const token = req.headers[tokenHeader];
    if (token === undefined && ctx.allowImdsV1) return true;
    if (typeof token === 'string' && ctx.sessionTokens.verify(token)) return true;
    sendError(res, dialect.tokenRequired, token === undefined ? `missing ${dialect.tokenWords}` : `invalid or expired ${dialect.tokenWords}`, 'text');
    return false;
  };
}
