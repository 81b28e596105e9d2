/**
 * The controller as the RPC handlers see it (service.ts, budget_service.ts, account_service.ts):
 * reads of jobs, tasks and workers as records and wire statuses, and the operations that change
 * state. The handlers never reach into the tables; controller.ts implements this.
 * @module
 */
import type { HeartbeatRequest, RegisterWorkerRequest } from "../rpc/gen/iris/v1/controller_pb.ts";
import type { Attempt, JobSpec, JobStatus, TaskStatus } from "../rpc/gen/iris/v1/types_pb.ts";
import type { WorkerClient } from "../rpc/mod.ts";
import type { Clock, Duration } from "../time.ts";
import type { AttemptRecord, JobRecord, TaskRecord } from "./state.ts";
import type { WorkerRecord } from "./workers.ts";
import type { Accounts, UserUsage } from "./accounts.ts";
import type { EndpointTable } from "./endpoints.ts";
import type { LogStore } from "./logs.ts";
import type { TransactionLog } from "./transactions.ts";

/** What a heartbeat answers. */
export interface HeartbeatReply {
  reregister: boolean;
  kill: { taskId: string; attemptId: number }[];
  updatesDeferred?: boolean;
  heartbeatIntervalMs?: number;
}

/** What the controller's RPC handlers use. */
export interface ControllerCore {
  readonly clock: Clock;
  readonly startedAtMs: number;
  readonly heartbeatInterval: Duration;
  readonly workerReconnectMax: Duration;
  readonly recentLogs: readonly string[];
  readonly transactions: TransactionLog;
  readonly logs: LogStore;
  readonly endpoints: EndpointTable;
  readonly accounts: Accounts;
  /** Whether the state can be written, and why not. */
  readonly health: { healthy: boolean; message: string };
  /** The state database's path; undefined for a memory-only controller. */
  readonly statePath: string | undefined;

  /** A job. @throws NotFoundError */
  job(jobId: string): JobRecord;
  /** A task. @throws NotFoundError */
  task(taskId: string): TaskRecord;
  hasJob(jobId: string): boolean;
  hasTask(taskId: string): boolean;
  /** Every job by id, in submission order. */
  jobIndex(): ReadonlyMap<string, JobRecord>;
  /** Tasks of every job. */
  readonly taskCount: number;
  currentAttempt(task: TaskRecord): AttemptRecord | undefined;
  /** A registered worker (reconnecting ones included). */
  worker(workerId: string): WorkerRecord | undefined;
  /** Every registered worker. */
  allWorkers(): Iterable<WorkerRecord>;
  readonly workerCount: number;

  /** A job's wire status. */
  jobStatus(job: JobRecord): JobStatus;
  /** A task's wire status (with `usageHistory`, its usage samples). */
  taskStatus(task: TaskRecord, usageHistory?: boolean): TaskStatus;
  /** Attempts that ended on a worker, newest first. */
  recentAttempts(worker: WorkerRecord): { taskId: string; jobId: string; attempt: Attempt }[];
  /** What each user's active tasks hold. */
  usageByUser(): Map<string, UserUsage>;
  /** The client for a worker's address. */
  workerClient(address: string): WorkerClient;

  launchJob(spec: JobSpec, requestId: string): { jobId: string; created: boolean };
  /** launchJob, sharing one commit with the submits that arrive with it. */
  launchJobInGroup(spec: JobSpec, requestId: string): Promise<{ jobId: string; created: boolean }>;
  terminateJob(jobId: string, reason: string): string[];
  registerWorker(
    req: RegisterWorkerRequest,
  ): {
    workerId: string;
    kill: { taskId: string; attemptId: number }[];
    /** The heartbeat interval the worker keeps from now on (grows with the fleet). */
    heartbeatIntervalMs: Duration;
  };
  heartbeat(req: HeartbeatRequest): HeartbeatReply;
  /** heartbeat, sharing one commit with the heartbeats and submits that arrive with it. */
  heartbeatInGroup(req: HeartbeatRequest): Promise<HeartbeatReply>;
  /** @throws UnavailableError while the state cannot be written */
  ensureWritable(): void;
  /** Writes what changed (endpoints, accounts' effects). @throws UnavailableError */
  commitState(): void;
  requestSchedule(): void;
  log(line: string): void;
}
