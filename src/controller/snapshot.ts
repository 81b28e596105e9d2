/**
 * The scheduler's input: a {@linkcode ClusterSnapshot} built from the job and worker tables, the
 * reservations and the budgets. Pure over what it is given.
 * @module
 */
import type {
  Band,
  ClusterSnapshot,
  ReservationRequest,
  ResourceVec,
  SchedulerJob,
  SchedulerWorker,
} from "../types.ts";
import { BAND_BATCH } from "../types.ts";
import { bandOf, budgetView, type UserBudget } from "./budgets.ts";
import type { AttemptRecord, JobRecord, JobTable, TaskRecord } from "./state.ts";
import { attemptKey, type WorkerRecord, type WorkerTable } from "./workers.ts";
import { acceleratorKind, constraintsFromProto } from "./convert.ts";
import { isGated, type Reservations } from "./reservations.ts";

/**
 * Default cap of ASSIGNED+BUILDING attempts per worker. A place is held from the placement until
 * the RunTask answer says the attempt runs: a round trip through both event loops plus the setup
 * (27 ms at p50 for a plain command on a loaded 2-core host, #20) for 1–2 ms of the worker's own
 * work, so 8 places held a worker below its rate while its cores waited. 32 covered the round
 * trip, but a batch then waited for the one before it to start; 64 keep the worker's cores busier
 * (docs/performance.md, seventh round).
 */
export const DEFAULT_MAX_BUILDING_PER_WORKER = 64;

/** What {@linkcode clusterSnapshot} reads. */
export interface SnapshotSources {
  readonly jobs: JobTable;
  readonly workers: WorkerTable;
  readonly reservations: Reservations;
  /** The budget of a user; undefined without resource budgets at all (skips the budget view). */
  readonly budgetOf?: (user: string) => UserBudget | undefined;
  /** What each user's active tasks hold (read only when some budget limits resources). */
  readonly usage: () => ReadonlyMap<string, ResourceVec>;
  readonly maxBuildingPerWorker?: number;
}

/** The resources one task of `job` asks for. */
export function taskResources(job: JobRecord) {
  const r = job.spec.resources;
  return {
    cpuMillicores: r?.cpuMillicores ?? 0,
    memoryBytes: r?.memoryBytes ?? 0,
    accelerators: r?.accelerator?.count ?? 0,
  };
}

/**
 * Commits the resources an attempt of `job` holds to `worker`, with who holds it (for the
 * preemption pass); `band` overrides the job's band (a task over its user's budget runs as BATCH).
 */
export function holdAttempt(
  workers: WorkerTable,
  worker: WorkerRecord,
  job: JobRecord,
  task: TaskRecord,
  attempt: AttemptRecord,
  band: Band = bandOf(job),
): void {
  workers.commit(worker, attemptKey(task.taskId, attempt.attemptId), taskResources(job), {
    jobId: job.jobId,
    taskIndex: task.index,
    band,
    gang: !!job.spec.coscheduling?.groupBy,
    sinceMs: attempt.assignedAtMs,
  });
}

/**
 * Each job's scheduler view from the last snapshot: a pass per few placements over a long queue
 * rebuilt the same objects for every waiting job (#20). The spec does not change; the pending
 * indices array is the same object while they do not (JobTable.pendingIndices), and the band is
 * compared, so a cached view is current when both are the same.
 */
const schedulerJobs = new WeakMap<JobRecord, SchedulerJob>();

function schedulerJob(job: JobRecord, pendingTaskIndices: readonly number[], band: Band) {
  const cached = schedulerJobs.get(job);
  if (cached?.pendingTaskIndices === pendingTaskIndices && cached.band === band) return cached;
  const spec = job.spec;
  const r = spec.resources;
  const view: SchedulerJob = {
    jobId: job.jobId,
    resources: taskResources(job),
    accelerator: {
      kind: acceleratorKind(r?.accelerator?.type),
      variant: r?.accelerator?.variant ?? "",
      count: r?.accelerator?.count ?? 0,
    },
    // The constraints of the previous view: the scheduler caches their key by this array.
    constraints: cached?.constraints ?? constraintsFromProto(spec.constraints),
    groupBy: spec.coscheduling?.groupBy || undefined,
    replicas: job.taskIds.length,
    pendingTaskIndices,
    band,
    submittedAt: job.submittedAtMs as SchedulerJob["submittedAt"],
    user: job.user,
  };
  schedulerJobs.set(job, view);
  return view;
}

/**
 * The scheduler's input: healthy workers and jobs with pending tasks, in submission order; with
 * `only`, just those of these jobs that are still pending (a pass over new arrivals,
 * scheduling_pass.ts).
 */
export function clusterSnapshot(s: SnapshotSources, only?: readonly string[]): ClusterSnapshot {
  const jobs: SchedulerJob[] = [];
  const reservations: ReservationRequest[] = [];
  // The most important band with pending tasks; BATCH (nothing to preempt) until one is seen.
  let topBand: Band = BAND_BATCH;
  const queue = s.jobs.pendingJobs();
  for (const jobId of only ?? queue.keys()) {
    if (only && !queue.has(jobId)) continue;
    const job = s.jobs.jobs.get(jobId)!;
    if (isGated(job)) {
      // Gated: the tasks wait until every entry holds a worker.
      reservations.push(s.reservations.request(job));
      continue;
    }
    const band = bandOf(job);
    if (band < topBand) topBand = band;
    jobs.push(schedulerJob(job, s.jobs.pendingIndices(jobId), band));
  }
  // Jobs already running keep their reservation until they end (claims lost to dead workers
  // are not re-made once the gate opened).
  const reservedBy = s.reservations.reservedBy;
  let workers: SchedulerWorker[] = s.workers.schedulerView();
  if (reservedBy.size > 0) {
    workers = workers.map((w) => {
      const holder = reservedBy.get(w.id);
      return holder === undefined ? w : { ...w, reservedFor: holder };
    });
  }
  return {
    workers,
    jobs,
    activeByUser: activeByUser(jobs, s.jobs, s.workers),
    maxBuildingPerWorker: s.maxBuildingPerWorker ?? DEFAULT_MAX_BUILDING_PER_WORKER,
    // Only what a pending job outranks: nothing at all while every pending job is BATCH.
    running: topBand < BAND_BATCH ? s.workers.preemptible(topBand) : [],
    reservations,
    ...(s.budgetOf ? budgetView(jobs, s.budgetOf, s.usage) : {}),
  };
}

/**
 * Active tasks per band and user, for fair turns between users in a band (only computed when
 * some band has pending jobs of more than one user).
 */
export function activeByUser(
  jobs: readonly SchedulerJob[],
  table: JobTable,
  workers: WorkerTable,
): ClusterSnapshot["activeByUser"] {
  const firstUser = new Map<Band, string>();
  let shared = false;
  for (const j of jobs) {
    const u = firstUser.get(j.band);
    if (u === undefined) firstUser.set(j.band, j.user ?? "");
    else if (u !== (j.user ?? "")) shared = true;
  }
  if (!shared) return undefined;
  const out: Partial<Record<Band, Record<string, number>>> = {};
  for (const w of workers.workers.values()) {
    for (const c of w.active.values()) {
      const h = c.holder;
      const user = h && table.jobs.get(h.jobId)?.user;
      if (!h || user === undefined) continue;
      const byUser = out[h.band] ??= {};
      byUser[user] = (byUser[user] ?? 0) + 1;
    }
  }
  return out;
}
