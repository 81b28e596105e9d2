/**
 * WorkerService RPC routes: thin adapters from the wire onto a {@linkcode WorkerCore}.
 * Errors are translated to Connect codes here and nowhere else.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import {
  ExecInputResponseSchema,
  type ExecInTaskResponse,
  GetProcessStatusResponseSchema,
  type LogLine,
  type ProcessInfo,
  type ProfileTaskResponse,
  type ResourceSnapshot,
  type TaskState,
} from "../rpc/gen/iris/v1/types_pb.ts";
import { MAX_RUN_TASKS_ATTEMPTS } from "../rpc/mod.ts";
import {
  FetchTaskLogsResponseSchema,
  HealthResponseSchema,
  type KillTaskRequest,
  KillTaskResponseSchema,
  ReadJobOutputResponseSchema,
  type RunTaskRequest,
  type RunTaskResponse,
  RunTaskResponseSchema,
  RunTasksResponseSchema,
  WorkerListTasksResponseSchema,
  WorkerService,
  type WorkerTaskInfo,
  WorkerTaskStatusResponseSchema,
} from "../rpc/gen/iris/v1/worker_pb.ts";
import {
  describeError,
  InvalidArgumentError,
  NotFoundError,
  UnimplementedError,
} from "../errors.ts";
import { type Duration, ms, seconds } from "../time.ts";
import type { OutputRead } from "./outputs.ts";
import type { TerminalSize } from "./sessions.ts";

/**
 * Longest time RunTask waits for the attempt to leave setup before answering: long enough for a
 * plain command to start on a loaded host, short against the controller's call timeout.
 */
export const RUN_TASK_START_WAIT: Duration = ms(250);

/** What the routes need from a worker. */
export interface WorkerCore {
  /** Starts an attempt without waiting for it; idempotent per task and attempt. */
  runTask(request: RunTaskRequest): RunTaskResponse;
  /**
   * The state of an attempt once it left setup, or after `within` (RunTaskResponse.state);
   * undefined when the attempt is unknown (absent in fakes: the answer leaves the state unset).
   */
  leftSetup?(taskId: string, attemptId: number, within: Duration): Promise<TaskState | undefined>;
  /** True when the attempt was found (and, if still active, is being killed). */
  killTask(request: KillTaskRequest): boolean;
  /** The latest attempt of a task, or undefined. */
  taskStatus(taskId: string): WorkerTaskInfo | undefined;
  /** Every attempt the worker knows. */
  listTasks(): WorkerTaskInfo[];
  /** Lines of one attempt, or undefined when the attempt is unknown. */
  taskLogs(
    taskId: string,
    attemptId: number,
    sinceMs: number,
    maxLines: number,
  ): LogLine[] | undefined;
  /** A job's outputs here (ReadJobOutput); NotFoundError when there are none. */
  readJobOutput?(jobId: string, path: string, offset: number, length: number): Promise<OutputRead>;
  /** Liveness for Health. */
  health(): {
    healthy: boolean;
    workerId: string;
    uptimeMs: number;
    runningTasks: number;
    /** Current use of the tasks and of the host, without per-task samples. */
    snapshot?: ResourceSnapshot;
  };
  /** Runs a command like a running task (absent in fakes: Unimplemented). */
  execInTask?(
    taskId: string,
    command: readonly string[],
    timeout: Duration | undefined,
    signal: AbortSignal,
    interactive?: { terminal?: TerminalSize },
  ): AsyncGenerator<ExecInTaskResponse>;
  /** Input to an interactive exec or task (absent in fakes: Unimplemented). */
  execInput?(
    req: { sessionId: string; data: Uint8Array; eof: boolean; rows: number; cols: number },
  ): Promise<void>;
  /** The raw output of an interactive task (absent in fakes: Unimplemented). */
  attachTask?(taskId: string, signal: AbortSignal): AsyncGenerator<ExecInTaskResponse>;
  /** A CPU profile of a running task (absent in fakes: Unimplemented). */
  profileTask?(
    taskId: string,
    duration: Duration,
    signal: AbortSignal,
  ): Promise<ProfileTaskResponse>;
  /** The worker process itself, for GetProcessStatus (absent in fakes: Unimplemented). */
  processStatus?(maxLogLines: number): ProcessInfo;
}

