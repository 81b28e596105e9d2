/**
 * The controller loop: the tick and the wiring. It applies RPC events to the job and worker
 * tables, runs the pure scheduler over a snapshot (snapshot.ts), commits the plan, dispatches
 * attempts to workers (dispatch.ts) and performs the effects transitions return (kills). Each
 * concern lives in its own module: reconciliation (reconcile.ts), liveness (liveness.ts),
 * reservations (reservations.ts), the task environment (task_env.ts), scheduling timeouts
 * (scheduling_timeouts.ts) and budgets (budgets.ts). It holds no placement or scaling logic.
 * @module
 */
import type {
  HeartbeatRequest,
  RegisterWorkerRequest,
  TaskUpdate,
} from "../rpc/gen/iris/v1/controller_pb.ts";
import {
  type JobSpec,
  JobState,
  type JobStatus,
  TaskState,
  type TaskStatus,
} from "../rpc/gen/iris/v1/types_pb.ts";
import type { WorkerClient } from "../rpc/mod.ts";
import { type Clock, type Duration, ms, seconds, systemClock } from "../time.ts";
import { formatDuration } from "../format.ts";
import { describeError, InvalidArgumentError, NotFoundError, UnavailableError } from "../errors.ts";
import type { Band, ClusterSnapshot, SchedulePlan } from "../types.ts";
import { bandAtSubmit, bandOf, type UserBudget } from "./budgets.ts";
import { isJobTerminal, isTaskActive, isTaskTerminal } from "./job_rules.ts";
import {
  type AttemptRecord,
  type Effects,
  type JobRecord,
  JobTable,
  noEffects,
  type TaskRecord,
} from "./state.ts";
import { attemptKey, parseAttemptKey, type WorkerRecord, WorkerTable } from "./workers.ts";
import { attributesFromProto } from "./convert.ts";
import { LogStore, type LogStoreOptions } from "./logs.ts";
import { EndpointTable } from "./endpoints.ts";
import { schedule } from "./scheduler/scheduler.ts";
import { Accounts, usageByUser, type UserUsage } from "./accounts.ts";
import type { StateStore } from "./store.ts";
import { TransactionLog } from "./transactions.ts";
import { gateReason, isGated, Reservations } from "./reservations.ts";
import { expireScheduling } from "./scheduling_timeouts.ts";
import { Dispatcher, type Placed } from "./dispatch.ts";
import { Liveness } from "./liveness.ts";
import { Reconciler } from "./reconcile.ts";
import { clusterSnapshot, taskResources } from "./snapshot.ts";
import type { ControllerCore } from "./core.ts";
import type { AutoscalerHost } from "./autoscaler/runner.ts";
import { jobStatus, recentAttempts, taskStatus } from "./convert.ts";
import { heartbeatIntervalFor } from "./heartbeat_rate.ts";

/** Options for {@linkcode Controller}. */
export interface ControllerOptions {
  clock?: Clock;
  /** The transactions log (transactions.ts). @default a memory-only one */
  transactions?: TransactionLog;
  /** How often workers heartbeat. @default 1s */
  heartbeatInterval?: Duration;
  /** Missed heartbeats before a worker is declared dead. @default 3 */
  heartbeatFailureThreshold?: number;
  /**
   * Heartbeats per second the controller plans for: the interval told to workers grows with the
   * fleet to stay under it (heartbeat_rate.ts). @default 500
   */
  heartbeatMaxRate?: number;
  /** Max ASSIGNED+BUILDING attempts per worker. @default 8 */
  maxBuildingPerWorker?: number;
  /** Environment every task gets (before the job's own env). */
  taskEnv?: Record<string, string>;
  /** The controller's own log lines. */
  log?: (line: string) => void;
  /** Builds a client for a worker address (tests inject fakes). */
  workerClientFactory?: (address: string) => WorkerClient;
  /** Called after each scheduling pass with the plan and its snapshot (the autoscaler reads it). */
  onSchedule?: (plan: SchedulePlan, snapshot: ClusterSnapshot) => void;
  /** Called when a worker is declared dead. */
  onWorkerDead?: (workerId: string, sliceId: string) => void;
  /**
   * Durable state (store.ts): loaded into the job table on construction, and written after every
   * mutation (a LaunchJob returns only after its job is committed).
   */
  store?: StateStore;
  /** Per-user budgets (budgets.ts): over budget, a job runs as BATCH. */
  userBudgets?: readonly UserBudget[];
  /** Budgets set at run time on top of userBudgets (accounts.ts). @default from userBudgets */
  accounts?: Accounts;
  /** Task log memory bounds, files and retention (logs.ts). @default memory only, defaults */
  logs?: LogStoreOptions;
  /**
   * Longest wait between a worker's reconnect attempts (before ±20 % jitter); sent to workers
   * when they register. @default 5s
   */
  workerReconnectMax?: Duration;
  /**
   * After a restart, attempts wait for their worker to re-claim them for workerReconnectMax × 1.2
   * + reclaimMargin before they are declared lost. @default 3s
   */
  reclaimMargin?: Duration;
}

/** Default longest wait between a worker's reconnect attempts. */
export const DEFAULT_WORKER_RECONNECT_MAX = seconds(5);
/** Default margin of the re-claim grace after a restart. */
export const DEFAULT_RECLAIM_MARGIN = seconds(3);
/** The reporter's backoff jitter (src/time.ts Backoff default): delays reach max × (1 + this). */
const RECONNECT_JITTER = 0.2;

