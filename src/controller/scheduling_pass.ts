/**
 * The scheduling pass: the loop that applies the pure scheduler's plan (scheduler/). It expires
 * attempts that waited too long to be scheduled, builds the snapshot (of part of the queue when
 * that decides as the whole, see {@linkcode PassMemo}), runs `schedule`, records
 * reservation claims, placements, pending reasons and preemptions, commits them (commit.ts) and
 * only then dispatches the placed attempts (dispatch.ts) and performs the kill orders.
 * @module
 */
import { JobState, TaskState } from "../rpc/gen/iris/v1/types_pb.ts";
import { describeError } from "../errors.ts";
import { isConnectionFailure } from "../rpc/mod.ts";
import {
  type Band,
  BAND_BATCH,
  type ClusterSnapshot,
  type PendingReasonData,
  type SchedulePlan,
} from "../types.ts";
import { bandOf } from "./budgets.ts";
import { isJobTerminal, isTaskActive } from "./job_rules.ts";
import { type Effects, type JobRecord, noEffects } from "./state.ts";
import { attemptKey } from "./workers.ts";
import type { LogStore } from "./logs.ts";
import type { TransactionInput } from "./transactions.ts";
import { gateReason, isGated, type Reservations } from "./reservations.ts";
import { expireScheduling } from "./scheduling_timeouts.ts";
import type { Dispatcher, Placed } from "./dispatch.ts";
import { plainSignature, schedule } from "./scheduler/scheduler.ts";
import { holdAttempt } from "./snapshot.ts";
import { type CommitContext, tryFlush } from "./commit.ts";

/** What a scheduling pass reads and changes. */
export interface SchedulingPassContext extends CommitContext {
  readonly logs: Pick<LogStore, "system">;
  /** Preemptions are recorded as transactions. */
  readonly transactions: { record(input: TransactionInput): void };
  readonly reservations: Reservations;
  readonly dispatcher: Pick<Dispatcher, "dispatchJob" | "kill">;
  /** Environment every task gets (before the job's own env). */
  readonly taskEnv?: Readonly<Record<string, string>>;
  /** The URL tasks use to reach the controller. */
  controllerUrl(): string;
  /**
   * The scheduler's input (snapshot.ts); with `only`, of these pending jobs only, or of all (the
   * pass then reads the whole queue).
   */
  snapshot(only?: readonly string[]): ClusterSnapshot;
  /** Called after each pass with the plan and its snapshot (the autoscaler reads it). */
  readonly onSchedule?: (plan: SchedulePlan, snapshot: ClusterSnapshot) => void;
  /** Asks for another pass soon (coalesced). */
  requestSchedule(): void;
}

/** Runs one scheduling pass now: snapshot → plan → commit → dispatch. */
export function scheduleOnce(ctx: SchedulingPassContext): SchedulePlan {
  const pass = planPass(ctx);
  if (!pass) return { assignments: [], unplaced: [] };
  // Placements are durable before any RunTask leaves: a failed commit dispatches nothing.
  if (!tryFlush(ctx)) return { ...pass.plan, assignments: [], preemptions: [] };
  return pass.finish();
}

/** A pass applied to the state but not yet committed. */
export interface PlannedPass {
  readonly plan: SchedulePlan;
  /** Once committed: sends RunTask for the placements, performs the effects. */
  finish(): SchedulePlan;
}

/**
 * A pass up to its commit: snapshot → plan → the state changed (placements, pending reasons,
 * preemptions). The caller commits, then calls `finish`; a commit that failed finishes nothing.
 * Undefined when there is nothing to do.
 */
