import { isAbsolute } from 'node:path';
import type { CloudName } from '../core/clouds.js';
import { ErrorCodes } from '../core/errors.js';
import { inClusterDefaults, podFromEnv } from '../platform/kubernetes/in-cluster.js';
import { checkEndpoint, choiceProblem, outOfRange, problem, rangeWords, readPemBundle } from './checks.js';
import type { IssuerConnection, TokenSourceChoice } from './config.js';
import { type DetectionInputs, detectTokenSource, type InClusterFacts, type SourceKind } from './detect-token-source.js';
import { cloudDefault, defaultOf, type Env, type Layers, pickSetting, type Resolved, type Sourced, valueOrDefault } from './layers.js';

/**
 * The token-source section: the settings every role's token detection shares (command time
 * limit, TokenRequest lifetime, crosscred issuer, Alibaba attestation, cloud STS endpoint), and the
 * top-level token settings roles inherit, checked once here where they are set.
 */
export interface TokenSettings {
  readonly commandTimeoutMs: number;
  /** --token-command-env: variable names the command gets beyond PATH and HOME. */
  readonly commandEnv: readonly string[];
  readonly expirationSeconds: number;
  /** `--issuer-url` and its companions; the audience is each role's own. */
  readonly issuer?: Sourced<Omit<IssuerConnection, 'audience'>>;
  readonly alibabaAttestation: 'ecs-identity' | 'ram-role';
  readonly cloudStsEndpoint?: string;
  readonly serviceAccountDir: string;
}

/** What one role says about its token: its own settings, or those it inherits. */
export interface RoleToken {
  readonly tokenSource?: Sourced<string>;
  readonly tokenFile?: Sourced<string>;
  readonly tokenCommand?: Sourced<readonly string[]>;
  readonly tokenAudience?: Sourced<string>;
  /** The cloud of the role: its default audience, and which platform's token file is looked for first. */
  readonly cloud?: CloudName;
}

export function resolveTokenSource(layers: Layers, readText: (path: string) => string): Resolved<TokenSettings> {
  const kindProblems = checkTopLevelTokenSettings(layers);
  const issuer = resolveIssuer(layers, readText);
  const attestation = pickSetting('alibabaAttestation', layers);
  const attestationProblem = attestation && choiceProblem('alibabaAttestation', attestation.value);
  const cloudSts = resolveCloudStsEndpoint(layers);
  return {
    value: {
      commandTimeoutMs: valueOrDefault('tokenCommandTimeoutMs', pickSetting('tokenCommandTimeoutMs', layers)),
      commandEnv: valueOrDefault('tokenCommandEnv', pickSetting('tokenCommandEnv', layers)),
      expirationSeconds: valueOrDefault('tokenExpirationSeconds', pickSetting('tokenExpirationSeconds', layers)),
      ...(issuer.value ? { issuer: issuer.value } : {}),
      alibabaAttestation: attestation?.value === 'ram-role' ? 'ram-role' : 'ecs-identity',
      ...(cloudSts.value ? { cloudStsEndpoint: cloudSts.value } : {}),
      serviceAccountDir: valueOrDefault('kubernetesServiceAccountDir', pickSetting('kubernetesServiceAccountDir', layers)),
    },
    problems: [
      ...kindProblems,
      ...issuer.problems,
      ...(attestationProblem ? [problem('alibaba-attestation', attestation.origin, attestationProblem)] : []),
      ...cloudSts.problems,
    ],
  };
}

/** A portable environment variable name (POSIX: letters, digits, underscore; no leading digit). */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,255}$/;

/** The kind, command, command time limit, passed variables, audience and TokenRequest lifetime, as set at the top level. */
function checkTopLevelTokenSettings(layers: Layers): string[] {
  const problems: string[] = [];
  const kind = pickSetting('tokenSource', layers);
  const badKind = kind && choiceProblem('tokenSource', kind.value);
  if (badKind) problems.push(problem('token-source', kind.origin, badKind));
  const command = pickSetting('tokenCommand', layers);
  // An unusable --token-command parses to an empty list (see parseCommandFlag).
  if (command && command.value.length === 0) {
    problems.push(problem('token-command', command.origin, 'must name a program: a path, or a JSON array ["program", "arg", …]'));
  }
  const timeout = pickSetting('tokenCommandTimeoutMs', layers);
  if (timeout && outOfRange('tokenCommandTimeoutMs', timeout.value)) {
    problems.push(problem('token-command-timeout-ms', timeout.origin, rangeWords('tokenCommandTimeoutMs')));
  }
  const passEnv = pickSetting('tokenCommandEnv', layers);
  const badName = passEnv?.value.find((name) => !ENV_NAME.test(name));
  if (passEnv && badName !== undefined) {
    const words = `must be environment variable names (letters, digits and _, not starting with a digit); got ${JSON.stringify(badName.slice(0, 64))}`;
    problems.push(problem('token-command-env', passEnv.origin, words));
  }
  const audience = pickSetting('tokenAudience', layers);
  if (audience && !/^[\x21-\x7e]{1,256}$/.test(audience.value)) {
    problems.push(problem('token-audience', audience.origin, 'must be 1-256 printable characters without spaces'));
  }
  const expiration = pickSetting('tokenExpirationSeconds', layers);
  if (expiration && outOfRange('tokenExpirationSeconds', expiration.value)) {
    problems.push(problem('token-expiration-seconds', expiration.origin, rangeWords('tokenExpirationSeconds')));
  }
  return problems;
}

