import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect, isIP } from 'node:net';
import type { Clock } from '../core/clock.js';
import { isLoopbackHost } from '../core/url-checks.js';
import { parseRoleArn } from '../platform/aws/role-arn.js';
import { readJwtShape } from '../protocol/jwt-shape.js';
import {
  CREDENTIALS_PATH_PREFIX,
  ENV,
  POD_IDENTITY_IPV4,
  POD_IDENTITY_IPV6,
  type PodTokenIdentity,
  podSessionName,
  SERVICE_ACCOUNT_SUBJECT,
  TOKEN_CLOCK_SKEW_MS,
} from '../protocol/pod-identity.js';
import { redactSecrets } from '../sources/redact-secrets.js';
import { readRegularFile } from '../util/read-regular-file.js';
import type { Check, CheckStatus } from './doctor.js';

/**
 * `crosscred doctor --node-agent`, run in a pod: can this container get its credentials from the
 * node agent, and if not, why? Four parts, each a list of checks with a fix:
 *   1. the variables the webhook injects, and any variable earlier in the SDKs' chain that would win;
 *   2. the projected token: readable, a JWT, its aud, iss, exp and pod binding, a trailing newline;
 *   3. the agent itself: a TCP connection, then a real GET with the token and its answer;
 *   4. the silent fallback: whether IMDS answers here, so that a container the webhook missed
 *      (every SDK), or a chain that goes on to IMDS when the agent fails (Java SDK v2's), would
 *      quietly run as the node's role. (JS v3 with FULL_URI set, botocore and the Go SDKs stop at
 *      the container provider's error: seen in test/e2e/node-agent-pods.test.ts.)
 * Never shows the token or the credentials: claims are summarized, credentials acknowledged.
 */

export interface NodeAgentDoctorOptions {
  /** The container's environment (process.env). */
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly clock: Clock;
  /** The audience the agent expects (its --audience). */
  readonly audience: string;
  /** The agent's --allowed-issuer list, when the caller knows it; empty: iss is only shown. */
  readonly allowedIssuers: readonly string[];
  /** Budget of each step with the agent (the TCP connection, then the GET), in ms. */
  readonly agentTimeoutMs: number;
  /** Budget of each IMDS probe, in ms: the SDKs give IMDS 1 s. */
  readonly imdsTimeoutMs: number;
}

export interface NodeAgentSection {
  readonly title: string;
  readonly checks: readonly Check[];
}

export interface NodeAgentReport {
  readonly sections: readonly NodeAgentSection[];
}

/** Plain-HTTP hosts that current SDKs accept for AWS_CONTAINER_CREDENTIALS_FULL_URI (besides loopback). */
const SDK_PLAIN_HTTP_HOSTS = ['169.254.170.2', POD_IDENTITY_IPV4, `[${POD_IDENTITY_IPV6}]`];
/** The agent's own addresses, as they appear in a URL's hostname. */
const AGENT_HOSTS = [POD_IDENTITY_IPV4, `[${POD_IDENTITY_IPV6}]`];
/** A projected token is a few kB; anything much larger is not one. */
const MAX_TOKEN_FILE_BYTES = 64 * 1024;
/** Less life than this left on a token: the kubelet rotates at 80%, so rotation has likely stopped. */
const TOKEN_LOW_LIFE_SECONDS = 5 * 60;
/** botocore refreshes at 15 min left and the JS SDK at 5: credentials served with less are refetched at once. */
const CREDENTIALS_LOW_LIFE_SECONDS = 15 * 60;
/** Bound on any answer read here (agent or IMDS), in bytes. */
const MAX_ANSWER_BYTES = 64 * 1024;
/** A message from elsewhere is shown up to this many characters. */
const MAX_SHOWN_CHARS = 300;
const DEFAULT_IMDS_URL = 'http://169.254.169.254';
const DEFAULT_IMDS_IPV6_URL = 'http://[fd00:ec2::254]';

