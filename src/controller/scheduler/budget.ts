/**
 * Resource budgets in a scheduling pass (pure): splits each over-budget job of a band above
 * BATCH into the tasks its user's budget still covers (kept in their band) and the rest (placed
 * as BATCH this pass). Re-evaluated every pass from the users' active usage.
 * @module
 */
import {
  type Band,
  BAND_BATCH,
  type ClusterSnapshot,
  type ResourceBudget,
  type ResourceVec,
  type SchedulePlan,
  type SchedulerJob,
} from "../../types.ts";

/** Resources one task of `job` counts against its user's budget. */
export function taskCost(job: Pick<SchedulerJob, "resources" | "accelerator">): ResourceVec {
  return {
    cpuMillicores: job.resources.cpuMillicores,
    memoryBytes: job.resources.memoryBytes,
    accelerators: Math.max(job.accelerator.count, job.resources.accelerators),
  };
}

type Left = { -readonly [K in keyof Required<ResourceBudget>]: number };

/** How many tasks of `cost` fit in `left` (Infinity when nothing limits). */
function tasksWithin(left: Left, cost: ResourceVec): number {
  let n = Infinity;
  if (cost.cpuMillicores > 0) n = Math.min(n, Math.floor(left.cpuMillicores / cost.cpuMillicores));
  if (cost.memoryBytes > 0) n = Math.min(n, Math.floor(left.memoryBytes / cost.memoryBytes));
  if (cost.accelerators > 0) n = Math.min(n, Math.floor(left.accelerators / cost.accelerators));
  return Math.max(0, n);
}

/** The result of {@linkcode splitOverBudget}. */
export interface BudgetSplit {
  /** The snapshot's jobs, over-budget parts moved to BATCH copies (same jobId). */
  readonly jobs: readonly SchedulerJob[];
  /** "jobId\0taskIndex" of every task moved to BATCH. */
  readonly demoted: ReadonlySet<string>;
}

/**
 * Splits jobs by budget. Per user, in snapshot (queue) order, each pending task of a job above
 * BATCH takes its cost from what the budget leaves after `budgetUsage`; tasks that no longer fit
 * go to a BATCH copy of the job (a gang moves whole). Budget is taken for every kept task, placed
 * or not, so a pass never over-commits a user.
 */
export function splitOverBudget(snapshot: ClusterSnapshot): BudgetSplit {
  const budgets = snapshot.budgets;
  const demoted = new Set<string>();
  if (!budgets || Object.keys(budgets).length === 0) return { jobs: snapshot.jobs, demoted };
  const left = new Map<string, Left>();
  const out: SchedulerJob[] = [];
  const moved: SchedulerJob[] = [];
  const ordered = [...snapshot.jobs].sort((a, b) => a.band - b.band);
  for (const job of ordered) {
    const user = job.user ?? "";
    const budget = budgets[user];
    if (!budget || job.band >= BAND_BATCH) {
      out.push(job);
      continue;
    }
    let l = left.get(user);
    if (!l) {
      const used = snapshot.budgetUsage?.[user];
      l = {
        cpuMillicores: (budget.cpuMillicores ?? Infinity) - (used?.cpuMillicores ?? 0),
        memoryBytes: (budget.memoryBytes ?? Infinity) - (used?.memoryBytes ?? 0),
        accelerators: (budget.accelerators ?? Infinity) - (used?.accelerators ?? 0),
      };
      left.set(user, l);
    }
    const cost = taskCost(job);
    const pending = job.pendingTaskIndices;
    let keep = Math.min(pending.length, tasksWithin(l, cost));
    if (job.groupBy !== undefined && keep < pending.length) keep = 0;
    l.cpuMillicores -= keep * cost.cpuMillicores;
    l.memoryBytes -= keep * cost.memoryBytes;
    l.accelerators -= keep * cost.accelerators;
    if (keep > 0) {
      out.push(
        keep === pending.length ? job : { ...job, pendingTaskIndices: pending.slice(0, keep) },
      );
    }
    if (keep < pending.length) {
      const rest = pending.slice(keep);
      for (const i of rest) demoted.add(`${job.jobId}\u0000${i}`);
      moved.push({ ...job, band: BAND_BATCH as Band, pendingTaskIndices: rest });
    }
  }
  // BATCH copies queue after the BATCH jobs that were there already (they are later arrivals
  // to that band), in their own queue order.
  return { jobs: [...out, ...moved], demoted };
}

/**
 * Marks assignments of demoted tasks as BATCH and merges the unplaced entries of a job's two
 * parts into one.
 */
export function finishBudgetPlan(plan: SchedulePlan, split: BudgetSplit): SchedulePlan {
  if (split.demoted.size === 0) return plan;
  const assignments = plan.assignments.map((a) =>
    split.demoted.has(`${a.jobId}\u0000${a.taskIndex}`) ? { ...a, band: BAND_BATCH as Band } : a
  );
  const byJob = new Map<string, SchedulePlan["unplaced"][number]>();
  for (const u of plan.unplaced) {
    const seen = byJob.get(u.jobId);
    byJob.set(u.jobId, seen ? { ...seen, taskCount: seen.taskCount + u.taskCount } : u);
  }
  return { ...plan, assignments, unplaced: [...byJob.values()] };
}
