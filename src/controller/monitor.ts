/**
 * The liveness monitor: one tick per heartbeat interval probes an unwritable store (commit.ts),
 * notes stalls of the controller itself, declares workers dead that missed their heartbeats
 * (liveness.ts keeps the bookkeeping), fails attempts no worker re-claimed after a restart, and
 * asks for a scheduling pass while tasks are pending. A dead worker's attempts are retried.
 * @module
 */
import { TaskState } from "../rpc/gen/iris/v1/types_pb.ts";
import type { Duration } from "../time.ts";
import { formatDuration } from "../format.ts";
import { NotFoundError } from "../errors.ts";
import { isTaskActive } from "./job_rules.ts";
import { type Effects, noEffects } from "./state.ts";
import { parseAttemptKey } from "./workers.ts";
import type { Dispatcher } from "./dispatch.ts";
import type { Liveness } from "./liveness.ts";
import type { Reservations } from "./reservations.ts";
import type { TransactionInput } from "./transactions.ts";
import { type CommitContext, probe, tryFlush } from "./commit.ts";
import { anyPending } from "./scheduling_pass.ts";

/** What the monitor reads and changes. */
export interface MonitorContext extends CommitContext {
  readonly liveness: Liveness;
  /** How often the monitor ticks (the configured heartbeat interval). */
  readonly heartbeatInterval: Duration;
  /** A dead worker's client is dropped. */
  readonly dispatcher: Pick<Dispatcher, "forget">;
  /** A dead worker no longer holds reservation entries. */
  readonly reservations: Pick<Reservations, "workerGone">;
  /** Worker deaths are recorded as transactions. */
  readonly transactions: { record(input: TransactionInput): void };
  /** Called when a worker is declared dead. */
  readonly onWorkerDead?: (workerId: string, sliceId: string) => void;
  /** Performs the effects of committed transitions (kills, finished jobs). */
  perform(fx: Effects): void;
  requestSchedule(): void;
}

/**
 * Declares a worker dead (or, with `scaleDown`, removed by a planned scale-down): its attempts
 * become WORKER_FAILED and are retried elsewhere.
 * @throws NotFoundError for an unknown worker
 */
export function workerDead(
  ctx: MonitorContext,
  workerId: string,
  reason: string,
  options: { scaleDown?: boolean } = {},
): void {
  const worker = ctx.workers.workers.get(workerId);
  if (!worker) throw new NotFoundError(`No worker ${workerId}`);
  if (ctx.write.unwritable) {
    // Cannot be recorded now; its heartbeats have stopped, so the monitor declares it later.
    ctx.log(`worker ${workerId} ${reason}: not declared dead while the state is unwritable`);
    return;
  }
  const keys = ctx.workers.remove(workerId);
  ctx.dispatcher.forget(worker.address);
  ctx.reconciler.forgetWorker(workerId);
  ctx.reservations.workerGone(workerId);
  // A planned scale-down is not a failure: say so, so the log does not read like one.
  ctx.log(
    options.scaleDown
      ? `worker ${workerId} removed: ${reason}`
      : `worker ${workerId} declared dead: ${reason}`,
  );
  ctx.transactions.record({
    action: "worker_dead",
    entity: workerId,
    user: "controller",
    details: reason,
  });
  const fx = noEffects();
  for (const key of keys) {
    const { taskId, attemptId } = parseAttemptKey(key);
    const found = ctx.jobs.findAttempt(taskId, attemptId);
    if (!found) continue;
    ctx.jobs.attemptEnded(found.task, found.attempt, {
      state: TaskState.WORKER_FAILED,
      error: `worker ${workerId} ${reason}`,
      finishedAtMs: ctx.clock.now(),
    }, fx);
  }
  if (!tryFlush(ctx)) return;
  ctx.perform(fx);
  ctx.onWorkerDead?.(workerId, worker.sliceId);
  ctx.requestSchedule();
}

/** The monitor: one tick per heartbeat interval until `signal` aborts. */
export async function monitorLoop(ctx: MonitorContext, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    try {
      await ctx.clock.sleep(ctx.heartbeatInterval, signal);
    } catch {
      return;
    }
    monitorTick(ctx);
  }
}

/**
 * One liveness tick: probes an unwritable store, notes a stall of the controller itself,
 * declares workers dead that missed their heartbeats, fails attempts not re-claimed after the
 * re-claim grace, and schedules while tasks are pending.
 */
export function monitorTick(ctx: MonitorContext): void {
  if (ctx.write.unwritable) {
    // Nothing can be recorded (deaths included) until the state can be written again.
    if (probe(ctx)) ctx.requestSchedule();
    if (ctx.write.unwritable) return;
  }
  const now = ctx.clock.now();
  const stall = ctx.liveness.tick();
  if (stall !== undefined) {
    ctx.log(
      `controller was blocked for ${
        formatDuration(stall)
      }; worker heartbeat deadlines restart from now`,
    );
  }
  const inGrace = ctx.liveness.inGrace(now);
  for (const due of ctx.liveness.due(ctx.workers, now)) {
    workerDead(ctx, due.workerId, due.reason);
  }
  if (ctx.reconciler.unclaimedCount && !inGrace && !ctx.write.unwritable) failUnclaimed(ctx);
  if (anyPending(ctx)) ctx.requestSchedule();
}

/**
 * After a restart: attempts loaded as active whose worker did not re-claim them within the
 * re-claim grace are WORKER_FAILED and retried under the usual budget.
 */
function failUnclaimed(ctx: MonitorContext): void {
  const fx = noEffects();
  for (const key of ctx.reconciler.takeUnclaimed()) {
    const { taskId, attemptId } = parseAttemptKey(key);
    const found = ctx.jobs.findAttempt(taskId, attemptId);
    if (!found || !isTaskActive(found.attempt.state)) continue;
    if (ctx.workers.workers.get(found.attempt.workerId)?.active.has(key)) continue;
    ctx.log(`attempt ${attemptId} of ${taskId} was not re-claimed by its worker after restart`);
    ctx.jobs.attemptEnded(found.task, found.attempt, {
      state: TaskState.WORKER_FAILED,
      error: `worker ${found.attempt.workerId} did not re-claim the attempt after a restart`,
      finishedAtMs: ctx.clock.now(),
    }, fx);
  }
  if (!tryFlush(ctx)) return;
  ctx.perform(fx);
  ctx.requestSchedule();
}
