/**
 * The controller's model of jobs, tasks and attempts, and every transition between their states.
 * Mutations are synchronous and return the side effects they imply (attempts to kill) as data;
 * the controller loop performs them. Workers live in workers.ts; no I/O here.
 * @module
 */
import {
  ExistingJobPolicy,
  type JobSpec,
  JobState,
  TaskState,
} from "../rpc/gen/iris/v1/types_pb.ts";
import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from "../errors.ts";
import type { Band, PendingReasonData } from "../types.ts";
import {
  decidingTaskStates,
  deriveJobState,
  isJobTerminal,
  isTaskActive,
  isTaskTerminal,
  type TaskStateCounts,
  taskStateName,
} from "./job_rules.ts";
import { resolveJobId, validateJobSpec, validateUser } from "./validate.ts";

/** Default retries after worker death or preemption. */
export const DEFAULT_MAX_RETRIES_PREEMPTION = 100;

/**
 * How long the request id of a job replaced by RECREATE keeps answering with the job's id (the
 * request id of a job that exists always does).
 */
export const REQUEST_ID_WINDOW_MS = 24 * 60 * 60 * 1000;

/**
 * Whose request ids a submit is matched against: the owner of the job it would create (the first
 * segment of its id, `/<user>/...`), so two users' request ids never collide, whatever the auth
 * mode. Computed without validating the spec (a repeated request is answered before validation).
 */
export function requestOwner(spec: JobSpec): string {
  const name = spec.name.startsWith("/") ? spec.name : spec.parentJobId;
  return name.startsWith("/") ? name.split("/")[1] ?? "" : spec.user || "anonymous";
}

function requestKey(owner: string, requestId: string): string {
  return `${owner}\u0000${requestId}`;
}

/** One try of a task on a worker. */
export interface AttemptRecord {
  readonly attemptId: number;
  readonly workerId: string;
  state: TaskState;
  exitCode: number;
  signal: string;
  error: string;
  readonly assignedAtMs: number;
  startedAtMs: number;
  finishedAtMs: number;
  isWorkerFailure: boolean;
  peakMemoryBytes: number;
}

/**
 * A task: one replica of a job. A million of them must fit in 1.5 GB (#20): what they share
 * (the spec, the job's fields) lives in the job, and a task that never ran or failed holds the
 * shared empty values below rather than empty objects of its own.
 */
export interface TaskRecord {
  readonly taskId: string;
  readonly jobId: string;
  readonly index: number;
  state: TaskState;
  /** Replaced (not pushed into) while it is {@linkcode NO_ATTEMPTS}. */
  attempts: AttemptRecord[];
  /** Attempt numbers start here (continues after a recreated job's attempts). */
  readonly attemptBase: number;
  failureCount: number;
  preemptionCount: number;
  pendingSinceMs: number;
  ports: Record<string, number>;
  stderrTail: string[];
  error: string;
}

/** The attempts of a task that has none yet, shared by every such task (frozen). */
export const NO_ATTEMPTS: AttemptRecord[] = Object.freeze([]) as unknown as AttemptRecord[];
/** The ports of a task that has none, shared (frozen; a task's ports are replaced whole). */
export const NO_PORTS: Record<string, number> = Object.freeze({});
/** The stderr tail of a task that has none, shared (frozen; replaced whole). */
export const NO_STDERR: string[] = Object.freeze([]) as unknown as string[];

/**
 * A task as first submitted (or loaded), in one shape for every task (the same hidden class
 * keeps the code that reads tasks fast).
 */
export function newTask(
  jobId: string,
  index: number,
  fields: Pick<
    TaskRecord,
    | "state"
    | "attempts"
    | "attemptBase"
    | "failureCount"
    | "preemptionCount"
    | "pendingSinceMs"
    | "ports"
    | "stderrTail"
    | "error"
  >,
  /** `<job id>/`, made once for all of a job's tasks (each id is then one string, not two). */
  idPrefix = `${jobId}/`,
): TaskRecord {
  return {
    taskId: idPrefix + index,
    jobId,
    index,
    state: fields.state,
    attempts: fields.attempts.length ? fields.attempts : NO_ATTEMPTS,
    attemptBase: fields.attemptBase,
    failureCount: fields.failureCount,
    preemptionCount: fields.preemptionCount,
    pendingSinceMs: fields.pendingSinceMs,
    ports: Object.keys(fields.ports).length ? fields.ports : NO_PORTS,
    stderrTail: fields.stderrTail.length ? fields.stderrTail : NO_STDERR,
    error: fields.error,
  };
}

/**
 * Task fields a change of which is not written on its own: after a restart they may be older
 * than they were in memory. None: every field of a job, task or attempt is written whenever it
 * changes (why a task is pending is kept per job and not persisted, see
 * {@linkcode JobTable.setPendingReason}).
 */
export const VOLATILE_TASK_FIELDS: readonly (keyof TaskRecord)[] = [];

/** New jobs kept for the next scheduling pass at most (JobTable.takeArrivals). */
export const MAX_ARRIVALS = 4096;

