import { AssumeRoleWithWebIdentityCommand, STSClient } from '@aws-sdk/client-sts';
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
  readonly sessionName: string;
  readonly durationSeconds?: number;
}

/** A printable access key id: STS's are 16–128 upper-case letters and digits (ASIA…). */
const ACCESS_KEY_ID = /^[A-Z0-9]{16,128}$/;

/**
 * One STS client per distinct endpoint, shared by the roles that use it. Retries are off in the
 * SDK: the refresher owns retry policy (backoff, jitter, terminal errors), in one place.
 */
export function createStsClient(options: StsEndpointOptions): STSClient {
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
    credentials: { accessKeyId: 'unused', secretAccessKey: 'unused' },
    requestHandler: new StsHttpHandler(options) as never,
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

  async exchange(token: string, signal?: AbortSignal): Promise<AwsCredentials> {
    const command = new AssumeRoleWithWebIdentityCommand({
      RoleArn: this.role.roleArn,
      RoleSessionName: this.role.sessionName,
      WebIdentityToken: token,
      ...(this.role.durationSeconds ? { DurationSeconds: this.role.durationSeconds } : {}),
    });
    let stsDateWall: number | undefined;
    command.middlewareStack.add(
      (next) => async (args) => {
        const result = await next(args);
        stsDateWall = parseHttpDate((result.response as { headers?: Record<string, string | undefined> } | undefined)?.headers?.['date']);
        return result;
      },
      { step: 'build', name: 'crosscredStsDate' },
    );
    const output = await this.client.send(command, signal ? { abortSignal: signal } : {});
    const c = output.Credentials;
    const expiration = c?.Expiration instanceof Date ? c.Expiration.getTime() : NaN;
    if (!c || typeof c.AccessKeyId !== 'string' || !ACCESS_KEY_ID.test(c.AccessKeyId)) {
      throw new CrosscredError('STS_BAD_RESPONSE', `STS answered without a valid AccessKeyId for role ${this.role.roleName}`);
    }
    if (typeof c.SecretAccessKey !== 'string' || c.SecretAccessKey.length === 0 || typeof c.SessionToken !== 'string' || c.SessionToken.length === 0) {
      throw new CrosscredError('STS_BAD_RESPONSE', `STS answered without a secret key or session token for role ${this.role.roleName}`);
    }
    if (!Number.isFinite(expiration)) {
      throw new CrosscredError('STS_BAD_RESPONSE', `STS answered credentials for role ${this.role.roleName} without a valid Expiration`);
    }
    const expired = alreadyExpired(expiration, stsDateWall, this.clock.wallNow());
    if (expired) throw new CrosscredError('STS_BAD_RESPONSE', `STS answered credentials for role ${this.role.roleName} ${expired}`);
    return {
      cloud: 'aws',
      accessKeyId: c.AccessKeyId,
      secretAccessKey: c.SecretAccessKey,
      sessionToken: c.SessionToken,
      expirationWall: expiration,
      ...(stsDateWall !== undefined ? { stsDateWall } : {}),
      roleArn: this.role.roleArn,
      accountId: this.role.accountId,
    };
  }
}
