import type { RandomSource } from '../core/clock.js';
import type { FailureKind } from '../exchange/failure.js';

/**
 * When to refresh and when to retry. Pure functions of the credentials' lifetime, the attempt
 * number and a random draw, so the schedule can be tested exhaustively.
 */

const MINUTE = 60_000;

/**
 * Remaining life we aim to keep on served credentials: botocore starts an advisory refresh at
 * 15 min left and a mandatory one at 10 min, the JS SDK treats < 5 min as expired. 20 min leaves
 * five minutes of room for STS to be slow or retried before any client notices.
 */
export const TARGET_REMAINING_MS = 20 * MINUTE;

/** Credentials closer than this to expiry are never served: they could expire before the client uses them. */
export const MIN_REMAINING_TO_SERVE_MS = 60_000;

/**
 * Lifetimes outside these bounds (judged by the shorter of this host's clock and STS's Date) mean
 * the host clock is far off, or the endpoint is not a real STS (which issues 15 min to 12 h). Too
 * short: nothing could be served and refreshing would spin; refused like a bad answer, with
 * backoff. Too long: scheduled as if it were 12 h, so a refresh still happens.
 */
export const MIN_LIFETIME_MS = 5 * MINUTE;
export const MAX_LIFETIME_MS = 12 * 60 * MINUTE;

/**
 * This host's clock and STS's (its Date header, whole seconds, plus the time the answer took)
 * agree to a few seconds when NTP works; beyond this, a warning says so with each refresh.
 */
export const CLOCK_SKEW_WARNING_MS = 30_000;

/** Longest delay a Node timer takes (2^31 - 1 ms, about 24.8 days); longer ones fire at once. */
export const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/** Refreshes are spread over up to this much (or 10% of the lifetime, if less) so a fleet started together does not refresh together. */
export const MAX_REFRESH_JITTER_MS = 5 * MINUTE;

/** Transient failures: first retry after about 1 s, doubling to at most 60 s. */
export const RETRY_BASE_MS = 1_000;
export const RETRY_CAP_MS = 60_000;

/** Terminal failures (trust policy, audience…) need a person; retry only every ~5 min, so the fix is picked up without a storm. */
export const TERMINAL_RETRY_MS = 5 * MINUTE;
/** …but while old credentials are still valid, try at least this often before they run out. */
export const TERMINAL_RETRY_MIN_MS = 30_000;

/**
 * Delay from receiving credentials with `lifetimeMs` of life until refreshing them.
 *
 * The remaining life kept at refresh time is min(80%, max(50%, 20 min)) of the lifetime: half of a
 * long session, 20 minutes of a medium one, 80% of a very short one (so even 15-minute sessions
 * are refreshed after 3 minutes, proportionally). Served credentials therefore keep at least
 * 15 minutes of life whenever STS issues sessions of 18¾ minutes or more and answers promptly.
 * Jitter only ever moves the refresh earlier.
 */
export function refreshDelayMs(lifetimeMs: number, random: RandomSource): number {
  const keep = Math.min(0.8 * lifetimeMs, Math.max(0.5 * lifetimeMs, TARGET_REMAINING_MS));
  const jitter = random() * Math.min(0.1 * lifetimeMs, MAX_REFRESH_JITTER_MS);
  return Math.max(0, lifetimeMs - keep - jitter);
}

/**
 * Delay before retry number `attempt` (1 for the first retry) after a failure of `kind`.
 * `remainingValidMs` is how long the last good credentials can still be served (0 if none).
 */
export function retryDelayMs(kind: FailureKind, attempt: number, remainingValidMs: number, random: RandomSource): number {
  if (kind === 'terminal') {
    const ceiling = remainingValidMs > 0 ? Math.max(TERMINAL_RETRY_MIN_MS, remainingValidMs / 2) : TERMINAL_RETRY_MS;
    const base = Math.min(TERMINAL_RETRY_MS, ceiling);
    return base * (0.8 + 0.2 * random());
  }
  // Exponential backoff with "equal jitter": half fixed, half random, so retries never bunch at 0.
  const exp = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** Math.min(30, Math.max(0, attempt - 1)));
  return exp / 2 + (exp / 2) * random();
}