/** A job and its bookkeeping. */
export interface JobRecord {
  readonly jobId: string;
  readonly user: string;
  readonly spec: JobSpec;
  readonly requestId: string;
  readonly submittedAtMs: number;
  startedAtMs: number;
  finishedAtMs: number;
  state: JobState;
  error: string;
  exitCode: number;
  readonly taskIds: string[];
  readonly parentJobId: string;
  readonly childIds: Set<string>;
  readonly counts: Partial<Record<TaskState, number>>;
  /** Band the job is scheduled in when it differs from its spec (per-user budget); see budgets.ts. */
  band?: Band;
  /** Why `band` differs from the requested priority. */
  bandReason?: string;
  /** The reservation gate opened (every entry claimed once); it never closes again. */
  reservationReady?: boolean;
  /**
   * Request ids of the jobs this one replaced (RECREATE) and when they were submitted; they keep
   * answering with this job's id for {@linkcode REQUEST_ID_WINDOW_MS}.
   */
  replacedRequestIds?: { readonly requestId: string; readonly submittedAtMs: number }[];
}

/** An attempt the controller wants stopped on a worker. */
export interface KillOrder {
  readonly workerId: string;
  readonly taskId: string;
  readonly attemptId: number;
  readonly reason: string;
}

/** What a transition asks the loop to do. */
export interface Effects {
  readonly kills: KillOrder[];
  /** Attempts whose resources (or setup slot: the building limit) are free again: reschedule. */
  released: number;
  /** Jobs that reached a terminal state. */
  readonly finishedJobs: string[];
}

/** An empty effects record. */
export function noEffects(): Effects {
  return { kills: [], released: 0, finishedJobs: [] };
}

/** An attempt's terminal report from a worker. */
export interface AttemptOutcome {
  readonly state: TaskState;
  readonly exitCode?: number;
  readonly signal?: string;
  readonly error?: string;
  readonly finishedAtMs: number;
  readonly peakMemoryBytes?: number;
  readonly stderrTail?: readonly string[];
}

/** One job's tasks by index, and how many are present. */
interface TaskList {
  readonly tasks: (TaskRecord | undefined)[];
  count: number;
}

/**
 * Tasks by id, read like a Map. Held as one array per job, by index, instead of one Map entry
 * per task: a million entries of a string-keyed Map cost tens of bytes each and seconds to build
 * at a restart (#20); an id is resolved through its job (`<job id>/<index>`).
 */
export class TaskIndex {
  readonly #byJob = new Map<string, TaskList>();
  /** The job of the last read (see get). */
  #last: { readonly jobId: string; readonly entry: TaskList } | undefined;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  get(taskId: string): TaskRecord | undefined {
    const slash = taskId.lastIndexOf("/");
    if (slash < 0) return undefined;
    // Reads come in runs of one job's tasks (a heartbeat's updates, a job's placements): the
    // last job found is tried first, without cutting (and hashing) the id's job part.
    let last = this.#last;
    if (
      last === undefined || last.jobId.length !== slash || !taskId.startsWith(last.jobId)
    ) {
      const jobId = taskId.slice(0, slash);
      const entry = this.#byJob.get(jobId);
      if (!entry) return undefined;
      this.#last = last = { jobId, entry };
    }
    let index = 0;
    for (let i = slash + 1; i < taskId.length; i++) {
      const digit = taskId.charCodeAt(i) - 48;
      if (digit < 0 || digit > 9) return undefined;
      index = index * 10 + digit;
    }
    const task = last.entry.tasks[index];
    // "/u/j/01" names no task, though it reads as 1.
    return task !== undefined && task.taskId === taskId ? task : undefined;
  }

  has(taskId: string): boolean {
    return this.get(taskId) !== undefined;
  }

  /** Adds or replaces a task (`taskId` is `task.taskId`). */
  set(taskId: string, task: TaskRecord): this {
    if (taskId !== task.taskId) throw new Error(`task ${task.taskId} filed as ${taskId}`);
    let entry = this.#byJob.get(task.jobId);
    if (!entry) this.#byJob.set(task.jobId, entry = { tasks: [], count: 0 });
    if (entry.tasks[task.index] === undefined) {
      entry.count++;
      this.#size++;
    }
    // Filled in index order, so the array stays dense (holes would slow every read).
    while (entry.tasks.length < task.index) entry.tasks.push(undefined);
    entry.tasks[task.index] = task;
    return this;
  }

  delete(taskId: string): boolean {
    const task = this.get(taskId);
    if (!task) return false;
    const entry = this.#byJob.get(task.jobId)!;
    entry.tasks[task.index] = undefined;
    this.#size--;
    if (--entry.count === 0) {
      this.#byJob.delete(task.jobId);
      if (this.#last?.entry === entry) this.#last = undefined;
    }
    return true;
  }

  clear(): void {
    this.#byJob.clear();
    this.#last = undefined;
    this.#size = 0;
  }

  *values(): Generator<TaskRecord> {
    for (const { tasks } of this.#byJob.values()) {
      for (const task of tasks) if (task !== undefined) yield task;
    }
  }

  *keys(): Generator<string> {
    for (const task of this.values()) yield task.taskId;
  }

  *entries(): Generator<[string, TaskRecord]> {
    for (const task of this.values()) yield [task.taskId, task];
  }

  [Symbol.iterator](): Generator<[string, TaskRecord]> {
    return this.entries();
  }
}

