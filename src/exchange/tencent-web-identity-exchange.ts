import type { Clock } from '../core/clock.js';
import type { StsHttpHandler } from '../platform/aws/sts-http-handler.js';
import type { TencentCredentials } from '../platform/tencent/credentials.js';
import type { WebIdentityExchange } from './credentials.js';

export interface TencentRoleExchangeOptions {
  readonly roleName: string;
  /** `qcs::cam::uin/<owner uin>:roleName/<name>`. */
  readonly roleArn: string;
  readonly accountId: string;
  /** The CAM OIDC identity provider's name. */
  readonly providerId: string;
  readonly sessionName: string;
  readonly durationSeconds?: number;
  /** Sent as X-TC-Region; STS requires one. */
  readonly region: string;
  /** The STS base URL (platform/tencent/sts-endpoints.ts, or a configured one). */
  readonly endpoint: string;
}

/** Trades a web-identity token for a CAM role's credentials with Tencent Cloud STS AssumeRoleWithWebIdentity. */
export class TencentWebIdentityExchange implements WebIdentityExchange<TencentCredentials> {
  readonly cloud = 'tencent';

  constructor(
    private readonly role: TencentRoleExchangeOptions,
    private readonly transport: StsHttpHandler,
    private readonly clock: Clock,
  ) {}

  async exchange(_token: string, _signal?: AbortSignal): Promise<TencentCredentials> {
    void this.transport;
    void this.clock;
    throw new Error(`not built yet: AssumeRoleWithWebIdentity for ${this.role.roleName}`);
  }
}
