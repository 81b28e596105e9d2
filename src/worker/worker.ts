/**
 * The Iris worker: serves WorkerService, keeps the attempts it was given, and reports them to the
 * controller through the Reporter. Runs in a process or inside a Deno Worker with scoped
 * permissions: no Deno.exit, no env reads, no signal listeners, no top-level side effects.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  AttemptRefSchema,
  HeartbeatRequestSchema,
  RegisterWorkerRequestSchema,
  type TaskUpdate,
} from "../rpc/gen/iris/v1/controller_pb.ts";
import {
  AcceleratorType,
  type LogLine,
  type ResourceSnapshot,
  ResourceSnapshotSchema,
  TaskResourceUsageSchema,
  TaskState,
} from "../rpc/gen/iris/v1/types_pb.ts";
import { controllerClient, type RpcServer, serveRpc } from "../rpc/mod.ts";
import {
  type KillTaskRequest,
  type RunTaskRequest,
  type RunTaskResponse,
  RunTaskResponseSchema,
  type WorkerTaskInfo,
} from "../rpc/gen/iris/v1/worker_pb.ts";
import { authGate, jobOwner, taskToken, workerRule } from "../auth/mod.ts";
import { describeError, FailedPreconditionError, InvalidArgumentError } from "../errors.ts";
import { oneLine } from "../format.ts";
import { type Duration, ms, seconds } from "../time.ts";
import { type AttemptContext, TaskAttempt } from "./attempt.ts";
import { AttemptDirs } from "./attempt_dirs.ts";
import { CpuMeter, detectResources, type WorkerResources } from "./host.ts";
import { resourcesToProto } from "./convert.ts";
import { attributesToProto } from "./convert.ts";
import { HostMeter } from "./host_metrics.ts";
import type { AttributeScalar } from "../types.ts";
import {
  advertiseDevices,
  detectDevices,
  type DeviceAdvert,
  deviceTaskUsage,
  deviceUsageProto,
  healthyResources,
  type WorkerDevices,
  workerDevices,
} from "./devices.ts";
import { processInfo } from "../process_info.ts";
import type {
  ExecInTaskResponse,
  ProcessInfo,
  ProfileTaskResponse,
} from "../rpc/gen/iris/v1/types_pb.ts";
import { profileSession } from "./profile.ts";
import { execLikeTask } from "./exec.ts";
import { Sessions, type TerminalSize } from "./sessions.ts";
import { VERSION } from "../version.ts";
import { WorkerLogBudget } from "./lines.ts";
import { PortAllocator } from "./ports.ts";
import { ProcessTable, setsidPath } from "./process_tree.ts";
import { TaskSpawner } from "./spawner.ts";
import { nativeSpawner, nativeSpawnerCacheDirs } from "./spawner_native.ts";
import {
  readLedger,
  type Reaper,
  ReapLedger,
  reapTag,
  removeFilesOf,
  startReaper,
  sweep,
  taskCgroup,
} from "./reaper.ts";
import { Reporter } from "./reporter.ts";
import { sameSnapshot } from "./snapshot_delta.ts";
import { type WorkerCore, workerRoutes } from "./service.ts";
import { attemptDirName } from "./task_spec.ts";
import { hostPythonVersion, PythonEnvCache } from "./python_env.ts";
import { JobOutputs, type OutputRead } from "./outputs.ts";
import { outputsDestination } from "./outputs_upload.ts";
import {
  DEFAULT_TASK_UIDS,
  prepareRootForTaskUsers,
  resolveTaskUsers,
  taskDenoPath,
  TaskUserPool,
} from "./task_users.ts";
import { resolve } from "node:path";
import type { WorkerHandle, WorkerOptions } from "./worker_options.ts";

export type { WorkerHandle, WorkerOptions } from "./worker_options.ts";

/**
 * Starts a worker: serves WorkerService, then registers with the controller in the background
 * (retrying until it succeeds or the worker stops).
 * @throws {InvalidArgumentError} on invalid options or undetectable resources
 */