/** Jobs, tasks and attempts. */
export class JobTable {
  readonly jobs = new Map<string, JobRecord>();
  readonly tasks = new TaskIndex();
  /**
   * Pending task indices per job, in submission order (Map keeps insertion order). Changed only
   * through #addPending/#deletePending, which keep {@linkcode pendingIndices} current.
   */
  readonly pending = new Map<string, Set<number>>();
  /**
   * Each user's jobs that are not finished: a submit under a task budget counts them without
   * walking the finished jobs kept for retention (a walk per submit made a burst quadratic).
   */
  readonly #activeByUser = new Map<string, Set<JobRecord>>();
  /**
   * The entries of {@linkcode pending} that are not empty, in submission order: what a scheduling
   * pass walks. Finished jobs stay in the table until retention removes them, and must not cost
   * every pass a look (a pass per few placements made a burst quadratic in the jobs kept, #20).
   */
  readonly #queued = new Map<string, Set<number>>();
  /** Each job's place in submission order, to put a job whose task is pending again back in it. */
  readonly #order = new Map<string, number>();
  #nextOrder = 0;
  /** The highest place queued since the last sort: a lower one puts #queued out of order. */
  #lastQueued = -1;
  #queuedUnordered = false;
  /**
   * Each job's pending indices as an array, built when first asked for after a change: a
   * scheduling pass takes a job's unchanged array as it is, so its snapshot costs one entry per
   * job, not per pending task (a burst of submits of large jobs is not quadratic in tasks).
   */
  readonly #pendingArrays = new Map<string, readonly number[]>();
  /** Why a job's pending tasks are not placed (the last scheduling pass's reason). */
  readonly #pendingReasons = new Map<string, PendingReasonData>();
  /** The queued jobs that have a scheduling timeout: all the timeout check walks (#20). */
  readonly #timed = new Set<string>();
  /**
   * Counts changes of the queue other than a new job joining its end (see
   * {@linkcode queueChanges}); #arrivals holds those new jobs until a pass takes them.
   */
  #queueChanges = 0;
  #arrivals: string[] = [];
  readonly #byRequestId = new Map<string, string>();
  /** Called when a task leaves the active states (endpoint cleanup etc.). */
  onTaskInactive: (task: TaskRecord) => void = () => {};
  /**
   * Ids of jobs to persist whole (job row and every task row) or to remove, since the last
   * persistence flush: submitted or removed jobs, and job-level changes made outside this table
   * (e.g. a reservation's gate opening). The controller's store writes them out and clears the
   * set (store.ts).
   */
  readonly dirty = new Set<string>();
  /**
   * Ids of tasks changed since the last persistence flush (their job's row is written with
   * them). A transition of one task marks that task only, so a write grows with what changed,
   * not with the job's replica count.
   */
  readonly dirtyTasks = new Set<string>();
  /**
   * The ids in {@linkcode dirty} of jobs submitted under an id that has no rows in the store
   * (neither replacing a job nor following one removed since the last flush): their write skips
   * deleting the task rows of an older job of that id, one statement per submit (#20).
   */
  readonly newJobs = new Set<string>();

  /** Forgets what is dirty (memory-only controllers, after a flush). */
  clearDirty(): void {
    this.dirty.clear();
    this.dirtyTasks.clear();
    this.newJobs.clear();
  }

  /**
   * Runs a job in another band than it asked for (its user's budget, budgets.ts), with the reason
   * shown in its status. Marks the job to be written.
   */
  setBand(job: JobRecord, band: Band, reason: string): void {
    job.band = band;
    job.bandReason = reason;
    this.#queueChanges++;
    this.dirty.add(job.jobId);
  }

  /** Opens a job's reservation gate (every entry held a worker once); it never closes again. */
  openReservationGate(job: JobRecord): void {
    if (job.reservationReady) return;
    job.reservationReady = true;
    this.#queueChanges++;
    this.dirty.add(job.jobId);
  }

  /** Records the ports a task's worker allocated (written when they changed). */
  setPorts(task: TaskRecord, ports: Readonly<Record<string, number>>): void {
    const old = task.ports;
    const keys = Object.keys(ports);
    if (keys.length === Object.keys(old).length && keys.every((k) => old[k] === ports[k])) return;
    task.ports = keys.length ? { ...ports } : NO_PORTS;
    this.dirtyTasks.add(task.taskId);
  }

  /** Raises an attempt's peak memory to `bytes` when higher (written when it rose). */
  notePeakMemory(task: TaskRecord, attempt: AttemptRecord, bytes: number): void {
    if (bytes <= attempt.peakMemoryBytes) return;
    attempt.peakMemoryBytes = bytes;
    this.dirtyTasks.add(task.taskId);
  }

  /**
   * Sets why a job's pending tasks are not placed (the scheduler gives one reason per job). Kept
   * per job and not written: every scheduling pass recomputes it (after a restart the first), so
   * writing it would cost a write per pending job per pass.
   */
  setPendingReason(jobId: string, reason: PendingReasonData | undefined): void {
    if (reason) this.#pendingReasons.set(jobId, reason);
    else this.#pendingReasons.delete(jobId);
  }

