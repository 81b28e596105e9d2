/**
 * Reconciliation: what the controller believes a worker holds against what the worker says.
 * Attempts loaded from the store wait for their worker to re-claim them (`unclaimed`); an attempt
 * held on a worker that its heartbeats stop listing, or that a re-registering worker does not
 * list, is lost. This module finds the lost attempts; the controller ends them (WORKER_FAILED).
 * @module
 */
import type { WorkerRecord } from "./workers.ts";

/**
 * Consecutive heartbeats an attempt held on a worker may be missing from (neither running nor
 * ended there) before it is lost. Two: a worker sends one heartbeat at a time, so the second
 * was built after the first was answered, i.e. after any RunTask answered before it.
 */
export const MISSING_HEARTBEATS = 2;

/** The attempt bookkeeping of reconciliation (keys are attemptKey(taskId, attemptId)). */
export class Reconciler {
  /** Active attempts loaded from the store that their worker has not re-claimed yet. */
  readonly #unclaimed = new Set<string>();
  /**
   * Attempts held on a worker that its last heartbeats listed neither as running nor as ended:
   * key → consecutive heartbeats without it (lost at {@linkcode MISSING_HEARTBEATS}).
   */
  readonly #missing = new Map<string, { workerId: string; count: number }>();

  /** Attempts that wait for their worker to re-claim them. */
  get unclaimedCount(): number {
    return this.#unclaimed.size;
  }

  /** Attempt `key` waits for its worker to re-claim it (loaded from the store, or rolled back). */
  awaitClaim(key: string): void {
    this.#unclaimed.add(key);
  }

  /** Attempt `key` was re-claimed by its worker. */
  claimed(key: string): void {
    this.#unclaimed.delete(key);
  }

  /** Every attempt still waiting to be re-claimed; the set is emptied. */
  takeUnclaimed(): string[] {
    const keys = [...this.#unclaimed];
    this.#unclaimed.clear();
    return keys;
  }

  /**
   * The attempts a re-registering `worker` lost: those it holds or that wait to be re-claimed on
   * it (`workerOf` gives an unclaimed attempt's worker), that it listed neither as running nor
   * as ended, and whose RunTask is not in flight. They no longer wait to be re-claimed.
   */
  lostOnRegister(
    worker: WorkerRecord,
    listed: ReadonlySet<string>,
    isDispatching: (key: string) => boolean,
    workerOf: (key: string) => string | undefined,
  ): string[] {
    const placedHere = new Set(worker.active.keys());
    for (const key of this.#unclaimed) {
      if (workerOf(key) === worker.workerId) placedHere.add(key);
    }
    const lost: string[] = [];
    for (const key of placedHere) {
      if (listed.has(key) || isDispatching(key)) continue;
      this.#unclaimed.delete(key);
      lost.push(key);
    }
    return lost;
  }

  /**
   * After a heartbeat of `worker` that mentioned the attempts `seen`: the attempts it holds that
   * it has not mentioned in {@linkcode MISSING_HEARTBEATS} consecutive heartbeats (and whose
   * RunTask is not in flight) are lost.
   */
  lostOnHeartbeat(
    worker: WorkerRecord,
    seen: ReadonlySet<string>,
    isDispatching: (key: string) => boolean,
  ): string[] {
    for (const [key, m] of this.#missing) {
      if (m.workerId === worker.workerId && !worker.active.has(key)) this.#missing.delete(key);
    }
    const lost: string[] = [];
    for (const key of worker.active.keys()) {
      if (seen.has(key) || isDispatching(key)) {
        this.#missing.delete(key);
        continue;
      }
      const m = this.#missing.get(key) ?? { workerId: worker.workerId, count: 0 };
      m.count++;
      this.#missing.set(key, m);
      if (m.count < MISSING_HEARTBEATS) continue;
      this.#missing.delete(key);
      lost.push(key);
    }
    return lost;
  }

  /** A worker is gone: forget what it was missing. */
  forgetWorker(workerId: string): void {
    for (const [key, m] of this.#missing) if (m.workerId === workerId) this.#missing.delete(key);
  }
}
