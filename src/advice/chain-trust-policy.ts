import type { AwsRoleConfig, ChainHopConfig } from '../config/config.js';
import { roleArnParts } from '../platform/aws/role-arn.js';
import { shellJoin } from './trust-policy.js';

/**
 * What IAM needs for each hop of a role chain (#18): the target role's trust policy lets the role
 * of the step before it call sts:AssumeRole, and that role's own policy lets it ask. The hub's
 * web-identity trust policy is trustPolicyFor's, unchanged.
 */
export interface ChainHopTrustAdvice {
  /** 1 for the first hop after the web-identity step. */
  readonly hop: number;
  readonly roleArn: string;
  /** The role of the step before: the hub's for hop 1, else the previous hop's. */
  readonly trustedRoleArn: string;
  /** The target's trust policy, for `aws iam update-assume-role-policy`. */
  readonly trustPolicy: HopTrustPolicy;
  /** The trusted role's identity policy that allows the call, for `aws iam put-role-policy`. */
  readonly callerPolicy: CallerPolicy;
  /** argv of the AWS CLI commands that apply both, each run in its role's account. */
  readonly commands: readonly (readonly string[])[];
  readonly notes: readonly string[];
}

type HopAction = 'sts:AssumeRole' | readonly ['sts:AssumeRole', 'sts:TagSession'];

export interface HopTrustPolicy {
  readonly Version: '2012-10-17';
  readonly Statement: ReadonlyArray<{
    readonly Effect: 'Allow';
    readonly Principal: { readonly AWS: string };
    readonly Action: HopAction;
    readonly Condition?: { readonly StringEquals: { readonly 'sts:ExternalId': string } };
  }>;
}

export interface CallerPolicy {
  readonly Version: '2012-10-17';
  readonly Statement: ReadonlyArray<{ readonly Effect: 'Allow'; readonly Action: HopAction; readonly Resource: string }>;
}

export interface ChainTrustInputs {
  readonly role: AwsRoleConfig;
  /**
   * The token carries session tags (`--session-tags`): those it marks transitive arrive at hop 1,
   * so its trust policy allows sts:TagSession too.
   */
  readonly tokenSessionTags: boolean;
}

/** The advice for every hop of the role's chain, in order; empty for a role without one. */
export function chainTrustPolicyFor(inputs: ChainTrustInputs): readonly ChainHopTrustAdvice[] {
  const chain = inputs.role.chain ?? [];
  return chain.map((hop, index) => {
    const previous = index === 0 ? undefined : chain[index - 1]!;
    const trustedRoleArn = previous?.roleArn ?? inputs.role.roleArn;
    return hopAdvice(index + 1, hop, trustedRoleArn, incomingTags(chain.slice(0, index), inputs.tokenSessionTags));
  });
}

/**
 * Why transitive tags reach this hop, in words, or undefined when none can. Transitive tags last for
 * the rest of the chain: those of the token and of every hop before this one arrive here.
 */
function incomingTags(before: readonly ChainHopConfig[], tokenSessionTags: boolean): string | undefined {
  const reasons: string[] = [];
  if (tokenSessionTags) reasons.push('the token carries session tags: those its claim marks transitive (transitive_tag_keys) arrive here');
  before.forEach((hop, i) => {
    if ((hop.transitiveTagKeys ?? []).length > 0)
      reasons.push(`hop ${i + 1} marks tags transitive (${hop.transitiveTagKeys!.join(', ')}), and they last for the rest of the chain`);
  });
  return reasons.length > 0 ? reasons.join('; ') : undefined;
}

function hopAdvice(hop: number, config: ChainHopConfig, trustedRoleArn: string, incoming: string | undefined): ChainHopTrustAdvice {
  const setsTags = (config.tags ?? []).length > 0;
  const trustAction: HopAction = setsTags || incoming ? ['sts:AssumeRole', 'sts:TagSession'] : 'sts:AssumeRole';
  // The caller needs sts:TagSession only for the tags it sends itself; inherited ones are the target's concern.
  const callerAction: HopAction = setsTags ? ['sts:AssumeRole', 'sts:TagSession'] : 'sts:AssumeRole';
  const targetName = roleNameOf(config.roleArn);
  const callerName = roleNameOf(trustedRoleArn);
  const trustFile = `trust-policy-hop-${hop}.json`;
  const callerFile = `assume-hop-${hop}.json`;
  const policyName = `crosscred-assume-${targetName}`;
  const notes = [
    `The Principal is the role ${trustedRoleArn}, not a session of it (arn:aws:sts::…:assumed-role/…): IAM matches every session of that role, whatever its session name.`,
    `The role ${callerName} must itself be allowed to call sts:AssumeRole on ${config.roleArn}: attach the second policy to it${accountOf(trustedRoleArn) === accountOf(config.roleArn) ? '' : ' (across accounts, IAM needs both sides to allow the call)'}.`,
    'If the trusted role is deleted and created again, IAM no longer recognises it in this trust policy: save the policy again.',
  ];
  if (setsTags) notes.push('This hop sets session tags, so both policies allow sts:TagSession.');
  if (incoming) notes.push(`The trust policy allows sts:TagSession because ${incoming}.`);
  else if (hop === 1)
    notes.push(
      'If the token carries session tags (the https://aws.amazon.com/tags claim) with transitive keys, they arrive at this hop and every one after it, whose trust policies must then allow sts:TagSession too: rerun with --session-tags.',
    );
  return {
    hop,
    roleArn: config.roleArn,
    trustedRoleArn,
    trustPolicy: {
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Principal: { AWS: trustedRoleArn },
          Action: trustAction,
          ...(config.externalId !== undefined ? { Condition: { StringEquals: { 'sts:ExternalId': config.externalId } } } : {}),
        },
      ],
    },
    callerPolicy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: callerAction, Resource: config.roleArn }] },
    commands: [
      ['aws', 'iam', 'update-assume-role-policy', '--role-name', targetName, '--policy-document', `file://${trustFile}`],
      ['aws', 'iam', 'put-role-policy', '--role-name', callerName, '--policy-name', policyName, '--policy-document', `file://${callerFile}`],
    ],
    notes,
  };
}

function roleNameOf(roleArn: string): string {
  return roleArnParts(roleArn)?.name ?? roleArn.split('/').pop()!;
}

function accountOf(roleArn: string): string | undefined {
  return roleArnParts(roleArn)?.accountId;
}

/** The hops' advice as a person reads it, numbered after the hub's two steps; empty without a chain. */
export function formatChainTrustText(hops: readonly ChainHopTrustAdvice[], firstStep = 3): string {
  const lines: string[] = [];
  hops.forEach((h, index) => {
    const step = firstStep + index;
    const [trustCommand, callerCommand] = h.commands;
    lines.push(
      '',
      `# ${step}. Hop ${h.hop}: ${h.trustedRoleArn} assumes ${h.roleArn} with sts:AssumeRole.`,
      `#    Save this trust policy as trust-policy-hop-${h.hop}.json and attach it to the target role (in account ${accountOf(h.roleArn) ?? '?'}):`,
      `#    ${shellJoin(trustCommand!)}`,
      JSON.stringify(h.trustPolicy, null, 2),
      `#    Save this policy as assume-hop-${h.hop}.json and attach it to the role that asks (in account ${accountOf(h.trustedRoleArn) ?? '?'}):`,
      `#    ${shellJoin(callerCommand!)}`,
      JSON.stringify(h.callerPolicy, null, 2),
      ...h.notes.map((n) => `# Note: ${n}`),
    );
  });
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}
