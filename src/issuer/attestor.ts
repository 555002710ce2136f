import type { SubjectTokenType, TokenExchangeError } from '../protocol/issuer-token-exchange.js';

/**
 * What an attestation proved about the caller, in the cloud's own terms. Only facts the cloud
 * signed or answered go here, never anything the caller merely claimed. The issuer's policy
 * decides from these whether to issue a token, and builds `sub` and session tags from them.
 */
export interface AttestedIdentity {
  /** The attestation kind that produced it. */
  readonly kind: SubjectTokenType;
  readonly cloud: 'alibaba' | 'tencent';
  /** Alibaba: the owner / RAM account id. Tencent: the account's UIN. */
  readonly accountId: string;
  /** The region the instance runs in, where the attestation says. */
  readonly region?: string;
  /** The ECS or CVM instance id, where the attestation says. */
  readonly instanceId?: string;
  /** Alibaba: the RAM role name of the instance's credentials. */
  readonly roleName?: string;
  /** Tencent: the CAM role id (its GetCallerIdentity names roles by id, not by name). */
  readonly roleId?: string;
  /** Further attested facts (zone, instance type, image…), all strings, safe to log and to tag. */
  readonly attributes: Readonly<Record<string, string>>;
  /** Identifies this very attestation, for the seen-set that refuses a replay (e.g. a hash of its signature). */
  readonly replayKey: string;
  /** Until when (epoch ms) the attestation could be presented again: the seen-set keeps replayKey that long. */
  readonly replayUntilWall: number;
}

export interface AttestationContext {
  /** This issuer's URL, exactly as in the JWT's `iss`: what the attestation must be bound to. */
  readonly issuerUrl: string;
  /** Now, by this host's clock (epoch ms). */
  readonly nowWall: number;
  /** Aborted when the token request's deadline passes; an attestor that calls out must honour it. */
  readonly signal: AbortSignal;
}

/** Verifies one kind of attestation. Stateless: replay and rate limits are the token endpoint's. */
export interface Attestor {
  readonly subjectTokenType: SubjectTokenType;
  /** The identity the attestation proves, or an AttestationError saying why not. */
  attest(subjectToken: string, context: AttestationContext): Promise<AttestedIdentity>;
  /**
   * Releases what the attestor holds (connection pools). The issuer calls it when a reload
   * replaces the attestor and when it stops; calls already in flight must still complete.
   */
  close?(): Promise<void>;
}

/**
 * A refused attestation. `oauthError` is the RFC 6749 error code the token endpoint answers with:
 * `invalid_request` for a malformed subject token, `invalid_grant` for one that is well-formed but
 * not valid (bad signature, wrong audience, stale, a host not on the allow-list, an identity STS
 * does not confirm), `temporarily_unavailable` when the cloud's STS cannot be reached. The
 * description goes to the caller and the log: it must never contain a secret, a signature or a
 * credential, only names, ids and reasons.
 */
export class AttestationError extends Error {
  constructor(
    readonly oauthError: Extract<TokenExchangeError['error'], 'invalid_request' | 'invalid_grant' | 'temporarily_unavailable'>,
    description: string,
  ) {
    super(description);
    this.name = 'AttestationError';
  }
}
