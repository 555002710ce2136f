import { isIP } from 'node:net';
import { Agent, type Dispatcher, EnvHttpProxyAgent, request } from 'undici';
import type { Config, RoleConfig } from '../config/config.js';
import type { Clock } from '../core/clock.js';
import { isCrosscredError } from '../core/errors.js';
import { issuerUrlProblem } from '../core/url-checks.js';
import { classifyFailure } from '../exchange/failure.js';
import { ECS_METADATA_URL, EcsMetadataClient, requireTokensCommand } from '../platform/alibaba/ecs-metadata.js';
import { CVM_METADATA_URL } from '../platform/tencent/cvm-metadata.js';
import { ChainedRole, type ChainStepReport, roleExchangeFor } from '../roles/role-chain.js';
import { openStsConnection, otherCloudStsEndpoint } from '../roles/web-identity-role.js';
import { AlibabaEcsTokenSource } from '../sources/alibaba-ecs-token-source.js';
import { createTokenSource } from '../sources/create-token-source.js';
import { instanceSecretFileFor, readInstanceSecret } from '../sources/instance-secret.js';
import { IssuerClient } from '../sources/issuer-client.js';
import { TencentCvmTokenSource } from '../sources/tencent-cvm-token-source.js';
import type { TokenClaimsSummary, TokenSource } from '../sources/token-source.js';

/**
 * `crosscred doctor`: walks the chain a role depends on — token source, token, issuer discovery,
 * STS — and says for each link whether it holds, and if not, what to do. Never prints a token or a
 * key: claims are summarized, credentials only acknowledged.
 */
export type CheckStatus = 'ok' | 'warn' | 'fail' | 'info';

export interface Check {
  readonly status: CheckStatus;
  readonly title: string;
  readonly detail?: string;
  readonly fix?: string;
}

export interface RoleReport {
  readonly role: string;
  readonly roleArn: string;
  readonly checks: readonly Check[];
  /** The token's claims when one could be read, for trust-policy advice. */
  readonly claims?: TokenClaimsSummary;
}

export interface DoctorOptions {
  readonly clock: Clock;
  /** Try the real AssumeRoleWithWebIdentity (it creates a session, visible in CloudTrail). */
  readonly exchange: boolean;
  /** Bound on each network check, in ms. */
  readonly timeoutMs: number;
  /** False when no role ARN was configured and the role is a stand-in: reported, never exchanged. */
  readonly roleConfigured: boolean;
  /** VM sources: the metadata servers to ask (default the real addresses). */
  readonly metadataUrls?: VmMetadataUrls;
}

/** Tokens issued further in the future than this mean the host clock is behind the issuer's. */
const CLOCK_SKEW_WARN_SECONDS = 60;
/** Less life than this left on a token deserves a warning: rotation may have stopped. */
const TOKEN_LOW_LIFE_SECONDS = 5 * 60;
const MAX_DOCUMENT_BYTES = 256 * 1024;

/** How each cloud names what the checks talk about. */
const CLOUD_WORDS = {
  aws: { cloud: 'AWS', provider: 'IAM OIDC provider', audience: 'sts.amazonaws.com', roleVariable: 'AWS_ROLE_ARN', stsName: 'STS' },
  alibaba: {
    cloud: 'Alibaba Cloud',
    provider: 'RAM OIDC provider',
    audience: 'sts.aliyuncs.com',
    roleVariable: 'ALIBABA_CLOUD_ROLE_ARN',
    stsName: 'Alibaba Cloud STS',
  },
  tencent: {
    cloud: 'Tencent Cloud',
    provider: 'CAM OIDC provider',
    audience: 'sts.cloud.tencent.com',
    roleVariable: 'TKE_ROLE_ARN',
    stsName: 'Tencent Cloud STS',
  },
} as const;

