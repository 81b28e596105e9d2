/**
 * Time vocabulary for Iris: durations, timestamps, deadlines, clocks and backoff.
 * Everything that waits takes a Clock; pure functions take a `now` value.
 * @module
 */
import { clearImmediate, setImmediate } from "node:timers";
import { formatDuration } from "./format.ts";

/** A span of time in milliseconds. Build with {@linkcode ms}, {@linkcode seconds}, {@linkcode minutes}. */
export type Duration = number & { readonly __unit: "DurationMs" };
/** A point in time: epoch milliseconds. */
export type Timestamp = number & { readonly __unit: "EpochMs" };

/** Milliseconds as a Duration. */
export function ms(n: number): Duration {
  return n as Duration;
}
/** Seconds as a Duration. */
export function seconds(n: number): Duration {
  return (n * 1000) as Duration;
}
/** Minutes as a Duration. */
export function minutes(n: number): Duration {
  return (n * 60_000) as Duration;
}
/** Epoch milliseconds as a Timestamp. */
export function timestamp(epochMs: number): Timestamp {
  return epochMs as Timestamp;
}
/** The time between two timestamps (never negative). */
export function elapsed(from: Timestamp, to: Timestamp): Duration {
  return Math.max(0, to - from) as Duration;
}
/** A timestamp moved forward by a duration. */
export function after(t: Timestamp, d: Duration): Timestamp {
  return (t + d) as Timestamp;
}

/**
 * Parses "250ms", "30s", "5m", "1h", "1.5s" or a bare number of seconds into a Duration.
 * Returns undefined when the text is not a duration.
 */
export function parseDuration(text: string | number): Duration | undefined {
  if (typeof text === "number") {
    return Number.isFinite(text) && text >= 0 ? seconds(text) : undefined;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (!m) return undefined;
  const n = Number(m[1]);
  switch (m[2]) {
    case "ms":
      return ms(n);
    case "m":
      return minutes(n);
    case "h":
      return minutes(n * 60);
    default:
      return seconds(n);
  }
}

/** A source of time. Inject it so tests can control time. */
export interface Clock {
  /** Wall-clock time (the system clock's has microsecond resolution). */
  now(): Timestamp;
  /** Monotonic milliseconds, only for measuring spans. */
  monotonic(): number;
  /**
   * Resolves after `d`, or rejects with the signal's reason when aborted. A zero (or negative)
   * `d` resolves after the event loop's next turn, once the I/O already due was handled.
   */
  sleep(d: Duration, signal?: AbortSignal): Promise<void>;
}

/** Sleeps for `d`; rejects with the abort reason when `signal` fires first. */
export function sleep(d: Duration, signal?: AbortSignal): Promise<void> {
  return abortableWait(signal, (fire) => {
    const timer = setTimeout(fire, d);
    return () => clearTimeout(timer);
  });
}

/**
 * Resolves when `arm`'s callback fires; rejects with the abort reason when `signal` fires first,
 * after cancelling the wait (`arm` returns how).
 */
function abortableWait(
  signal: AbortSignal | undefined,
  arm: (fire: () => void) => () => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      cancel();
      reject(signal?.reason);
    };
    const cancel = arm(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    });
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** A callback due on a {@linkcode SharedTimer}. */
export interface SharedTimerEntry {
  /** When it is due (performance.now()). */
  readonly at: number;
  readonly run: () => void;
}

/**
 * Many callbacks due at different times on one `setTimeout`, set for the earliest due: a timer
 * per task (memory samples, RunTask's setup waits) showed in the worker's profile (#20). A
 * cancelled entry leaves the timer as it is unless it was the last; it then fires at most once for
 * nothing.
 */
export class SharedTimer {
  readonly #due = new Set<SharedTimerEntry>();
  #timer?: ReturnType<typeof setTimeout>;
  #timerAt = Infinity;

  add(after: Duration, run: () => void): SharedTimerEntry {
    const entry = { at: performance.now() + after, run };
    this.#due.add(entry);
    if (entry.at < this.#timerAt) this.#arm(entry.at);
    return entry;
  }

  /** `entry` will not run from the timer (harmless when it ran or was cancelled already). */
  cancel(entry: SharedTimerEntry): void {
    this.#due.delete(entry);
    if (this.#due.size === 0 && this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#timerAt = Infinity;
    }
  }

  #arm(at: number): void {
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, at - performance.now()));
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    // A timer may fire a fraction of a millisecond early.
    const now = performance.now() + 1;
    const due: SharedTimerEntry[] = [];
    let next = Infinity;
    for (const entry of this.#due) {
      if (entry.at <= now) due.push(entry);
      else next = Math.min(next, entry.at);
    }
    for (const entry of due) this.#due.delete(entry);
    if (next < this.#timerAt) this.#arm(next);
    for (const entry of due) entry.run();
  }
}

/** What the monotonic clock lags the wall clock by, as {@linkcode preciseNow} last set it. */
let wallOffset = Date.now() - performance.now();

