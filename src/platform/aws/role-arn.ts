/**
 * IAM role ARNs: `arn:<partition>:iam::<12-digit account>:role/<path/><name>`. One parser for every
 * place that reads one (configured roles, their partition's home region, trust-policy advice, and
 * the roles named in request URIs and role chains to come), so all of them accept and refuse the
 * same strings. Stricter than a pattern over the whole ARN: IAM's own limits on the name (1–64 of
 * `[\w+=,.@-]`) and on the path (`/` or `/…/`, at most 512 characters) are checked, so a string
 * STS would refuse is refused here, with the reason.
 */
export interface RoleArn {
  /** `aws`, `aws-cn`, `aws-us-gov`, `aws-iso`, …: any `aws` partition, known today or not. */
  readonly partition: string;
  readonly accountId: string;
  /** `/` for a role without a path, else `/a/b/`. */
  readonly path: string;
  readonly name: string;
}

/** The longest ARN read at all: IAM's limits add up to well under this. */
const MAX_ARN_CHARS = 2048;
const PREFIX = /^arn:(aws(?:-[a-z]+)*):iam::(\d{12}):role(\/.*)$/;
/** IAM: 1–64 characters of letters, digits and `+=,.@_-`. */
const ROLE_NAME = /^[\w+=,.@-]{1,64}$/;
/** IAM: `/` alone, or `/` segments `/` of the same characters as names; at most 512 in all. */
const ROLE_PATH = /^\/(?:[\w+=,.@-]+\/)*$/;
const MAX_PATH_CHARS = 512;

/** The parts of an IAM role ARN, or why the text is not one. */
export function parseRoleArn(text: string): RoleArn | { readonly problem: string } {
  if (text.length > MAX_ARN_CHARS) return { problem: `is longer than ${MAX_ARN_CHARS} characters` };
  const m = PREFIX.exec(text);
  if (!m) return { problem: 'is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)' };
  const [, partition, accountId, rest] = m as unknown as [string, string, string, string];
  const slash = rest.lastIndexOf('/');
  const path = rest.slice(0, slash + 1);
  const name = rest.slice(slash + 1);
  if (!ROLE_NAME.test(name)) return { problem: 'has no valid role name after its last "/" (1 to 64 of letters, digits and +=,.@_-)' };
  if (path.length > MAX_PATH_CHARS || !ROLE_PATH.test(path))
    return { problem: `has an invalid role path (segments of letters, digits and +=,.@_-, at most ${MAX_PATH_CHARS} characters)` };
  return { partition, accountId, path, name };
}

/** The role ARN's parts, or undefined when the text is not one. */
export function roleArnParts(text: string): RoleArn | undefined {
  const parsed = parseRoleArn(text);
  return 'problem' in parsed ? undefined : parsed;
}
