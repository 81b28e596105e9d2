/**
 * Pure helpers for following logs by polling.
 * @module
 */

/** Position of a timestamp-based follower (WorkerService.FetchTaskLogs has no cursor). */
export interface SincePosition {
  /** Timestamp of the newest line seen; 0 before the first fetch. */
  readonly lastTs: number;
  /** How many lines with exactly `lastTs` were already shown. */
  readonly seenAtLastTs: number;
}

/** The position before any line was seen. */
export const START_POSITION: SincePosition = { lastTs: 0, seenAtLastTs: 0 };

/**
 * Drops lines already shown from a `since_ms = pos.lastTs` fetch, whether the server treats
 * `since_ms` as inclusive or exclusive, and returns the new lines and position.
 * Lines must be in timestamp order, as the worker returns them.
 */
export function takeNewLines<L extends { readonly timestampMs: number }>(
  lines: readonly L[],
  pos: SincePosition,
): { fresh: L[]; pos: SincePosition } {
  let skip = pos.seenAtLastTs;
  const fresh: L[] = [];
  for (const line of lines) {
    if (line.timestampMs < pos.lastTs) continue;
    if (line.timestampMs === pos.lastTs && skip > 0) {
      skip--;
      continue;
    }
    fresh.push(line);
  }
  if (fresh.length === 0) return { fresh, pos };
  const lastTs = fresh[fresh.length - 1]!.timestampMs;
  let seenAtLastTs = 0;
  for (const line of lines) if (line.timestampMs === lastTs) seenAtLastTs++;
  return { fresh, pos: { lastTs, seenAtLastTs } };
}

/** Most lines kept in a log view; older lines are dropped from the top. */
export const MAX_LOG_LINES = 5000;

/** How many of the oldest lines to drop so that `current + added` fits `max`. */
export function overflow(current: number, added: number, max = MAX_LOG_LINES): number {
  return Math.max(0, current + added - max);
}
