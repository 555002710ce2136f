import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { ExchangeObserver } from '../cache/role-credential-cache.js';
import type { EvictionCause } from '../cache/token-keyed-credential-cache.js';
import type { ClassifiedFailure } from '../exchange/failure.js';

/** What the gauges are read from at scrape time. */
export interface CacheGauges {
  readonly size: number;
  readonly bytes: number;
}

/**
 * The node agent's Prometheus metrics. Label values come from fixed sets only (refusal reasons,
 * failure kinds, eviction causes): never a role ARN, a namespace or pod, a token or anything a
 * client sent, so a pod can drive neither cardinality nor secrets into them.
 */
export class NodeAgentMetrics implements ExchangeObserver {
  readonly registry = new Registry();

  readonly #podsServed = new Counter({
    name: 'crosscred_node_agent_pods_served_total',
    help: 'Distinct (role, token) pairs that were given credentials: a new entry each.',
    registers: [this.registry],
  });

  readonly #stsCalls = new Counter({
    name: 'crosscred_node_agent_sts_calls_total',
    help: 'AssumeRoleWithWebIdentity calls by outcome: success, terminal, retryable or token-expired.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly #refusals = new Counter({
    name: 'crosscred_node_agent_refusals_total',
    help: 'Requests answered without credentials, by reason (token checks, role ARN, allow-list, throttling, STS refusals).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly #evictions = new Counter({
    name: 'crosscred_node_agent_evictions_total',
    help: 'Entries dropped from the cache: idle (unread for --idle-seconds), size (--max-entries or --max-cache-bytes), token_expired.',
    labelNames: ['cause'] as const,
    registers: [this.registry],
  });

  /** Pre-bound children: no label hashing on the refusal path. */
  readonly #refusalChildren = new Map<string, { inc(): void }>();

  constructor(cache: () => CacheGauges) {
    collectDefaultMetrics({ register: this.registry, prefix: 'crosscred_' });
    new Gauge({
      name: 'crosscred_node_agent_entries',
      help: 'Entries in the token-keyed credential cache.',
      registers: [this.registry],
      collect() {
        this.set(cache().size);
      },
    });
    new Gauge({
      name: 'crosscred_node_agent_cache_bytes',
      help: 'Estimated bytes held by the cache entries (tokens, credentials, overhead).',
      registers: [this.registry],
      collect() {
        this.set(cache().bytes);
      },
    });
    // Zero-valued series from the start, so dashboards and alerts see them before the first event.
    for (const outcome of ['success', 'terminal', 'retryable', 'token-expired']) this.#stsCalls.labels(outcome).inc(0);
    for (const cause of ['idle', 'size', 'token_expired']) this.#evictions.labels(cause).inc(0);
  }

  podServed(): void {
    this.#podsServed.inc();
  }

  refused(reason: string): void {
    let child = this.#refusalChildren.get(reason);
    if (child === undefined) {
      child = this.#refusals.labels(reason);
      this.#refusalChildren.set(reason, child);
    }
    child.inc();
  }

  evicted(cause: EvictionCause): void {
    this.#evictions.inc({ cause });
  }

  exchangeSucceeded(): void {
    this.#stsCalls.inc({ outcome: 'success' });
  }

  exchangeFailed(_role: string, failure: ClassifiedFailure): void {
    this.#stsCalls.inc({ outcome: failure.kind });
  }
}