/** The controller's state cannot be written: the call changed nothing; retry later. */
function unavailable(reason: string): UnavailableError {
  return new UnavailableError(
    `controller state cannot be written (${reason}); nothing was changed, retry later`,
  );
}

/**
 * The controller: state + loops. RPC handlers (service.ts) see it as a
 * {@linkcode ControllerCore}, the autoscaler runner as an {@linkcode AutoscalerHost}.
 */
export class Controller implements ControllerCore, AutoscalerHost {
  readonly jobs = new JobTable();
  readonly workers = new WorkerTable();
  readonly logs: LogStore;
  readonly endpoints = new EndpointTable();
  readonly clock: Clock;
  /** Per-user budgets: config ones plus those set at run time. */
  readonly accounts: Accounts;
  readonly heartbeatInterval: Duration;
  readonly startedAtMs: number;
  /** The URL tasks use to reach the controller; set once the server listens. */
  url = "";
  readonly recentLogs: string[] = [];
  /** Who did what: submits, cancels, scale-ups, preemptions, worker deaths, execs. */
  readonly transactions: TransactionLog;
  readonly #opts: ControllerOptions;
  readonly #abort = new AbortController();
  #scheduleQueued = false;
  #monitor?: Promise<void>;
  /** Calls to workers: RunTask, KillTask, and their clients. */
  readonly #dispatcher: Dispatcher;
  /** Heartbeat deadlines, stalls of the controller itself, the re-claim grace. */
  readonly #liveness: Liveness;
  /** Attempts awaiting re-claim, and those missing from their worker's heartbeats. */
  readonly #reconciler = new Reconciler();
  /** Reservation claims and the workers they hold. */
  readonly #reservations: Reservations;
  /** Set while the state cannot be written: the controller refuses changes until a probe passes. */
  #unwritable?: { readonly sinceMs: number; reason: string; reloaded: boolean };
  /** Longest worker reconnect delay (before jitter). */
  readonly workerReconnectMax: Duration;
  /** How long attempts wait after a restart for their worker to re-claim them. */
  reclaimGrace: Duration;