/** RunTask: starts the attempt, answers once it left setup or after RUN_TASK_START_WAIT. */
async function runTask(core: WorkerCore, req: RunTaskRequest): Promise<RunTaskResponse> {
  const res = core.runTask(req);
  if (!res.accepted || !core.leftSetup) return res;
  const state = await core.leftSetup(req.taskId, req.attemptId, RUN_TASK_START_WAIT);
  if (state !== undefined) res.state = state;
  return res;
}

/** Registers WorkerService on a router, served by `core`. */
export function workerRoutes(core: WorkerCore): (router: ConnectRouter) => void {
  // Handlers throw Iris errors; serveRpc's interceptor maps them to codes (src/rpc/errors.ts).
  return (router) =>
    router.service(WorkerService, {
      runTask: (req) => runTask(core, req),
      runTasks: async (req) => {
        // Refused whole, before any starts: the worker's state is as it was.
        if (req.attempts.length > MAX_RUN_TASKS_ATTEMPTS) {
          throw new InvalidArgumentError(
            "attempts",
            `at most ${MAX_RUN_TASKS_ATTEMPTS} per call (got ${req.attempts.length})`,
          );
        }
        // Every attempt starts before any waits, so the waits overlap; an attempt that throws is
        // refused alone (its own RunTask would have failed alone).
        const results = req.attempts.map((a) =>
          runTask(core, a).catch((err) =>
            create(RunTaskResponseSchema, { accepted: false, error: describeError(err) })
          )
        );
        return create(RunTasksResponseSchema, { results: await Promise.all(results) });
      },
      killTask: (req) => create(KillTaskResponseSchema, { found: core.killTask(req) }),
      getTaskStatus: (req) => {
        const task = core.taskStatus(req.taskId);
        if (!task) throw new NotFoundError(`No task ${req.taskId} on this worker`);
        return create(WorkerTaskStatusResponseSchema, { task });
      },
      listTasks: () => create(WorkerListTasksResponseSchema, { tasks: core.listTasks() }),
      fetchTaskLogs: (req) => {
        const lines = core.taskLogs(req.taskId, req.attemptId, req.sinceMs, req.maxLines);
        if (!lines) {
          throw new NotFoundError(
            `No attempt ${req.attemptId} of task ${req.taskId} on this worker`,
          );
        }
        return create(FetchTaskLogsResponseSchema, { lines });
      },
      health: () => create(HealthResponseSchema, core.health()),
      async *execInTask(req, ctx) {
        if (!core.execInTask) {
          throw new UnimplementedError("this worker cannot exec in tasks");
        }
        const timeout = req.timeoutMs < 0 ? undefined : ms(req.timeoutMs || 60_000);
        yield* core.execInTask(
          req.taskId,
          req.command,
          timeout,
          ctx.signal,
          req.interactive
            ? { terminal: req.tty ? { rows: req.rows, cols: req.cols } : undefined }
            : undefined,
        );
      },
      async execInput(req) {
        if (!core.execInput) {
          throw new UnimplementedError("this worker has no interactive sessions");
        }
        await core.execInput(req);
        return create(ExecInputResponseSchema, {});
      },
      async *attachTask(req, ctx) {
        if (!core.attachTask) {
          throw new UnimplementedError("this worker cannot attach to tasks");
        }
        yield* core.attachTask(req.taskId, ctx.signal);
      },
      async profileTask(req, ctx) {
        if (!core.profileTask) {
          throw new UnimplementedError("this worker cannot profile tasks");
        }
        if (req.seconds < 0 || req.seconds > 60) {
          throw new InvalidArgumentError("seconds", `must be 0..60 (got ${req.seconds})`);
        }
        return await core.profileTask(req.taskId, seconds(req.seconds || 5), ctx.signal);
      },
      readJobOutput: async (req) => {
        if (!core.readJobOutput) throw new NotFoundError("this worker keeps no job outputs");
        const r = await core.readJobOutput(req.jobId, req.path, req.offset, req.length);
        return create(ReadJobOutputResponseSchema, r);
      },
      getProcessStatus: (req) => {
        if (!core.processStatus) {
          throw new UnimplementedError("this worker does not report its process");
        }
        return create(GetProcessStatusResponseSchema, {
          process: core.processStatus(req.maxLogLines),
        });
      },
    });
}
