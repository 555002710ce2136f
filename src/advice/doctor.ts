import { isIP } from 'node:net';
import { EnvHttpProxyAgent, request, type Dispatcher } from 'undici';
import type { Clock } from '../cache/clock.js';
import type { Config, RoleConfig } from '../config/config.js';
import { isCrosscredError } from '../errors.js';
import { classifyFailure } from '../exchange/sts-failure.js';
import { createStsClient, StsWebIdentityExchange } from '../exchange/sts-exchange.js';
import { createTokenSource } from '../sources/create-token-source.js';
import type { TokenClaimsSummary } from '../sources/token-source.js';

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
}

/** Tokens issued further in the future than this mean the host clock is behind the issuer's. */
const CLOCK_SKEW_WARN_SECONDS = 60;
/** Less life than this left on a token deserves a warning: rotation may have stopped. */
const TOKEN_LOW_LIFE_SECONDS = 5 * 60;
const MAX_DOCUMENT_BYTES = 256 * 1024;

export async function diagnoseRole(config: Config, role: RoleConfig, options: DoctorOptions): Promise<RoleReport> {
  const checks: Check[] = [];
  const add = (c: Check) => checks.push(c);
  const source = createTokenSource(role.token.source, options.clock);
  add({ status: 'info', title: `token source: ${source.description}`, detail: role.token.reason });
  for (const note of role.token.notes) add({ status: 'info', title: note });

  let claims: TokenClaimsSummary | undefined;
  try {
    const token = await source.getToken();
    claims = token.claims;
  } catch (err) {
    add({ status: 'fail', title: 'no usable token', detail: describe(err), fix: isCrosscredError(err) ? err.hint : undefined });
  }
  if (claims) {
    const now = options.clock.wallNow() / 1000;
    const left = Math.round(claims.exp - now);
    add({
      status: 'ok',
      title: 'token read (its content is never shown)',
      detail: [
        `iss ${claims.iss ?? '(none)'}`,
        `aud ${Array.isArray(claims.aud) ? claims.aud.join(', ') : (claims.aud ?? '(none)')}`,
        `sub ${claims.sub ?? '(none)'}`,
        `exp ${new Date(claims.exp * 1000).toISOString()} (${formatDuration(left)} left)`,
        `kid ${claims.kid ?? '(none)'}`,
      ].join('\n'),
    });
    if (claims.iat !== undefined && claims.iat - now > CLOCK_SKEW_WARN_SECONDS) {
      add({ status: 'warn', title: `the token was issued ${Math.round(claims.iat - now)} s in this host's future`, fix: 'this host\'s clock is behind the issuer\'s; enable NTP (chrony, systemd-timesyncd)' });
    }
    if (left < TOKEN_LOW_LIFE_SECONDS) add({ status: 'warn', title: `the token expires in ${formatDuration(left)}`, fix: 'check that whatever writes or issues it still rotates it' });
    const audiences = typeof claims.aud === 'string' ? [claims.aud] : (claims.aud ?? []);
    if (audiences.length > 0 && !audiences.includes('sts.amazonaws.com')) {
      add({ status: 'info', title: `the token's audience is ${audiences.join(', ')}, not sts.amazonaws.com`, detail: 'that works, if the IAM OIDC provider lists it as a client ID (crosscred trust-policy prints the command)' });
    }
    for (const c of await checkIssuer(claims, config, options)) add(c);
  }

  if (!options.roleConfigured) {
    add({ status: 'fail', title: 'no AWS role is configured', fix: 'set AWS_ROLE_ARN or pass --role-arn (the role in the AWS account to assume)' });
  } else if (claims && options.exchange) {
    add(await checkExchange(config, role, source, options));
  } else if (claims) {
    add({ status: 'info', title: 'STS exchange not tried (--no-exchange)' });
  }
  await source.close?.();
  return { role: role.name, roleArn: role.roleArn, checks, ...(claims ? { claims } : {}) };
}

