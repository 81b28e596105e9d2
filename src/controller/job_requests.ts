/**
 * The job requests that change state: LaunchJob (a job over its user's budget is lowered to
 * BATCH at submit, budgets.ts) and TerminateJob (the job and its children). Each is answered only
 * once committed (commit.ts); while the state cannot be written, only a repeated submit whose job
 * was committed before is answered. A submit to an idle scheduler (nothing else waiting, no
 * burst under way) is placed before that commit, which then holds the job and its placement: no
 * wait for a paced pass, and one commit less on the job's way to a worker (#20).
 * @module
 */
import type { JobSpec } from "../rpc/gen/iris/v1/types_pb.ts";
import { bandAtSubmit, type UserBudget } from "./budgets.ts";
import { type Effects, type JobRecord, noEffects } from "./state.ts";
import { type CommitContext, ensureWritable, flush } from "./commit.ts";
import type { PlannedPass } from "./scheduling_pass.ts";

/** What job requests read and change. */
export interface JobRequestContext extends CommitContext {
  /** The budget of a user (config ones plus those set at run time). */
  readonly accounts: { budgetFor(user: string): UserBudget | undefined };
  /** Performs the effects of committed transitions (kills, finished jobs). */
  perform(fx: Effects): void;
  requestSchedule(): void;
  /**
   * A scheduling pass applied now but not committed, when the scheduler is idle and nothing but
   * job `jobId` waits (undefined otherwise: a paced pass follows a request).
   */
  placeNow?(jobId: string): PlannedPass | undefined;
}

/** A submit applied to the tables, not yet committed. */
export interface LaunchChange {
  readonly res: { jobId: string; created: boolean };
  readonly fx: Effects;
  readonly replicas: number;
  /** The pass that placed the job with its submit, dispatched once both are committed. */
  readonly pass?: PlannedPass;
}

/** Submits a job (idempotent per request id); returns its id and whether it is new. */
export function launchJob(
  ctx: JobRequestContext,
  spec: JobSpec,
  requestId: string,
): { jobId: string; created: boolean } {
  const change = applyLaunch(ctx, spec, requestId);
  // Acknowledged only once committed: a failed write fails the RPC (the ids stay dirty). While
  // the state cannot be written, only an answer already committed gets here.
  if (!ctx.write.unwritable) flush(ctx);
  afterLaunch(ctx, change);
  return change.res;
}

/** The changes of a submit, without committing them (see {@linkcode launchJob}). */
export function applyLaunch(
  ctx: JobRequestContext,
  spec: JobSpec,
  requestId: string,
): LaunchChange {
  const fx = noEffects();
  const replicas = spec.replicas || 1;
  if (ctx.write.unwritable) {
    // A repeated request whose job was committed is still answered.
    const jobId = ctx.jobs.findRequest(spec, requestId, ctx.clock.now());
    if (jobId) return { res: { jobId, created: false }, fx, replicas };
    ensureWritable(ctx.write);
  }
  const res = ctx.jobs.submit(spec, requestId, ctx.clock.now(), fx);
  if (res.created) applyBudget(ctx, ctx.jobs.job(res.jobId));
  const pass = res.created ? ctx.placeNow?.(res.jobId) : undefined;
  return { res, fx, replicas, pass };
}

/**
 * What follows a submit's commit: its log line, its effects, the RunTask of a placement made with
 * it (a commit that failed dispatches nothing: this does not run), else a scheduling pass.
 */
export function afterLaunch(ctx: JobRequestContext, change: LaunchChange): void {
  const { res, fx } = change;
  if (res.created) ctx.log(`job ${res.jobId} submitted (${change.replicas} task(s))`);
  ctx.perform(fx);
  if (change.pass) change.pass.finish();
  else ctx.requestSchedule();
}

/** Terminates a job and its children; returns the ids of the jobs it ended. */
export function terminateJob(ctx: JobRequestContext, jobId: string, reason: string): string[] {
  ensureWritable(ctx.write);
  const fx = noEffects();
  const ids = ctx.jobs.terminate(jobId, reason || "terminated by user", ctx.clock.now(), fx);
  flush(ctx);
  if (ids.length) ctx.log(`terminated ${ids.join(", ")}: ${reason || "by user"}`);
  ctx.perform(fx);
  return ids;
}

/** A job just submitted runs as BATCH (or a lower band) when its user's budget says so. */
function applyBudget(ctx: JobRequestContext, job: JobRecord): void {
  const res = bandAtSubmit(job, ctx.jobs.activeJobsOf(job.user), ctx.accounts.budgetFor(job.user));
  if (!res) return;
  ctx.jobs.setBand(job, res.band, res.reason);
  ctx.log(`job ${job.jobId}: ${res.reason}`);
}