/**
 * The wall clock with sub-millisecond resolution (`Date.now()` has whole milliseconds: too coarse
 * to time a task start that takes about one, #20): the monotonic clock plus an offset, checked
 * against `Date.now()` on each read and reset into its millisecond when they part (a step of the
 * system clock, or drift), so it follows the system clock as `Date.now()` does. A Temporal
 * instant per read cost ~0.9 µs and two objects; this, two number reads.
 */
function preciseNow(): Timestamp {
  const precise = performance.now() + wallOffset;
  const wall = Date.now();
  if (precise >= wall && precise < wall + 1) return precise as Timestamp;
  const reset = precise < wall ? wall : wall + 0.999;
  wallOffset += reset - precise;
  return reset as Timestamp;
}

/**
 * Resolves after the event loop's next turn (`setImmediate`), once the I/O already due was
 * handled; rejects with the abort reason when `signal` fires first. Deno's zero-delay `setTimeout`
 * waits ~2 ms instead: on the way of every scheduling pass it cost a worker's batch as much (#20).
 */
export function nextTurn(signal?: AbortSignal): Promise<void> {
  return abortableWait(signal, (fire) => {
    const immediate = setImmediate(fire);
    return () => clearImmediate(immediate);
  });
}

/** The real clock. A zero-length sleep is {@linkcode nextTurn}. */
export const systemClock: Clock = {
  now: preciseNow,
  monotonic: () => performance.now(),
  sleep: (d, signal) => d <= 0 ? nextTurn(signal) : sleep(d, signal),
};

/** One sleeper registered on a {@linkcode FakeClock}. */
interface FakeTimer {
  readonly at: number;
  readonly seq: number;
  /** Set with a zero delay: fires as soon as the event loop turns, without moving time. */
  readonly immediate: boolean;
  readonly resolve: () => void;
  readonly cleanup: () => void;
}

/**
 * A clock for tests: time stands still until the test moves it. `sleep(d)` registers a timer that
 * fires when {@linkcode FakeClock.advance} moves monotonic time to or past its due time; timers
 * fire in due order (ties: in the order they were set), and after each one the clock lets the
 * event loop turn (see {@linkcode FakeClock.settle}) so that woken code can react and set new
 * timers before the next one fires. A zero-delay sleep fires on the next settle, as a zero-delay
 * timer would. {@linkcode FakeClock.jump} moves time without firing anything, as when the process
 * itself was blocked.
 */
export class FakeClock implements Clock {
  #wall: number;
  #mono = 0;
  #seq = 0;
  #timers: FakeTimer[] = [];
  /** Event-loop turns without news after which {@linkcode FakeClock.settle} returns. */
  readonly turns: number;

  /**
   * @param start the wall-clock time to start at. @default 2026-01-01T00:00:00Z
   * @param options.turns quiet event-loop turns that end a settle. @default 3
   */
  constructor(
    start: Timestamp = timestamp(Date.UTC(2026, 0, 1)),
    options: { turns?: number } = {},
  ) {
    this.#wall = start;
    this.turns = options.turns ?? 3;
  }

  now(): Timestamp {
    return this.#wall as Timestamp;
  }

  monotonic(): number {
    return this.#mono;
  }

  sleep(d: Duration, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const timer: FakeTimer = {
        at: this.#mono + Math.max(0, d),
        seq: this.#seq++,
        immediate: !(d > 0),
        resolve,
        cleanup: () => signal?.removeEventListener("abort", onAbort),
      };
      const onAbort = () => {
        this.#timers = this.#timers.filter((t) => t !== timer);
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#timers.push(timer);
    });
  }

  /** Sleepers waiting on this clock. */
  get pending(): number {
    return this.#timers.length;
  }

  /** When the next timer is due, in monotonic ms (undefined: none). */
  nextDue(): number | undefined {
    return this.#next()?.at;
  }

  /**
   * Moves time forward by `d`, firing every timer that falls due on the way at its own due time
   * (timers set by woken code fire too when they fall due within `d`).
   */
  async advance(d: Duration): Promise<void> {
    if (!(d >= 0)) throw new RangeError(`Cannot advance a FakeClock by ${d}: must be >= 0`);
    const target = this.#mono + d;
    await this.settle();
    for (let t = this.#next(); t && t.at <= target; t = this.#next()) {
      this.#move(Math.max(0, t.at - this.#mono));
      this.#fire(t);
      await this.settle();
    }
    this.#move(target - this.#mono);
    await this.settle();
  }

  /** Moves time forward by `d` without firing timers: they are overdue until the next advance. */
  jump(d: Duration): void {
    if (!(d >= 0)) throw new RangeError(`Cannot jump a FakeClock by ${d}: must be >= 0`);
    this.#move(d);
  }

  /** Fires the timers already due (e.g. overdue after a {@linkcode FakeClock.jump}). */
  runDue(): Promise<void> {
    return this.advance(ms(0));
  }

  /**
   * Advances in steps of `step` until `condition` holds, failing after `limit` of fake time.
   * @throws {Error} naming `what` when the limit passes.
   */
  async advanceUntil<T>(
    condition: () => T | undefined | null | false,
    options: { step: Duration; limit: Duration; what: string },
  ): Promise<T> {
    const end = this.#mono + options.limit;
    while (true) {
      const value = condition();
      if (value) return value;
      if (this.#mono >= end) {
        throw new Error(
          `FakeClock: ${options.what} did not happen within ${formatDuration(options.limit)}`,
        );
      }
      await this.advance(ms(Math.min(options.step, end - this.#mono)));
    }
  }

  /**
   * Lets the real event loop turn until it is quiet: promise chains run, zero-delay sleeps fire.
   * Turns are message-port tasks (timer tasks are clamped to 4 ms once nested).
   */
  async settle(): Promise<void> {
    const channel = new MessageChannel();
    try {
      for (let quiet = 0, total = 0; quiet < this.turns && total < 10_000; total++) {
        await new Promise((r) => {
          channel.port1.onmessage = r;
          channel.port2.postMessage(0);
        });
        const ready = this.#timers.filter((t) => t.immediate);
        quiet = ready.length ? 0 : quiet + 1;
        for (const t of ready) this.#fire(t);
      }
    } finally {
      channel.port1.close();
      channel.port2.close();
    }
  }

  #next(): FakeTimer | undefined {
    let best: FakeTimer | undefined;
    for (const t of this.#timers) {
      if (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    }
    return best;
  }

  #fire(t: FakeTimer): void {
    this.#timers = this.#timers.filter((x) => x !== t);
    t.cleanup();
    t.resolve();
  }

  #move(d: number): void {
    this.#mono += d;
    this.#wall += d;
  }
}

