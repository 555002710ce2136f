import { formatAddress, type ListenAddress, parseListenSpec } from '../core/listen-address.js';
import { isHostLocalAddress, isLoopbackHost } from '../core/url-checks.js';
import { clip, problem } from './checks.js';
import type { Config, ListenerConfig, RoleConfig } from './config.js';
import { defaultOf, type Layers, pickSetting, type Resolved, valueOrDefault } from './layers.js';

/**
 * The listeners section: the credential listeners and the role each serves, the admin listener,
 * the container endpoint's secret, the IMDS options and the Host allow-list.
 */
export type ListenerSettings = Pick<Config, 'listeners' | 'admin' | 'authTokenFile' | 'allowImdsV1' | 'imdsEnabled' | 'allowedHosts'>;

export function resolveListeners(layers: Layers, roles: readonly RoleConfig[]): Resolved<ListenerSettings> {
  const listeners = credentialListeners(layers, roles);
  const admin = adminListener(layers);
  const secret = containerSecret(layers);
  // With IMDS off, what is left: the container endpoint (it needs the secret), or an Alibaba role's
  // credentials URI, open on a loopback listener without one.
  const cloudOf = (name: string) => roles.find((r) => r.name === name)?.cloud;
  const openAlibabaUri = listeners.value.some((l) => cloudOf(l.role) === 'alibaba' && isLoopbackHost(l.host));
  const imds = imdsOptions(layers, secret.value !== undefined || openAlibabaUri);
  const hosts = hostAllowList(layers);
  return {
    value: {
      listeners: listeners.value,
      admin: admin.value,
      ...(secret.value !== undefined ? { authTokenFile: secret.value } : {}),
      ...imds.value,
      allowedHosts: hosts.value,
    },
    problems: [...listeners.problems, ...admin.problems, ...secret.problems, ...imds.problems, ...hosts.problems],
  };
}

/** A listener as written, with where it was written. */
interface ListenSpec {
  readonly spec: string;
  readonly role?: string;
  readonly origin: string;
}

function listenSpecs(layers: Layers): ListenSpec[] {
  const set = pickSetting('listen', layers);
  if (!set) return defaultOf('listen').map((spec) => ({ spec: spec as string, origin: 'default' }));
  return set.value.map((l) =>
    typeof l === 'string' ? { spec: l, origin: set.origin } : { spec: l.address, ...(l.role ? { role: l.role } : {}), origin: set.origin },
  );
}

/** Each listener names the role its IMDS serves: by `=ROLE`, its `role` key, or as the only role. */
export function credentialListeners(layers: Layers, roles: readonly RoleConfig[]): Resolved<ListenerConfig[]> {
  const allowRemote = valueOrDefault('allowRemote', pickSetting('allowRemote', layers));
  const listeners: ListenerConfig[] = [];
  const problems: string[] = [];
  const seenAddresses = new Set<string>();
  for (const l of listenSpecs(layers)) {
    const parsed = parseListenSpec(l.spec);
    if (typeof parsed === 'string') {
      problems.push(problem('listen', l.origin, parsed));
      continue;
    }
    const address = formatAddress(parsed.address);
    const roleName = l.role ?? parsed.role ?? (roles.length === 1 ? roles[0]!.name : undefined);
    const roleProblem = listenerRoleProblem(address, roleName, roles);
    if (roleProblem) problems.push(problem('listen', l.origin, roleProblem));
    if (!allowRemote && !isHostLocalAddress(parsed.address.host)) {
      const words =
        "can be reached from other machines, which would get this host's AWS credentials; listen on loopback or a link-local address, " +
        'or pass --allow-remote if that is intended';
      problems.push(problem('listen', l.origin, `${address} ${words}`));
    }
    // Port 0 asks for any free port: two of them never clash.
    if (parsed.address.port !== 0 && seenAddresses.has(address)) problems.push(problem('listen', l.origin, `${address} is listed twice`));
    seenAddresses.add(address);
    listeners.push({ ...parsed.address, role: roleName ?? '' });
  }
  return { value: listeners, problems };
}

function listenerRoleProblem(address: string, roleName: string | undefined, roles: readonly RoleConfig[]): string | undefined {
  if (!roleName) return `${address} serves no role: with several roles, write ADDRESS=ROLE`;
  if (roles.some((r) => r.name === roleName)) return undefined;
  return `${address} names role "${clip(roleName)}", which is not configured (roles: ${roles.map((r) => r.name).join(', ')})`;
}

/** Health, readiness and metrics; "off" for none. */
export function adminListener(layers: Layers): Resolved<ListenAddress | null> {
  const set = pickSetting('adminListen', layers);
  const spec = set?.value ?? defaultOf('adminListen');
  if (spec === 'off') return { value: null, problems: [] };
  const parsed = parseListenSpec(spec);
  if (typeof parsed !== 'string' && parsed.role === undefined) return { value: parsed.address, problems: [] };
  // Only a set value can be wrong: the default parses.
  const words = typeof parsed === 'string' ? `${parsed}, or "off"` : 'takes no role';
  return { value: null, problems: [problem('admin-listen', set!.origin, words)] };
}

/** The container endpoint's secret file; without it the endpoint is off. A blank path is set, and refused. */
export function containerSecret(layers: Layers): Resolved<string | undefined> {
  const file = pickSetting('authTokenFile', layers);
  if (!file) return { value: undefined, problems: [] };
  const path = file.value.trim();
  return { value: path, problems: path === '' ? [problem('auth-token-file', file.origin, 'is empty')] : [] };
}

/** IMDSv1, and IMDS at all: without it only the secret-guarded container endpoint is left. */
export function imdsOptions(layers: Layers, servesWithoutImds: boolean): Resolved<Pick<Config, 'allowImdsV1' | 'imdsEnabled'>> {
  const allowImdsV1 = valueOrDefault('allowImdsV1', pickSetting('allowImdsV1', layers));
  const disable = pickSetting('disableImds', layers);
  const problems: string[] = [];
  // A sidecar whose pod neighbours must not read credentials without the secret.
  if (disable?.value === true) {
    const words = "leaves nothing to serve without --auth-token-file (the container endpoint), or an Alibaba role's credentials URI on a loopback listener";
    if (!servesWithoutImds) problems.push(problem('disable-imds', disable.origin, words));
    if (allowImdsV1) problems.push(problem('disable-imds', disable.origin, 'contradicts --allow-imdsv1'));
  }
  return { value: { allowImdsV1, imdsEnabled: disable?.value !== true }, problems };
}

/** Host header values accepted besides the listen addresses (the DNS-rebinding guard), lower-cased. */
export function hostAllowList(layers: Layers): Resolved<string[]> {
  const set = pickSetting('allowedHosts', layers);
  const hosts: string[] = [];
  const problems: string[] = [];
  for (const h of set?.value ?? defaultOf('allowedHosts')) {
    if (!/^[A-Za-z0-9.-]{1,253}$|^\[[0-9A-Fa-f:.]+\]$/.test(h)) problems.push(problem('allowed-host', set!.origin, `"${clip(h)}" is not a host name`));
    else hosts.push(h.toLowerCase());
  }
  return { value: hosts, problems };
}
