/**
 * The one catalogue of crosscred's errors. Every error that reaches a person (a log line, a CLI
 * message, an HTTP answer) carries one of these stable codes. A retired code is never reused.
 *
 * Messages say what went wrong and what to do. They never contain a secret: callers pass only
 * names, paths, codes and numbers, never a token, key or request header value.
 */

export const ErrorCodes = {
  // Start-up configuration.
  CONFIG_INVALID: { status: 500, hint: 'fix the named setting and start again' },
  CONFIG_FILE_UNREADABLE: { status: 500, hint: 'check the --config path and its permissions' },
  AUTH_TOKEN_FILE_INVALID: { status: 500, hint: 'write a non-empty secret to the file, or delete it to have one generated' },
  INSTANCE_SECRET_FILE_INVALID: {
    status: 500,
    hint: 'the --instance-secret-file must be a 0600 file of crosscred or root holding 43 base64url characters, in a directory crosscred can write',
  },
  LISTEN_FAILED: { status: 500, hint: 'check that the address exists on this host and the port is free' },
  INTERNAL_ERROR: { status: 500, hint: 'an unexpected failure; the log line at the same time says where' },
  PRIVILEGE_DROP_FAILED: {
    status: 500,
    hint: 'start as root with the SETUID and SETGID capabilities (dropped with the switch), or without --run-as as the target user',
  },

  // The web-identity token.
  TOKEN_FILE_UNREADABLE: { status: 503, hint: 'check that the token file exists and is readable by crosscred' },
  TOKEN_TOO_LARGE: { status: 503, hint: 'the token file is not a JWT; check what writes it' },
  TOKEN_NOT_JWT: { status: 503, hint: 'the token file does not hold a complete JWT yet; it is retried shortly' },
  TOKEN_EXPIRED: { status: 503, hint: "check that whatever writes or issues the token still rotates it, and that this host's clock is right (NTP)" },
  TOKEN_SOURCE_NOT_FOUND: {
    status: 500,
    hint: 'set AWS_WEB_IDENTITY_TOKEN_FILE (or the ACK/TKE variable), --token-file, --token-command, or run in a Kubernetes pod; crosscred doctor explains what it looked for',
  },
  TOKEN_REQUEST_FAILED: {
    status: 503,
    hint: "the Kubernetes API (TokenRequest) or crosscred issuer (token exchange) refused or failed the request; for Kubernetes check the ServiceAccount may create serviceaccounts/token (RBAC), for the issuer check --issuer-url, its CA and the issuer's log",
  },
  TOKEN_UNTRUSTABLE: { status: 500, hint: 'IAM can trust only a token with an https issuer (iss), an audience (aud) and a subject (sub)' },
  TOKEN_COMMAND_FAILED: {
    status: 503,
    hint: 'run the --token-command by hand and check it prints a JWT, or JSON {"token","expiration"}, within the time limit',
  },

  // The alibaba-ecs source (attestation gathered on the instance).
  ALIBABA_METADATA_FAILED: {
    status: 503,
    hint: 'check that crosscred runs on an Alibaba ECS instance that reaches its metadata server at 100.100.100.200 in hardened (token) mode, and for ram-role that a RAM role is attached to the instance',
  },
  ALIBABA_SIGNING_FAILED: {
    status: 503,
    hint: "the Alibaba SDK could not sign GetCallerIdentity with the instance's RAM-role credentials; check that a RAM role is attached (crosscred doctor explains each step)",
  },

  // The tencent-cvm source (attestation gathered on the instance).
  TENCENT_CVM_ROLE_UNAVAILABLE: {
    status: 503,
    hint: 'check that crosscred runs on a Tencent CVM instance with a CAM role bound to it and reaches metadata.tencentyun.com (169.254.0.23); crosscred retries',
  },

  // AWS STS.
  STS_REJECTED: { status: 503, hint: 'STS refused the exchange; check the role trust policy and the OIDC provider in IAM' },
  STS_UNAVAILABLE: { status: 503, hint: 'STS could not be reached or failed; crosscred retries with backoff' },
  STS_BAD_RESPONSE: { status: 503, hint: 'STS answered something that is not usable credentials; crosscred retries' },
  SESSION_TEMPLATE_UNRESOLVED: {
    status: 503,
    hint: 'the token does not carry a variable a sessionName or tag template names (a pod-bound Kubernetes token has {pod}, a token of crosscred issuer {account} and {instance}): change the template or the token source',
  },

  // Serving.
  CREDENTIALS_UNAVAILABLE: { status: 503, hint: 'no valid credentials are cached yet; retry after the Retry-After seconds' },
  IMDS_TOKEN_REQUIRED: { status: 401, hint: 'PUT /latest/api/token first and send the token in X-aws-ec2-metadata-token' },
  IMDS_TTL_INVALID: { status: 400, hint: 'send X-aws-ec2-metadata-token-ttl-seconds between 1 and 21600' },
  IMDS_FORWARDED: { status: 403, hint: 'session tokens are not issued to forwarded requests' },
  HOST_FORBIDDEN: { status: 403, hint: 'address the daemon by the IP it listens on, or add the name with --allowed-host' },
  CONTAINER_AUTH_MISSING: { status: 401, hint: 'send the secret from AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE) in the Authorization header' },
  CONTAINER_AUTH_INVALID: { status: 403, hint: 'the Authorization header does not match the secret in --auth-token-file' },
  CONTAINER_ENDPOINT_DISABLED: { status: 404, hint: 'start crosscred with --auth-token-file to enable the container endpoint' },
  NOT_FOUND: { status: 404, hint: 'see docs/endpoints.md for the paths crosscred serves' },
  REQUEST_INVALID: { status: 400, hint: 'the request is not well-formed HTTP for this endpoint' },
  PATH_TOO_LONG: { status: 414, hint: 'role names are at most 64 characters' },
  METHOD_NOT_ALLOWED: { status: 405, hint: 'metadata paths answer GET and HEAD only; the token path answers PUT only' },
  OVERLOADED: { status: 503, hint: 'too many clients at once; retry after the Retry-After seconds' },
  SHUTTING_DOWN: { status: 503, hint: 'this crosscred is stopping; retry after the Retry-After seconds' },

  // The credential_process helper.
  DAEMON_UNREACHABLE: { status: 503, hint: 'check that crosscred serve runs and --endpoint points at its container endpoint' },

  // crosscred issuer: start-up.
  ISSUER_KEY_INVALID: {
    status: 500,
    hint: "use a PKCS#8 PEM or JWK private key, ES256 (P-256) or RS256 (2048-8192 bits), owned by crosscred's user with mode 0600; crosscred issuer keygen makes one",
  },
  ISSUER_KEY_FILE_EXISTS: { status: 500, hint: 'keygen never overwrites a key: choose a new file name' },
  ISSUER_ATTESTOR_UNAVAILABLE: {
    status: 500,
    hint: 'an attestation kind is configured whose attestor is not part of this build, or its settings are unusable',
  },
  // crosscred issuer: token requests (answered as RFC 6749 errors; the code is in the log and the description).
  ISSUER_REQUEST_INVALID: { status: 400, hint: 'send a token-exchange form POST as in src/protocol/issuer-token-exchange.ts' },
  ISSUER_METHOD_NOT_ALLOWED: { status: 405, hint: 'the discovery documents answer GET and HEAD; the token endpoint answers POST' },
  ISSUER_GRANT_TYPE_UNSUPPORTED: { status: 400, hint: 'grant_type must be urn:ietf:params:oauth:grant-type:token-exchange' },
  ISSUER_TOKEN_TYPE_UNSUPPORTED: { status: 400, hint: 'subject_token_type must be an attestation kind this issuer has configured' },
  ISSUER_AUDIENCE_REFUSED: { status: 400, hint: "ask for an audience listed in the issuer's audiences setting, or none for its default" },
  ISSUER_ATTESTATION_INVALID: { status: 400, hint: 'the attestation was refused; gather a fresh one bound to this issuer URL' },
  ISSUER_ATTESTATION_REPLAYED: { status: 400, hint: 'each attestation is accepted once; gather a fresh one' },
  ISSUER_POLICY_REFUSED: {
    status: 400,
    hint: "the attested identity is not in the issuer's policy for its kind; add its account, region, role or instance there",
  },
  ISSUER_INSTANCE_SECRET_MISMATCH: {
    status: 403,
    hint: 'this instance is bound to the secret its first attestation presented (trustOnFirstUse); present that secret, or, for a re-imaged instance, reset the binding with crosscred issuer reset-instance',
  },
  ISSUER_RATE_LIMITED: { status: 429, hint: 'this identity (or its account) asks too often; retry after the Retry-After seconds' },
  ISSUER_CLIENT_RATE_LIMITED: { status: 429, hint: 'this client address sends token requests too often; retry after the Retry-After seconds' },
  ISSUER_BUSY: { status: 503, hint: 'the issuer is at a capacity bound; retry after the Retry-After seconds' },
  ISSUER_ATTESTATION_UNAVAILABLE: { status: 503, hint: 'the cloud service that confirms the attestation could not be reached in time; retry shortly' },
  ISSUER_STATE_UNAVAILABLE: {
    status: 503,
    hint: "the issuer's shared state (the state setting: Redis) could not be reached or refused the write in time; requests that need it are refused until it answers again; retry shortly",
  },

  // Serving Alibaba Cloud's SDKs (serve/alibaba-routes.ts, docs/alibaba-cloud.md).
  ALIBABA_URI_DISABLED: {
    status: 404,
    hint: 'the Alibaba URI endpoint has no auth header, so without --auth-token-file it is served only on a loopback listener; start crosscred with --auth-token-file and use /v1/alibaba/credentials/<secret>',
  },
  ALIBABA_URI_SECRET_REQUIRED: {
    status: 401,
    hint: 'with --auth-token-file set, use /v1/alibaba/credentials/<the secret, URL-encoded> as ALIBABA_CLOUD_CREDENTIALS_URI',
  },
  ALIBABA_URI_SECRET_INVALID: { status: 403, hint: 'the secret in the path does not match the one in --auth-token-file' },
  ECS_METADATA_TOKEN_REQUIRED: { status: 401, hint: 'PUT /latest/api/token first and send the token in X-aliyun-ecs-metadata-token' },
  ECS_METADATA_TTL_INVALID: { status: 400, hint: 'send X-aliyun-ecs-metadata-token-ttl-seconds between 1 and 21600' },
} as const satisfies Record<string, { status: number; hint: string }>;

export type ErrorName = keyof typeof ErrorCodes;
export type ErrorCode = `CROSSCRED_ERR_${ErrorName}`;

export class CrosscredError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  readonly hint: string;

  constructor(name: ErrorName, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CrosscredError';
    this.code = `CROSSCRED_ERR_${name}`;
    this.statusCode = ErrorCodes[name].status;
    this.hint = ErrorCodes[name].hint;
  }

  /** The message a person reads: code, what happened, what to do. */
  describe(): string {
    return `${this.code}: ${this.message} (${this.hint})`;
  }
}

export function isCrosscredError(err: unknown, name?: ErrorName): err is CrosscredError {
  return err instanceof CrosscredError && (name === undefined || err.code === `CROSSCRED_ERR_${name}`);
}
