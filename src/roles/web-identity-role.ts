import type { STSClient } from '@aws-sdk/client-sts';
import type { AlibabaRoleConfig, RoleConfig, StsConnectionConfig, TencentRoleConfig } from '../config/config.js';
import type { Clock } from '../core/clock.js';
import { AlibabaOidcExchange } from '../exchange/alibaba-oidc-exchange.js';
import { AwsWebIdentityExchange, createStsClient } from '../exchange/aws-web-identity-exchange.js';
import type { CloudCredentials, CredentialExchange, WebIdentityExchange } from '../exchange/credentials.js';
import { classifyFailure } from '../exchange/failure.js';
import { TencentWebIdentityExchange } from '../exchange/tencent-web-identity-exchange.js';
import { alibabaStsEndpoint } from '../platform/alibaba/sts-endpoints.js';
import { StsHttpHandler } from '../platform/aws/sts-http-handler.js';
import { TENCENT_STS_ENDPOINT } from '../platform/tencent/sts-endpoints.js';
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
 * How a role reaches its cloud's STS: AWS's through the SDK's client, Alibaba's and Tencent's
 * through the same transport (proxies, CA bundle, timeouts, turns) without an SDK. Shared by the
 * roles of one endpoint.
 */
export type StsConnection =
  | { readonly cloud: 'aws'; readonly client: STSClient }
  | { readonly cloud: 'alibaba' | 'tencent'; readonly transport: StsHttpHandler };

/** The STS base URL of an Alibaba or Tencent role: its configured endpoint, else the one its region gives. */
export function otherCloudStsEndpoint(role: AlibabaRoleConfig | TencentRoleConfig): string {
  if (role.stsEndpoint) return role.stsEndpoint;
  return role.cloud === 'alibaba' ? alibabaStsEndpoint(role.region, role.vpcEndpoint) : TENCENT_STS_ENDPOINT;
}

/** The same for roles that can share one STS connection: same cloud, region, endpoint and transport settings. */
export function stsConnectionKey(role: RoleConfig, sts: StsConnectionConfig): string {
  return JSON.stringify([role.cloud, role.region, role.cloud === 'aws' ? (role.stsEndpoint ?? '') : otherCloudStsEndpoint(role), sts]);
}

/** A new connection to the STS a role uses, with the transport settings of `sts`; `close` releases its sockets. */
export function openStsConnection(role: RoleConfig, sts: StsConnectionConfig): { readonly connection: StsConnection; close(): void } {
  if (role.cloud === 'aws') {
    const client = createStsClient({ region: role.region, ...(role.stsEndpoint ? { endpoint: role.stsEndpoint } : {}), ...sts });
    return { connection: { cloud: 'aws', client }, close: () => client.destroy() };
  }
  const transport = new StsHttpHandler(sts);
  return { connection: { cloud: role.cloud, transport }, close: () => transport.destroy() };
}

/** The role a configuration names: its token source traded at its cloud's STS through `sts`. */
export function webIdentityRoleFor(role: RoleConfig, source: TokenSource, sts: StsConnection, clock: Clock): WebIdentityRole {
  return new WebIdentityRole(role.name, source, exchangeFor(role, sts, clock));
}

function exchangeFor(role: RoleConfig, sts: StsConnection, clock: Clock): WebIdentityExchange {
  const common = {
    roleName: role.name,
    roleArn: role.roleArn,
    accountId: role.accountId,
    sessionName: role.sessionName,
    ...(role.durationSeconds ? { durationSeconds: role.durationSeconds } : {}),
  };
  if (role.cloud === 'alibaba' && sts.cloud === 'alibaba') {
    return new AlibabaOidcExchange({ ...common, oidcProviderArn: role.oidcProviderArn, endpoint: otherCloudStsEndpoint(role) }, sts.transport, clock);
  }
  if (role.cloud === 'tencent' && sts.cloud === 'tencent') {
    return new TencentWebIdentityExchange(
      { ...common, providerId: role.providerId, region: role.region, endpoint: otherCloudStsEndpoint(role) },
      sts.transport,
      clock,
    );
  }
  if (role.cloud === 'aws' && sts.cloud === 'aws') return new AwsWebIdentityExchange(common, sts.client, clock);
  throw new Error(`role ${role.name} is a ${role.cloud} role but was given a ${sts.cloud} STS connection`);
}
