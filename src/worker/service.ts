/**
 * WorkerService RPC routes: thin adapters from the wire onto a {@linkcode WorkerCore}.
 * Errors are translated to Connect codes here and nowhere else.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import type { LogLine, ResourceSnapshot } from "../rpc/gen/iris/v1/types_pb.ts";
import {
  FetchTaskLogsResponseSchema,
  HealthResponseSchema,
  type KillTaskRequest,
  KillTaskResponseSchema,
  ReadJobOutputResponseSchema,
  type RunTaskRequest,
  type RunTaskResponse,
  WorkerListTasksResponseSchema,
  WorkerService,
  type WorkerTaskInfo,
  WorkerTaskStatusResponseSchema,
} from "../rpc/gen/iris/v1/worker_pb.ts";
import { NotFoundError, toConnectError } from "../errors.ts";
import type { OutputRead } from "./outputs.ts";

/** What the routes need from a worker. */
export interface WorkerCore {
  /** Starts an attempt without waiting for it; idempotent per task and attempt. */
  runTask(request: RunTaskRequest): RunTaskResponse;
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
}

/** Registers WorkerService on a router, served by `core`. */
export function workerRoutes(core: WorkerCore): (router: ConnectRouter) => void {
  const guard = <T>(f: () => T): T => {
    try {
      return f();
    } catch (err) {
      throw toConnectError(err);
    }
  };
  return (router) =>
    router.service(WorkerService, {
      runTask: (req) => guard(() => core.runTask(req)),
      killTask: (req) => guard(() => create(KillTaskResponseSchema, { found: core.killTask(req) })),
      getTaskStatus: (req) =>
        guard(() => {
          const task = core.taskStatus(req.taskId);
          if (!task) throw new NotFoundError(`No task ${req.taskId} on this worker`);
          return create(WorkerTaskStatusResponseSchema, { task });
        }),
      listTasks: () =>
        guard(() => create(WorkerListTasksResponseSchema, { tasks: core.listTasks() })),
      fetchTaskLogs: (req) =>
        guard(() => {
          const lines = core.taskLogs(req.taskId, req.attemptId, req.sinceMs, req.maxLines);
          if (!lines) {
            throw new NotFoundError(
              `No attempt ${req.attemptId} of task ${req.taskId} on this worker`,
            );
          }
          return create(FetchTaskLogsResponseSchema, { lines });
        }),
      health: () => guard(() => create(HealthResponseSchema, core.health())),
      readJobOutput: async (req) => {
        try {
          if (!core.readJobOutput) throw new NotFoundError("this worker keeps no job outputs");
          const r = await core.readJobOutput(req.jobId, req.path, req.offset, req.length);
          return create(ReadJobOutputResponseSchema, r);
        } catch (err) {
          throw toConnectError(err);
        }
      },
    });
}