export function planPass(ctx: SchedulingPassContext): PlannedPass | undefined {
  // Nothing is placed while placements cannot be committed.
  if (ctx.write.unwritable) return undefined;
  // Nothing pending and nobody reading the passes: skip the snapshot of a large fleet (#20).
  if (!ctx.onSchedule && !anyPending(ctx)) return undefined;
  const { jobs, workers } = ctx;
  const now = ctx.clock.now();
  const fx = noEffects();
  expireScheduling(jobs, now, fx);
  const arrivals = jobs.takeArrivals();
  let snapshot: ClusterSnapshot;
  let plan: SchedulePlan;
  const memo = memos.get(jobs);
  const unchanged = memo && arrivalsOnly(ctx, memo, arrivals);
  if (unchanged && !unchanged.plan) return undefined;
  if (unchanged?.plan) ({ snapshot, plan } = unchanged.plan);
  else {
    snapshot = ctx.snapshot();
    plan = schedule(snapshot);
  }
  for (const c of plan.claims ?? []) claim(ctx, c.jobId, c.entryIndex, c.workerId);
  if (plan.claims?.length) ctx.reservations.save();
  const byJob = new Map<string, Placed[]>();
  for (const a of plan.assignments) {
    const worker = workers.workers.get(a.workerId);
    const job = jobs.jobs.get(a.jobId);
    if (!worker || !job) continue;
    const task = jobs.task(job.taskIds[a.taskIndex]!);
    const attempt = jobs.assign(task.taskId, worker.workerId, now);
    // Over its user's resource budget, the task runs as BATCH (a.band).
    holdAttempt(workers, worker, job, task, attempt, a.band || bandOf(job));
    let list = byJob.get(job.jobId);
    if (!list) byJob.set(job.jobId, list = []);
    list.push({ task, attempt });
  }
  for (const u of plan.unplaced) jobs.setPendingReason(u.jobId, u.reason);
  for (const p of plan.preemptions ?? []) {
    const job = jobs.jobs.get(p.jobId);
    const task = job && jobs.tasks.get(job.taskIds[p.taskIndex]!);
    if (task && jobs.preempt(task, p.reason, now, fx)) {
      ctx.logs.system(task.taskId, jobs.currentAttempt(task)!.attemptId, p.reason, now);
      ctx.log(`task ${task.taskId} on ${p.workerId}: ${p.reason}`);
      ctx.transactions.record({
        action: "preempt",
        entity: task.taskId,
        user: "scheduler",
        details: `on ${p.workerId}: ${p.reason}`,
      });
    }
  }
  // Every gated pending job is a reservation request of the snapshot: none, nothing to explain.
  if (snapshot.reservations?.length) gateReasons(ctx);
  rememberPass(ctx, snapshot, plan, unchanged ? memo : undefined);
  return {
    plan,
    finish() {
      for (const [jobId, placed] of byJob) dispatchJob(ctx, jobs.job(jobId), placed);
      performEffects(ctx, fx);
      ctx.onSchedule?.(plan, snapshot);
      return plan;
    },
  };
}

/**
 * What a pass left behind, for the next. While the queue did not change but for new jobs at its
 * end, every job the pass left waiting has the signature (plainSignature: what decides where a
 * job may go and why it waits) and the reason of one of `reasons`' jobs, the oldest waiting of
 * its signature. The next pass may then look at the head of the queue, those jobs and the new
 * ones only (#20): capacity only shrinks during a pass, so a job after one of its signature that
 * could not be placed in full places nothing either, and keeps its reason while that one's is
 * the same. See {@linkcode arrivalsOnly}.
 */
interface PassMemo {
  readonly queueChanges: number;
  readonly workerVersion: number;
  /** The snapshot's building limit per worker (0: none). */
  readonly buildingLimit: number;
  /** The most important band of the jobs left waiting (BATCH when none). */
  readonly topBand: Band;
  /** The band and user of every job left waiting, when they are all the same. */
  readonly uniform?: { readonly band: Band; readonly user: string };
  /** The oldest waiting job of each signature, with its reason. */
  readonly reasons: ReadonlyMap<string, PendingReasonData>;
}

/** The last pass's memo per job table (none while it cannot be trusted). */
const memos = new WeakMap<object, PassMemo>();

/**
 * Jobs at the head of the queue a pass over arrivals looks at once the workers changed, at most:
 * no more than the free building slots can take, plus one (see {@linkcode headSize}).
 */
export const QUEUE_HEAD = 64;

/**
 * How many jobs at the head of the queue a pass over arrivals looks at once the workers changed.
 * The pass decides as the whole queue whatever it reads (arrivalsOnly checks that it did); a head
 * placed in full sends it back to the whole queue. A pass places at most one task per free
 * building slot, so a head one longer than those slots keeps a job waiting: a few jobs, not
 * QUEUE_HEAD, while the workers are busy building what the last passes placed (#20).
 */
function headSize(ctx: SchedulingPassContext, buildingLimit: number): number {
  if (buildingLimit <= 0) return QUEUE_HEAD;
  return Math.min(QUEUE_HEAD, ctx.workers.buildingRoom(buildingLimit) + 1);
}

/**
 * Notes what a pass left, when the next may build on it: nobody reads the whole plan
 * (onSchedule), there are no reservations and no resource budgets (which move jobs between
 * bands), and nothing a waiting job could preempt runs (counting this pass's placements).
 * `older`: the memo a pass over arrivals built on (its snapshot held a job of each of its
 * signatures that still waits).
 */
