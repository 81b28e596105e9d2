/**
 * Dispatch: the controller's calls to its workers. Sends RunTask for placed attempts (with their
 * environment, task_env.ts; the attempts for one worker in one event-loop turn go in one RunTasks)
 * and KillTask for kill orders, keeps one client per worker address, knows which RunTask calls are
 * in flight (a worker registering may not list those yet) and tracks every call so the controller
 * can await them when it stops.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type RunTaskRequest,
  RunTaskRequestSchema,
  type RunTaskResponse,
} from "../rpc/gen/iris/v1/worker_pb.ts";
import { MAX_RUN_TASKS_ATTEMPTS, TaskState, type WorkerClient, workerClient } from "../rpc/mod.ts";
import { type Duration, seconds } from "../time.ts";
import { describeError } from "../errors.ts";
import { isTaskActive } from "./job_rules.ts";
import type { AttemptRecord, JobRecord, JobTable, KillOrder, TaskRecord } from "./state.ts";
import { attemptKey, type WorkerTable } from "./workers.ts";
import type { EndpointTable } from "./endpoints.ts";
import { type GangMember, masterPort, taskEnv } from "./task_env.ts";

/** How long one RunTask or KillTask call may take. */
export const WORKER_CALL_TIMEOUT: Duration = seconds(10);

/** Options for {@linkcode Dispatcher}. */
export interface DispatcherOptions {
  /** Builds a client for a worker address. @default a Connect client over HTTP */
  readonly clientFactory?: (address: string) => WorkerClient;
  readonly log: (line: string) => void;
  /**
   * The worker answered RunTask with the attempt out of setup (RUNNING or ended): its place under
   * the building limit is free before the heartbeat that reports the state (#20).
   */
  readonly onLeftSetup?: (workerId: string, key: string) => void;
}

/** One attempt placed by a scheduling pass. */
export interface Placed {
  readonly task: TaskRecord;
  readonly attempt: AttemptRecord;
}

/** An attempt waiting for its batch to leave. */
interface Queued {
  readonly req: RunTaskRequest;
  readonly resolve: (res: RunTaskResponse) => void;
  readonly reject: (err: unknown) => void;
}

/** The controller's calls to workers, and the clients they use. */
export class Dispatcher {
  readonly #opts: DispatcherOptions;
  readonly #clients = new Map<string, WorkerClient>();
  readonly #inflight = new Set<Promise<unknown>>();
  /** Attempts whose RunTask is in flight. */
  readonly #dispatching = new Set<string>();
  /** Attempts to send at the end of this event-loop turn, by worker address. */
  readonly #batches = new Map<string, Queued[]>();
  /** Addresses whose worker answered RunTasks with Unimplemented: one RunTask per attempt. */
  readonly #singlesOnly = new Set<string>();
  /** MASTER_PORT of each GPU gang attempt (key: task 0's attemptKey), while it may be active. */
  readonly #masterPorts = new Map<string, number>();

  constructor(options: DispatcherOptions) {
    this.#opts = options;
  }

  /** The (cached) client for a worker's address. */
  client(address: string): WorkerClient {
    let c = this.#clients.get(address);
    if (!c) {
      c = this.#opts.clientFactory?.(address) ?? workerClient(address);
      this.#clients.set(address, c);
    }
    return c;
  }

  /** Drops the cached client of an address (the worker re-registered or died). */
  forget(address: string): void {
    this.#clients.delete(address);
    this.#singlesOnly.delete(address); // it may have been upgraded
  }

  /** Whether the RunTask of attempt `key` (attemptKey) is in flight. */
  isDispatching(key: string): boolean {
    return this.#dispatching.has(key);
  }

