import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

/** How an admission ended: the `result` label. A fixed set, never anything from the request. */
export const ADMISSION_RESULTS = ['mutated', 'unchanged', 'ignored', 'denied', 'unavailable', 'invalid', 'busy', 'error'] as const;
export type AdmissionResult = (typeof ADMISSION_RESULTS)[number];

/** The webhook's Prometheus metrics. */
export class WebhookMetrics {
  readonly registry = new Registry();

  readonly #admissions = new Counter({
    name: 'crosscred_webhook_admissions_total',
    help: 'AdmissionReviews answered, by result: mutated, unchanged (allowed as is), ignored (not a Pod CREATE), denied, unavailable (the Kubernetes API could not say; denied), invalid (not a well-formed review: 400, 404, 405, 408, 411, 413, 415), busy (503: too many at once, or stopping), error (500).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly #seconds = new Histogram({
    name: 'crosscred_webhook_admission_seconds',
    help: 'Time from a complete AdmissionReview body to its answer, ServiceAccount lookup included.',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  readonly #lookups = new Counter({
    name: 'crosscred_webhook_service_account_lookups_total',
    help: 'ServiceAccount lookups, by source: cache, or live (a GET to the Kubernetes API).',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'crosscred_' });
    // Every label value exists from the start, so a rate() has a series before the first event.
    for (const result of ADMISSION_RESULTS) this.#admissions.labels(result);
    for (const source of ['cache', 'live']) this.#lookups.labels(source);
  }

  admitted(result: AdmissionResult, seconds: number | undefined): void {
    this.#admissions.inc({ result });
    if (seconds !== undefined) this.#seconds.observe(seconds);
  }

  serviceAccountLookup(source: 'cache' | 'live'): void {
    this.#lookups.inc({ source });
  }
}
