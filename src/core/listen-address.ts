import { isIP } from 'node:net';

/** Where a listener binds: an IP address or host name, and a TCP port. */
export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/**
 * Parses `HOST:PORT`, `[IPv6]:PORT`, each optionally followed by `=ROLE`. Returns an error string
 * (not an exception) so the caller can name the field it came from.
 */
export function parseListenSpec(spec: string): { address: ListenAddress; role?: string } | string {
  const eq = spec.indexOf('=');
  const addressPart = eq >= 0 ? spec.slice(0, eq) : spec;
  const role = eq >= 0 ? spec.slice(eq + 1) : undefined;
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(addressPart);
  if (!match) return `"${spec}" is not HOST:PORT or [IPv6]:PORT`;
  const host = (match[1] ?? match[2])!;
  const port = Number(match[3]);
  if (port > 65535) return `port ${port} is out of range`;
  if (match[1] !== undefined && isIP(host) !== 6) return `"${host}" is not an IPv6 address`;
  if (match[2] !== undefined && isIP(host) === 0 && !/^[A-Za-z0-9.-]{1,253}$/.test(host)) return `"${host}" is not an IP address or host name`;
  if (role !== undefined && role.length === 0) return `"${spec}" has an empty role after "="`;
  return role === undefined ? { address: { host, port } } : { address: { host, port }, role };
}

/** `host:port`, bracketing IPv6. */
export function formatAddress(a: ListenAddress): string {
  return isIP(a.host) === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
