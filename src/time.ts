/**
 * Time vocabulary for Iris: durations, timestamps, deadlines, clocks and backoff.
 * Everything that waits takes a Clock; pure functions take a `now` value.
 * @module
 */
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
  /** Wall-clock time. */
  now(): Timestamp;
  /** Monotonic milliseconds, only for measuring spans. */
  monotonic(): number;
  /** Resolves after `d`, or rejects with the signal's reason when aborted. */
  sleep(d: Duration, signal?: AbortSignal): Promise<void>;
}

/** Sleeps for `d`; rejects with the abort reason when `signal` fires first. */
export function sleep(d: Duration, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, d);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The real clock. */
export const systemClock: Clock = {
  now: () => Date.now() as Timestamp,
  monotonic: () => performance.now(),
  sleep,
};

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