export async function startWorker(options: WorkerOptions): Promise<WorkerHandle> {
  try {
    new URL(options.controllerUrl);
  } catch {
    throw new InvalidArgumentError(
      "controllerUrl",
      `must be a URL: current value is "${options.controllerUrl}"`,
    );
  }
  let resources = detectResources(options.resources);
  const advert = options.devices
    ? advertiseDevices(
      resources.accelerator,
      await detectDevices(options.devices),
      options.devices.strict,
    )
    : undefined;
  if (advert) {
    resources = { ...resources, accelerator: advert.accelerator };
    if (advert.reason) options.log?.(`devices: ${advert.reason}`);
  }
  const isTemp = options.rootDir === undefined;
  const rootDir = options.rootDir ?? await Deno.makeTempDir({ prefix: "iris-worker-" });
  const existed = !isTemp && await Deno.stat(`${rootDir}/tasks`).then(() => true, () => false);
  await Deno.mkdir(`${rootDir}/tasks`, { recursive: true });
  const realRoot = await Deno.realPath(rootDir);
  const tag = reapTag(realRoot);
  if (existed) await cleanUpPredecessor(realRoot, tag, options.log);
  const ledger = new ReapLedger(realRoot, tag, taskCgroup(tag));
  let users: ReturnType<typeof resolveTaskUsers>;
  let pool: TaskUserPool | undefined;
  let reaper: Reaper | undefined;
  try {
    users = resolveTaskUsers(options.taskUserIsolation ?? "auto", resolve(rootDir));
    if (users.enabled) {
      pool = new TaskUserPool(options.taskUids ?? DEFAULT_TASK_UIDS, users.setpriv, ledger);
      await prepareRootForTaskUsers(rootDir);
    }
    if (options.reaper) {
      try {
        reaper = startReaper({
          rootDir: realRoot,
          removeDir: options.reaper.removeRoot ? realRoot : undefined,
          setsid: setsidPath(),
        });
      } catch (err) {
        // Tasks still die with the worker through their parent-death signal, and a successor
        // on this root sweeps what escaped.
        options.log?.(`no watchdog for this worker's tasks: ${describeError(err)}`);
      }
    }
  } catch (err) {
    ledger.remove();
    if (isTemp) await Deno.remove(rootDir, { recursive: true }).catch(() => {});
    throw err;
  }
  let taskUsers: TaskUsers | undefined;
  if (pool) {
    let deno: Promise<string> | undefined;
    const denoPath = () =>
      deno ??= taskDenoPath(`${rootDir}/bin`).catch((err) => {
        deno = undefined; // try again with the next module task
        throw err;
      });
    taskUsers = { pool, denoPath };
  }
  // Submitters compare their python3 with this (`iris job run` warns on a mismatch).
  if (options.attributes?.python_version === undefined) {
    const version = await hostPythonVersion();
    if (version) {
      options = { ...options, attributes: { python_version: version, ...options.attributes } };
    }
  }
  const worker = new IrisWorker(
    options,
    resources,
    rootDir,
    options.cleanup ?? isTemp,
    isTemp,
    { ledger, reaper, tag },
    taskUsers,
    advert,
  );
  options.log?.(
    users.enabled
      ? `tasks run as their own users (uids ${taskUsers!.pool.range.first}-${
        taskUsers!.pool.range.last
      })`
      : `tasks run as the worker's user: ${users.reason}`,
  );
  return worker.handle();
}

/**
 * Default byte budget of one heartbeat's updates: far below the controller's request limit
 * (64 MiB by default), so a backlog is sent in bounded chunks.
 */
export const DEFAULT_MAX_HEARTBEAT_BYTES = 1 << 20;
/** Bytes counted per update besides its log lines (ids, state, times, ports). */
const UPDATE_OVERHEAD_BYTES = 512;

/** Per-task users, when on. */
type TaskUsers = NonNullable<AttemptContext["taskUsers"]>;

/** What makes sure no task outlives the worker (see reaper.ts). */
interface Reaping {
  readonly ledger: ReapLedger;
  readonly reaper?: Reaper;
  readonly tag: string;
}

/**
 * Spare directories made ahead by default: as many as a pool keeps (MAX_SPARE_DIRS). A burst
 * runs more attempts at once than the controller's building window (64): in the #20 throughput
 * bench up to ~120 at once, whose directories 64 spares left half to make on the critical path
 * (a mkdir here costs ~100 µs of ext4 inode search, a rename of a spare a few).
 */
const DEFAULT_SPARES_AHEAD = 128;
/** How long the worker stays idle before its spare pools are topped up. */
const SPARES_IDLE_WAIT: Duration = seconds(1);

/** Default per-task limits (WorkerOptions.taskLimits). */
const DEFAULT_TASK_LIMITS = { processes: 4096, openFiles: 65536 } as const;

/**
 * A worker starting on a root that already holds tasks: whatever its predecessor left running
 * (found by the root's tag and the task uids in its ledger) is killed, and its attempt
 * directories are removed.
 */
