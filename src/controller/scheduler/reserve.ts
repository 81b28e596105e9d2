/**
 * Reservation claims: before placement, each unclaimed reservation entry claims one idle healthy
 * worker that matches it (accelerator, required constraints, totals), in submission order. A
 * claimed worker is held for its job: the placement pass keeps every other job off it.
 * @module
 */
import type {
  ReservationClaim,
  ReservationEntryView,
  ReservationRequest,
  SchedulerWorker,
} from "../../types.ts";
import { acceleratorMatches, matchesRequired } from "../constraints.ts";

/** A worker with no attempts on it (nothing committed, nothing building). */
function idle(w: SchedulerWorker): boolean {
  return w.buildingCount === 0 && w.free.cpuMillicores === w.total.cpuMillicores &&
    w.free.memoryBytes === w.total.memoryBytes && w.free.accelerators === w.total.accelerators &&
    !w.releasing;
}

/** Whether worker `w` can serve reservation entry `e`. */
export function entryMatches(e: ReservationEntryView, w: SchedulerWorker): boolean {
  const acc = Math.max(e.accelerator.count, e.resources.accelerators);
  return acceleratorMatches(e.accelerator, w.accelerator) &&
    w.total.cpuMillicores >= e.resources.cpuMillicores &&
    w.total.memoryBytes >= e.resources.memoryBytes && w.total.accelerators >= acc &&
    matchesRequired(w.attributes, e.constraints.filter((c) => !c.preferred));
}

/**
 * Claims idle workers for unclaimed entries.
 * @returns the claims, and the workers with `reservedFor` set on the newly claimed ones.
 */
export function claimReservations(
  workers: readonly SchedulerWorker[],
  requests: readonly ReservationRequest[],
): { claims: ReservationClaim[]; workers: readonly SchedulerWorker[] } {
  const claims: ReservationClaim[] = [];
  const free = workers.map((w, i) => ({ w, i })).filter(({ w }) =>
    w.healthy && w.reservedFor === undefined && idle(w)
  );
  if (free.length === 0) return { claims, workers };
  const out = [...workers];
  const used = new Set<number>();
  for (const req of requests) {
    for (const e of req.entries) {
      const hit = free.find(({ w, i }) => !used.has(i) && entryMatches(e, w));
      if (!hit) continue;
      used.add(hit.i);
      out[hit.i] = { ...hit.w, reservedFor: req.jobId };
      claims.push({ jobId: req.jobId, entryIndex: e.index, workerId: hit.w.id });
    }
  }
  return { claims, workers: claims.length ? out : workers };
}