export async function diagnoseNodeAgent(options: NodeAgentDoctorOptions): Promise<NodeAgentReport> {
  const variables: Check[] = [];
  const uri = checkVariables(options.env, variables);
  const tokenChecks: Check[] = [];
  const token = await checkToken(options, tokenChecks);
  const agentChecks = uri
    ? await checkAgent(uri, token, options)
    : [{ status: 'info' as const, title: 'not checked: no usable AWS_CONTAINER_CREDENTIALS_FULL_URI' }];
  const fallback = await checkImds(options);
  return {
    sections: [
      { title: 'variables (what the webhook injects, and what would win over it)', checks: variables },
      { title: 'the projected ServiceAccount token', checks: tokenChecks },
      { title: 'the node agent', checks: agentChecks },
      { title: "silent fallback to the node's role (IMDS)", checks: fallback },
    ],
  };
}

interface AgentUri {
  readonly url: URL;
  readonly roleArn: string;
}

/** Part 1. Returns the FULL_URI when the SDKs would use it. */
function checkVariables(env: NodeAgentDoctorOptions['env'], add: Check[]): AgentUri | undefined {
  const set = (name: string) => (env[name] ?? '') !== '';
  let uri: AgentUri | undefined;
  const fullUri = env[ENV.fullUri];
  if (!fullUri) {
    add.push({
      status: 'fail',
      title: `${ENV.fullUri} is not set`,
      fix: `the webhook did not inject this container: the pod needs the label crosscred.io/inject=true and its ServiceAccount the annotation crosscred.io/role-arn (mode agent); the pod's crosscred.io/injected annotation says whether it ran; pods created before the webhook need a restart`,
    });
  } else {
    uri = checkFullUri(fullUri, env, add);
  }

  const tokenFile = set(ENV.authorizationTokenFile);
  const tokenValue = set(ENV.authorizationToken);
  if (tokenFile) add.push({ status: 'ok', title: `${ENV.authorizationTokenFile} is set`, detail: printable(env[ENV.authorizationTokenFile]!) });
  if (tokenFile && tokenValue) {
    add.push({
      status: 'warn',
      title: `${ENV.authorizationToken} is set beside ${ENV.authorizationTokenFile}`,
      detail: 'Java SDK v2 prefers the fixed value to the file, and it goes stale when the kubelet rotates the token (JS and botocore prefer the file)',
      fix: `remove ${ENV.authorizationToken} from the container's env (the webhook never sets it)`,
    });
  } else if (!tokenFile && tokenValue) {
    add.push({
      status: 'warn',
      title: `only ${ENV.authorizationToken} is set: a fixed token, which stops working when it expires`,
      fix: `use ${ENV.authorizationTokenFile} pointing at the projected token, which the kubelet rotates`,
    });
  } else if (!tokenFile) {
    add.push({
      status: 'fail',
      title: `${ENV.authorizationTokenFile} is not set`,
      fix: 'without it the SDKs send no token and the node agent refuses them; the webhook injects it with the projected volume crosscred-token',
    });
  }
  if (set('AWS_CONTAINER_CREDENTIALS_RELATIVE_URI')) {
    add.push({
      status: 'warn',
      title: 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is set: SDKs use it (an ECS endpoint at 169.254.170.2) instead of the FULL_URI',
      fix: 'remove it from the container’s env',
    });
  }

  // Earlier in every SDK's default chain than the container provider: if set, the agent is never asked.
  const winners: Check[] = [];
  if (set('AWS_ACCESS_KEY_ID') || set('AWS_SECRET_ACCESS_KEY') || set('AWS_SESSION_TOKEN')) {
    const names = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'].filter(set);
    winners.push({
      status: 'warn',
      title: `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} set: the SDKs use these environment credentials before the node agent`,
      detail: 'values not shown',
      fix: 'remove them from the container (env, or the Secret behind envFrom) so that the pod uses its own role',
    });
  }
  if (set('AWS_PROFILE')) {
    winners.push({
      status: 'warn',
      title: `AWS_PROFILE is set (${printable(env['AWS_PROFILE']!).slice(0, 64)}): the SDKs read that profile first, and use it if it holds keys, a role or a credential_process`,
      fix: 'unset AWS_PROFILE unless the profile is meant to win over the node agent',
    });
  }
  if (set(ENV.roleArn) && set(ENV.webIdentityTokenFile)) {
    winners.push({
      status: 'warn',
      title: `${ENV.roleArn} and ${ENV.webIdentityTokenFile} are set: the SDKs call STS themselves with that token (IRSA, web-identity mode) before asking the node agent`,
      fix: 'keep one mode per container: remove them, or remove the agent variables if web-identity mode is meant (old SDKs)',
    });
  } else if (set(ENV.roleArn) || set(ENV.webIdentityTokenFile)) {
    winners.push({
      status: 'info',
      title: `${set(ENV.roleArn) ? ENV.roleArn : ENV.webIdentityTokenFile} is set alone: the SDKs ignore it without its pair`,
    });
  }
  if (winners.length === 0) add.push({ status: 'ok', title: 'no variable earlier in the SDKs’ chain takes precedence over the node agent' });
  add.push(...winners);
  return uri;
}

