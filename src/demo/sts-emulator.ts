import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { deflateRawSync } from 'node:zlib';
import { exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';
import { type KnownCredentials, SigV4Verifier } from './sigv4-verifier.js';
import { StsStandIn, type TransportFault } from './sts-stand-in.js';
import { globMatch, readSmallBody, WebIdentityVerifier } from './web-identity-verifier.js';

/**
 * An AWS STS stand-in for the demo and the tests: a real HTTP server that answers
 * AssumeRoleWithWebIdentity the way STS does (same form parameters, same XML, same error codes),
 * after really verifying the token: signature against the issuer's JWKS (found through its OIDC
 * discovery document, as IAM does), `iss`, `aud`, `exp`, and a trust rule on `sub`.
 *
 * It also answers GetWebIdentityToken (IAM outbound identity federation) as an account with the
 * feature enabled does: the request must be SigV4-signed with credentials it knows (ones it issued
 * itself, or host credentials a test registers with `addHostCredentials`), checked by
 * `SigV4Verifier`; the JWT it mints is signed with its own RS256 and ES384 keys, and it publishes
 * them as the account's issuer does, `iss` being its own URL: `/.well-known/openid-configuration`
 * and `/.well-known/jwks.json`.
 *
 * It answers AssumeRole (#18) too, SigV4-signed the same way; what it models is described at
 * `#assumeRoleSigned` below. AssumeRoleWithWebIdentity takes session policies and reads session
 * tags from the token, as described at `#assumeRole`. `expireCredentials` ends sessions it issued
 * early, for the faults of a chain whose hub session expires half-way.
 *
 * Tests can also make it misbehave on command (5xx, Throttling, InvalidIdentityToken,
 * ExpiredTokenException, a hang, garbage, a load balancer's error page, short-lived credentials,
 * refused connections) — the failure paths real STS cannot be asked to produce — and read back
 * every request it received (`requests`).
 */

export interface TrustRule {
  readonly roleArn: string;
  /** Issuer URL the token's `iss` must equal (the IAM OIDC provider). */
  readonly issuer: string;
  /** The `aud` the provider is registered with (e.g. sts.amazonaws.com). */
  readonly audience: string;
  /** The `sub` the role's trust policy allows; `*` and `?` match as in IAM's StringLike. */
  readonly subject: string;
  /** The role's maximum session duration in seconds (IAM's default is 3600). */
  readonly maxSessionDuration?: number;
  /**
   * The trust policy also allows `sts:TagSession`, which a token carrying session tags needs.
   * Default true, so that a rule written before tags existed keeps accepting tagged tokens.
   */
  readonly allowTagSession?: boolean;
}

export type StsFault = { readonly kind: 'error'; readonly status: number; readonly code: string; readonly message?: string } | TransportFault;

/** One AssumeRoleWithWebIdentity request as the emulator received it, before any fault or check. */
export interface StsCallRecord {
  /** The emulator's clock (`now()`) when the request arrived. */
  readonly atWall: number;
  /** The WebIdentityToken parameter exactly as sent (empty when absent). Secret: tests only. */
  readonly token: string;
  readonly roleArn: string;
  /** Characters in the Policy parameter (0 when absent); the document itself is not kept. */
  readonly policyLength: number;
  readonly policyArns: readonly string[];
  /** The fault applied to this request, if any. */
  readonly fault: StsFault['kind'] | null;
}

export interface IssuedCredentials {
  readonly accessKeyId: string;
  readonly roleArn: string;
  readonly sessionName: string;
  /** The token's `sub` for AssumeRoleWithWebIdentity; the caller's ARN for AssumeRole. */
  readonly subject: string;
  readonly expiration: Date;
  /** The call that issued them, so tests can tell the hops of a chain apart. */
  readonly action: 'AssumeRoleWithWebIdentity' | 'AssumeRole';
  /**
   * The session's tags: for AssumeRole, the ones it was given and the transitive ones it inherited;
   * for AssumeRoleWithWebIdentity, the token's `https://aws.amazon.com/tags` claim's (absent when
   * the token has none).
   */
  readonly sessionTags?: readonly SessionTag[];
}

export interface SessionTag {
  readonly key: string;
  readonly value: string;
}

/**
 * Who may assume a role with AssumeRole: the role's trust policy, reduced to what #18 needs. One
 * rule per trusted principal; a role trusting several has several rules.
 */
export interface AssumeRoleTrustRule {
  readonly roleArn: string;
  /**
   * The trusted principal, as a trust policy's `Principal.AWS` names it: a role ARN
   * (`arn:aws:iam::<account>:role/<name>`, without its path), whose every session may assume the
   * role, or a user ARN (`arn:aws:iam::<account>:user/<name>`), matched exactly against host
   * credentials registered with that ARN.
   */
  readonly principal: string;
  /** The `sts:ExternalId` the trust policy's condition requires; none means it must not matter. */
  readonly externalId?: string;
  /** The role's maximum session duration in seconds, 3600-43200 (IAM's default is 3600). */
  readonly maxSessionDuration?: number;
  /** The trust policy also allows `sts:TagSession`: needed to pass session tags. */
  readonly allowTagSession?: boolean;
}

/** One AssumeRole request as the emulator received it, and what became of it. */
export interface AssumeRoleCallRecord {
  /** The emulator's clock (`now()`) when the request arrived. */
  readonly atWall: number;
  readonly roleArn: string;
  readonly sessionName: string;
  /** The ExternalId parameter, or null when absent. */
  readonly externalId: string | null;
  /** The access key id the request was signed with, as its Authorization header names it ('' when unsigned). */
  readonly callerAccessKeyId: string;
  /** Characters in the Policy parameter (0 when absent); the document itself is not kept. */
  readonly policyLength: number;
  readonly policyArns: readonly string[];
  readonly tags: readonly SessionTag[];
  readonly transitiveTagKeys: readonly string[];
  readonly durationSeconds: number | null;
  /** The fault applied to this request, if any. */
  readonly fault: StsFault['kind'] | null;
  /** 'issued', or the error code it was refused with; 'pending' while being answered, 'fault' when a transport fault answered it. */
  outcome: string;
}

/** Credentials a test gives the emulator as a host's own (an instance profile, an IAM user's key). */
export interface HostCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
  /** When the session ends; none for a long-term key. */
  readonly expiration?: Date;
  /** The caller's ARN: `arn:aws:sts::<account>:assumed-role/<role>/<session>` or `arn:aws:iam::<account>:user/<name>`. */
  readonly arn: string;
}

