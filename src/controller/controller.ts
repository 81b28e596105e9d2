/**
 * The controller: the tick and the wiring. It owns the tables and the collaborators, hands each
 * concern module the context it declares, and keeps the public `Controller` API (ControllerCore
 * for the RPC handlers, AutoscalerHost for the autoscaler) as thin delegating methods. The
 * concerns: the store commit path (commit.ts), registrations and heartbeats (heartbeats.ts), the
 * scheduling pass (scheduling_pass.ts; the scheduler itself is pure, scheduler/), the liveness
 * monitor and worker deaths (monitor.ts), LaunchJob and TerminateJob (job_requests.ts), restoring
 * after a restart (restore.ts), reconciliation (reconcile.ts), liveness (liveness.ts), dispatch
 * (dispatch.ts), reservations (reservations.ts), the task environment (task_env.ts), scheduling
 * timeouts (scheduling_timeouts.ts), budgets (budgets.ts) and the snapshot (snapshot.ts).
 * @module
 */
import { isoStamper } from "../format.ts";
import type { HeartbeatRequest, RegisterWorkerRequest } from "../rpc/gen/iris/v1/controller_pb.ts";
import type { JobSpec, JobStatus, TaskStatus } from "../rpc/gen/iris/v1/types_pb.ts";
import { TaskState, type WorkerClient } from "../rpc/mod.ts";
import { type Clock, type Duration, ms, seconds, systemClock } from "../time.ts";
import { describeError } from "../errors.ts";
import type { Band, ClusterSnapshot, SchedulePlan } from "../types.ts";
import { bandOf, type UserBudget } from "./budgets.ts";
import { type AttemptRecord, type JobRecord, JobTable, type TaskRecord } from "./state.ts";
import { type WorkerRecord, WorkerTable } from "./workers.ts";
import { LogStore, type LogStoreOptions } from "./logs.ts";
import { EndpointTable } from "./endpoints.ts";
import { Accounts, usageByUser, type UserUsage } from "./accounts.ts";
import type { StateStore } from "./store.ts";
import { TransactionLog } from "./transactions.ts";
import { Reservations } from "./reservations.ts";
import { Dispatcher } from "./dispatch.ts";
import { Liveness } from "./liveness.ts";
import { Reconciler } from "./reconcile.ts";
import { clusterSnapshot } from "./snapshot.ts";
import { loadState, restoreClaims } from "./restore.ts";
import {
  afterLaunch,
  applyLaunch,
  type JobRequestContext,
  launchJob,
  terminateJob,
} from "./job_requests.ts";
import { type MonitorContext, monitorLoop, workerDead } from "./monitor.ts";
import {
  performEffects,
  type PlannedPass,
  planPass,
  scheduleOnce,
  type SchedulingPassContext,
} from "./scheduling_pass.ts";
import {
  afterHeartbeat,
  applyHeartbeat,
  heartbeat,
  type HeartbeatAnswer,
  type HeartbeatContext,
  type RegisterAnswer,
  registerWorker,
} from "./heartbeats.ts";
import { CommitGroup, ensureWritable, flush, writeHealth, type WriteStatus } from "./commit.ts";
import type { ControllerCore } from "./core.ts";
import type { AutoscalerHost } from "./autoscaler/runner.ts";
import { jobStatus, recentAttempts, taskStatus } from "./convert.ts";
import { heartbeatIntervalFor } from "./heartbeat_rate.ts";
import { SchedulePacer } from "./schedule_pacing.ts";

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
  /**
   * Whether a submit to an idle scheduler is placed at once, in its own commit (#20); when false
   * it waits for the next pass, as every submit does while the scheduler is busy. @default true
   */
  placeAtSubmit?: boolean;
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
  readonly #pacer: SchedulePacer;
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
  readonly #write: WriteStatus = {};
  /** What the concern modules work on (each reads the part it declares). */
  /** Submits and heartbeats from RPCs, committed in groups (one transaction per turn). */
  readonly #commits: CommitGroup;
  /** Log lines' time stamps (a busy controller logs a submit and an end per job, #20). */
  readonly #stamp = isoStamper();
  readonly #ctx:
    & HeartbeatContext
    & SchedulingPassContext
    & MonitorContext
    & JobRequestContext;
  /** Longest worker reconnect delay (before jitter). */
  readonly workerReconnectMax: Duration;
  /** How long attempts wait after a restart for their worker to re-claim them. */
  reclaimGrace: Duration;

  constructor(options: ControllerOptions = {}) {
    this.#opts = options;
    this.accounts = options.accounts ?? new Accounts(options.userBudgets ?? []);
    this.clock = options.clock ?? systemClock;
    this.#pacer = new SchedulePacer(this.clock);
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
    this.#ctx = {
      jobs: this.jobs,
      endpoints: this.endpoints,
      workers: this.workers,
      reconciler: this.#reconciler,
      store: options.store,
      clock: this.clock,
      write: this.#write,
      log: (line) => this.log(line),
      logs: this.logs,
      dispatcher: this.#dispatcher,
      workerHeartbeatInterval: () => this.workerHeartbeatInterval(),
      perform: (fx) => performEffects(this.#ctx, fx),
      transactions: this.transactions,
      reservations: this.#reservations,
      taskEnv: options.taskEnv,
      controllerUrl: () => this.url,
      snapshot: (only) => this.snapshot(only),
      onSchedule: options.onSchedule,
      liveness: this.#liveness,
      heartbeatInterval: this.heartbeatInterval,
      onWorkerDead: options.onWorkerDead,
      accounts: this.accounts,
      requestSchedule: () => this.requestSchedule(),
      placeNow: (jobId) => this.#placeNow(jobId),
    };
    this.#commits = new CommitGroup(this.#ctx);
    this.jobs.onTaskInactive = (task) => this.endpoints.removeTask(task.taskId);
    if (options.store) {
      const loaded = loadState(this.#ctx, options.store, this.startedAtMs);
      // A worker of a large fleet may not heartbeat (and learn of the restart) for a whole
      // interval of the fleet it was in: the re-claim grace covers one.
      this.reclaimGrace = ms(Math.max(
        this.reclaimGrace,
        this.workerHeartbeatInterval(loaded) + (options.reclaimMargin ?? DEFAULT_RECLAIM_MARGIN),
      ));
      this.#liveness.reclaimGrace = this.reclaimGrace;
    }
    restoreClaims(this.#ctx, this.#reservations, this.accounts.savedClaims());
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
    flush(this.#ctx);
  }

  /**
   * Whether the controller can write its state; while it cannot, it refuses every change with
   * `unavailable` and `message` says why.
   */
  get health(): { healthy: boolean; message: string } {
    return writeHealth(this.#write);
  }

  /** Throws `unavailable` while the state cannot be written (before anything is changed). */
  ensureWritable(): void {
    ensureWritable(this.#write);
  }

  /** Starts the liveness monitor. */
  start(): void {
    this.#liveness.start();
    this.#monitor ??= monitorLoop(this.#ctx, this.#abort.signal);
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
    const stamped = `${this.#stamp(this.clock.now())} ${line}`;
    this.recentLogs.push(stamped);
    if (this.recentLogs.length > 500) this.recentLogs.splice(0, 100);
    this.#opts.log?.(stamped);
  }

  /** Submits a job (job_requests.ts). */
  launchJob(spec: JobSpec, requestId: string): { jobId: string; created: boolean } {
    return launchJob(this.#ctx, spec, requestId);
  }

  /**
   * {@linkcode launchJob} for a LaunchJob RPC: the submits that arrive together share one commit
   * (commit.ts, CommitGroup); each is answered once it is committed.
   */
  async launchJobInGroup(
    spec: JobSpec,
    requestId: string,
  ): Promise<{ jobId: string; created: boolean }> {
    const change = await this.#commits.run(
      () => applyLaunch(this.#ctx, spec, requestId),
      (c) => afterLaunch(this.#ctx, c),
    );
    return change.res;
  }

  /** The band a job is scheduled in (its spec's priority unless a budget lowered it). */
  bandOf(job: JobRecord): Band {
    return bandOf(job);
  }

  /** Workers held for a reservation (they count as busy for scale-down). */
  reservedWorkers(): ReadonlyMap<string, string> {
    return this.#reservations.reservedBy;
  }

  /** Claimed and total reservation entries of a job (0/0 without a reservation). */
  reservationProgress(jobId: string): { claimed: number; total: number } {
    return this.#reservations.progress(this.jobs.jobs.get(jobId));
  }

  /** Terminates a job and its children (job_requests.ts). */
  terminateJob(jobId: string, reason: string): string[] {
    return terminateJob(this.#ctx, jobId, reason);
  }

  /** Handles a worker's registration (heartbeats.ts). */
  registerWorker(req: RegisterWorkerRequest): RegisterAnswer {
    return registerWorker(this.#ctx, req);
  }

  /** Handles a heartbeat: task updates, liveness, reconciliation (heartbeats.ts). */
  heartbeat(req: HeartbeatRequest): HeartbeatAnswer {
    return heartbeat(this.#ctx, req);
  }

  /**
   * {@linkcode heartbeat} for a Heartbeat RPC: it shares one commit with the other heartbeats and
   * submits of its event-loop turn (commit.ts, CommitGroup), and is answered once committed.
   */
  async heartbeatInGroup(req: HeartbeatRequest): Promise<HeartbeatAnswer> {
    const change = await this.#commits.run(
      () => applyHeartbeat(this.#ctx, req),
      (c) => afterHeartbeat(this.#ctx, c),
    );
    return change.answer;
  }

  /**
   * The heartbeat interval for workers of a fleet of `fleetSize` (default: the current fleet):
   * the configured one, or longer so the fleet sends at most `heartbeatMaxRate` per second.
   */
  workerHeartbeatInterval(fleetSize: number = this.workers.workers.size): Duration {
    return heartbeatIntervalFor(this.heartbeatInterval, fleetSize, this.#opts.heartbeatMaxRate);
  }

  /** Schedules a scheduling pass soon (coalesced). */
  requestSchedule(): void {
    // No placement while the state cannot be written (it resumes once it can).
    if (this.#scheduleQueued || this.#abort.signal.aborted || this.#write.unwritable) return;
    this.#scheduleQueued = true;
    // Through the clock, so a fake clock (tests) runs the pass when it settles; paced (#20).
    this.clock.sleep(this.#pacer.delay(), this.#abort.signal).then(() => {
      this.#scheduleQueued = false;
      try {
        this.#pacer.time(() => this.scheduleOnce(), (plan) => plan.assignments.length > 0);
      } catch (err) {
        this.log(`scheduling pass failed: ${describeError(err)}`);
      }
    }, () => {});
  }

  /**
   * A pass applied now, its commit left to the caller (a submit's: job_requests.ts), when the
   * scheduler is idle (schedule_pacing.ts) and nothing but `jobId` waits: with others waiting (a
   * burst, a full cluster) one paced pass for many submits costs less. A pass queued meanwhile
   * finds less to do. Waiting for one cost a second commit (and, before passes ran on the event
   * loop's next turn, a zero-delay timer's ~2 ms: most of a submit's way to its worker, #20).
   */
  #placeNow(jobId: string): PlannedPass | undefined {
    if (this.#opts.placeAtSubmit === false || this.#write.unwritable || !this.#pacer.idle()) {
      return undefined;
    }
    for (const id of this.jobs.pendingJobs().keys()) if (id !== jobId) return undefined;
    try {
      return this.#pacer.time(
        () => planPass(this.#ctx),
        (p) => (p?.plan.assignments.length ?? 0) > 0,
      );
    } catch (err) {
      this.log(`scheduling pass failed: ${describeError(err)}`);
      return undefined;
    }
  }

  /** Runs one scheduling pass now: snapshot → plan → commit → dispatch (scheduling_pass.ts). */
  scheduleOnce(): SchedulePlan {
    return scheduleOnce(this.#ctx);
  }

  /**
   * The scheduler's input: healthy workers and jobs with pending tasks, in submission order (with
   * `only`: of these jobs only, see snapshot.ts). With resource budgets, which may change at any
   * time and move any waiting job to another band, always of every job.
   */
  snapshot(only?: readonly string[]): ClusterSnapshot {
    const budgets = this.accounts.hasResourceBudgets();
    return clusterSnapshot({
      jobs: this.jobs,
      workers: this.workers,
      reservations: this.#reservations,
      budgetOf: budgets ? (user) => this.accounts.budgetFor(user) : undefined,
      usage: () => this.usageByUser(),
      maxBuildingPerWorker: this.#opts.maxBuildingPerWorker,
    }, budgets ? undefined : only);
  }

  /** What each user's active tasks hold (above BATCH) and how many run in BATCH. */
  usageByUser(): Map<string, UserUsage> {
    return usageByUser(this.workers.workers.values(), (id) => this.jobs.jobs.get(id)?.user);
  }

  /**
   * Declares a worker dead (or, with `scaleDown`, removed by a planned scale-down): its attempts
   * become WORKER_FAILED and are retried elsewhere (monitor.ts).
   */
  workerDead(workerId: string, reason: string, options: { scaleDown?: boolean } = {}): void {
    workerDead(this.#ctx, workerId, reason, options);
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
