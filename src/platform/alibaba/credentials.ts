/**
 * Temporary Alibaba Cloud credentials (an STS token of a RAM role) as crosscred holds them. Every
 * string but the ARN and the account is secret. Alibaba's SDKs read them as AccessKeyId,
 * AccessKeySecret and SecurityToken (platform/alibaba/credential-documents.ts renders them).
 */
export interface AlibabaCredentials {
  readonly cloud: 'alibaba';
  readonly accessKeyId: string;
  readonly accessKeySecret: string;
  readonly securityToken: string;
  /** When STS says they expire (epoch ms). */
  readonly expirationWall: number;
  /** STS's own clock when it answered (epoch ms, from its HTTP Date header), when it sent one. */
  readonly stsDateWall?: number;
  /** The RAM role that was assumed, as configured: `acs:ram::<account uid>:role/<name>`. */
  readonly roleArn: string;
  /** The role's account (its Alibaba Cloud account uid). */
  readonly accountId: string;
}
