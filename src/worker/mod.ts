/**
 * The Iris worker: runs task attempts as subprocesses and reports them to the controller.
 * `startWorker` is the entry point; the other exports are its building blocks.
 * @module
 */
export { startWorker, type WorkerHandle, type WorkerOptions } from "./worker.ts";
export type { BundleFetcher } from "./attempt.ts";
export { type AttemptOutcome, classifyExit, isTerminalState } from "./outcome.ts";
export { detectResources, type WorkerResources } from "./host.ts";
export {
  PortAllocator,
  type PortAllocatorOptions,
  portEnvName,
  type SharedPortRange,
} from "./ports.ts";
export {
  type KillCause,
  type KillOptions,
  type OutputLine,
  type TaskExit,
  TaskProcess,
  type TaskProcessOptions,
} from "./task_runner.ts";
export { attemptDirName, buildTaskEnv, DEFAULT_TASK_PATH, moduleArgv } from "./task_spec.ts";
export {
  DEFAULT_TASK_UIDS,
  TASK_USER_ISOLATION_MODES,
  type TaskUserIsolation,
  type UidRange,
} from "./task_users.ts";
export {
  BoundedQueue,
  DEFAULT_LOG_LIMITS,
  LineSplitter,
  LogBucket,
  type LogLimits,
  RingBuffer,
  WorkerLogBudget,
} from "./lines.ts";
export { type WorkerCore, workerRoutes } from "./service.ts";
export { HOST_METRIC_SYS_PERMISSIONS } from "./host_metrics.ts";
export { taskPodRuntimeFromEnv } from "./kube_task.ts";
export { type PythonEnvCacheOptions } from "./python_env.ts";
export { OUTPUTS_PREFIX_PATTERN } from "./outputs_upload.ts";
