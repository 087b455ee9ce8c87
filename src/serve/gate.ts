// Admission control. A Gate is a weighted semaphore with a bounded wait list: past the bound, callers are
// refused at once (503) rather than queued, and a waiter gives up at its deadline. The server uses one for
// body bytes (weight = the body's declared length, taken before the body is read, so memory is bounded by the
// budget and not by the number of clients) and one for tagging (weight 1, capacity = concurrency).
import { ClipDecoderError } from '../errors.ts';

interface Waiter {
  weight: number;
  grant: () => void;
}

export class Gate {
  private used = 0;
  private readonly waiting: Waiter[] = [];

  /**
   * @param capacity total weight held at once
   * @param queue most callers waiting; more are refused
   * @param what names the resource and its flag in errors ("tagging slots (--concurrency 2)")
   */
  constructor(
    private readonly capacity: number,
    private readonly queue: number,
    private readonly what: string,
  ) {}

  get load(): { used: number; waiting: number } {
    return { used: this.used, waiting: this.waiting.length };
  }

  /**
   * Resolves with a release function once `weight` is held. Throws OVERLOADED when the wait list is full and
   * TIMEOUT when `deadline` (a performance.now() time) passes first; a waiter whose `signal` aborts (its client
   * left) leaves the list at once. A weight over the capacity is clamped.
   */
  async acquire(weight: number, deadline: number, signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) throw new ClipDecoderError('BAD_REQUEST', 'the client closed the connection');
    const w = Math.min(Math.max(1, weight), this.capacity);
    if (this.waiting.length === 0 && this.used + w <= this.capacity) {
      this.used += w;
      return this.releaser(w);
    }
    if (this.waiting.length >= this.queue) {
      throw new ClipDecoderError('OVERLOADED', `the server is busy (${this.what}, ${this.queue} waiting); retry shortly`, this.what);
    }
    return new Promise((resolve, reject) => {
      const leave = (error: ClipDecoderError) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) this.waiting.splice(i, 1);
        this.drain();
        reject(error);
      };
      const onAbort = () => leave(new ClipDecoderError('BAD_REQUEST', 'the client closed the connection'));
      const waiter: Waiter = {
        weight: w,
        grant: () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve(this.releaser(w));
        },
      };
      const timer = setTimeout(
        () =>
          leave(
            new ClipDecoderError(
              'TIMEOUT',
              `the server is busy: no ${this.what} free before the request's deadline; retry shortly`,
              this.what,
            ),
          ),
        Math.max(0, deadline - performance.now()),
      );
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  private releaser(w: number): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.used -= w;
      this.drain();
    };
  }

  // First come, first served: a large waiter at the head is not overtaken (no starvation of big uploads).
  private drain(): void {
    while (this.waiting.length > 0 && this.used + this.waiting[0]!.weight <= this.capacity) {
      const next = this.waiting.shift()!;
      this.used += next.weight;
      next.grant();
    }
  }
}
