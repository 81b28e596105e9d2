/**
 * Workers talking to the controller: registration (re-claiming the attempts a worker lists,
 * failing those it came back without) and heartbeats (liveness, task updates, kill orders for
 * attempts it should not run, reconciliation of what it holds). Each answer is sent only once
 * what it acknowledges is committed (commit.ts).
 * @module
 */
import type {
  HeartbeatRequest,
  RegisterWorkerRequest,
  TaskUpdate,
} from "../rpc/gen/iris/v1/controller_pb.ts";
import { TaskState } from "../rpc/gen/iris/v1/types_pb.ts";
import type { Duration } from "../time.ts";
import { InvalidArgumentError } from "../errors.ts";
import { isTaskActive, isTaskTerminal } from "./job_rules.ts";
import type { Effects } from "./state.ts";
import { noEffects } from "./state.ts";
import { attemptKey, parseAttemptKey, type WorkerRecord } from "./workers.ts";
import { attributesFromProto } from "./convert.ts";
import type { LogStore } from "./logs.ts";
import type { Dispatcher } from "./dispatch.ts";
import { type CommitContext, ensureWritable, flush } from "./commit.ts";
import { holdAttempt } from "./snapshot.ts";

/** What registrations and heartbeats read and change. */
export interface HeartbeatContext extends CommitContext {
  /** Task log lines (and system lines), stored once what they report is committed. */
  readonly logs: Pick<LogStore, "system" | "append">;
  /** Clients are dropped on re-registration; an attempt whose RunTask is in flight is not lost. */
  readonly dispatcher: Pick<Dispatcher, "forget" | "isDispatching">;
  /** The heartbeat interval to tell workers now (it grows with the fleet: heartbeat_rate.ts). */
  workerHeartbeatInterval(): Duration;
  /** Performs the effects of committed transitions (kills, finished jobs). */
  perform(fx: Effects): void;
  requestSchedule(): void;
}

/** An attempt a worker is told to kill. */
export interface AttemptRef {
  taskId: string;
  attemptId: number;
}

/** The answer to a registration. */
export interface RegisterAnswer {
  workerId: string;
  kill: AttemptRef[];
  /** The heartbeat interval the worker keeps from now on. */
  heartbeatIntervalMs: Duration;
}

/** The answer to a heartbeat. */
export interface HeartbeatAnswer {
  reregister: boolean;
  kill: AttemptRef[];
  /** The updates were not applied (the state cannot be written): the worker sends them again. */
  updatesDeferred?: boolean;
  heartbeatIntervalMs?: number;
}

/**
 * Handles a worker's registration. The worker lists the attempts it runs and those that ended
 * without the controller acknowledging their end: both are (re-)claimed. An attempt the
 * controller placed on this worker that it lists in neither is lost (the worker restarted
 * without it): it fails at once and its resources are freed. Returns attempts it should kill.
 */
export function registerWorker(ctx: HeartbeatContext, req: RegisterWorkerRequest): RegisterAnswer {
  if (!req.workerId) throw new InvalidArgumentError("worker_id", "must not be empty");
  if (!req.address) throw new InvalidArgumentError("address", "must not be empty");
  ensureWritable(ctx.write);
  const { jobs, workers } = ctx;
  const now = ctx.clock.now();
  const { worker, isNew } = workers.register({
    workerId: req.workerId,
    address: req.address,
    resources: req.resources,
    attributes: attributesFromProto(req.attributes),
    scaleGroup: req.scaleGroup,
    sliceId: req.sliceId,
  }, now);
  ctx.dispatcher.forget(worker.address);
  const kill: AttemptRef[] = [];
  const listed = new Set<string>();
  const claim = (ref: AttemptRef, running: boolean) => {
    const key = attemptKey(ref.taskId, ref.attemptId);
    listed.add(key);
    const found = jobs.findAttempt(ref.taskId, ref.attemptId);
    if (
      found && isTaskActive(found.attempt.state) && found.attempt.workerId === worker.workerId &&
      isTaskActive(found.task.state) && jobs.currentAttempt(found.task) === found.attempt
    ) {
      // Adopt an attempt that kept running (e.g. across a controller restart), or one that
      // ended and whose final update follows in a heartbeat.
      ctx.reconciler.claimed(key);
      holdAttempt(workers, worker, jobs.job(found.task.jobId), found.task, found.attempt);
    } else if (running) kill.push({ taskId: ref.taskId, attemptId: ref.attemptId });
  };
  for (const ref of req.running) claim(ref, true);
  for (const ref of req.finished) claim(ref, false);
  const fx = noEffects();
  const later: (() => void)[] = [];
  const lost = ctx.reconciler.lostOnRegister(
    worker,
    listed,
    (key) => ctx.dispatcher.isDispatching(key),
    (key) => {
      const { taskId, attemptId } = parseAttemptKey(key);
      return jobs.findAttempt(taskId, attemptId)?.attempt.workerId;
    },
  );
  for (const key of lost) {
    if (workers.release(worker.workerId, key)) fx.released++;
    const { taskId, attemptId } = parseAttemptKey(key);
    const found = jobs.findAttempt(taskId, attemptId);
    if (!found || !isTaskActive(found.attempt.state)) continue;
    const why = `worker ${worker.workerId} came back without attempt ${attemptId} (it restarted)`;
    ctx.log(`${taskId}: ${why}`);
    jobs.attemptEnded(found.task, found.attempt, {
      state: TaskState.WORKER_FAILED,
      error: why,
      finishedAtMs: now,
    }, fx);
    later.push(() => ctx.logs.system(taskId, attemptId, why, now));
  }
  // Acknowledged once durable: on failure nothing above stays and the worker registers again.
  flush(ctx);
  for (const f of later) f();
  ctx.log(
    `worker ${worker.workerId} ${isNew ? "registered" : "re-registered"} at ${worker.address}`,
  );
  ctx.perform(fx);
  ctx.requestSchedule();
  return { workerId: worker.workerId, kill, heartbeatIntervalMs: tellInterval(ctx, worker) };
}

