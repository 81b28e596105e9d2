/**
 * Scheduling timeouts: a job's `scheduling_timeout_ms` bounds how long each of its tasks may stay
 * pending; a task pending longer ends UNSCHEDULABLE with the reason it could not be placed.
 * @module
 */
import { ms } from "../time.ts";
import { formatDuration } from "../format.ts";
import type { Effects, JobTable } from "./state.ts";

/**
 * Ends as UNSCHEDULABLE every pending task that has waited its job's scheduling timeout or longer
 * by `nowMs` (jobs without a timeout wait forever).
 */
export function expireScheduling(jobs: JobTable, nowMs: number, fx: Effects): void {
  const timed = jobs.timedPendingJobs();
  if (timed.size === 0) return;
  const queue = jobs.pendingJobs();
  // Only the jobs with a timeout: this runs before every pass (#20).
  for (const jobId of [...timed]) {
    const job = jobs.jobs.get(jobId)!;
    const limit = job.spec.schedulingTimeoutMs;
    const pending = queue.get(jobId);
    if (!limit || !pending) continue;
    for (const i of [...pending]) {
      const task = jobs.task(job.taskIds[i]!);
      if (nowMs - task.pendingSinceMs >= limit) {
        const why = `not scheduled within ${formatDuration(ms(limit))}: ${
          jobs.pendingReasonOf(task)?.message ?? "no capacity"
        }`;
        jobs.unschedulable(task, why, nowMs, fx);
      }
    }
  }
}
