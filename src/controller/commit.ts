/**
 * The store commit path: every change of the job, endpoint and worker tables is written to the
 * store (store.ts) before it is acknowledged or acted on. When a write fails, the changes not
 * committed are undone (reloaded from the store), the state is marked unwritable and every change
 * is refused with `unavailable` until a probe write passes.
 * @module
 */
import { TaskState } from "../rpc/gen/iris/v1/types_pb.ts";
import { type Clock, ms } from "../time.ts";
import { formatDuration } from "../format.ts";
import { describeError, UnavailableError } from "../errors.ts";
import { isTaskActive } from "./job_rules.ts";
import type { JobTable } from "./state.ts";
import { attemptKey, parseAttemptKey, type WorkerTable } from "./workers.ts";
import type { EndpointTable } from "./endpoints.ts";
import type { StateStore } from "./store.ts";
import type { Reconciler } from "./reconcile.ts";
import { holdAttempt } from "./snapshot.ts";

/** Why and since when the state cannot be written. */
export interface Unwritable {
  readonly sinceMs: number;
  reason: string;
  /** Whether the uncommitted changes were undone (the tables match the store again). */
  reloaded: boolean;
}

/** Whether the state can be written: `unwritable` is set while it cannot. */
export interface WriteStatus {
  unwritable?: Unwritable;
}

/** What the commit path reads and changes. */
export interface CommitContext {
  readonly jobs: JobTable;
  readonly endpoints: EndpointTable;
  readonly workers: WorkerTable;
  /** Attempts whose worker is gone after a rollback wait here to be re-claimed. */
  readonly reconciler: Reconciler;
  /** Durable state; without it nothing is written. */
  readonly store?: StateStore;
  readonly clock: Clock;
  readonly write: WriteStatus;
  log(line: string): void;
}

/** The controller's state cannot be written: the call changed nothing; retry later. */
export function unavailable(reason: string): UnavailableError {
  return new UnavailableError(
    `controller state cannot be written (${reason}); nothing was changed, retry later`,
  );
}

/** Whether the state can be written; while it cannot, `message` says why. */
export function writeHealth(write: WriteStatus): { healthy: boolean; message: string } {
  const u = write.unwritable;
  return u
    ? {
      healthy: false,
      message: `state cannot be written since ${
        new Date(u.sinceMs).toISOString()
      }: ${u.reason}; changes are refused until it can`,
    }
    : { healthy: true, message: "" };
}

/** Throws `unavailable` while the state cannot be written (before anything is changed). */
export function ensureWritable(write: WriteStatus): void {
  if (write.unwritable) throw unavailable(write.unwritable.reason);
}

/**
 * Commits the changes made since the last commit. When the write fails, every change not
 * committed is undone ({@linkcode rollback}), the state is marked unwritable and `unavailable`
 * is thrown.
 */
export function flush(ctx: CommitContext): void {
  const store = ctx.store;
  if (!store) {
    // Memory only: nothing to write, keep the sets small.
    ctx.jobs.clearDirty();
    ctx.endpoints.clearDirty();
    ctx.workers.clearDirty();
    return;
  }
  try {
    store.flush(ctx.jobs, ctx.endpoints, ctx.workers);
  } catch (err) {
    const reason = describeError(err);
    const u = ctx.write.unwritable ??= { sinceMs: ctx.clock.now(), reason, reloaded: false };
    u.reason = reason;
    ctx.log(`writing controller state failed: ${reason}; undoing the uncommitted changes`);
    try {
      rollback(ctx, store);
      u.reloaded = true;
    } catch (reloadErr) {
      u.reloaded = false;
      ctx.log(`reloading controller state failed: ${describeError(reloadErr)}`);
    }
    throw unavailable(reason);
  }
}

/**
 * {@linkcode flush} for paths with no caller to report to (the failure is logged). Returns false
 * when nothing was committed (the changes were undone): the caller must not act on them.
 */
export function tryFlush(ctx: CommitContext): boolean {
  try {
    flush(ctx);
    return true;
  } catch {
    return false;
  }
}

/**
 * Undoes every change that was not committed: reloads jobs and endpoints from the store, then
 * makes the workers' commitments match the reloaded attempts (attempts whose worker is gone
 * wait to be re-claimed, like after a restart). Worker registrations and liveness are not
 * rolled back (they are not part of the durable promise; their rows stay marked to be written).
 */
