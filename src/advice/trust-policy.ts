import { issuerUrlProblem } from '../core/url-checks.js';
import { formatVmSubject, VM_SUBJECT_KINDS, type VmSubjectKind, vmSubjectKindOf } from '../protocol/vm-subjects.js';
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
      /** With session tags (the `https://aws.amazon.com/tags` claim), STS also needs sts:TagSession. */
      readonly Action: 'sts:AssumeRoleWithWebIdentity' | readonly ['sts:AssumeRoleWithWebIdentity', 'sts:TagSession'];
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
  /** The token carries session tags: allow sts:TagSession too, or STS refuses the exchange. */
  readonly sessionTags?: boolean;
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
  if (issuer.port !== '')
    notes.push(`The issuer URL carries a port (${issuer.port}); IAM's OIDC provider URL must not, so a token with this issuer cannot be trusted as it is.`);
  if (issuer.protocol !== 'https:')
    notes.push(`The issuer ${claims.iss} is not HTTPS: IAM accepts only https:// issuers whose discovery document and JWKS it can fetch over the internet.`);
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
  const condition: Record<string, Record<string, string>> = subjectCondition === 'StringLike'
    ? { StringEquals: { [`${providerPath}:aud`]: audience }, StringLike: { [`${providerPath}:sub`]: subject } }
    : { StringEquals: { [`${providerPath}:aud`]: audience, [`${providerPath}:sub`]: subject } };
  return {
    oidcProvider: { url: `https://${providerPath}`, clientIds: audiences, arn: providerArn },
    createProviderCommand: ['aws', 'iam', 'create-open-id-connect-provider', '--url', `https://${providerPath}`, '--client-id-list', ...audiences],
    trustPolicy: {
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Principal: { Federated: providerArn },
          Action: inputs.sessionTags ? ['sts:AssumeRoleWithWebIdentity', 'sts:TagSession'] : 'sts:AssumeRoleWithWebIdentity',
          Condition: condition,
        },
      ],
    },
    notes,
  };
}

/** What the operator knows about the instances, to build a `sub` pattern without a token in hand. */
export interface VmSubjectFacts {
  /** Alibaba account id, or Tencent UIN: required, and never a wildcard. */
  readonly cloudAccount?: string;
  /** Alibaba ecs-identity only: the region id (e.g. cn-hangzhou); default any. */
  readonly region?: string;
  /** Alibaba ecs-identity only: one instance id; default any. */
  readonly instanceId?: string;
  /** RAM role name (alibaba-ram) or CAM role id (tencent-cam); default any. */
  readonly role?: string;
}

export interface VmTrustPolicyInputs {
  /** The issuer's publicUrl, exactly as in its JWTs' `iss` (the `--issuer-url` of serve). */
  readonly issuerUrl: string;
  /** The `aud` serve asks the issuer for (`--token-audience`, default sts.amazonaws.com). */
  readonly audience: string;
  /** Which attestation the instance uses; undefined when serve detects the cloud at run time. */
  readonly kind?: VmSubjectKind;
  readonly facts: VmSubjectFacts;
  /** An explicit IAM StringLike pattern for `sub`, instead of one built from `facts`. */
  readonly subjectPattern?: string;
  readonly accountId?: string;
  readonly partition?: string;
  /** The issuer's policy sets sessionTags for this kind: the statement must also allow sts:TagSession. */
  readonly sessionTags?: boolean;
}

/** An account id in a pattern: literal, since a wildcard there would trust other tenants' instances. */
const LITERAL_ACCOUNT = /^[A-Za-z0-9][A-Za-z0-9._@+=,-]{0,127}$/;
/** A region, instance id or role in a pattern: a cloud id, where `*` and `?` are IAM wildcards. */
const PATTERN_PART = /^[A-Za-z0-9*?][A-Za-z0-9._@+=,*?-]{0,127}$/;

/**
 * Why `pattern` is not a safe `sub` condition for tokens of crosscred issuer, or undefined. It must
 * start with a kind's prefix and a literal account followed by `:`: `alibaba-ecs:1335*` would also
 * match every account whose id starts with those digits.
 */
export function vmSubjectPatternProblem(pattern: string, kind: VmSubjectKind | undefined): string | undefined {
  const found = vmSubjectKindOf(pattern);
  if (!found) return `--sub-pattern must start with one of ${VM_SUBJECT_KINDS.map((k) => `${k}:`).join(', ')} (the formats crosscred issuer puts in sub)`;
  if (kind && found !== kind) return `--sub-pattern starts with ${found}:, but this instance's tokens will have ${kind}: subjects`;
  const rest = pattern.slice(found.length + 1);
  const colon = rest.indexOf(':');
  const account = colon < 0 ? rest : rest.slice(0, colon);
  if (colon < 0 || !LITERAL_ACCOUNT.test(account))
    return `--sub-pattern must name the ${found === 'tencent-cam' ? 'Tencent UIN' : 'Alibaba account id'} literally, followed by ":" (e.g. ${exampleSubject(found)}); a wildcard there would trust other accounts' instances`;
  if (/[^\x21-\x7e]/.test(pattern)) return '--sub-pattern must be printable ASCII without spaces';
  return undefined;
}