export async function diagnoseRole(config: Config, role: RoleConfig, options: DoctorOptions): Promise<RoleReport> {
  const words = CLOUD_WORDS[role.cloud];
  const checks: Check[] = [];
  const add = (c: Check) => checks.push(c);
  const vm = role.token.source.kind === 'vm-issuer' ? role.token.source : undefined;
  let source: TokenSource & { close?(): unknown } = createTokenSource(role.token.source, options.clock, { stsTransport: config.sts });
  add({ status: 'info', title: `token source: ${source.description}`, detail: role.token.reason });
  for (const note of role.token.notes) add({ status: 'info', title: note });

  let claims: TokenClaimsSummary | undefined;
  let issuerClient: IssuerClient | undefined;
  let attempt = true;
  if (vm) {
    // Step by step, so that a failure names the step: metadata server, attestation material, issuer.
    const cloud = await checkVmSteps(vm, options, add);
    if (!cloud) attempt = false;
    else {
      const secretFile = await checkInstanceSecret(vm.issuer.instanceSecretFile, add);
      issuerClient = new IssuerClient({
        ...(secretFile ? { instanceSecretFile: secretFile, instanceSecretUse: 'existing' as const } : {}),
        issuerUrl: vm.issuer.url,
        ...(vm.issuer.tokenEndpointUrl ? { tokenEndpointUrl: vm.issuer.tokenEndpointUrl } : {}),
        ...(vm.issuer.caBundle ? { caBundle: vm.issuer.caBundle } : {}),
        audience: vm.issuer.audience,
        connectTimeoutMs: options.timeoutMs,
        responseTimeoutMs: options.timeoutMs,
      });
      source =
        cloud === 'alibaba-ecs'
          ? new AlibabaEcsTokenSource({
              issuer: issuerClient,
              issuerUrl: vm.issuer.url,
              attestation: vm.alibabaAttestation,
              metadataUrl: (options.metadataUrls?.alibaba ?? ECS_METADATA_URL).replace(/\/+$/, ''),
              clock: options.clock,
            })
          : new TencentCvmTokenSource({ issuer: issuerClient, issuerUrl: vm.issuer.url, clock: options.clock });
    }
  }
  if (attempt) {
    try {
      const token = await source.getToken();
      claims = token.claims;
    } catch (err) {
      const message = describe(err);
      if (vm)
        add({
          status: 'fail',
          title: `the issuer did not return a token`,
          detail: message,
          fix: issuerRefusalFix(message) ?? (isCrosscredError(err) ? err.hint : undefined),
        });
      else add({ status: 'fail', title: 'no usable token', detail: message, fix: isCrosscredError(err) ? err.hint : undefined });
    }
  }
  if (claims) {
    const now = options.clock.wallNow() / 1000;
    const left = Math.round(claims.exp - now);
    add({
      status: 'ok',
      title: vm ? 'the issuer returned a JWT (never shown)' : 'token read (its content is never shown)',
      detail: [
        `iss ${claims.iss ?? '(none)'}`,
        `aud ${Array.isArray(claims.aud) ? claims.aud.join(', ') : (claims.aud ?? '(none)')}`,
        `sub ${claims.sub ?? '(none)'}`,
        `exp ${new Date(claims.exp * 1000).toISOString()} (${formatDuration(left)} left)`,
        `kid ${claims.kid ?? '(none)'}`,
      ].join('\n'),
    });
    if (claims.iat !== undefined && claims.iat - now > CLOCK_SKEW_WARN_SECONDS) {
      add({
        status: 'warn',
        title: `the token was issued ${Math.round(claims.iat - now)} s in this host's future`,
        fix: "this host's clock is behind the issuer's; enable NTP (chrony, systemd-timesyncd)",
      });
    }
    if (left < TOKEN_LOW_LIFE_SECONDS)
      add({ status: 'warn', title: `the token expires in ${formatDuration(left)}`, fix: 'check that whatever writes or issues it still rotates it' });
    const audiences = typeof claims.aud === 'string' ? [claims.aud] : (claims.aud ?? []);
    if (audiences.length > 0 && !audiences.includes(words.audience)) {
      add({
        status: 'info',
        title: `the token's audience is ${audiences.join(', ')}, not ${words.audience}`,
        detail: `that works, if the ${words.provider} lists it as a client ID (crosscred trust-policy prints the command)`,
      });
    }
    // For VM sources the issuer was checked step by step above, at --issuer-url (= the JWT's iss).
    if (!vm) for (const c of await checkIssuer(claims, config, options, words.cloud)) add(c);
  }

  if (!options.roleConfigured) {
    add({
      status: 'fail',
      title: `no ${words.cloud} role is configured`,
      fix: `set ${words.roleVariable} or pass --role-arn (the role in the ${words.cloud} account to assume)`,
    });
  } else if (claims && options.exchange) {
    for (const c of await checkExchange(config, role, source, options)) add(c);
  } else if (claims) {
    const hops = role.cloud === 'aws' ? (role.chain?.length ?? 0) : 0;
    add({ status: 'info', title: `STS exchange not tried (--no-exchange)${hops > 0 ? `, nor the chain's ${hops} hop${hops === 1 ? '' : 's'}` : ''}` });
  }
  await source.close?.();
  await issuerClient?.close();
  return { role: role.name, roleArn: role.roleArn, checks, ...(claims ? { claims } : {}) };
}

async function checkIssuer(claims: TokenClaimsSummary, config: Config, options: DoctorOptions, cloud: string): Promise<Check[]> {
  const checks: Check[] = [];
  if (!claims.iss) return [{ status: 'fail', title: 'the token has no issuer (iss)', fix: 'STS needs an OIDC token with an https:// issuer' }];
  let issuer: URL;
  try {
    issuer = new URL(claims.iss);
  } catch {
    return [{ status: 'fail', title: `the issuer ${claims.iss} is not a URL`, fix: 'STS needs an OIDC token with an https:// issuer' }];
  }
  if (issuer.protocol !== 'https:') {
    checks.push({
      status: 'fail',
      title: `the issuer ${claims.iss} is not HTTPS`,
      fix: `${cloud} accepts only https:// issuers: the issuer must publish its discovery document and JWKS over public HTTPS (EKS, ACK and TKE each offer a public OIDC endpoint for this)`,
    });
  } else if (isPrivateHost(issuer.hostname)) {
    checks.push({
      status: 'warn',
      title: `the issuer's host ${issuer.hostname} looks private`,
      fix: `${cloud} fetches the discovery document and JWKS over the public internet; a private address cannot work`,
    });
  }
  const dispatcher = new EnvHttpProxyAgent({
    httpProxy: config.sts.httpProxy ?? '',
    httpsProxy: config.sts.httpsProxy ?? '',
    noProxy: config.sts.noProxy ?? '',
    connect: { timeout: options.timeoutMs },
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
  });
  try {
    const discoveryUrl = `${claims.iss.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    const discovery = await fetchJson(discoveryUrl, dispatcher, options.timeoutMs);
    if ('error' in discovery) {
      checks.push({
        status: 'fail',
        title: `cannot fetch ${discoveryUrl}`,
        detail: discovery.error,
        fix: `the issuer must publish its discovery document where ${cloud} can fetch it`,
      });
      return checks;
    }
    const doc = discovery.value as { issuer?: unknown; jwks_uri?: unknown };
    if (doc.issuer !== claims.iss) {
      checks.push({
        status: 'fail',
        title: 'the discovery document names another issuer',
        detail: `document: ${String(doc.issuer).slice(0, 200)}\ntoken:    ${claims.iss}`,
        fix: "the token's iss must equal the discovery document's issuer, character for character",
      });
    } else {
      checks.push({ status: 'ok', title: `discovery document found at ${discoveryUrl}` });
    }
    if (typeof doc.jwks_uri !== 'string') {
      checks.push({ status: 'fail', title: 'the discovery document has no jwks_uri' });
      return checks;
    }
    const jwks = await fetchJson(doc.jwks_uri, dispatcher, options.timeoutMs);
    if ('error' in jwks) {
      checks.push({
        status: 'fail',
        title: `cannot fetch the JWKS at ${doc.jwks_uri}`,
        detail: jwks.error,
        fix: `${cloud} must be able to fetch the JWKS to verify token signatures`,
      });
      return checks;
    }
    const keys = (jwks.value as { keys?: Array<{ kid?: unknown }> }).keys;
    if (!Array.isArray(keys) || keys.length === 0) {
      checks.push({ status: 'fail', title: 'the JWKS holds no keys' });
    } else if (claims.kid !== undefined && !keys.some((k) => k.kid === claims.kid)) {
      checks.push({
        status: 'fail',
        title: `the JWKS has no key with the token's kid ${claims.kid}`,
        fix: 'the issuer signs with a key it does not publish (a rotation in progress?); STS will reject the token',
      });
    } else {
      checks.push({
        status: 'ok',
        title: `JWKS found at ${doc.jwks_uri} (${keys.length} key${keys.length === 1 ? '' : 's'}${claims.kid ? `, including kid ${claims.kid}` : ''})`,
      });
    }
    if (!doc.jwks_uri.startsWith('https://'))
      checks.push({ status: 'warn', title: 'the jwks_uri is not HTTPS', fix: `${cloud} fetches the JWKS over HTTPS only` });
  } finally {
    await dispatcher.close();
  }
  return checks;
}

