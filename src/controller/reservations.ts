/**
 * Reservations: which worker each entry of a job's reservation holds, and the gate that keeps a
 * job's tasks pending until every entry holds one. The scheduler proposes claims
 * (`SchedulePlan.claims`); this records them, answers the snapshot's questions and releases the
 * workers when the job ends or a worker dies. The claims are saved through `save` (accounts.ts).
 * @module
 */
import { describeError } from "../errors.ts";
import type { PendingReasonData, ReservationRequest } from "../types.ts";
import type { JobRecord } from "./state.ts";
import { acceleratorKind } from "./convert.ts";
import { constraintsFromProto } from "./convert.ts";

/** Claims per job: the worker held by each reservation entry (undefined: not yet). */
export type Claims = ReadonlyMap<string, readonly (string | undefined)[]>;

/** Options for {@linkcode Reservations}. */
export interface ReservationsOptions {
  /** Saves every claim (whole set); may throw (logged, the claims stay in memory). */
  readonly save: (claims: Claims) => void;
  readonly log: (line: string) => void;
}

/** Claimed and total entries of a job's reservation. */
export interface ReservationProgress {
  readonly claimed: number;
  readonly total: number;
}

/** The reservation claims of every job and the workers they hold. */
export class Reservations {
  /** Job id → the worker claimed per entry (undefined = not yet). */
  readonly #claims = new Map<string, (string | undefined)[]>();
  /** Worker id → the job it is held for. */
  readonly #reservedBy = new Map<string, string>();
  readonly #opts: ReservationsOptions;

  constructor(options: ReservationsOptions) {
    this.#opts = options;
  }

  /**
   * Restores claims saved before a restart, for jobs `isLive` and workers `isKnown` (a worker
   * is held for one job at most). Returns how many jobs got claims back.
   */
  restore(
    saved: Claims,
    isLive: (jobId: string) => boolean,
    isKnown: (workerId: string) => boolean,
  ): number {
    for (const [jobId, ws] of saved) {
      if (!isLive(jobId)) continue;
      const claims = ws.map((w) =>
        w !== undefined && isKnown(w) && !this.#reservedBy.has(w) ? w : undefined
      );
      this.#claims.set(jobId, claims);
      for (const w of claims) if (w !== undefined) this.#reservedBy.set(w, jobId);
    }
    return this.#claims.size;
  }

  /** Workers held for a reservation → the job holding them. */
  get reservedBy(): ReadonlyMap<string, string> {
    return this.#reservedBy;
  }

  /** Claimed and total entries of `job`'s reservation (0/0 without one). */
  progress(job: JobRecord | undefined): ReservationProgress {
    const claims = job && this.#claims.get(job.jobId);
    const total = job?.spec.reservation.length ?? 0;
    return { claimed: claims ? claims.filter((w) => w !== undefined).length : 0, total };
  }

  /**
   * Records that entry `entryIndex` of `job`'s reservation holds `workerId`, unless the entry is
   * claimed already or the worker held for another job. Returns true when this claim completed
   * the reservation (the caller opens the job's gate).
   */
  claim(job: JobRecord, entryIndex: number, workerId: string): boolean {
    if (this.#reservedBy.has(workerId)) return false;
    let claims = this.#claims.get(job.jobId);
    if (!claims) this.#claims.set(job.jobId, claims = new Array(job.spec.reservation.length));
    if (claims[entryIndex] !== undefined) return false;
    claims[entryIndex] = workerId;
    this.#reservedBy.set(workerId, job.jobId);
    this.#opts.log(`reservation of ${job.jobId}: entry ${entryIndex} holds worker ${workerId}`);
    const claimed = claims.filter((w) => w !== undefined).length;
    return claimed === job.spec.reservation.length && !job.reservationReady;
  }

  /** Releases every worker held for a job (it ended) and saves. Returns whether any was held. */
  release(jobId: string): boolean {
    const claims = this.#claims.get(jobId);
    if (!claims) return false;
    let held = false;
    for (const w of claims) {
      if (w === undefined) continue;
      this.#reservedBy.delete(w);
      held = true;
    }
    this.#claims.delete(jobId);
    this.save();
    return held;
  }

  /** A worker is gone: its entry is unclaimed again (and saved). */
  workerGone(workerId: string): void {
    const holder = this.#reservedBy.get(workerId);
    if (holder === undefined) return;
    this.#reservedBy.delete(workerId);
    const claims = this.#claims.get(holder);
    const i = claims?.indexOf(workerId) ?? -1;
    if (claims && i >= 0) claims[i] = undefined;
    this.save();
  }

  /** Saves the claims; a failure is logged, the claims stay in memory. */
  save(): void {
    try {
      this.#opts.save(this.#claims);
    } catch (err) {
      this.#opts.log(`saving reservation claims failed: ${describeError(err)}`);
    }
  }

  /** The scheduler's view of `job`'s reservation: its entries that hold no worker yet. */
  request(job: JobRecord): ReservationRequest {
    const claims = this.#claims.get(job.jobId) ?? [];
    return {
      jobId: job.jobId,
      entries: job.spec.reservation.flatMap((e, index) => {
        if (claims[index] !== undefined) return [];
        const r = e.resources;
        return [{
          index,
          resources: {
            cpuMillicores: r?.cpuMillicores ?? 0,
            memoryBytes: r?.memoryBytes ?? 0,
            accelerators: r?.accelerator?.count ?? 0,
          },
          accelerator: {
            kind: acceleratorKind(r?.accelerator?.type),
            variant: r?.accelerator?.variant ?? "",
            count: r?.accelerator?.count ?? 0,
          },
          constraints: constraintsFromProto(e.constraints),
        }];
      }),
    };
  }
}

/** Whether `job`'s tasks wait for its reservation (it has one and its gate is not open yet). */
export function isGated(job: JobRecord): boolean {
  return job.spec.reservation.length > 0 && !job.reservationReady;
}

/** The pending reason of a task held back by its job's reservation. */
export function gateReason(
  progress: ReservationProgress,
  workersConsidered: number,
): PendingReasonData {
  return {
    code: "reserved",
    message: `waiting for its reservation: ${progress.claimed} of ${progress.total} worker(s) ` +
      `claimed; tasks start once all are held`,
    workersConsidered,
  };
}
