/**
 * Time and randomness, injected wherever refresh logic lives so tests can drive hours of
 * schedule in milliseconds (see test/support/fake-clock.ts).
 *
 * Two kinds of time: `wallNow()` is only for reading and writing timestamps that leave the process
 * (STS's Expiration, the `LastUpdated` field); `monotonicNow()` is for every decision about when to
 * refresh and whether cached credentials are still valid, so a wall-clock jump cannot make fresh
 * credentials look expired or trigger a refresh storm.
 */
export interface TimerHandle {
  /** Stop the timer from keeping the process alive. */
  unref?(): unknown;
}

export interface Clock {
  /** Milliseconds since the Unix epoch, as the host's wall clock says. */
  wallNow(): number;
  /** Milliseconds from an arbitrary origin, never going backwards. */
  monotonicNow(): number;
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** A number in [0, 1), like Math.random. */
export type RandomSource = () => number;

export const systemClock: Clock = {
  wallNow: () => Date.now(),
  monotonicNow: () => performance.now(),
  setTimeout: (callback, delayMs) => {
    const handle = setTimeout(callback, delayMs);
    handle.unref();
    return handle;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export const systemRandom: RandomSource = Math.random;
