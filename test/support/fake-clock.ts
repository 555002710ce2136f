import type { Clock, TimerHandle } from '../../src/core/clock.js';

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
    return this.#timers
      .filter((t) => !t.cancelled)
      .map((t) => t.dueMono - this.#mono)
      .sort((a, b) => a - b);
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

  /**
   * Like advance(), for code whose timers start real I/O (an in-process daemon calling the STS
   * emulator over loopback): fires one due instant at a time, and after each waits in real time
   * until `busy()` is false, so an exchange on the wire completes at the fake instant it started
   * instead of being overtaken by fake time (and by its own deadline timer). `afterEach` runs once
   * the work of each fired instant has settled. Throws if work stays busy for `realTimeoutMs`.
   */
  async advanceSettling(ms: number, busy: () => boolean, options: { afterEach?: () => void | Promise<void>; realTimeoutMs?: number } = {}): Promise<void> {
    const target = this.#mono + ms;
    const idle = () => waitUntilIdle(busy, options.realTimeoutMs ?? 10_000);
    for (;;) {
      await idle();
      const next = this.#nextDue(target);
      if (!next) break;
      await this.advance(next.dueMono - this.#mono);
      await idle();
      await options.afterEach?.();
    }
    await this.advance(target - this.#mono);
    await idle();
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

async function waitUntilIdle(busy: () => boolean, realTimeoutMs: number): Promise<void> {
  const deadline = Date.now() + realTimeoutMs;
  while (busy()) {
    if (Date.now() > deadline) throw new Error(`still busy after ${realTimeoutMs} ms of real time (an exchange that never finishes?)`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  await settle();
}

/** Lets every already-queued promise callback run (several turns, for chains of awaits). */
export async function settle(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