  /** Why a pending task is not placed (its job's reason); undefined when it is not pending. */
  pendingReasonOf(task: TaskRecord): PendingReasonData | undefined {
    return task.state === TaskState.PENDING ? this.#pendingReasons.get(task.jobId) : undefined;
  }

  /** Why a job's pending tasks are not placed; undefined when none is pending. */
  jobPendingReason(job: JobRecord): PendingReasonData | undefined {
    return job.counts[TaskState.PENDING] ? this.#pendingReasons.get(job.jobId) : undefined;
  }

  /**
   * Jobs with at least one pending task and their pending indices, in submission order. Callers
   * must not modify it; it may change under an iteration that changes task states.
   */
  pendingJobs(): ReadonlyMap<string, ReadonlySet<number>> {
    if (this.#queuedUnordered) {
      const order = (jobId: string) => this.#order.get(jobId) ?? 0;
      const sorted = [...this.#queued].sort(([a], [b]) => order(a) - order(b));
      this.#queued.clear();
      for (const [jobId, pending] of sorted) this.#queued.set(jobId, pending);
      this.#queuedUnordered = false;
      this.#lastQueued = sorted.length ? order(sorted[sorted.length - 1]![0]) : -1;
    }
    return this.#queued;
  }

  /**
   * Bumped by every change of the queue (pending sets, bands, reservation gates, removals) except
   * a new job joining its end: while it stays the same, every job a scheduling pass left waiting
   * waits unchanged, and only {@linkcode takeArrivals} are new (scheduling_pass.ts).
   */
  get queueChanges(): number {
    return this.#queueChanges;
  }

  /**
   * The jobs queued new at the end since the last call, in submission order (some may have left
   * the queue since). Past {@linkcode MAX_ARRIVALS} they are dropped and the queue counts as
   * changed.
   */
  takeArrivals(): readonly string[] {
    const arrivals = this.#arrivals;
    if (arrivals.length) this.#arrivals = [];
    return arrivals;
  }

  /** The queued jobs with a scheduling timeout (`scheduling_timeout_ms`). */
  timedPendingJobs(): ReadonlySet<string> {
    return this.#timed;
  }

  #track(jobId: string, pending: Set<number>): void {
    const isNew = !this.#order.has(jobId);
    if (isNew) this.#order.set(jobId, this.#nextOrder++);
    else this.#queueChanges++;
    this.pending.set(jobId, pending);
    this.#pendingArrays.delete(jobId);
    if (pending.size > 0) {
      this.#queue(jobId, pending);
      if (isNew) this.#arrive(jobId);
    } else this.#unqueue(jobId);
  }

  #arrive(jobId: string): void {
    if (this.#arrivals.length < MAX_ARRIVALS) this.#arrivals.push(jobId);
    else this.#queueChanges++;
  }

  #queue(jobId: string, pending: Set<number>): void {
    if (this.#queued.has(jobId)) return;
    const place = this.#order.get(jobId) ?? 0;
    if (place < this.#lastQueued) this.#queuedUnordered = true;
    else this.#lastQueued = place;
    this.#queued.set(jobId, pending);
    if (this.jobs.get(jobId)?.spec.schedulingTimeoutMs) this.#timed.add(jobId);
  }

  #unqueue(jobId: string): void {
    this.#queued.delete(jobId);
    this.#timed.delete(jobId);
  }

  /**
   * A job's pending task indices in the order they became pending (empty when none). The same
   * array while they do not change: callers must not modify it.
   */
  pendingIndices(jobId: string): readonly number[] {
    let array = this.#pendingArrays.get(jobId);
    if (array === undefined) {
      array = [...(this.pending.get(jobId) ?? [])];
      this.#pendingArrays.set(jobId, array);
    }
    return array;
  }