/** What a heartbeat changed: its answer, and what to do once that is committed. */
export interface HeartbeatChange {
  readonly answer: HeartbeatAnswer;
  /** Effects of the committed transitions (kills, finished jobs, freed room). */
  readonly fx?: Effects;
  /** Log lines to store once the updates are committed. */
  readonly later: readonly (() => void)[];
}

/** Handles a heartbeat: task updates, liveness, reconciliation; committed before it returns. */
export function heartbeat(ctx: HeartbeatContext, req: HeartbeatRequest): HeartbeatAnswer {
  const change = applyHeartbeat(ctx, req);
  // The answer acknowledges the updates: only once they are durable (while the state is
  // unwritable, a heartbeat without updates changed nothing and is liveness alone).
  if (change.fx && !ctx.write.unwritable) flush(ctx);
  afterHeartbeat(ctx, change);
  return change.answer;
}

/**
 * Applies a heartbeat to the tables without committing it: the caller commits (alone, or with
 * the other calls of its turn: commit.ts CommitGroup), then runs {@linkcode afterHeartbeat} and
 * only then answers.
 */
export function applyHeartbeat(ctx: HeartbeatContext, req: HeartbeatRequest): HeartbeatChange {
  const { jobs, workers } = ctx;
  const worker = workers.workers.get(req.workerId);
  // A worker known only from the store must re-register (and re-claim its attempts) first.
  if (!worker || worker.reconnecting) return { answer: { reregister: true, kill: [] }, later: [] };
  const now = ctx.clock.now();
  workers.heartbeat(worker, now);
  const heartbeatIntervalMs = tellInterval(ctx, worker);
  // Absent: unchanged since the last one (the worker sends only changes).
  if (req.snapshot) workers.recordSnapshot(worker, req.snapshot);
  // Liveness is noted above; updates wait (kept by the worker, which keeps its heartbeat
  // cadence) until they can be committed.
  if (req.updates.length && ctx.write.unwritable) {
    return {
      answer: { reregister: false, kill: [], updatesDeferred: true, heartbeatIntervalMs },
      later: [],
    };
  }
  const fx = noEffects();
  // Log lines are stored once the updates are committed (a failed commit is resent whole).
  const later: (() => void)[] = [];
  for (const u of req.updates) applyUpdate(ctx, req.workerId, u, fx, later);
  const kill: AttemptRef[] = [];
  // Every attempt the heartbeat mentions, for reconcile.
  const seen = new Set<string>();
  for (const ref of req.running) {
    const key = attemptKey(ref.taskId, ref.attemptId);
    seen.add(key);
    // Held here and not told to stop: no kill, whatever the attempt's state (the common case,
    // decided without looking the attempt up).
    const held = worker.active.get(key);
    if (held && held.state !== TaskState.KILLED) continue;
    const found = jobs.findAttempt(ref.taskId, ref.attemptId);
    // Unknown here, or preempted but still running (a lost kill order): (re)send the kill.
    if (!found || !isTaskActive(found.attempt.state)) {
      kill.push({ taskId: ref.taskId, attemptId: ref.attemptId });
    }
  }
  if (!ctx.write.unwritable) {
    for (const r of req.finished) seen.add(attemptKey(r.taskId, r.attemptId));
    for (const u of req.updates) seen.add(attemptKey(u.taskId, u.attemptId));
    reconcile(ctx, worker, seen, fx, later);
  }
  return { answer: { reregister: false, kill, heartbeatIntervalMs }, fx, later };
}