export function rollback(ctx: CommitContext, store: StateStore): void {
  const { jobs, workers } = ctx;
  jobs.clear();
  store.load(jobs);
  ctx.endpoints.clear();
  store.loadEndpoints(ctx.endpoints);
  for (const w of workers.workers.values()) {
    for (const [key, c] of [...w.active]) {
      const { taskId, attemptId } = parseAttemptKey(key);
      const found = jobs.findAttempt(taskId, attemptId);
      const active = found && isTaskActive(found.attempt.state) &&
        found.attempt.workerId === w.workerId;
      // A committed kill awaits the worker's confirmation: keep holding its resources.
      if (!active && c.state !== TaskState.KILLED) workers.release(w.workerId, key);
    }
  }
  for (const task of jobs.tasks.values()) {
    for (const a of task.attempts) {
      if (!isTaskActive(a.state)) continue;
      const w = workers.workers.get(a.workerId);
      if (w && !w.reconnecting) holdAttempt(workers, w, jobs.job(task.jobId), task, a);
      else ctx.reconciler.awaitClaim(attemptKey(task.taskId, a.attemptId));
    }
  }
}

/**
 * While the state cannot be written: undoes the uncommitted changes if that failed before, then
 * tries a write. Returns true when it passed: the state is writable again and every worker gets a
 * full heartbeat timeout from now (deaths were not recorded meanwhile).
 */
export function probe(ctx: CommitContext): boolean {
  const u = ctx.write.unwritable;
  const store = ctx.store;
  if (!u || !store) return false;
  try {
    if (!u.reloaded) {
      rollback(ctx, store);
      u.reloaded = true;
    }
    store.probe();
  } catch (err) {
    u.reason = describeError(err);
    return false;
  }
  ctx.write.unwritable = undefined;
  const now = ctx.clock.now();
  ctx.workers.extendDeadlines(now);
  ctx.log(`controller state can be written again (after ${formatDuration(ms(now - u.sinceMs))})`);
  return true;
}

/** One change waiting in a {@linkcode CommitGroup}. */
interface Queued {
  /** Applies the change; false when it threw (its caller has the error). */
  apply(): boolean;
  committed(): void;
  failed(err: unknown): void;
}

/**
 * Group commit: changes that must be committed before they are acknowledged (a LaunchJob), run
 * together once the calls that arrived with them got here: each is applied in turn, then all are
 * written in one transaction (one fsync instead of one per call), then each caller gets its
 * answer. Applying and committing happen in one synchronous step, so nothing else sees, reads or
 * acts on a change before it is committed; a failed commit undoes them all (like {@linkcode flush})
 * and fails every call of the group with `unavailable`; a call whose own change throws fails
 * alone (it must leave the tables as they were, as a refused submit does). Without a store there
 * is nothing to share: a change is applied and answered at once.
 */
export class CommitGroup {
  readonly #ctx: CommitContext;
  #queued: Queued[] = [];

  constructor(ctx: CommitContext) {
    this.#ctx = ctx;
  }

  /**
   * Runs `apply` in the next group; `after` runs once the group is committed (effects that must
   * not happen before: logs, kill orders, a scheduling pass). Resolves with `apply`'s result.
   */
  run<T>(apply: () => T, after: (result: T) => void): Promise<T> {
    if (!this.#ctx.store) {
      try {
        const result = apply();
        if (!this.#ctx.write.unwritable) flush(this.#ctx);
        after(result);
        return Promise.resolve(result);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return new Promise<T>((resolve, reject) => {
      // Calls handled in the same turn reach here before the microtask runs.
      if (this.#queued.length === 0) queueMicrotask(() => this.#commit());
      let result: T;
      this.#queued.push({
        apply: () => {
          try {
            result = apply();
            return true;
          } catch (err) {
            reject(err);
            return false;
          }
        },
        committed: () => {
          try {
            after(result);
          } catch (err) {
            this.#ctx.log(`after a commit: ${describeError(err)}`);
          }
          resolve(result);
        },
        failed: reject,
      });
    });
  }

  #commit(): void {
    const group = this.#queued;
    this.#queued = [];
    const applied = group.filter((q) => q.apply());
    try {
      // While the state cannot be written, a change must throw (ensureWritable): what was
      // applied is then only answers committed before.
      if (!this.#ctx.write.unwritable) flush(this.#ctx);
    } catch (err) {
      for (const q of applied) q.failed(err);
      return;
    }
    for (const q of applied) q.committed();
  }
}
