import type { CloudName } from '../core/clouds.js';
import { parseRoleArn } from '../platform/aws/role-arn.js';
import { VALID_SESSION_NAME } from '../platform/aws/session-name.js';
import {
  MAX_CHAINED_SESSION_SECONDS,
  MIN_SESSION_SECONDS,
  policyArnsProblem,
  sessionPoliciesLengthProblem,
  sessionPolicyProblem,
  VALID_EXTERNAL_ID,
} from '../platform/aws/session-policy.js';
import { MAX_SESSION_TAGS, tagKeyProblem, tagValueProblem } from '../platform/aws/session-tags.js';
import { isTemplate, parseTemplate } from '../protocol/workload-identity.js';
import { clip, problem } from './checks.js';
import type { ChainHopConfig, SessionPolicies, SessionTagConfig } from './config.js';
import type { FileRole, Resolved } from './layers.js';

/**
 * What narrows and extends an AWS role's session (#18), from a role of the config file: its session
 * policy and managed policies, and its chain of roles assumed one after another. Each is checked
 * against STS's documented limits here, so what STS would refuse is a configuration error at
 * start-up (naming the key), never a failure at run time. A policy document's text never appears
 * in a message.
 */

/** More hops than this is a mistake, not a design: each costs an STS round trip at every refresh. */
export const MAX_CHAIN_HOPS = 5;

export interface RoleSession extends SessionPolicies {
  readonly chain?: readonly ChainHopConfig[];
}

type FileHop = NonNullable<FileRole['chain']>[number];

/**
 * The session documents of a file role, checked. `field` names a key of this role for messages
 * (`roles[0].chain[1].externalId`); `hubArn` is the web-identity role's ARN.
 */
export function resolveRoleSession(role: FileRole, cloud: CloudName, hubArn: string, field: (key: string) => string, origin: string): Resolved<RoleSession> {
  const problems: string[] = [];
  const set = (['policy', 'policyArns', 'chain'] as const).filter((k) => role[k] !== undefined);
  if (cloud !== 'aws') {
    const words = `is for an AWS role (session policies and role chains are AWS STS's); this role is in ${cloud}`;
    return { value: {}, problems: set.map((k) => problem(field(k), origin, words)) };
  }
  const policies = checkPolicies(role, field, origin, problems);
  const hub = parseRoleArn(hubArn);
  const partition = 'problem' in hub ? undefined : hub.partition;
  const chain = role.chain?.map((hop, i) => checkHop(hop, (key) => field(`chain[${i}].${key}`), origin, partition, problems));
  if (chain) transitiveCollisions(chain, (i) => field(`chain[${i}].tags`), origin, problems);
  if (chain && chain.length > MAX_CHAIN_HOPS) {
    problems.push(problem(field('chain'), origin, `has ${chain.length} hops; at most ${MAX_CHAIN_HOPS} (each hop is an STS call at every refresh)`));
  }
  return { value: { ...policies, ...(chain ? { chain } : {}) }, problems };
}

function checkPolicies(
  source: { policy?: unknown; policyArns?: string[] | undefined },
  field: (key: string) => string,
  origin: string,
  problems: string[],
): SessionPolicies {
  const out: { policy?: string; policyArns?: readonly string[] } = {};
  if (source.policy !== undefined) {
    // Written as YAML or as an object: sent compact, as STS counts every character.
    const text = typeof source.policy === 'string' ? source.policy : JSON.stringify(source.policy);
    const bad = sessionPolicyProblem(text);
    if (bad) problems.push(problem(field('policy'), origin, bad));
    out.policy = text;
  }
  if (source.policyArns !== undefined) {
    const bad = policyArnsProblem(source.policyArns);
    if (bad) problems.push(problem(field('policyArns'), origin, bad));
    out.policyArns = source.policyArns;
  }
  const together = sessionPoliciesLengthProblem(out.policy, out.policyArns);
  if (together) problems.push(problem(field('policy'), origin, together));
  return out;
}