function rememberPass(
  ctx: SchedulingPassContext,
  snapshot: ClusterSnapshot,
  plan: SchedulePlan,
  older: PassMemo | undefined,
): void {
  memos.delete(ctx.jobs);
  if (
    ctx.onSchedule || snapshot.reservations?.length || ctx.reservations.reservedBy.size > 0 ||
    snapshot.budgets || plan.preemptions?.length || plan.claims?.length
  ) return;
  // The snapshot's jobs include those placed in full: more than waits, which only errs safe.
  let topBand = older?.topBand ?? BAND_BATCH;
  const first = snapshot.jobs[0];
  let uniform = older ? older.uniform : first && { band: first.band, user: first.user ?? "" };
  for (const job of snapshot.jobs) {
    if (job.band < topBand) topBand = job.band;
    if (uniform && (job.band !== uniform.band || (job.user ?? "") !== uniform.user)) {
      uniform = undefined;
    }
  }
  if (ctx.workers.anyPreemptible(topBand)) return;
  // The first waiting job per reason object: the scheduler shares one between the jobs of a
  // signature, and lists them in band, then queue order.
  const reasons = new Map<string, PendingReasonData>();
  const seen = new Set<PendingReasonData>();
  let last: PendingReasonData | undefined;
  for (const u of plan.unplaced) {
    if (u.reason === last) continue;
    last = u.reason;
    if (seen.has(u.reason)) continue;
    seen.add(u.reason);
    reasons.set(u.jobId, u.reason);
  }
  memos.set(ctx.jobs, {
    queueChanges: ctx.jobs.queueChanges,
    workerVersion: ctx.workers.version,
    buildingLimit: Math.max(0, snapshot.maxBuildingPerWorker ?? 0),
    topBand,
    uniform,
    reasons,
  });
}

/**
 * A pass over part of the queue when it decides as one over the whole queue: the last pass's memo
 * holds (the queue changed only by new jobs), and the pass looks at the head of the queue (once
 * the workers changed), the memo's jobs and the new jobs. It decides the same when it looked at
 * every waiting job, or else when it preempts and claims nothing, each of the memo's signatures
 * has a job it looked at that could not be placed in full (so the jobs it did not look at, all
 * after that one, place nothing), with the reason the jobs not looked at have, and, if it placed
 * anything, all waiting jobs are of one band and user (queue order is placement order).
 * Undefined: a pass over the whole queue is needed. `plan` undefined: nothing changed at all.
 */
function arrivalsOnly(
  ctx: SchedulingPassContext,
  memo: PassMemo,
  arrivals: readonly string[],
):
  | { plan?: { snapshot: ClusterSnapshot; plan: SchedulePlan } }
  | undefined {
  const { jobs, workers } = ctx;
  if (
    ctx.onSchedule || memo.queueChanges !== jobs.queueChanges ||
    ctx.reservations.reservedBy.size > 0
  ) return undefined;
  const sameWorkers = memo.workerVersion === workers.version;
  if (!sameWorkers && workers.anyPreemptible(memo.topBand)) return undefined;
  const queue = jobs.pendingJobs();
  const present = arrivals.filter((id) => queue.has(id));
  // Nothing changed at all: the last pass's decisions stand.
  if (sameWorkers && present.length === 0) return {};
  const head = sameWorkers ? 0 : headSize(ctx, memo.buildingLimit);
  // A short queue costs less read whole than checked.
  if (!sameWorkers && queue.size <= 2 * head) return undefined;
  // In queue order: the head, the memo's jobs (oldest of their signature), the new jobs.
  const only = new Set<string>();
  if (!sameWorkers) {
    for (const id of queue.keys()) {
      if (only.size >= head) break;
      only.add(id);
    }
  }
  for (const id of memo.reasons.keys()) only.add(id);
  const arrived = new Set(present);
  for (const id of present) only.add(id);
  const snapshot = ctx.snapshot([...only]);
  if (
    snapshot.jobs.length !== only.size || snapshot.running?.length ||
    snapshot.reservations?.length || snapshot.budgets
  ) return undefined;
  const plan = schedule(snapshot);
  if (plan.claims?.length || plan.preemptions?.length) return undefined;
  if (only.size === queue.size) return { plan: { snapshot, plan } };
  const { uniform } = memo;
  if (
    plan.assignments.length > 0 &&
    (!uniform ||
      snapshot.jobs.some((j) => j.band !== uniform.band || (j.user ?? "") !== uniform.user))
  ) return undefined;
  // The reason of each signature, from a job looked at that waited before this pass.
  const views = new Map(snapshot.jobs.map((j) => [j.jobId, j]));
  const stuck = new Map<string, PendingReasonData>();
  for (const u of plan.unplaced) {
    if (!arrived.has(u.jobId)) stuck.set(plainSignature(views.get(u.jobId)!), u.reason);
  }
  for (const [jobId, reason] of memo.reasons) {
    const now = stuck.get(plainSignature(views.get(jobId)!));
    if (!now || !sameReason(now, reason)) return undefined;
  }
  return { plan: { snapshot, plan } };
}