/** The exchange as serve would make it: one check, or one per step of a role chain. */
async function checkExchange(config: Config, role: RoleConfig, source: TokenSource, options: DoctorOptions): Promise<Check[]> {
  const endpoint = role.cloud === 'aws' ? (role.stsEndpoint ?? `https://sts.${role.region}.amazonaws.com`) : otherCloudStsEndpoint(role);
  const sts = openStsConnection(role, config.sts);
  const exchange = roleExchangeFor(role, source, sts.connection, options.clock);
  try {
    if (exchange instanceof ChainedRole) return (await exchange.walk()).map((step) => chainStepCheck(step, endpoint, options.clock));
    const credentials = await exchange.exchange();
    const left = Math.round((credentials.expirationWall - options.clock.wallNow()) / 1000);
    return [
      {
        status: 'ok',
        title: `STS at ${endpoint} accepted the token for ${role.roleArn}`,
        detail: `temporary credentials issued, valid for ${formatDuration(left)} (not shown)`,
      },
    ];
  } catch (err) {
    const failure = classifyFailure(err);
    return [
      {
        status: 'fail',
        title: `STS at ${endpoint}: ${failure.message}`,
        fix: role.cloud === 'aws' ? fixFor(failure.code, failure.kind) : otherCloudFix(role.cloud, failure.kind),
      },
    ];
  } finally {
    sts.close();
  }
}

/**
 * One step of a role chain on its own line: the web-identity step as the plain exchange is told,
 * each hop by its number and target role. The credentials are only acknowledged, never shown.
 */
function chainStepCheck(report: ChainStepReport, endpoint: string, clock: Clock): Check {
  const label = report.step === 0 ? 'web identity' : `hop ${report.step}`;
  const what = report.step === 0 ? `STS at ${endpoint} accepted the token for ${report.roleArn}` : `${report.roleArn} assumed`;
  if (report.ok) {
    const left = Math.round((report.expirationWall - clock.wallNow()) / 1000);
    return {
      status: 'ok',
      title: `${label}: ${what}`,
      detail: `account ${report.accountId}, credentials valid until ${new Date(report.expirationWall).toISOString()} (${formatDuration(left)} left; not shown)`,
    };
  }
  if ('notTried' in report) return { status: 'info', title: `${label}: ${report.roleArn} not tried (a step before it failed)` };
  const { failure } = report;
  return {
    status: 'fail',
    title: `${label}: ${report.roleArn} failed: ${failure.code}`,
    detail: failure.message,
    fix: report.step === 0 ? fixFor(failure.code, failure.kind) : hopFix(failure.code, failure.kind),
  };
}

