import type { Clock } from '../core/clock.js';
import type { AlibabaCredentials } from '../platform/alibaba/credentials.js';
import type { StsHttpHandler } from '../platform/aws/sts-http-handler.js';
import type { WebIdentityExchange } from './credentials.js';

export interface AlibabaRoleExchangeOptions {
  readonly roleName: string;
  /** `acs:ram::<account uid>:role/<name>`. */
  readonly roleArn: string;
  readonly accountId: string;
  /** `acs:ram::<account uid>:oidc-provider/<name>`. */
  readonly oidcProviderArn: string;
  readonly sessionName: string;
  readonly durationSeconds?: number;
  /** The STS base URL (platform/alibaba/sts-endpoints.ts, or a configured one). */
  readonly endpoint: string;
}

/** Trades a web-identity token for a RAM role's credentials with Alibaba Cloud STS AssumeRoleWithOIDC. */
export class AlibabaOidcExchange implements WebIdentityExchange<AlibabaCredentials> {
  readonly cloud = 'alibaba';

  constructor(
    private readonly role: AlibabaRoleExchangeOptions,
    private readonly transport: StsHttpHandler,
    private readonly clock: Clock,
  ) {}

  async exchange(_token: string, _signal?: AbortSignal): Promise<AlibabaCredentials> {
    void this.transport;
    void this.clock;
    throw new Error(`not built yet: AssumeRoleWithOIDC for ${this.role.roleName}`);
  }
}
