/**
 * Pacing of scheduling passes. A pass costs in proportion to the pending jobs (every one is
 * considered in queue order), and each submit asks for one: during a burst of submits into a
 * large queue, passes back to back would make the burst quadratic (#20). So the next pass waits
 * as long as the last one took (at most {@linkcode MAX_PASS_DELAY}): passes then take at most
 * about half the controller's time, and the requests of the wait are served by one pass. Passes
 * under {@linkcode CHEAP_PASS} (any small cluster) are not delayed at all.
 * @module
 */
import { type Clock, type Duration, ms, seconds } from "../time.ts";

/** A pass shorter than this runs the next one at once. */
export const CHEAP_PASS: Duration = ms(1);
/** The longest wait before a pass, however long the last one took. */
export const MAX_PASS_DELAY: Duration = seconds(1);

/** Times passes and says how long to wait before the next one. */
export class SchedulePacer {
  readonly #clock: Clock;
  #last = 0;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Runs a pass and notes how long it took (the clock's monotonic time). */
  time<T>(pass: () => T): T {
    const t0 = this.#clock.monotonic();
    try {
      return pass();
    } finally {
      this.#last = this.#clock.monotonic() - t0;
    }
  }

  /** How long to wait before the next pass. */
  delay(): Duration {
    return this.#last < CHEAP_PASS ? ms(0) : ms(Math.min(this.#last, MAX_PASS_DELAY));
  }
}
