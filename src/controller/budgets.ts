/**
 * Per-user budgets: decide the band a submitted job is scheduled in. A user may be capped to a
 * band (e.g. no PRODUCTION) and to a number of unfinished INTERACTIVE/PRODUCTION tasks; a job
 * that would exceed the task budget runs as BATCH (preemptible), with the reason in its status.
 * Pure: the caller supplies the user's current usage.
 * @module
 */
import { type JobSpec, PriorityBand, TaskState } from "../rpc/gen/iris/v1/types_pb.ts";
import {
  type Band,
  BAND_BATCH,
  BAND_INTERACTIVE,
  bandOrUndefined,
  type ClusterSnapshot,
  type ResourceBudget,
  type ResourceVec,
  type SchedulerJob,
} from "../types.ts";
import type { JobRecord } from "./state.ts";
import { isJobTerminal } from "./job_rules.ts";

/** A budget for some users (from the controller config's `user_budgets`). */
export interface UserBudget {
  /** User names; "*" matches every user without a budget of their own. */
  readonly users: readonly string[];
  /** Unfinished tasks in bands above BATCH the user may have; undefined = unlimited. */
  readonly maxTasks?: number;
  /** Most important band the user may ask for; more important requests are lowered to it. */
  readonly maxBand?: Band;
  /**
   * Resources the user's active tasks above BATCH may hold; checked every scheduling pass
   * (tasks beyond it are placed as BATCH). Undefined: no resource limit.
   */
  readonly resources?: ResourceBudget;
}

/** The band's name ("PRODUCTION", "INTERACTIVE", "BATCH"): its PriorityBand name. */
export function bandName(band: Band): string {
  return PriorityBand[band]!;
}

/** The budget that applies to `user`: their own first, then a "*" budget. */
export function budgetFor(
  budgets: readonly UserBudget[],
  user: string,
): UserBudget | undefined {
  return budgets.find((b) => b.users.includes(user)) ?? budgets.find((b) => b.users.includes("*"));
}

/**
 * The band a new job runs in.
 * @param usage the user's unfinished tasks in bands above BATCH, not counting this job.
 * @param tasks the new job's task count.
 * @returns the band, plus a reason when it differs from `requested`.
 */
export function effectiveBand(
  requested: Band,
  user: string,
  budget: UserBudget | undefined,
  usage: number,
  tasks: number,
): { band: Band; reason?: string } {
  if (!budget) return { band: requested };
  let band = requested;
  let reason: string | undefined;
  if (budget.maxBand !== undefined && band < budget.maxBand) {
    band = budget.maxBand;
    reason = `user ${user} may not submit ${bandName(requested)} jobs (highest allowed: ${
      bandName(budget.maxBand)
    })`;
  }
  if (band < BAND_BATCH && budget.maxTasks !== undefined && usage + tasks > budget.maxTasks) {
    reason = `user ${user} is over budget: ${usage} unfinished ${
      bandName(band)
    }-or-higher task(s) plus ${tasks} new exceed max_tasks ${budget.maxTasks}; runs as BATCH`;
    band = BAND_BATCH;
  }
  return { band, reason };
}

/** The budgets of a controller config (`controller.user_budgets`); zero/unset fields mean no limit. */
export function budgetsFromConfig(
  list: readonly {
    users: readonly string[];
    maxTasks: number;
    maxBand: number;
    maxCpuMillicores?: number;
    maxMemoryBytes?: number;
    maxAccelerators?: number;
  }[],
): UserBudget[] {
  return list.map((b) => {
    const resources = resourceBudget(b.maxCpuMillicores, b.maxMemoryBytes, b.maxAccelerators);
    return {
      users: [...b.users],
      maxTasks: b.maxTasks > 0 ? b.maxTasks : undefined,
      maxBand: bandOrUndefined(b.maxBand),
      ...(resources ? { resources } : {}),
    };
  });
}

/** A resource budget from limits where 0/unset means unlimited; undefined when none is set. */
export function resourceBudget(
  cpuMillicores?: number,
  memoryBytes?: number,
  accelerators?: number,
): ResourceBudget | undefined {
  const r: { cpuMillicores?: number; memoryBytes?: number; accelerators?: number } = {};
  if (cpuMillicores) r.cpuMillicores = cpuMillicores;
  if (memoryBytes) r.memoryBytes = memoryBytes;
  if (accelerators) r.accelerators = accelerators;
  return Object.keys(r).length ? r : undefined;
}

/** The band a spec asks for: its priority, INTERACTIVE when unset. */
export function requestedBand(spec: JobSpec): Band {
  return spec.priority === PriorityBand.UNSPECIFIED ? BAND_INTERACTIVE : spec.priority as Band;
}

/** The band a job is scheduled in: its spec's priority (INTERACTIVE when unset) unless a budget lowered it. */
export function bandOf(job: JobRecord): Band {
  return job.band ?? requestedBand(job.spec);
}

/**
 * The band a job just submitted runs in under its user's budget, counting the user's other
 * unfinished jobs above BATCH in `jobs`. Undefined when it runs in the band it asked for.
 */
export function bandAtSubmit(
  job: JobRecord,
  jobs: Iterable<JobRecord>,
  budget: UserBudget | undefined,
): { band: Band; reason: string } | undefined {
  if (!budget) return undefined;
  let usage = 0;
  if (budget.maxTasks !== undefined) {
    for (const other of jobs) {
      if (other === job || other.user !== job.user || isJobTerminal(other.state)) continue;
      if (bandOf(other) >= BAND_BATCH) continue;
      const c = other.counts;
      usage += (c[TaskState.PENDING] ?? 0) + (c[TaskState.ASSIGNED] ?? 0) +
        (c[TaskState.BUILDING] ?? 0) + (c[TaskState.RUNNING] ?? 0);
    }
  }
  const requested = requestedBand(job.spec);
  const res = effectiveBand(requested, job.user, budget, usage, job.taskIds.length);
  return res.band !== requested ? { band: res.band, reason: res.reason ?? "" } : undefined;
}

/**
 * The snapshot's resource budgets: those of the users with pending jobs above BATCH, and the
 * usage of every user (computed only when some such user has a resource budget).
 */
export function budgetView(
  jobs: readonly SchedulerJob[],
  budgetOf: (user: string) => UserBudget | undefined,
  usage: () => ReadonlyMap<string, ResourceVec>,
): Pick<ClusterSnapshot, "budgets" | "budgetUsage"> {
  const budgets: Record<string, ResourceBudget> = {};
  for (const j of jobs) {
    const user = j.user ?? "";
    if (j.band >= BAND_BATCH || user in budgets) continue;
    const r = budgetOf(user)?.resources;
    if (r) budgets[user] = r;
  }
  if (Object.keys(budgets).length === 0) return {};
  return { budgets, budgetUsage: Object.fromEntries(usage()) };
}
