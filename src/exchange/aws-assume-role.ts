import { AssumeRoleCommand } from '@aws-sdk/client-sts';
import type { Clock } from '../core/clock.js';
import type { AwsCredentials } from '../platform/aws/credentials.js';
import type { StsHttpHandler } from '../platform/aws/sts-http-handler.js';
import { checkedAwsCredentials, createStsClient, recordStsDate, type StsEndpointOptions } from './aws-web-identity-exchange.js';

/** One sts:AssumeRole as a chain hop asks it; every value already checked against STS's rules. */
export interface AssumeRoleRequest {
  /** The served role's name, for messages. */
  readonly roleName: string;
  readonly roleArn: string;
  readonly accountId: string;
  readonly sessionName: string;
  readonly externalId?: string;
  readonly durationSeconds?: number;
  readonly policy?: string;
  readonly policyArns?: readonly string[];
  readonly tags?: readonly { readonly key: string; readonly value: string }[];
  readonly transitiveTagKeys?: readonly string[];
}

/**
 * How far STS's clock was ahead of this host's when it answered the caller's step (ms; 0 when it
 * sent no Date). STS refuses a signature dated more than 15 minutes from its own time, and the
 * SDK's own correction (learned from a refused request) dies with each per-call client: so a hop
 * is dated by crosscred's clock (the system clock in production, a test's fake one otherwise)
 * moved by STS's last Date. A host whose clock is wrong still gets its chain, as it gets its
 * unsigned web-identity step.
 */
function stsClockAhead(caller: AwsCredentials): number {
  return caller.stsDateWall !== undefined && caller.receivedWall !== undefined ? caller.stsDateWall - caller.receivedWall : 0;
}

/**
 * AWS STS AssumeRole, signed by the AWS SDK with the caller's temporary credentials (the step
 * before in a chain): crosscred signs nothing by hand.
 *
 * Each call gets its own STSClient over the shared transport. A client memoises the credentials it
 * is given until they expire, so one client per hop would keep signing with a caller whose
 * credentials were renewed, or revoked and replaced; a client is cheap beside the STS round trip.
 * The hop clients are never destroyed: they own no sockets, the shared transport does.
 */
export class AwsAssumeRole {
  constructor(
    private readonly endpoint: StsEndpointOptions,
    private readonly transport: StsHttpHandler,
    private readonly clock: Clock,
  ) {}

  async assume(caller: AwsCredentials, request: AssumeRoleRequest, signal?: AbortSignal): Promise<AwsCredentials> {
    const client = createStsClient(this.endpoint, {
      requestHandler: this.transport,
      credentials: {
        accessKeyId: caller.accessKeyId,
        secretAccessKey: caller.secretAccessKey,
        sessionToken: caller.sessionToken,
        expiration: new Date(caller.expirationWall),
      },
      systemClockOffsetMs: this.clock.wallNow() - Date.now() + stsClockAhead(caller),
    });
    const command = new AssumeRoleCommand({
      RoleArn: request.roleArn,
      RoleSessionName: request.sessionName,
      ...(request.externalId !== undefined ? { ExternalId: request.externalId } : {}),
      ...(request.durationSeconds ? { DurationSeconds: request.durationSeconds } : {}),
      ...(request.policy !== undefined ? { Policy: request.policy } : {}),
      ...(request.policyArns?.length ? { PolicyArns: request.policyArns.map((arn) => ({ arn })) } : {}),
      ...(request.tags?.length ? { Tags: request.tags.map((t) => ({ Key: t.key, Value: t.value })) } : {}),
      ...(request.transitiveTagKeys?.length ? { TransitiveTagKeys: [...request.transitiveTagKeys] } : {}),
    });
    const stsDate = recordStsDate(command);
    const output = await client.send(command, signal ? { abortSignal: signal } : {});
    return checkedAwsCredentials(output.Credentials, stsDate(), this.clock, request);
  }
}