function checkHop(hop: FileHop, field: (key: string) => string, origin: string, partition: string | undefined, problems: string[]): ChainHopConfig {
  const parsed = parseRoleArn(hop.roleArn);
  let accountId = '';
  if ('problem' in parsed) problems.push(problem(field('roleArn'), origin, `"${clip(hop.roleArn)}" ${parsed.problem}`));
  else {
    accountId = parsed.accountId;
    if (partition !== undefined && parsed.partition !== partition) {
      problems.push(
        problem(field('roleArn'), origin, `is in partition ${parsed.partition}, the role before it in ${partition}: AssumeRole cannot cross partitions`),
      );
    }
  }
  if (hop.externalId !== undefined && !VALID_EXTERNAL_ID.test(hop.externalId)) {
    problems.push(problem(field('externalId'), origin, 'must be 2–1224 characters of letters, digits and +=,.@:/-_'));
  }
  if (hop.sessionName !== undefined) {
    const bad = isTemplate(hop.sessionName)
      ? sessionNameTemplateProblem(hop.sessionName, 'aws')
      : VALID_SESSION_NAME.test(hop.sessionName)
        ? undefined
        : `"${clip(hop.sessionName)}" must be 2–64 characters of letters, digits and +=,.@_-, or a template such as {namespace}.{pod}`;
    if (bad) problems.push(problem(field('sessionName'), origin, bad));
  }
  const duration = hop.durationSeconds;
  if (duration !== undefined) {
    if (!Number.isInteger(duration) || duration < MIN_SESSION_SECONDS) {
      problems.push(
        problem(
          field('durationSeconds'),
          origin,
          `${duration} must be a whole number of seconds from ${MIN_SESSION_SECONDS} to ${MAX_CHAINED_SESSION_SECONDS}`,
        ),
      );
    } else if (duration > MAX_CHAINED_SESSION_SECONDS) {
      const words = `${duration} is above ${MAX_CHAINED_SESSION_SECONDS}: AWS caps a chained session (a role assumed with another role's credentials) at one hour, whatever the role's maximum session duration`;
      problems.push(problem(field('durationSeconds'), origin, words));
    }
  }
  const policies = checkPolicies(hop, field, origin, problems);
  const tags = checkTags(hop.tags, field, origin, problems);
  const transitive = hop.transitiveTagKeys;
  if (transitive !== undefined) {
    const keys = new Set(tags.map((t) => t.key.toLowerCase()));
    const stray = transitive.find((k) => !keys.has(k.toLowerCase()));
    if (stray !== undefined) problems.push(problem(field('transitiveTagKeys'), origin, `names "${clip(stray)}", which is not a key of this hop's tags`));
  }
  return {
    roleArn: hop.roleArn,
    accountId,
    ...(hop.externalId !== undefined ? { externalId: hop.externalId } : {}),
    ...(hop.sessionName !== undefined ? { sessionName: hop.sessionName } : {}),
    ...(duration !== undefined ? { durationSeconds: duration } : {}),
    ...policies,
    ...(tags.length > 0 ? { tags } : {}),
    ...(transitive?.length ? { transitiveTagKeys: transitive } : {}),
  };
}

/**
 * A hop may not send a tag whose key a hop before it made transitive: STS refuses the request (the
 * inherited tag cannot be replaced). The token's own transitive tags cannot be known here.
 */
function transitiveCollisions(chain: readonly ChainHopConfig[], field: (index: number) => string, origin: string, problems: string[]): void {
  const inherited = new Map<string, number>();
  chain.forEach((hop, i) => {
    for (const tag of hop.tags ?? []) {
      const from = inherited.get(tag.key.toLowerCase());
      if (from !== undefined) {
        problems.push(
          problem(field(i), origin, `key "${clip(tag.key)}" is a transitive tag of hop ${from + 1}, which this session inherits: STS refuses to set it again`),
        );
      }
    }
    for (const key of hop.transitiveTagKeys ?? []) if (!inherited.has(key.toLowerCase())) inherited.set(key.toLowerCase(), i);
  });
}

function checkTags(tags: Record<string, string> | undefined, field: (key: string) => string, origin: string, problems: string[]): SessionTagConfig[] {
  if (tags === undefined) return [];
  const entries = Object.entries(tags);
  if (entries.length > MAX_SESSION_TAGS) problems.push(problem(field('tags'), origin, `has ${entries.length} tags; STS takes at most ${MAX_SESSION_TAGS}`));
  const seen = new Set<string>();
  for (const [key, value] of entries) {
    const badKey = tagKeyProblem(key);
    if (badKey) problems.push(problem(field('tags'), origin, `key "${clip(key)}" ${badKey}`));
    // IAM treats tag keys case-insensitively: two keys differing only in case are one tag twice.
    if (seen.has(key.toLowerCase())) problems.push(problem(field('tags'), origin, `key "${clip(key)}" appears twice (tag keys are case-insensitive)`));
    seen.add(key.toLowerCase());
    const template = parseTemplate(value);
    if ('problem' in template) problems.push(problem(field(`tags.${key}`), origin, template.problem));
    else {
      const badValue = tagValueProblem(value.replace(/\{[^{}]*\}/g, ''));
      if (badValue) problems.push(problem(field(`tags.${key}`), origin, badValue));
    }
  }
  return entries.map(([key, value]) => ({ key, value }));
}

/** The characters each cloud's STS allows in a session name, as a class. */
const SESSION_NAME_CHARACTERS: Record<CloudName, RegExp> = {
  aws: /^[\w+=,.@-]*$/,
  alibaba: /^[\w.@-]*$/,
  tencent: /^[\w+=,.@-]*$/,
};

/**
 * The problem with a session name that is a template (`{namespace}.{pod}`), or undefined. Its
 * literal text must use the cloud's characters; what the variables fill in is made to fit at each
 * exchange. A name without a variable is checked by the caller against the full rule.
 */
export function sessionNameTemplateProblem(value: string, cloud: CloudName): string | undefined {
  const template = parseTemplate(value);
  if ('problem' in template) return `"${clip(value)}" ${template.problem}`;
  if (!SESSION_NAME_CHARACTERS[cloud].test(value.replace(/\{[^{}]*\}/g, ''))) {
    return `"${clip(value)}" has characters outside letters, digits and ${cloud === 'alibaba' ? '.@_-' : '+=,.@_-'} besides its {variables}`;
  }
  return undefined;
}
