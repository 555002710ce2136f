import { SUBJECT_TOKEN_TYPES, type SubjectTokenType } from '../protocol/issuer-token-exchange.js';
import { formatVmSubject } from '../protocol/vm-subjects.js';
import type { AttestedIdentity } from './attestor.js';
import { type AwsTagsClaim, buildTagsClaim, type SessionTagRule } from './session-tags.js';

/**
 * Who may get a token, and what its `sub` and session tags are: decided from attested facts only.
 *
 * Every dimension of a kind's policy is an allow-list that must be written out: an empty or
 * missing list refuses everything, never allows everything. `"*"` (which must be written
 * explicitly, and is not accepted for accounts) matches any value, and also an identity whose
 * attestation does not state that fact (a RAM-role session that is not an instance's).
 *
 * The `sub` formats are in src/protocol/vm-subjects.ts.
 */

/** The attestation kinds, by their configuration names. */
export const ATTESTATION_KINDS = ['alibabaEcsIdentity', 'alibabaRamRole', 'tencentCamRole'] as const;
export type AttestationKind = (typeof ATTESTATION_KINDS)[number];

/**
 * Which allow-lists each kind's policy must have (besides `accounts`). The role kinds have no
 * `instanceIds`: their "instance" would come from the role session name, which whoever assumes
 * the role chooses, so it proves nothing (see SESSION_NAMED_INSTANCE_KINDS).
 */
export const KIND_DIMENSIONS: Record<AttestationKind, readonly ('regions' | 'roles' | 'instanceIds')[]> = {
  alibabaEcsIdentity: ['regions', 'instanceIds'],
  alibabaRamRole: ['roles'],
  tencentCamRole: ['roles'],
};

/**
 * Kinds whose attested instance id, if any, is taken from a role session name chosen by the caller
 * of AssumeRole: no allow-list or session tag may rely on it.
 */
export const SESSION_NAMED_INSTANCE_KINDS: readonly AttestationKind[] = ['alibabaRamRole', 'tencentCamRole'];

/**
 * Kinds that may bind an instance on first use: those whose instance id the cloud signed. A role
 * kind's instance id is a session name its caller chose, so binding it would let anyone who can
 * assume the role bind (and so lock out) any instance id they like.
 */
export const FIRST_USE_KINDS: readonly AttestationKind[] = ['alibabaEcsIdentity'];

export const KIND_CLOUD: Record<AttestationKind, AttestedIdentity['cloud']> = {
  alibabaEcsIdentity: 'alibaba',
  alibabaRamRole: 'alibaba',
  tencentCamRole: 'tencent',
};

export function kindOfTokenType(type: string): AttestationKind | undefined {
  return ATTESTATION_KINDS.find((k) => SUBJECT_TOKEN_TYPES[k] === type);
}

/** Matches any value, and an absent one; must be written explicitly. */
export const ANY = '*';

export interface KindPolicy {
  readonly accounts: readonly string[];
  readonly regions?: readonly string[];
  /** Alibaba: RAM role names. Tencent: CAM role ids (GetCallerIdentity names roles by id). */
  readonly roles?: readonly string[];
  /** alibabaEcsIdentity only (see KIND_DIMENSIONS). */
  readonly instanceIds?: readonly string[];
  readonly sessionTags: readonly SessionTagRule[];
  readonly transitiveTagKeys: readonly string[];
  /**
   * Trust on first use: the instance's first accepted attestation binds the instance secret it
   * presents; later ones must present the same. Only for FIRST_USE_KINDS. Default off.
   */
  readonly trustOnFirstUse?: boolean;
}

export type PolicyDecision =
  | { readonly allowed: true; readonly subject: string; readonly tags?: AwsTagsClaim }
  | { readonly allowed: false; readonly reason: string };

/**
 * An attested id that goes into `sub` must look like a cloud id: this keeps the `:`-separated
 * formats unambiguous whatever an attestor passes on.
 */
const SUBJECT_PART = /^[A-Za-z0-9][A-Za-z0-9._@+=,-]{0,127}$/;

export class IssuerPolicy {
  constructor(private readonly policies: Readonly<Partial<Record<AttestationKind, KindPolicy>>>) {}

  /** The kinds that have a policy (and so may get tokens). */
  get kinds(): AttestationKind[] {
    return ATTESTATION_KINDS.filter((k) => this.policies[k] !== undefined);
  }

  /** Whether this kind's instances are bound to their instance secret on first use. */
  trustsOnFirstUse(kind: AttestationKind): boolean {
    return this.policies[kind]?.trustOnFirstUse === true && FIRST_USE_KINDS.includes(kind);
  }

  decide(identity: AttestedIdentity, expectedType: SubjectTokenType): PolicyDecision {
    const kind = kindOfTokenType(identity.kind);
    if (kind === undefined || identity.kind !== expectedType) return { allowed: false, reason: 'the attestor reported an identity of another kind' };
    const policy = this.policies[kind];
    if (!policy) return { allowed: false, reason: `no policy for ${kind}` };
    if (identity.cloud !== KIND_CLOUD[kind]) return { allowed: false, reason: `the attestor reported a ${identity.cloud} identity for ${kind}` };

    const label = SUBJECT_TOKEN_TYPES[kind].slice(SUBJECT_TOKEN_TYPES[kind].lastIndexOf(':') + 1);
    if (!SUBJECT_PART.test(identity.accountId)) return { allowed: false, reason: 'the attested account id has unexpected characters' };
    if (!policy.accounts.includes(identity.accountId)) return { allowed: false, reason: `account ${identity.accountId} may not get ${label} tokens` };
    const role = kind === 'tencentCamRole' ? identity.roleId : identity.roleName;
    const values: Record<'regions' | 'roles' | 'instanceIds', string | undefined> = { regions: identity.region, roles: role, instanceIds: identity.instanceId };
    const names = { regions: 'region', roles: kind === 'tencentCamRole' ? 'role id' : 'role', instanceIds: 'instance' } as const;
    for (const dimension of KIND_DIMENSIONS[kind]) {
      const allowed = policy[dimension] ?? [];
      const value = values[dimension];
      if (value !== undefined && !SUBJECT_PART.test(value)) return { allowed: false, reason: `the attested ${names[dimension]} has unexpected characters` };
      if (allowed.includes(ANY)) continue;
      if (value === undefined) return { allowed: false, reason: `the attestation states no ${names[dimension]}, and the policy lists specific ones` };
      if (!allowed.includes(value))
        return { allowed: false, reason: `${names[dimension]} ${value} of account ${identity.accountId} may not get ${label} tokens` };
    }

    let subject: string | undefined;
    switch (kind) {
      case 'alibabaEcsIdentity':
        if (identity.region && identity.instanceId)
          subject = formatVmSubject({ kind: 'alibaba-ecs', account: identity.accountId, region: identity.region, instanceId: identity.instanceId });
        break;
      case 'alibabaRamRole':
        if (identity.roleName) subject = formatVmSubject({ kind: 'alibaba-ram', account: identity.accountId, role: identity.roleName });
        break;
      case 'tencentCamRole':
        if (identity.roleId) subject = formatVmSubject({ kind: 'tencent-cam', account: identity.accountId, role: identity.roleId });
        break;
    }
    if (subject === undefined) return { allowed: false, reason: `the attestation lacks a fact the ${label} subject is made of` };
    const tags = buildTagsClaim(policy.sessionTags, policy.transitiveTagKeys, identity);
    return tags ? { allowed: true, subject, tags } : { allowed: true, subject };
  }
}
