/** Temporary AWS credentials as crosscred holds them. Every string but the ARNs is secret. */
export interface AwsCredentials {
  /** Which cloud's STS issued them: the tag every consumer of the credential port switches on. */
  readonly cloud: 'aws';
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken: string;
  /** When STS says they expire (epoch ms). */
  readonly expirationWall: number;
  /**
   * STS's own clock when it answered (epoch ms, from its HTTP Date header, whole seconds), when
   * it sent one. With it the credentials' lifetime is known by STS's clock, which decides when
   * AWS stops accepting them, whatever this host's clock says.
   */
  readonly stsDateWall?: number;
  /**
   * This host's clock when that answer was read (epoch ms), beside `stsDateWall`: their difference
   * is how far STS's clock is ahead, which dates a request signed with these credentials.
   */
  readonly receivedWall?: number;
  /** The role that was assumed, as configured. */
  readonly roleArn: string;
  /** The 12-digit account of the role. */
  readonly accountId: string;
}