  constructor(options: ControllerOptions = {}) {
    this.#opts = options;
    this.accounts = options.accounts ?? new Accounts(options.userBudgets ?? []);
    this.clock = options.clock ?? systemClock;
    this.heartbeatInterval = options.heartbeatInterval ?? seconds(1);
    this.workerReconnectMax = options.workerReconnectMax ?? DEFAULT_WORKER_RECONNECT_MAX;
    this.reclaimGrace = ms(
      Math.ceil(this.workerReconnectMax * (1 + RECONNECT_JITTER)) +
        (options.reclaimMargin ?? DEFAULT_RECLAIM_MARGIN),
    );
    this.startedAtMs = this.clock.now();
    this.transactions = options.transactions ?? new TransactionLog({ log: (l) => this.log(l) });
    this.#dispatcher = new Dispatcher({
      clientFactory: options.workerClientFactory,
      log: (line) => this.log(line),
      onLeftSetup: (workerId, key) => {
        if (this.workers.noteAttemptState(workerId, key, TaskState.RUNNING)) this.requestSchedule();
      },
    });
    this.#liveness = new Liveness({
      clock: this.clock,
      heartbeatInterval: this.heartbeatInterval,
      failureThreshold: options.heartbeatFailureThreshold ?? 3,
      reclaimGrace: this.reclaimGrace,
    });
    this.#reservations = new Reservations({
      save: (claims) => this.accounts.saveClaims(claims),
      log: (line) => this.log(line),
    });
    this.logs = new LogStore({ ...options.logs, log: (line) => this.log(line) });
    this.jobs.onTaskInactive = (task) => this.endpoints.removeTask(task.taskId);
    if (options.store) {
      const stats = options.store.load(this.jobs);
      const endpoints = options.store.loadEndpoints(this.endpoints);
      const workers = options.store.loadWorkers();
      this.workers.restore(workers, this.startedAtMs);
      // A worker of a large fleet may not heartbeat (and learn of the restart) for a whole
      // interval of the fleet it was in: the re-claim grace covers one.
      this.reclaimGrace = ms(Math.max(
        this.reclaimGrace,
        this.workerHeartbeatInterval(workers.length) +
          (options.reclaimMargin ?? DEFAULT_RECLAIM_MARGIN),
      ));
      this.#liveness.reclaimGrace = this.reclaimGrace;
      for (const task of this.jobs.tasks.values()) {
        for (const a of task.attempts) {
          if (isTaskActive(a.state)) {
            this.#reconciler.awaitClaim(attemptKey(task.taskId, a.attemptId));
          }
        }
      }
      this.log(
        `loaded ${stats.jobs} job(s), ${stats.tasks} task(s), ${endpoints} endpoint(s), ${workers.length} worker(s) from ${options.store.path} in ${
          Math.round(stats.ms)
        } ms; ${this.#reconciler.unclaimedCount} attempt(s) await their worker`,
      );
      for (const line of [...stats.quarantined, ...options.store.takeWarnings()]) {
        this.log(line);
      }
    }
    this.#restoreClaims();
  }

  /** Reservation claims saved before a restart, for jobs and workers still known. */
  #restoreClaims(): void {
    const restored = this.#reservations.restore(
      this.accounts.savedClaims(),
      (jobId) => {
        const job = this.jobs.jobs.get(jobId);
        return job !== undefined && !isJobTerminal(job.state);
      },
      (workerId) => this.workers.workers.has(workerId),
    );
    if (restored) this.log(`restored the reservation claims of ${restored} job(s)`);
  }

  /** The durable state store, when the controller has one (the autoscaler saves to it too). */
  get store(): StateStore | undefined {
    return this.#opts.store;
  }

  /** The state database's path; undefined for a memory-only controller. */
  get statePath(): string | undefined {
    return this.#opts.store?.path;
  }

  /** A job. @throws NotFoundError */
  job(jobId: string): JobRecord {
    return this.jobs.job(jobId);
  }

  /** A task. @throws NotFoundError */
  task(taskId: string): TaskRecord {
    return this.jobs.task(taskId);
  }

  /** Whether a job is known. */
  hasJob(jobId: string): boolean {
    return this.jobs.jobs.has(jobId);
  }

  /** Whether a task is known. */
  hasTask(taskId: string): boolean {
    return this.jobs.tasks.has(taskId);
  }

  /** Every job by id, in submission order. */
  jobIndex(): ReadonlyMap<string, JobRecord> {
    return this.jobs.jobs;
  }

  /** Tasks of every job. */
  get taskCount(): number {
    return this.jobs.tasks.size;
  }

  /** A task's current attempt. */
  currentAttempt(task: TaskRecord): AttemptRecord | undefined {
    return this.jobs.currentAttempt(task);
  }

  /** A registered worker (reconnecting ones included). */
  worker(workerId: string): WorkerRecord | undefined {
    return this.workers.workers.get(workerId);
  }

  /** Every registered worker. */
  allWorkers(): Iterable<WorkerRecord> {
    return this.workers.workers.values();
  }

  /** Registered workers. */
  get workerCount(): number {
    return this.workers.workers.size;
  }

  /** A job's wire status (with its reservation's progress). */
  jobStatus(job: JobRecord): JobStatus {
    return jobStatus(this.jobs, job, this.reservationProgress(job.jobId).claimed);
  }

  /** A task's wire status; with `usageHistory`, its current attempt's usage samples. */
  taskStatus(task: TaskRecord, usageHistory = false): TaskStatus {
    return taskStatus(this.jobs, task, this.workers.workers, usageHistory);
  }

  /** Attempts that ended on a worker, newest first. */
  recentAttempts(worker: WorkerRecord): ReturnType<typeof recentAttempts> {
    return recentAttempts(this.jobs, worker);
  }

  /**
   * Writes the jobs and endpoints changed since the last flush to the store (no-op without one).
   * @throws when the write fails (the caller's RPC fails; the changes stay marked).
   */
  commitState(): void {
    this.#flush();
  }

  /**
   * Whether the controller can write its state; while it cannot, it refuses every change with
   * `unavailable` and `message` says why.
   */
  get health(): { healthy: boolean; message: string } {
    const u = this.#unwritable;
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
  ensureWritable(): void {
    if (this.#unwritable) throw unavailable(this.#unwritable.reason);
  }

  /**
   * Commits the changes made since the last commit. When the write fails, every change not
   * committed is undone ({@linkcode Controller.#rollback}), the controller refuses changes until
   * its state can be written again, and `unavailable` is thrown.
   */
  #flush(): void {
    const store = this.#opts.store;
    if (!store) {
      // Memory only: nothing to write, keep the sets small.
      this.jobs.clearDirty();
      this.endpoints.clearDirty();
      this.workers.clearDirty();
      return;
    }
    try {
      store.flush(this.jobs, this.endpoints, this.workers);
    } catch (err) {
      const reason = describeError(err);
      this.#unwritable ??= { sinceMs: this.clock.now(), reason, reloaded: false };
      this.#unwritable.reason = reason;
      this.log(`writing controller state failed: ${reason}; undoing the uncommitted changes`);
      try {
        this.#rollback();
        this.#unwritable.reloaded = true;
      } catch (reloadErr) {
        this.#unwritable.reloaded = false;
        this.log(`reloading controller state failed: ${describeError(reloadErr)}`);
      }
      throw unavailable(reason);
    }
  }

  /**
   * #flush for paths with no caller to report to: logs the failure. Returns false when nothing
   * was committed (the changes were undone): the caller must not act on them.
   */
  #tryFlush(): boolean {
    try {
      this.#flush();
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
  #rollback(): void {
    const store = this.#opts.store!;
    this.jobs.clear();
    store.load(this.jobs);
    this.endpoints.clear();
    store.loadEndpoints(this.endpoints);
    for (const w of this.workers.workers.values()) {
      for (const [key, c] of [...w.active]) {
        const { taskId, attemptId } = parseAttemptKey(key);
        const found = this.#findAttempt(taskId, attemptId);
        const active = found && isTaskActive(found.attempt.state) &&
          found.attempt.workerId === w.workerId;
        // A committed kill awaits the worker's confirmation: keep holding its resources.
        if (!active && c.state !== TaskState.KILLED) this.workers.release(w.workerId, key);
      }
    }
    for (const task of this.jobs.tasks.values()) {
      for (const a of task.attempts) {
        if (!isTaskActive(a.state)) continue;
        const key = attemptKey(task.taskId, a.attemptId);
        const w = this.workers.workers.get(a.workerId);
        if (w && !w.reconnecting) {
          this.workers.commit(w, key, this.#taskResources(task), this.#holder(task, a));
        } else this.#reconciler.awaitClaim(key);
      }
    }
  }

  /** While the state cannot be written: tries a write, and resumes when it passes. */
  #probe(): void {
    const u = this.#unwritable;
    const store = this.#opts.store;
    if (!u || !store) return;
    try {
      if (!u.reloaded) {
        this.#rollback();
        u.reloaded = true;
      }
      store.probe();
    } catch (err) {
      u.reason = describeError(err);
      return;
    }
    this.#unwritable = undefined;
    // Deaths were not recorded meanwhile: every worker gets a full heartbeat timeout from now.
    const now = this.clock.now();
    this.workers.extendDeadlines(now);
    this.log(
      `controller state can be written again (after ${
        formatDuration(ms(this.clock.now() - u.sinceMs))
      })`,
    );
    this.requestSchedule();
  }

  /** Starts the liveness monitor. */
  start(): void {
    this.#liveness.start();
    this.#monitor ??= this.#monitorLoop(this.#abort.signal);
  }

  /** Stops loops and waits for in-flight dispatches. */
  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#monitor?.catch(() => {});
    await this.#dispatcher.drain();
    await this.logs.close();
  }

  /** Writes a controller log line (kept for GetControllerStatus). */
  log(line: string): void {
    const stamped = `${new Date(this.clock.now()).toISOString()} ${line}`;
    this.recentLogs.push(stamped);
    if (this.recentLogs.length > 500) this.recentLogs.splice(0, 100);
    this.#opts.log?.(stamped);
  }

  /** Submits a job. */
  launchJob(spec: JobSpec, requestId: string): { jobId: string; created: boolean } {
    if (this.#unwritable) {
      // A repeated request whose job was committed is still answered.
      const jobId = this.jobs.findRequest(spec, requestId, this.clock.now());
      if (jobId) return { jobId, created: false };
      this.ensureWritable();
    }
    const fx = noEffects();
    const res = this.jobs.submit(spec, requestId, this.clock.now(), fx);
    if (res.created) this.#applyBudget(this.jobs.job(res.jobId));
    // Acknowledged only once committed: a failed write fails the RPC (the ids stay dirty).
    this.#flush();
    if (res.created) this.log(`job ${res.jobId} submitted (${spec.replicas || 1} task(s))`);
    this.#perform(fx);
    this.requestSchedule();
    return res;
  }

  /** The band a job is scheduled in (its spec's priority unless a budget lowered it). */
  bandOf(job: JobRecord): Band {
    return bandOf(job);
  }

  /** A job just submitted runs as BATCH (or a lower band) when its user's budget says so. */
  #applyBudget(job: JobRecord): void {
    const res = bandAtSubmit(job, this.jobs.jobs.values(), this.accounts.budgetFor(job.user));
    if (!res) return;
    this.jobs.setBand(job, res.band, res.reason);
    this.log(`job ${job.jobId}: ${res.reason}`);
  }

  /** Workers held for a reservation (they count as busy for scale-down). */
  reservedWorkers(): ReadonlyMap<string, string> {
    return this.#reservations.reservedBy;
  }

  /** Claimed and total reservation entries of a job (0/0 without a reservation). */
  reservationProgress(jobId: string): { claimed: number; total: number } {
    return this.#reservations.progress(this.jobs.jobs.get(jobId));
  }

  /** Terminates a job and its children. */
  terminateJob(jobId: string, reason: string): string[] {
    this.ensureWritable();
    const fx = noEffects();
    const ids = this.jobs.terminate(jobId, reason || "terminated by user", this.clock.now(), fx);
    this.#flush();
    if (ids.length) this.log(`terminated ${ids.join(", ")}: ${reason || "by user"}`);
    this.#perform(fx);
    return ids;
  }

  /**
   * Handles a worker's registration. The worker lists the attempts it runs and those that ended
   * without the controller acknowledging their end: both are (re-)claimed. An attempt the
   * controller placed on this worker that it lists in neither is lost (the worker restarted
   * without it): it fails at once and its resources are freed. Returns attempts it should kill.
   */
  registerWorker(
    req: RegisterWorkerRequest,
  ): {
    workerId: string;
    kill: { taskId: string; attemptId: number }[];
    heartbeatIntervalMs: Duration;
  } {
    if (!req.workerId) throw new InvalidArgumentError("worker_id", "must not be empty");
    if (!req.address) throw new InvalidArgumentError("address", "must not be empty");
    this.ensureWritable();
    const now = this.clock.now();
    const { worker, isNew } = this.workers.register({
      workerId: req.workerId,
      address: req.address,
      resources: req.resources,
      attributes: attributesFromProto(req.attributes),
      scaleGroup: req.scaleGroup,
      sliceId: req.sliceId,
    }, now);
    this.#dispatcher.forget(worker.address);
    const kill: { taskId: string; attemptId: number }[] = [];
    const listed = new Set<string>();
    const claim = (ref: { taskId: string; attemptId: number }, running: boolean) => {
      const key = attemptKey(ref.taskId, ref.attemptId);
      listed.add(key);
      const found = this.#findAttempt(ref.taskId, ref.attemptId);
      if (
        found && isTaskActive(found.attempt.state) && found.attempt.workerId === worker.workerId &&
        isTaskActive(found.task.state) && this.jobs.currentAttempt(found.task) === found.attempt
      ) {
        // Adopt an attempt that kept running (e.g. across a controller restart), or one that
        // ended and whose final update follows in a heartbeat.
        this.#reconciler.claimed(key);
        this.workers.commit(
          worker,
          key,
          this.#taskResources(found.task),
          this.#holder(found.task, found.attempt),
        );
      } else if (running) kill.push({ taskId: ref.taskId, attemptId: ref.attemptId });
    };
    for (const ref of req.running) claim(ref, true);
    for (const ref of req.finished) claim(ref, false);
    const fx = noEffects();
    const later: (() => void)[] = [];
    const lost = this.#reconciler.lostOnRegister(
      worker,
      listed,
      (key) => this.#dispatcher.isDispatching(key),
      (key) => {
        const { taskId, attemptId } = parseAttemptKey(key);
        return this.#findAttempt(taskId, attemptId)?.attempt.workerId;
      },
    );
    for (const key of lost) {
      if (this.workers.release(worker.workerId, key)) fx.released++;
      const { taskId, attemptId } = parseAttemptKey(key);
      const found = this.#findAttempt(taskId, attemptId);
      if (!found || !isTaskActive(found.attempt.state)) continue;
      const why = `worker ${worker.workerId} came back without attempt ${attemptId} (it restarted)`;
      this.log(`${taskId}: ${why}`);
      this.jobs.attemptEnded(found.task, found.attempt, {
        state: TaskState.WORKER_FAILED,
        error: why,
        finishedAtMs: now,
      }, fx);
      later.push(() => this.logs.system(taskId, attemptId, why, now));
    }
    // Acknowledged once durable: on failure nothing above stays and the worker registers again.
    this.#flush();
    for (const f of later) f();
    this.log(
      `worker ${worker.workerId} ${isNew ? "registered" : "re-registered"} at ${worker.address}`,
    );
    this.#perform(fx);
    this.requestSchedule();
    return { workerId: worker.workerId, kill, heartbeatIntervalMs: this.#tellInterval(worker) };
  }

  /** Handles a heartbeat: task updates, liveness, reconciliation. */
  heartbeat(
    req: HeartbeatRequest,
  ): {
    reregister: boolean;
    kill: { taskId: string; attemptId: number }[];
    updatesDeferred?: boolean;
    heartbeatIntervalMs?: number;
  } {
    const worker = this.workers.workers.get(req.workerId);
    // A worker known only from the store must re-register (and re-claim its attempts) first.
    if (!worker || worker.reconnecting) return { reregister: true, kill: [] };
    const now = this.clock.now();
    this.workers.heartbeat(worker, now);
    const heartbeatIntervalMs = this.#tellInterval(worker);
    // Absent: unchanged since the last one (the worker sends only changes).
    if (req.snapshot) this.workers.recordSnapshot(worker, req.snapshot);
    // Liveness is noted above; updates wait (kept by the worker, which keeps its heartbeat
    // cadence) until they can be committed.
    if (req.updates.length && this.#unwritable) {
      return { reregister: false, kill: [], updatesDeferred: true, heartbeatIntervalMs };
    }
    const fx = noEffects();
    // Log lines are stored once the updates are committed (a failed commit is resent whole).
    const later: (() => void)[] = [];
    for (const u of req.updates) this.#applyUpdate(req.workerId, u, fx, later);
    const kill: { taskId: string; attemptId: number }[] = [];
    for (const ref of req.running) {
      const key = attemptKey(ref.taskId, ref.attemptId);
      const found = this.#findAttempt(ref.taskId, ref.attemptId);
      if (!found || !isTaskActive(found.attempt.state)) {
        // Unknown here, or preempted but still running (a lost kill order): (re)send the kill.
        const held = worker.active.get(key);
        if (!held || held.state === TaskState.KILLED) {
          kill.push({ taskId: ref.taskId, attemptId: ref.attemptId });
        }
      }
    }
    if (!this.#unwritable) this.#reconcile(worker, req, fx, later);
    // The answer acknowledges the updates: only once they are durable (while the state is
    // unwritable, a heartbeat without updates changed nothing and is liveness alone).
    if (!this.#unwritable) this.#flush();
    for (const f of later) f();
    this.#perform(fx);
    if (fx.released) this.requestSchedule();
    return { reregister: false, kill, heartbeatIntervalMs };
  }

  /**
   * The heartbeat interval for workers of a fleet of `fleetSize` (default: the current fleet):
   * the configured one, or longer so the fleet sends at most `heartbeatMaxRate` per second.
   */
  workerHeartbeatInterval(fleetSize: number = this.workers.workers.size): Duration {
    return heartbeatIntervalFor(this.heartbeatInterval, fleetSize, this.#opts.heartbeatMaxRate);
  }

  /** Notes the interval told to `worker` in this answer (its liveness timeout follows it). */
  #tellInterval(worker: WorkerRecord): Duration {
    const interval = this.workerHeartbeatInterval();
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
  #reconcile(
    worker: WorkerRecord,
    req: HeartbeatRequest,
    fx: Effects,
    later: (() => void)[],
  ): void {
    const seen = new Set<string>();
    for (const r of [...req.running, ...req.finished, ...req.updates]) {
      seen.add(attemptKey(r.taskId, r.attemptId));
    }
    const now = this.clock.now();
    const lost = this.#reconciler.lostOnHeartbeat(
      worker,
      seen,
      (key) => this.#dispatcher.isDispatching(key),
    );
    for (const key of lost) {
      if (this.workers.release(worker.workerId, key)) fx.released++;
      const { taskId, attemptId } = parseAttemptKey(key);
      const found = this.#findAttempt(taskId, attemptId);
      if (!found || !isTaskActive(found.attempt.state)) continue;
      const why = `worker ${worker.workerId} no longer has attempt ${attemptId}`;
      this.log(`${taskId}: ${why}`);
      this.jobs.attemptEnded(found.task, found.attempt, {
        state: TaskState.WORKER_FAILED,
        error: why,
        finishedAtMs: now,
      }, fx);
      later.push(() => this.logs.system(taskId, attemptId, why, now));
    }
  }

  #applyUpdate(workerId: string, u: TaskUpdate, fx: Effects, later: (() => void)[]): void {
    const found = this.#findAttempt(u.taskId, u.attemptId);
    if (found && u.logs.length) later.push(() => this.logs.append(u.taskId, u.logs));
    const key = attemptKey(u.taskId, u.attemptId);
    const terminal = isTaskTerminal(u.state);
    if (!found || found.attempt.workerId !== workerId) {
      if (terminal && this.workers.release(workerId, key)) fx.released++;
      return;
    }
    const { task, attempt } = found;
    if (Object.keys(u.ports).length) this.jobs.setPorts(task, u.ports);
    if (u.peakMemoryBytes) this.jobs.notePeakMemory(task, attempt, u.peakMemoryBytes);
    if (terminal) {
      if (this.workers.release(workerId, key)) fx.released++;
      this.jobs.attemptEnded(task, attempt, {
        state: u.state,
        exitCode: u.exitCode,
        signal: u.signal,
        error: u.error,
        finishedAtMs: u.finishedAtMs || this.clock.now(),
        peakMemoryBytes: u.peakMemoryBytes,
        stderrTail: u.logs.filter((l) => l.stream === "stderr").slice(-20).map((l) => l.text),
      }, fx);
      if (task.state === TaskState.PENDING) {
        const now = this.clock.now();
        later.push(() =>
          this.logs.system(
            task.taskId,
            attempt.attemptId,
            `attempt ${attempt.attemptId} ended (${TaskState[u.state]}); retrying`,
            now,
          )
        );
      }
    } else if (u.state === TaskState.RUNNING || u.state === TaskState.BUILDING) {
      // A setup slot freed: tasks held back by the building limit need not wait for a tick.
      if (this.workers.noteAttemptState(workerId, key, u.state)) fx.released++;
      this.jobs.attemptStarted(task, attempt, u.state, u.startedAtMs || this.clock.now(), fx);
    }
  }

  #findAttempt(
    taskId: string,
    attemptId: number,
  ): { task: TaskRecord; attempt: AttemptRecord } | undefined {
    const task = this.jobs.tasks.get(taskId);
    const attempt = task?.attempts.find((a) => a.attemptId === attemptId);
    return task && attempt ? { task, attempt } : undefined;
  }

  /** Schedules a scheduling pass soon (coalesced). */
  requestSchedule(): void {
    // No placement while the state cannot be written (it resumes once it can).
    if (this.#scheduleQueued || this.#abort.signal.aborted || this.#unwritable) return;
    this.#scheduleQueued = true;
    // Through the clock, so a fake clock (tests) runs the pass when it settles.
    void this.clock.sleep(ms(0)).then(() => {
      this.#scheduleQueued = false;
      try {
        this.scheduleOnce();
      } catch (err) {
        this.log(`scheduling pass failed: ${describeError(err)}`);
      }
    });
  }

  /** Runs one scheduling pass now: snapshot → plan → commit → dispatch. */
  scheduleOnce(): SchedulePlan {
    // Nothing is placed while placements cannot be committed.
    if (this.#unwritable) return { assignments: [], unplaced: [] };
    // Nothing pending and nobody reading the passes: skip the snapshot of a large fleet (#20).
    if (!this.#opts.onSchedule && !this.#anyPending()) return { assignments: [], unplaced: [] };
    const now = this.clock.now();
    const fx = noEffects();
    expireScheduling(this.jobs, now, fx);
    const snapshot = this.snapshot();
    const plan = schedule(snapshot);
    for (const c of plan.claims ?? []) this.#claim(c.jobId, c.entryIndex, c.workerId);
    if (plan.claims?.length) this.#reservations.save();
    const byJob = new Map<string, Placed[]>();
    for (const a of plan.assignments) {
      const worker = this.workers.workers.get(a.workerId);
      const job = this.jobs.jobs.get(a.jobId);
      if (!worker || !job) continue;
      const task = this.jobs.task(job.taskIds[a.taskIndex]!);
      const attempt = this.jobs.assign(task.taskId, worker.workerId, now);
      this.workers.commit(
        worker,
        attemptKey(task.taskId, attempt.attemptId),
        this.#taskResources(task),
        // Over its user's resource budget, the task runs as BATCH (a.band).
        a.band ? { ...this.#holder(task, attempt), band: a.band } : this.#holder(task, attempt),
      );
      let list = byJob.get(job.jobId);
      if (!list) byJob.set(job.jobId, list = []);
      list.push({ task, attempt });
    }
    for (const u of plan.unplaced) {
      const pending = this.jobs.pending.get(u.jobId);
      const job = this.jobs.jobs.get(u.jobId);
      if (!pending || !job) continue;
      for (const i of pending) {
        this.jobs.setPendingReason(this.jobs.task(job.taskIds[i]!), u.reason);
      }
    }
    for (const p of plan.preemptions ?? []) {
      const job = this.jobs.jobs.get(p.jobId);
      const task = job && this.jobs.tasks.get(job.taskIds[p.taskIndex]!);
      if (task && this.jobs.preempt(task, p.reason, now, fx)) {
        this.logs.system(task.taskId, this.jobs.currentAttempt(task)!.attemptId, p.reason, now);
        this.log(`task ${task.taskId} on ${p.workerId}: ${p.reason}`);
        this.transactions.record({
          action: "preempt",
          entity: task.taskId,
          user: "scheduler",
          details: `on ${p.workerId}: ${p.reason}`,
        });
      }
    }
    this.#gateReasons();
    // Placements are durable before any RunTask leaves: a failed commit dispatches nothing.
    if (!this.#tryFlush()) return { ...plan, assignments: [], preemptions: [] };
    for (const [jobId, placed] of byJob) this.#dispatchJob(this.jobs.job(jobId), placed);
    this.#perform(fx);
    this.#opts.onSchedule?.(plan, snapshot);
    return plan;
  }

  #anyPending(): boolean {
    for (const pending of this.jobs.pending.values()) if (pending.size > 0) return true;
    return false;
  }

  /** The scheduler's input: healthy workers and jobs with pending tasks, in submission order. */
  snapshot(): ClusterSnapshot {
    return clusterSnapshot({
      jobs: this.jobs,
      workers: this.workers,
      reservations: this.#reservations,
      budgetOf: this.accounts.hasResourceBudgets()
        ? (user) => this.accounts.budgetFor(user)
        : undefined,
      usage: () => this.usageByUser(),
      maxBuildingPerWorker: this.#opts.maxBuildingPerWorker,
    });
  }

  /** What each user's active tasks hold (above BATCH) and how many run in BATCH. */
  usageByUser(): Map<string, UserUsage> {
    return usageByUser(this.workers.workers.values(), (id) => this.jobs.jobs.get(id)?.user);
  }

  #claim(jobId: string, entryIndex: number, workerId: string): void {
    const job = this.jobs.jobs.get(jobId);
    if (!job || isJobTerminal(job.state)) return;
    if (this.#reservations.claim(job, entryIndex, workerId)) {
      this.jobs.openReservationGate(job);
      this.log(`reservation of ${jobId} complete: its tasks may start`);
      this.requestSchedule();
    }
  }

  /** Pending reasons of jobs held back by their reservation. */
  #gateReasons(): void {
    for (const [jobId, pending] of this.jobs.pending) {
      if (pending.size === 0) continue;
      const job = this.jobs.jobs.get(jobId)!;
      if (!isGated(job)) continue;
      const reason = gateReason(this.#reservations.progress(job), this.workers.workers.size);
      for (const i of pending) this.jobs.setPendingReason(this.jobs.task(job.taskIds[i]!), reason);
    }
  }

  #holder(task: TaskRecord, attempt: AttemptRecord) {
    const job = this.jobs.job(task.jobId);
    return {
      jobId: job.jobId,
      taskIndex: task.index,
      band: this.bandOf(job),
      gang: !!job.spec.coscheduling?.groupBy,
      sinceMs: attempt.assignedAtMs,
    };
  }

  #taskResources(task: TaskRecord) {
    return taskResources(this.jobs.job(task.jobId));
  }

  /** Sends RunTask for the attempts placed for one job. */
  #dispatchJob(job: JobRecord, placed: readonly Placed[]): void {
    this.#dispatcher.dispatchJob(
      {
        jobs: this.jobs,
        workers: this.workers,
        endpoints: this.endpoints,
        baseEnv: this.#opts.taskEnv,
        controllerUrl: this.url,
      },
      job,
      placed,
      (taskId, attemptId, workerId, err) => this.#dispatchFailed(taskId, attemptId, workerId, err),
    );
  }

  #dispatchFailed(taskId: string, attemptId: number, workerId: string, err: unknown): void {
    const found = this.#findAttempt(taskId, attemptId);
    if (!found || !isTaskActive(found.attempt.state)) return;
    this.log(
      `dispatch of ${taskId} attempt ${attemptId} to ${workerId} failed: ${describeError(err)}`,
    );
    const fx = noEffects();
    this.workers.release(workerId, attemptKey(taskId, attemptId));
    this.jobs.attemptEnded(found.task, found.attempt, {
      state: TaskState.WORKER_FAILED,
      error: `dispatch to worker ${workerId} failed: ${describeError(err)}`,
      finishedAtMs: this.clock.now(),
    }, fx);
    if (!this.#tryFlush()) return;
    this.#perform(fx);
    this.requestSchedule();
  }

  /** Performs kill orders. */
  #perform(fx: Effects): void {
    for (const k of fx.kills) {
      const worker = this.workers.workers.get(k.workerId);
      if (!worker) continue;
      this.workers.markStopping(k.workerId, attemptKey(k.taskId, k.attemptId));
      this.#dispatcher.kill(worker.address, k);
    }
    for (const jobId of fx.finishedJobs) {
      this.#reservations.release(jobId);
      const job = this.jobs.jobs.get(jobId);
      if (job) {
        this.log(
          `job ${jobId} finished: ${
            job.state === JobState.SUCCEEDED ? "succeeded" : job.error || "ended"
          }`,
        );
      }
    }
    if (fx.released) this.requestSchedule();
  }

  /**
   * Declares a worker dead (or, with `scaleDown`, removed by a planned scale-down): its attempts
   * become WORKER_FAILED and are retried elsewhere.
   */
  workerDead(workerId: string, reason: string, options: { scaleDown?: boolean } = {}): void {
    const worker = this.workers.workers.get(workerId);
    if (!worker) throw new NotFoundError(`No worker ${workerId}`);
    if (this.#unwritable) {
      // Cannot be recorded now; its heartbeats have stopped, so the monitor declares it later.
      this.log(`worker ${workerId} ${reason}: not declared dead while the state is unwritable`);
      return;
    }
    const keys = this.workers.remove(workerId);
    this.#dispatcher.forget(worker.address);
    this.#reconciler.forgetWorker(workerId);
    this.#reservations.workerGone(workerId);
    // A planned scale-down is not a failure: say so, so the log does not read like one.
    this.log(
      options.scaleDown
        ? `worker ${workerId} removed: ${reason}`
        : `worker ${workerId} declared dead: ${reason}`,
    );
    this.transactions.record({
      action: "worker_dead",
      entity: workerId,
      user: "controller",
      details: reason,
    });
    const fx = noEffects();
    for (const key of keys) {
      const { taskId, attemptId } = parseAttemptKey(key);
      const found = this.#findAttempt(taskId, attemptId);
      if (!found) continue;
      this.jobs.attemptEnded(found.task, found.attempt, {
        state: TaskState.WORKER_FAILED,
        error: `worker ${workerId} ${reason}`,
        finishedAtMs: this.clock.now(),
      }, fx);
    }
    if (!this.#tryFlush()) return;
    this.#perform(fx);
    this.#opts.onWorkerDead?.(workerId, worker.sliceId);
    this.requestSchedule();
  }

  /** The liveness monitor: one tick per heartbeat interval until stopped. */
  async #monitorLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.clock.sleep(this.heartbeatInterval, signal);
      } catch {
        return;
      }
      this.#monitorTick();
    }
  }

  /**
   * One liveness tick: probes an unwritable store, notes a stall of the controller itself,
   * declares workers dead that missed their heartbeats, fails attempts not re-claimed after the
   * re-claim grace, and schedules while tasks are pending.
   */
  #monitorTick(): void {
    if (this.#unwritable) {
      // Nothing can be recorded (deaths included) until the state can be written again.
      this.#probe();
      if (this.#unwritable) return;
    }
    const now = this.clock.now();
    const stall = this.#liveness.tick();
    if (stall !== undefined) {
      this.log(
        `controller was blocked for ${
          formatDuration(stall)
        }; worker heartbeat deadlines restart from now`,
      );
    }
    const inGrace = this.#liveness.inGrace(now);
    for (const due of this.#liveness.due(this.workers, now)) {
      this.workerDead(due.workerId, due.reason);
    }
    if (this.#reconciler.unclaimedCount && !inGrace && !this.#unwritable) this.#failUnclaimed();
    if ([...this.jobs.pending.values()].some((p) => p.size > 0)) this.requestSchedule();
  }

  /**
   * After a restart: attempts loaded as active whose worker did not re-claim them within the
   * re-claim grace are WORKER_FAILED and retried under the usual budget.
   */
  #failUnclaimed(): void {
    const fx = noEffects();
    for (const key of this.#reconciler.takeUnclaimed()) {
      const { taskId, attemptId } = parseAttemptKey(key);
      const found = this.#findAttempt(taskId, attemptId);
      if (!found || !isTaskActive(found.attempt.state)) continue;
      if (this.workers.workers.get(found.attempt.workerId)?.active.has(key)) continue;
      this.log(`attempt ${attemptId} of ${taskId} was not re-claimed by its worker after restart`);
      this.jobs.attemptEnded(found.task, found.attempt, {
        state: TaskState.WORKER_FAILED,
        error: `worker ${found.attempt.workerId} did not re-claim the attempt after a restart`,
        finishedAtMs: this.clock.now(),
      }, fx);
    }
    if (!this.#tryFlush()) return;
    this.#perform(fx);
    this.requestSchedule();
  }

  /** The (cached) client for a worker's address, as used for dispatch. */
  workerClient(address: string): WorkerClient {
    return this.#dispatcher.client(address);
  }

  /** Times the liveness monitor found the controller blocked, and the last such stall. */
  get stalls(): { readonly count: number; readonly lastMs: number } {
    return this.#liveness.stalls;
  }
}