function checkFullUri(fullUri: string, env: NodeAgentDoctorOptions['env'], add: Check[]): AgentUri | undefined {
  let url: URL;
  try {
    url = new URL(fullUri);
  } catch {
    add.push({ status: 'fail', title: `${ENV.fullUri} is not a URL`, detail: printable(fullUri).slice(0, MAX_SHOWN_CHARS) });
    return undefined;
  }
  // Shown without any user:password part, which is a secret wherever someone put one.
  const shown = url.username || url.password ? fullUri.replace(/\/\/[^@/]*@/, '//') : fullUri;
  add.push({ status: 'ok', title: `${ENV.fullUri} is set`, detail: printable(shown).slice(0, MAX_SHOWN_CHARS) });
  const host = url.hostname;
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    add.push({ status: 'fail', title: `${ENV.fullUri} is ${url.protocol} URL; the SDKs take http or https only` });
    return undefined;
  }
  if (url.protocol === 'http:' && !isLoopbackHost(host) && !SDK_PLAIN_HTTP_HOSTS.includes(host)) {
    add.push({
      status: 'fail',
      title: `the SDKs refuse plain HTTP to ${host}`,
      detail: `allowed for plain HTTP: loopback, ${SDK_PLAIN_HTTP_HOSTS.join(', ')}; anything else must be https`,
      fix: `use http://${POD_IDENTITY_IPV4}${CREDENTIALS_PATH_PREFIX}<role ARN>, as the webhook writes it`,
    });
    return undefined;
  }
  if (!AGENT_HOSTS.includes(host)) {
    add.push({
      status: 'warn',
      title: `${host} is not the node agent's address (${AGENT_HOSTS.join(' or ')})`,
      detail: 'the checks below ask it anyway, as the SDK would (it sends the token there at every fetch)',
    });
  } else {
    add.push({
      status: 'ok',
      title: `its host ${host} is on every current SDK's allow-list`,
      detail: 'older SDKs refuse it (AWS CLI < 2.15, botocore < 1.34.41, Go SDKs before late 2023): use web-identity mode for them',
    });
  }
  if (host === `[${POD_IDENTITY_IPV6}]` && env[ENV.endpointMode] !== 'IPv6') {
    add.push({
      status: 'warn',
      title: `the URI is IPv6 but ${ENV.endpointMode} is not IPv6`,
      fix: `Java SDK v2 accepts [${POD_IDENTITY_IPV6}] only with ${ENV.endpointMode}=IPv6; set it (the webhook does in IPv6 clusters)`,
    });
  }
  if (!url.pathname.startsWith(CREDENTIALS_PATH_PREFIX)) {
    add.push({
      status: 'fail',
      title: `the URI's path does not start with ${CREDENTIALS_PATH_PREFIX}`,
      fix: `the node agent serves ${CREDENTIALS_PATH_PREFIX}<role ARN>`,
    });
    return undefined;
  }
  let roleArn: string;
  try {
    roleArn = decodeURIComponent(url.pathname.slice(CREDENTIALS_PATH_PREFIX.length));
  } catch {
    add.push({ status: 'fail', title: "the URI's role ARN is not valid percent-encoding" });
    return undefined;
  }
  const parsed = parseRoleArn(roleArn);
  if ('problem' in parsed) {
    add.push({
      status: 'fail',
      title: `the URI's role ${printable(roleArn).slice(0, 120)} ${parsed.problem}`,
      fix: "the ServiceAccount's crosscred.io/role-arn annotation must hold the role's full ARN",
    });
    return undefined;
  }
  add.push({ status: 'ok', title: `the URI names the role ${roleArn}` });
  return { url, roleArn };
}

