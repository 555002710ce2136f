import { isIPv6 } from 'node:net';

/**
 * The key one client is counted under, from a socket's remote address: an IPv4 address (IPv4-mapped
 * IPv6 ones included) as itself, an IPv6 address by its /64, since one host is usually given a
 * whole /64. The issuer's per-address token bucket and the listener's per-address connection cap
 * both count clients this way.
 */
export function clientAddressKey(remoteAddress: string | undefined): string {
  if (remoteAddress === undefined || remoteAddress === '') return 'unknown';
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(remoteAddress);
  if (mapped) return mapped[1]!;
  if (!isIPv6(remoteAddress)) return remoteAddress;
  return `${ipv6Groups(remoteAddress).slice(0, 4).join(':')}::/64`;
}

/**
 * The key one client address is counted under when every address is its own client: an IPv4
 * address (IPv4-mapped IPv6 ones included) as itself, an IPv6 address as its whole /128 in one
 * canonical spelling. The node agent counts this way: the pods of one node often share a /64, and
 * one of them must not use up its neighbours' allowance.
 */
export function exactClientAddressKey(remoteAddress: string | undefined): string {
  if (remoteAddress === undefined || remoteAddress === '') return 'unknown';
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(remoteAddress);
  if (mapped) return mapped[1]!;
  if (!isIPv6(remoteAddress)) return remoteAddress;
  return ipv6Groups(remoteAddress).join(':');
}

/** The eight 16-bit groups of an IPv6 address, each as lower-case hex without leading zeros. */
function ipv6Groups(address: string): string[] {
  const bare = address.split('%')[0]!.toLowerCase();
  const [head = '', tail] = bare.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const missing = Math.max(0, 8 - left.length - right.length);
  // An IPv4 tail (::ffff:a.b.c.d and the like) sits in the last 32 bits, outside the /64.
  return [...left, ...Array<string>(missing).fill('0'), ...right].map((g) => (g.includes('.') ? g : Number.parseInt(g, 16).toString(16)));
}
