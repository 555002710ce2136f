/**
 * What STS accepts in a session's narrowing and length (API_AssumeRole, API_AssumeRoleWithWebIdentity,
 * and the IAM User Guide's "Role chaining" and "IAM and AWS STS quotas"), checked before anything is
 * sent: a configuration STS would refuse is a configuration error at start-up, not a failure at run time.
 */

/**
 * `Policy` and `PolicyArns`: the plaintext of the inline session policy and of the managed
 * policies' ARNs together is at most 2,048 characters (before STS packs it).
 */
export const MAX_SESSION_POLICY_LENGTH = 2048;

/** The characters a session policy may hold: U+0020–U+00FF, tab, line feed and carriage return. */
const POLICY_CHARACTERS = /^[\u0020-\u00FF\t\n\r]*$/;

/** `PolicyArns`: at most 10 managed policies per session. */
export const MAX_SESSION_POLICY_ARNS = 10;

/**
 * Role chaining (a role's credentials assuming another role) caps the new session at one hour,
 * whatever the target role's maximum session duration: a `DurationSeconds` above this is refused by STS.
 */
export const MAX_CHAINED_SESSION_SECONDS = 3600;

/** The shortest session STS grants. */
export const MIN_SESSION_SECONDS = 900;

/** `ExternalId`: 2–1224 characters of `[\w+=,.@:/-]`. */
export const VALID_EXTERNAL_ID = /^[\w+=,.@:/-]{2,1224}$/;

/** A managed policy ARN: `arn:<partition>:iam::<account id or aws>:policy/<path/name>`. */
const POLICY_ARN = /^arn:aws[a-z-]*:iam::(?:\d{12}|aws):policy\/[\w+=,.@/-]{1,512}$/;

/** The problem with an inline session policy, or undefined. Its text never appears in the words. */
export function sessionPolicyProblem(policy: string): string | undefined {
  if (policy.length === 0) return 'is empty';
  if (policy.length > MAX_SESSION_POLICY_LENGTH) {
    return `is ${policy.length} characters, above STS's ${MAX_SESSION_POLICY_LENGTH} for a session policy (spaces count: write it compactly, or use policyArns)`;
  }
  if (!POLICY_CHARACTERS.test(policy)) return 'holds a character outside U+0020–U+00FF, tab, line feed and carriage return, which STS refuses in a policy';
  let parsed: unknown;
  try {
    parsed = JSON.parse(policy);
  } catch {
    return 'is not JSON (STS would answer MalformedPolicyDocument)';
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return 'is not a JSON object (an IAM policy document)';
  if (!('Statement' in parsed)) return 'has no Statement';
  return undefined;
}

/** The problem with an inline policy and managed policy ARNs sent together, or undefined. */
export function sessionPoliciesLengthProblem(policy: string | undefined, arns: readonly string[] | undefined): string | undefined {
  const total = (policy?.length ?? 0) + (arns ?? []).reduce((n, arn) => n + arn.length, 0);
  if (policy === undefined || arns === undefined || arns.length === 0 || total <= MAX_SESSION_POLICY_LENGTH) return undefined;
  return `and policyArns are ${total} characters together, above STS's ${MAX_SESSION_POLICY_LENGTH} for a session's inline and managed policies`;
}

/** The problem with a list of managed policy ARNs, or undefined. */
export function policyArnsProblem(arns: readonly string[]): string | undefined {
  if (arns.length > MAX_SESSION_POLICY_ARNS) return `lists ${arns.length} policies, above STS's ${MAX_SESSION_POLICY_ARNS}`;
  const bad = arns.find((arn) => !POLICY_ARN.test(arn));
  if (bad !== undefined) return `holds "${bad.slice(0, 80)}", which is not a managed policy ARN (arn:aws:iam::<account id or aws>:policy/<name>)`;
  if (new Set(arns).size !== arns.length) return 'names a policy twice';
  return undefined;
}
