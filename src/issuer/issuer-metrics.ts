import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { ErrorName } from '../core/errors.js';

/**
 * `crosscred issuer`'s Prometheus metrics. Label values come from fixed sets only: the kind
 * labels below (`unknown` for a type the issuer does not know), catalogue error names, route
 * templates and status codes. Nothing a client sends becomes a label.
 */
export const KIND_LABELS = ['alibaba-ecs-identity', 'alibaba-ram-role', 'tencent-cam-role', 'unknown'] as const;
export type KindLabel = (typeof KIND_LABELS)[number];

export class IssuerMetrics {
  readonly registry = new Registry();

  readonly #issued = new Counter({
    name: 'crosscred_issuer_tokens_issued_total',
    help: 'JWTs issued, by attestation kind.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly #refused = new Counter({
    name: 'crosscred_issuer_tokens_refused_total',
    help: 'Token requests refused, by attestation kind and reason (the error code without its CROSSCRED_ERR_ prefix).',
    labelNames: ['kind', 'reason'] as const,
    registers: [this.registry],
  });

  readonly #attestationSeconds = new Histogram({
    name: 'crosscred_issuer_attestation_duration_seconds',
    help: "Time taken to verify one attestation (including any call to the cloud's STS), by kind and outcome (ok, refused, unavailable).",
    labelNames: ['kind', 'outcome'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  readonly #requests = new Counter({
    name: 'crosscred_issuer_http_requests_total',
    help: 'Requests answered on the issuer listener, by route template and HTTP status.',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });

  constructor(gauges: {
    /** With `state: memory` only: the sizes of its tables (Redis is watched with its own INFO). */
    replayEntries?: () => number;
    rateLimitedIdentities?: () => number;
    attestationsInFlight: () => number;
    admissionClients: () => number;
    /** 1 while the shared state (state: redis://…) answers, 0 while it does not; 1 for the in-process default. */
    stateReady?: () => number;
    /** Connections closed on arrival because their address held its cap of TLS connections (a running total). */
    connectionsRefusedPerAddress?: () => number;
  }) {
    collectDefaultMetrics({ register: this.registry, prefix: 'crosscred_issuer_' });
    new Gauge({
      name: 'crosscred_issuer_state_ready',
      help: 'Whether the replay set and rate limits can be consulted: 0 while the shared state (Redis) does not answer, when kinds fail closed.',
      registers: [this.registry],
      collect() {
        this.set(gauges.stateReady?.() ?? 1);
      },
    });
    const { replayEntries, rateLimitedIdentities } = gauges;
    if (replayEntries) {
      new Gauge({
        name: 'crosscred_issuer_replay_set_entries',
        help: 'Attestations remembered to refuse a replay, with state: memory (bounded by replayCacheEntries).',
        registers: [this.registry],
        collect() {
          this.set(replayEntries());
        },
      });
    }
    if (rateLimitedIdentities) {
      new Gauge({
        name: 'crosscred_issuer_rate_limited_identities',
        help: 'Identities with a rate-limit bucket, with state: memory (bounded by rateLimit.maxIdentities).',
        registers: [this.registry],
        collect() {
          this.set(rateLimitedIdentities());
        },
      });
    }
    new Gauge({
      name: 'crosscred_issuer_attestations_in_flight',
      help: "Attestations being verified now, all kinds (each kind's pool is bounded; see docs/issuer.md).",
      registers: [this.registry],
      collect() {
        this.set(gauges.attestationsInFlight());
      },
    });
    const { connectionsRefusedPerAddress } = gauges;
    let counted = 0;
    new Counter({
      name: 'crosscred_issuer_connections_refused_per_address_total',
      help: 'Connections closed on arrival, unanswered, because their client address already held its cap of open TLS connections.',
      registers: [this.registry],
      collect() {
        // The listener keeps the running total; the counter catches up with it at each scrape.
        const total = connectionsRefusedPerAddress?.() ?? 0;
        if (total > counted) this.inc(total - counted);
        counted = Math.max(counted, total);
      },
    });
    new Gauge({
      name: 'crosscred_issuer_admission_clients',
      help: 'Client addresses with a token-request bucket (bounded by clientRateLimit.maxClients).',
      registers: [this.registry],
      collect() {
        this.set(gauges.admissionClients());
      },
    });
  }

  issued(kind: KindLabel): void {
    this.#issued.inc({ kind });
  }

  refused(kind: KindLabel, reason: ErrorName): void {
    this.#refused.inc({ kind, reason });
  }

  attested(kind: KindLabel, outcome: 'ok' | 'refused' | 'unavailable', seconds: number): void {
    this.#attestationSeconds.observe({ kind, outcome }, seconds);
  }

  requestAnswered(route: string, status: number): void {
    this.#requests.inc({ route, status: String(status) });
  }
}
