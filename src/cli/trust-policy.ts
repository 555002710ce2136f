import { parseArgs } from 'node:util';
import { chainTrustPolicyFor, formatChainTrustText } from '../advice/chain-trust-policy.js';
import { camTrustPolicyFor, formatOtherCloudTrustText, type OtherCloudTrustAdvice, ramTrustPolicyFor } from '../advice/other-cloud-trust-policy.js';
import { formatTrustPolicyText, type TrustPolicyAdvice, trustPolicyFor, type VmSubjectFacts, vmSubjectFor, vmTrustPolicyFor } from '../advice/trust-policy.js';
import type { AlibabaRoleConfig, StsConnectionConfig, TencentRoleConfig, TokenSourceConfig } from '../config/config.js';
import type { ServeFlags } from '../config/load.js';
import { systemClock } from '../core/clock.js';
import { CrosscredError } from '../core/errors.js';
import { roleArnParts } from '../platform/aws/role-arn.js';
import type { VmSubjectKind } from '../protocol/vm-subjects.js';
import { createTokenSource } from '../sources/create-token-source.js';
import type { TokenClaimsSummary } from '../sources/token-source.js';
import { loadConfigForAdvice } from './role-config-for-advice.js';
import { SERVE_OPTIONS } from './serve-options.js';

const OPTIONS = {
  ...SERVE_OPTIONS,
  format: { type: 'string' },
  'sub-pattern': { type: 'string' },
  'account-id': { type: 'string' },
  role: { type: 'string' },
  'session-tags': { type: 'boolean' },
  // Instances attested by crosscred issuer: what the `sub` pattern is built from.
  'cloud-account': { type: 'string' },
  'cloud-region': { type: 'string' },
  'instance-id': { type: 'string' },
  'cloud-role': { type: 'string' },
} as const;

/**
 * `crosscred trust-policy`: from the token crosscred detects, what to create on the AWS side —
 * the IAM OIDC provider command and the role trust policy — ready to paste. For an instance
 * attested by crosscred issuer, from --issuer-url and the flags alone, without a token.
 */
export async function runTrustPolicy(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false });
  const format = values.format ?? 'text';
  if (format !== 'text' && format !== 'json')
    throw new CrosscredError('CONFIG_INVALID', `--format must be text or json, not ${JSON.stringify(format.slice(0, 20))}`);
  if (values['account-id'] !== undefined && !/^\d{12}$/.test(values['account-id']))
    throw new CrosscredError('CONFIG_INVALID', '--account-id must be 12 digits');
  const { config, roleConfigured } = loadConfigForAdvice(values as ServeFlags);
  const role = values.role ? config.roles.find((r) => r.name === values.role) : config.roles[0];
  if (!role) throw new CrosscredError('CONFIG_INVALID', `no role named "${values.role}" (roles: ${config.roles.map((r) => r.name).join(', ')})`);

  // The partition of the configured role; without one, the partition of the region.
  const partition = roleConfigured
    ? (roleArnParts(role.roleArn)?.partition ?? 'aws')
    : role.region.startsWith('cn-')
      ? 'aws-cn'
      : role.region.startsWith('us-gov-')
        ? 'aws-us-gov'
        : 'aws';
  const accountId = values['account-id'] ?? (roleConfigured ? role.accountId : undefined);
  const sessionTags = values['session-tags'] === true;
  const subjectPattern = values['sub-pattern'];
  const vmFlags = (['cloud-account', 'cloud-region', 'instance-id', 'cloud-role'] as const).filter((f) => values[f] !== undefined);

  if (role.cloud !== 'aws') {
    if (values['session-tags']) throw new CrosscredError('CONFIG_INVALID', '--session-tags applies to AWS roles only');
    const advice = await otherCloudAdvice(role, roleConfigured, values, config.sts);
    process.stdout.write(format === 'json' ? `${JSON.stringify(advice, null, 2)}\n` : formatOtherCloudTrustText(advice));
    return 0;
  }

  let advice: TrustPolicyAdvice | { readonly problem: string };
  const tokenSource = role.token.source;
  if (tokenSource.kind === 'vm-issuer') {
    // No token is fetched: the instance may not be able to get one before the role exists, and
    // everything the policy needs follows from the issuer URL, the audience and the sub format.
    const kind = vmSubjectKindFor(tokenSource);
    advice = vmTrustPolicyFor({
      issuerUrl: tokenSource.issuer.url,
      audience: tokenSource.issuer.audience,
      ...(kind ? { kind } : {}),
      facts: vmFacts(values),
      ...(subjectPattern !== undefined ? { subjectPattern } : {}),
      partition,
      ...(accountId ? { accountId } : {}),
      sessionTags,
    });
    if ('problem' in advice) throw new CrosscredError('CONFIG_INVALID', `trust-policy for crosscred issuer ${tokenSource.issuer.url}: ${advice.problem}`);
  } else {
    if (vmFlags.length > 0) throw new CrosscredError('CONFIG_INVALID', `--${vmFlags[0]} applies only to instances attested by crosscred issuer (--issuer-url)`);
    const source = createTokenSource(tokenSource, systemClock, { stsTransport: config.sts });
    let claims: TokenClaimsSummary;
    try {
      claims = (await source.getToken()).claims;
    } finally {
      await source.close?.();
    }
    advice = trustPolicyFor({
      claims,
      partition,
      ...(accountId ? { accountId } : {}),
      ...(subjectPattern !== undefined ? { subjectPattern } : {}),
      sessionTags,
    });
    if ('problem' in advice) throw new CrosscredError('TOKEN_UNTRUSTABLE', `${source.description}: ${advice.problem}`);
  }
  const roleName = roleConfigured ? role.roleArn.split('/').pop() : undefined;
  // After the hub's web-identity trust, each hop's: the target trusts the role of the step before.
  const hops = chainTrustPolicyFor({ role, tokenSessionTags: sessionTags });
  if (format === 'json') process.stdout.write(`${JSON.stringify(hops.length > 0 ? { ...advice, chain: hops } : advice, null, 2)}\n`);
  else process.stdout.write(formatTrustPolicyText(advice, roleName) + formatChainTrustText(hops));
  return 0;
}

