import { parseRamOidcProviderArn, parseRamRoleArn } from '../platform/alibaba/ram-arn.js';
import { ALIBABA_REGION } from '../platform/alibaba/sts-endpoints.js';
import type { ServiceAccount } from '../platform/kubernetes/service-accounts.js';
import { parseCamRoleArn, providerIdProblem } from '../platform/tencent/cam-arn.js';
import { TENCENT_REGION } from '../platform/tencent/sts-endpoints.js';
import { ALIBABA_DEFAULT_AUDIENCE, ANNOTATIONS, TENCENT_DEFAULT_AUDIENCE } from '../protocol/pod-identity.js';
import { readAudience } from './injection-settings.js';

/** A RAM role a ServiceAccount names, served to its pods by a `crosscred-alibaba` sidecar. */
export interface AlibabaRole {
  readonly roleArn: string;
  readonly oidcProviderArn: string;
  readonly stsRegion?: string;
  readonly audience: string;
}

/** A CAM role a ServiceAccount names, served to its pods by a `crosscred-tencent` sidecar. */
export interface TencentRole {
  readonly roleArn: string;
  readonly providerId: string;
  readonly region: string;
  readonly audience: string;
}

export interface OtherCloudRoles {
  readonly alibaba?: AlibabaRole;
  readonly tencent?: TencentRole;
}

type Read<T> = { kind: 'role'; role: T } | { kind: 'none' } | { kind: 'problem'; problem: string };

/**
 * Reads the ServiceAccount's Alibaba and Tencent annotations, each cloud on its own (a
 * ServiceAccount may name an AWS, an Alibaba and a Tencent role at once). `none` when it names
 * neither; `problem` when one is present but unusable or incomplete: the pod is then denied, as
 * for a bad AWS role, never started without the credentials it opted into.
 */
export function otherCloudRoles(account: ServiceAccount): { kind: 'roles'; roles: OtherCloudRoles } | { kind: 'none' } | { kind: 'problem'; problem: string } {
  const who = `ServiceAccount ${account.namespace}/${account.name}`;
  const alibaba = alibabaRole(account.annotations, who);
  if (alibaba.kind === 'problem') return alibaba;
  const tencent = tencentRole(account.annotations, who);
  if (tencent.kind === 'problem') return tencent;
  if (alibaba.kind === 'none' && tencent.kind === 'none') return { kind: 'none' };
  return {
    kind: 'roles',
    roles: { ...(alibaba.kind === 'role' ? { alibaba: alibaba.role } : {}), ...(tencent.kind === 'role' ? { tencent: tencent.role } : {}) },
  };
}

function alibabaRole(a: Readonly<Record<string, string>>, who: string): Read<AlibabaRole> {
  const keys = [ANNOTATIONS.alibabaRoleArn, ANNOTATIONS.alibabaOidcProviderArn, ANNOTATIONS.alibabaStsRegion, ANNOTATIONS.alibabaAudience];
  if (keys.every((k) => a[k] === undefined)) return { kind: 'none' };
  const missing = required(a, who, [ANNOTATIONS.alibabaRoleArn, ANNOTATIONS.alibabaOidcProviderArn]);
  if (missing) return missing;
  const roleArn = a[ANNOTATIONS.alibabaRoleArn]!.trim();
  const role = parseRamRoleArn(roleArn);
  if ('problem' in role) return problem(who, ANNOTATIONS.alibabaRoleArn, role.problem);
  const oidcProviderArn = a[ANNOTATIONS.alibabaOidcProviderArn]!.trim();
  const provider = parseRamOidcProviderArn(oidcProviderArn);
  if ('problem' in provider) return problem(who, ANNOTATIONS.alibabaOidcProviderArn, provider.problem);
  const stsRegion = a[ANNOTATIONS.alibabaStsRegion]?.trim();
  if (stsRegion !== undefined && !ALIBABA_REGION.test(stsRegion))
    return problem(who, ANNOTATIONS.alibabaStsRegion, 'is not an Alibaba Cloud region id (for example cn-hangzhou)');
  const audience = readAudience(a, ANNOTATIONS.alibabaAudience, ALIBABA_DEFAULT_AUDIENCE, who);
  if (typeof audience !== 'string') return audience;
  return { kind: 'role', role: { roleArn, oidcProviderArn, ...(stsRegion !== undefined ? { stsRegion } : {}), audience } };
}

function tencentRole(a: Readonly<Record<string, string>>, who: string): Read<TencentRole> {
  const keys = [ANNOTATIONS.tencentRoleArn, ANNOTATIONS.tencentProviderId, ANNOTATIONS.tencentRegion, ANNOTATIONS.tencentAudience];
  if (keys.every((k) => a[k] === undefined)) return { kind: 'none' };
  const missing = required(a, who, [ANNOTATIONS.tencentRoleArn, ANNOTATIONS.tencentProviderId, ANNOTATIONS.tencentRegion]);
  if (missing) return missing;
  const roleArn = a[ANNOTATIONS.tencentRoleArn]!.trim();
  const role = parseCamRoleArn(roleArn);
  if ('problem' in role) return problem(who, ANNOTATIONS.tencentRoleArn, role.problem);
  const providerId = a[ANNOTATIONS.tencentProviderId]!.trim();
  const providerProblem = providerIdProblem(providerId);
  if (providerProblem) return problem(who, ANNOTATIONS.tencentProviderId, providerProblem);
  const region = a[ANNOTATIONS.tencentRegion]!.trim();
  if (!TENCENT_REGION.test(region)) return problem(who, ANNOTATIONS.tencentRegion, 'is not a Tencent Cloud region (for example ap-guangzhou)');
  const audience = readAudience(a, ANNOTATIONS.tencentAudience, TENCENT_DEFAULT_AUDIENCE, who);
  if (typeof audience !== 'string') return audience;
  return { kind: 'role', role: { roleArn, providerId, region, audience } };
}

/** A problem naming the annotations of `keys` that are missing, or undefined when all are set. */
function required(a: Readonly<Record<string, string>>, who: string, keys: readonly string[]): { kind: 'problem'; problem: string } | undefined {
  const absent = keys.filter((k) => (a[k]?.trim() ?? '') === '');
  if (absent.length === 0) return undefined;
  return { kind: 'problem', problem: `${who}: annotations ${keys.join(', ')} are needed together; missing ${absent.join(', ')}` };
}

function problem(who: string, key: string, why: string): { kind: 'problem'; problem: string } {
  return { kind: 'problem', problem: `${who}: annotation ${key} ${why}` };
}
