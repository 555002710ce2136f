/**
 * Temporary Tencent Cloud credentials (a CAM role's) as crosscred holds them. Every string but the
 * ARN and the account is secret. Tencent's SDKs read them as TmpSecretId, TmpSecretKey and Token
 * (platform/tencent/credential-documents.ts renders them).
 */
export interface TencentCredentials {
  readonly cloud: 'tencent';
  readonly secretId: string;
  readonly secretKey: string;
  readonly token: string;
  /** When STS says they expire (epoch ms). */
  readonly expirationWall: number;
  /** STS's own clock when it answered (epoch ms), when it said. */
  readonly stsDateWall?: number;
  /** The CAM role that was assumed, as configured: `qcs::cam::uin/<owner uin>:roleName/<name>`. */
  readonly roleArn: string;
  /** The role's owner account (its uin). */
  readonly accountId: string;
}