/** Part 2. Returns the token (trimmed) when one could be read and looks like a JWT. */
async function checkToken(options: NodeAgentDoctorOptions, add: Check[]): Promise<string | undefined> {
  const file = options.env[ENV.authorizationTokenFile];
  let raw: string;
  if (file) {
    try {
      const bytes = await readRegularFile(file, MAX_TOKEN_FILE_BYTES);
      if (bytes === undefined) {
        add.push({ status: 'fail', title: `the token file ${file} is larger than ${MAX_TOKEN_FILE_BYTES} bytes: not a projected token` });
        return undefined;
      }
      raw = bytes.toString('utf8');
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      add.push({
        status: 'fail',
        title: `cannot read the token file ${file}`,
        detail: typeof code === 'string' ? code : describe(err),
        fix:
          code === 'EACCES'
            ? `this process (uid ${process.getuid?.() ?? '?'}) may not read it: projected tokens are readable by the pod's fsGroup; set spec.securityContext.fsGroup (or run as the file's owner)`
            : 'the projected volume crosscred-token must be mounted in this container at /var/run/secrets/crosscred.io/serviceaccount (the webhook adds it)',
      });
      return undefined;
    }
    add.push({ status: 'ok', title: `the token file ${file} is readable (its content is never shown)` });
  } else if (options.env[ENV.authorizationToken]) {
    raw = options.env[ENV.authorizationToken]!;
    add.push({ status: 'info', title: `checking the token in ${ENV.authorizationToken} (never shown)` });
  } else {
    add.push({ status: 'info', title: 'no token to check' });
    return undefined;
  }

  const token = raw.trim();
  if (token !== raw) {
    add.push({
      status: 'fail',
      title: 'the token ends (or starts) with whitespace, such as a trailing newline',
      detail: 'the JS SDK v3 and botocore put the content in the Authorization header as it is, and refuse it before sending anything',
      fix: "write the file without a newline (printf '%s', not echo); the kubelet's projected tokens have none",
    });
  } else {
    add.push({ status: 'ok', title: 'no trailing newline (the JS SDK and botocore would refuse one)' });
  }

  // Shape only (a time of 0 never counts as expired): expiry is judged below, with the other claims.
  const shape = readJwtShape(token, 0);
  if (!shape.ok) {
    add.push({
      status: 'fail',
      title: 'the token is not a usable JWT',
      detail: `the token ${shape.describe}`,
      fix: 'mount the projected ServiceAccount token the webhook adds, not another file',
    });
    return undefined;
  }
  const claims = shape.payload;
  const iss = typeof claims['iss'] === 'string' ? claims['iss'] : undefined;
  const sub = typeof claims['sub'] === 'string' ? claims['sub'] : undefined;
  const aud = claims['aud'];
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : [];
  const now = options.clock.wallNow() / 1000;
  const left = Math.round(shape.exp - now);
  add.push({
    status: 'ok',
    title: 'the token is a JWT (never shown)',
    detail: [
      `iss ${iss ?? '(none)'}`,
      `sub ${sub ?? '(none)'}`,
      `aud ${audiences.length ? audiences.join(', ') : '(none)'}`,
      `exp ${new Date(shape.exp * 1000).toISOString()} (${formatDuration(left)} ${left >= 0 ? 'left' : 'ago'})`,
    ]
      .map(printable)
      .join('\n'),
  });

  if (audiences.includes(options.audience)) add.push({ status: 'ok', title: `aud includes ${options.audience}` });
  else
    add.push({
      status: 'fail',
      title: `aud is ${audiences.length ? printable(audiences.join(', ')) : '(none)'}, not ${options.audience}`,
      fix: `the projected volume's serviceAccountToken.audience must be ${options.audience} (ServiceAccount annotation crosscred.io/audience), or the agent must run with --audience set to the token's`,
    });

  if (!iss) add.push({ status: 'fail', title: 'the token has no iss', fix: 'the node agent accepts only tokens from an issuer in its --allowed-issuer list' });
  else if (options.allowedIssuers.length === 0)
    add.push({
      status: 'info',
      title: `iss is ${printable(iss)}`,
      detail: 'the node agent must list it in --allowed-issuer (and AWS must know it as an IAM OIDC provider); pass --allowed-issuer here to check it',
    });
  else if (options.allowedIssuers.includes(iss)) add.push({ status: 'ok', title: `iss ${printable(iss)} is allowed` });
  else
    add.push({
      status: 'fail',
      title: `iss ${printable(iss)} is not among --allowed-issuer`,
      detail: `allowed: ${options.allowedIssuers.map(printable).join(', ')}`,
      fix: "the agent refuses it: add the cluster's service-account issuer (kube-apiserver --service-account-issuer) to the agent's --allowed-issuer, exactly",
    });

  if (left <= 0)
    add.push({
      status: 'fail',
      title: `the token expired ${formatDuration(-left)} ago`,
      fix: 'the kubelet rewrites projected tokens at 80% of their life: a stale file means the volume is not a projected serviceAccountToken, the kubelet is not running, or this node’s clock is wrong (NTP)',
    });
  else if (left < TOKEN_LOW_LIFE_SECONDS)
    add.push({
      status: 'warn',
      title: `the token expires in ${formatDuration(left)}`,
      fix: 'the kubelet should have rotated it by now: check the kubelet and the volume',
    });
  else add.push({ status: 'ok', title: `the token is valid for ${formatDuration(left)} more` });
  for (const name of ['iat', 'nbf'] as const) {
    const at = claims[name];
    if (typeof at === 'number' && at - now > TOKEN_CLOCK_SKEW_MS / 1000)
      add.push({
        status: 'fail',
        title: `the token's ${name} is ${Math.round(at - now)} s in this node's future: the node agent refuses it`,
        fix: "this node's clock is behind the API server's: enable NTP (chrony, systemd-timesyncd)",
      });
  }

  const subject = sub ? SERVICE_ACCOUNT_SUBJECT.exec(sub) : null;
  if (!subject) {
    add.push({
      status: 'fail',
      title: `sub ${sub ? printable(sub).slice(0, 120) : '(none)'} is not system:serviceaccount:<namespace>:<name>: the node agent refuses it`,
      fix: "mount a projected ServiceAccount token (the webhook's crosscred-token volume)",
    });
    return token;
  }
  const identity = podIdentity(claims, subject[1]!, subject[2]!);
  if ('mismatch' in identity) {
    add.push({
      status: 'fail',
      title: `the token's kubernetes.io claim names ${printable(identity.mismatch)}, unlike its sub: the node agent refuses it`,
      fix: 'the token was not issued by the API server for this ServiceAccount',
    });
  } else if (identity.pod) {
    add.push({
      status: 'ok',
      title: `the token is bound to pod ${printable(identity.namespace)}/${printable(identity.pod.name)}`,
      detail: `the node agent names its STS session ${printable(podSessionName(identity))} (CloudTrail shows it)`,
    });
  } else {
    add.push({
      status: 'fail',
      title: 'the token is not bound to a pod (no kubernetes.io.pod claim): the node agent refuses it',
      detail: 'unless it runs with --allow-unbound-tokens',
      fix: 'use the projected serviceAccountToken volume the webhook adds, not a legacy Secret token or a TokenRequest without a pod boundObjectRef',
    });
  }
  return token;
}

