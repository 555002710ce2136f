import type { RouteTable } from '../http/route-table.js';
import type { ListenerContext } from './listener-context.js';

/** What Tencent Cloud's SDKs read, for a listener whose role is a CAM role: the CVM metadata server's role credentials. */
export function addTencentRoutes(_table: RouteTable, _ctx: ListenerContext): void {}
