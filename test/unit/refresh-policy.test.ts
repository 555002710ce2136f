import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MAX_REFRESH_JITTER_MS,
  RETRY_BASE_MS,
  RETRY_CAP_MS,
  refreshDelayMs,
  retryDelayMs,
  TERMINAL_RETRY_MIN_MS,
  TERMINAL_RETRY_MS,
} from '../../src/cache/refresh-policy.js';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/** A random source that always draws `value`. */
const fixed = (value: number) => () => value;

describe('refreshDelayMs', () => {
  // keep = min(80%, max(50%, 20 min)) of the lifetime; jitter = r * min(10% of lifetime, 5 min);
  // delay = lifetime - keep - jitter.
  const cases = [
    // 15 min: keep 80% = 12 min, jitter span 90 s.
    { label: '15-minute', lifetime: 15 * MINUTE, r0: 3 * MINUTE, rHalf: 135 * SECOND, rMax: 3 * MINUTE - 0.999 * 90 * SECOND },
    // 1 h: keep 50% = 30 min, jitter span 5 min.
    { label: '1-hour', lifetime: HOUR, r0: 30 * MINUTE, rHalf: 27.5 * MINUTE, rMax: 30 * MINUTE - 0.999 * 5 * MINUTE },
    // 12 h: keep 50% = 6 h, jitter span 5 min.
    { label: '12-hour', lifetime: 12 * HOUR, r0: 6 * HOUR, rHalf: 6 * HOUR - 150 * SECOND, rMax: 6 * HOUR - 0.999 * 5 * MINUTE },
  ];

  for (const { label, lifetime, r0, rHalf, rMax } of cases) {
    it(`refreshes ${label} credentials at the formula's delay for draws 0, 0.5 and 0.999`, () => {
      expect(refreshDelayMs(lifetime, fixed(0))).toBeCloseTo(r0, 6);
      expect(refreshDelayMs(lifetime, fixed(0.5))).toBeCloseTo(rHalf, 6);
      expect(refreshDelayMs(lifetime, fixed(0.999))).toBeCloseTo(rMax, 6);
    });
  }

  it('only ever moves the refresh earlier, by at most min(10% of the lifetime, 5 min)', () => {
    fc.assert(
      fc.property(fc.double({ min: 1 * MINUTE, max: 12 * HOUR, noNaN: true }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (lifetime, r) => {
        const unjittered = refreshDelayMs(lifetime, fixed(0));
        const jittered = refreshDelayMs(lifetime, fixed(r));
        const bound = Math.min(0.1 * lifetime, MAX_REFRESH_JITTER_MS);
        expect(jittered).toBeLessThanOrEqual(unjittered);
        expect(unjittered - jittered).toBeLessThanOrEqual(bound + 1e-6);
        expect(jittered).toBeGreaterThanOrEqual(0);
      }),
    );
  });

  it('keeps at least 15 minutes of life at refresh time for every lifetime from 18¾ minutes to 12 hours', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 18.75 * MINUTE, max: 12 * HOUR, noNaN: true }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (lifetime, r) => {
          const remainingAtRefresh = lifetime - refreshDelayMs(lifetime, fixed(r));
          expect(remainingAtRefresh).toBeGreaterThanOrEqual(15 * MINUTE - 1e-6);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('keeps exactly 15 minutes at the 18¾-minute boundary with no jitter', () => {
    expect(18.75 * MINUTE - refreshDelayMs(18.75 * MINUTE, fixed(0))).toBeCloseTo(15 * MINUTE, 6);
  });
});

describe('retryDelayMs for retryable failures', () => {
  it('starts at about one second: between half of RETRY_BASE_MS and RETRY_BASE_MS', () => {
    expect(retryDelayMs('retryable', 1, 0, fixed(0))).toBe(RETRY_BASE_MS / 2);
    expect(retryDelayMs('retryable', 1, 0, fixed(0.999))).toBeCloseTo(RETRY_BASE_MS * 0.9995, 6);
  });

  it('doubles with every attempt until the 60 s cap, with equal-jitter bounds [exp/2, exp)', () => {
    const expected = [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000];
    expected.forEach((exp, i) => {
      const attempt = i + 1;
      expect(retryDelayMs('retryable', attempt, 0, fixed(0))).toBe(exp / 2);
      expect(retryDelayMs('retryable', attempt, 0, fixed(0.5))).toBe(exp * 0.75);
      expect(retryDelayMs('retryable', attempt, 0, fixed(0.999))).toBeLessThan(exp);
    });
  });

  it('never exceeds the cap or falls below half of it, even after very many attempts', () => {
    fc.assert(
      fc.property(fc.integer({ min: 7, max: 1_000_000 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, r) => {
        const delay = retryDelayMs('retryable', attempt, 0, fixed(r));
        expect(delay).toBeGreaterThanOrEqual(RETRY_CAP_MS / 2);
        // <= rather than <: 30 000 + 30 000 * (1 - 2^-53) rounds to 60 000 in floating point.
        expect(delay).toBeLessThanOrEqual(RETRY_CAP_MS);
        expect(Number.isFinite(delay)).toBe(true);
      }),
    );
  });

  it('treats token-expired like retryable (exponential backoff)', () => {
    expect(retryDelayMs('token-expired', 3, 0, fixed(0.5))).toBe(3_000);
  });

  it('does not depend on how long the old credentials remain valid', () => {
    expect(retryDelayMs('retryable', 2, 10 * MINUTE, fixed(0.5))).toBe(retryDelayMs('retryable', 2, 0, fixed(0.5)));
  });
});

describe('retryDelayMs for terminal failures', () => {
  it('waits about 5 minutes (80–100% of TERMINAL_RETRY_MS) when nothing valid is held', () => {
    expect(retryDelayMs('terminal', 1, 0, fixed(0))).toBe(0.8 * TERMINAL_RETRY_MS);
    expect(retryDelayMs('terminal', 1, 0, fixed(0.5))).toBe(0.9 * TERMINAL_RETRY_MS);
    expect(retryDelayMs('terminal', 1, 0, fixed(0.999))).toBeLessThan(TERMINAL_RETRY_MS);
  });

  it('does not back off further with more attempts: a fix is picked up within ~5 minutes', () => {
    expect(retryDelayMs('terminal', 50, 0, fixed(0.5))).toBe(retryDelayMs('terminal', 1, 0, fixed(0.5)));
  });

  it('retries sooner while credentials remain valid: at most max(30 s, remaining / 2)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 * HOUR }),
        fc.integer({ min: 1, max: 100 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (remaining, attempt, r) => {
          const delay = retryDelayMs('terminal', attempt, remaining, fixed(r));
          expect(delay).toBeLessThanOrEqual(Math.max(TERMINAL_RETRY_MIN_MS, remaining / 2));
          expect(delay).toBeLessThanOrEqual(TERMINAL_RETRY_MS);
          // Never a storm: at least 80% of 30 s apart.
          expect(delay).toBeGreaterThanOrEqual(0.8 * TERMINAL_RETRY_MIN_MS);
        },
      ),
    );
  });

  it('uses half the remaining validity when that is between 30 s and 5 min', () => {
    expect(retryDelayMs('terminal', 1, 4 * MINUTE, fixed(0))).toBe(0.8 * 2 * MINUTE);
    expect(retryDelayMs('terminal', 1, 4 * MINUTE, fixed(0.5))).toBe(0.9 * 2 * MINUTE);
  });

  it('uses 30 s when less than a minute of validity remains', () => {
    expect(retryDelayMs('terminal', 1, 20 * SECOND, fixed(0.5))).toBe(0.9 * TERMINAL_RETRY_MIN_MS);
  });

  it('uses the 5-minute pace when plenty of validity remains', () => {
    expect(retryDelayMs('terminal', 1, 2 * HOUR, fixed(0.5))).toBe(0.9 * TERMINAL_RETRY_MS);
  });
});