/** One JWT the emulator minted for GetWebIdentityToken (the token itself is not kept). */
export interface MintedWebIdentityToken {
  readonly atWall: number;
  readonly accessKeyId: string;
  readonly subject: string;
  readonly audience: readonly string[];
  readonly signingAlgorithm: WebIdentitySigningAlgorithm;
  readonly expiration: Date;
}

export type WebIdentitySigningAlgorithm = 'RS256' | 'ES384';

export interface StsEmulatorOptions {
  readonly trust: readonly TrustRule[];
  readonly host?: string;
  readonly port?: number;
  /** Lifetime of issued credentials when the caller does not ask for one; STS's default is 3600. */
  readonly defaultDurationSeconds?: number;
  /** Serve HTTPS with this PEM key and certificate, as real STS does (tests of --ca-bundle and proxies). */
  readonly tls?: { readonly key: string; readonly cert: string };
  /**
   * STS's own clock (epoch ms), default Date.now: it dates Expiration and the Date header and
   * judges the token's `exp`. Tests with a fake clock pass theirs, to move STS's time with it (or
   * not, to model a host clock that is wrong while STS's is right).
   */
  readonly now?: () => number;
  /** Who may assume which role with AssumeRole; none means every AssumeRole is AccessDenied. */
  readonly assumeRoleTrust?: readonly AssumeRoleTrustRule[];
}

const NS = 'https://sts.amazonaws.com/doc/2011-06-15/';
const MAX_BODY_BYTES = 64 * 1024;
/** GetWebIdentityToken's bounds, from the STS API reference. */
const WIT_MIN_DURATION = 60;
const WIT_MAX_DURATION = 3600;
const WIT_DEFAULT_DURATION = 300;
const WIT_MAX_AUDIENCES = 10;
const WIT_MAX_AUDIENCE_LENGTH = 1000;
/** Known keys kept before expired ones are swept (the soak and the benchmark issue many). */
const MAX_KNOWN_KEYS = 10_000;
/**
 * AssumeRole's bounds, from the STS API reference (docs.aws.amazon.com/STS/latest/APIReference/
 * API_AssumeRole.html, API_Tag.html, API_PolicyDescriptorType.html) and the IAM User Guide
 * (id_roles_use.html, id_session-tags.html, reference_iam-limits.html).
 */
const AR_MIN_DURATION = 900;
const AR_MAX_DURATION = 43_200;
/** The default DurationSeconds, and the cap on a role-chained session ("Role chaining limits your … session to a maximum of one hour"). */
const AR_DEFAULT_DURATION = 3600;
const AR_CHAINED_MAX_DURATION = 3600;
const AR_MAX_POLICY_LENGTH = 2048;
const AR_MAX_POLICY_ARNS = 10;
const AR_MAX_TAGS = 50;
const AR_MAX_TAG_KEY = 128;
const AR_MAX_TAG_VALUE = 256;
const TAG_KEY = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,128}$/u;
const TAG_VALUE = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]{0,256}$/u;
/** The characters TAG_KEY and TAG_VALUE allow, as refusals name them. */
const TAG_CHARACTERS = '[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]';
const EXTERNAL_ID = /^[\w+=,.@:/-]{2,1224}$/;
const POLICY_ARN = /^arn:aws[a-z-]*:iam::(\d{12}|aws):policy\/[\w+=,.@/-]+$/;
/**
 * The emulator's model of STS's packed binary format (undocumented: AWS says only that policy,
 * policy ARNs and tags are compressed into a format with its own limit, and reports the size as a
 * percentage of it): the raw-deflate size of policy, ARNs and `key=value` tags (inherited transitive
 * ones included), one per line, against this budget.
 */
const AR_PACKED_BUDGET_BYTES = 2048;
const SIGNED_KEY_ID = /Credential=([A-Z0-9]{16,128})\//;
/** Where AWS nests its own claims in an outbound identity token. */
const AWS_CLAIMS_NAMESPACE = 'https://sts.amazonaws.com/';
/** The claim of an inbound web-identity token that AssumeRoleWithWebIdentity reads session tags from. */
const AWS_TAGS_CLAIM = 'https://aws.amazon.com/tags';

type SigningKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

/** The issuer keys of the emulated account: one per algorithm GetWebIdentityToken offers. */
interface IssuerKeys {
  readonly signing: Record<WebIdentitySigningAlgorithm, { readonly key: SigningKey; readonly kid: string }>;
  readonly jwks: readonly JWK[];
}

async function makeIssuerKeys(): Promise<IssuerKeys> {
  const signing = {} as Record<WebIdentitySigningAlgorithm, { key: SigningKey; kid: string }>;
  const jwks: JWK[] = [];
  for (const alg of ['RS256', 'ES384'] as const) {
    const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: false });
    const kid = `${alg.toLowerCase()}-${randomBytes(6).toString('hex')}`;
    signing[alg] = { key: privateKey, kid };
    jwks.push({ ...(await exportJWK(publicKey)), kid, alg, use: 'sig' });
  }
  return { signing, jwks };
}

