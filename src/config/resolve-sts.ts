import { isAwsRegionName } from '../platform/aws/region.js';
import { roleArnParts } from '../platform/aws/role-arn.js';
import { checkEndpoint, clip, outOfRange, problem, rangeWords, readPemBundle } from './checks.js';
import type { StsConnectionConfig } from './config.js';
import { type Layers, pickSetting, type Resolved, type Sourced, valueOrDefault } from './layers.js';
import { settingSpec } from './settings.js';

/**
 * The STS section. The connection (timeouts, CA bundle) is one for all roles; the region and the
 * endpoint are each role's own (a role of the config file may set them), so the roles resolver
 * checks them per role with the functions below.
 */
export type StsConnection = Pick<StsConnectionConfig, 'caBundlePath' | 'caBundle' | 'connectTimeoutMs' | 'responseTimeoutMs'>;

export function resolveStsConnection(layers: Layers, readText: (path: string) => string): Resolved<StsConnection> {
  const problems: string[] = [];
  const connect = pickSetting('stsConnectTimeoutMs', layers);
  if (connect && outOfRange('stsConnectTimeoutMs', connect.value)) {
    problems.push(problem('sts-connect-timeout-ms', connect.origin, `${connect.value} ${rangeWords('stsConnectTimeoutMs')}`));
  }
  const response = pickSetting('stsTimeoutMs', layers);
  if (response && outOfRange('stsTimeoutMs', response.value)) {
    problems.push(problem('sts-timeout-ms', response.origin, `${response.value} ${rangeWords('stsTimeoutMs')}`));
  }
  const caPath = pickSetting('caBundle', layers);
  const ca = caPath && readPemBundle(caPath, readText);
  if (ca && 'problem' in ca) problems.push(problem('ca-bundle', caPath.origin, ca.problem));
  return {
    value: {
      ...(caPath && ca && 'pem' in ca ? { caBundlePath: caPath.value, caBundle: ca.pem } : {}),
      connectTimeoutMs: valueOrDefault('stsConnectTimeoutMs', connect),
      responseTimeoutMs: valueOrDefault('stsTimeoutMs', response),
    },
    problems,
  };
}

/** The region a role with none uses: its ARN's partition's home region, from the table. */
export function partitionHomeRegion(roleArn: string): string | undefined {
  const d = settingSpec('region').default;
  const partition = roleArnParts(roleArn)?.partition;
  return partition && d && 'byPartition' in d ? d.byPartition[partition] : undefined;
}

/**
 * A role's region, set or from its partition, and the problem with it. `field` names the role's
 * region setting and `roleOrigin` the role, for a region that is missing altogether.
 */
export function resolveRoleRegion(region: Sourced<string> | undefined, roleArn: string, field: string, roleOrigin: string): Resolved<string | undefined> {
  const value = region?.value ?? partitionHomeRegion(roleArn);
  if (!value) {
    const words = 'no region: set AWS_REGION, --region, or region in the config file (the STS endpoint is regional)';
    return { value, problems: [problem(field, roleOrigin, words)] };
  }
  if (!isAwsRegionName(value)) {
    return { value, problems: [problem(field, region?.origin ?? 'default', `"${clip(value)}" is not an AWS region name such as eu-west-1`)] };
  }
  return { value, problems: [] };
}

/** A role's STS endpoint override, when set: https, or plain http to loopback. */
export function stsEndpointProblems(endpoint: Sourced<string> | undefined, field: string): string[] {
  const bad = endpoint && checkEndpoint(endpoint.value);
  return bad ? [problem(field, endpoint.origin, bad)] : [];
}
