import { hostname } from 'node:os';
import type { STSClient } from '@aws-sdk/client-sts';
import type { AlibabaRoleConfig, RoleConfig, StsConnectionConfig, TencentRoleConfig } from '../config/config.js';
import type { Clock } from '../core/clock.js';
import { CrosscredError } from '../core/errors.js';
import { AlibabaOidcExchange } from '../exchange/alibaba-oidc-exchange.js';
import { AwsWebIdentityExchange, createStsClient, type StsEndpointOptions } from '../exchange/aws-web-identity-exchange.js';
import type { CloudCredentials, CredentialExchange, WebIdentityExchange } from '../exchange/credentials.js';
import { classifyFailure } from '../exchange/failure.js';
import { TencentWebIdentityExchange } from '../exchange/tencent-web-identity-exchange.js';
import { alibabaStsEndpoint } from '../platform/alibaba/sts-endpoints.js';
import { fitSessionName } from '../platform/aws/session-name.js';
import { StsHttpHandler } from '../platform/aws/sts-http-handler.js';
import { TENCENT_STS_ENDPOINT } from '../platform/tencent/sts-endpoints.js';
import {
  isTemplate,
  parseTemplate,
  renderTemplate,
  type SessionTemplate,
  type WorkloadIdentity,
  workloadIdentityOfToken,
} from '../protocol/workload-identity.js';
import type { TokenSource } from '../sources/token-source.js';

/** Credentials and the identity of the token they were traded for (what a chain's templates read). */
export interface ExchangedIdentity {
  readonly credentials: CloudCredentials;
  readonly identity: WorkloadIdentity;
}

/**
 * One role as the cache sees it: a token source composed with one cloud's web-identity exchange.
 * When STS says the token expired, the file (or the issuer's token) has most likely been renewed
 * since it was read: the source is told to forget it and the exchange is tried once more.
 *
 * With a session-name template, the name is filled in from each token read: the same workload's
 * tokens give the same name at every refresh and after every restart.
 */
export class WebIdentityRole implements CredentialExchange {
  constructor(
    readonly roleName: string,
    private readonly source: TokenSource,
    private readonly webIdentity: WebIdentityExchange,
    private readonly naming?: SessionNaming,
    /** This host's name, for `{host}` in this role's templates and its chain's. */
    private readonly host?: string,
  ) {}

  async exchange(signal?: AbortSignal): Promise<CloudCredentials> {
    return (await this.exchangeWithIdentity(signal)).credentials;
  }

  async exchangeWithIdentity(signal?: AbortSignal): Promise<ExchangedIdentity> {
    try {
      return await this.#once(signal);
    } catch (err) {
      if (classifyFailure(err).kind !== 'token-expired' || signal?.aborted) throw err;
      this.source.invalidate?.();
      return await this.#once(signal);
    }
  }

  async #once(signal: AbortSignal | undefined): Promise<ExchangedIdentity> {
    const { token } = await this.source.getToken();
    const identity = workloadIdentityOfToken(token, this.host);
    const sessionName = this.naming ? this.naming.fill(identity, `the session name of role ${this.roleName}`) : undefined;
    return { credentials: await this.webIdentity.exchange(token, signal, sessionName), identity };
  }
}

/** A session-name template and how a filled-in name is made to fit its cloud's STS. */
export class SessionNaming {
  readonly #template: SessionTemplate;

  constructor(
    template: SessionTemplate,
    private readonly fit: (rendered: string) => string,
  ) {
    this.#template = template;
  }

  /** The session name for a token's identity; a variable the token lacks is a terminal, coded error naming `where`. */
  fill(identity: WorkloadIdentity, where: string): string {
    return this.fit(fillTemplate(this.#template, identity, where));
  }
}

/** The template filled in, or SESSION_TEMPLATE_UNRESOLVED naming what the token lacks and where. */
export function fillTemplate(template: SessionTemplate, identity: WorkloadIdentity, where: string): string {
  const rendered = renderTemplate(template, identity);
  if ('value' in rendered) return rendered.value;
  const names = rendered.missing.map((v) => `{${v}}`).join(', ');
  throw new CrosscredError('SESSION_TEMPLATE_UNRESOLVED', `${where} names ${names}, which the web-identity token does not carry`);
}

/** How each cloud's STS wants a session name: AWS's rule, with Alibaba's smaller character set. */
export function sessionNameFitter(cloud: RoleConfig['cloud']): (rendered: string) => string {
  return cloud === 'alibaba' ? (rendered) => fitSessionName(rendered).replace(/[+=,]/g, '-') : fitSessionName;
}

/** The naming of a role whose session name is a template; undefined for a fixed name. */
export function sessionNamingFor(role: RoleConfig): SessionNaming | undefined {
  if (!isTemplate(role.sessionName)) return undefined;
  const template = parseTemplate(role.sessionName);
  if ('problem' in template) throw new Error(`role ${role.name}: sessionName ${template.problem} (the configuration checks this)`);
  return new SessionNaming(template, sessionNameFitter(role.cloud));
}

/**
 * How a role reaches its cloud's STS: AWS's through the SDK's client, Alibaba's and Tencent's
 * through the same transport (proxies, CA bundle, timeouts, turns) without an SDK. Shared by the
 * roles of one endpoint.
 */
export type StsConnection =
  | {
      readonly cloud: 'aws';
      readonly client: STSClient;
      /** The client's transport and endpoint, shared by the AssumeRole calls of role chains. */
      readonly transport: StsHttpHandler;
      readonly endpoint: StsEndpointOptions;
    }
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
    const endpoint: StsEndpointOptions = { region: role.region, ...(role.stsEndpoint ? { endpoint: role.stsEndpoint } : {}), ...sts };
    const transport = new StsHttpHandler(endpoint);
    const client = createStsClient(endpoint, { requestHandler: transport });
    return { connection: { cloud: 'aws', client, transport, endpoint }, close: () => client.destroy() };
  }
  const transport = new StsHttpHandler(sts);
  return { connection: { cloud: role.cloud, transport }, close: () => transport.destroy() };
}

/** The web-identity step of a role: its token source traded at its cloud's STS through `sts`. */
export function webIdentityRoleFor(role: RoleConfig, source: TokenSource, sts: StsConnection, clock: Clock, host: string = hostname()): WebIdentityRole {
  return new WebIdentityRole(role.name, source, exchangeFor(role, sts, clock), sessionNamingFor(role), host);
}

function exchangeFor(role: RoleConfig, sts: StsConnection, clock: Clock): WebIdentityExchange {
  const common = {
    roleName: role.name,
    roleArn: role.roleArn,
    accountId: role.accountId,
    sessionName: role.sessionName,
    ...(role.durationSeconds ? { durationSeconds: role.durationSeconds } : {}),
  };
  // The session name a template fills in is passed at each exchange; this one is never sent then.
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
  if (role.cloud === 'aws' && sts.cloud === 'aws') {
    const narrowing = { ...(role.policy !== undefined ? { policy: role.policy } : {}), ...(role.policyArns ? { policyArns: role.policyArns } : {}) };
    return new AwsWebIdentityExchange({ ...common, ...narrowing }, sts.client, clock);
  }
  throw new Error(`role ${role.name} is a ${role.cloud} role but was given a ${sts.cloud} STS connection`);
}
