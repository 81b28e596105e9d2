/**
 * Worker liveness at fleet scale: the heartbeat interval the controller tells workers grows with
 * the fleet so the controller receives at most `maxRate` heartbeats per second, and the bound
 * within which a stopped worker is declared dead follows from it. Pure functions, no I/O.
 *
 * A worker learns its interval from every RegisterWorker and Heartbeat answer; the controller
 * remembers the interval it last told each worker and times that worker out after
 * `interval × threshold`, so a fleet that grows or shrinks never kills a worker that is keeping
 * the cadence it was given.
 * @module
 */
import { type Duration, ms } from "../time.ts";

/** Heartbeats per second the controller plans for by default. */
export const DEFAULT_HEARTBEAT_MAX_RATE = 1000;

/** Intervals are rounded up to this step, so a fleet that changes by one worker changes nothing. */
const STEP_MS = 500;

/**
 * The interval to tell workers in a fleet of `fleetSize`: the configured `base`, or longer when
 * the fleet would otherwise send more than `maxRate` heartbeats per second.
 */
export function heartbeatIntervalFor(
  base: Duration,
  fleetSize: number,
  maxRate: number = DEFAULT_HEARTBEAT_MAX_RATE,
): Duration {
  if (!(maxRate > 0) || fleetSize <= 0) return base;
  const needed = (fleetSize / maxRate) * 1000;
  if (needed <= base) return base;
  return ms(Math.ceil(needed / STEP_MS) * STEP_MS);
}

/**
 * How long after its last heartbeat a worker told `interval` is declared dead, at the latest:
 * `interval × threshold` without a heartbeat, noticed at the next liveness check (every
 * `checkEvery`, the configured base interval).
 */
export function deadBound(interval: Duration, threshold: number, checkEvery: Duration): Duration {
  return ms(interval * threshold + checkEvery);
}
