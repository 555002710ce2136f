import { readJwtShape } from '../protocol/jwt-shape.js';
import { type PodTokenIdentity, SERVICE_ACCOUNT_SUBJECT, TOKEN_CLOCK_SKEW_MS } from '../protocol/pod-identity.js';
import type { SessionTemplate } from '../protocol/workload-identity.js';
import { podSessionNameFor } from './session-name.js';

/**
 * Step 4 and 5 of the request path (docs/research/kubernetes-cluster.md §5.2): is the pod's
 * token one worth an STS call? Everything here is judged from the token's own bytes, without the
 * issuer's keys (STS verifies the signature); what it stops is junk, tokens for another audience
 * or issuer, expired and legacy tokens, before any of them costs a call.
 */

/** A projected token is a few KiB; anything this large is not one. Answered 400 unread. */
export const MAX_TOKEN_BYTES = 16 * 1024;

/** A refusal's HTTP status, code (the JSON `Code`) and metric label; the message is fixed text. */
export interface TokenRefusal {
  readonly status: 400 | 401;
  readonly code: string;
  readonly reason: string;
  readonly message: string;
}

export interface AdmittedToken {
  readonly token: string;
  /** `exp` in epoch ms. */
  readonly expiresAtWall: number;
  readonly subject: string;
  readonly identity: PodTokenIdentity;
  /** The STS session name for this pod (§5.5). */
  readonly sessionName: string;
}

export interface TokenAdmissionPolicy {
  /** The token's `aud` must contain this. */
  readonly audience: string;
  /** The token's `iss` must be one of these, exactly. */
  readonly allowedIssuers: ReadonlySet<string>;
  /** Accept tokens with no `kubernetes.io.pod` claim (a TokenRequest not bound to a pod). */
  readonly allowUnboundTokens: boolean;
  /** --session-name-template; absent: `<namespace>.<pod>` (podSessionName). */
  readonly sessionNameTemplate?: SessionTemplate;
}

function refusal(status: 400 | 401, code: string, reason: string, message: string): TokenRefusal {
  return { status, code, reason, message };
}

const REFUSALS = {
  missing: refusal(
    401,
    'TOKEN_MISSING',
    'token_missing',
    "send the pod's projected ServiceAccount token in the Authorization header (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)",
  ),
  tooLarge: refusal(400, 'TOKEN_TOO_LARGE', 'token_too_large', `the Authorization header is longer than ${MAX_TOKEN_BYTES} bytes; it is not a projected token`),
  notJwt: refusal(401, 'TOKEN_NOT_JWT', 'token_not_jwt', 'the Authorization header does not hold a JWT (three base64url parts, JSON header and payload)'),
  algorithm: refusal(401, 'TOKEN_ALGORITHM', 'token_algorithm', 'the token is not signed with an algorithm STS accepts (RS256/384/512, ES256/384/512)'),
  signature: refusal(401, 'TOKEN_SIGNATURE_INCOMPLETE', 'token_signature', "the token's signature is incomplete (truncated?)"),
  noExp: refusal(
    401,
    'TOKEN_NO_EXPIRY',
    'token_no_exp',
    'the token has no integer "exp" claim (a legacy Secret token?); mount a projected ServiceAccount token',
  ),
  expired: refusal(401, 'TOKEN_EXPIRED', 'token_expired', 'the token has expired; the kubelet rotates the projected token file: read it again'),
  notYetValid: refusal(
    401,
    'TOKEN_NOT_YET_VALID',
    'token_not_yet_valid',
    'the token is not valid yet ("nbf" or "iat" is in the future); check the node clock (NTP)',
  ),
  audience: refusal(401, 'TOKEN_AUDIENCE', 'token_audience', 'the token was not issued for this agent\'s audience (its "aud" lacks --audience)'),
  issuer: refusal(401, 'TOKEN_ISSUER', 'token_issuer', 'the token\'s issuer ("iss") is not an --allowed-issuer of this agent'),
  subject: refusal(
    401,
    'TOKEN_SUBJECT',
    'token_subject',
    'the token\'s "sub" is not system:serviceaccount:<namespace>:<name>, or disagrees with its kubernetes.io claim',
  ),
  unbound: refusal(
    401,
    'TOKEN_NOT_POD_BOUND',
    'token_unbound',
    'the token is not bound to a pod (no kubernetes.io.pod claim); mount a projected token, or start the agent with --allow-unbound-tokens',
  ),
  sessionNameVariable: refusal(
    401,
    'TOKEN_LACKS_SESSION_NAME',
    'token_lacks_session_name',
    "the token carries no pod name or uid (kubernetes.io.pod), which this agent's --session-name-template names; mount the pod's projected token",
  ),
} as const;