/** What to do about a hop's failure: the hop is an sts:AssumeRole signed with the step before's credentials. */
function hopFix(code: string, kind: string): string {
  switch (code) {
    case 'AccessDenied':
      return "check that this hop's target role trusts the previous step's role (its ARN as Principal, not a session's) with sts:AssumeRole, and sts:TagSession if tags are set or arrive; that its sts:ExternalId condition equals this hop's externalId; and that the previous role's own policy allows sts:AssumeRole on the target (crosscred trust-policy prints all three)";
    case 'PackedPolicyTooLarge':
      return "this hop's session policy, policy ARNs and tags (transitive ones from earlier steps included) pack into more than STS allows: send fewer or shorter tags, a shorter policy or fewer policy ARNs";
    case 'ExpiredToken':
    case 'InvalidClientTokenId':
    case 'SignatureDoesNotMatch':
      return "STS did not accept the fresh credentials of the step before: check that every step goes to the same STS, and this host's clock (NTP)";
    case 'MalformedPolicyDocument':
      return "this hop's session policy is not a valid IAM policy document";
    case 'ValidationError':
      return 'STS refused a parameter of this hop: check its role ARN, session name and durationSeconds (a chained session lasts at most one hour)';
    case 'CROSSCRED_ERR_SESSION_TEMPLATE_UNRESOLVED':
      return "this hop's session name or a tag names a variable the token does not carry: change the template, or the token";
    default:
      return kind === 'retryable'
        ? 'STS could not be reached or failed: check the network path, HTTPS_PROXY/NO_PROXY, and --sts-endpoint'
        : "STS refused this hop: check its role ARN and the target role's trust policy (crosscred trust-policy prints it)";
  }
}

/** Where `doctor` looks for the VM metadata servers; tests point them at fakes on loopback. */
export interface VmMetadataUrls {
  /** Default http://100.100.100.200 (token mode). */
  readonly alibaba?: string;
  /** Default http://metadata.tencentyun.com. */
  readonly tencent?: string;
}

/** Each metadata probe gives up after this long, in ms: the servers answer in milliseconds, and elsewhere never. */
const METADATA_PROBE_TIMEOUT_MS = 1_000;
/** The JWS algorithms AWS IAM accepts from an OIDC provider. */
const AWS_ACCEPTED_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512'];
const MAX_METADATA_BYTES = 64 * 1024;

type VmSourceConfig = Extract<RoleConfig['token']['source'], { kind: 'vm-issuer' }>;

/**
 * The VM steps before the exchange: which cloud's metadata server answers, what it hands out
 * (never shown), the issuer's discovery and token endpoint. Returns the cloud found, if any.
 */
