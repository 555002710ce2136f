import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { ExchangeObserver, RoleStatus } from '../cache/role-credential-cache.js';
import type { ClassifiedFailure } from '../exchange/failure.js';

/**
 * crosscred's Prometheus metrics. Label values are only route templates, status codes, role names
 * from the configuration and STS error codes: never a path a client sent, a header or a secret,
 * so neither cardinality nor secrets can be driven by a client.
 */
export class Metrics implements ExchangeObserver {
  readonly registry = new Registry();

  readonly #requests = new Counter({
    name: 'crosscred_http_requests_total',
    help: 'Requests answered on the credential listeners, by route template and HTTP status.',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });

  readonly #stsCalls = new Counter({
    name: 'crosscred_sts_calls_total',
    help: 'AssumeRoleWithWebIdentity exchanges by role and outcome (success, or the failure code).',
    labelNames: ['role', 'outcome', 'code'] as const,
    registers: [this.registry],
  });

  readonly #exchangeSeconds = new Histogram({
    name: 'crosscred_refresh_duration_seconds',
    help: 'Time taken by one credential exchange (token read plus STS call), by role.',
    labelNames: ['role'] as const,
    buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  /** Pre-bound counters per route and status: no label-set hashing on the hot path. */
  readonly #requestChildren = new Map<string, Map<number, { inc(): void }>>();

  constructor(roleStatuses: () => readonly RoleStatus[]) {
    collectDefaultMetrics({ register: this.registry, prefix: 'crosscred_' });
    // Gauges computed at scrape time from the caches' status: nothing to keep in step.
    new Gauge({
      name: 'crosscred_credentials_expiry_seconds',
      help: 'Seconds until the served credentials of each role expire; absent while a role has none.',
      labelNames: ['role'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of roleStatuses()) if (s.expiresInSeconds !== null) this.set({ role: s.role }, s.expiresInSeconds);
      },
    });
    new Gauge({
      name: 'crosscred_role_ready',
      help: '1 when the role has valid credentials to serve, else 0.',
      labelNames: ['role'] as const,
      registers: [this.registry],
      collect() {
        for (const s of roleStatuses()) this.set({ role: s.role }, s.ready ? 1 : 0);
      },
    });
  }

  requestAnswered(route: string, status: number): void {
    let byStatus = this.#requestChildren.get(route);
    if (!byStatus) {
      byStatus = new Map();
      this.#requestChildren.set(route, byStatus);
    }
    let child = byStatus.get(status);
    if (!child) {
      child = this.#requests.labels(route, String(status));
      byStatus.set(status, child);
    }
    child.inc();
  }

  exchangeSucceeded(role: string, durationSeconds: number): void {
    this.#stsCalls.inc({ role, outcome: 'success', code: '' });
    this.#exchangeSeconds.observe({ role }, durationSeconds);
  }

  exchangeFailed(role: string, failure: ClassifiedFailure, durationSeconds: number): void {
    this.#stsCalls.inc({ role, outcome: failure.kind, code: failure.code });
    this.#exchangeSeconds.observe({ role }, durationSeconds);
  }
}