async function checkIssuer(claims: TokenClaimsSummary, config: Config, options: DoctorOptions): Promise<Check[]> {
  const checks: Check[] = [];
  if (!claims.iss) return [{ status: 'fail', title: 'the token has no issuer (iss)', fix: 'STS needs an OIDC token with an https:// issuer' }];
  let issuer: URL;
  try {
    issuer = new URL(claims.iss);
  } catch {
    return [{ status: 'fail', title: `the issuer ${claims.iss} is not a URL`, fix: 'STS needs an OIDC token with an https:// issuer' }];
  }
  if (issuer.protocol !== 'https:') {
    checks.push({ status: 'fail', title: `the issuer ${claims.iss} is not HTTPS`, fix: 'AWS IAM accepts only https:// issuers: the issuer must publish its discovery document and JWKS over public HTTPS (EKS, ACK and TKE each offer a public OIDC endpoint for this)' });
  } else if (isPrivateHost(issuer.hostname)) {
    checks.push({ status: 'warn', title: `the issuer's host ${issuer.hostname} looks private`, fix: 'AWS fetches the discovery document and JWKS over the public internet; a private address cannot work' });
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
      checks.push({ status: 'fail', title: `cannot fetch ${discoveryUrl}`, detail: discovery.error, fix: 'the issuer must publish its discovery document where AWS can fetch it' });
      return checks;
    }
    const doc = discovery.value as { issuer?: unknown; jwks_uri?: unknown };
    if (doc.issuer !== claims.iss) {
      checks.push({ status: 'fail', title: 'the discovery document names another issuer', detail: `document: ${String(doc.issuer).slice(0, 200)}\ntoken:    ${claims.iss}`, fix: 'the token\'s iss must equal the discovery document\'s issuer, character for character' });
    } else {
      checks.push({ status: 'ok', title: `discovery document found at ${discoveryUrl}` });
    }
    if (typeof doc.jwks_uri !== 'string') {
      checks.push({ status: 'fail', title: 'the discovery document has no jwks_uri' });
      return checks;
    }
    const jwks = await fetchJson(doc.jwks_uri, dispatcher, options.timeoutMs);
    if ('error' in jwks) {
      checks.push({ status: 'fail', title: `cannot fetch the JWKS at ${doc.jwks_uri}`, detail: jwks.error, fix: 'AWS must be able to fetch the JWKS to verify token signatures' });
      return checks;
    }
    const keys = (jwks.value as { keys?: Array<{ kid?: unknown }> }).keys;
    if (!Array.isArray(keys) || keys.length === 0) {
      checks.push({ status: 'fail', title: 'the JWKS holds no keys' });
    } else if (claims.kid !== undefined && !keys.some((k) => k.kid === claims.kid)) {
      checks.push({ status: 'fail', title: `the JWKS has no key with the token's kid ${claims.kid}`, fix: 'the issuer signs with a key it does not publish (a rotation in progress?); STS will reject the token' });
    } else {
      checks.push({ status: 'ok', title: `JWKS found at ${doc.jwks_uri} (${keys.length} key${keys.length === 1 ? '' : 's'}${claims.kid ? `, including kid ${claims.kid}` : ''})` });
    }
    if (!doc.jwks_uri.startsWith('https://')) checks.push({ status: 'warn', title: 'the jwks_uri is not HTTPS', fix: 'AWS fetches the JWKS over HTTPS only' });
  } finally {
    await dispatcher.close();
  }
  return checks;
}

async function checkExchange(config: Config, role: RoleConfig, source: ReturnType<typeof createTokenSource>, options: DoctorOptions): Promise<Check> {
  const endpoint = role.stsEndpoint ?? `https://sts.${role.region}.amazonaws.com`;
  const client = createStsClient({ region: role.region, ...(role.stsEndpoint ? { endpoint: role.stsEndpoint } : {}), ...config.sts });
  const exchange = new StsWebIdentityExchange(
    { roleName: role.name, roleArn: role.roleArn, accountId: role.accountId, sessionName: role.sessionName, ...(role.durationSeconds ? { durationSeconds: role.durationSeconds } : {}) },
    source,
    client,
    options.clock,
  );
  try {
    const credentials = await exchange.exchange();
    const left = Math.round((credentials.expirationWall - options.clock.wallNow()) / 1000);
    return { status: 'ok', title: `STS at ${endpoint} accepted the token for ${role.roleArn}`, detail: `temporary credentials issued, valid for ${formatDuration(left)} (not shown)` };
  } catch (err) {
    const failure = classifyFailure(err);
    return { status: 'fail', title: `STS at ${endpoint}: ${failure.message}`, fix: fixFor(failure.code, failure.kind) };
  } finally {
    client.destroy();
  }
}

/** What to do about each STS outcome, in plain words. */
function fixFor(code: string, kind: string): string {
  switch (code) {
    case 'InvalidIdentityToken':
      return 'STS could not verify the token: register its issuer as an IAM OIDC identity provider (crosscred trust-policy prints the command) and keep the discovery document and JWKS public over HTTPS';
    case 'IDPRejectedClaim':
    case 'AccessDenied':
      return 'the role\'s trust policy does not let this token in: its Principal must be the issuer\'s IAM OIDC provider and its Condition must match the token\'s aud and sub (crosscred trust-policy prints one)';
    case 'ExpiredToken':
      return 'the token has expired, or this host\'s clock is off: check rotation and NTP';
    case 'IDPCommunicationError':
      return 'STS could not reach the issuer to fetch its keys: the discovery document and JWKS must be reachable from the internet over HTTPS';
    case 'RegionDisabled':
      return 'STS is not activated in this region for the account: activate it in IAM account settings, or use another --region';
    case 'MalformedPolicyDocument':
    case 'PackedPolicyTooLarge':
      return 'the session policy is rejected; crosscred sends none, so check the endpoint is really STS';
    case 'ValidationError':
      return 'STS refused a parameter: check the role ARN, the session name and --duration-seconds (at most the role\'s maximum session duration)';
    default:
      if (/^(CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|ERR_TLS_)/.test(code)) return 'TLS to STS failed: set --ca-bundle / AWS_CA_BUNDLE for a private endpoint or a TLS-intercepting proxy';
      return kind === 'retryable'
        ? 'STS could not be reached or failed: check the network path, HTTPS_PROXY/NO_PROXY, and --sts-endpoint'
        : 'STS refused the exchange: check the role ARN and its trust policy';
  }
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
    if (e.name === 'TimeoutError' || e.name === 'AbortError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT') return { error: `no answer within ${timeoutMs} ms` };
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
  out.push('', fails === 0 ? `The chain can work${warns ? `, with ${warns} warning${warns === 1 ? '' : 's'}` : ''}.` : `The chain cannot work: ${fails} problem${fails === 1 ? '' : 's'}${warns ? ` and ${warns} warning${warns === 1 ? '' : 's'}` : ''} above.`);
  return `${out.join('\n')}\n`;
}