async function checkVmSteps(source: VmSourceConfig, options: DoctorOptions, add: (c: Check) => void): Promise<'alibaba-ecs' | 'tencent-cvm' | undefined> {
  const alibabaUrl = (options.metadataUrls?.alibaba ?? ECS_METADATA_URL).replace(/\/+$/, '');
  const tencentUrl = (options.metadataUrls?.tencent ?? CVM_METADATA_URL).replace(/\/+$/, '');
  const timeoutMs = Math.min(options.timeoutMs, METADATA_PROBE_TIMEOUT_MS * 3);
  const dispatcher = new Agent({ connect: { timeout: timeoutMs }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  let cloud: 'alibaba-ecs' | 'tencent-cvm' | undefined;
  try {
    // 1. Which metadata server answers.
    let alibabaToken: string | undefined;
    if (source.cloud !== 'tencent-cvm') {
      const res = await fetchText(`${alibabaUrl}/latest/api/token`, dispatcher, timeoutMs, {
        method: 'PUT',
        headers: { 'x-aliyun-ecs-metadata-token-ttl-seconds': '60' },
      });
      if ('text' in res && res.status === 200 && /^[\x21-\x7e]{1,1024}$/.test(res.text)) {
        alibabaToken = res.text;
        cloud = 'alibaba-ecs';
        add({ status: 'ok', title: `Alibaba ECS metadata server answered at ${alibabaUrl} (token mode)` });
        add(await checkAlibabaTokensRequired(alibabaUrl, alibabaToken, dispatcher, timeoutMs));
      } else if (source.cloud === 'alibaba-ecs') {
        add({
          status: 'fail',
          title: `the Alibaba ECS metadata server at ${alibabaUrl} did not hand out a session token`,
          detail: 'text' in res ? `HTTP ${res.status}` : res.error,
          fix: "run this on the ECS instance itself; a firewall or proxy must not intercept 100.100.100.200, and the instance's metadata service must be enabled",
        });
        return undefined;
      }
    }
    if (!cloud && source.cloud !== 'alibaba-ecs') {
      const res = await fetchText(`${tencentUrl}/latest/meta-data/instance-id`, dispatcher, timeoutMs);
      if ('text' in res && res.status === 200) {
        cloud = 'tencent-cvm';
        add({ status: 'ok', title: `Tencent CVM metadata server answered at ${tencentUrl}`, detail: `instance ${res.text.trim().slice(0, 64)}` });
      } else {
        add({
          status: 'fail',
          title:
            source.cloud === 'tencent-cvm'
              ? `the Tencent CVM metadata server at ${tencentUrl} did not answer`
              : `neither the Alibaba ECS metadata server (${alibabaUrl}) nor the Tencent CVM one (${tencentUrl}) answered`,
          detail: 'text' in res ? `HTTP ${res.status}` : res.error,
          fix: 'run this on the ECS or CVM instance itself (the metadata servers answer only there); elsewhere crosscred issuer cannot attest the host, so use another token source',
        });
        return undefined;
      }
    }

    // 2. What the instance will attest with.
    if (cloud === 'alibaba-ecs' && source.alibabaAttestation === 'ecs-identity') {
      const headers = { 'x-aliyun-ecs-metadata-token': alibabaToken! };
      const doc = await fetchText(`${alibabaUrl}/latest/dynamic/instance-identity/document`, dispatcher, timeoutMs, { headers });
      let facts: { 'owner-account-id'?: unknown; 'region-id'?: unknown; 'instance-id'?: unknown } | undefined;
      try {
        facts = 'text' in doc && doc.status === 200 ? (JSON.parse(doc.text) as typeof facts) : undefined;
      } catch {
        facts = undefined;
      }
      if (!facts) {
        add({
          status: 'fail',
          title: 'the instance identity document cannot be read',
          detail: 'text' in doc ? `HTTP ${doc.status}` : doc.error,
          fix: 'the ECS metadata server must serve /latest/dynamic/instance-identity/document; check that the instance metadata service is enabled',
        });
      } else {
        add({
          status: 'ok',
          title: 'instance identity document read (not shown)',
          detail: `the issuer will give sub alibaba-ecs:${String(facts['owner-account-id'])}:${String(facts['region-id'])}:${String(facts['instance-id'])} if its policy allows it`,
        });
      }
      const audience = JSON.stringify({ aud: source.issuer.url, signingTime: Math.floor(options.clock.wallNow() / 1000) });
      const pkcs7 = await fetchText(`${alibabaUrl}/latest/dynamic/instance-identity/pkcs7?audience=${encodeURIComponent(audience)}`, dispatcher, timeoutMs, {
        headers,
      });
      if ('text' in pkcs7 && pkcs7.status === 200 && pkcs7.text.trim().length > 0)
        add({ status: 'ok', title: 'signed instance identity (PKCS#7) fetched with an audience naming the issuer (not shown)' });
      else
        add({
          status: 'fail',
          title: 'the signed instance identity (PKCS#7) cannot be fetched',
          detail: 'text' in pkcs7 ? `HTTP ${pkcs7.status}` : pkcs7.error,
          fix: 'the ECS metadata server must serve /latest/dynamic/instance-identity/pkcs7; or use --alibaba-attestation ram-role with a RAM role attached',
        });
    } else if (cloud) {
      const alibaba = cloud === 'alibaba-ecs';
      const base = alibaba ? `${alibabaUrl}/latest/meta-data/ram/security-credentials/` : `${tencentUrl}/latest/meta-data/cam/security-credentials/`;
      const headers: Record<string, string> = alibaba ? { 'x-aliyun-ecs-metadata-token': alibabaToken! } : {};
      const what = alibaba ? 'RAM' : 'CAM';
      const named = await fetchText(base, dispatcher, timeoutMs, { headers });
      const roleName = 'text' in named && named.status === 200 ? named.text.trim().split('\n')[0]!.trim() : '';
      if (!/^[A-Za-z0-9+=,.@_-]{1,128}$/.test(roleName)) {
        add({
          status: 'fail',
          title: `no ${what} role is attached to this instance`,
          detail: 'text' in named ? `HTTP ${named.status}` : named.error,
          fix: alibaba
            ? 'attach a RAM role to the instance (ECS console: Instance > Attach/Detach RAM Role), or use --alibaba-attestation ecs-identity'
            : 'bind a CAM role to the instance (CVM console: Instance > More > Instance Settings > Bind Role)',
        });
      } else {
        add({ status: 'ok', title: `${what} role ${roleName} is attached to this instance` });
        const creds = await fetchText(`${base}${encodeURIComponent(roleName)}`, dispatcher, timeoutMs, { headers });
        let body: Record<string, unknown> | undefined;
        try {
          body = 'text' in creds && creds.status === 200 ? (JSON.parse(creds.text) as Record<string, unknown>) : undefined;
        } catch {
          body = undefined;
        }
        const complete =
          body &&
          body['Code'] === 'Success' &&
          (alibaba
            ? typeof body['AccessKeyId'] === 'string' && typeof body['SecurityToken'] === 'string'
            : typeof body['TmpSecretId'] === 'string' && typeof body['Token'] === 'string');
        if (complete)
          add({
            status: 'ok',
            title: `temporary credentials of ${what} role ${roleName} obtainable (not shown)`,
            ...(alibaba ? {} : { detail: 'the issuer will give sub tencent-cam:<uin>:role/<role id>: CAM names roles by id, see the role in the CAM console' }),
          });
        else
          add({
            status: 'fail',
            title: `the metadata server did not hand out credentials for ${what} role ${roleName}`,
            detail:
              'text' in creds
                ? `HTTP ${creds.status}${body && typeof body['Code'] === 'string' ? `, Code ${String(body['Code']).slice(0, 40)}` : ''}`
                : creds.error,
            fix: `check the ${what} role still exists and that its trust policy lets the ${alibaba ? 'ECS' : 'CVM'} service assume it`,
          });
      }
    }
  } finally {
    await dispatcher.close();
  }
  await checkIssuerService(source, options, add);
  return cloud;
}

/** The issuer as the instance and AWS see it: discovery at --issuer-url, its JWKS, its token endpoint. */
async function checkIssuerService(source: VmSourceConfig, options: DoctorOptions, add: (c: Check) => void): Promise<void> {
  const url = source.issuer.url;
  const problem = issuerUrlProblem(url);
  if (problem) add({ status: 'fail', title: `--issuer-url ${url} ${problem}`, fix: "use the issuer's publicUrl exactly as in its config" });
  else if (!url.startsWith('https://'))
    add({
      status: 'warn',
      title: `the issuer ${url} is plain HTTP on loopback`,
      fix: 'AWS accepts only an https:// publicUrl on port 443; this works for tests only',
    });
  const dispatcher = new Agent({
    connect: { timeout: options.timeoutMs, ...(source.issuer.caBundle ? { ca: source.issuer.caBundle } : {}) },
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
  });
  const caFix = source.issuer.caBundle ? '' : ' (a private CA: --issuer-ca-bundle)';
  try {
    const discoveryUrl = `${url.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    const discovery = await fetchJson(discoveryUrl, dispatcher, options.timeoutMs);
    let tokenEndpoint = source.issuer.tokenEndpointUrl;
    if ('error' in discovery) {
      add({
        status: 'fail',
        title: `cannot fetch the issuer's discovery document ${discoveryUrl}`,
        detail: discovery.error,
        fix: `run 'crosscred issuer serve', or upload 'crosscred issuer export-discovery' to a bucket at publicUrl; check the URL${caFix}`,
      });
    } else {
      const doc = discovery.value as { issuer?: unknown; jwks_uri?: unknown; token_endpoint?: unknown; id_token_signing_alg_values_supported?: unknown };
      if (doc.issuer !== url)
        add({
          status: 'fail',
          title: 'the discovery document names another issuer',
          detail: `document:    ${String(doc.issuer).slice(0, 200)}\n--issuer-url: ${url}`,
          fix: "--issuer-url must equal the issuer's publicUrl character for character (no trailing /)",
        });
      else add({ status: 'ok', title: `issuer discovery document found at ${discoveryUrl}`, detail: `issuer ${url}` });
      const algs = Array.isArray(doc.id_token_signing_alg_values_supported) ? doc.id_token_signing_alg_values_supported.map(String) : [];
      const rejected = algs.filter((a) => !AWS_ACCEPTED_ALGORITHMS.includes(a));
      if (algs.length === 0 || rejected.length > 0)
        add({
          status: 'fail',
          title: `the issuer signs with ${algs.length ? rejected.join(', ') : 'no declared algorithm'}`,
          fix: `AWS accepts ${AWS_ACCEPTED_ALGORITHMS.join(', ')}: make keys with 'crosscred issuer keygen --alg ES256'`,
        });
      else add({ status: 'ok', title: `signing algorithms ${algs.join(', ')} (AWS accepts them)` });
      if (typeof doc.jwks_uri !== 'string') {
        add({ status: 'fail', title: 'the discovery document has no jwks_uri' });
      } else {
        const jwks = await fetchJson(doc.jwks_uri, dispatcher, options.timeoutMs);
        const keys = 'value' in jwks ? (jwks.value as { keys?: unknown }).keys : undefined;
        if ('error' in jwks)
          add({
            status: 'fail',
            title: `cannot fetch the JWKS at ${doc.jwks_uri}`,
            detail: jwks.error,
            fix: 'publish jwks.json next to the discovery document (export-discovery writes both)',
          });
        else if (!Array.isArray(keys) || keys.length === 0)
          add({
            status: 'fail',
            title: `the JWKS at ${doc.jwks_uri} holds no keys`,
            fix: 'the issuer config needs at least one key (crosscred issuer keygen)',
          });
        else add({ status: 'ok', title: `JWKS found at ${doc.jwks_uri} (${keys.length} key${keys.length === 1 ? '' : 's'})` });
      }
      if (!tokenEndpoint && typeof doc.token_endpoint === 'string' && doc.token_endpoint !== `${url}/token`) {
        add({
          status: 'warn',
          title: `the discovery document names the token endpoint ${doc.token_endpoint}, but serve will use ${url}/token`,
          fix: `pass --issuer-token-endpoint ${doc.token_endpoint}`,
        });
      }
    }
    tokenEndpoint ??= `${url}/token`;
    // An empty request: a token endpoint answers it with an OAuth error, and nothing is attested.
    try {
      const res = await request(tokenEndpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: '',
        dispatcher,
        signal: AbortSignal.timeout(options.timeoutMs),
      });
      const text = await res.body.text();
      let error: unknown;
      try {
        error = (JSON.parse(text) as { error?: unknown }).error;
      } catch {
        error = undefined;
      }
      if (typeof error === 'string')
        add({ status: 'ok', title: `token endpoint ${tokenEndpoint} reachable (it answered an empty request with ${error.slice(0, 40)}, as it should)` });
      else
        add({
          status: 'fail',
          title: `${tokenEndpoint} answered HTTP ${res.statusCode}, not as a crosscred issuer token endpoint`,
          fix: "check --issuer-token-endpoint (or the issuer's tokenEndpointUrl) and any proxy in front of it",
        });
    } catch (err) {
      const e = err as { code?: unknown; name?: unknown };
      add({
        status: 'fail',
        title: `the token endpoint ${tokenEndpoint} cannot be reached`,
        detail: typeof e.code === 'string' ? e.code : String(e.name),
        fix: `the instance must reach the issuer over HTTPS${caFix}; check firewalls and the security group`,
      });
    }
  } finally {
    await dispatcher.close();
  }
}

