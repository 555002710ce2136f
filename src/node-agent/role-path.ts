import { parseRoleArn, type RoleArn } from '../platform/aws/role-arn.js';
import { CREDENTIALS_PATH_PREFIX, MAX_ROLE_ARN_LENGTH } from '../protocol/pod-identity.js';

/**
 * Step 3 of the request path: the role ARN that follows `/v1/credentials/` literally (role paths
 * contain `/`), percent-decoded once, parsed by the one strict parser of platform/aws/role-arn.ts.
 */

/** The bare EKS-style path: the role is not in it, so the agent cannot know which one is wanted. */
export const BARE_CREDENTIALS_PATH = CREDENTIALS_PATH_PREFIX.slice(0, -1);

/** Each decoded character is at most three encoded ones (`%XX`); a longer path is refused unread. */
const MAX_ENCODED_LENGTH = 3 * MAX_ROLE_ARN_LENGTH;

export type RolePath =
  | { readonly kind: 'role'; readonly arn: string; readonly parts: RoleArn }
  | { readonly kind: 'missing' }
  | { readonly kind: 'too-long' }
  | { readonly kind: 'invalid'; readonly problem: string }
  | { readonly kind: 'not-found' };

export function readRolePath(path: string): RolePath {
  if (path === BARE_CREDENTIALS_PATH || path === CREDENTIALS_PATH_PREFIX) return { kind: 'missing' };
  if (!path.startsWith(CREDENTIALS_PATH_PREFIX)) return { kind: 'not-found' };
  const encoded = path.slice(CREDENTIALS_PATH_PREFIX.length);
  if (encoded.length > MAX_ENCODED_LENGTH) return { kind: 'too-long' };
  let arn: string;
  try {
    arn = encoded.includes('%') ? decodeURIComponent(encoded) : encoded;
  } catch {
    return { kind: 'invalid', problem: 'has a malformed percent-escape' };
  }
  if (arn.length > MAX_ROLE_ARN_LENGTH) return { kind: 'too-long' };
  const parts = parseRoleArn(arn);
  if ('problem' in parts) return { kind: 'invalid', problem: parts.problem };
  return { kind: 'role', arn, parts };
}

/**
 * The partition of an AWS region, by its prefix: STS in one partition never assumes a role of
 * another, so the agent answers such a request itself instead of sending it.
 */
export function partitionOfRegion(region: string): string {
  if (region.startsWith('cn-')) return 'aws-cn';
  if (region.startsWith('us-gov-')) return 'aws-us-gov';
  if (region.startsWith('us-isob-')) return 'aws-iso-b';
  if (region.startsWith('us-isof-')) return 'aws-iso-f';
  if (region.startsWith('eu-isoe-')) return 'aws-iso-e';
  if (region.startsWith('us-iso-')) return 'aws-iso';
  if (region.startsWith('eusc-')) return 'aws-eusc';
  return 'aws';
}

/** `*` matches any run of characters (`/` included); everything else matches itself. */
export function roleGlob(pattern: string): RegExp {
  const body = pattern
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\/]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${body}$`);
}
