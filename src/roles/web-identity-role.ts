import type { STSClient } from '@aws-sdk/client-sts';
import type { RoleConfig } from '../config/config.js';
import type { Clock } from '../core/clock.js';
import { AwsWebIdentityExchange } from '../exchange/aws-web-identity-exchange.js';
import type { CloudCredentials, CredentialExchange, WebIdentityExchange } from '../exchange/credentials.js';
import { classifyFailure } from '../exchange/failure.js';
import type { TokenSource } from '../sources/token-source.js';

/**
 * One role as the cache sees it: a token source composed with one cloud's web-identity exchange.
 * When STS says the token expired, the file (or the issuer's token) has most likely been renewed
 * since it was read: the source is told to forget it and the exchange is tried once more.
 */
export class WebIdentityRole implements CredentialExchange {
  constructor(
    readonly roleName: string,
    private readonly source: TokenSource,
    private readonly webIdentity: WebIdentityExchange,
  ) {}

  async exchange(signal?: AbortSignal): Promise<CloudCredentials> {
    try {
      return await this.#once(signal);
    } catch (err) {
      if (classifyFailure(err).kind !== 'token-expired' || signal?.aborted) throw err;
      this.source.invalidate?.();
      return await this.#once(signal);
    }
  }

  async #once(signal: AbortSignal | undefined): Promise<CloudCredentials> {
    const { token } = await this.source.getToken();
    return this.webIdentity.exchange(token, signal);
  }
}

/**
 * The role a configuration names, as crosscred serves it today: its token source traded at AWS
 * STS through `client` (shared by the roles of one endpoint).
 */
export function webIdentityRoleFor(role: RoleConfig, source: TokenSource, client: STSClient, clock: Clock): WebIdentityRole {
  const exchange = new AwsWebIdentityExchange(
    {
      roleName: role.name,
      roleArn: role.roleArn,
      accountId: role.accountId,
      sessionName: role.sessionName,
      ...(role.durationSeconds ? { durationSeconds: role.durationSeconds } : {}),
    },
    client,
    clock,
  );
  return new WebIdentityRole(role.name, source, exchange);
}
