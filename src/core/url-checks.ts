import { isIP } from 'node:net';

/** Host and URL checks shared by every product: one copy of each, so they cannot drift apart. */

/**
 * True for `localhost`, 127.0.0.0/8 and ::1 in any spelling (`0:0:0:0:0:0:0:1`, `[::1]`, upper
 * case, and the IPv4-mapped `::ffff:127.x.y.z`): the hosts only this machine reaches.
 */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (bare === 'localhost') return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  if (isIP(bare) !== 6) return false;
  // The URL parser writes every IPv6 address in its one canonical form (RFC 5952).
  const canonical = new URL(`http://[${bare}]/`).hostname;
  return canonical === '[::1]' || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(canonical);
}

/** Alibaba Cloud's ECS metadata address, fixed in its SDKs. */
const ALIBABA_METADATA_ADDRESS = '100.100.100.200';

/**
 * Addresses only this host can reach: loopback, link-local (169.254.169.254 and 169.254.170.2 on a
 * local interface, as on EC2 and ECS), Alibaba's metadata address 100.100.100.200 (which every
 * ECS instance's VPC answers itself, so it is never routed to another host), and the IPv6 IMDS and
 * Pod Identity addresses. Anything else, wildcards included, would hand credentials to other machines.
 */
export function isHostLocalAddress(host: string): boolean {
  const h = host.toLowerCase();
  if (isLoopbackHost(h)) return true;
  if (isIP(h) === 4) return h.startsWith('169.254.') || h === ALIBABA_METADATA_ADDRESS;
  // fe80::/10: a first group of four hex digits from fe80 to febf. `fe8::1` is 0fe8::1, not link-local.
  if (isIP(h) === 6) return /^fe[89ab][0-9a-f]:/.test(h) || h === 'fd00:ec2::254' || h === 'fd00:ec2::23';
  return false;
}

/**
 * What AWS IAM requires of an OIDC provider URL, or undefined when `url` meets it: https, no port,
 * no query or fragment, no user info, no trailing slash (the JWT's `iss` must equal the provider
 * URL byte for byte, and `…/` and `…` are different providers). Plain http, with a port, is
 * accepted for loopback hosts only: for tests and the STS emulator, never for AWS.
 */
export function issuerUrlProblem(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'is not a URL';
  }
  const loopbackHttp = parsed.protocol === 'http:' && isLoopbackHost(parsed.hostname);
  if (parsed.protocol !== 'https:' && !loopbackHttp) return 'must start with https:// (AWS IAM accepts nothing else; http is allowed for loopback tests only)';
  if (parsed.username || parsed.password) return 'must not hold a user name or password';
  if (parsed.search || url.includes('?')) return 'must not have a query (AWS IAM refuses one)';
  if (parsed.hash || url.includes('#')) return 'must not have a fragment';
  if (parsed.port && !loopbackHttp) return 'must not name a port (AWS IAM refuses one): serve it on 443';
  if (url.endsWith('/')) return 'must not end with "/" (write https://host or https://host/path)';
  // The URL must already be in the form URL parsing produces, or `iss` and the provider URL differ.
  if (parsed.href !== url && `${parsed.href.replace(/\/$/, '')}` !== url) return `is not in canonical form; write ${parsed.href.replace(/\/$/, '')}`;
  return undefined;
}

/** A token endpoint URL's problem, or undefined: https (or http to loopback), no query or fragment. */
export function endpointUrlProblem(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'is not a URL';
  }
  if (parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && isLoopbackHost(parsed.hostname)))
    return 'must start with https:// (http for loopback only)';
  if (parsed.username || parsed.password || parsed.search || parsed.hash) return 'must not hold a user name, password, query or fragment';
  return undefined;
}
