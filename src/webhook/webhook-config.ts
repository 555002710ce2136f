import { LOG_LEVELS, type LogLevel } from '../config/config.js';
import { deepFreeze } from '../core/deep-freeze.js';
import { CrosscredError } from '../core/errors.js';
import { type ListenAddress, parseListenSpec } from '../core/listen-address.js';
import { isAwsRegionName } from '../platform/aws/region.js';
import { SERVICE_ACCOUNT_MOUNT } from '../platform/kubernetes/in-cluster.js';
import { INJECTION_MODES, type InjectionMode } from '../protocol/pod-identity.js';

/** `crosscred webhook`'s settings, from its flags: validated once, then frozen. */
export interface WebhookConfig {
  readonly listen: ListenAddress;
  readonly adminListen: ListenAddress;
  readonly tls: { readonly certFile: string; readonly keyFile: string };
  readonly defaultMode: InjectionMode;
  readonly sidecarImage?: string;
  readonly region?: string;
  readonly ipFamily: 'ipv4' | 'ipv6';
  readonly kube: { readonly apiServer: string; readonly tokenFile: string; readonly caFile: string };
  readonly serviceAccountCacheSeconds: number;
  readonly logLevel: LogLevel;
}

/** The flags as parseArgs gives them. */
export type WebhookFlags = Readonly<Record<string, string | undefined>>;

/** The defaults the help text shows and the manifests are written against. */
export const WEBHOOK_DEFAULTS = {
  listen: '0.0.0.0:8443',
  adminListen: '0.0.0.0:8081',
  tlsCertFile: '/etc/crosscred/webhook-tls/tls.crt',
  tlsKeyFile: '/etc/crosscred/webhook-tls/tls.key',
  defaultMode: 'agent',
  ipFamily: 'ipv4',
  kubeTokenFile: `${SERVICE_ACCOUNT_MOUNT}/token`,
  kubeCaFile: `${SERVICE_ACCOUNT_MOUNT}/ca.crt`,
  serviceAccountCacheSeconds: 30,
  logLevel: 'info',
} as const;

/** A day: longer would keep a changed role annotation from pods for longer than anyone expects. */
const MAX_CACHE_SECONDS = 86_400;
/** An image reference: registry/path:tag or @digest, without spaces or control characters. */
const IMAGE = /^[\w][\w.\-/:@]{0,254}$/;

/**
 * The configuration from flags and the process environment (KUBERNETES_SERVICE_HOST/PORT, for the
 * API URL when --kube-api-url is not given). Every problem is collected and reported at once, each
 * naming its flag.
 */
export function resolveWebhookConfig(flags: WebhookFlags, env: Readonly<Record<string, string | undefined>>): WebhookConfig {
  const problems: string[] = [];
  const address = (flag: string, fallback: string): ListenAddress => {
    const parsed = parseListenSpec(flags[flag] ?? fallback);
    if (typeof parsed === 'string' || parsed.role !== undefined) {
      problems.push(`--${flag}: ${typeof parsed === 'string' ? parsed : 'takes no =ROLE'}`);
      return { host: '0.0.0.0', port: 0 };
    }
    return parsed.address;
  };
  const listen = address('listen', WEBHOOK_DEFAULTS.listen);
  const adminListen = address('admin-listen', WEBHOOK_DEFAULTS.adminListen);

  const mode = flags['default-mode'] ?? WEBHOOK_DEFAULTS.defaultMode;
  if (!(INJECTION_MODES as readonly string[]).includes(mode)) problems.push(`--default-mode: must be one of ${INJECTION_MODES.join(', ')}`);
  const ipFamily = flags['ip-family'] ?? WEBHOOK_DEFAULTS.ipFamily;
  if (ipFamily !== 'ipv4' && ipFamily !== 'ipv6') problems.push('--ip-family: must be ipv4 or ipv6');

  const sidecarImage = flags['sidecar-image'];
  if (sidecarImage !== undefined && !IMAGE.test(sidecarImage)) problems.push('--sidecar-image: is not an image reference');
  if (mode === 'sidecar' && sidecarImage === undefined) problems.push('--sidecar-image: is needed when --default-mode is sidecar');

  const region = flags['region'];
  if (region !== undefined && !isAwsRegionName(region)) problems.push('--region: is not an AWS region name such as eu-west-1');

  const cacheText = flags['service-account-cache-seconds'] ?? String(WEBHOOK_DEFAULTS.serviceAccountCacheSeconds);
  const cacheSeconds = /^\d{1,6}$/.test(cacheText) ? Number(cacheText) : Number.NaN;
  if (!(cacheSeconds <= MAX_CACHE_SECONDS)) problems.push(`--service-account-cache-seconds: must be a whole number from 0 to ${MAX_CACHE_SECONDS}`);

  // As for serve and the node agent: the flag, else CROSSCRED_LOG_LEVEL, else info.
  const level = flags['log-level'] ?? (env['CROSSCRED_LOG_LEVEL'] || undefined) ?? WEBHOOK_DEFAULTS.logLevel;
  if (!(LOG_LEVELS as readonly string[]).includes(level)) problems.push(`--log-level: must be one of ${LOG_LEVELS.join(', ')}`);

  let apiServer = flags['kube-api-url'];
  if (apiServer === undefined) {
    const host = env['KUBERNETES_SERVICE_HOST']?.trim();
    const port = env['KUBERNETES_SERVICE_PORT']?.trim();
    if (host && port && /^\d{1,5}$/.test(port)) apiServer = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
    else problems.push('--kube-api-url: not given, and KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set (outside a pod, pass the API server URL)');
  } else if (!/^https:\/\/[^\s/?#@]+(\/[^\s?#]*)?$/.test(apiServer)) {
    problems.push('--kube-api-url: must be a plain https:// URL');
  }

  const empty = ['tls-cert-file', 'tls-key-file', 'kube-token-file', 'kube-ca-file'].filter((f) => flags[f] === '');
  for (const flag of empty) problems.push(`--${flag}: must not be empty`);

  if (problems.length > 0) throw new CrosscredError('CONFIG_INVALID', problems.join('; '));
  return deepFreeze({
    listen,
    adminListen,
    tls: { certFile: flags['tls-cert-file'] ?? WEBHOOK_DEFAULTS.tlsCertFile, keyFile: flags['tls-key-file'] ?? WEBHOOK_DEFAULTS.tlsKeyFile },
    defaultMode: mode as InjectionMode,
    ...(sidecarImage !== undefined ? { sidecarImage } : {}),
    ...(region !== undefined ? { region } : {}),
    ipFamily: ipFamily as 'ipv4' | 'ipv6',
    kube: {
      apiServer: apiServer!,
      tokenFile: flags['kube-token-file'] ?? WEBHOOK_DEFAULTS.kubeTokenFile,
      caFile: flags['kube-ca-file'] ?? WEBHOOK_DEFAULTS.kubeCaFile,
    },
    serviceAccountCacheSeconds: cacheSeconds,
    logLevel: level as LogLevel,
  });
}
