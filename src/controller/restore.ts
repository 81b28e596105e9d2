/**
 * Restoring the controller after a restart: jobs, endpoints and workers are loaded from the store
 * (store.ts), every attempt loaded as active waits for its worker to re-claim it (reconcile.ts;
 * the monitor fails it after the re-claim grace), and reservation claims saved before the restart
 * are restored for the jobs and workers still known.
 * @module
 */
import { isJobTerminal, isTaskActive } from "./job_rules.ts";
import type { JobTable } from "./state.ts";
import { attemptKey, type WorkerTable } from "./workers.ts";
import type { EndpointTable } from "./endpoints.ts";
import type { StateStore } from "./store.ts";
import type { Reconciler } from "./reconcile.ts";
import type { Claims, Reservations } from "./reservations.ts";

/** What a restore fills in. */
export interface RestoreContext {
  readonly jobs: JobTable;
  readonly endpoints: EndpointTable;
  readonly workers: WorkerTable;
  readonly reconciler: Reconciler;
  log(line: string): void;
}

/**
 * Loads the state of `store` into the tables (workers as reconnecting since `nowMs`); active
 * attempts await their worker's re-claim. Returns how many workers were loaded.
 */
export function loadState(ctx: RestoreContext, store: StateStore, nowMs: number): number {
  const stats = store.load(ctx.jobs);
  const endpoints = store.loadEndpoints(ctx.endpoints);
  const workers = store.loadWorkers();
  ctx.workers.restore(workers, nowMs);
  for (const task of ctx.jobs.tasks.values()) {
    for (const a of task.attempts) {
      if (isTaskActive(a.state)) ctx.reconciler.awaitClaim(attemptKey(task.taskId, a.attemptId));
    }
  }
  ctx.log(
    `loaded ${stats.jobs} job(s), ${stats.tasks} task(s), ${endpoints} endpoint(s), ${workers.length} worker(s) from ${store.path} in ${
      Math.round(stats.ms)
    } ms; ${ctx.reconciler.unclaimedCount} attempt(s) await their worker`,
  );
  for (const line of [...stats.quarantined, ...store.takeWarnings()]) ctx.log(line);
  return workers.length;
}

/** Reservation claims saved before a restart, for jobs still running and workers still known. */
export function restoreClaims(
  ctx: Pick<RestoreContext, "jobs" | "workers" | "log">,
  reservations: Reservations,
  saved: Claims,
): void {
  const restored = reservations.restore(
    saved,
    (jobId) => {
      const job = ctx.jobs.jobs.get(jobId);
      return job !== undefined && !isJobTerminal(job.state);
    },
    (workerId) => ctx.workers.workers.has(workerId),
  );
  if (restored) ctx.log(`restored the reservation claims of ${restored} job(s)`);
}
