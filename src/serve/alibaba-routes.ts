import type { RouteTable } from '../http/route-table.js';
import type { ListenerContext } from './listener-context.js';

/**
 * What Alibaba Cloud's SDKs read, for a listener whose role is a RAM role: the URI provider's
 * endpoint (ALIBABA_CLOUD_CREDENTIALS_URI) and the ECS metadata server's RAM-role credentials.
 */
export function addAlibabaRoutes(_table: RouteTable, _ctx: ListenerContext): void {}