/** The pod and ServiceAccount the token's kubernetes.io claim names, checked against its sub as the node agent does. */
function podIdentity(claims: Readonly<Record<string, unknown>>, namespace: string, serviceAccount: string): PodTokenIdentity | { mismatch: string } {
  const kubernetes = objectOrUndefined(claims['kubernetes.io']);
  const claimedNamespace = kubernetes?.['namespace'];
  if (claimedNamespace !== undefined && claimedNamespace !== namespace) return { mismatch: `namespace ${String(claimedNamespace).slice(0, 64)}` };
  const account = objectOrUndefined(kubernetes?.['serviceaccount']);
  if (account?.['name'] !== undefined && account['name'] !== serviceAccount) return { mismatch: `serviceaccount ${String(account['name']).slice(0, 64)}` };
  const pod = objectOrUndefined(kubernetes?.['pod']);
  const podName = pod?.['name'];
  const podUid = pod?.['uid'];
  return {
    namespace,
    serviceAccount: { name: serviceAccount },
    ...(typeof podName === 'string' && podName !== '' ? { pod: { name: podName, ...(typeof podUid === 'string' ? { uid: podUid } : {}) } } : {}),
  };
}

function objectOrUndefined(value: unknown): Record<string, unknown> | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

/** Part 3: a TCP connection, then the GET an SDK would send. */
async function checkAgent(uri: AgentUri, token: string | undefined, options: NodeAgentDoctorOptions): Promise<Check[]> {
  const checks: Check[] = [];
  const host = uri.url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(uri.url.port || (uri.url.protocol === 'https:' ? 443 : 80));
  const where = `${uri.url.hostname}:${port}`;
  const connected = await tcpConnect(host, port, options.agentTimeoutMs);
  if (connected !== true) {
    checks.push({
      status: 'fail',
      title: `cannot connect to ${where}: ${connected}`,
      fix: agentUnreachableFix(connected),
    });
    return checks;
  }
  checks.push({ status: 'ok', title: `TCP connection to ${where} opened` });
  if (token === undefined) {
    checks.push({ status: 'info', title: 'no GET sent: there is no usable token to send' });
    return checks;
  }
  const res = await get(uri.url, { authorization: token }, options.agentTimeoutMs);
  if ('error' in res) {
    checks.push({
      status: 'fail',
      title: `GET ${uri.url.pathname.length > 80 ? `${uri.url.pathname.slice(0, 80)}…` : uri.url.pathname} got no answer: ${res.error}`,
      fix: 'the agent accepts connections but does not answer: see its log (kubectl -n <namespace> logs <node-agent pod on this node>) and its /readyz',
    });
    return checks;
  }
  // Whatever the agent says is shown without anything token-shaped, the token itself included.
  const scrub = (text: string) => printable(redactSecrets(text.split(token).join('[token]'))).slice(0, MAX_SHOWN_CHARS);
  let body: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(res.body);
    body = parsed !== null && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    body = undefined;
  }
  if (res.status === 200) {
    const complete = body && ['AccessKeyId', 'SecretAccessKey', 'Token', 'Expiration'].every((k) => typeof body![k] === 'string' && body![k] !== '');
    if (!complete) {
      checks.push({
        status: 'fail',
        title: 'the node agent answered 200 without complete credentials',
        detail: 'AccessKeyId, SecretAccessKey, Token and Expiration are all required',
        fix: 'something other than the node agent may be answering at this address (a proxy?); NO_PROXY must list 169.254.170.23 and fd00:ec2::23',
      });
      return checks;
    }
    const expiration = String(body!['Expiration']);
    const left = Math.round((Date.parse(expiration) - options.clock.wallNow()) / 1000);
    checks.push({
      status: 'ok',
      title: `the node agent answered 200 with credentials for ${uri.roleArn} (not shown)`,
      detail: `they expire at ${printable(expiration).slice(0, 40)} (${Number.isFinite(left) ? formatDuration(left) : '?'} left)`,
    });
    if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(expiration))
      checks.push({ status: 'warn', title: `Expiration ${printable(expiration).slice(0, 40)} is not in the YYYY-MM-DDTHH:MM:SSZ form the JS SDK requires` });
    else if (Number.isFinite(left) && left < CREDENTIALS_LOW_LIFE_SECONDS)
      checks.push({
        status: 'warn',
        title: `the credentials have only ${formatDuration(left)} left`,
        fix: 'SDKs refetch credentials with less than 5–15 min left: expect a request per call; see the agent’s log for failed renewals',
      });
    return checks;
  }
  const code = body && typeof body['Code'] === 'string' ? scrub(body['Code']) : undefined;
  const message = body && typeof body['Message'] === 'string' ? scrub(body['Message']) : scrub(res.body);
  const retryAfter = res.retryAfter ? `; Retry-After ${printable(res.retryAfter).slice(0, 20)} s` : '';
  checks.push({
    status: 'fail',
    title: `the node agent answered HTTP ${res.status}${code ? ` ${code}` : ''}${retryAfter}`,
    ...(message ? { detail: message } : {}),
    fix: agentRefusalFix(res.status),
  });
  return checks;
}