export class StsEmulator extends StsStandIn<StsFault> {
  /** AssumeRoleWithWebIdentity requests received, whatever their outcome. */
  calls = 0;
  readonly issued: IssuedCredentials[] = [];
  /** Every AssumeRoleWithWebIdentity request received, in order (what `calls` counts). */
  readonly requests: StsCallRecord[] = [];
  /** Every JWT GetWebIdentityToken minted, in order. */
  readonly minted: MintedWebIdentityToken[] = [];
  /** False models an account that has not enabled outbound identity federation. */
  outboundFederationEnabled = true;
  readonly #options: StsEmulatorOptions;
  readonly #verifier: WebIdentityVerifier;
  readonly #signatures: SigV4Verifier;
  /** Every access key id the emulator accepts signatures from: the ones it issued and the hosts'. */
  readonly #knownKeys = new Map<string, KnownCredentials>();
  readonly #issuerKeys: IssuerKeys;
  /** The role sessions this emulator issued (key id → its transitive tags): AssumeRole with one of them is role chaining. */
  readonly #roleSessions = new Map<string, readonly SessionTag[]>();
  /** Every AssumeRole request received, in order, with its outcome. */
  readonly assumeRoleRequests: AssumeRoleCallRecord[] = [];
  #assumeRoleQueued: StsFault[] = [];
  #assumeRolePersistent: StsFault | undefined;