/** What to do about the issuer's refusal, from its OAuth error code (src/protocol/issuer-token-exchange.ts). */
/**
 * The instance secret doctor sends (trust on first use), if serve has made one. Doctor never makes
 * the file: run as root, it would make one the daemon's user cannot read. The file's path, or
 * undefined when none is sent.
 */
async function checkInstanceSecret(configured: string | undefined, add: (c: Check) => void): Promise<string | undefined> {
  const file = instanceSecretFileFor(configured);
  if (file === undefined) {
    add({
      status: 'info',
      title: 'no instance secret is sent (no --instance-secret-file, and no /var/lib/crosscred)',
      detail: 'an issuer with trustOnFirstUse refuses this VM',
    });
    return undefined;
  }
  try {
    const secret = await readInstanceSecret(file);
    add(
      secret === undefined
        ? { status: 'info', title: `no instance secret in ${file} yet: none is sent`, detail: 'crosscred serve makes it at its first token; doctor never does' }
        : { status: 'ok', title: `instance secret read from ${file} (not shown): it is sent with the attestation` },
    );
    return secret === undefined ? undefined : file;
  } catch (err) {
    add({ status: 'fail', title: `the instance secret in ${file} is unusable`, detail: describe(err), fix: isCrosscredError(err) ? err.hint : undefined });
    return undefined;
  }
}

