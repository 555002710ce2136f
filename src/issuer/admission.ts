import { clientAddressKey } from '../core/client-address.js';
import { ATTESTATION_KINDS, type AttestationKind } from './policy.js';

/**
 * Admission: the checks a token request passes before the issuer does any work for it.
 *
 * - A token bucket per client address, taken when the request arrives (before its body is read,
 *   before any attestation). The address is the socket's remote address: no proxy header
 *   (X-Forwarded-For, Forwarded) is trusted, so behind a load balancer that does not preserve
 *   client addresses every client shares the balancer's bucket. IPv6 clients are keyed by their
 *   /64, since one host usually holds a whole /64. The map is bounded (least recently used
 *   address dropped first), so a flood of addresses costs a fixed amount of memory; a dropped
 *   address simply starts again with a full bucket.
 * - A concurrency pool per attestation kind, sized to what the kind waits on: the CPU-only kind
 *   (ECS PKCS#7) gets maxConcurrentAttestations, a kind that calls its cloud's STS gets at most
 *   as many slots as its attestor opens connections. A full pool refuses at once (503 with
 *   Retry-After) rather than queue, and one kind's pool never lends slots to another: forged
 *   requests that hold every Tencent slot while Tencent STS answers slowly leave ECS untouched.
 */

export interface ClientRateSettings {
  /** Token requests one client address may make at once. */
  readonly burst: number;
  /** Sustained token requests per second per client address. */
  readonly perSecond: number;
  /** Client addresses tracked at most; the least recently seen is forgotten first. */
  readonly maxClients: number;
}

/**
 * Generous for one address: a NAT gateway in front of a fleet of VMs shares it (10,000 VMs that
 * renew 4 times an hour make ~11 requests/s). It bounds a single forging client to 50
 * attestations per second.
 */
export const DEFAULT_CLIENT_RATE: ClientRateSettings = { burst: 100, perSecond: 50, maxClients: 10_000 };

export type ClientVerdict = { readonly admitted: true } | { readonly admitted: false; readonly retryAfterSeconds: number };

interface ClientBucket {
  tokens: number;
  /** Monotonic ms when `tokens` was last brought up to date. */
  at: number;
}

/** Per-address token buckets, bounded by an LRU (a Map iterates in insertion order; a hit re-inserts). */
export class ClientAdmission {
  readonly #buckets = new Map<string, ClientBucket>();
  readonly #refillPerMs: number;

  constructor(private readonly settings: ClientRateSettings = DEFAULT_CLIENT_RATE) {
    this.#refillPerMs = settings.perSecond / 1000;
  }

  get size(): number {
    return this.#buckets.size;
  }

  /** Takes one request from the bucket of `remoteAddress`, at monotonic time `nowMono` (ms). */
  admit(remoteAddress: string | undefined, nowMono: number): ClientVerdict {
    const key = clientAddressKey(remoteAddress);
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      bucket = { tokens: this.settings.burst, at: nowMono };
      while (this.#buckets.size >= this.settings.maxClients) this.#forgetOldest();
    } else {
      bucket.tokens = Math.min(this.settings.burst, bucket.tokens + Math.max(0, nowMono - bucket.at) * this.#refillPerMs);
      bucket.at = nowMono;
      this.#buckets.delete(key);
    }
    this.#buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { admitted: true };
    }
    return { admitted: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / this.#refillPerMs / 1000)) };
  }

  #forgetOldest(): void {
    const oldest = this.#buckets.keys().next();
    if (!oldest.done) this.#buckets.delete(oldest.value);
  }
}

/**
 * Connections each STS-calling attestor opens to one STS host (the `connections` of its undici
 * Agent in alibaba-ram-role.ts and tencent-cam-role.ts). More attestations in flight than this
 * would only wait in the Agent's queue while holding a slot.
 */
export const STS_CONNECTIONS_PER_ATTESTOR = 8;

/** Which kinds wait on a cloud's STS (network-bound) rather than on this host's CPU. */
const NETWORK_BOUND: Record<AttestationKind, boolean> = {
  alibabaEcsIdentity: false,
  alibabaRamRole: true,
  tencentCamRole: true,
};

/** The pool size of each kind for a configured maxConcurrentAttestations. */
export function poolSizes(maxConcurrentAttestations: number): Record<AttestationKind, number> {
  const network = Math.min(maxConcurrentAttestations, STS_CONNECTIONS_PER_ATTESTOR);
  return Object.fromEntries(ATTESTATION_KINDS.map((k) => [k, NETWORK_BOUND[k] ? network : maxConcurrentAttestations])) as Record<AttestationKind, number>;
}

/** One concurrency pool per attestation kind; a full pool refuses instead of queueing. */
export class AttestationPools {
  readonly #inFlight: Record<AttestationKind, number> = { alibabaEcsIdentity: 0, alibabaRamRole: 0, tencentCamRole: 0 };

  constructor(readonly sizes: Readonly<Record<AttestationKind, number>>) {}

  /** Attestations in flight now, all kinds together. */
  get inFlight(): number {
    return this.#inFlight.alibabaEcsIdentity + this.#inFlight.alibabaRamRole + this.#inFlight.tencentCamRole;
  }

  inFlightOf(kind: AttestationKind): number {
    return this.#inFlight[kind];
  }

  /** A slot of `kind`'s pool, with the function that gives it back (once), or undefined when the pool is full. */
  tryAcquire(kind: AttestationKind): (() => void) | undefined {
    if (this.#inFlight[kind] >= this.sizes[kind]) return undefined;
    this.#inFlight[kind]++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inFlight[kind]--;
    };
  }
}