  private constructor(server: Server, url: string, options: StsEmulatorOptions, issuerKeys: IssuerKeys) {
    super(server, url, options.now ?? Date.now);
    this.#options = options;
    this.#issuerKeys = issuerKeys;
    this.#verifier = new WebIdentityVerifier(() => this.now());
    this.#signatures = new SigV4Verifier(
      (accessKeyId) => this.#knownKeys.get(accessKeyId),
      () => this.now(),
    );
  }

  static async start(options: StsEmulatorOptions): Promise<StsEmulator> {
    const issuerKeys = await makeIssuerKeys();
    let emulator: StsEmulator | undefined;
    const { server, url } = await StsStandIn.listen(options, (req, res) => void emulator!.#handle(req, res));
    emulator = new StsEmulator(server, url, options, issuerKeys);
    return emulator;
  }

  /**
   * Accepts SigV4 signatures made with these credentials, as a host's own (an instance profile's
   * session, an IAM user's key): GetWebIdentityToken then mints tokens for `arn`.
   */
  addHostCredentials(credentials: HostCredentials): void {
    this.#knownKeys.set(credentials.accessKeyId, { ...credentials });
  }

  /** Like `failNext`, for AssumeRole requests (`failNext` applies to AssumeRoleWithWebIdentity only). */
  failNextAssumeRole(...faults: StsFault[]): void {
    this.#assumeRoleQueued.push(...faults);
  }

  /**
   * Makes every session this emulator issued that `filter` selects, and that has not expired yet,
   * expire now: its next signed request is refused as the SigV4 check refuses any expired session,
   * 403 ExpiredToken "The security token included in the request is expired", as STS does. Returns
   * how many sessions it ended. The `issued` entries keep the expiration they were issued with.
   */
  expireCredentials(filter: (issued: IssuedCredentials) => boolean): number {
    const now = this.now();
    let ended = 0;
    for (const issued of this.issued) {
      const known = this.#knownKeys.get(issued.accessKeyId);
      if (!known || (known.expiration && known.expiration.getTime() <= now) || !filter(issued)) continue;
      this.#knownKeys.set(issued.accessKeyId, { ...known, expiration: new Date(now) });
      ended += 1;
    }
    return ended;
  }

  /** Like `failAlways`, for AssumeRole requests, until `heal()`. */
  failAlwaysAssumeRole(fault: StsFault): void {
    this.#assumeRolePersistent = fault;
  }

  override heal(): void {
    super.heal();
    this.#assumeRoleQueued = [];
    this.#assumeRolePersistent = undefined;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === 'GET') return this.#serveIssuerDocument(req, res);
    let body: string;
    try {
      body = await readSmallBody(req, MAX_BODY_BYTES);
    } catch {
      res.writeHead(413).end();
      return;
    }
    const params = new URLSearchParams(body);
    if (req.method === 'POST' && params.get('Action') === 'GetWebIdentityToken') {
      res.setHeader('date', new Date(this.now()).toUTCString());
      return this.#getWebIdentityToken(req, body, params, res);
    }
    if (req.method === 'POST' && params.get('Action') === 'AssumeRole') {
      res.setHeader('date', new Date(this.now()).toUTCString());
      return this.#assumeRoleSigned(req, body, params, res);
    }
    if (req.method !== 'POST' || params.get('Action') !== 'AssumeRoleWithWebIdentity') {
      return sendError(res, 400, 'InvalidAction', 'only AssumeRoleWithWebIdentity is emulated');
    }
    this.calls += 1;
    const fault = this.takeFault();
    this.requests.push({
      atWall: this.now(),
      token: params.get('WebIdentityToken') ?? '',
      roleArn: params.get('RoleArn') ?? '',
      policyLength: (params.get('Policy') ?? '').length,
      policyArns: policyArnList(params),
      fault: fault?.kind ?? null,
    });
    // Real STS dates every answer by its own clock; so does the emulator, by `now`.
    res.setHeader('date', new Date(this.now()).toUTCString());
    if (fault?.kind === 'error') return sendError(res, fault.status, fault.code, fault.message ?? `emulated ${fault.code}`);
    const after = fault
      ? await this.applyFault(fault, req, res, { contentType: 'text/xml', body: '<<<this is not XML>>>\u0000' })
      : { answered: false as const };
    if (after.answered) return;
    await this.#assumeRole(params, res, after.lifetimeSeconds);
  }

  /**
   * AssumeRoleWithWebIdentity, as the STS API reference describes it; besides verifying the token:
   * - Policy (1-2048 characters, else ValidationError; not a JSON object, MalformedPolicyDocument)
   *   and at most 10 PolicyArns, each a policy ARN (else ValidationError), as AssumeRole takes them;
   * - session tags only from the token's `https://aws.amazon.com/tags` claim
   *   (`{ principal_tags: { Key: ["value"] }, transitive_tag_keys?: ["Key"] }`), by AssumeRole's
   *   rules: at most 50, keys and values as `Tag` allows them, keys unique whatever their case,
   *   transitive keys among the tag keys, one value per key (AWS does not take multi-valued
   *   session tags). A claim that breaks them is InvalidIdentityToken (400): the API reference
   *   documents no other code for it, and names InvalidIdentityToken for a token "that was passed
   *   could not be validated by AWS"; ValidationError words a request parameter, which a claim is not;
   * - tags need the role's trust to allow `sts:TagSession` (`allowTagSession`), else AccessDenied;
   * - policy, policy ARNs and tags share AssumeRole's packed budget (PackedPolicyTooLarge, else
   *   PackedPolicySize in the answer whenever any was sent);
   * - the transitive tags pass on to the next hop, as AssumeRole's do.
   */
  async #assumeRole(params: URLSearchParams, res: ServerResponse, lifetimeOverride: number | undefined): Promise<void> {
    if (params.get('Version') !== '2011-06-15') return sendError(res, 400, 'InvalidParameterValue', 'Version must be 2011-06-15');
    const roleArn = params.get('RoleArn') ?? '';
    const sessionName = params.get('RoleSessionName') ?? '';
    const token = params.get('WebIdentityToken') ?? '';
    if (!/^[\w+=,.@-]{2,64}$/.test(sessionName)) return sendError(res, 400, 'ValidationError', 'RoleSessionName must be 2-64 characters of [\\w+=,.@-]');
    if (token.length < 4 || token.length > 20_000) return sendError(res, 400, 'ValidationError', 'WebIdentityToken must be 4-20000 characters');
    const durationParam = params.get('DurationSeconds');
    const duration = durationParam === null ? (this.#options.defaultDurationSeconds ?? 3600) : Number(durationParam);
    if (!Number.isInteger(duration) || duration < 900 || duration > 43_200) return sendError(res, 400, 'ValidationError', 'DurationSeconds must be 900-43200');
    const policy = params.get('Policy');
    const policyArns = policyArnList(params);
    const invalidPolicy = validateSessionPolicy(policy, policyArns);
    if (invalidPolicy) return sendError(res, 400, 'ValidationError', invalidPolicy);
    if (policy !== null && !isJsonObject(policy)) return sendError(res, 400, 'MalformedPolicyDocument', 'Syntax errors in policy.');
    const rule = this.#options.trust.find((r) => r.roleArn === roleArn);
    if (!rule) return sendError(res, 403, 'AccessDenied', 'Not authorized to perform sts:AssumeRoleWithWebIdentity');
    if (duration > (rule.maxSessionDuration ?? 3600)) {
      return sendError(res, 400, 'ValidationError', `The requested DurationSeconds exceeds the MaxSessionDuration set for this role.`);
    }

    const verified = await this.#verifier.verify(token, rule);
    if (!verified.ok) {
      if (verified.why === 'expired') return sendError(res, 400, 'ExpiredTokenException', 'Token expired');
      if (verified.why === 'idp-unreachable') return sendError(res, 400, 'IDPCommunicationError', 'Could not reach the identity provider');
      return sendError(res, 400, 'InvalidIdentityToken', "Couldn't verify the token");
    }
    const subject = verified.subject;
    if (!globMatch(rule.subject, subject)) return sendError(res, 403, 'AccessDenied', 'Not authorized to perform sts:AssumeRoleWithWebIdentity');
    const claimed = tagsFromToken(verified.payload);
    if (!claimed.ok) return sendError(res, 400, 'InvalidIdentityToken', claimed.reason);
    const { tags, transitiveKeys } = claimed;
    if (tags.length > 0 && rule.allowTagSession === false) return sendError(res, 403, 'AccessDenied', 'Not authorized to perform sts:TagSession');
    const sentPolicies = policy !== null || policyArns.length > 0 || tags.length > 0;
    const packedPercent = packedPolicyPercent(policy ?? '', policyArns, tags);
    if (packedPercent > 100) {
      return sendError(
        res,
        400,
        'PackedPolicyTooLarge',
        `Packed size of ${tags.length > 0 ? 'session tags' : 'policy'} consumes ${packedPercent}% of allotted space.`,
      );
    }

    const transitive = new Set(transitiveKeys.map((k) => k.toLowerCase()));
    const { accessKeyId, secretAccessKey, sessionToken, expiration, sessionArn } = this.#mintSession(
      { roleArn, sessionName, subject, action: 'AssumeRoleWithWebIdentity', ...(tags.length > 0 ? { sessionTags: tags } : {}) },
      lifetimeOverride ?? duration,
      tags.filter((t) => transitive.has(t.key.toLowerCase())),
    );
    const xml = `<AssumeRoleWithWebIdentityResponse xmlns="${NS}">
  <AssumeRoleWithWebIdentityResult>
    <Audience>${escapeXml(rule.audience)}</Audience>
    <AssumedRoleUser>
      <AssumedRoleId>${roleIdOf(roleArn)}:${escapeXml(sessionName)}</AssumedRoleId>
      <Arn>${escapeXml(sessionArn)}</Arn>
    </AssumedRoleUser>
    <Provider>${escapeXml(rule.issuer)}</Provider>
    <Credentials>
      <AccessKeyId>${accessKeyId}</AccessKeyId>
      <SecretAccessKey>${secretAccessKey}</SecretAccessKey>
      <SessionToken>${sessionToken}</SessionToken>
      <Expiration>${expiration.toISOString()}</Expiration>
    </Credentials>
    <SubjectFromWebIdentityToken>${escapeXml(subject)}</SubjectFromWebIdentityToken>${sentPolicies ? `\n    <PackedPolicySize>${packedPercent}</PackedPolicySize>` : ''}
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>${randomUUID()}</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
`;
    res.writeHead(200, { 'content-type': 'text/xml' }).end(xml);
  }

  /** Accepts signatures from a role session it issued, and remembers that it is one (for role chaining). */
  /**
   * A new role session, as both actions issue it: its keys, dated by STS's clock, recorded in
   * `issued` and remembered (with the tags it passes on) for the SigV4 checks of the next hop.
   */
  #mintSession(
    record: Omit<IssuedCredentials, 'accessKeyId' | 'expiration'>,
    lifetimeSeconds: number,
    passedOn: readonly SessionTag[],
  ): { accessKeyId: string; secretAccessKey: string; sessionToken: string; expiration: Date; sessionArn: string } {
    const accountId = /^arn:aws[a-z-]*:iam::(\d{12}):role\//.exec(record.roleArn)?.[1] ?? '000000000000';
    const roleName = record.roleArn.split('/').pop()!;
    const expiration = new Date(Math.floor(this.now() / 1000 + lifetimeSeconds) * 1000);
    const accessKeyId = `ASIA${randomBytes(12).toString('hex').toUpperCase().slice(0, 16)}`;
    const secretAccessKey = randomBytes(30).toString('base64');
    const sessionToken = randomBytes(300).toString('base64');
    const sessionArn = `arn:aws:sts::${accountId}:assumed-role/${roleName}/${record.sessionName}`;
    this.issued.push({ ...record, accessKeyId, expiration });
    this.#remember({ accessKeyId, secretAccessKey, sessionToken, expiration, arn: sessionArn }, passedOn);
    return { accessKeyId, secretAccessKey, sessionToken, expiration, sessionArn };
  }

  #remember(credentials: KnownCredentials, transitiveTags: readonly SessionTag[]): void {
    if (this.#knownKeys.size >= MAX_KNOWN_KEYS) this.#forgetExpiredKeys();
    this.#knownKeys.set(credentials.accessKeyId, credentials);
    this.#roleSessions.set(credentials.accessKeyId, transitiveTags);
  }

  /** Bounds the key map of a long soak or benchmark: expired sessions are refused as ExpiredToken until then. */
  #forgetExpiredKeys(): void {
    const now = this.now();
    for (const [id, key] of this.#knownKeys) {
      if (key.expiration && key.expiration.getTime() <= now) {
        this.#knownKeys.delete(id);
        this.#roleSessions.delete(id);
      }
    }
  }

  /**
   * AssumeRole (query protocol, Version 2011-06-15), as the STS API reference describes it:
   * - the request must be SigV4-signed with credentials the emulator knows (issued by
   *   AssumeRoleWithWebIdentity or AssumeRole, or host credentials): SignatureDoesNotMatch,
   *   InvalidClientTokenId, ExpiredToken… exactly as for GetWebIdentityToken (`SigV4Verifier`);
   * - parameters out of their documented bounds are ValidationError (400): RoleArn 20-2048,
   *   RoleSessionName 2-64 of `[\w+=,.@-]`, DurationSeconds 900-43200, ExternalId 2-1224 of
   *   `[\w+=,.@:/-]`, Policy 1-2048 characters, at most 10 PolicyArns, at most 50 Tags with keys of
   *   1-128 and values of 0-256 characters of `[\p{L}\p{Z}\p{N}_.:/=+\-@]`, at most 50
   *   TransitiveTagKeys; a Policy that is not a JSON object is MalformedPolicyDocument (400);
   * - the trust policy is `assumeRoleTrust`: no rule for the role and the caller's principal, or
   *   a rule whose ExternalId is not the one sent, is AccessDenied (403) "User: <caller> is not
   *   authorized to perform: sts:AssumeRole on resource: <role>" (STS does not say which);
   *   tags without `allowTagSession` are AccessDenied for sts:TagSession;
   * - role chaining (the caller is a role session the emulator issued; host credentials are not,
   *   as AWS does not count an EC2 instance profile's role as chaining): DurationSeconds above 3600
   *   is ValidationError "…exceeds the 1 hour session limit for roles assumed by role chaining.";
   *   otherwise above the role's MaxSessionDuration is ValidationError; the default is 3600;
   * - transitive tags of the caller's session pass on to the new one (and stay transitive);
   * - PackedPolicyTooLarge (400) above 100% of the packed budget (see AR_PACKED_BUDGET_BYTES),
   *   else PackedPolicySize in the answer whenever a policy, policy ARNs or tags were sent.
   * Not modelled: MFA (SerialNumber/TokenCode), SourceIdentity, ProvidedContexts, the checks on a
   * managed policy's existence, and what a session policy allows.
   */
  async #assumeRoleSigned(req: IncomingMessage, body: string, params: URLSearchParams, res: ServerResponse): Promise<void> {
    const tags = tagList(params);
    const durationParam = params.get('DurationSeconds');
    const record: AssumeRoleCallRecord = {
      atWall: this.now(),
      roleArn: params.get('RoleArn') ?? '',
      sessionName: params.get('RoleSessionName') ?? '',
      externalId: params.get('ExternalId'),
      callerAccessKeyId: SIGNED_KEY_ID.exec(String(req.headers.authorization ?? ''))?.[1] ?? '',
      policyLength: (params.get('Policy') ?? '').length,
      policyArns: policyArnList(params),
      tags,
      transitiveTagKeys: memberList(params, 'TransitiveTagKeys'),
      durationSeconds: durationParam === null ? null : Number(durationParam),
      fault: null,
      outcome: 'pending',
    };
    const fault = this.#assumeRoleQueued.shift() ?? this.#assumeRolePersistent;
    this.assumeRoleRequests.push(fault ? { ...record, fault: fault.kind } : record);
    const tracked = this.assumeRoleRequests.at(-1)!;
    const refuse = (status: number, code: string, message: string): void => {
      tracked.outcome = code;
      sendError(res, status, code, message);
    };
    if (fault?.kind === 'error') return refuse(fault.status, fault.code, fault.message ?? `emulated ${fault.code}`);
    const after = fault
      ? await this.applyFault(fault, req, res, { contentType: 'text/xml', body: '<<<this is not XML>>>\u0000' })
      : { answered: false as const };
    if (after.answered) {
      tracked.outcome = 'fault';
      return;
    }

    const signed = await this.#signatures.verify({ method: req.method ?? 'POST', target: req.url ?? '/', headers: req.headers, body });
    if (!signed.ok) return refuse(signed.status, signed.code, signed.message);
    if (params.get('Version') !== '2011-06-15') return refuse(400, 'InvalidParameterValue', 'Version must be 2011-06-15');
    const { roleArn, sessionName, externalId, policyArns, transitiveTagKeys } = record;
    const policy = params.get('Policy');
    const invalid = validateAssumeRole(record, policy);
    if (invalid) return refuse(400, 'ValidationError', invalid);
    if (policy !== null && !isJsonObject(policy)) return refuse(400, 'MalformedPolicyDocument', 'Syntax errors in policy.');

    const caller = signed.caller;
    const callerPrincipal = subjectOf(caller.arn);
    const rule = (this.#options.assumeRoleTrust ?? []).find((r) => r.roleArn === roleArn && r.principal === callerPrincipal);
    const denied = (action: string) => refuse(403, 'AccessDenied', `User: ${caller.arn} is not authorized to perform: ${action} on resource: ${roleArn}`);
    if (!rule || (rule.externalId !== undefined && externalId !== rule.externalId)) return denied('sts:AssumeRole');
    if (tags.length > 0 && !rule.allowTagSession) return denied('sts:TagSession');

    const inherited = this.#roleSessions.get(caller.accessKeyId);
    const chained = inherited !== undefined;
    const duration = record.durationSeconds ?? AR_DEFAULT_DURATION;
    if (chained && duration > AR_CHAINED_MAX_DURATION) {
      return refuse(400, 'ValidationError', 'The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.');
    }
    if (duration > (rule.maxSessionDuration ?? AR_DEFAULT_DURATION)) {
      return refuse(400, 'ValidationError', 'The requested DurationSeconds exceeds the MaxSessionDuration set for this role.');
    }
    // Inherited transitive tags come first; a tag sent now with the same key (case-insensitive) replaces it.
    const sentKeys = new Set(tags.map((t) => t.key.toLowerCase()));
    const sessionTags = [...(inherited ?? []).filter((t) => !sentKeys.has(t.key.toLowerCase())), ...tags];
    const transitive = new Set(transitiveTagKeys.map((k) => k.toLowerCase()));
    const passedOn = sessionTags.filter((t) => transitive.has(t.key.toLowerCase()) || (inherited ?? []).includes(t));
    const sentPolicies = policy !== null || policyArns.length > 0 || tags.length > 0;
    const packedPercent = packedPolicyPercent(policy ?? '', policyArns, sessionTags);
    if (packedPercent > 100) {
      return refuse(400, 'PackedPolicyTooLarge', `Packed size of ${tags.length > 0 ? 'session tags' : 'policy'} consumes ${packedPercent}% of allotted space.`);
    }

    const { accessKeyId, secretAccessKey, sessionToken, expiration, sessionArn } = this.#mintSession(
      { roleArn, sessionName, subject: caller.arn, action: 'AssumeRole', sessionTags },
      after.lifetimeSeconds ?? duration,
      passedOn,
    );
    tracked.outcome = 'issued';
    const xml = `<AssumeRoleResponse xmlns="${NS}">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>${roleIdOf(roleArn)}:${escapeXml(sessionName)}</AssumedRoleId>
      <Arn>${escapeXml(sessionArn)}</Arn>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>${accessKeyId}</AccessKeyId>
      <SecretAccessKey>${secretAccessKey}</SecretAccessKey>
      <SessionToken>${sessionToken}</SessionToken>
      <Expiration>${expiration.toISOString()}</Expiration>
    </Credentials>${sentPolicies ? `\n    <PackedPolicySize>${packedPercent}</PackedPolicySize>` : ''}
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>${randomUUID()}</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>
`;
    res.writeHead(200, { 'content-type': 'text/xml' }).end(xml);
  }

  /** The account issuer's discovery document and JWKS, as `https://<id>.tokens.sts.global.api.aws` serves them. */
  #serveIssuerDocument(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '').split('?')[0];
    let body: unknown;
    if (path === '/.well-known/openid-configuration') {
      body = {
        issuer: this.url,
        jwks_uri: `${this.url}/.well-known/jwks.json`,
        response_types_supported: ['id_token'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256', 'ES384'],
      };
    } else if (path === '/.well-known/jwks.json') {
      body = { keys: this.#issuerKeys.jwks };
    }
    if (body === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  }

  async #getWebIdentityToken(req: IncomingMessage, body: string, params: URLSearchParams, res: ServerResponse): Promise<void> {
    const signed = await this.#signatures.verify({ method: req.method ?? 'POST', target: req.url ?? '/', headers: req.headers, body });
    if (!signed.ok) return sendError(res, signed.status, signed.code, signed.message);
    if (params.get('Version') !== '2011-06-15') return sendError(res, 400, 'InvalidParameterValue', 'Version must be 2011-06-15');
    const audience = memberList(params, 'Audience');
    if (audience.length < 1 || audience.length > WIT_MAX_AUDIENCES || audience.some((a) => a.length < 1 || a.length > WIT_MAX_AUDIENCE_LENGTH)) {
      return sendError(res, 400, 'ValidationError', `Audience must list 1-${WIT_MAX_AUDIENCES} values of 1-${WIT_MAX_AUDIENCE_LENGTH} characters`);
    }
    const algorithm = params.get('SigningAlgorithm');
    if (algorithm !== 'RS256' && algorithm !== 'ES384') return sendError(res, 400, 'ValidationError', 'SigningAlgorithm must be RS256 or ES384');
    const durationParam = params.get('DurationSeconds');
    const duration = durationParam === null ? WIT_DEFAULT_DURATION : Number(durationParam);
    if (!Number.isInteger(duration) || duration < WIT_MIN_DURATION || duration > WIT_MAX_DURATION) {
      return sendError(res, 400, 'ValidationError', `DurationSeconds must be ${WIT_MIN_DURATION}-${WIT_MAX_DURATION}`);
    }
    if (!this.outboundFederationEnabled) {
      return sendError(
        res,
        403,
        'OutboundWebIdentityFederationDisabledException',
        'The outbound web identity federation feature is not enabled for this account.',
      );
    }
    const caller = signed.caller;
    const nowSeconds = Math.floor(this.now() / 1000);
    const expiresAt = nowSeconds + duration;
    if (caller.expiration && expiresAt * 1000 > caller.expiration.getTime()) {
      return sendError(
        res,
        403,
        'SessionDurationEscalationException',
        'The requested token duration would extend the session beyond its original expiration time.',
      );
    }
    const subject = subjectOf(caller.arn);
    const { key, kid } = this.#issuerKeys.signing[algorithm];
    const token = await new SignJWT({
      [AWS_CLAIMS_NAMESPACE]: { aws_account: /:(\d{12}):/.exec(caller.arn)?.[1] ?? '000000000000', source_region: signed.region, principal_id: subject },
    })
      .setProtectedHeader({ alg: algorithm, kid, typ: 'JWT' })
      .setIssuer(this.url)
      .setSubject(subject)
      .setAudience(audience.length === 1 ? audience[0]! : audience)
      .setIssuedAt(nowSeconds)
      .setExpirationTime(expiresAt)
      .setJti(randomUUID())
      .sign(key);
    const expiration = new Date(expiresAt * 1000);
    this.minted.push({ atWall: this.now(), accessKeyId: caller.accessKeyId, subject, audience, signingAlgorithm: algorithm, expiration });
    const xml = `<GetWebIdentityTokenResponse xmlns="${NS}">
  <GetWebIdentityTokenResult>
    <WebIdentityToken>${token}</WebIdentityToken>
    <Expiration>${expiration.toISOString()}</Expiration>
  </GetWebIdentityTokenResult>
  <ResponseMetadata>
    <RequestId>${randomUUID()}</RequestId>
  </ResponseMetadata>
</GetWebIdentityTokenResponse>
`;
    res.writeHead(200, { 'content-type': 'text/xml' }).end(xml);
  }
}

