import type { TokenClaimsSummary } from '../sources/token-source.js';

/**
 * What the AWS side needs so that STS accepts a token: an IAM OIDC identity provider for the
 * token's issuer with its audience as a client ID, and a role trust policy that lets that provider
 * assume the role, pinned to the token's audience and subject.
 */
export interface TrustPolicyAdvice {
  readonly oidcProvider: {
    /** The issuer URL as IAM wants it for create-open-id-connect-provider. */
    readonly url: string;
    readonly clientIds: readonly string[];
    readonly arn: string;
  };
  /** argv of the AWS CLI command that registers the provider. */
  readonly createProviderCommand: readonly string[];
  readonly trustPolicy: {
    readonly Version: '2012-10-17';
    readonly Statement: ReadonlyArray<{
      readonly Effect: 'Allow';
      readonly Principal: { readonly Federated: string };
      readonly Action: 'sts:AssumeRoleWithWebIdentity';
      readonly Condition: Record<string, Record<string, string>>;
    }>;
  };
  /** Remarks a person should read (an audience choice, a placeholder account). */
  readonly notes: readonly string[];
}

export interface TrustPolicyInputs {
  readonly claims: TokenClaimsSummary;
  /** The 12-digit account that owns the role and the provider; a placeholder when unknown. */
  readonly accountId?: string;
  /** `aws`, `aws-cn` or `aws-us-gov`. */
  readonly partition?: string;
  /** An IAM StringLike pattern for `sub` (e.g. `system:serviceaccount:payments:*`); default: the token's exact sub. */
  readonly subjectPattern?: string;
}

export const ACCOUNT_PLACEHOLDER = '<ACCOUNT_ID>';

/** Returns the advice, or a problem sentence when the token cannot be trusted by IAM at all. */
export function trustPolicyFor(inputs: TrustPolicyInputs): TrustPolicyAdvice | { readonly problem: string } {
  const { claims } = inputs;
  if (!claims.iss) return { problem: 'the token has no "iss" claim; IAM needs an issuer URL' };
  let issuer: URL;
  try {
    issuer = new URL(claims.iss);
  } catch {
    return { problem: `the token's issuer ${JSON.stringify(claims.iss)} is not a URL` };
  }
  if (!claims.sub) return { problem: 'the token has no "sub" claim to pin the trust policy to' };
  const audiences = typeof claims.aud === 'string' ? [claims.aud] : [...(claims.aud ?? [])];
  if (audiences.length === 0) return { problem: 'the token has no "aud" claim; IAM matches it against the provider\'s client IDs' };

  const notes: string[] = [];
  if (issuer.port !== '') notes.push(`The issuer URL carries a port (${issuer.port}); IAM's OIDC provider URL must not, so a token with this issuer cannot be trusted as it is.`);
  if (issuer.protocol !== 'https:') notes.push(`The issuer ${claims.iss} is not HTTPS: IAM accepts only https:// issuers whose discovery document and JWKS it can fetch over the internet.`);
  // IAM's condition keys are the issuer without scheme and trailing slash.
  const providerPath = `${issuer.host}${issuer.pathname}`.replace(/\/+$/, '');
  const partition = inputs.partition ?? 'aws';
  const account = inputs.accountId ?? ACCOUNT_PLACEHOLDER;
  if (!inputs.accountId) notes.push(`No role ARN or --account-id was given: replace ${ACCOUNT_PLACEHOLDER} with the 12-digit account that owns the role.`);
  const audience = audiences.includes('sts.amazonaws.com') ? 'sts.amazonaws.com' : audiences[0]!;
  if (audiences.length > 1) notes.push(`The token names several audiences (${audiences.join(', ')}); the policy pins ${audience}.`);
  const providerArn = `arn:${partition}:iam::${account}:oidc-provider/${providerPath}`;
  const subjectCondition = inputs.subjectPattern !== undefined && /[*?]/.test(inputs.subjectPattern) ? 'StringLike' : 'StringEquals';
  const subject = inputs.subjectPattern ?? claims.sub;
  const condition: Record<string, Record<string, string>> =
    subjectCondition === 'StringLike'
      ? { StringEquals: { [`${providerPath}:aud`]: audience }, StringLike: { [`${providerPath}:sub`]: subject } }
      : { StringEquals: { [`${providerPath}:aud`]: audience, [`${providerPath}:sub`]: subject } };
  return {
    oidcProvider: { url: `https://${providerPath}`, clientIds: audiences, arn: providerArn },
    createProviderCommand: ['aws', 'iam', 'create-open-id-connect-provider', '--url', `https://${providerPath}`, '--client-id-list', ...audiences],
    trustPolicy: {
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Principal: { Federated: providerArn }, Action: 'sts:AssumeRoleWithWebIdentity', Condition: condition }],
    },
    notes,
  };
}

/** The advice as a person reads it: commented shell and the policy JSON, ready to paste. */
export function formatTrustPolicyText(advice: TrustPolicyAdvice, roleName: string | undefined): string {
  const role = roleName ?? '<ROLE_NAME>';
  const lines = [
    '# 1. Register the token issuer as an IAM OIDC identity provider (once per issuer and account).',
    '#    IAM fetches the issuer\'s TLS certificate thumbprint itself when none is given (older AWS CLIs,',
    '#    such as Debian\'s 2.9, still insist on --thumbprint-list).',
    shellJoin(advice.createProviderCommand),
    '',
    '# 2. Save the trust policy below as trust-policy.json, then attach it to the role:',
    `#    aws iam update-assume-role-policy --role-name ${role} --policy-document file://trust-policy.json`,
    `#    (or, for a new role: aws iam create-role --role-name ${role} --assume-role-policy-document file://trust-policy.json)`,
    JSON.stringify(advice.trustPolicy, null, 2),
  ];
  if (advice.notes.length > 0) lines.push('', ...advice.notes.map((n) => `# Note: ${n}`));
  return `${lines.join('\n')}\n`;
}

/** Quotes argv for a POSIX shell, only where needed. */
export function shellJoin(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}
