import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { ListenAddress } from '../core/listen-address.js';

/** Distinct raw Host values whose verdict is remembered. */
const MAX_REMEMBERED_VERDICTS = 64;

/**
 * Which Host header values a credential listener accepts. A DNS-rebinding attack makes a browser
 * send the attacker's own host name to our address; refusing every Host that is not one of our
 * addresses or a configured name stops it. Requests without a Host (HTTP/1.0) are accepted: no
 * browser sends one without it.
 */
export class HostGuard {
  readonly #allowed: ReadonlySet<string>;

  constructor(listen: ListenAddress, extraNames: readonly string[]) {
    const allowed = new Set<string>(extraNames.map((n) => n.toLowerCase().replace(/^\[|\]$/g, '')));
    const wildcard = listen.host === '0.0.0.0' || listen.host === '::';
    const hosts = wildcard ? localAddresses() : [listen.host.toLowerCase()];
    for (const h of hosts) allowed.add(h);
    if (wildcard || hosts.some(isLoopback)) allowed.add('localhost');
    // Listening on the name localhost binds the loopback address; clients may use either spelling.
    if (hosts.includes('localhost')) for (const ip of ['127.0.0.1', '::1']) allowed.add(ip);
    this.#allowed = allowed;
  }

  /**
   * Verdicts by raw header value: clients send the same Host on every request, so the hot path is
   * one lookup. Bounded: a client cycling through made-up names only ever costs a cleared map.
   */
  readonly #verdicts = new Map<string, boolean>();

  allows(hostHeader: string | undefined): boolean {
    if (hostHeader === undefined) return true;
    let verdict = this.#verdicts.get(hostHeader);
    if (verdict === undefined) {
      verdict = this.#allowed.has(hostOnly(hostHeader));
      if (this.#verdicts.size >= MAX_REMEMBERED_VERDICTS) this.#verdicts.clear();
      this.#verdicts.set(hostHeader, verdict);
    }
    return verdict;
  }
}

/** The host part of a Host header, lower-cased, without port or IPv6 brackets. */
export function hostOnly(header: string): string {
  const h = header.toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end > 0 ? h.slice(1, end) : h;
  }
  const colon = h.indexOf(':');
  return colon >= 0 && h.indexOf(':', colon + 1) < 0 ? h.slice(0, colon) : h;
}

function localAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) out.push(a.address.toLowerCase().replace(/%.*$/, ''));
  return out;
}

function isLoopback(host: string): boolean {
  return (isIP(host) === 4 && host.startsWith('127.')) || host === '::1' || host === 'localhost';
}