/** A point in monotonic time after which work should stop. */
export class Deadline {
  readonly #endMonotonic: number;
  readonly #clock: Clock;
  private constructor(clock: Clock, endMonotonic: number) {
    this.#clock = clock;
    this.#endMonotonic = endMonotonic;
  }
  /** A deadline `d` from now. */
  static after(d: Duration, clock: Clock = systemClock): Deadline {
    return new Deadline(clock, clock.monotonic() + d);
  }
  /** True once the deadline has passed. */
  expired(): boolean {
    return this.#clock.monotonic() >= this.#endMonotonic;
  }
  /** Time left (0 when expired). */
  remaining(): Duration {
    return Math.max(0, this.#endMonotonic - this.#clock.monotonic()) as Duration;
  }
  /** An AbortSignal that fires when the deadline passes. */
  signal(): AbortSignal {
    return AbortSignal.timeout(Math.max(1, this.remaining()));
  }
}

/** Options for {@linkcode Backoff}. */
export interface BackoffOptions {
  /** First delay. @default 50ms */
  initial?: Duration;
  /** Largest delay. @default 5s */
  max?: Duration;
  /** Growth per step. @default 2 */
  factor?: number;
  /** Random spread as a fraction of the delay, 0..1. @default 0.2 */
  jitter?: number;
}

/** Exponential backoff: each `next()` returns a longer delay, up to `max`. */
export class Backoff {
  readonly #initial: number;
  readonly #max: number;
  readonly #factor: number;
  readonly #jitter: number;
  #attempt = 0;
  constructor(options: BackoffOptions = {}) {
    const { initial = 50, max = 5000, factor = 2, jitter = 0.2 } = options;
    if (!(jitter >= 0 && jitter <= 1)) {
      throw new RangeError(
        `Cannot create backoff as 'jitter' must be in 0..1: current value is ${jitter}`,
      );
    }
    this.#initial = initial;
    this.#max = max;
    this.#factor = factor;
    this.#jitter = jitter;
  }
  /** The next delay. */
  next(): Duration {
    const base = Math.min(this.#max, this.#initial * this.#factor ** this.#attempt++);
    const spread = base * this.#jitter * (Math.random() * 2 - 1);
    return Math.max(0, Math.round(base + spread)) as Duration;
  }
  /** Starts over from the initial delay. */
  reset(): void {
    this.#attempt = 0;
  }
}

/**
 * Polls `condition` until it returns a truthy value or the deadline passes.
 * Waits with backoff between polls (never a fixed sleep).
 * @throws {Error} naming `what` when the deadline passes.
 */
export async function waitFor<T>(
  condition: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  options: { timeout: Duration; what: string; signal?: AbortSignal; backoff?: BackoffOptions },
): Promise<T> {
  const deadline = Deadline.after(options.timeout);
  const backoff = new Backoff({ initial: ms(5), max: ms(200), ...options.backoff });
  while (true) {
    const value = await condition();
    if (value) return value;
    if (deadline.expired()) {
      throw new Error(
        `Timed out after ${formatDuration(options.timeout)} waiting for ${options.what}`,
      );
    }
    await sleep(Math.min(backoff.next(), deadline.remaining()) as Duration, options.signal);
  }
}
