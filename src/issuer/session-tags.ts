import { sanitizeTagValue } from '../platform/aws/session-tags.js';
import type { AttestedIdentity } from './attestor.js';

/**
 * AWS session tags from attested facts, carried in the `https://aws.amazon.com/tags` claim that
 * STS AssumeRoleWithWebIdentity reads (IAM user guide, "Passing session tags using
 * AssumeRoleWithWebIdentity"): `principal_tags` maps each key to an array holding one string,
 * `transitive_tag_keys` lists the keys that survive role chaining. The role's trust policy must
 * also allow `sts:TagSession`.
 */
export interface AwsTagsClaim {
  readonly principal_tags: Readonly<Record<string, readonly [string]>>;
  readonly transitive_tag_keys?: readonly string[];
}

/** Where a tag's value comes from: a field of the attested identity, or `attribute:<name>`. */
export const TAG_VALUE_FIELDS = ['kind', 'cloud', 'accountId', 'region', 'instanceId', 'roleName', 'roleId'] as const;
export type TagValueField = (typeof TAG_VALUE_FIELDS)[number];

export interface SessionTagRule {
  readonly key: string;
  /** A TAG_VALUE_FIELDS name, or `attribute:<name>` for one of AttestedIdentity.attributes. */
  readonly from: string;
}

/** The attribute an attestor sets when `instanceId` was derived from something the caller chose. */
export const INSTANCE_ID_SOURCE = 'instance-id-source';

/** The problem with a configured value source, or undefined. */
export function tagSourceProblem(from: string): string | undefined {
  if ((TAG_VALUE_FIELDS as readonly string[]).includes(from)) return undefined;
  if (/^attribute:[A-Za-z0-9._-]{1,64}$/.test(from)) return undefined;
  return `must be one of ${TAG_VALUE_FIELDS.join(', ')}, or attribute:<name>`;
}

function attestedValue(identity: AttestedIdentity, from: string): string | undefined {
  if (from.startsWith('attribute:')) return identity.attributes[from.slice('attribute:'.length)];
  if (from === 'kind') return kindLabelOf(identity.kind);
  // An instance id read from a role session name was chosen by whoever assumed the role: never a tag.
  if (from === 'instanceId' && identity.attributes[INSTANCE_ID_SOURCE] === 'session-name') return undefined;
  const value = identity[from as Exclude<TagValueField, 'kind'>];
  return typeof value === 'string' ? value : undefined;
}

/** The last segment of a subject token type URN: `alibaba-ecs-identity`, … */
export function kindLabelOf(subjectTokenType: string): string {
  return subjectTokenType.slice(subjectTokenType.lastIndexOf(':') + 1);
}

/**
 * The tags claim for an identity, or undefined when no rule yields a value. A rule whose source the
 * identity lacks (or has empty) adds no tag: an absent fact is not turned into an empty tag.
 */
export function buildTagsClaim(rules: readonly SessionTagRule[], transitiveKeys: readonly string[], identity: AttestedIdentity): AwsTagsClaim | undefined {
  const tags: Record<string, [string]> = {};
  for (const rule of rules) {
    const raw = attestedValue(identity, rule.from);
    if (raw === undefined || raw === '') continue;
    tags[rule.key] = [sanitizeTagValue(raw)];
  }
  const keys = Object.keys(tags);
  if (keys.length === 0) return undefined;
  const transitive = transitiveKeys.filter((k) => k in tags);
  return transitive.length > 0 ? { principal_tags: tags, transitive_tag_keys: transitive } : { principal_tags: tags };
}
