import { parseArgs } from 'node:util';
import { formatTrustPolicyText, trustPolicyFor } from '../advice/trust-policy.js';
import { systemClock } from '../cache/clock.js';
import type { ServeFlags } from '../config/load.js';
import { CrosscredError } from '../errors.js';
import { createTokenSource } from '../sources/create-token-source.js';
import { loadConfigForAdvice } from './role-config-for-advice.js';
import { SERVE_OPTIONS } from './serve-options.js';

const OPTIONS = {
  ...SERVE_OPTIONS,
  format: { type: 'string' },
  'sub-pattern': { type: 'string' },
  'account-id': { type: 'string' },
  role: { type: 'string' },
} as const;

/**
 * `crosscred trust-policy`: from the token crosscred detects, what to create on the AWS side —
 * the IAM OIDC provider command and the role trust policy — ready to paste.
 */
export async function runTrustPolicy(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false });
  const format = values.format ?? 'text';
  if (format !== 'text' && format !== 'json') throw new CrosscredError('CONFIG_INVALID', `--format must be text or json, not ${JSON.stringify(format.slice(0, 20))}`);
  if (values['account-id'] !== undefined && !/^\d{12}$/.test(values['account-id'])) throw new CrosscredError('CONFIG_INVALID', '--account-id must be 12 digits');
  const { config, roleConfigured } = loadConfigForAdvice(values as ServeFlags);
  const role = values.role ? config.roles.find((r) => r.name === values.role) : config.roles[0];
  if (!role) throw new CrosscredError('CONFIG_INVALID', `no role named "${values.role}" (roles: ${config.roles.map((r) => r.name).join(', ')})`);

  const source = createTokenSource(role.token.source, systemClock);
  let claims;
  try {
    claims = (await source.getToken()).claims;
  } finally {
    await source.close?.();
  }
  // The partition of the configured role; without one, the partition of the region.
  const partition = roleConfigured ? (/^arn:(aws[a-z-]*):/.exec(role.roleArn)?.[1] ?? 'aws') : role.region.startsWith('cn-') ? 'aws-cn' : role.region.startsWith('us-gov-') ? 'aws-us-gov' : 'aws';
  const accountId = values['account-id'] ?? (roleConfigured ? role.accountId : undefined);
  const advice = trustPolicyFor({ claims, partition, ...(accountId ? { accountId } : {}), ...(values['sub-pattern'] !== undefined ? { subjectPattern: values['sub-pattern'] } : {}) });
  if ('problem' in advice) throw new CrosscredError('TOKEN_UNTRUSTABLE', `${source.description}: ${advice.problem}`);
  const roleName = roleConfigured ? role.roleArn.split('/').pop() : undefined;
  process.stdout.write(format === 'json' ? `${JSON.stringify(advice, null, 2)}\n` : formatTrustPolicyText(advice, roleName));
  return 0;
}
