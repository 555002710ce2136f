import type { IncomingMessage, ServerResponse } from 'node:http';
import { type CachedCredentials, ofCloud } from '../cache/role-credential-cache.js';
import { APPLICATION_JSON, send, sendError, TEXT_PLAIN } from '../http/responses.js';
import type { RouteTable } from '../http/route-table.js';
import { cvmRoleCredentialDocument } from '../platform/tencent/credential-documents.js';
import { answerFromCache, type ListenerContext, type ServedRole } from './listener-context.js';

const CREDENTIALS_LIST = '/latest/meta-data/cam/security-credentials';
const REGION = '/latest/meta-data/placement/region';

/**
 * What Tencent Cloud's SDKs read, for a listener whose role is a CAM role: the CVM metadata
 * server's role credentials, as `http://metadata.tencentyun.com` answers them on a CVM instance.
 *
 * The SDKs' CVM-role providers (tencentcloud-sdk-go `common/cvm_role_provider.go`,
 * tencentcloud-sdk-nodejs-common `CvmRoleCredential`) make exactly two plain GETs: the role list
 * (one name, as text) and that role's credentials (JSON). CVM metadata has no session-token
 * handshake, so there is none here; `placement/region` is served as well, for the tools that ask
 * the instance its region. Off with --disable-imds, like the AWS metadata routes.
 */
export function addTencentRoutes(table: RouteTable, ctx: ListenerContext): void {
  if (!ctx.imdsEnabled) return;
  const roleName = ctx.roleName;
  /** This listener's role as now configured (a reload may have replaced it; it is never removed). */
  const currentRole = (): ServedRole => ctx.roles.get(roleName)!;

  const roleList = Buffer.from(roleName);
  const listRoles = (_req: IncomingMessage, res: ServerResponse) => send(res, 200, TEXT_PLAIN, roleList);
  table.add(CREDENTIALS_LIST, 'text', { get: listRoles });
  table.add(`${CREDENTIALS_LIST}/`, 'text', { get: listRoles });

  // Both SDKs fail the call on a non-200 and ask again on their next one.
  const render = (entry: CachedCredentials) => (ofCloud(entry, 'tencent') ? cvmRoleCredentialDocument(entry) : undefined);
  table.add(`${CREDENTIALS_LIST}/:role`, 'text', {
    get: (_req, res, name) => {
      if (name !== roleName) return sendError(res, 'NOT_FOUND', 'no such role on this listener', 'text');
      return answerFromCache(res, currentRole(), APPLICATION_JSON, 'text', render);
    },
  });

  table.add(REGION, 'text', { get: (_req, res) => send(res, 200, TEXT_PLAIN, Buffer.from(currentRole().config.region)) });
}