function agentUnreachableFix(error: string): string {
  const common =
    'is the crosscred node-agent DaemonSet running on this node (kubectl get pods -A -o wide --field-selector spec.nodeName=<node>), and did its init container add 169.254.170.23 (and fd00:ec2::23)?';
  if (/ECONNREFUSED/.test(error)) return `nothing listens there: ${common}`;
  return `${common} A NetworkPolicy must allow egress to 169.254.170.23/32 port 80 (Cilium: toEntities host); an ENI-per-pod CNI may route the address off the node`;
}

function agentRefusalFix(status: number): string {
  if (status === 401 || status === 403)
    return "the agent or STS refused this pod's token: check the token checks above (aud, iss in the agent's --allowed-issuer, the pod binding), the agent's --allowed-role, and that the role's trust policy allows this sub for the cluster's IAM OIDC provider (crosscred trust-policy prints one)";
  if (status === 400 || status === 404 || status === 414) return 'the agent refused the URI: the path must be /v1/credentials/ followed by a valid role ARN';
  if (status === 503) return 'the agent is throttling this pod or cannot reach STS: SDKs retry after Retry-After; if it lasts, see the agent’s log and metrics';
  return 'see the node agent’s log on this node';
}

/** Part 4. */
async function checkImds(options: NodeAgentDoctorOptions): Promise<Check[]> {
  if ((options.env['AWS_EC2_METADATA_DISABLED'] ?? '').toLowerCase() === 'true')
    return [{ status: 'ok', title: 'AWS_EC2_METADATA_DISABLED=true: the SDKs never fall back to IMDS here' }];
  const configured = options.env['AWS_EC2_METADATA_SERVICE_ENDPOINT'];
  const base = (configured || (options.env[ENV.endpointMode] === 'IPv6' ? DEFAULT_IMDS_IPV6_URL : DEFAULT_IMDS_URL)).replace(/\/+$/, '');
  let baseUrl: URL;
  try {
    baseUrl = new URL(base);
  } catch {
    return [{ status: 'info', title: 'AWS_EC2_METADATA_SERVICE_ENDPOINT is not a URL: IMDS not checked' }];
  }
  const put = await get(new URL(`${base}/latest/api/token`), { 'x-aws-ec2-metadata-token-ttl-seconds': '60' }, options.imdsTimeoutMs, 'PUT');
  const session = 'status' in put && put.status === 200 && /^[\x21-\x7e]{1,200}$/.test(put.body) ? put.body : undefined;
  const listing = await get(
    new URL(`${base}/latest/meta-data/iam/security-credentials/`),
    session ? { 'x-aws-ec2-metadata-token': session } : {},
    options.imdsTimeoutMs,
  );
  if ('error' in put && 'error' in listing) {
    return [
      {
        status: 'ok',
        title: `the instance metadata service (IMDS) does not answer from this pod at ${baseUrl.host}`,
        detail: `${listing.error}: if the node agent fails, no SDK can fall back to the node's role`,
      },
    ];
  }
  const role = 'status' in listing && listing.status === 200 ? listing.body.trim().split('\n')[0]!.trim() : '';
  const steps = [
    `IMDSv2 session token: ${'status' in put ? `HTTP ${put.status}` : put.error}`,
    `role listing${session ? '' : ' (IMDSv1, no token)'}: ${'status' in listing ? `HTTP ${listing.status}` : listing.error}`,
  ].join('\n');
  if (/^[\w+=,.@-]{1,128}$/.test(role)) {
    return [
      {
        status: 'warn',
        title: `IMDS answers from this pod at ${baseUrl.host} and offers the node's role ${role}`,
        detail: `${steps}\na container the webhook missed (no FULL_URI: every SDK), or whose agent request fails in a chain that goes on to IMDS (Java SDK v2's), silently runs as the node's role (its credentials were not requested)`,
        fix: 'block 169.254.169.254 from pods (a NetworkPolicy egress rule or a node firewall rule), or require IMDSv2 with a hop limit of 1: aws ec2 modify-instance-metadata-options --instance-id <id> --http-tokens required --http-put-response-hop-limit 1',
      },
    ];
  }
  return [
    {
      status: 'info',
      title: `IMDS answers from this pod at ${baseUrl.host}, but offers it no role`,
      detail: steps,
    },
  ];
}