function sameReason(a: PendingReasonData, b: PendingReasonData): boolean {
  return a.code === b.code && a.message === b.message &&
    a.workersConsidered === b.workersConsidered;
}

/** Whether any job has a pending task. */
export function anyPending(ctx: Pick<CommitContext, "jobs">): boolean {
  return ctx.jobs.pendingJobs().size > 0;
}

/** Performs the effects of committed transitions: kill orders, finished jobs, freed room. */
export function performEffects(ctx: SchedulingPassContext, fx: Effects): void {
  for (const k of fx.kills) {
    const worker = ctx.workers.workers.get(k.workerId);
    if (!worker) continue;
    ctx.workers.markStopping(k.workerId, attemptKey(k.taskId, k.attemptId));
    ctx.dispatcher.kill(worker.address, k);
  }
  // Workers a finished job held for its reservation are free for other jobs from now on.
  let freed = false;
  for (const jobId of fx.finishedJobs) {
    if (ctx.reservations.release(jobId)) freed = true;
    const job = ctx.jobs.jobs.get(jobId);
    if (job) {
      ctx.log(
        `job ${jobId} finished: ${
          job.state === JobState.SUCCEEDED ? "succeeded" : job.error || "ended"
        }`,
      );
    }
  }
  if (fx.released || freed) ctx.requestSchedule();
}

/** Records that a reservation entry of a job holds a worker; a complete one opens its gate. */
function claim(
  ctx: SchedulingPassContext,
  jobId: string,
  entryIndex: number,
  workerId: string,
): void {
  const job = ctx.jobs.jobs.get(jobId);
  if (!job || isJobTerminal(job.state)) return;
  if (ctx.reservations.claim(job, entryIndex, workerId)) {
    ctx.jobs.openReservationGate(job);
    ctx.log(`reservation of ${jobId} complete: its tasks may start`);
    ctx.requestSchedule();
  }
}

/** Pending reasons of jobs held back by their reservation. */
function gateReasons(ctx: SchedulingPassContext): void {
  const { jobs } = ctx;
  for (const jobId of jobs.pendingJobs().keys()) {
    const job = jobs.jobs.get(jobId)!;
    if (!isGated(job)) continue;
    const reason = gateReason(ctx.reservations.progress(job), ctx.workers.workers.size);
    jobs.setPendingReason(jobId, reason);
  }
}

/** Sends RunTask for the attempts placed for one job. */
function dispatchJob(ctx: SchedulingPassContext, job: JobRecord, placed: readonly Placed[]): void {
  ctx.dispatcher.dispatchJob(
    {
      jobs: ctx.jobs,
      workers: ctx.workers,
      endpoints: ctx.endpoints,
      baseEnv: ctx.taskEnv,
      controllerUrl: ctx.controllerUrl(),
    },
    job,
    placed,
    (taskId, attemptId, workerId, err) => dispatchFailed(ctx, taskId, attemptId, workerId, err),
  );
}

/** A RunTask failed or was refused: the attempt fails (WORKER_FAILED) and is retried. */
function dispatchFailed(
  ctx: SchedulingPassContext,
  taskId: string,
  attemptId: number,
  workerId: string,
  err: unknown,
): void {
  const found = ctx.jobs.findAttempt(taskId, attemptId);
  if (!found || !isTaskActive(found.attempt.state)) return;
  ctx.log(
    `dispatch of ${taskId} attempt ${attemptId} to ${workerId} failed: ${describeError(err)}`,
  );
  const fx = noEffects();
  ctx.workers.release(workerId, attemptKey(taskId, attemptId));
  const worker = ctx.workers.workers.get(workerId);
  if (worker && isConnectionFailure(err)) {
    ctx.workers.unreachable(worker, "RunTask found no connection");
  }
  ctx.jobs.attemptEnded(found.task, found.attempt, {
    state: TaskState.WORKER_FAILED,
    error: `dispatch to worker ${workerId} failed: ${describeError(err)}`,
    finishedAtMs: ctx.clock.now(),
  }, fx);
  if (!tryFlush(ctx)) return;
  performEffects(ctx, fx);
  ctx.requestSchedule();
}
