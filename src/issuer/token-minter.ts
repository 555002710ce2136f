import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import { ATTESTATION_CLAIM, AWS_TAGS_CLAIM } from '../protocol/workload-identity.js';
import type { AttestedIdentity } from './attestor.js';
import type { IssuerKeySet } from './keys.js';
import { type AwsTagsClaim, kindLabelOf } from './session-tags.js';

/** Token lifetime bounds, in seconds: 5 minutes to 12 hours (STS's longest session); default 1 hour. */
export const MIN_TOKEN_LIFETIME_SECONDS = 300;
export const MAX_TOKEN_LIFETIME_SECONDS = 43_200;
export const DEFAULT_TOKEN_LIFETIME_SECONDS = 3_600;

/**
 * Attested attributes copied into the claim, bounded so a token stays far below STS's 20,000
 * characters whatever an attestor passes on.
 */
const MAX_ATTRIBUTES = 32;
const MAX_ATTRIBUTE_NAME = 64;
const MAX_ATTRIBUTE_VALUE = 256;

/** The attested facts as they appear in the token, in snake_case like registered claims. */
export interface AttestationClaim {
  readonly kind: string;
  readonly cloud: string;
  readonly account_id: string;
  readonly region?: string;
  readonly instance_id?: string;
  readonly role_name?: string;
  readonly role_id?: string;
  readonly attributes?: Readonly<Record<string, string>>;
}

export interface MintInput {
  readonly subject: string;
  readonly audience: string;
  readonly lifetimeSeconds: number;
  readonly identity: AttestedIdentity;
  readonly tags?: AwsTagsClaim;
}

export interface MintedToken {
  readonly jwt: string;
  readonly jti: string;
  readonly kid: string;
  readonly issuedAt: number;
  readonly expiresAt: number;
}

export function attestationClaimOf(identity: AttestedIdentity): AttestationClaim {
  const attributes: Record<string, string> = {};
  let count = 0;
  for (const [name, value] of Object.entries(identity.attributes)) {
    if (count >= MAX_ATTRIBUTES) break;
    if (typeof value !== 'string' || name.length > MAX_ATTRIBUTE_NAME || !/^[A-Za-z0-9._-]+$/.test(name)) continue;
    attributes[name] = value.slice(0, MAX_ATTRIBUTE_VALUE);
    count++;
  }
  return {
    kind: kindLabelOf(identity.kind),
    cloud: identity.cloud,
    account_id: identity.accountId,
    ...(identity.region !== undefined ? { region: identity.region } : {}),
    ...(identity.instanceId !== undefined ? { instance_id: identity.instanceId } : {}),
    ...(identity.roleName !== undefined ? { role_name: identity.roleName } : {}),
    ...(identity.roleId !== undefined ? { role_id: identity.roleId } : {}),
    ...(count > 0 ? { attributes } : {}),
  };
}

/**
 * Signs the JWT: header `alg`, `kid` (the active key's thumbprint), `typ: JWT`; claims `iss`,
 * `sub`, `aud`, `iat`, `nbf` (= `iat`), `exp`, `jti` (128 random bits), the attested facts and,
 * when the policy maps any, session tags.
 */
export async function mintToken(issuerUrl: string, keys: IssuerKeySet, input: MintInput, nowWall: number): Promise<MintedToken> {
  const issuedAt = Math.floor(nowWall / 1000);
  const expiresAt = issuedAt + input.lifetimeSeconds;
  const jti = randomBytes(16).toString('base64url');
  const key = keys.active;
  const claims: Record<string, unknown> = { [ATTESTATION_CLAIM]: attestationClaimOf(input.identity) };
  if (input.tags) claims[AWS_TAGS_CLAIM] = input.tags;
  const jwt = await new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
    .setIssuer(issuerUrl)
    .setSubject(input.subject)
    .setAudience(input.audience)
    .setIssuedAt(issuedAt)
    .setNotBefore(issuedAt)
    .setExpirationTime(expiresAt)
    .setJti(jti)
    .sign(key.privateKey);
  return { jwt, jti, kid: key.kid, issuedAt, expiresAt };
}