/** True, or why the connection failed. */
function tcpConnect(host: string, port: number, timeoutMs: number): Promise<true | string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, family: isIP(host) || undefined });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(`no connection within ${timeoutMs} ms`);
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(true);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code ?? err.message);
    });
  });
}

type Answer = { status: number; body: string; retryAfter?: string } | { error: string };

/** One request with one deadline for all of it; the answer's body bounded. Never follows redirects. */
function get(url: URL, headers: Record<string, string>, timeoutMs: number, method: 'GET' | 'PUT' = 'GET'): Promise<Answer> {
  return new Promise((resolve) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    let settled = false;
    const done = (a: Answer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(a);
    };
    const req = send(url, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) return done({ error: `answer larger than ${MAX_ANSWER_BYTES} bytes` });
        chunks.push(chunk);
      });
      res.on('end', () => {
        const retryAfter = res.headers['retry-after'];
        done({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), ...(retryAfter ? { retryAfter } : {}) });
      });
      res.on('error', (err: NodeJS.ErrnoException) => done({ error: err.code ?? err.message }));
    });
    const timer = setTimeout(() => done({ error: `no answer within ${timeoutMs} ms` }), timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => done({ error: err.code ?? err.message }));
    req.end();
  });
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function formatDuration(seconds: number): string {
  const s = Math.abs(Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h ? `${h} h ` : ''}${h || m ? `${m} min ` : ''}${s % 60} s`;
}

/** Text from the token, the environment or the agent: control characters shown as '?', so none can rewrite the screen. */
function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

const MARK: Record<CheckStatus, string> = { ok: '[ok]  ', warn: '[warn]', fail: '[FAIL]', info: '[info]' };

/** The report as a person reads it, in the layout of `crosscred doctor`. */
export function formatNodeAgentReport(report: NodeAgentReport): string {
  const out: string[] = [];
  for (const section of report.sections) {
    out.push(section.title);
    for (const c of section.checks) {
      out.push(`  ${MARK[c.status]} ${printable(c.title)}`);
      if (c.detail) for (const d of c.detail.split('\n')) out.push(`         ${printable(d)}`);
      if (c.fix) out.push(`         fix: ${printable(c.fix)}`);
    }
  }
  const all = report.sections.flatMap((s) => s.checks);
  const fails = all.filter((c) => c.status === 'fail').length;
  const warns = all.filter((c) => c.status === 'warn').length;
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  out.push(
    '',
    fails === 0
      ? `This pod can get its credentials from the node agent${warns ? `, with ${plural(warns, 'warning')}` : ''}.`
      : `This pod cannot get its credentials from the node agent: ${plural(fails, 'problem')}${warns ? ` and ${plural(warns, 'warning')}` : ''} above.`,
  );
  return `${out.join('\n')}\n`;
}

/** 0 when nothing failed (warnings included), 1 otherwise: as `crosscred doctor`. */
export function nodeAgentExitCode(report: NodeAgentReport): number {
  return report.sections.some((s) => s.checks.some((c) => c.status === 'fail')) ? 1 : 0;
}
