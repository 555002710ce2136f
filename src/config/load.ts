import { readFileSync } from 'node:fs';
import { deepFreeze } from '../core/deep-freeze.js';
import { CrosscredError } from '../core/errors.js';
import type { Config } from './config.js';
import { configInvalid, readConfigText } from './config-file.js';
import { type FileConfig, parseConfigFileText } from './file-schema.js';
import { cloudDefault, defaultOf, type Env, type Layers, pickSetting, type Sourced } from './layers.js';
import { resolveListeners } from './resolve-listeners.js';
import { resolveLogging } from './resolve-logging.js';
import { resolveProxies } from './resolve-proxies.js';
import { resolveRoles } from './resolve-roles.js';
import { resolveStsConnection } from './resolve-sts.js';
import { inClusterReader, resolveTokenSource, roleTokenDetector } from './resolve-token-source.js';
import type { ServeFlags } from './settings.js';

/**
 * Builds the one frozen Config from three layers: command-line flags, the config file (--config or
 * CROSSCRED_CONFIG; YAML or JSON; the only way to name several roles), and the environment
 * variables AWS SDKs read for web identity (so an IRSA-style pod works unchanged). Which layer wins
 * for each setting, and its default, is the table in settings.ts; each section has its resolver
 * (resolve-*.ts). Every value is checked once; all problems are reported together, each naming
 * the setting and where it came from.
 */

export type { ServeFlags } from './settings.js';

export interface LoadInputs {
  readonly flags: ServeFlags;
  readonly env: Env;
  /** Injected for tests; defaults to reading the file system. */
  readonly readText?: (path: string) => string;
  readonly hostname?: string;
}

/** Default audience of tokens requested from Kubernetes for an AWS role: the one AWS IRSA uses. */
export const DEFAULT_TOKEN_AUDIENCE: string = cloudDefault('tokenAudience', 'aws');
/** Default lifetime asked of a Kubernetes TokenRequest (the kubelet's default for projected tokens). */
export const DEFAULT_TOKEN_EXPIRATION_SECONDS: number = defaultOf('tokenExpirationSeconds');
export const DEFAULT_TOKEN_COMMAND_TIMEOUT_MS: number = defaultOf('tokenCommandTimeoutMs');

export function loadConfig(inputs: LoadInputs): Config {
  const readText = inputs.readText ?? ((path: string) => readFileSync(path, 'utf8'));
  const layers = readLayers(inputs.flags, inputs.env, readText);
  const token = resolveTokenSource(layers, readText);
  const inCluster = inClusterReader(layers.env, token.value.serviceAccountDir, inputs.readText);
  const detectToken = roleTokenDetector(token.value, layers.env, inCluster);
  const roles = resolveRoles(layers, { detectToken, hostname: inputs.hostname });
  const serving = resolveListeners(layers, roles.value);
  const logLevel = resolveLogging(layers);
  const sts = resolveStsConnection(layers, readText);
  const proxies = resolveProxies(layers);

  // Sections in this order keep the problems in the order one function used to find them.
  const problems = [token, roles, serving, logLevel, sts, proxies].flatMap((section) => section.problems);
  if (problems.length > 0) throw configInvalid('invalid configuration', problems);
  return deepFreeze<Config>({
    roles: roles.value,
    ...serving.value,
    sts: { ...sts.value, ...proxies.value },
    logLevel: logLevel.value,
  });
}

/** Flags, environment, and the config file they name (read and checked here, before anything else). */
function readLayers(flags: ServeFlags, env: Env, readText: (path: string) => string): Layers {
  const configPath = pickSetting('config', { flags, env, file: {}, fileOrigin: 'config file' });
  if (!configPath) return { flags, env, file: {}, fileOrigin: 'config file' };
  return { flags, env, file: readConfigFile(configPath, readText), fileOrigin: `config file ${configPath.value}` };
}

function readConfigFile(path: Sourced<string>, readText: (p: string) => string): FileConfig {
  const text = readConfigText(path.value, readText, (code) => `cannot read config file ${path.value} (${code}; from ${path.origin})`);
  const result = parseConfigFileText(text);
  if ('syntaxError' in result) throw new CrosscredError('CONFIG_INVALID', `config file ${path.value} is not valid YAML or JSON: ${result.syntaxError}`);
  if ('problems' in result) throw configInvalid(`config file ${path.value}`, result.problems);
  return result.data;
}