const SHAPE_REFUSAL = {
  empty: REFUSALS.missing,
  'too-large': REFUSALS.tooLarge,
  'not-jwt': REFUSALS.notJwt,
  algorithm: REFUSALS.algorithm,
  signature: REFUSALS.signature,
  'no-exp': REFUSALS.noExp,
  expired: REFUSALS.expired,
} as const;

/**
 * The token in an Authorization header. The SDKs send the raw JWT, as the EKS agent expects; a
 * `Bearer ` prefix (what a person with curl, or a Kubernetes-minded client, sends) is accepted
 * too and stripped: the same token bytes either way, so the same cache key.
 */
const BEARER = /^bearer(?:\s|$)/i;

export function tokenFromAuthorization(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  // A JWT starts with "ey" (base64url of '{"'), so a value starting with "Bearer" is never one.
  const value = BEARER.test(header) ? header.slice(6).trim() : header;
  return value === '' ? undefined : value;
}

/** Admits the token of an Authorization header, or says why not. */
export function admitToken(header: string | undefined, nowWallMs: number, policy: TokenAdmissionPolicy): AdmittedToken | TokenRefusal {
  if (header !== undefined && header.length > MAX_TOKEN_BYTES) return REFUSALS.tooLarge;
  const token = tokenFromAuthorization(header);
  if (token === undefined) return REFUSALS.missing;
  const shape = readJwtShape(token, nowWallMs);
  if (!shape.ok) return SHAPE_REFUSAL[shape.problem];
  const claims = shape.payload;
  const latestStart = (nowWallMs + TOKEN_CLOCK_SKEW_MS) / 1000;
  const nbf = claims['nbf'];
  const iat = claims['iat'];
  if ((nbf !== undefined && !(typeof nbf === 'number' && nbf <= latestStart)) || (iat !== undefined && !(typeof iat === 'number' && iat <= latestStart))) {
    return REFUSALS.notYetValid;
  }
  const aud = claims['aud'];
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
  if (!audiences.includes(policy.audience)) return REFUSALS.audience;
  const iss = claims['iss'];
  if (typeof iss !== 'string' || !policy.allowedIssuers.has(iss)) return REFUSALS.issuer;
  const sub = claims['sub'];
  const subject = typeof sub === 'string' ? SERVICE_ACCOUNT_SUBJECT.exec(sub) : null;
  if (subject === null) return REFUSALS.subject;
  const namespace = subject[1]!;
  const serviceAccountName = subject[2]!;
  const kubernetes = objectOrUndefined(claims['kubernetes.io']);
  const pod = objectOrUndefined(kubernetes?.['pod']);
  const podName = pod?.['name'];
  if (typeof podName !== 'string' || podName === '') {
    if (!policy.allowUnboundTokens) return REFUSALS.unbound;
  }
  // The claim must tell the same story as `sub`: the session name is built from it.
  if (kubernetes !== undefined) {
    const claimedNamespace = kubernetes['namespace'];
    const claimedAccount = objectOrUndefined(kubernetes['serviceaccount'])?.['name'];
    if ((claimedNamespace !== undefined && claimedNamespace !== namespace) || (claimedAccount !== undefined && claimedAccount !== serviceAccountName)) {
      return REFUSALS.subject;
    }
  }
  const accountUid = objectOrUndefined(kubernetes?.['serviceaccount'])?.['uid'];
  const podUid = pod?.['uid'];
  const identity: PodTokenIdentity = {
    namespace,
    serviceAccount: { name: serviceAccountName, ...(typeof accountUid === 'string' ? { uid: accountUid } : {}) },
    ...(typeof podName === 'string' && podName !== '' ? { pod: { name: podName, ...(typeof podUid === 'string' ? { uid: podUid } : {}) } } : {}),
  };
  const sessionName = podSessionNameFor(policy.sessionNameTemplate, identity);
  if (sessionName === undefined) return REFUSALS.sessionNameVariable;
  return { token, expiresAtWall: shape.exp * 1000, subject: sub as string, identity, sessionName };
}

export function isRefusal(value: AdmittedToken | TokenRefusal): value is TokenRefusal {
  return 'reason' in value;
}

function objectOrUndefined(value: unknown): Record<string, unknown> | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}