function issuerRefusalFix(message: string): string | undefined {
  if (/crosscred_instance_secret is required/.test(message))
    return 'this issuer trusts on first use: start crosscred serve once (it makes the instance secret and binds it), then run doctor again';
  if (/bound to another instance secret/.test(message))
    return "this instance is bound to another secret: after a re-image, the issuer's admin runs `crosscred issuer reset-instance`; otherwise something else attested as this instance first, so find out what before resetting";
  const code = /\((invalid_request|invalid_grant|unsupported_grant_type|invalid_target|temporarily_unavailable|slow_down):/.exec(message)?.[1];
  switch (code) {
    case 'invalid_grant':
      return "the issuer did not accept this instance: its policy must list this account (and region, role, instance), --issuer-url must equal its publicUrl, and both clocks must be right (NTP); the issuer's log says which";
    case 'invalid_target':
      return "the audience asked for (--token-audience) is not among the issuer's audiences: add it there, or ask for one it lists";
    case 'invalid_request':
    case 'unsupported_grant_type':
      return 'the issuer has no attestor or policy for this kind (attestors and policy in its config), or runs another crosscred version';
    case 'temporarily_unavailable':
      return "the issuer could not reach the cloud's STS or is overloaded: check its egress and log, and try again";
    case 'slow_down':
      return "this identity asked too often (the issuer's rateLimit): wait a minute";
    default:
      return /could not be reached/.test(message)
        ? "the instance must reach the issuer's token endpoint over HTTPS (--issuer-ca-bundle for a private CA)"
        : undefined;
  }
}

/**
 * `HttpTokens=optional` (the default) lets any process of the instance GET the signed identity
 * document and the RAM role's keys with no session token: one token-less GET of the instance id
 * tells. The region (read with the token) only fills in the fix's command.
 */
async function checkAlibabaTokensRequired(alibabaUrl: string, token: string, dispatcher: Dispatcher, timeoutMs: number): Promise<Check> {
  const client = new EcsMetadataClient({ baseUrl: alibabaUrl, timeoutMs });
  const probe = await client.probeTokenlessRead().finally(() => client.close());
  if (probe.httpTokens === 'required') return { status: 'ok', title: 'the ECS metadata server refuses reads without a session token (HttpTokens=required)' };
  if (probe.httpTokens === 'unknown') {
    return {
      status: 'warn',
      title: 'cannot tell whether the ECS metadata server requires session tokens',
      detail: `a GET without a token got ${probe.reason}`,
    };
  }
  const region = await fetchText(`${alibabaUrl}/latest/meta-data/region-id`, dispatcher, timeoutMs, { headers: { 'x-aliyun-ecs-metadata-token': token } });
  const regionId = 'text' in region && region.status === 200 && /^[a-z]{2}-[a-z0-9-]{1,40}$/.test(region.text.trim()) ? region.text.trim() : undefined;
  return {
    status: 'fail',
    title: 'the ECS metadata server answers reads without a session token (HttpTokens=optional)',
    detail: 'any process on this instance (or anything that can make it send a GET) can read the signed identity document and the RAM role keys',
    fix: `require session tokens on this instance's metadata options: ${requireTokensCommand({ instanceId: probe.instanceId, regionId })}`,
  };
}

async function fetchText(
  url: string,
  dispatcher: Dispatcher,
  timeoutMs: number,
  init: { method?: 'GET' | 'PUT'; headers?: Record<string, string> } = {},
): Promise<{ status: number; text: string } | { error: string }> {
  try {
    const res = await request(url, { method: init.method ?? 'GET', headers: init.headers ?? {}, dispatcher, signal: AbortSignal.timeout(timeoutMs) });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > MAX_METADATA_BYTES) {
        res.body.destroy();
        return { error: `larger than ${MAX_METADATA_BYTES} bytes` };
      }
      chunks.push(chunk as Buffer);
    }
    return { status: res.statusCode, text: Buffer.concat(chunks).toString('utf8') };
  } catch (err) {
    const e = err as { code?: unknown; name?: unknown };
    if (e.name === 'TimeoutError' || e.name === 'AbortError' || e.code === 'UND_ERR_CONNECT_TIMEOUT' || e.code === 'UND_ERR_HEADERS_TIMEOUT')
      return { error: `no answer within ${timeoutMs} ms` };
    return { error: typeof e.code === 'string' ? e.code : typeof e.name === 'string' ? e.name : 'request failed' };
  }
}

/** What to do about each STS outcome, in plain words. */
function fixFor(code: string, kind: string): string {
  switch (code) {
    case 'InvalidIdentityToken':
      return 'STS could not verify the token: register its issuer as an IAM OIDC identity provider (crosscred trust-policy prints the command) and keep the discovery document and JWKS public over HTTPS';
    case 'IDPRejectedClaim':
    case 'AccessDenied':
      return "the role's trust policy does not let this token in: its Principal must be the issuer's IAM OIDC provider and its Condition must match the token's aud and sub (crosscred trust-policy prints one)";
    case 'ExpiredToken':
      return "the token has expired, or this host's clock is off: check rotation and NTP";
    case 'IDPCommunicationError':
      return 'STS could not reach the issuer to fetch its keys: the discovery document and JWKS must be reachable from the internet over HTTPS';
    case 'RegionDisabled':
      return 'STS is not activated in this region for the account: activate it in IAM account settings, or use another --region';
    case 'MalformedPolicyDocument':
    case 'PackedPolicyTooLarge':
      return 'the session policy is rejected; crosscred sends none, so check the endpoint is really STS';
    case 'ValidationError':
      return "STS refused a parameter: check the role ARN, the session name and --duration-seconds (at most the role's maximum session duration)";
    default:
      if (/^(CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|ERR_TLS_)/.test(code))
        return 'TLS to STS failed: set --ca-bundle / AWS_CA_BUNDLE for a private endpoint or a TLS-intercepting proxy';
      return kind === 'retryable'
        ? 'STS could not be reached or failed: check the network path, HTTPS_PROXY/NO_PROXY, and --sts-endpoint'
        : 'STS refused the exchange: check the role ARN and its trust policy';
  }
}

