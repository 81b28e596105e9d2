/**
 * Pacing of scheduling passes. A pass that reads the whole queue costs in proportion to the
 * pending jobs (every one is considered in queue order; most passes over a long queue of one user
 * and band read only part of it, scheduling_pass.ts), and each submit asks for one: during a burst
 * of submits into a large queue, passes back to back would make the burst quadratic (#20). So the next pass waits
 * as long as the last one took (at most {@linkcode MAX_PASS_DELAY}): passes then take at most
 * about half the controller's time, and the requests of the wait are served by one pass. Passes
 * under {@linkcode CHEAP_PASS} (any small cluster) are not delayed at all: the next runs on the
 * event loop's next turn (a zero-length `Clock.sleep`), which gathers the requests that came in
 * the same turn into one pass (a zero-delay timer, ~2 ms in Deno, held every batch of a worker
 * back as long: #20). A submit that finds the scheduler idle (see {@linkcode SchedulePacer.idle})
 * does not wait for it: it is placed at once, in its own commit (job_requests.ts).
 * @module
 */
import { type Clock, type Duration, ms, seconds } from "../time.ts";

/** A pass shorter than this runs the next one at once. */
export const CHEAP_PASS: Duration = ms(1);
/** The longest wait before a pass, however long the last one took. */
export const MAX_PASS_DELAY: Duration = seconds(1);
/** The scheduler counts as busy this long after the start of a pass that placed something. */
export const BUSY_WINDOW: Duration = ms(2);

/** Times passes and says how long to wait before the next one. */
export class SchedulePacer {
  readonly #clock: Clock;
  #last = 0;
  /** Monotonic end of the last pass. */
  #endedAt = -Infinity;
  /** Monotonic start of the last pass that placed something. */
  #placedAt = -Infinity;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /**
   * Runs a pass and notes how long it took (the clock's monotonic time) and, by `placed`,
   * whether it placed anything (default: no).
   */
  time<T>(pass: () => T, placed: (result: T) => boolean = () => false): T {
    const t0 = this.#clock.monotonic();
    let ran = false;
    let result: T | undefined;
    try {
      result = pass();
      ran = true;
      return result;
    } finally {
      this.#endedAt = this.#clock.monotonic();
      this.#last = this.#endedAt - t0;
      if (ran && placed(result as T)) this.#placedAt = t0;
    }
  }

  /** How long to wait before the next pass. */
  delay(): Duration {
    return this.#last < CHEAP_PASS ? ms(0) : ms(Math.min(this.#last, MAX_PASS_DELAY));
  }

  /**
   * Whether a pass may run now without a wait: none placed anything in the last
   * {@linkcode BUSY_WINDOW} (a burst is under way: its requests are gathered), and the last one
   * was cheap or ended at least as long ago as it took.
   */
  idle(): boolean {
    const now = this.#clock.monotonic();
    if (now - this.#placedAt < BUSY_WINDOW) return false;
    return this.#last < CHEAP_PASS || now - this.#endedAt >= Math.min(this.#last, MAX_PASS_DELAY);
  }
}
