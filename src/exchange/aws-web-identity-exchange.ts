import { AssumeRoleWithWebIdentityCommand, type Credentials, STSClient } from '@aws-sdk/client-sts';
import type { AwsCredentialIdentity, MiddlewareStack } from '@smithy/types';
import type { Clock } from '../core/clock.js';
import { CrosscredError } from '../core/errors.js';
import type { AwsCredentials } from '../platform/aws/credentials.js';
import { StsHttpHandler, type StsTransportOptions } from '../platform/aws/sts-http-handler.js';
import type { WebIdentityExchange } from './credentials.js';
import { alreadyExpired, parseHttpDate } from './sts-answer.js';

export interface StsEndpointOptions extends StsTransportOptions {
  readonly region: string;
  /** Overrides the regional endpoint (AWS_ENDPOINT_URL_STS): a private endpoint, a VPC endpoint, a test double. */
  readonly endpoint?: string;
}

export interface RoleExchangeOptions {
  readonly roleName: string;
  readonly roleArn: string;
  readonly accountId: string;
  /** The session name when the caller gives none (a fixed name; a template is filled in by src/roles/). */
  readonly sessionName: string;
  readonly durationSeconds?: number;
  /** An inline session policy (JSON text), already checked against STS's limits. */
  readonly policy?: string;
  readonly policyArns?: readonly string[];
}

/** What a client needs besides the endpoint when it signs (AssumeRole) or shares a transport. */
export interface StsClientExtras {
  /** Reuse this transport (its sockets, proxy, CA bundle) instead of opening a new one. */
  readonly requestHandler?: StsHttpHandler;
  /** The credentials to sign with: a chain hop's caller. Absent: unsigned calls only. */
  readonly credentials?: AwsCredentialIdentity;
  /** Added to the system clock to date a signed request (the SDK's `systemClockOffset`). */
  readonly systemClockOffsetMs?: number;
}

/** A printable access key id: STS's are 16–128 upper-case letters and digits (ASIA…). */
const ACCESS_KEY_ID = /^[A-Z0-9]{16,128}$/;

/**
 * One STS client per distinct endpoint, shared by the roles that use it. Retries are off in the
 * SDK: the refresher owns retry policy (backoff, jitter, terminal errors), in one place.
 */
export function createStsClient(options: StsEndpointOptions, extras: StsClientExtras = {}): STSClient {
  return new STSClient({
    region: options.region,
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    maxAttempts: 1,
    // Everything the SDK would otherwise read from AWS_* variables and ~/.aws/config is pinned:
    // crosscred's configuration is the only source. (With AWS_DEFAULTS_MODE=auto the SDK would even
    // ask IMDS — possibly crosscred itself — for the region.)
    defaultsMode: 'standard',
    retryMode: 'standard',
    useFipsEndpoint: false,
    useDualstackEndpoint: false,
    authSchemePreference: [],
    // AssumeRoleWithWebIdentity is unsigned; these placeholder credentials only stop the SDK from
    // walking its default chain, which on this host would ask crosscred itself.
    credentials: extras.credentials ?? { accessKeyId: 'unused', secretAccessKey: 'unused' },
    requestHandler: (extras.requestHandler ?? new StsHttpHandler(options)) as never,
    ...(extras.systemClockOffsetMs ? { systemClockOffset: extras.systemClockOffsetMs } : {}),
  });
}

/**
 * Trades a web-identity token for one role's credentials with AWS STS AssumeRoleWithWebIdentity.
 * Every field of the answer is checked before it is believed: STS's answer is untrusted input too.
 */
export class AwsWebIdentityExchange implements WebIdentityExchange<AwsCredentials> {
  readonly cloud = 'aws';

  constructor(
    private readonly role: RoleExchangeOptions,
    private readonly client: STSClient,
    private readonly clock: Clock,
  ) {}

  async exchange(token: string, signal?: AbortSignal, sessionName?: string): Promise<AwsCredentials> {
    const command = new AssumeRoleWithWebIdentityCommand({
      RoleArn: this.role.roleArn,
      RoleSessionName: sessionName ?? this.role.sessionName,
      WebIdentityToken: token,
      ...(this.role.durationSeconds ? { DurationSeconds: this.role.durationSeconds } : {}),
      ...(this.role.policy !== undefined ? { Policy: this.role.policy } : {}),
      ...(this.role.policyArns?.length ? { PolicyArns: this.role.policyArns.map((arn) => ({ arn })) } : {}),
    });
    const stsDate = recordStsDate(command);
    const output = await this.client.send(command, signal ? { abortSignal: signal } : {});
    return checkedAwsCredentials(output.Credentials, stsDate(), this.clock, this.role);
  }
}

/**
 * Has `command` note the Date header of STS's answer; the function returned reads it (epoch ms,
 * or undefined when STS sent none) once the command has been sent.
 */
export function recordStsDate<I extends object, O extends object>(command: { readonly middlewareStack: MiddlewareStack<I, O> }): () => number | undefined {
  let stsDateWall: number | undefined;
  command.middlewareStack.add(
    (next) => async (args) => {
      const result = await next(args);
      stsDateWall = parseHttpDate((result.response as { headers?: Record<string, string | undefined> } | undefined)?.headers?.['date']);
      return result;
    },
    { step: 'build', name: 'crosscredStsDate' },
  );
  return () => stsDateWall;
}

/**
 * The credentials of an STS answer (AssumeRoleWithWebIdentity's or AssumeRole's), every field
 * checked before it is believed: STS's answer is untrusted input too. `role` names what was assumed.
 */
export function checkedAwsCredentials(
  c: Credentials | undefined,
  stsDateWall: number | undefined,
  clock: Clock,
  role: Pick<RoleExchangeOptions, 'roleName' | 'roleArn' | 'accountId'>,
): AwsCredentials {
  const expiration = c?.Expiration instanceof Date ? c.Expiration.getTime() : NaN;
  if (!c || typeof c.AccessKeyId !== 'string' || !ACCESS_KEY_ID.test(c.AccessKeyId)) {
    throw new CrosscredError('STS_BAD_RESPONSE', `STS answered without a valid AccessKeyId for role ${role.roleName}`);
  }
  if (typeof c.SecretAccessKey !== 'string' || c.SecretAccessKey.length === 0 || typeof c.SessionToken !== 'string' || c.SessionToken.length === 0) {
    throw new CrosscredError('STS_BAD_RESPONSE', `STS answered without a secret key or session token for role ${role.roleName}`);
  }
  if (!Number.isFinite(expiration)) {
    throw new CrosscredError('STS_BAD_RESPONSE', `STS answered credentials for role ${role.roleName} without a valid Expiration`);
  }
  const receivedWall = clock.wallNow();
  const expired = alreadyExpired(expiration, stsDateWall, receivedWall);
  if (expired) throw new CrosscredError('STS_BAD_RESPONSE', `STS answered credentials for role ${role.roleName} ${expired}`);
  return {
    cloud: 'aws',
    accessKeyId: c.AccessKeyId,
    secretAccessKey: c.SecretAccessKey,
    sessionToken: c.SessionToken,
    expirationWall: expiration,
    ...(stsDateWall !== undefined ? { stsDateWall, receivedWall } : {}),
    roleArn: role.roleArn,
    accountId: role.accountId,
  };
}
