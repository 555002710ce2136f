/**
 * How an attested identity maps onto the state store's tenants and keys (state/ports.ts): which
 * account its replay claims and rate-limit buckets count against, and which bucket it takes from.
 * One mapping for both backends, so memory and Redis bound and key the same things.
 */

/**
 * The most of an in-process table (replay claims, rate-limit buckets) one tenant may hold: one
 * account alone can never fill it, so the rest stays for the others. (Redis bounds each tenant by
 * count instead: TenantBounds in state/ports.ts.)
 */
export const MAX_TENANT_SHARE = 0.5;

/** The tenant an attested identity's claims and buckets count against: its cloud account. */
export function stateTenant(identity: { cloud: string; accountId: string }): string {
  return `${identity.cloud}:${identity.accountId}`;
}

/**
 * The bucket key of an attested identity: the facts that name one workload. For the role kinds that
 * is the role session (the RAM role's session-derived instance id, the CAM role's session name),
 * not the role alone: a fleet of VMs shares one instance role, and one bucket for all of them would
 * let ten of a thousand booting VMs through and hold the rest for hours. A principal allowed to
 * assume the role can name many sessions, and so hold many buckets; the per-address bucket
 * (clientRateLimit) is what bounds that, and such a principal holds the role's credentials anyway.
 */
export function rateLimitKey(identity: {
  kind: string;
  accountId: string;
  instanceId?: string;
  roleName?: string;
  roleId?: string;
  attributes?: Readonly<Record<string, string>>;
}): string {
  const workload = identity.instanceId ?? identity.attributes?.['session-name'] ?? '';
  return [identity.kind, identity.accountId, workload, identity.roleName ?? identity.roleId ?? ''].join('\u0000');
}
