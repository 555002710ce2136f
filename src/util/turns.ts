/**
 * A fair queue of `size` turns: take() waits (in order) for a free turn, give() hands it on. Used
 * to bound the STS requests in flight per STS client, at two levels: the cache takes a turn
 * before an exchange's deadline starts, the transport before a request's timeouts start.
 */
export class Turns {
  #free: number;
  readonly #waiting: Array<() => void> = [];

  constructor(size: number) {
    this.#free = size;
  }

  /** Resolves once a turn is held; rejects (and leaves the queue) if `signal` aborts first. */
  take(signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortError());
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = this.#waiting.indexOf(granted);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(abortError());
      };
      const granted = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.#waiting.push(granted);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  give(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free++;
  }
}

function abortError(): Error {
  return Object.assign(new Error('abandoned while waiting for its turn'), { name: 'AbortError' });
}