/** A `sub` pattern for `kind` from what the operator knows; unknown parts become `*`. */
export function vmSubjectPattern(kind: VmSubjectKind, facts: VmSubjectFacts): { readonly pattern: string } | { readonly problem: string } {
  const accountName = kind === 'tencent-cam' ? 'Tencent UIN' : 'Alibaba account id';
  if (facts.cloudAccount === undefined) {
    return {
      problem: `give --cloud-account (the ${accountName} the instances belong to) or --sub-pattern (e.g. ${exampleSubject(kind)}): a trust policy must not trust every account the issuer serves`,
    };
  }
  if (!LITERAL_ACCOUNT.test(facts.cloudAccount)) return { problem: `--cloud-account must be the ${accountName} itself, without wildcards` };
  for (const [flag, value] of [
    ['--cloud-region', facts.region],
    ['--instance-id', facts.instanceId],
    ['--cloud-role', facts.role],
  ] as const) {
    if (value !== undefined && !PATTERN_PART.test(value))
      return { problem: `${flag} ${JSON.stringify(value.slice(0, 40))} is not a cloud id (letters, digits, ._@+=,- and the wildcards * ?)` };
  }
  if (kind !== 'alibaba-ecs' && (facts.region !== undefined || facts.instanceId !== undefined)) {
    return {
      problem: `--cloud-region and --instance-id apply to alibaba-ecs subjects only: a ${kind} sub names the account and the role (use --alibaba-attestation ecs-identity to pin instances)`,
    };
  }
  if (kind === 'alibaba-ecs' && facts.role !== undefined)
    return { problem: '--cloud-role applies to alibaba-ram and tencent-cam subjects; an alibaba-ecs sub names the region and instance' };
  const account = facts.cloudAccount;
  return {
    pattern: formatVmSubject(
      kind === 'alibaba-ecs' ? { kind, account, region: facts.region ?? '*', instanceId: facts.instanceId ?? '*' } : { kind, account, role: facts.role ?? '*' },
    ),
  };
}

function exampleSubject(kind: VmSubjectKind): string {
  switch (kind) {
    case 'alibaba-ecs':
      return 'alibaba-ecs:1335926999564873:cn-hangzhou:*';
    case 'alibaba-ram':
      return 'alibaba-ram:1335926999564873:role/app-role';
    case 'tencent-cam':
      return 'tencent-cam:100012345678:role/4611686018427397919';
  }
}

/**
 * The `sub` a trust policy pins for tokens of crosscred issuer: `--sub-pattern` checked, or a
 * pattern built from what the operator knows; and the kind of subject it is. For any cloud's policy.
 */
export function vmSubjectFor(
  inputs: Pick<VmTrustPolicyInputs, 'kind' | 'facts' | 'subjectPattern'>,
): { readonly subject: string; readonly kind: VmSubjectKind | undefined } | { readonly problem: string } {
  if (inputs.subjectPattern !== undefined) {
    const problem = vmSubjectPatternProblem(inputs.subjectPattern, inputs.kind);
    if (problem) return { problem };
    return { subject: inputs.subjectPattern, kind: vmSubjectKindOf(inputs.subjectPattern) };
  }
  if (!inputs.kind)
    return {
      problem:
        'serve detects the cloud at run time, so say which one: --token-source alibaba-ecs or tencent-cvm (with --alibaba-attestation for Alibaba), or give --sub-pattern',
    };
  const built = vmSubjectPattern(inputs.kind, inputs.facts);
  if ('problem' in built) return built;
  return { subject: built.pattern, kind: inputs.kind };
}

/**
 * The advice for an instance whose token comes from `crosscred issuer`, built without a token (the
 * instance may not get one until the role exists): the provider is the issuer URL, the audience the
 * configured one, and `sub` follows the issuer's documented formats.
 */
export function vmTrustPolicyFor(inputs: VmTrustPolicyInputs): TrustPolicyAdvice | { readonly problem: string } {
  const urlProblem = issuerUrlProblem(inputs.issuerUrl);
  if (urlProblem) return { problem: `--issuer-url ${inputs.issuerUrl} ${urlProblem}` };
  const found = vmSubjectFor(inputs);
  if ('problem' in found) return found;
  const { subject, kind } = found;
  const advice = trustPolicyFor({
    claims: { iss: inputs.issuerUrl, sub: subject, aud: inputs.audience, exp: 0 },
    ...(inputs.accountId ? { accountId: inputs.accountId } : {}),
    ...(inputs.partition ? { partition: inputs.partition } : {}),
    subjectPattern: subject,
    ...(inputs.sessionTags ? { sessionTags: true } : {}),
  });
  if ('problem' in advice) return advice;
  const notes = [
    `The token comes from crosscred issuer: the provider is its publicUrl ${inputs.issuerUrl}, whose discovery document and JWKS AWS must be able to fetch over public HTTPS (serve them, or upload 'crosscred issuer export-discovery' to a bucket).`,
    `sub is pinned to ${subject}${/[*?]/.test(subject) ? ' (StringLike)' : ''}; the issuer's own policy decides which instances get a token at all.`,
  ];
  if (kind === 'alibaba-ram')
    notes.push('A RAM-role subject names the role, not the instance: every instance (or anyone) able to assume that RAM role matches.');
  if (!inputs.sessionTags)
    notes.push("If the issuer's policy sets sessionTags for this kind, STS also needs sts:TagSession in the statement: rerun with --session-tags.");
  return { ...advice, notes: [...notes, ...advice.notes] };
}

/** The advice as a person reads it: commented shell and the policy JSON, ready to paste. */
export function formatTrustPolicyText(advice: TrustPolicyAdvice, roleName: string | undefined): string {
  const role = roleName ?? '<ROLE_NAME>';
  const lines = [
    '# 1. Register the token issuer as an IAM OIDC identity provider (once per issuer and account).',
    "#    IAM fetches the issuer's TLS certificate thumbprint itself when none is given (older AWS CLIs,",
    "#    such as Debian's 2.9, still insist on --thumbprint-list).",
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