async function cleanUpPredecessor(
  rootDir: string,
  tag: string,
  log?: (line: string) => void,
): Promise<void> {
  const ledger = readLedger(rootDir);
  const uids = ledger?.tag === tag ? ledger.uids : [];
  const result = await sweep({
    tag,
    uids,
    cgroup: ledger?.tag === tag ? ledger.cgroup : undefined,
  });
  if (uids.length > 0) await removeFilesOf(new Set(uids));
  // Spare attempt directories (attempt_dirs.ts) are empty: not counted.
  await Deno.remove(`${rootDir}/spare`, { recursive: true }).catch(() => {});
  let dirs = 0;
  for await (const entry of Deno.readDir(`${rootDir}/tasks`)) {
    await Deno.remove(`${rootDir}/tasks/${entry.name}`, { recursive: true }).catch(() => {});
    dirs++;
  }
  if (result.killed > 0 || dirs > 0 || ledger) {
    log?.(
      `cleaned up after the previous worker on ${rootDir}: killed ${result.killed} task ` +
        `processes, removed ${dirs} attempt directories` +
        (result.left > 0 ? ` (${result.left} processes could not be killed)` : ""),
    );
  }
}

/** The worker's state and behaviour behind the RPC routes and the reporter. */
class IrisWorker implements WorkerCore {
  readonly #opts: WorkerOptions;
  readonly #resources: WorkerResources;
  readonly #rootDir: string;
  readonly #cleanup: boolean;
  readonly #removeRoot: boolean;
  readonly #ports: PortAllocator;
  readonly #attempts = new Map<string, TaskAttempt>();
  /** Interactive execs and tasks, by session id (ExecInput). */
  readonly #sessions = new Sessions();
  readonly #pythonEnvs: PythonEnvCache;
  readonly #outputs: JobOutputs;
  /** Task tokens by job owner: an HMAC each, the same for every attempt of the owner's jobs. */
  readonly #taskTokens = new Map<string, string>();
  readonly #latest = new Map<string, TaskAttempt>();
  readonly #finished: TaskAttempt[] = [];
  /** `#finished[0..#dirsRemoved)` had their directories removed (a prune walks only the rest). */
  #dirsRemoved = 0;
  readonly #dirs: AttemptDirs;
  /** Attempts accepted and not yet ended. */
  #unfinished = 0;
  /** A fill of the spare directory pools runs. */
  #filling = false;
  /** A fill was asked for while one ran (see `#fillSpares`). */
  #fillAgain = false;
  /** Set while the worker is idle: tops the spare pools up when it stays idle (`#fillSpares`). */
  #idleFill?: ReturnType<typeof setTimeout>;
  readonly #background = new Set<Promise<unknown>>();
  readonly #cpu: CpuMeter;
  readonly #host = new HostMeter();
  readonly #processTable: ProcessTable;
  readonly #spawner?: TaskSpawner;
  readonly #started = performance.now();
  readonly #startedAtMs = Date.now();
  /**
   * The worker's recent log lines and when they were logged (ms), newest last, for
   * GetProcessStatus: stamped as text only when read (two lines per task, #20).
   */
  readonly #recentLogs: { readonly atMs: number; readonly line: string }[] = [];
  readonly #server: RpcServer;
  readonly #onAbort = () => void this.stop();
  readonly #url: string;
  readonly #workerId: string;
  readonly #reporter: Reporter;
  /** The snapshot the controller last acknowledged (heartbeats leave an unchanged one out). */
  #ackedSnapshot?: ResourceSnapshot;
  /** When (performance.now()) the acknowledged snapshot was built: one is sent per interval. */
  #ackedSnapshotAt = -Infinity;
  readonly #taskUsers?: TaskUsers;
  readonly #logBudget: WorkerLogBudget;
  readonly #reaping: Reaping;
  readonly #devices?: WorkerDevices;
  readonly #deviceAttributes: Record<string, AttributeScalar>;
  #stopped?: Promise<void>;