type Values = ReturnType<typeof parseArgs<{ args: string[]; options: typeof OPTIONS; strict: true; allowPositionals: false }>>['values'];

/** The kind of `sub` crosscred issuer gives this VM source's tokens; undefined when serve detects the cloud. */
function vmSubjectKindFor(source: Extract<TokenSourceConfig, { kind: 'vm-issuer' }>): VmSubjectKind | undefined {
  if (source.cloud === 'tencent-cvm') return 'tencent-cam';
  if (source.cloud === 'alibaba-ecs') return source.alibabaAttestation === 'ram-role' ? 'alibaba-ram' : 'alibaba-ecs';
  return undefined;
}

function vmFacts(values: Values): VmSubjectFacts {
  return {
    ...(values['cloud-account'] !== undefined ? { cloudAccount: values['cloud-account'] } : {}),
    ...(values['cloud-region'] !== undefined ? { region: values['cloud-region'] } : {}),
    ...(values['instance-id'] !== undefined ? { instanceId: values['instance-id'] } : {}),
    ...(values['cloud-role'] !== undefined ? { role: values['cloud-role'] } : {}),
  };
}

/**
 * What RAM or CAM needs for a role of Alibaba Cloud or Tencent Cloud: the claims come from the
 * token the role's source gives, or, for a VM attested by crosscred issuer, from the issuer URL,
 * the audience and the `sub` formats, without a token.
 */
async function otherCloudAdvice(
  role: AlibabaRoleConfig | TencentRoleConfig,
  roleConfigured: boolean,
  values: Values,
  sts: StsConnectionConfig,
): Promise<OtherCloudTrustAdvice> {
  const tokenSource = role.token.source;
  let claims: TokenClaimsSummary;
  let subjectPattern = values['sub-pattern'];
  if (tokenSource.kind === 'vm-issuer') {
    const found = vmSubjectFor({ kind: vmSubjectKindFor(tokenSource), facts: vmFacts(values), ...(subjectPattern !== undefined ? { subjectPattern } : {}) });
    if ('problem' in found) throw new CrosscredError('CONFIG_INVALID', `trust-policy for crosscred issuer ${tokenSource.issuer.url}: ${found.problem}`);
    claims = { iss: tokenSource.issuer.url, sub: found.subject, aud: tokenSource.issuer.audience, exp: 0 };
    subjectPattern = found.subject;
  } else {
    const source = createTokenSource(tokenSource, systemClock, { stsTransport: sts });
    try {
      claims = (await source.getToken()).claims;
    } finally {
      await source.close?.();
    }
  }
  const inputs = {
    claims,
    accountId: roleConfigured ? role.accountId : (values['account-id'] ?? '<ACCOUNT_ID>'),
    roleName: roleConfigured ? role.roleArn.split('/').pop()! : '<ROLE_NAME>',
    ...(subjectPattern !== undefined ? { subjectPattern } : {}),
    ...(role.cloud === 'alibaba' && role.oidcProviderArn ? { oidcProviderArn: role.oidcProviderArn } : {}),
    ...(role.cloud === 'tencent' && role.providerId ? { providerId: role.providerId } : {}),
  };
  const advice = role.cloud === 'alibaba' ? ramTrustPolicyFor(inputs) : camTrustPolicyFor(inputs);
  if ('problem' in advice) throw new CrosscredError('TOKEN_UNTRUSTABLE', advice.problem);
  return advice;
}