/** crosscred issuer, for VMs without an OIDC token (the alibaba-ecs and tencent-cvm sources). */
function resolveIssuer(layers: Layers, readText: (path: string) => string): Resolved<TokenSettings['issuer']> {
  const problems: string[] = [];
  const url = pickSetting('issuerUrl', layers);
  const urlProblem = url && checkEndpoint(url.value);
  if (urlProblem) problems.push(problem('issuer-url', url.origin, urlProblem));
  const tokenEndpoint = pickSetting('issuerTokenEndpoint', layers);
  const endpointProblem = tokenEndpoint && checkEndpoint(tokenEndpoint.value);
  if (endpointProblem) problems.push(problem('issuer-token-endpoint', tokenEndpoint.origin, endpointProblem));
  const caPath = pickSetting('issuerCaBundle', layers);
  const ca = caPath && readPemBundle(caPath, readText);
  if (ca && 'problem' in ca) problems.push(problem('issuer-ca-bundle', caPath.origin, ca.problem));
  const secretFile = pickSetting('instanceSecretFile', layers);
  if (secretFile && !isAbsolute(secretFile.value)) problems.push(problem('instance-secret-file', secretFile.origin, 'must be an absolute path'));
  if (!url) return { value: undefined, problems };
  const connection = {
    url: url.value,
    ...(secretFile ? { instanceSecretFile: secretFile.value } : {}),
    ...(tokenEndpoint ? { tokenEndpointUrl: tokenEndpoint.value } : {}),
    ...(caPath && ca && 'pem' in ca ? { caBundlePath: caPath.value, caBundle: ca.pem } : {}),
  };
  return { value: { value: connection, origin: url.origin }, problems };
}

/** The Alibaba or Tencent STS endpoint a signed GetCallerIdentity is made for: a bare origin. */
function resolveCloudStsEndpoint(layers: Layers): Resolved<string | undefined> {
  const endpoint = pickSetting('cloudStsEndpoint', layers);
  if (!endpoint) return { value: undefined, problems: [] };
  const bad = checkEndpoint(endpoint.value);
  if (bad) return { value: endpoint.value, problems: [problem('cloud-sts-endpoint', endpoint.origin, bad)] };
  if (!/^https?:\/\/[^/?#@]+\/?$/.test(endpoint.value)) {
    const words = 'must be just a scheme and host, such as https://sts.cn-hangzhou.aliyuncs.com (no path, query or user)';
    return { value: endpoint.value, problems: [problem('cloud-sts-endpoint', endpoint.origin, words)] };
  }
  return { value: endpoint.value, problems: [] };
}

/**
 * The in-cluster facts, read at most once and only when a role's detection gets to Kubernetes.
 * The mounted files are read with the in-cluster module's own bounded reader, unless a test injects one.
 */
export function inClusterReader(env: Env, serviceAccountDir: string, injectedReadText?: (path: string) => string): () => InClusterFacts {
  const readIfPresent =
    injectedReadText &&
    ((path: string): string | undefined => {
      try {
        return injectedReadText(path);
      } catch {
        return undefined;
      }
    });
  let facts: InClusterFacts | undefined;
  return () => (facts ??= inClusterDefaults(env, readIfPresent, serviceAccountDir));
}

/** Finds one role's token source: the choice, or a problem line naming the role's field. */
export type RoleTokenDetector = (token: RoleToken) => TokenSourceChoice | { readonly problem: string };

/** A detector for every role, sharing the token settings, the environment and the in-cluster facts. */
export function roleTokenDetector(settings: TokenSettings, env: Env, inCluster: () => InClusterFacts): RoleTokenDetector {
  const pod = podFromEnv(env);
  return (token) => {
    const detected = detectTokenSource(detectionInputs(settings, token, { env, inCluster, ...(pod ? { pod } : {}) }));
    if (!('problem' in detected)) return detected;
    return { problem: `${detected.problem} (${ErrorCodes.TOKEN_SOURCE_NOT_FOUND.hint})` };
  };
}

type DetectionContext = Pick<DetectionInputs, 'env' | 'inCluster' | 'pod'>;

function detectionInputs(settings: TokenSettings, token: RoleToken, context: DetectionContext): DetectionInputs {
  const cloud = token.cloud ?? 'aws';
  const audience = token.tokenAudience?.value ?? cloudDefault('tokenAudience', cloud);
  const kind = token.tokenSource?.value ?? defaultOf('tokenSource');
  return {
    // An unknown kind is reported by checkTopLevelTokenSettings; detection then treats it as auto.
    kind: { value: kind as SourceKind, origin: token.tokenSource?.origin ?? `the default (${defaultOf('tokenSource')})` },
    ...(token.tokenFile ? { tokenFile: { value: token.tokenFile.value.trim(), origin: token.tokenFile.origin } } : {}),
    ...(token.tokenCommand ? { tokenCommand: token.tokenCommand } : {}),
    cloud,
    commandTimeoutMs: settings.commandTimeoutMs,
    commandEnv: settings.commandEnv,
    audience,
    expirationSeconds: settings.expirationSeconds,
    ...context,
    ...(settings.issuer ? { issuer: { value: { ...settings.issuer.value, audience }, origin: settings.issuer.origin } } : {}),
    alibabaAttestation: settings.alibabaAttestation,
    ...(settings.cloudStsEndpoint ? { cloudStsEndpoint: settings.cloudStsEndpoint } : {}),
  };
}
