import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
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
}

export type StsFault = { readonly kind: 'error'; readonly status: number; readonly code: string; readonly message?: string } | TransportFault;

/** One AssumeRoleWithWebIdentity request as the emulator received it, before any fault or check. */
export interface StsCallRecord {
  /** The emulator's clock (`now()`) when the request arrived. */
  readonly atWall: number;
  /** The WebIdentityToken parameter exactly as sent (empty when absent). Secret: tests only. */
  readonly token: string;
  readonly roleArn: string;
  /** The fault applied to this request, if any. */
  readonly fault: StsFault['kind'] | null;
}

export interface IssuedCredentials {
  readonly accessKeyId: string;
  readonly roleArn: string;
  readonly sessionName: string;
  readonly subject: string;
  readonly expiration: Date;
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
/** Where AWS nests its own claims in an outbound identity token. */
const AWS_CLAIMS_NAMESPACE = 'https://sts.amazonaws.com/';

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
    if (req.method !== 'POST' || params.get('Action') !== 'AssumeRoleWithWebIdentity') {
      return sendError(res, 400, 'InvalidAction', 'only AssumeRoleWithWebIdentity is emulated');
    }
    this.calls += 1;
    const fault = this.takeFault();
    this.requests.push({ atWall: this.now(), token: params.get('WebIdentityToken') ?? '', roleArn: params.get('RoleArn') ?? '', fault: fault?.kind ?? null });
    // Real STS dates every answer by its own clock; so does the emulator, by `now`.
    res.setHeader('date', new Date(this.now()).toUTCString());
    if (fault?.kind === 'error') return sendError(res, fault.status, fault.code, fault.message ?? `emulated ${fault.code}`);
    const after = fault
      ? await this.applyFault(fault, req, res, { contentType: 'text/xml', body: '<<<this is not XML>>>\u0000' })
      : { answered: false as const };
    if (after.answered) return;
    await this.#assumeRole(params, res, after.lifetimeSeconds);
  }

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

    const accountId = /^arn:aws:iam::(\d{12}):role\//.exec(roleArn)?.[1] ?? '000000000000';
    const roleName = roleArn.split('/').pop()!;
    const lifetime = lifetimeOverride ?? duration;
    const expiration = new Date(Math.floor(this.now() / 1000 + lifetime) * 1000);
    const accessKeyId = `ASIA${randomBytes(12).toString('hex').toUpperCase().slice(0, 16)}`;
    const secretAccessKey = randomBytes(30).toString('base64');
    const sessionToken = randomBytes(300).toString('base64');
    const sessionArn = `arn:aws:sts::${accountId}:assumed-role/${roleName}/${sessionName}`;
    this.issued.push({ accessKeyId, roleArn, sessionName, subject, expiration });
    if (this.#knownKeys.size >= MAX_KNOWN_KEYS) this.#forgetExpiredKeys();
    this.#knownKeys.set(accessKeyId, { accessKeyId, secretAccessKey, sessionToken, expiration, arn: sessionArn });
    const xml = `<AssumeRoleWithWebIdentityResponse xmlns="${NS}">
  <AssumeRoleWithWebIdentityResult>
    <Audience>${escapeXml(rule.audience)}</Audience>
    <AssumedRoleUser>
      <AssumedRoleId>AROA${randomBytes(8).toString('hex').toUpperCase()}:${escapeXml(sessionName)}</AssumedRoleId>
      <Arn>${escapeXml(sessionArn)}</Arn>
    </AssumedRoleUser>
    <Provider>${escapeXml(rule.issuer)}</Provider>
    <Credentials>
      <AccessKeyId>${accessKeyId}</AccessKeyId>
      <SecretAccessKey>${secretAccessKey}</SecretAccessKey>
      <SessionToken>${sessionToken}</SessionToken>
      <Expiration>${expiration.toISOString()}</Expiration>
    </Credentials>
    <SubjectFromWebIdentityToken>${escapeXml(subject)}</SubjectFromWebIdentityToken>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>${randomUUID()}</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
`;
    res.writeHead(200, { 'content-type': 'text/xml' }).end(xml);
  }

  /** Bounds the key map of a long soak or benchmark: expired sessions are refused as ExpiredToken until then. */
  #forgetExpiredKeys(): void {
    const now = this.now();
    for (const [id, key] of this.#knownKeys) if (key.expiration && key.expiration.getTime() <= now) this.#knownKeys.delete(id);
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