  constructor(
    opts: WorkerOptions,
    resources: WorkerResources,
    rootDir: string,
    cleanup: boolean,
    removeRoot: boolean,
    reaping: Reaping,
    taskUsers?: TaskUsers,
    advert?: DeviceAdvert,
  ) {
    this.#taskUsers = taskUsers;
    // With task users the worker is root: a recycled directory goes back to root first.
    const owner = taskUsers ? { uid: 0, gid: 0 } : undefined;
    this.#dirs = new AttemptDirs(rootDir, owner);
    this.#devices = workerDevices(resources, advert, opts, (owner, reason) => {
      const a = this.#attempts.get(owner);
      a?.kill(reason, { state: TaskState.WORKER_FAILED, grace: opts.killGrace });
    }, () => this.#reporter.reregister()); // the controller learns the lower capacity at once
    this.#deviceAttributes = {
      ...advert?.attributes,
      ...(advert?.reason ? { "device-status": advert.reason } : {}),
    };
    this.#pythonEnvs = new PythonEnvCache({ rootDir: `${rootDir}/python`, ...opts.python });
    this.#outputs = new JobOutputs(`${rootDir}/outputs`, opts.outputRetention, undefined, owner);
    if (opts.outputsPrefix) outputsDestination(opts.outputsPrefix, "/check", "outputsPrefix");
    this.#reaping = reaping;
    this.#opts = opts;
    this.#logBudget = new WorkerLogBudget({
      ...(opts.logLinesPerAttempt ? { keptLines: opts.logLinesPerAttempt } : {}),
      ...opts.logLimits,
    });
    this.#resources = resources;
    this.#rootDir = rootDir;
    this.#cleanup = cleanup;
    this.#removeRoot = removeRoot;
    this.#ports = opts.portAllocator ?? new PortAllocator();
    this.#cpu = new CpuMeter(resources.cpuMillicores);
    this.#processTable = new ProcessTable(ms(Math.min(200, (opts.sampleInterval ?? 500) / 2)));
    // Started on the first task; light workers start Pods, not processes.
    if (opts.taskSpawner instanceof TaskSpawner) this.#spawner = opts.taskSpawner;
    else if (opts.taskSpawner !== false && !opts.taskPods && TaskSpawner.supported()) {
      // The native spawner where this host compiles it, else Perl (spawner_native.ts).
      const native = TaskSpawner.nativeAllowed()
        ? nativeSpawner(nativeSpawnerCacheDirs(rootDir), (line) => this.#log(line))
        : null;
      this.#spawner = new TaskSpawner(undefined, native);
    }
    this.#server = serveRpc(workerRoutes(this), {
      hostname: opts.host ?? "127.0.0.1",
      port: opts.port ?? 0,
      ...opts.connectionLimits,
      // Only the controller (holding the worker token) may call a worker when auth is on.
      requestGate: opts.workerToken
        ? authGate({ mode: "token", tokens: [], workerToken: opts.workerToken }, workerRule)
        : undefined,
      // The worker's own dashboard (injected), over the same WorkerService RPCs.
      fallback: async (req) =>
        (await opts.fallback?.(req)) ?? new Response("Not found\n", { status: 404 }),
    });
    this.#url = opts.advertiseUrl ?? this.#server.url;
    this.#workerId = opts.workerId ?? `${this.#server.hostname}-${this.#server.port}`;
    this.#reporter = new Reporter({
      client: opts.client ?? controllerClient(opts.controllerUrl, { token: opts.workerToken }),
      controllerUrl: opts.controllerUrl,
      interval: opts.heartbeatInterval ?? seconds(1),
      reconnectMax: opts.reconnectMax,
      registerRequest: () => this.#registerRequest(),
      collect: () => this.#collect(),
      onRegistered: (r) => {
        // A controller that (re)registers us may not have our snapshot: send the next one whole.
        this.#ackedSnapshot = undefined;
        this.#ackedSnapshotAt = -Infinity;
        this.#log(
          `registered with controller at ${opts.controllerUrl} as ${r.workerId || this.#workerId}`,
        );
      },
      onKill: (refs) => {
        for (const ref of refs) {
          this.#kill(ref.taskId, ref.attemptId, "the controller no longer wants this attempt");
        }
      },
      log: (line) => this.#log(line),
    });
    opts.signal?.addEventListener("abort", this.#onAbort, { once: true });
    if (opts.signal?.aborted) void this.stop();
    this.#log(`worker ${this.#workerId} serving at ${this.#server.url}, root ${rootDir}`);
    this.#fillSpares();
  }

  /** Tops the spare pools up once the worker stayed idle for a moment (never within a burst). */
  #fillWhenIdle(): void {
    if (this.#idleFill !== undefined || this.#stopped) return;
    this.#idleFill = setTimeout(() => {
      this.#idleFill = undefined;
      if (this.#unfinished !== 0) return;
      // No attempt will take the pruned directories soon: parked (or removed) now.
      this.#dirs.settle();
      this.#fillSpares();
    }, SPARES_IDLE_WAIT);
  }

  /**
   * Makes spare attempt and output directories ahead of demand (`sparesAhead`), off the event
   * loop: at start, and when the worker falls idle with its pools below the mark (directories
   * that were not clean were removed, not recycled).
   */
  #fillSpares(): void {
    const target = this.#opts.sparesAhead ?? DEFAULT_SPARES_AHEAD;
    if (this.#stopped || target <= 0) return;
    // Asked while a fill runs (an idle top-up during the start's fill): fill again after it, so
    // a top-up is never lost.
    if (this.#filling) {
      this.#fillAgain = true;
      return;
    }
    if (this.#dirs.spares >= target && this.#outputs.spares >= target) return;
    this.#filling = true;
    const keepGoing = () => !this.#stopped;
    this.#track(
      Promise.all([this.#dirs.fill(target, keepGoing), this.#outputs.fill(target, keepGoing)])
        .finally(() => {
          this.#filling = false;
          if (this.#fillAgain) {
            this.#fillAgain = false;
            this.#fillSpares();
          }
        }),
    );
  }

  handle(): WorkerHandle {
    const stop = () => this.stop();
    return {
      url: this.#url,
      workerId: this.#workerId,
      rootDir: this.#rootDir,
      registered: this.#reporter.registered,
      tasks: () => this.listTasks(),
      stop,
      [Symbol.asyncDispose]: stop,
    };
  }

  /** The state of an attempt once it left setup, or after `within`; undefined when unknown. */
  leftSetup(taskId: string, attemptId: number, within: Duration): Promise<TaskState | undefined> {
    const attempt = this.#attempts.get(attemptKey(taskId, attemptId));
    return attempt ? attempt.leftSetup(within) : Promise.resolve(undefined);
  }

  runTask(req: RunTaskRequest): RunTaskResponse {
    const refuse = (error: string) => create(RunTaskResponseSchema, { accepted: false, error });
    if (this.#stopped) return refuse("worker is stopping");
    if (!req.taskId) return refuse("task_id: must not be empty");
    if (!req.entrypoint?.kind.case) return refuse("entrypoint: must be a command or a module");
    // Its output directory is named after it (outputs.ts): never the outputs root or above.
    if (!req.jobId || req.jobId === "." || req.jobId === "..") {
      return refuse(`job_id: must name the task's job (got ${JSON.stringify(req.jobId)})`);
    }
    const key = attemptKey(req.taskId, req.attemptId);
    if (this.#attempts.has(key)) return create(RunTaskResponseSchema, { accepted: true });
    const previous = this.#latest.get(req.taskId);
    if (previous && !previous.isTerminal) {
      if (previous.attemptId > req.attemptId) {
        return refuse(
          `attempt ${req.attemptId} is older than running attempt ${previous.attemptId}`,
        );
      }
      previous.kill(`superseded by attempt ${req.attemptId}`, { grace: this.#opts.killGrace });
    }
    if (this.#devices) {
      // An attempt that ended gives its devices back even before its cleanup finished (the
      // controller may place the next one as soon as it hears of the end).
      for (const [k, a] of this.#attempts) if (a.isTerminal) this.#devices.release(k);
      const acc = req.resources?.accelerator;
      const got = this.#devices.assign(
        key,
        acc && acc.type !== AcceleratorType.CPU ? acc.count : "none",
      );
      if ("error" in got) return refuse(got.error);
      Object.assign(req.env, got.env);
    }
    const attempt = new TaskAttempt(req, {
      sessions: this.#sessions,
      workerId: this.#workerId,
      controllerUrl: this.#opts.controllerUrl,
      dir: `${this.#rootDir}/tasks/${attemptDirName(req.taskId, req.attemptId)}`,
      dirs: this.#dirs,
      denoDir: `${this.#rootDir}/cache/deno`,
      protectedPaths: [this.#rootDir, ...(this.#opts.protectedPaths ?? [])],
      // The task acts as its job's owner; the worker token itself never reaches it.
      taskToken: this.#opts.workerToken
        ? this.#taskToken(this.#opts.workerToken, jobOwner(req.jobId))
        : undefined,
      ports: this.#ports,
      bundleFetcher: this.#opts.bundleFetcher,
      sampleInterval: this.#opts.sampleInterval ?? ms(500),
      processTable: this.#processTable,
      spawner: this.#spawner,
      logBudget: this.#logBudget,
      onChange: () => this.#reporter.poke(),
      taskUsers: this.#taskUsers,
      taskPods: this.#opts.taskPods,
      pythonEnvs: this.#pythonEnvs,
      outputs: this.#outputs,
      outputsPrefix: this.#opts.outputsPrefix
        ? { prefix: this.#opts.outputsPrefix, runner: this.#opts.outputsRunner }
        : undefined,
      reapTag: this.#reaping.tag,
      ledger: this.#reaping.ledger,
      limits: {
        processes: this.#opts.taskLimits?.processes ?? DEFAULT_TASK_LIMITS.processes,
        openFiles: this.#opts.taskLimits?.openFiles ?? DEFAULT_TASK_LIMITS.openFiles,
      },
    });
    this.#attempts.set(key, attempt);
    this.#latest.set(req.taskId, attempt);
    this.#unfinished++;
    this.#track(attempt.done.then(() => {
      this.#unfinished--;
      this.#devices?.release(key);
      this.#retire(attempt);
      if (this.#unfinished === 0) this.#fillWhenIdle();
    }));
    this.#log(`accepted ${req.taskId} attempt ${req.attemptId}`);
    return create(RunTaskResponseSchema, { accepted: true });
  }

  /** The token of `owner`'s tasks (~30 µs of HMAC per attempt saved, #20). */
  #taskToken(workerToken: string, owner: string): string {
    let token = this.#taskTokens.get(owner);
    if (token === undefined) {
      if (this.#taskTokens.size >= MAX_CACHED_TASK_TOKENS) this.#taskTokens.clear();
      token = taskToken(workerToken, owner);
      this.#taskTokens.set(owner, token);
    }
    return token;
  }

  killTask(req: KillTaskRequest): boolean {
    const grace = req.graceMs > 0 ? ms(req.graceMs) : undefined;
    return this.#kill(req.taskId, req.attemptId, req.reason || "killed by request", grace);
  }

  taskStatus(taskId: string): WorkerTaskInfo | undefined {
    const a = this.#latest.get(taskId);
    return a && this.#infoWithCpu(a);
  }

  listTasks(): WorkerTaskInfo[] {
    return [...this.#attempts.values()].map((a) => this.#infoWithCpu(a));
  }

  #infoWithCpu(a: TaskAttempt): WorkerTaskInfo {
    const info = a.info();
    if (!a.isTerminal) {
      info.cpuMillicores = this.#cpu.taskMillicores(attemptKey(a.taskId, a.attemptId));
    }
    return info;
  }

  taskLogs(
    taskId: string,
    attemptId: number,
    sinceMs: number,
    maxLines: number,
  ): LogLine[] | undefined {
    return this.#attempts.get(attemptKey(taskId, attemptId))?.logs(sinceMs, maxLines);
  }

  /** A job's outputs on this worker (ReadJobOutput). */
  readJobOutput(jobId: string, path: string, offset: number, length: number): Promise<OutputRead> {
    return this.#outputs.read(jobId, path, offset, length);
  }

  health() {
    return {
      healthy: !this.#stopped,
      workerId: this.#workerId,
      uptimeMs: performance.now() - this.#started,
      runningTasks: this.#active().length,
      snapshot: this.#snapshot(false),
      controllerUrl: this.#opts.controllerUrl,
    };
  }

  /** Runs a command like the running task `taskId` (`iris task exec`); see exec.ts. */
  execInTask(
    taskId: string,
    command: readonly string[],
    timeout: Duration | undefined,
    signal: AbortSignal,
    interactive?: { terminal?: TerminalSize },
  ): AsyncGenerator<ExecInTaskResponse> {
    if (command.length === 0 || command[0] === "") {
      throw new InvalidArgumentError("command", "must not be empty");
    }
    const attempt = this.#active().find((a) => a.taskId === taskId && a.execSpec);
    if (!attempt) {
      throw new FailedPreconditionError(`task ${taskId} is not running on this worker`);
    }
    this.#log(
      `exec${interactive ? " -i" : ""} in ${taskId} attempt ${attempt.attemptId}: ${
        command.join(" ").slice(0, 200)
      }`,
    );
    return execLikeTask(
      attempt.execSpec!,
      command,
      timeout,
      signal,
      interactive && {
        sessions: this.#sessions,
        id: `exec:${crypto.randomUUID()}`,
        terminal: interactive.terminal,
      },
    );
  }

  /** Input to an interactive exec or task (ExecInput). */
  execInput(
    req: { sessionId: string; data: Uint8Array; eof: boolean; rows: number; cols: number },
  ): Promise<void> {
    return this.#sessions.input(req.sessionId, req);
  }

  /** The raw output of the interactive task `taskId` running here, then its exit (AttachTask). */
  attachTask(taskId: string, signal: AbortSignal): AsyncGenerator<ExecInTaskResponse> {
    const attempt = this.#latest.get(taskId);
    if (!attempt) throw new FailedPreconditionError(`task ${taskId} is not on this worker`);
    if (!attempt.request.interactive) {
      throw new FailedPreconditionError(
        `task ${taskId} is not interactive (submit it with iris job run -i)`,
      );
    }
    return attempt.attach(signal);
  }

  /** A CPU profile of the running task `taskId` (`iris task profile`); see profile.ts. */
  async profileTask(
    taskId: string,
    duration: Duration,
    signal: AbortSignal,
  ): Promise<ProfileTaskResponse> {
    const attempt = this.#active().find((a) => a.taskId === taskId && a.sessionId);
    if (!attempt) {
      throw new FailedPreconditionError(`task ${taskId} is not running on this worker`);
    }
    this.#log(`profiling ${taskId} attempt ${attempt.attemptId} for ${duration / 1000}s`);
    return await profileSession(
      attempt.sessionId,
      attempt.execSpec?.env.PATH,
      attempt.dir,
      duration,
      signal,
    );
  }

  processStatus(maxLogLines: number): ProcessInfo {
    return processInfo({
      role: "worker",
      id: this.#workerId,
      startedAtMs: this.#startedAtMs,
      version: VERSION,
      logs: this.#recentLogs.slice(-Math.max(maxLogLines, 200)).map((l) =>
        `${new Date(l.atMs).toISOString()} ${l.line}`
      ),
      maxLogLines,
    });
  }

  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    this.#log(`worker ${this.#workerId} stopping`);
    this.#opts.signal?.removeEventListener("abort", this.#onAbort);
    clearTimeout(this.#idleFill);
    for (const a of this.#active()) {
      a.kill("worker stopped", { state: TaskState.WORKER_FAILED, grace: this.#opts.killGrace });
    }
    await Promise.all([...this.#attempts.values()].map((a) => a.done));
    await this.#spawner?.close();
    await this.#taskUsers?.pool.close();
    await this.#devices?.close();
    await this.#reporter.stop();
    await this.#server.shutdown();
    this.#dirs.settle();
    await this.#dirs.drained();
    while (this.#background.size) await Promise.all([...this.#background]);
    // Every task is gone: nothing is left for the watchdog or a successor to sweep.
    this.#reaping.ledger.remove();
    await this.#reaping.reaper?.close();
    if (this.#cleanup) {
      const targets = this.#removeRoot
        ? [this.#rootDir]
        : [`${this.#rootDir}/tasks`, this.#dirs.spareDir];
      for (const target of targets) {
        await Deno.remove(target, { recursive: true }).catch((err) => {
          if (!(err instanceof Deno.errors.NotFound)) {
            this.#log(`cannot remove ${target}: ${describeError(err)}`);
          }
        });
      }
    }
    this.#log(`worker ${this.#workerId} stopped`);
  }

  #kill(taskId: string, attemptId: number, reason: string, grace?: Duration): boolean {
    const attempt = this.#attempts.get(attemptKey(taskId, attemptId));
    if (!attempt) return false;
    if (attempt.kill(reason, { grace: grace ?? this.#opts.killGrace })) {
      this.#log(`killing ${taskId} attempt ${attemptId}: ${reason}`);
    }
    return true;
  }

  #active(): TaskAttempt[] {
    return [...this.#attempts.values()].filter((a) => !a.isTerminal);
  }

  #registerRequest() {
    return create(RegisterWorkerRequestSchema, {
      workerId: this.#workerId,
      address: this.#url,
      resources: resourcesToProto(healthyResources(this.#resources, this.#devices)),
      attributes: attributesToProto({ ...this.#deviceAttributes, ...this.#opts.attributes }),
      scaleGroup: this.#opts.scaleGroup ?? "",
      sliceId: this.#opts.sliceId ?? "",
      running: this.#runningRefs(),
      finished: this.#finishedRefs(),
    });
  }

  /** Ended, but the controller has not acknowledged the end yet: it must keep them claimed. */
  #finishedRefs() {
    return [...this.#attempts.values()].filter((a) => a.isTerminal && !a.isReported).map((a) =>
      create(AttemptRefSchema, { taskId: a.taskId, attemptId: a.attemptId })
    );
  }

  #runningRefs(active = this.#active()) {
    return active.map((a) =>
      create(AttemptRefSchema, { taskId: a.taskId, attemptId: a.attemptId })
    );
  }

  /**
   * Builds the next heartbeat from every attempt with something unreported, bounded by lines and by
   * bytes (`maxHeartbeatBytes`): what does not fit goes in the next one, sent right away.
   */
  #collect() {
    const perUpdate = this.#opts.maxLinesPerUpdate ?? 1000;
    let budget = perUpdate * 10;
    // Log bytes per heartbeat: small heartbeats keep arriving on time while tasks flood, and no
    // heartbeat comes near the controller's request limit.
    let bytes = Math.min(
      this.#opts.maxHeartbeatBytes ?? DEFAULT_MAX_HEARTBEAT_BYTES,
      this.#logBudget.limits.heartbeatBytes,
    );
    const updates: TaskUpdate[] = [];
    const commits: (() => void)[] = [];
    let more = false;
    for (const attempt of this.#attempts.values()) {
      if (attempt.isReported) continue;
      if (budget <= 0 || bytes <= UPDATE_OVERHEAD_BYTES) {
        more = true;
        break;
      }
      const taken = attempt.takeUpdate(Math.min(perUpdate, budget), bytes - UPDATE_OVERHEAD_BYTES);
      if (!taken) continue;
      budget -= taken.update.logs.length;
      bytes -= UPDATE_OVERHEAD_BYTES + taken.update.error.length * 3 + taken.bytes;
      if (attempt.pendingLines > taken.update.logs.length) more = true;
      updates.push(taken.update);
      commits.push(taken.commit);
    }
    const active = this.#active();
    // One resource snapshot per heartbeat interval: the heartbeats a burst of updates sends in
    // between carry none (the controller keeps the last). Its history then holds one snapshot
    // per interval, as at rest, not the last moments of a burst. Building one per update
    // heartbeat was 2–3 % of a busy worker's time, recording it 1 % of the controller's (#20).
    const builtAt = performance.now();
    const snapshot = builtAt - this.#ackedSnapshotAt >= this.#reporter.interval
      ? this.#snapshot(true, active)
      : undefined;
    const request = create(HeartbeatRequestSchema, {
      workerId: this.#workerId,
      updates,
      running: this.#runningRefs(active),
      finished: this.#finishedRefs(),
      // Delta: left out when only the time changed since the last acknowledged one.
      snapshot: !snapshot || sameSnapshot(this.#ackedSnapshot, snapshot) ? undefined : snapshot,
    });
    const commit = () => {
      if (snapshot) {
        this.#ackedSnapshot = snapshot;
        this.#ackedSnapshotAt = builtAt;
      }
      for (const c of commits) c();
      this.#prune();
    };
    return { request, commit, more };
  }

  /** The worker's current resource use and the host's; per-task samples only with `withTasks`. */
  #snapshot(withTasks = true, active = this.#active()) {
    const usage = new Map(
      active.map((a) => [attemptKey(a.taskId, a.attemptId), a.usage.cpuSeconds]),
    );
    const now = Date.now();
    const cpuPercent = this.#cpu.read(usage);
    const host = this.#host.read();
    return create(ResourceSnapshotSchema, {
      timestampMs: now,
      cpuPercent,
      memoryUsedBytes: active.reduce((sum, a) => sum + a.memoryBytes, 0),
      memoryTotalBytes: this.#resources.memoryBytes,
      runningTasks: active.length,
      processCount: active.reduce((sum, a) => sum + a.usage.processCount, 0),
      hostCpuMillicores: host.cpuMillicores,
      hostCpuTotalMillicores: host.cpuTotalMillicores,
      hostMemoryUsedBytes: host.memoryUsedBytes,
      hostMemoryTotalBytes: host.memoryTotalBytes,
      tasks: (withTasks ? active : []).map((a) =>
        create(TaskResourceUsageSchema, {
          taskId: a.taskId,
          attemptId: a.attemptId,
          timestampMs: now,
          cpuMillicores: this.#cpu.taskMillicores(attemptKey(a.taskId, a.attemptId)),
          memoryBytes: a.memoryBytes,
          peakMemoryBytes: a.peakMemoryBytes,
          processCount: a.usage.processCount,
          ...deviceTaskUsage(this.#devices, attemptKey(a.taskId, a.attemptId)),
        })
      ),
      devices: deviceUsageProto(this.#devices),
    });
  }

  /** An attempt is over: log it, and forget old ones. */
  #retire(attempt: TaskAttempt): void {
    this.#log(
      `${attempt.taskId} attempt ${attempt.attemptId} ended ${TaskState[attempt.state]}${
        attempt.error ? `: ${oneLine(attempt.error)}` : ""
      }`,
    );
    this.#finished.push(attempt);
    this.#prune();
  }

  /** Removes directories and records of old finished attempts (only once they were reported). */
  #prune(): void {
    const keepDirs = this.#opts.keepFinishedDirs ?? 4;
    const keepRecords = this.#opts.keepFinishedAttempts ?? 64;
    for (; this.#dirsRemoved < this.#finished.length - keepDirs; this.#dirsRemoved++) {
      this.#dirs.release(this.#finished[this.#dirsRemoved]!.dir);
    }
    // Unreported attempts are kept for the controller, but not without bound.
    const hardCap = Math.max(4 * keepRecords, 1000);
    while (
      this.#finished.length > keepRecords &&
      (this.#finished[0]!.isReported || this.#finished.length > hardCap)
    ) {
      const old = this.#finished.shift()!;
      if (this.#dirsRemoved > 0) this.#dirsRemoved--;
      if (!old.isReported) {
        this.#log(
          `forgetting ${old.taskId} attempt ${old.attemptId} before the controller heard its end`,
        );
      }
      const key = attemptKey(old.taskId, old.attemptId);
      if (this.#attempts.get(key) === old) this.#attempts.delete(key);
      if (this.#latest.get(old.taskId) === old) this.#latest.delete(old.taskId);
    }
  }

  #track(p: Promise<unknown>): void {
    this.#background.add(p);
    p.finally(() => this.#background.delete(p));
  }

  #log(line: string): void {
    this.#recentLogs.push({ atMs: Date.now(), line });
    if (this.#recentLogs.length > 2000) this.#recentLogs.splice(0, 500);
    this.#opts.log?.(line);
  }
}

/** Job owners whose task tokens a worker keeps at most (then it starts over). */
const MAX_CACHED_TASK_TOKENS = 1024;

function attemptKey(taskId: string, attemptId: number): string {
  return `${taskId}#${attemptId}`;
}