/**
 * What to do about an Alibaba or Tencent STS refusal. Their codes are in the message already; the
 * fix names what a person checks, by the kind of failure.
 */
function otherCloudFix(cloud: 'alibaba' | 'tencent', kind: string): string {
  const w = CLOUD_WORDS[cloud];
  if (kind === 'token-expired') return "the token has expired, or this host's clock is off: check rotation and NTP";
  if (kind === 'retryable') return `${w.stsName} could not be reached or failed: check the network path, HTTPS_PROXY/NO_PROXY, --region and --sts-endpoint`;
  const provider = cloud === 'alibaba' ? 'the OIDC provider ARN (--oidc-provider-arn)' : 'the provider id (--provider-id)';
  return `${w.stsName} refused the exchange: check the role ARN, ${provider}, that the ${w.provider} lists the token's issuer and audience, and the role's trust policy (crosscred trust-policy prints both)`;
}

async function fetchJson(url: string, dispatcher: Dispatcher, timeoutMs: number): Promise<{ value: unknown } | { error: string }> {
  try {
    const res = await request(url, { dispatcher, signal: AbortSignal.timeout(timeoutMs) });
    let size = 0;
    const chunks: Buffer[] = [];
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > MAX_DOCUMENT_BYTES) {
        res.body.destroy();
        return { error: `larger than ${MAX_DOCUMENT_BYTES} bytes` };
      }
      chunks.push(chunk as Buffer);
    }
    if (res.statusCode !== 200) return { error: `HTTP ${res.statusCode}` };
    return { value: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown };
  } catch (err) {
    const e = err as { code?: unknown; name?: unknown };
    if (e instanceof SyntaxError) return { error: 'not JSON' };
    if (e.name === 'TimeoutError' || e.name === 'AbortError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT')
      return { error: `no answer within ${timeoutMs} ms` };
    if (e.code === 'UND_ERR_CONNECT_TIMEOUT') return { error: `no connection within ${timeoutMs} ms` };
    return { error: typeof e.code === 'string' ? e.code : typeof e.name === 'string' ? e.name : 'request failed' };
  }
}

function isPrivateHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h.endsWith('.local') || h.endsWith('.internal') || h.endsWith('.svc') || h.endsWith('.cluster.local')) return true;
  if (isIP(h) === 4) return /^(10\.|127\.|169\.254\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.)/.test(h);
  if (isIP(h) === 6) return h === '::1' || /^f[cd]/i.test(h) || /^fe[89ab]/i.test(h);
  return false;
}

function describe(err: unknown): string {
  return isCrosscredError(err) ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);
}

export function formatDuration(seconds: number): string {
  const sign = seconds < 0 ? '-' : '';
  let s = Math.abs(seconds);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return `${sign}${h ? `${h} h ` : ''}${h || m ? `${m} min ` : ''}${s} s`.trim();
}

/**
 * Claims, discovery fields and server messages come from elsewhere: control characters (terminal
 * escape sequences) are shown as '?', so a hostile token or issuer cannot rewrite the screen.
 */
function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

const MARK: Record<CheckStatus, string> = { ok: '[ok]  ', warn: '[warn]', fail: '[FAIL]', info: '[info]' };

/** `crosscred doctor`'s exit code: 0 when the chain can work, 1 when a check failed. */
export function doctorExitCode(reports: readonly RoleReport[]): number {
  return reports.some((r) => r.checks.some((c) => c.status === 'fail')) ? 1 : 0;
}

/** The report as a person reads it on one screen. */
export function formatReport(reports: readonly RoleReport[], preamble: readonly Check[]): string {
  const out: string[] = [];
  const line = (c: Check) => {
    out.push(`  ${MARK[c.status]} ${printable(c.title)}`);
    if (c.detail) for (const d of String(c.detail).split('\n')) out.push(`         ${printable(d)}`);
    if (c.fix) out.push(`         fix: ${printable(c.fix)}`);
  };
  if (preamble.length > 0) {
    out.push('configuration');
    preamble.forEach(line);
  }
  for (const r of reports) {
    out.push(`role ${r.role} (${r.roleArn})`);
    r.checks.forEach(line);
  }
  const all = [...preamble, ...reports.flatMap((r) => r.checks)];
  const fails = all.filter((c) => c.status === 'fail').length;
  const warns = all.filter((c) => c.status === 'warn').length;
  out.push(
    '',
    fails === 0
      ? `The chain can work${warns ? `, with ${warns} warning${warns === 1 ? '' : 's'}` : ''}.`
      : `The chain cannot work: ${fails} problem${fails === 1 ? '' : 's'}${warns ? ` and ${warns} warning${warns === 1 ? '' : 's'}` : ''} above.`,
  );
  return `${out.join('\n')}\n`;
}
