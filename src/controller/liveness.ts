/**
 * Worker liveness: which workers missed too many heartbeats, when the controller itself was
 * blocked (heartbeat deadlines then restart from its resumption), and the re-claim grace after a
 * restart (workers loaded from the store get that long to re-register). The controller's monitor
 * tick calls {@linkcode Liveness.tick} then declares {@linkcode Liveness.due} workers dead.
 * @module
 */
import { type Clock, type Duration, ms } from "../time.ts";
import { formatDuration } from "../format.ts";
import type { WorkerTable } from "./workers.ts";

/** Options for {@linkcode Liveness}. */
export interface LivenessOptions {
  readonly clock: Clock;
  /** How often workers heartbeat (and the monitor ticks). */
  readonly heartbeatInterval: Duration;
  /** Missed heartbeats before a worker is declared dead. */
  readonly failureThreshold: number;
  /** How long workers get after a restart (or a resumption) to re-register. */
  readonly reclaimGrace: Duration;
}

/** A worker to declare dead, and why. */
export interface DueWorker {
  readonly workerId: string;
  readonly reason: string;
}

/** The liveness bookkeeping of the controller's monitor. */
export class Liveness {
  readonly #opts: LivenessOptions;
  #lastTick: number;
  /** When the controller last resumed after being blocked (0: never); deadlines count from it. */
  #resumedAtMs = 0;
  /** When the loops started (the re-claim grace counts from here). */
  #servingSinceMs: number;
  /** Times the monitor found the controller blocked, and the last such stall. */
  readonly stalls = { count: 0, lastMs: 0 };
  /** The re-claim grace (widened after loading a large fleet: heartbeat_rate.ts). */
  reclaimGrace: Duration;

  constructor(options: LivenessOptions) {
    this.#opts = options;
    this.reclaimGrace = options.reclaimGrace;
    this.#lastTick = options.clock.monotonic();
    this.#servingSinceMs = options.clock.now();
  }

  /** The loops start serving now (the re-claim grace restarts). */
  start(): void {
    this.#servingSinceMs = this.#opts.clock.now();
    this.#lastTick = this.#opts.clock.monotonic();
  }

  /**
   * One monitor tick. A tick more than an interval late means the controller itself was blocked
   * (a huge request, a slow disk, the host paused it): heartbeats could not be received
   * meanwhile, so deadlines restart from now. Returns the stall, or undefined when on time.
   */
  tick(): Duration | undefined {
    const interval = this.#opts.heartbeatInterval;
    const tick = this.#opts.clock.monotonic();
    const stall = tick - this.#lastTick - interval;
    this.#lastTick = tick;
    if (stall <= interval) return undefined;
    this.#resumedAtMs = this.#opts.clock.now();
    this.stalls.count++;
    this.stalls.lastMs = stall;
    return ms(stall);
  }

  /** Whether workers are still within the re-claim grace at `nowMs`. */
  inGrace(nowMs: number): boolean {
    return nowMs - Math.max(this.#servingSinceMs, this.#resumedAtMs) < this.reclaimGrace;
  }

  /**
   * Workers to declare dead at `nowMs`: those whose last heartbeat is older than the threshold
   * (counting from the last resumption), except reconnecting ones within the re-claim grace.
   */
  due(workers: WorkerTable, nowMs: number): DueWorker[] {
    const { heartbeatInterval, failureThreshold } = this.#opts;
    const reclaimGrace = this.reclaimGrace;
    const inGrace = this.inGrace(nowMs);
    const out: DueWorker[] = [];
    // Each worker is timed out on the interval it was last told (heartbeat_rate.ts).
    const expired = workers.expired(
      nowMs,
      failureThreshold,
      heartbeatInterval,
      this.#resumedAtMs,
    );
    for (const w of expired) {
      // After a restart a worker may be backing off: it gets the re-claim grace.
      if (w.reconnecting && inGrace) continue;
      out.push({
        workerId: w.workerId,
        reason: w.reconnecting
          ? `did not re-register within ${formatDuration(reclaimGrace)} of a controller restart`
          : `missed ${failureThreshold} heartbeats (${
            formatDuration(ms(w.heartbeatIntervalMs ?? heartbeatInterval))
          } apart)`,
      });
    }
    return out;
  }
}
