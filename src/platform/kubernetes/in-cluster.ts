import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';

/** Where the kubelet mounts a pod's ServiceAccount credentials (token, ca.crt, namespace). */
export const SERVICE_ACCOUNT_MOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';

/** What a pod needs to call the API server as its own ServiceAccount, found the way client-go's InClusterConfig finds it. */
export interface InClusterDefaults {
  /** `https://host:port`, IPv6 hosts in brackets. */
  readonly apiServer: string;
  readonly caFile: string;
  readonly serviceAccountTokenFile: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** What was looked for and not found (variable names, file paths, or a sentence), for `doctor` and start-up errors. */
export interface InClusterMissing {
  readonly missing: string[];
}

/** Reads a small text file; `undefined` when it is absent or unreadable. */
export type ReadText = (path: string) => string | undefined;

/** The mounted files are tiny; this bounds what a wrong path costs. */
const MAX_MOUNTED_FILE_BYTES = 64 * 1024;

/** A namespace is a DNS label (RFC 1123). */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** A ServiceAccount name is a DNS subdomain (RFC 1123). */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const SA_SUBJECT = /^system:serviceaccount:([^:]+):([^:]+)$/;

/**
 * The in-cluster API server address and ServiceAccount credentials, from KUBERNETES_SERVICE_HOST /
 * KUBERNETES_SERVICE_PORT and the mounted `token`, `ca.crt` and `namespace` under `mountDir`.
 * The ServiceAccount name is read from the mounted token's claims (decoded, not verified: it only
 * names whom to ask for; the API server checks the token itself). Pure apart from `readText`.
 */
export function inClusterDefaults(
  env: Readonly<Record<string, string | undefined>>,
  readText: ReadText = readSmallTextFile,
  mountDir: string = SERVICE_ACCOUNT_MOUNT,
): InClusterDefaults | InClusterMissing {
  const missing: string[] = [];
  const host = env['KUBERNETES_SERVICE_HOST']?.trim() ?? '';
  const port = env['KUBERNETES_SERVICE_PORT']?.trim() ?? '';
  if (!host) missing.push('KUBERNETES_SERVICE_HOST');
  else if (/[\s/?#@]/.test(host)) missing.push(`KUBERNETES_SERVICE_HOST (${JSON.stringify(host.slice(0, 64))} is not a host name or IP address)`);
  if (!port) missing.push('KUBERNETES_SERVICE_PORT');
  else if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)
    missing.push(`KUBERNETES_SERVICE_PORT (${JSON.stringify(port.slice(0, 16))} is not a port number)`);

  const tokenFile = join(mountDir, 'token');
  const caFile = join(mountDir, 'ca.crt');
  const namespaceFile = join(mountDir, 'namespace');

  const token = readText(tokenFile)?.trim();
  const claims = token ? serviceAccountFromToken(token) : undefined;
  if (!token) missing.push(tokenFile);
  if (!readText(caFile)?.trim()) missing.push(caFile);

  const namespaceText = readText(namespaceFile)?.trim();
  // The namespace file is the convention; the token names the same namespace when the file is absent.
  const namespace = namespaceText || claims?.namespace;
  if (!namespace) missing.push(namespaceFile);
  else if (!DNS_LABEL.test(namespace) || namespace.length > 63)
    missing.push(`${namespaceFile} (${JSON.stringify(namespace.slice(0, 64))} is not a namespace name)`);

  const serviceAccount = claims?.name;
  if (token && !serviceAccount)
    missing.push(
      `the ServiceAccount name (the token at ${tokenFile} has no "sub" of the form system:serviceaccount:<namespace>:<name> nor a "kubernetes.io" serviceaccount claim)`,
    );
  else if (serviceAccount && (!DNS_SUBDOMAIN.test(serviceAccount) || serviceAccount.length > 253))
    missing.push(`the ServiceAccount name (${JSON.stringify(serviceAccount.slice(0, 64))} in the token at ${tokenFile} is not a valid name)`);

  if (missing.length > 0) return { missing };
  return {
    apiServer: `https://${bracketIpv6(host)}:${Number(port)}`,
    caFile,
    serviceAccountTokenFile: tokenFile,
    namespace: namespace!,
    serviceAccount: serviceAccount!,
  };
}

/** The pod to bind a TokenRequest to, from the downward API's POD_NAME and POD_UID; both or nothing. */
export function podFromEnv(env: Readonly<Record<string, string | undefined>>): { name: string; uid: string } | undefined {
  const name = env['POD_NAME']?.trim();
  const uid = env['POD_UID']?.trim();
  return name && uid ? { name, uid } : undefined;
}

/**
 * The ServiceAccount a Kubernetes-issued token belongs to, from its payload: `sub`
 * (`system:serviceaccount:<ns>:<name>`), else the bound-token claim `kubernetes.io.serviceaccount.name`,
 * else the legacy secret-based token claim `kubernetes.io/serviceaccount/service-account.name`.
 */
export function serviceAccountFromToken(token: string): { namespace?: string; name?: string } | undefined {
  const payload = decodePayload(token);
  if (!payload) return undefined;
  const result: { namespace?: string; name?: string } = {};
  const sub = typeof payload['sub'] === 'string' ? SA_SUBJECT.exec(payload['sub']) : null;
  if (sub) {
    result.namespace = sub[1]!;
    result.name = sub[2]!;
    return result;
  }
  const kube = payload['kubernetes.io'];
  if (isObject(kube)) {
    if (typeof kube['namespace'] === 'string' && kube['namespace']) result.namespace = kube['namespace'];
    const sa = kube['serviceaccount'];
    if (isObject(sa) && typeof sa['name'] === 'string' && sa['name']) result.name = sa['name'];
  }
  const legacyName = payload['kubernetes.io/serviceaccount/service-account.name'];
  const legacyNamespace = payload['kubernetes.io/serviceaccount/namespace'];
  if (result.name === undefined && typeof legacyName === 'string' && legacyName) result.name = legacyName;
  if (result.namespace === undefined && typeof legacyNamespace === 'string' && legacyNamespace) result.namespace = legacyNamespace;
  return result;
}

function decodePayload(token: string): Record<string, unknown> | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || !/^[A-Za-z0-9_-]+$/.test(parts[1]!)) return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
    return isObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function bracketIpv6(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/** Reads at most 64 KiB of a file synchronously (detection runs once at start-up); `undefined` on any error or when larger. */
function readSmallTextFile(path: string): string | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const buffer = Buffer.alloc(MAX_MOUNTED_FILE_BYTES + 1);
    let filled = 0;
    while (filled < buffer.length) {
      const n = readSync(fd, buffer, filled, buffer.length - filled, null);
      if (n === 0) break;
      filled += n;
    }
    return filled > MAX_MOUNTED_FILE_BYTES ? undefined : buffer.subarray(0, filled).toString('utf8');
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
