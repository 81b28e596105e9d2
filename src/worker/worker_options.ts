/**
 * The options and the handle of a running worker (`startWorker` in worker.ts).
 * Types only.
 * @module
 */
import type { TaskSpawner } from "./spawner.ts";
import type { CommandRunner } from "../command/mod.ts";
import type { PythonEnvCacheOptions } from "./python_env.ts";
import type { ConnectionLimits, ControllerClient } from "../rpc/mod.ts";
import type { WorkerTaskInfo } from "../rpc/gen/iris/v1/worker_pb.ts";
import type { AttributeScalar } from "../types.ts";
import type { Duration } from "../time.ts";
import type { BundleFetcher } from "./attempt.ts";
import type { TaskPodRuntime } from "./kube_task.ts";
import type { LogLimits } from "./lines.ts";
import type { WorkerResources } from "./host.ts";
import type { PortAllocator } from "./ports.ts";
import type { DetectDevicesOptions } from "./devices.ts";
import type { TaskUserIsolation, UidRange } from "./task_users.ts";

/** Options for `startWorker`. */
export interface WorkerOptions {
  /** Where to register and heartbeat, e.g. "http://127.0.0.1:10000". */
  controllerUrl: string;
  /** Stable id the worker registers under. @default "<host>-<port>" */
  workerId?: string;
  /** Address to listen on. @default "127.0.0.1" */
  host?: string;
  /** Port to listen on; 0 picks a free one. @default 0 */
  port?: number;
  /** URL the controller should call this worker at. @default the listen URL */
  advertiseUrl?: string;
  /** The RPC server's transport, timeouts and per-client cap. @default src/rpc/server.ts's */
  connectionLimits?: ConnectionLimits;
  /**
   * Serves what is not an RPC, e.g. the worker dashboard (`workerDashboard` of src/dashboard),
   * which whoever starts the worker injects: the worker itself never imports the dashboard.
   * @default 404 Not found
   */
  fallback?: (req: Request) => Response | undefined | Promise<Response | undefined>;
  /**
   * Light worker mode (kubernetes runtime): every attempt runs as its own Pod on this node
   * (src/worker/kube_task.ts) instead of as a process here. @default processes
   */
  taskPods?: TaskPodRuntime;
  /** The worker's directory; attempts run in `<rootDir>/tasks/<task>_attempt_<n>`. @default a new temp dir */
  rootDir?: string;
  /** Remove the task directories (and a temp rootDir) on stop. @default true for a temp rootDir, else false */
  cleanup?: boolean;
  /** What the worker offers; missing values are detected from the machine. */
  resources?: Partial<WorkerResources>;
  /**
   * Attributes constraints match against (tpu-name, zone, …). `python_version` (of the task
   * PATH's python3) is added unless given. @default {}
   */
  attributes?: Record<string, AttributeScalar>;
  /** Job output directories (IRIS_OUTPUT_DIR) unused this long are removed. @default 7 days */
  outputRetention?: Duration;
  /**
   * Copy each attempt's IRIS_OUTPUT_DIR to `<outputsPrefix>/<job id>` when it ends:
   * "gs://bucket/path" (gcloud storage rsync) or "file:///absolute/path". @default none
   */
  outputsPrefix?: string;
  /** Runs `gcloud storage rsync` for a gs:// outputsPrefix (tests replay it). @default real processes */
  outputsRunner?: CommandRunner;
  /** Job Python environments: venv cache under `<rootDir>/python` (docs/python.md). */
  python?: Omit<PythonEnvCacheOptions, "rootDir">;
  /** The scale group the worker belongs to. @default "" */
  scaleGroup?: string;
  /** The slice the worker belongs to. @default "" */
  sliceId?: string;
  /** Share one allocator between the workers of a process. @default a private allocator */
  portAllocator?: PortAllocator;
  /** Longest time between heartbeats (the controller may set another). @default 1s */
  heartbeatInterval?: Duration;
  /** Time between SIGTERM and SIGKILL when a task is killed without a grace. @default 5s */
  killGrace?: Duration;
  /** How often task memory is sampled. @default 500ms */
  sampleInterval?: Duration;
  /** Directories of finished attempts kept for debugging. @default 4 */
  keepFinishedDirs?: number;
  /**
   * Spare attempt and output directories made ahead of demand, at start and whenever the worker
   * falls idle (attempt_dirs.ts, outputs.ts): a burst of that many new attempts makes no
   * directory. 0: none. @default 128 (a pool's most)
   */
  sparesAhead?: number;
  /** Finished attempts kept for GetTaskStatus, ListTasks and FetchTaskLogs. @default 64 */
  keepFinishedAttempts?: number;
  /** Log lines kept per attempt for FetchTaskLogs (same as `logLimits.keptLines`). @default 10000 */
  logLinesPerAttempt?: number;
  /**
   * Rate, size and backlog limits on task output (docs/config.md, "Worker: task logs").
   * @default DEFAULT_LOG_LIMITS
   */
  logLimits?: Partial<LogLimits>;
  /** Most log lines in one TaskUpdate. @default 1000 */
  maxLinesPerUpdate?: number;
  /**
   * About the most bytes of updates (log text, errors) in one heartbeat; the rest follows in the
   * next ones. @default 1 MiB
   */
  maxHeartbeatBytes?: number;
  /**
   * Longest wait between reconnect attempts to the controller (before ±20 % jitter); the
   * controller's registration answer overrides it. @default 5s
   */
  reconnectMax?: Duration;
  /** Stops the worker when aborted. */
  signal?: AbortSignal;
  /** Receives the worker's own log lines. @default discarded */
  log?: (line: string) => void;
  /** Fetches bundles; without it, tasks with a bundle fail. */
  bundleFetcher?: BundleFetcher;
  /**
   * The cluster's worker token (auth on): sent to the controller, required from callers of this
   * worker's RPCs, and used to derive each task's IRIS_TOKEN. Never put in a task's environment.
   * @default none (auth off)
   */
  workerToken?: string;
  /**
   * Paths module tasks may never be granted (token files, controller state, other workers' roots);
   * the worker's own root is always protected. @default []
   */
  protectedPaths?: readonly string[];
  /**
   * Run each attempt as its own unprivileged OS user (uid = gid from `taskUids`) so that tasks
   * cannot read each other's directories, the worker's root or root-only secrets. `auto` turns it
   * on when the worker is root on Linux with setpriv(1); `required` refuses to start otherwise.
   * @default "auto"
   */
  taskUserIsolation?: TaskUserIsolation;
  /** The uids handed to tasks (one per running attempt). @default 200000-265535 */
  taskUids?: UidRange;
  /**
   * Start a watchdog process that kills every process of this worker's tasks within a second
   * of the worker dying (SIGKILL, OOM kill) and, with `removeRoot`, removes the root then
   * (see reaper.ts). `iris worker serve` turns it on. @default off
   */
  reaper?: { readonly removeRoot: boolean };
  /**
   * Per-task limits: `processes` (RLIMIT_NPROC for a task user; the session's sampled process
   * count either way) and `openFiles` (RLIMIT_NOFILE). 0 turns one off.
   * @default { processes: 4096, openFiles: 65536 }
   */
  taskLimits?: { readonly processes?: number; readonly openFiles?: number };
  /**
   * Start tasks through a long-lived spawner process (one fork and one exec per task, see
   * spawner.ts) where it applies: Linux on x86_64 or aarch64 with perl, running programs
   * unrestricted, not turned off by `IRIS_TASK_SPAWNER=0`. Off: the setsid/sh/setpriv chain. A
   * TaskSpawner given here is used as it is (and closed with the worker): tests hold its spawns.
   * @default true
   */
  taskSpawner?: boolean | TaskSpawner;
  /**
   * Detect the host's GPUs (nvidia-smi) and TPU chips (`/dev/accel*`, `/dev/vfio/<n>`) at start
   * and check `resources.accelerator` against them (see devices.ts); `strict` also refuses a
   * claim on a host without a driver for it. `iris worker serve` turns it on. @default off (the
   * claim is taken as given)
   */
  devices?: DetectDevicesOptions & {
    readonly strict?: boolean;
    /** How often GPU health is checked. @default 5s */
    readonly healthInterval?: Duration;
  };
  /** Controller client (tests). @default controllerClient(controllerUrl) */
  client?: ControllerClient;
}

/** A running worker. Disposing it stops it. */
export interface WorkerHandle extends AsyncDisposable {
  /** The URL its WorkerService is served at. */
  readonly url: string;
  /** The id it registered under. */
  readonly workerId: string;
  /** Its directory; attempts run under `<rootDir>/tasks`. */
  readonly rootDir: string;
  /** Resolves on the first registration with the controller; rejects when stopped before it. */
  readonly registered: Promise<void>;
  /** Attempts the worker knows (running and recently finished). */
  tasks(): WorkerTaskInfo[];
  /** Kills every task (reported WORKER_FAILED), waits for them, reports, stops serving. Idempotent. */
  stop(): Promise<void>;
}