/** What follows a heartbeat's commit: its log lines, kill orders, finished jobs, a pass. */
export function afterHeartbeat(ctx: HeartbeatContext, change: HeartbeatChange): void {
  for (const f of change.later) f();
  if (!change.fx) return;
  ctx.perform(change.fx);
  if (change.fx.released) ctx.requestSchedule();
}

/** Notes the interval told to `worker` in this answer (its liveness timeout follows it). */
function tellInterval(ctx: HeartbeatContext, worker: WorkerRecord): Duration {
  const interval = ctx.workerHeartbeatInterval();
  // The worker takes it from this answer on: its next heartbeat is due one interval later.
  worker.heartbeatIntervalMs = interval;
  return interval;
}

/**
 * Attempts held on `worker` that it has listed neither as running nor as ended (nor updated) in
 * MISSING_HEARTBEATS (reconcile.ts) consecutive heartbeats, and whose RunTask is not in flight, are
 * lost (e.g. the worker forgot them): their resources are freed and an active one fails as
 * WORKER_FAILED (retried on the preemption budget).
 */
function reconcile(
  ctx: HeartbeatContext,
  worker: WorkerRecord,
  seen: ReadonlySet<string>,
  fx: Effects,
  later: (() => void)[],
): void {
  const now = ctx.clock.now();
  const lost = ctx.reconciler.lostOnHeartbeat(
    worker,
    seen,
    (key) => ctx.dispatcher.isDispatching(key),
  );
  for (const key of lost) {
    if (ctx.workers.release(worker.workerId, key)) fx.released++;
    const { taskId, attemptId } = parseAttemptKey(key);
    const found = ctx.jobs.findAttempt(taskId, attemptId);
    if (!found || !isTaskActive(found.attempt.state)) continue;
    const why = `worker ${worker.workerId} no longer has attempt ${attemptId}`;
    ctx.log(`${taskId}: ${why}`);
    ctx.jobs.attemptEnded(found.task, found.attempt, {
      state: TaskState.WORKER_FAILED,
      error: why,
      finishedAtMs: now,
    }, fx);
    later.push(() => ctx.logs.system(taskId, attemptId, why, now));
  }
}

/** Applies one task update of a heartbeat from `workerId` (ignored if the attempt moved on). */
function applyUpdate(
  ctx: HeartbeatContext,
  workerId: string,
  u: TaskUpdate,
  fx: Effects,
  later: (() => void)[],
): void {
  const { jobs, workers } = ctx;
  const found = jobs.findAttempt(u.taskId, u.attemptId);
  if (found && u.logs.length) later.push(() => ctx.logs.append(u.taskId, u.logs));
  const key = attemptKey(u.taskId, u.attemptId);
  const terminal = isTaskTerminal(u.state);
  if (!found || found.attempt.workerId !== workerId) {
    if (terminal && workers.release(workerId, key)) fx.released++;
    return;
  }
  const { task, attempt } = found;
  if (Object.keys(u.ports).length) jobs.setPorts(task, u.ports);
  if (u.peakMemoryBytes) jobs.notePeakMemory(task, attempt, u.peakMemoryBytes);
  if (terminal) {
    if (workers.release(workerId, key)) fx.released++;
    jobs.attemptEnded(task, attempt, {
      state: u.state,
      exitCode: u.exitCode,
      signal: u.signal,
      error: u.error,
      finishedAtMs: u.finishedAtMs || ctx.clock.now(),
      peakMemoryBytes: u.peakMemoryBytes,
      stderrTail: u.logs.filter((l) => l.stream === "stderr").slice(-20).map((l) => l.text),
    }, fx);
    if (task.state === TaskState.PENDING) {
      const now = ctx.clock.now();
      later.push(() =>
        ctx.logs.system(
          task.taskId,
          attempt.attemptId,
          `attempt ${attempt.attemptId} ended (${TaskState[u.state]}); retrying`,
          now,
        )
      );
    }
  } else if (u.state === TaskState.RUNNING || u.state === TaskState.BUILDING) {
    // A setup slot freed: tasks held back by the building limit need not wait for a tick.
    if (workers.noteAttemptState(workerId, key, u.state)) fx.released++;
    jobs.attemptStarted(task, attempt, u.state, u.startedAtMs || ctx.clock.now(), fx);
  }
}
