/**
 * The wire contract between `crosscred serve`'s VM sources (alibaba-ecs, tencent-cvm) and
 * `crosscred issuer`: what a source sends to the token endpoint and what it gets back. Both sides
 * import it, so they cannot drift apart. See docs/research/vm-attestation.md for why each choice.
 *
 * The token endpoint follows OAuth 2.0 Token Exchange (RFC 8693): a form POST with
 * `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`, a `subject_token` (the attestation,
 * encoded as below) and its `subject_token_type`; optionally `audience` (the JWT's `aud`, default
 * `sts.amazonaws.com`, must be one the issuer allows) and `requested_token_type` (only
 * `urn:ietf:params:oauth:token-type:jwt`). There is no client authentication: the attestation is it.
 */

export const TOKEN_EXCHANGE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:token-exchange';
/** The only token type issued: a signed JWT for STS AssumeRoleWithWebIdentity. */
export const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

/** Paths under the issuer URL. Discovery is the standard OIDC one; AWS IAM reads it and the JWKS. */
export const ISSUER_PATHS = {
  discovery: '/.well-known/openid-configuration',
  jwks: '/.well-known/jwks.json',
  token: '/token',
} as const;

/** `subject_token_type`, one per attestation kind. */
export const SUBJECT_TOKEN_TYPES = {
  /** The ECS instance identity document and its PKCS#7 signature, bound to this issuer by its audience. */
  alibabaEcsIdentity: 'urn:crosscred:params:token-type:alibaba-ecs-identity',
  /** A signed Alibaba STS GetCallerIdentity request (ACS3-HMAC-SHA256) made with the instance's RAM-role credentials. */
  alibabaRamRole: 'urn:crosscred:params:token-type:alibaba-ram-role',
  /** A signed Tencent STS GetCallerIdentity request (TC3-HMAC-SHA256) made with the CVM's CAM-role credentials. */
  tencentCamRole: 'urn:crosscred:params:token-type:tencent-cam-role',
} as const;
export type SubjectTokenType = (typeof SUBJECT_TOKEN_TYPES)[keyof typeof SUBJECT_TOKEN_TYPES];

/**
 * The audience an ECS instance asks its metadata server to sign into the PKCS#7
 * (`/latest/dynamic/instance-identity/pkcs7?audience=…`): the JSON text of this object, the shape
 * Alibaba's own IDaaS clients use. `aud` binds the signature to one issuer URL; `signingTime`
 * (Unix seconds) makes it fresh, since the document itself holds no time.
 */
export interface EcsAttestationAudience {
  readonly aud: string;
  readonly signingTime: number;
}

/** `subject_token` of alibaba-ecs-identity: base64url of the JSON text of this object. */
export interface AlibabaEcsIdentityAttestation {
  /** The instance identity document exactly as the metadata server returned it. */
  readonly document: string;
  /** The PKCS#7 signature exactly as the metadata server returned it (base64 DER, maybe with line breaks). */
  readonly pkcs7: string;
  /** The exact audience string that was passed to the metadata server (JSON of EcsAttestationAudience). */
  readonly audience: string;
}

/**
 * `subject_token` of the signed-request kinds: base64url of the JSON text of this object, a
 * GetCallerIdentity request signed by the caller and not sent. The issuer checks it, then sends
 * it itself, only to an allow-listed STS host, and trusts the identity STS answers with.
 */
export interface SignedRequestAttestation {
  readonly method: 'POST';
  /** `https://<sts host>/` (the issuer refuses any other scheme, host, port or path). */
  readonly url: string;
  /** Lower-case names; every header the signature covers, and nothing else is forwarded. */
  readonly headers: Readonly<Record<string, string>>;
  /** The request body as signed (empty for Alibaba ACS3, `{}` for Tencent TC3). */
  readonly body: string;
}

/**
 * The signed header that binds a signed request to one issuer: its value is the issuer URL, and
 * the issuer refuses a request whose signature does not cover it (a captured request cannot be
 * presented to another issuer, which would otherwise get a valid identity from STS).
 */
export const BINDING_HEADERS = {
  alibaba: 'x-acs-crosscred-audience',
  tencent: 'x-crosscred-audience',
} as const;

/**
 * Trust on first use (issue #11, item 6; the issuer's `policy.<kind>.trustOnFirstUse`): the VM's
 * crosscred sends this optional form field on every token request. Its value is a secret only that
 * crosscred holds (32 random bytes, base64url without padding: 43 characters), made once and kept
 * in a 0600 file on the VM. The first accepted attestation of an instance binds the secret's
 * SHA-256 to the instance id; later attestations of that instance must present the same secret.
 * A GET-only SSRF on the VM can fetch a signed identity document but not this file, so it cannot
 * get a token once crosscred has bound its instance. The issuer keeps only the hash, never the secret.
 */
export const INSTANCE_SECRET_PARAMETER = 'crosscred_instance_secret';
/** Random bytes in an instance secret. */
export const INSTANCE_SECRET_BYTES = 32;
/** The exact shape of an instance secret on the wire and in its file: 43 base64url characters. */
export const INSTANCE_SECRET_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** The token endpoint's success answer (RFC 8693 §2.2.1). */
export interface TokenExchangeResponse {
  readonly access_token: string;
  readonly issued_token_type: typeof JWT_TOKEN_TYPE;
  /** `N_A`: the JWT is not an OAuth access token, it is presented to STS. */
  readonly token_type: 'N_A';
  /** Seconds until the JWT's `exp`. */
  readonly expires_in: number;
}

/** The token endpoint's error answer (RFC 6749 §5.2); `error_description` never holds a secret. */
export interface TokenExchangeError {
  readonly error: 'invalid_request' | 'invalid_grant' | 'unsupported_grant_type' | 'invalid_target' | 'temporarily_unavailable' | 'slow_down';
  readonly error_description: string;
}

/** Encodes an attestation object as a `subject_token`. */
export function encodeSubjectToken(attestation: AlibabaEcsIdentityAttestation | SignedRequestAttestation): string {
  return Buffer.from(JSON.stringify(attestation), 'utf8').toString('base64url');
}
