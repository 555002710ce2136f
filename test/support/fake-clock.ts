import type { Clock, TimerHandle } from '../../src/cache/clock.js';

interface PendingTimer extends TimerHandle {
  dueMono: number;
  seq: number;
  callback: () => void;
  cancelled: boolean;
}

/**
 * A clock whose time moves only when the test says so. `advance()` runs due timers in order,
 * letting promise callbacks settle between them so async refresh logic proceeds as it would live.
 */
export class FakeClock implements Clock {
  #wall: number;
  #mono = 1_000_000;
  #seq = 0;
  #timers: PendingTimer[] = [];

  constructor(wallStart = Date.UTC(2026, 10, 30, 12, 0, 0)) {
    this.#wall = wallStart;
  }

  wallNow(): number {
    return this.#wall;
  }

  monotonicNow(): number {
    return this.#mono;
  }

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    const timer: PendingTimer = {
      dueMono: this.#mono + Math.max(0, delayMs),
      seq: this.#seq++,
      callback,
      cancelled: false,
      unref: () => timer,
    };
    this.#timers.push(timer);
    return timer;
  }

  clearTimeout(handle: TimerHandle): void {
    (handle as PendingTimer).cancelled = true;
  }

  /** Timers still waiting to fire, for assertions about what is scheduled. */
  pendingDelays(): number[] {
    return this.#timers.filter((t) => !t.cancelled).map((t) => t.dueMono - this.#mono).sort((a, b) => a - b);
  }

  /** Moves both clocks forward by `ms`, firing every timer that falls due on the way. */
  async advance(ms: number): Promise<void> {
    const target = this.#mono + ms;
    for (;;) {
      await settle();
      const next = this.#nextDue(target);
      if (!next) break;
      this.#wall += next.dueMono - this.#mono;
      this.#mono = next.dueMono;
      next.cancelled = true;
      next.callback();
    }
    this.#wall += target - this.#mono;
    this.#mono = target;
    this.#timers = this.#timers.filter((t) => !t.cancelled);
    await settle();
  }

  /** Moves only the wall clock, as an NTP step or an operator's `date -s` would. */
  jumpWall(ms: number): void {
    this.#wall += ms;
  }

  #nextDue(limitMono: number): PendingTimer | undefined {
    let best: PendingTimer | undefined;
    for (const t of this.#timers) {
      if (t.cancelled || t.dueMono > limitMono) continue;
      if (!best || t.dueMono < best.dueMono || (t.dueMono === best.dueMono && t.seq < best.seq)) best = t;
    }
    return best;
  }
}

/** Lets every already-queued promise callback run (several turns, for chains of awaits). */
export async function settle(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