  #addPending(jobId: string, index: number): void {
    const pending = this.pending.get(jobId);
    if (!pending || pending.has(index)) return;
    pending.add(index);
    this.#pendingArrays.delete(jobId);
    this.#queueChanges++;
    this.#queue(jobId, pending);
  }

  #deletePending(jobId: string, index: number): void {
    const pending = this.pending.get(jobId);
    if (!pending?.delete(index)) return;
    this.#pendingArrays.delete(jobId);
    this.#queueChanges++;
    if (pending.size === 0) this.#unqueue(jobId);
  }

  /** Submits a job. Returns its id and whether it was created (false: request id seen before). */
  submit(
    spec: JobSpec,
    requestId: string,
    nowMs: number,
    fx: Effects,
  ): { jobId: string; created: boolean } {
    const existing = this.findRequest(spec, requestId, nowMs);
    if (existing) return { jobId: existing, created: false };
    validateJobSpec(spec);
    const user = spec.user || "anonymous";
    validateUser(user);
    if (spec.parentJobId && !this.jobs.has(spec.parentJobId)) {
      throw new InvalidArgumentError("spec.parent_job_id", `no job ${spec.parentJobId}`);
    }
    const jobId = resolveJobId(spec, user);
    let attemptBase = 0;
    let replacedRequestIds: JobRecord["replacedRequestIds"];
    const old = this.jobs.get(jobId);
    if (old) {
      const policy = spec.existingJobPolicy;
      if (policy === ExistingJobPolicy.KEEP) return { jobId, created: false };
      if (policy === ExistingJobPolicy.ERROR) {
        throw new AlreadyExistsError(`Cannot submit job as ${jobId} already exists`);
      }
      if (!isJobTerminal(old.state) && policy !== ExistingJobPolicy.RECREATE) {
        throw new AlreadyExistsError(
          `Cannot submit job as ${jobId} is still ${
            JobState[old.state]!.toLowerCase()
          }: cancel it first or use existing_job_policy RECREATE`,
        );
      }
      this.terminate(jobId, "replaced by a new job of the same name", nowMs, fx);
      for (const tid of old.taskIds) {
        const t = this.tasks.get(tid);
        if (t) attemptBase = Math.max(attemptBase, t.attemptBase + t.attempts.length);
      }
      // The replaced job's request ids keep answering with this id (a late retry of the
      // submit that created it must not replace the new job again).
      replacedRequestIds = [
        ...(old.replacedRequestIds ?? []),
        ...(old.requestId ? [{ requestId: old.requestId, submittedAtMs: old.submittedAtMs }] : []),
      ].filter((r) => nowMs - r.submittedAtMs < REQUEST_ID_WINDOW_MS);
      this.#remove(jobId);
    }
    const replicas = spec.replicas || 1;
    const job: JobRecord = {
      jobId,
      user,
      spec,
      requestId,
      submittedAtMs: nowMs,
      startedAtMs: 0,
      finishedAtMs: 0,
      state: JobState.PENDING,
      error: "",
      exitCode: 0,
      taskIds: [],
      parentJobId: spec.parentJobId,
      childIds: new Set(),
      counts: { [TaskState.PENDING]: replicas },
      ...(replacedRequestIds?.length ? { replacedRequestIds } : {}),
    };
    const pending = new Set<number>();
    const initial = {
      state: TaskState.PENDING,
      attempts: NO_ATTEMPTS,
      attemptBase,
      failureCount: 0,
      preemptionCount: 0,
      pendingSinceMs: nowMs,
      ports: NO_PORTS,
      stderrTail: NO_STDERR,
      error: "",
    };
    const idPrefix = `${jobId}/`;
    for (let i = 0; i < replicas; i++) {
      const task = newTask(jobId, i, initial, idPrefix);
      job.taskIds.push(task.taskId);
      pending.add(i);
      this.tasks.set(task.taskId, task);
    }
    this.jobs.set(jobId, job);
    this.#noteActivity(job);
    this.#track(jobId, pending);
    if (job.parentJobId) this.jobs.get(job.parentJobId)?.childIds.add(jobId);
    this.#indexRequestIds(job);
    // Dirty already: removed (replaced) since the last flush, its rows are still stored.
    if (!this.dirty.has(jobId)) this.newJobs.add(jobId);
    this.dirty.add(jobId);
    return { jobId, created: true };
  }

  /**
   * The job a repeated submit (same owner and request id) gets, if any: the job it created, while
   * that job exists, or the job that replaced it (RECREATE), for {@linkcode REQUEST_ID_WINDOW_MS}
   * after the submit.
   */
  findRequest(spec: JobSpec, requestId: string, nowMs: number): string | undefined {
    if (!requestId) return undefined;
    const jobId = this.#byRequestId.get(requestKey(requestOwner(spec), requestId));
    const job = jobId === undefined ? undefined : this.jobs.get(jobId);
    if (!job) return undefined;
    if (job.requestId === requestId) return job.jobId;
    const replaced = job.replacedRequestIds?.find((r) => r.requestId === requestId);
    return replaced && nowMs - replaced.submittedAtMs < REQUEST_ID_WINDOW_MS
      ? job.jobId
      : undefined;
  }

  /** Maps the job's request id, and those of the jobs it replaced, to its id. */
  #indexRequestIds(job: JobRecord): void {
    const owner = requestOwnerOfJob(job.jobId);
    if (job.requestId) this.#byRequestId.set(requestKey(owner, job.requestId), job.jobId);
    for (const r of job.replacedRequestIds ?? []) {
      this.#byRequestId.set(requestKey(owner, r.requestId), job.jobId);
    }
  }

  #unindexRequestIds(job: JobRecord): void {
    const owner = requestOwnerOfJob(job.jobId);
    for (const id of [job.requestId, ...(job.replacedRequestIds ?? []).map((r) => r.requestId)]) {
      const key = requestKey(owner, id);
      if (id && this.#byRequestId.get(key) === job.jobId) this.#byRequestId.delete(key);
    }
  }

  /**
   * Forgets everything (before the table is loaded again from the store, e.g. to undo changes
   * whose commit failed).
   */
  clear(): void {
    this.jobs.clear();
    this.#activeByUser.clear();
    this.tasks.clear();
    this.pending.clear();
    this.#queued.clear();
    this.#timed.clear();
    this.#queueChanges++;
    this.#arrivals = [];
    this.#order.clear();
    this.#lastQueued = -1;
    this.#queuedUnordered = false;
    this.#pendingArrays.clear();
    this.#pendingReasons.clear();
    this.#byRequestId.clear();
    this.dirty.clear();
    this.newJobs.clear();
  }

  /**
   * Rebuilds the table from persisted jobs (store.ts), replacing nothing already present:
   * pending sets, request ids and parent/child links are derived from the records; job state
   * counts are recomputed from the tasks. `jobs` must be in submission order.
   */
  restore(entries: Iterable<{ job: JobRecord; tasks: TaskRecord[] }>): void {
    for (const { job, tasks } of entries) {
      const counts = job.counts as Record<number, number>;
      for (const k of Object.keys(counts)) delete counts[Number(k)];
      const pending = new Set<number>();
      for (const task of tasks) {
        this.tasks.set(task.taskId, task);
        counts[task.state] = (counts[task.state] ?? 0) + 1;
        if (task.state === TaskState.PENDING) pending.add(task.index);
      }
      this.jobs.set(job.jobId, job);
      this.#noteActivity(job);
      this.#track(job.jobId, pending);
      this.#indexRequestIds(job);
    }
    for (const job of this.jobs.values()) {
      if (job.parentJobId) this.jobs.get(job.parentJobId)?.childIds.add(job.jobId);
    }
  }

  /** A job or NotFoundError. */
  job(jobId: string): JobRecord {
    const job = this.jobs.get(jobId);
    if (!job) throw new NotFoundError(`No job ${jobId}`);
    return job;
  }

  /** A task or NotFoundError. */
  task(taskId: string): TaskRecord {
    const task = this.tasks.get(taskId);
    if (!task) throw new NotFoundError(`No task ${taskId}`);
    return task;
  }

  /** The current (latest) attempt of a task. */
  currentAttempt(task: TaskRecord): AttemptRecord | undefined {
    return task.attempts[task.attempts.length - 1];
  }

  /** Attempt `attemptId` of task `taskId`, with its task; undefined when either is unknown. */
  findAttempt(
    taskId: string,
    attemptId: number,
  ): { task: TaskRecord; attempt: AttemptRecord } | undefined {
    const task = this.tasks.get(taskId);
    const attempt = task?.attempts.find((a) => a.attemptId === attemptId);
    return task && attempt ? { task, attempt } : undefined;
  }

  /** Records a placement: a new ASSIGNED attempt on `workerId`. */
  assign(taskId: string, workerId: string, nowMs: number): AttemptRecord {
    const task = this.task(taskId);
    const attempt: AttemptRecord = {
      attemptId: task.attemptBase + task.attempts.length,
      workerId,
      state: TaskState.ASSIGNED,
      exitCode: 0,
      signal: "",
      error: "",
      assignedAtMs: nowMs,
      startedAtMs: 0,
      finishedAtMs: 0,
      isWorkerFailure: false,
      peakMemoryBytes: 0,
    };
    if (task.attempts === NO_ATTEMPTS) task.attempts = [attempt];
    else task.attempts.push(attempt);
    this.dirtyTasks.add(task.taskId);
    this.#deletePending(task.jobId, task.index);
    this.#setTaskState(task, TaskState.ASSIGNED, nowMs, noEffects());
    return attempt;
  }

  /** The worker started (or is building) an attempt. */
  attemptStarted(
    task: TaskRecord,
    attempt: AttemptRecord,
    state: TaskState,
    startedAtMs: number,
    fx: Effects,
  ): void {
    if (isTaskTerminal(attempt.state)) return;
    this.dirtyTasks.add(task.taskId);
    attempt.state = state;
    if (state === TaskState.RUNNING && !attempt.startedAtMs) attempt.startedAtMs = startedAtMs;
    if (this.currentAttempt(task) === attempt && isTaskActive(task.state)) {
      this.#setTaskState(task, state, startedAtMs, fx);
    }
  }

  /**
   * An attempt ended. Applies the retry budgets: a failure retries while failure_count ≤
   * max_retries_failure, a worker failure while preemption_count ≤ max_retries_preemption.
   * A coscheduled job retries (or fails) as a whole.
   */
  attemptEnded(
    task: TaskRecord,
    attempt: AttemptRecord,
    outcome: AttemptOutcome,
    fx: Effects,
  ): void {
    if (isTaskTerminal(attempt.state)) return;
    this.dirtyTasks.add(task.taskId);
    attempt.state = outcome.state;
    attempt.exitCode = outcome.exitCode ?? 0;
    attempt.signal = outcome.signal ?? "";
    attempt.error = outcome.error ?? "";
    attempt.finishedAtMs = outcome.finishedAtMs;
    attempt.peakMemoryBytes = Math.max(attempt.peakMemoryBytes, outcome.peakMemoryBytes ?? 0);
    attempt.isWorkerFailure = outcome.state === TaskState.WORKER_FAILED ||
      outcome.state === TaskState.PREEMPTED;
    if (outcome.stderrTail?.length) task.stderrTail = [...outcome.stderrTail];
    fx.released++;
    // A stale attempt (killed sibling, replaced attempt) no longer decides the task's fate.
    if (this.currentAttempt(task) !== attempt || isTaskTerminal(task.state)) return;
    const job = this.job(task.jobId);
    const now = outcome.finishedAtMs;
    task.error = attempt.error;
    switch (outcome.state) {
      case TaskState.SUCCEEDED:
        this.#setTaskState(task, TaskState.SUCCEEDED, now, fx);
        return;
      case TaskState.KILLED:
        this.#setTaskState(task, TaskState.KILLED, now, fx);
        return;
      case TaskState.FAILED: {
        task.failureCount++;
        const retry = task.failureCount <= job.spec.maxRetriesFailure;
        this.#endOrRetry(job, task, retry ? TaskState.PENDING : TaskState.FAILED, now, fx);
        return;
      }
      default: {
        task.preemptionCount++;
        const budget = job.spec.maxRetriesPreemption ?? DEFAULT_MAX_RETRIES_PREEMPTION;
        const retry = task.preemptionCount <= budget;
        this.#endOrRetry(job, task, retry ? TaskState.PENDING : outcome.state, now, fx);
      }
    }
  }

  #endOrRetry(job: JobRecord, task: TaskRecord, next: TaskState, nowMs: number, fx: Effects): void {
    this.#setTaskState(task, next, nowMs, fx);
    if (!job.spec.coscheduling?.groupBy) return;
    // Gang semantics: siblings still on workers are stopped and follow the failed task.
    for (const tid of job.taskIds) {
      const sib = this.tasks.get(tid)!;
      if (sib === task || isTaskTerminal(sib.state)) continue;
      const att = this.currentAttempt(sib);
      if (att && isTaskActive(att.state)) {
        fx.kills.push({
          workerId: att.workerId,
          taskId: sib.taskId,
          attemptId: att.attemptId,
          reason: `gang member ${task.taskId} failed`,
        });
      }
      if (sib.state !== TaskState.PENDING) {
        this.#setTaskState(
          sib,
          next === TaskState.PENDING ? TaskState.PENDING : TaskState.KILLED,
          nowMs,
          fx,
        );
        if (next !== TaskState.PENDING) sib.error = `gang member ${task.taskId} failed`;
      }
    }
  }

  /**
   * Evicts a task's active attempt for a higher band: the attempt becomes PREEMPTED and gets a
   * kill order; the task is retried while preemption_count ≤ max_retries_preemption, else it
   * ends PREEMPTED. Evicting an attempt that is only ASSIGNED does not use the budget. Gang
   * siblings are not touched: the scheduler lists every member of a victim gang.
   * @returns false when the task has no active attempt (nothing to do).
   */
  preempt(task: TaskRecord, reason: string, nowMs: number, fx: Effects): boolean {
    const att = this.currentAttempt(task);
    if (!att || !isTaskActive(att.state) || !isTaskActive(task.state)) return false;
    const job = this.job(task.jobId);
    this.dirtyTasks.add(task.taskId);
    fx.kills.push({
      workerId: att.workerId,
      taskId: task.taskId,
      attemptId: att.attemptId,
      reason,
    });
    const free = att.state === TaskState.ASSIGNED;
    att.state = TaskState.PREEMPTED;
    att.error = reason;
    att.finishedAtMs = nowMs;
    att.isWorkerFailure = true;
    task.error = reason;
    if (!free) task.preemptionCount++;
    const budget = job.spec.maxRetriesPreemption ?? DEFAULT_MAX_RETRIES_PREEMPTION;
    this.#setTaskState(
      task,
      task.preemptionCount <= budget ? TaskState.PENDING : TaskState.PREEMPTED,
      nowMs,
      fx,
    );
    return true;
  }

  /** Marks a pending task UNSCHEDULABLE (scheduling timeout). */
  unschedulable(task: TaskRecord, reason: string, nowMs: number, fx: Effects): void {
    task.error = reason;
    this.dirtyTasks.add(task.taskId);
    this.#setTaskState(task, TaskState.UNSCHEDULABLE, nowMs, fx);
  }

  /**
   * Terminates a job and its descendants: pending tasks become KILLED at once; active attempts
   * get kill orders (their resources stay committed until the worker confirms).
   * Returns the ids of jobs that were still active.
   */
  terminate(jobId: string, reason: string, nowMs: number, fx: Effects): string[] {
    const job = this.job(jobId);
    const terminated: string[] = [];
    for (const childId of job.childIds) {
      if (this.jobs.has(childId)) terminated.push(...this.terminate(childId, reason, nowMs, fx));
    }
    if (isJobTerminal(job.state)) return terminated;
    terminated.push(jobId);
    // The job row is written with the tasks this kills (an active job has one at least).
    job.error ||= reason;
    for (const tid of job.taskIds) {
      const task = this.tasks.get(tid)!;
      if (isTaskTerminal(task.state)) continue;
      this.#killTask(task, reason, nowMs, fx);
    }
    return terminated;
  }

  #killTask(task: TaskRecord, reason: string, nowMs: number, fx: Effects): void {
    const att = this.currentAttempt(task);
    if (att && isTaskActive(att.state)) {
      fx.kills.push({
        workerId: att.workerId,
        taskId: task.taskId,
        attemptId: att.attemptId,
        reason,
      });
    }
    task.error ||= reason;
    this.#setTaskState(task, TaskState.KILLED, nowMs, fx);
  }

  #setTaskState(task: TaskRecord, state: TaskState, nowMs: number, fx: Effects): void {
    const prev = task.state;
    if (prev === state) return;
    const job = this.jobs.get(task.jobId)!;
    this.dirtyTasks.add(task.taskId);
    job.counts[prev] = (job.counts[prev] ?? 1) - 1;
    job.counts[state] = (job.counts[state] ?? 0) + 1;
    task.state = state;
    if (state === TaskState.PENDING) {
      task.pendingSinceMs = nowMs;
      this.#addPending(task.jobId, task.index);
    } else if (prev === TaskState.PENDING) {
      this.#deletePending(task.jobId, task.index);
    }
    if (isTaskActive(prev) && !isTaskActive(state)) this.onTaskInactive(task);
    this.#updateJob(job, nowMs, fx);
  }

  /** The user's jobs that are not finished (in no particular order). */
  activeJobsOf(user: string): Iterable<JobRecord> {
    return this.#activeByUser.get(user) ?? [];
  }

  /** Files `job` under its user's active jobs, or takes it out once finished. */
  #noteActivity(job: JobRecord): void {
    if (isJobTerminal(job.state)) return this.#forgetActivity(job);
    let jobs = this.#activeByUser.get(job.user);
    if (!jobs) this.#activeByUser.set(job.user, jobs = new Set());
    jobs.add(job);
  }

  #forgetActivity(job: JobRecord): void {
    const jobs = this.#activeByUser.get(job.user);
    if (!jobs?.delete(job) || jobs.size > 0) return;
    this.#activeByUser.delete(job.user);
  }

  #updateJob(job: JobRecord, nowMs: number, fx: Effects): void {
    const next = deriveJobState(
      job.counts as TaskStateCounts,
      job.taskIds.length,
      job.spec.maxTaskFailures,
    );
    if (next === job.state) return;
    const prev = job.state;
    job.state = next;
    if (isJobTerminal(next) !== isJobTerminal(prev)) this.#noteActivity(job);
    if (next === JobState.RUNNING && !job.startedAtMs) job.startedAtMs = nowMs;
    if (!isJobTerminal(next) || isJobTerminal(prev)) return;
    job.finishedAtMs = nowMs;
    this.pending.get(job.jobId)?.clear();
    if (this.#queued.has(job.jobId)) this.#queueChanges++;
    this.#unqueue(job.jobId);
    this.#pendingArrays.delete(job.jobId);
    this.#pendingReasons.delete(job.jobId);
    fx.finishedJobs.push(job.jobId);
    if (next === JobState.FAILED) {
      const failed = job.taskIds.map((id) => this.tasks.get(id)!).find((t) =>
        t.state === TaskState.FAILED
      );
      const att = failed && this.currentAttempt(failed);
      job.exitCode = att?.exitCode ?? 1;
      job.error ||= failed
        ? `task ${failed.index} failed: ${failed.error || `exit code ${job.exitCode}`}`
        : "failed";
    }
    if (next !== JobState.SUCCEEDED && !job.error) {
      // The first deciding task's reason explains the job ("task 0 unschedulable: …").
      const deciding = decidingTaskStates(next);
      const t = job.taskIds.map((id) => this.tasks.get(id)!).find((t) =>
        deciding.includes(t.state) && t.error
      );
      if (t) job.error = `task ${t.index} ${taskStateName(t.state)}: ${t.error}`;
    }
    if (next !== JobState.SUCCEEDED) {
      // A job that ended badly stops its remaining tasks and its children.
      const why = `job ${job.jobId} ${JobState[next]!.toLowerCase()}`;
      for (const tid of job.taskIds) {
        const t = this.tasks.get(tid)!;
        if (!isTaskTerminal(t.state)) this.#killTask(t, why, nowMs, fx);
      }
      for (const childId of job.childIds) {
        if (this.jobs.has(childId)) this.terminate(childId, why, nowMs, fx);
      }
    }
  }

  #remove(jobId: string): void {
    const job = this.jobs.get(jobId);
    if (!job) return;
    this.dirty.add(jobId);
    this.newJobs.delete(jobId);
    for (const tid of job.taskIds) {
      this.tasks.delete(tid);
      this.dirtyTasks.delete(tid);
    }
    this.pending.delete(jobId);
    if (this.#queued.has(jobId)) this.#queueChanges++;
    this.#unqueue(jobId);
    this.#order.delete(jobId);
    this.#pendingArrays.delete(jobId);
    this.#pendingReasons.delete(jobId);
    this.jobs.delete(jobId);
    this.#forgetActivity(job);
    this.#unindexRequestIds(job);
    if (job.parentJobId) this.jobs.get(job.parentJobId)?.childIds.delete(jobId);
  }
}

/** The owner segment of a job id (`/<user>/...`). */
function requestOwnerOfJob(jobId: string): string {
  return jobId.split("/")[1] ?? "";
}