/** The caller's ARN as it appears in `sub`: a role session is named by its role, as AWS does. */
function subjectOf(callerArn: string): string {
  const session = /^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role\/([^/]+)\/[^/]+$/.exec(callerArn);
  return session ? `arn:${session[1]}:iam::${session[2]}:role/${session[3]}` : callerArn;
}

/** A bound broken, in the words of AWS's query-protocol validation (values are never echoed: a policy or tag may be sensitive). */
function constraint(name: string, rule: string): string {
  return `1 validation error detected: Value at '${name}' failed to satisfy constraint: ${rule}`;
}

/** The first documented bound an AssumeRole request breaks, or undefined. */
function validateAssumeRole(r: AssumeRoleCallRecord, policy: string | null): string | undefined {
  if (r.roleArn.length < 20 || r.roleArn.length > 2048) return constraint('roleArn', 'Member must have length between 20 and 2048');
  if (!/^[\w+=,.@-]{2,64}$/.test(r.sessionName)) return constraint('roleSessionName', 'Member must be 2-64 characters of [\\w+=,.@-]');
  const d = r.durationSeconds;
  if (d !== null && (!Number.isInteger(d) || d < AR_MIN_DURATION || d > AR_MAX_DURATION)) {
    return constraint('durationSeconds', `Member must be between ${AR_MIN_DURATION} and ${AR_MAX_DURATION}`);
  }
  if (r.externalId !== null && !EXTERNAL_ID.test(r.externalId)) return constraint('externalId', 'Member must be 2-1224 characters of [\\w+=,.@:/-]');
  const invalidPolicy = validateSessionPolicy(policy, r.policyArns);
  if (invalidPolicy) return invalidPolicy;
  switch (brokenTagRule(r.tags)) {
    case 'count':
      return constraint('tags', `Member must have length less than or equal to ${AR_MAX_TAGS}`);
    case 'key':
      return constraint('tags.member.key', `Member must be 1-${AR_MAX_TAG_KEY} characters of ${TAG_CHARACTERS}`);
    case 'value':
      return constraint('tags.member.value', `Member must be 0-${AR_MAX_TAG_VALUE} characters of ${TAG_CHARACTERS}`);
    case 'duplicate':
      return 'Duplicate tag keys found. Please note that Tag keys are case insensitive.';
  }
  if (r.transitiveTagKeys.length > AR_MAX_TAGS) return constraint('transitiveTagKeys', `Member must have length less than or equal to ${AR_MAX_TAGS}`);
  const sent = new Set(r.tags.map((t) => t.key.toLowerCase()));
  if (r.transitiveTagKeys.some((k) => !sent.has(k.toLowerCase()))) return 'Every TransitiveTagKeys member must be the key of a tag sent in Tags.';
  return undefined;
}