  /**
   * Sends RunTask for the attempts placed for one job (a gang learns its peers' hosts); task 0
   * of a gang registers the endpoint it serves. `onFailed` runs when a call fails or the worker
   * refuses the task.
   */
  dispatchJob(
    ctx: {
      readonly jobs: JobTable;
      readonly workers: WorkerTable;
      readonly endpoints: EndpointTable;
      readonly baseEnv?: Readonly<Record<string, string>>;
      readonly controllerUrl: string;
    },
    job: JobRecord,
    placed: readonly Placed[],
    onFailed: (taskId: string, attemptId: number, workerId: string, err: unknown) => void,
  ): void {
    const spec = job.spec;
    // Only a gang's env reads where its members are (O(replicas) per call otherwise, #20).
    const members = spec.coscheduling?.groupBy ? gangMembers(ctx.jobs, ctx.workers, job) : [];
    const task0 = ctx.jobs.tasks.get(job.taskIds[0]!);
    const attempt0 = task0 ? ctx.jobs.currentAttempt(task0)?.attemptId ?? 0 : 0;
    const port = spec.coscheduling?.groupBy && task0
      ? this.#masterPort(ctx, job.jobId, task0.taskId, attempt0, members[0]?.workerId ?? "")
      : undefined;
    for (const { task, attempt } of placed) {
      const worker = ctx.workers.workers.get(attempt.workerId)!;
      const { env, endpoint, reservedPorts } = taskEnv({
        base: ctx.baseEnv,
        jobId: job.jobId,
        user: job.user,
        spec,
        taskId: task.taskId,
        taskIndex: task.index,
        numTasks: job.taskIds.length,
        attemptId: attempt.attemptId,
        workerId: worker.workerId,
        workerAttributes: worker.attributes,
        controllerUrl: ctx.controllerUrl,
        members,
        attempt0,
        masterPort: port,
      });
      if (endpoint) {
        ctx.endpoints.register({
          ...endpoint,
          name: `${job.jobId}/${endpoint.name}`,
          taskId: task.taskId,
          jobId: job.jobId,
          metadata: {},
        });
      }
      const req = create(RunTaskRequestSchema, {
        taskId: task.taskId,
        jobId: job.jobId,
        attemptId: attempt.attemptId,
        taskIndex: task.index,
        numTasks: job.taskIds.length,
        entrypoint: spec.entrypoint,
        env,
        resources: spec.resources,
        ports: spec.ports,
        bundleId: spec.bundleId,
        timeoutMs: spec.timeoutMs,
        environment: spec.environment,
        interactive: spec.interactive,
        reservedPorts: reservedPorts ?? {},
      });
      const key = attemptKey(task.taskId, attempt.attemptId);
      this.#dispatching.add(key);
      this.track(
        this.#runTask(worker.address, req).then((res) => {
          if (!res.accepted) throw new Error(res.error || "worker refused the task");
          if (leftSetup(res.state)) this.#opts.onLeftSetup?.(worker.workerId, key);
        }).catch((err) => onFailed(task.taskId, attempt.attemptId, worker.workerId, err))
          .finally(() => this.#dispatching.delete(key)),
      );
    }
  }

  /**
   * Sends one attempt to the worker at `address`: the attempts sent to one worker in one event-loop
   * turn (one scheduling pass, one group of submits) leave together at its end, in one RunTasks.
   */
  #runTask(address: string, req: RunTaskRequest): Promise<RunTaskResponse> {
    const { promise, resolve, reject } = Promise.withResolvers<RunTaskResponse>();
    let batch = this.#batches.get(address);
    if (!batch) {
      const fresh: Queued[] = [];
      this.#batches.set(address, fresh);
      queueMicrotask(() => this.#send(address, fresh));
      batch = fresh;
    }
    batch.push({ req, resolve, reject });
    // A full batch leaves as it is (a worker refuses a larger one); the next attempts start another.
    if (batch.length >= MAX_RUN_TASKS_ATTEMPTS) this.#batches.delete(address);
    return promise;
  }

  /**
   * Sends the attempts gathered for `address`: several in one RunTasks, whose failure fails each;
   * one alone, or each to a worker without RunTasks, in its own RunTask.
   */
  async #send(address: string, batch: Queued[]): Promise<void> {
    if (this.#batches.get(address) === batch) this.#batches.delete(address);
    if (batch.length > 1 && !this.#singlesOnly.has(address)) {
      try {
        const { results } = await this.client(address).runTasks(
          { attempts: batch.map((b) => b.req) },
          { signal: AbortSignal.timeout(WORKER_CALL_TIMEOUT) },
        );
        for (const [i, b] of batch.entries()) {
          const result = results[i];
          if (result) b.resolve(result);
          else b.reject(new Error(`RunTasks answered ${results.length} of ${batch.length}`));
        }
        return;
      } catch (err) {
        if (ConnectError.from(err).code !== Code.Unimplemented) {
          for (const b of batch) b.reject(err);
          return;
        }
        // An older worker: one RunTask per attempt from now on.
        this.#singlesOnly.add(address);
      }
    }
    for (const b of batch) this.#runOne(address, b.req).then(b.resolve, b.reject);
  }

  async #runOne(address: string, req: RunTaskRequest): Promise<RunTaskResponse> {
    return await this.client(address).runTask(req, {
      signal: AbortSignal.timeout(WORKER_CALL_TIMEOUT),
    });
  }

  /**
   * MASTER_PORT of a gang attempt whose task 0 runs on `workerId`: the one already chosen for
   * this attempt, else one past the ports held on that host (named ports of the attempts of its
   * workers, other gangs' master ports). Task 0's worker holds it (RunTaskRequest.reserved_ports).
   */
  #masterPort(
    ctx: { readonly jobs: JobTable; readonly workers: WorkerTable },
    jobId: string,
    taskId0: string,
    attempt0: number,
    workerId: string,
  ): number {
    const key0 = attemptKey(taskId0, attempt0);
    const known = this.#masterPorts.get(key0);
    if (known !== undefined) return known;
    const active = new Set<string>();
    for (const w of ctx.workers.workers.values()) for (const k of w.active.keys()) active.add(k);
    for (const k of this.#masterPorts.keys()) if (!active.has(k)) this.#masterPorts.delete(k);
    const taken = new Set<number>();
    const w0 = ctx.workers.workers.get(workerId);
    const host = w0 ? new URL(w0.address).hostname : "";
    // Every worker on task 0's host (local clusters run several workers on one host).
    for (const w of ctx.workers.workers.values()) {
      if (w !== w0 && new URL(w.address).hostname !== host) continue;
      for (const key of w.active.keys()) {
        const at = key.lastIndexOf("#");
        const task = ctx.jobs.tasks.get(key.slice(0, at));
        for (const p of Object.values(task?.ports ?? {})) taken.add(p);
        const mp = this.#masterPorts.get(key);
        if (mp !== undefined) taken.add(mp);
      }
    }
    const port = masterPort(jobId, attempt0, taken);
    this.#masterPorts.set(key0, port);
    return port;
  }

  /** Sends a kill order to the worker at `address` (a failure is logged). */
  kill(address: string, k: KillOrder): void {
    this.track(
      this.client(address).killTask({
        taskId: k.taskId,
        attemptId: k.attemptId,
        reason: k.reason,
      }, {
        signal: AbortSignal.timeout(WORKER_CALL_TIMEOUT),
      }).catch((err) =>
        this.#opts.log(`kill of ${k.taskId} on ${k.workerId} failed: ${describeError(err)}`)
      ),
    );
  }

  /** Tracks a call so {@linkcode Dispatcher.drain} awaits it. */
  track(p: Promise<unknown>): void {
    this.#inflight.add(p);
    p.finally(() => this.#inflight.delete(p));
  }

  /** Waits for every tracked call to settle. */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.#inflight]);
  }
}

/** Where a job's tasks are placed, by index ("" host and worker for a task not placed). */
export function gangMembers(jobs: JobTable, workers: WorkerTable, job: JobRecord): GangMember[] {
  return job.taskIds.map((tid) => {
    const t = jobs.tasks.get(tid)!;
    const att = jobs.currentAttempt(t);
    const w = att && isTaskActive(att.state) ? workers.workers.get(att.workerId) : undefined;
    return { host: w ? new URL(w.address).hostname : "", workerId: w?.workerId ?? "" };
  });
}

/** A RunTaskResponse.state past setup: RUNNING or ended (unset: an older worker, or a fake). */
function leftSetup(state: TaskState): boolean {
  return state !== TaskState.UNSPECIFIED && state !== TaskState.ASSIGNED &&
    state !== TaskState.BUILDING && state !== TaskState.PENDING;
}