/** The first bound Policy and PolicyArns break (the same for AssumeRole and AssumeRoleWithWebIdentity), or undefined. */
function validateSessionPolicy(policy: string | null, policyArns: readonly string[]): string | undefined {
  if (policy !== null && (policy.length < 1 || policy.length > AR_MAX_POLICY_LENGTH)) {
    return constraint('policy', `Member must have length less than or equal to ${AR_MAX_POLICY_LENGTH}`);
  }
  if (policyArns.length > AR_MAX_POLICY_ARNS) return constraint('policyArns', `Member must have length less than or equal to ${AR_MAX_POLICY_ARNS}`);
  if (policyArns.some((arn) => arn.length < 20 || arn.length > 2048 || !POLICY_ARN.test(arn)))
    return constraint('policyArns.member.arn', 'Member must be a policy ARN');
  return undefined;
}

/** Which of STS's rules on a list of session tags `tags` breaks first, whoever sent them, or undefined. */
function brokenTagRule(tags: readonly SessionTag[]): 'count' | 'key' | 'value' | 'duplicate' | undefined {
  if (tags.length > AR_MAX_TAGS) return 'count';
  if (tags.some((t) => !TAG_KEY.test(t.key))) return 'key';
  if (tags.some((t) => !TAG_VALUE.test(t.value))) return 'value';
  if (new Set(tags.map((t) => t.key.toLowerCase())).size !== tags.length) return 'duplicate';
  return undefined;
}

type TokenTags = { readonly ok: true; readonly tags: SessionTag[]; readonly transitiveKeys: string[] } | { readonly ok: false; readonly reason: string };

/**
 * The session tags of a verified token's `https://aws.amazon.com/tags` claim (none when it has no
 * such claim), or why the claim is refused, in words that never echo a key or a value.
 */
function tagsFromToken(payload: JWTPayload): TokenTags {
  const claim = payload[AWS_TAGS_CLAIM];
  if (claim === undefined) return { ok: true, tags: [], transitiveKeys: [] };
  const refuse = (why: string): TokenTags => ({ ok: false, reason: `The ${AWS_TAGS_CLAIM} claim ${why}.` });
  if (!isPlainObject(claim)) return refuse('must be an object');
  const principalTags = claim['principal_tags'] ?? {};
  if (!isPlainObject(principalTags)) return refuse('must hold principal_tags as an object');
  const tags: SessionTag[] = [];
  for (const [key, values] of Object.entries(principalTags)) {
    if (!Array.isArray(values) || values.length !== 1 || typeof values[0] !== 'string') return refuse('must give each tag exactly one string value');
    tags.push({ key, value: values[0] });
  }
  const transitiveKeys = claim['transitive_tag_keys'] ?? [];
  if (!Array.isArray(transitiveKeys) || !transitiveKeys.every((k): k is string => typeof k === 'string')) {
    return refuse('must list transitive_tag_keys as strings');
  }
  const broken = brokenTagRule(tags);
  if (broken === 'count') return refuse(`must hold at most ${AR_MAX_TAGS} tags`);
  if (broken === 'key') return refuse(`must have tag keys of 1-${AR_MAX_TAG_KEY} characters of ${TAG_CHARACTERS}`);
  if (broken === 'value') return refuse(`must have tag values of 0-${AR_MAX_TAG_VALUE} characters of ${TAG_CHARACTERS}`);
  if (broken === 'duplicate') return refuse('must not repeat a tag key, whatever its case');
  const keys = new Set(tags.map((t) => t.key.toLowerCase()));
  if (transitiveKeys.length > AR_MAX_TAGS || transitiveKeys.some((k) => !keys.has(k.toLowerCase()))) {
    return refuse('must name only its own tag keys in transitive_tag_keys');
  }
  return { ok: true, tags, transitiveKeys };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isJsonObject(text: string): boolean {
  try {
    return isPlainObject(JSON.parse(text));
  } catch {
    return false;
  }
}

/** The packed size, in percent of the budget, rounded up (see AR_PACKED_BUDGET_BYTES). */
function packedPolicyPercent(policy: string, policyArns: readonly string[], tags: readonly SessionTag[]): number {
  const lines = [policy, ...policyArns, ...tags.map((t) => `${t.key}=${t.value}`)];
  const packed = deflateRawSync(Buffer.from(lines.join('\n'), 'utf8'), { level: 9 }).length;
  return Math.ceil((packed * 100) / AR_PACKED_BUDGET_BYTES);
}

/** A stable AROA… role id for a role ARN, as IAM gives each role one id. */
function roleIdOf(roleArn: string): string {
  return `AROA${createHash('sha256').update(roleArn).digest('hex').toUpperCase().slice(0, 17)}`;
}

/** `Tags.member.N.Key`/`.Value`, in order, stopping at the first gap. */
function tagList(params: URLSearchParams): SessionTag[] {
  const tags: SessionTag[] = [];
  for (let i = 1; params.has(`Tags.member.${i}.Key`); i++)
    tags.push({ key: params.get(`Tags.member.${i}.Key`)!, value: params.get(`Tags.member.${i}.Value`) ?? '' });
  return tags;
}

/** `PolicyArns.member.N.arn`, in order, stopping at the first gap. */
function policyArnList(params: URLSearchParams): string[] {
  const arns: string[] = [];
  for (let i = 1; params.has(`PolicyArns.member.${i}.arn`); i++) arns.push(params.get(`PolicyArns.member.${i}.arn`)!);
  return arns;
}

/** `Audience.member.1`, `.2`, … in order, stopping at the first gap, as the query protocol lists them. */
function memberList(params: URLSearchParams, name: string): string[] {
  const values: string[] = [];
  for (let i = 1; params.has(`${name}.member.${i}`); i++) values.push(params.get(`${name}.member.${i}`)!);
  return values;
}

function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  const type = status >= 500 ? 'Receiver' : 'Sender';
  res
    .writeHead(status, { 'content-type': 'text/xml' })
    .end(
      `<ErrorResponse xmlns="${NS}">\n  <Error>\n    <Type>${type}</Type>\n    <Code>${escapeXml(code)}</Code>\n    <Message>${escapeXml(message)}</Message>\n  </Error>\n  <RequestId>${randomUUID()}</RequestId>\n</ErrorResponse>\n`,
    );
}

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}
