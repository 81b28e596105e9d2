/**
 * One task attempt on a worker: its pipeline (ports, fresh directory, bundle, process), its state,
 * its logs, and the TaskUpdates still owed to the controller. Does not talk RPC itself.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type TaskUpdate, TaskUpdateSchema } from "../rpc/gen/iris/v1/controller_pb.ts";
import {
  AcceleratorType,
  type ExecInTaskResponse,
  ExecInTaskResponseSchema,
  type LogLine,
  LogLineSchema,
  TaskState,
} from "../rpc/gen/iris/v1/types_pb.ts";
import type { RunTaskRequest, WorkerTaskInfo } from "../rpc/gen/iris/v1/worker_pb.ts";
import { WorkerTaskInfoSchema } from "../rpc/gen/iris/v1/worker_pb.ts";
import { describeError, InvalidArgumentError } from "../errors.ts";
import {
  type Duration,
  ms,
  SharedTimer,
  type SharedTimerEntry,
  sleep,
  systemClock,
} from "../time.ts";
import { formatBytes, formatDuration, oneLine } from "../format.ts";
import {
  BoundedQueue,
  droppedMarker,
  lineCost,
  type LogBucket,
  type WorkerLogBudget,
} from "./lines.ts";
import type { PortAllocator } from "./ports.ts";
import type { ProcessTable, SpawnOptions } from "./process_tree.ts";
import type { TaskSpawner } from "./spawner.ts";
import { buildTaskEnv, copyTree, moduleArgv } from "./task_spec.ts";
import { chownTree, type TaskUser, type TaskUserPool } from "./task_users.ts";
import type { ReapLedger } from "./reaper.ts";
import { directoryUsage } from "./disk.ts";
import { TaskProcess } from "./task_runner.ts";
import type { Sessions } from "./sessions.ts";
import type { AttemptDirs } from "./attempt_dirs.ts";
import { KubeTaskPod, type TaskPodRuntime } from "./kube_task.ts";
import type { JobOutputs } from "./outputs.ts";
import { outputsDestination, uploadOutputs } from "./outputs_upload.ts";
import type { CommandRunner } from "../command/mod.ts";
import { type PreparedEnv, type PythonEnvCache, withPythonEnv } from "./python_env.ts";
import { type AttemptOutcome, classifyExit, isTerminalState } from "./outcome.ts";

/** Fetches a bundle and returns the directory holding its files (the worker copies them). */
export type BundleFetcher = (bundleId: string, signal: AbortSignal) => Promise<string>;

/** How much of an interactive task's latest output AttachTask replays first. */
const RAW_BACKLOG_BYTES = 64 * 1024;

/** What an attempt needs from its worker. */
export interface AttemptContext {
  /** Where an interactive task's stdin is registered (as "task:" + its id). */
  readonly sessions?: Sessions;
  readonly workerId: string;
  readonly controllerUrl: string;
  /** The attempt's directory (created fresh). */
  readonly dir: string;
  /** Makes the attempt's directory (recycling clean ones of earlier attempts). */
  readonly dirs: AttemptDirs;
  /** DENO_DIR for module tasks. */
  readonly denoDir: string;
  /** Paths a module task's permissions may not reach (see moduleArgv). */
  readonly protectedPaths?: readonly string[];
  /** IRIS_TOKEN for the task when auth is on (acts as the job's owner). */
  readonly taskToken?: string;
  readonly ports: PortAllocator;
  readonly bundleFetcher?: BundleFetcher;
  readonly sampleInterval: Duration;
  /** Shared source of memory samples. */
  readonly processTable: ProcessTable;
  /** Starts the worker's tasks with one fork and one exec each, when there is one. */
  readonly spawner?: TaskSpawner;
  /** The worker's log limits, rate bucket and backlog, shared by its attempts. */
  readonly logBudget: WorkerLogBudget;
  /** Called whenever there is something new to report. */
  readonly onChange: () => void;
  /** The worker root's tag, put in every task's environment (see reaper.ts). */
  readonly reapTag?: string;
  /** Where the task's session is recorded while it runs (see reaper.ts). */
  readonly ledger?: ReapLedger;
  /** Per-task limits: processes (RLIMIT_NPROC for a task user, else a sampled count), open files. */
  readonly limits?: { readonly processes?: number; readonly openFiles?: number };
  /** Light worker mode: each attempt runs as its own Pod (see kube_task.ts). */
  readonly taskPods?: TaskPodRuntime;
  /** Job output directories (IRIS_OUTPUT_DIR, outputs.ts); unset: none. */
  readonly outputs?: JobOutputs;
  /** Where job output directories are copied when attempts end (outputs_upload.ts); unset: none. */
  readonly outputsPrefix?: { readonly prefix: string; readonly runner?: CommandRunner };
  /** Python environments and setup steps of jobs (python_env.ts); unset: none, PATH as is. */
  readonly pythonEnvs?: PythonEnvCache;
  /** When set, the task runs as its own OS user from this pool (see task_users.ts). */
  readonly taskUsers?: {
    readonly pool: TaskUserPool;
    /** A deno executable task users may run. */
    readonly denoPath: () => Promise<string>;
  };
}

/** How often at most a "lines dropped" marker is written while a task floods. */
const MARKER_EVERY_MS = 1000;

/** Shortest time between two measurements of a task directory against its disk_bytes. */
const DISK_CHECK_INTERVAL_MS = 250;

/** An attempt, started by its constructor; `done` resolves once it is over and cleaned up. */
export class TaskAttempt {
  readonly taskId: string;
  readonly attemptId: number;
  /** The RunTask request that started it. */
  readonly request: RunTaskRequest;
  /** Its working directory. */
  readonly dir: string;
  /** Resolves when the attempt is terminal, its process reaped and its ports released. */
  readonly done: Promise<void>;
  readonly #ctx: AttemptContext;
  readonly #status = {
    state: TaskState.ASSIGNED,
    exitCode: 0,
    signal: "",
    error: "",
    startedAtMs: 0,
    finishedAtMs: 0,
    pid: 0,
    ports: {} as Record<string, number>,
  };
  readonly #logs: BoundedQueue<LogLine>;
  readonly #bucket: LogBucket;
  readonly #abort = new AbortController();
  /** Callers of {@linkcode TaskAttempt.leftSetup} still waiting. */
  #setupWaiters: SharedTimerEntry[] = [];
  /** Lines not yet delivered, from #pending[#head]; #costs in step. */
  #pending: LogLine[] = [];
  #costs: number[] = [];
  #head = 0;
  #pendingBytes = 0;
  /** Sequence number of #pending[#head]. */
  #pendingBase = 0;
  #droppedPending = 0;
  /** Pending lines before this sequence number are in the update sent last (not committed yet). */
  #inflightUpTo = 0;
  /** Lines of that update dropped from the backlog: delivered if it is committed, else lost. */
  #inflightDropped = 0;
  /** Marker lines in the backlog and the lines they stand for (a dropped marker drops them all). */
  readonly #markers = new WeakMap<LogLine, number>();
  /** Lines dropped by the rate limit since the last marker. */
  #rateDropped = 0;
  #lastMarkerAt = -Infinity;
  #version = 0;
  #ackedVersion = 0;
  #lastActiveState: TaskState = TaskState.ASSIGNED;
  #process?: TaskProcess;
  #pod?: KubeTaskPod;
  #outputsHeld = false;
  /** Ports the controller chose for this attempt (RunTaskRequest.reserved_ports), held till its end. */
  readonly #reserved: number[] = [];
  #kill?: { reason: string; state: TaskState; grace?: Duration };
  #user?: TaskUser;
  #execSpec?: SpawnOptions;
  /** The deno a module task runs (the worker's own unless task users have their own copy). */
  #denoPath?: string;
  /**
   * Output lines of the task read before it was reported started (a spawner's child may have
   * output queued when its pid comes): they follow the "started" line.
   */
  #early?: LogLine[];
  /** Set when the task was killed for filling more than its disk_bytes. */
  #diskExceeded = false;
  /** Attached clients of an interactive task (AttachTask): each gets every raw chunk. */
  readonly #attached = new Set<(m: ExecInTaskResponse) => void>();
  /** The last raw output of an interactive task (up to RAW_BACKLOG_BYTES), replayed on attach. */
  readonly #backlog: ExecInTaskResponse[] = [];
  #backlogBytes = 0;

  /** Starts the attempt's pipeline in the background. */
  constructor(request: RunTaskRequest, ctx: AttemptContext) {
    this.taskId = request.taskId;
    this.attemptId = request.attemptId;
    this.request = request;
    this.dir = ctx.dir;
    this.#ctx = ctx;
    const limits = ctx.logBudget.limits;
    this.#logs = new BoundedQueue(limits.keptLines, limits.keptBytes);
    this.#bucket = ctx.logBudget.taskBucket();
    this.done = this.#run();
  }

  /** Current state: ASSIGNED, BUILDING, RUNNING, then a final one. */
  /** How to run a command like the task (`iris task exec`), while it is running. */
  get execSpec(): SpawnOptions | undefined {
    return this.#status.state === TaskState.RUNNING ? this.#execSpec : undefined;
  }

  /** The task's session (its leader's pid) while it is running, else 0. */
  get sessionId(): number {
    return this.#status.state === TaskState.RUNNING ? this.#status.pid : 0;
  }

  get state(): TaskState {
    return this.#status.state;
  }

  /**
   * The state once the attempt left setup (RUNNING, or ended), or whatever it is after `within`
   * (ASSIGNED, BUILDING): what RunTask answers, so the controller frees the attempt's place under
   * its building limit without waiting for a heartbeat (#20).
   */
  async leftSetup(within: Duration): Promise<TaskState> {
    if (!inSetup(this.#status.state)) return this.#status.state;
    await new Promise<void>((wake) => this.#setupWaiters.push(SETUP_WAITS.add(within, wake)));
    return this.#status.state;
  }

  /** Why the attempt ended (empty on success or while it runs). */
  get error(): string {
    return this.#status.error;
  }

  /** True once the attempt reached a final state. */
  get isTerminal(): boolean {
    return isTerminalState(this.#status.state);
  }

  /** True when the final state and every log line reached the controller. */
  get isReported(): boolean {
    return this.isTerminal && this.#ackedVersion >= this.#version && this.pendingLines === 0 &&
      this.#droppedPending === 0 && this.#inflightDropped === 0;
  }

  /** Log lines not yet delivered to the controller. */
  get pendingLines(): number {
    return this.#pending.length - this.#head;
  }

  /** Bytes (approximate) of the log lines not yet delivered to the controller. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /**
   * Ends the attempt: aborts setup, or kills the process tree (SIGTERM, then SIGKILL after `grace`).
   * Reports `state` (KILLED, or WORKER_FAILED when the worker itself is going away).
   * Returns false when the attempt had already ended.
   */
  kill(reason: string, options: { grace?: Duration; state?: TaskState } = {}): boolean {
    if (this.isTerminal) return false;
    const first = !this.#kill;
    this.#kill ??= { reason, state: options.state ?? TaskState.KILLED, grace: options.grace };
    if (first) this.#system(`killing: ${reason}`);
    this.#abort.abort();
    this.#process?.kill(this.#kill.reason, {
      grace: options.grace,
      immediate: options.grace === 0,
    });
    void this.#pod?.kill(this.#kill.reason);
    return true;
  }

  /** Current status as WorkerTaskInfo. */
  info(): WorkerTaskInfo {
    return create(WorkerTaskInfoSchema, {
      taskId: this.taskId,
      attemptId: this.attemptId,
      state: this.#status.state,
      exitCode: this.#status.exitCode,
      signal: this.#status.signal,
      error: this.#status.error,
      startedAtMs: this.#status.startedAtMs,
      finishedAtMs: this.#status.finishedAtMs,
      pid: this.#status.pid,
      ports: this.#status.ports,
      memoryBytes: this.#process && !this.isTerminal ? this.#process.memoryBytes : 0,
      peakMemoryBytes: this.#process?.peakMemoryBytes ?? 0,
    });
  }

  /** Resident memory of the running tree (0 when not running). */
  get memoryBytes(): number {
    return this.#process && !this.isTerminal ? this.#process.memoryBytes : 0;
  }

  /** Highest sampled resident memory of the tree so far. */
  get peakMemoryBytes(): number {
    return this.#process?.peakMemoryBytes ?? 0;
  }

  /** CPU seconds and process count of the running tree at its last sample. */
  get usage(): { cpuSeconds: number; processCount: number } {
    const s = this.#process && !this.isTerminal ? this.#process.lastSample : undefined;
    return { cpuSeconds: s?.cpuSeconds ?? 0, processCount: s?.processCount ?? 0 };
  }

  /** Locally kept lines newer than `sinceMs`; the last `maxLines` of them when maxLines > 0. */
  logs(sinceMs = 0, maxLines = 0): LogLine[] {
    const lines = this.#logs.toArray().filter((l) => l.timestampMs > sinceMs);
    return maxLines > 0 ? lines.slice(-maxLines) : lines;
  }

  /**
   * The update owed to the controller, with at most `maxLines` log lines costing at most `maxBytes`
   * (at least one line fits), or undefined when there is
   * nothing new. The final state is only sent together with the last pending lines. Call `commit`
   * once the controller accepted it; an update that was not committed is sent again.
   */
  takeUpdate(
    maxLines: number,
    maxBytes = Infinity,
  ): { update: TaskUpdate; commit: () => void; bytes: number } | undefined {
    // A task that flooded and then went quiet still gets its marker within about a second.
    if (this.#rateDropped > 0 && performance.now() - this.#lastMarkerAt >= MARKER_EVERY_MS) {
      this.#rateMarker();
    }
    // The update sent last was not committed: its lines dropped meanwhile are lost, say so.
    this.#droppedPending += this.#inflightDropped;
    this.#inflightDropped = 0;
    this.#inflightUpTo = 0;
    const stateChanged = this.#version > this.#ackedVersion;
    const pending = this.pendingLines;
    if (!stateChanged && pending === 0 && this.#droppedPending === 0) return undefined;
    const logs: LogLine[] = [];
    const dropped = this.#droppedPending;
    if (dropped > 0) {
      const l = this.#ctx.logBudget.limits;
      logs.push(
        this.#line(
          "system",
          droppedMarker(
            dropped,
            `log backlog full: the controller did not take them in time; at most ${
              formatBytes(l.taskBacklogBytes)
            } per task and ${formatBytes(l.workerBacklogBytes)} per worker wait`,
          ),
        ),
      );
    }
    let count = Math.min(pending, Math.max(0, maxLines - logs.length));
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const cost = this.#costs[this.#head + i]!;
      if (bytes + cost > maxBytes && i > 0) count = i;
      else bytes += cost;
    }
    logs.push(...this.#pending.slice(this.#head, this.#head + count));
    const first = logs[logs.length - count];
    if (count > 0 && maxBytes !== Infinity && first && logLineBytes(first) > maxBytes) {
      // One line alone over the budget goes cut, so that no heartbeat can exceed the limit.
      logs[logs.length - count] = {
        ...first,
        text: `${first.text.slice(0, Math.max(0, Math.floor(maxBytes / 3) - 64))} … [line cut: ${
          logLineBytes(first)
        } bytes]`,
      };
    }
    const complete = count === pending;
    const version = this.#version;
    const upTo = this.#pendingBase + count;
    this.#inflightUpTo = upTo;
    const final = complete || !this.isTerminal;
    const update = create(TaskUpdateSchema, {
      taskId: this.taskId,
      attemptId: this.attemptId,
      state: final ? this.#status.state : this.#lastActiveState,
      exitCode: final ? this.#status.exitCode : 0,
      signal: final ? this.#status.signal : "",
      error: final ? this.#status.error : "",
      startedAtMs: this.#status.startedAtMs,
      finishedAtMs: final ? this.#status.finishedAtMs : 0,
      peakMemoryBytes: this.#process?.peakMemoryBytes ?? 0,
      ports: this.#status.ports,
      logs,
    });
    const commit = () => {
      this.#droppedPending -= dropped;
      this.#inflightDropped = 0; // they were delivered
      this.#inflightUpTo = 0;
      for (let n = upTo - this.#pendingBase; n > 0; n--) this.#shiftPending();
      if (final) this.#ackedVersion = Math.max(this.#ackedVersion, version);
    };
    return { update, commit, bytes };
  }

  async #run(): Promise<void> {
    try {
      await this.#execute();
    } catch (err) {
      this.#finish({
        state: TaskState.WORKER_FAILED,
        error: `worker error: ${describeError(err)}`,
      });
    } finally {
      this.#ctx.ports.release(Object.values(this.#status.ports));
      this.#ctx.ports.release(this.#reserved);
      if (this.#user) this.#ctx.taskUsers?.pool.release(this.#user);
      this.#ctx.pythonEnvs?.release(this.dir);
      if (this.#outputsHeld) await this.#ctx.outputs?.release(this.request.jobId);
      // Its files are what it was killed for: they go now, not after the debugging window.
      if (this.#diskExceeded) await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    }
  }

  async #execute(): Promise<void> {
    const req = this.request;
    const ctx = this.#ctx;
    let outputs: Promise<string | Error> | undefined;
    try {
      this.#status.ports = ctx.ports.allocateNamed(req.ports);
      for (const [name, port] of Object.entries(req.reservedPorts)) {
        if (!ctx.ports.reserve(port)) {
          throw new Error(
            `${name} ${port} is already in use on this host (held by another task or bound)`,
          );
        }
        this.#reserved.push(port);
      }
      const users = ctx.taskUsers;
      if (users) this.#user = users.pool.allocate();
      // The job's output directory depends on nothing else here (a bundle's attempt makes it
      // after the fetch). Awaited on every path, so a failed setup still releases it.
      outputs = ctx.outputs && !req.bundleId ? this.#acquireOutputs() : undefined;
      // Synchronous: a few syscalls of microseconds (a recycled directory: a rename and two
      // chowns), cheaper than async ops' trips through Deno's thread pool (#20).
      ctx.dirs.make(this.dir, this.#user);
      if (users && req.entrypoint?.kind.case === "module") this.#denoPath = await users.denoPath();
    } catch (err) {
      await outputs;
      return this.#finish({
        state: TaskState.WORKER_FAILED,
        error: `setup failed: ${describeError(err)}`,
      });
    }
    if (req.bundleId) {
      if (!ctx.bundleFetcher) {
        return this.#finish({
          state: TaskState.FAILED,
          error:
            `cannot fetch bundle ${req.bundleId}: this worker has no bundle fetcher configured`,
        });
      }
      this.#setState(TaskState.BUILDING);
      this.#system(`fetching bundle ${req.bundleId}`);
      try {
        const source = await ctx.bundleFetcher(req.bundleId, this.#abort.signal);
        if (!this.#kill) {
          await copyTree(source, this.dir);
          if (this.#user) await chownTree(this.dir, this.#user);
        }
      } catch (err) {
        // The task's own input is missing or bad (or cannot be fetched): a failure that spends
        // the job's failure budget, not a worker failure retried under the preemption budget.
        if (!this.#kill) {
          return this.#finish({
            state: TaskState.FAILED,
            error: `fetching bundle ${req.bundleId} failed: ${describeError(err)}`,
          });
        }
      }
    }
    // The job's output directory (outputs.ts): IRIS_OUTPUT_DIR, kept after the attempt.
    const reqEnv: Record<string, string> = { ...req.env };
    if (ctx.outputs && (outputs || !this.#kill)) {
      const dir = await (outputs ?? this.#acquireOutputs());
      if (dir instanceof Error) {
        return this.#finish({
          state: TaskState.WORKER_FAILED,
          error: `output directory: ${describeError(dir)}`,
        });
      }
      reqEnv.IRIS_OUTPUT_DIR = dir;
      if (ctx.outputsPrefix) {
        reqEnv.IRIS_OUTPUT_URL = outputsDestination(ctx.outputsPrefix.prefix, req.jobId);
      }
    }
    // Python environment and setup steps (python_env.ts), in the task's sandbox.
    let py: PreparedEnv = { env: {} };
    if (ctx.pythonEnvs && !this.#kill) {
      if (req.environment) this.#setState(TaskState.BUILDING);
      const stepEnv = (extra: PreparedEnv) =>
        buildTaskEnv({
          taskDir: this.dir,
          env: withPythonEnv(reqEnv, extra),
          ports: this.#status.ports,
          workerId: ctx.workerId,
          token: ctx.taskToken,
          reapTag: ctx.reapTag,
        });
      try {
        py = await ctx.pythonEnvs.prepare({
          environment: req.environment,
          taskDir: this.dir,
          bundleId: req.bundleId,
          leaseKey: this.dir,
          user: this.#user,
          run: (argv, env) => this.#runStep(argv, stepEnv(env)),
          system: (message) => this.#system(message),
        });
      } catch (err) {
        if (!this.#kill) {
          return this.#finish({
            state: TaskState.FAILED,
            error: `environment setup failed: ${describeError(err)}`,
          });
        }
      }
    }
    if (this.#kill) return this.#finish({ state: this.#kill.state, error: this.#kill.reason });
    let argv: string[];
    try {
      argv = this.#argv();
    } catch (err) {
      return this.#finish({ state: TaskState.FAILED, exitCode: 127, error: describeError(err) });
    }
    const module = req.entrypoint?.kind.case === "module";
    const timeout = req.timeoutMs > 0 ? ms(req.timeoutMs) : undefined;
    const env = buildTaskEnv({
      taskDir: this.dir,
      env: withPythonEnv(reqEnv, py),
      ports: this.#status.ports,
      workerId: ctx.workerId,
      // A task user gets its own cache: a shared one would let tasks plant code for others.
      denoDir: module ? (this.#user ? `${this.dir}/.deno` : ctx.denoDir) : undefined,
      token: ctx.taskToken,
      reapTag: ctx.reapTag,
    });
    if (ctx.taskPods) return await this.#runPod(ctx.taskPods, argv, env, timeout);
    const user = this.#user && ctx.taskUsers &&
      { ...this.#user, setpriv: ctx.taskUsers.pool.setpriv };
    // RLIMIT_NPROC counts every process of the real uid: only a task user's are the task's.
    const limits = {
      processes: this.#user ? ctx.limits?.processes : undefined,
      openFiles: ctx.limits?.openFiles,
      // No single file past disk_bytes: the kernel stops it at once (SIGXFSZ).
      fileBytes: req.resources?.diskBytes || undefined,
    };
    // What `iris task exec` runs commands with: the task's directory, env, user and limits.
    this.#execSpec = { cwd: this.dir, env, user: user || undefined, limits };
    const early: LogLine[] = this.#early = [];
    ctx.ledger?.flush(); // its uid, before a process of it runs
    const proc = await TaskProcess.launch({
      argv,
      cwd: this.dir,
      env,
      timeout,
      memoryLimitBytes: req.resources?.memoryBytes ?? 0,
      sampleInterval: ctx.sampleInterval,
      processTable: ctx.processTable,
      spawner: ctx.spawner,
      user,
      maxLineBytes: ctx.logBudget.limits.maxLineBytes,
      admit: (_stream, bytes) => this.#admit(bytes),
      limits,
      maxProcesses: ctx.limits?.processes,
      // Joined before the task starts: a join after the spawn races the task's first forks.
      cgroup: ctx.ledger?.cgroup,
      onLine: (line) => {
        const logLine = this.#line(line.stream, line.text, line.timestampMs);
        if (this.#early) this.#early.push(logLine);
        else this.#append(logLine);
      },
      onWarning: (message) => this.#system(message),
      ...(req.interactive
        ? {
          interactive: {
            terminal: req.interactive.tty
              ? { rows: req.interactive.rows, cols: req.interactive.cols }
              : undefined,
          },
          onChunk: (stream: "stdout" | "stderr", bytes: Uint8Array) => {
            const m = create(ExecInTaskResponseSchema, { [stream]: bytes.slice() });
            this.#backlog.push(m);
            this.#backlogBytes += bytes.length;
            while (this.#backlogBytes > RAW_BACKLOG_BYTES && this.#backlog.length > 1) {
              const old = this.#backlog.shift()!;
              this.#backlogBytes -= old.stdout.length + old.stderr.length;
            }
            for (const send of this.#attached) send(m);
          },
        }
        : {}),
    });
    if (proc.pid === 0) {
      this.#early = undefined;
      const exit = await proc.exited;
      return this.#finish({
        state: TaskState.FAILED,
        exitCode: exit.exitCode,
        error: exit.spawnError ?? "cannot start",
      });
    }
    this.#process = proc;
    // Killed while it was being started (a spawner's fork is awaited): kill() found no process.
    const kill = this.#killOrder();
    if (kill) proc.kill(kill.reason, { grace: kill.grace, immediate: kill.grace === 0 });
    using _input = proc.input && ctx.sessions?.add(`task:${this.taskId}`, proc.input);
    ctx.ledger?.addSession(proc.pid, { inCgroup: proc.joinsCgroup });
    const diskBytes = req.resources?.diskBytes ?? 0;
    // Only with a disk limit: an abort() costs a DOMException and its stack trace.
    const stopDisk = diskBytes > 0 ? new AbortController() : undefined;
    const diskWatch = stopDisk && this.#watchDisk(proc, diskBytes, stopDisk.signal);
    this.#status.pid = proc.pid;
    this.#status.startedAtMs = systemClock.now();
    const started = this.#system(`started pid ${proc.pid}: ${argv.join(" ").slice(0, 1000)}`);
    this.#early = undefined;
    for (const line of early) {
      // Stamped no earlier than the line they follow (readers page by timestamp).
      if (line.timestampMs < started.timestampMs) line.timestampMs = started.timestampMs;
      this.#append(line);
    }
    this.#setState(TaskState.RUNNING);
    const exit = await proc.exited;
    this.#rateMarker();
    stopDisk?.abort();
    await diskWatch;
    ctx.ledger?.removeSession(proc.pid);
    // A write stopped by RLIMIT_FSIZE kills the writer (SIGXFSZ) or fails it (EFBIG), and the
    // task may go on or even succeed: a task that reached its limit failed on it either way.
    if (diskBytes > 0 && !this.#kill && !exit.killedBy) {
      const used = exit.signal === "SIGXFSZ" ? diskBytes : await directoryUsage(this.dir);
      if (used >= diskBytes) {
        this.#diskExceeded = true;
        return this.#finish({
          state: TaskState.FAILED,
          exitCode: exit.exitCode,
          signal: exit.signal,
          error: `disk limit: the task wrote ${formatBytes(used)} or more, the limit of ` +
            `disk_bytes ${formatBytes(diskBytes)} (a file reaching it is stopped by the kernel)`,
        });
      }
    }
    await this.#uploadOutputs();
    this.#finish(classifyExit(exit, this.#kill));
  }

  /** Creates (or keeps) the job's output directory for this attempt; the error when it cannot. */
  async #acquireOutputs(): Promise<string | Error> {
    try {
      const dir = await this.#ctx.outputs!.acquire(this.request.jobId, this.#user);
      this.#outputsHeld = true;
      return dir;
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
  }

  /**
   * After the task's process ended and before its outcome is reported: copies the job's output
   * directory to the outputs prefix. A failed copy is an [iris] line; it does not change the outcome.
   */
  async #uploadOutputs(): Promise<void> {
    const to = this.#ctx.outputsPrefix;
    if (!to || !this.#outputsHeld || !this.#ctx.outputs) return;
    const dir = this.#ctx.outputs.dirOf(this.request.jobId);
    try {
      const r = await uploadOutputs(dir, to.prefix, this.request.jobId, { runner: to.runner });
      this.#system(
        `outputs copied to ${r.destination}${r.files !== undefined ? ` (${r.files} files)` : ""}`,
      );
    } catch (err) {
      this.#system(`outputs not copied: ${describeError(err)}`);
    }
  }

  /** Runs one environment step like the task itself: same user, limits and log stream. */
  async #runStep(
    argv: readonly string[],
    env: Record<string, string>,
  ): Promise<{ exitCode: number; tail: readonly string[] }> {
    const ctx = this.#ctx;
    const req = this.request;
    ctx.ledger?.flush(); // its uid, before a process of it runs
    const proc = await TaskProcess.launch({
      argv,
      cwd: this.dir,
      env,
      memoryLimitBytes: req.resources?.memoryBytes ?? 0,
      sampleInterval: ctx.sampleInterval,
      processTable: ctx.processTable,
      spawner: ctx.spawner,
      user: this.#user && ctx.taskUsers && { ...this.#user, setpriv: ctx.taskUsers.pool.setpriv },
      maxLineBytes: ctx.logBudget.limits.maxLineBytes,
      admit: (_stream, bytes) => this.#admit(bytes),
      limits: {
        processes: this.#user ? ctx.limits?.processes : undefined,
        openFiles: ctx.limits?.openFiles,
        fileBytes: req.resources?.diskBytes || undefined,
      },
      maxProcesses: ctx.limits?.processes,
      onLine: (line) => this.#append(this.#line(line.stream, line.text, line.timestampMs)),
      onWarning: (message) => this.#system(message),
    });
    this.#process = proc;
    const kill = this.#killOrder(); // as for the task itself
    if (kill) proc.kill(kill.reason, { grace: kill.grace, immediate: kill.grace === 0 });
    try {
      const exit = await proc.exited;
      return {
        exitCode: exit.exitCode,
        tail: exit.spawnError ? [exit.spawnError] : exit.stderrTail,
      };
    } finally {
      this.#process = undefined;
    }
  }

  /**
   * Measures the task directory (which holds its TMPDIR) every 250 ms — less often when
   * a walk is slow: at most a tenth of the time — and SIGKILLs the task once it uses more than
   * `limit` bytes. The directory is removed when the attempt ends.
   */
  async #watchDisk(proc: TaskProcess, limit: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const started = performance.now();
      const used = await directoryUsage(this.dir, signal);
      if (signal.aborted) return;
      if (used > limit) {
        this.#diskExceeded = true;
        proc.kill(
          `disk limit: the task directory holds ${formatBytes(used)}, more than disk_bytes ${
            formatBytes(limit)
          }`,
          { cause: "limit", immediate: true },
        );
        return;
      }
      const took = performance.now() - started;
      await sleep(ms(Math.max(DISK_CHECK_INTERVAL_MS, 10 * took)), signal).catch(() => {});
    }
  }

  /** Light worker mode: the attempt as its own Pod, requesting the task's devices. */
  async #runPod(
    runtime: TaskPodRuntime,
    argv: string[],
    env: Record<string, string>,
    timeout: Duration | undefined,
  ): Promise<void> {
    const req = this.request;
    const acc = req.resources?.accelerator;
    const pod = KubeTaskPod.start({
      client: runtime.client,
      spec: {
        ...runtime.base,
        taskId: req.taskId,
        attemptId: req.attemptId,
        argv,
        cwd: this.dir,
        env,
        gpus: acc?.type === AcceleratorType.GPU ? acc.count : 0,
        cpuMillicores: req.resources?.cpuMillicores || undefined,
        memoryBytes: req.resources?.memoryBytes || undefined,
        timeout,
      },
      onLine: (line) => this.#append(this.#line(line.stream, line.text, line.timestampMs)),
    });
    this.#pod = pod;
    this.#status.startedAtMs = systemClock.now();
    this.#system(`started task Pod ${pod.name}: ${argv.join(" ").slice(0, 1000)}`);
    this.#setState(TaskState.RUNNING);
    if (this.#kill) void pod.kill(this.#kill.reason);
    const exit = await pod.exited;
    this.#rateMarker();
    if (exit.spawnError && !this.#kill) {
      return this.#finish({
        state: TaskState.FAILED,
        exitCode: exit.exitCode,
        error: `cannot start the task Pod: ${exit.spawnError}`,
      });
    }
    this.#finish(classifyExit(exit, this.#kill));
  }

  #argv(): string[] {
    const entry = this.request.entrypoint?.kind;
    if (entry?.case === "command") {
      if (entry.value.argv.length === 0 || !entry.value.argv[0]) {
        throw new InvalidArgumentError("entrypoint.command.argv", "must not be empty");
      }
      return [...entry.value.argv];
    }
    if (entry?.case === "module") {
      return moduleArgv({
        denoPath: this.#denoPath ??= Deno.execPath(),
        module: entry.value,
        taskDir: this.dir,
        hasBundle: this.request.bundleId !== "",
        controllerUrl: this.#ctx.controllerUrl,
        ports: Object.values(this.#status.ports),
        protectedPaths: this.#ctx.protectedPaths,
      });
    }
    throw new InvalidArgumentError("entrypoint", "must be a command or a module");
  }

  /**
   * The raw output of an interactive task: its last RAW_BACKLOG_BYTES, then as it comes, then one
   * finished message with its exit code once the attempt ends.
   */
  async *attach(signal: AbortSignal): AsyncGenerator<ExecInTaskResponse> {
    const queue: ExecInTaskResponse[] = [...this.#backlog];
    let wake: (() => void) | undefined;
    const send = (m: ExecInTaskResponse) => {
      queue.push(m);
      wake?.();
    };
    let ended = this.isTerminal;
    const onEnd = () => {
      ended = true;
      wake?.();
    };
    this.#attached.add(send);
    this.done.then(onEnd, onEnd);
    signal.addEventListener("abort", onEnd);
    try {
      while (true) {
        if (queue.length) {
          yield queue.shift()!;
          continue;
        }
        if (ended || signal.aborted) break;
        await new Promise<void>((resolve) => wake = resolve);
        wake = undefined;
      }
      if (signal.aborted) return;
      yield create(ExecInTaskResponseSchema, {
        finished: true,
        exitCode: this.#status.exitCode,
        error: this.#status.error ?? "",
      });
    } finally {
      this.#attached.delete(send);
      signal.removeEventListener("abort", onEnd);
    }
  }

  #finish(outcome: AttemptOutcome): void {
    if (this.isTerminal) return;
    this.#status.exitCode = outcome.exitCode ?? 0;
    this.#status.signal = outcome.signal ?? "";
    this.#status.error = outcome.error;
    this.#status.finishedAtMs = systemClock.now();
    const took = this.#status.startedAtMs
      ? ` after ${formatDuration(ms(this.#status.finishedAtMs - this.#status.startedAtMs))}`
      : "";
    const detail = outcome.error ? `: ${oneLine(outcome.error)}` : "";
    this.#system(
      `${TaskState[outcome.state]}${took} (exit code ${this.#status.exitCode})${detail}`,
    );
    this.#setState(outcome.state);
  }

  #setState(state: TaskState): void {
    if (!isTerminalState(state)) this.#lastActiveState = state;
    this.#status.state = state;
    this.#version++;
    this.#ctx.onChange();
    if (!inSetup(state) && this.#setupWaiters.length) {
      for (const waiter of this.#setupWaiters.splice(0)) {
        SETUP_WAITS.cancel(waiter);
        waiter.run();
      }
    }
  }

  /** The kill order, read afresh (TypeScript keeps a field's narrowing across an await). */
  #killOrder(): { reason: string; grace?: Duration } | undefined {
    return this.#kill;
  }

  #line(stream: string, text: string, timestampMs: number = Date.now()): LogLine {
    return create(LogLineSchema, {
      timestampMs,
      stream,
      text,
      taskId: this.taskId,
      attemptId: this.attemptId,
    });
  }

  /** Appends a line of the worker's own; `stands` = the dropped lines a marker stands for. */
  #system(text: string, stands = 0): LogLine {
    const line = this.#line("system", text);
    if (stands > 0) this.#markers.set(line, stands);
    this.#append(line);
    return line;
  }

  /** Whether an output line of `bytes` passes the rate limits; counts the ones that do not. */
  #admit(bytes: number): boolean {
    const now = performance.now();
    if (!this.#ctx.logBudget.admit(this.#bucket, bytes, now)) {
      this.#rateDropped++;
      return false;
    }
    if (this.#rateDropped > 0 && now - this.#lastMarkerAt >= MARKER_EVERY_MS) this.#rateMarker();
    return true;
  }

  /** Writes the "lines dropped" marker for lines the rate limit dropped, if any. */
  #rateMarker(): void {
    if (this.#rateDropped === 0) return;
    const l = this.#ctx.logBudget.limits;
    const n = this.#rateDropped;
    this.#rateDropped = 0;
    this.#lastMarkerAt = performance.now();
    this.#system(
      droppedMarker(
        n,
        `log rate limit: ${l.taskLinesPerSecond.toLocaleString("en-US")} lines/s and ${
          formatBytes(l.taskBytesPerSecond)
        }/s per task, ${l.workerLinesPerSecond.toLocaleString("en-US")} lines/s and ${
          formatBytes(l.workerBytesPerSecond)
        }/s per worker`,
      ),
      n,
    );
  }

  /**
   * Keeps a line and queues it for the controller. The backlog is bounded in bytes per attempt
   * and per worker: the attempt's own oldest lines make room (counted, and reported by a marker).
   * A quiet attempt (under 1/8 of its own bound) may go past a worker backlog filled by others.
   */
  #append(line: LogLine): void {
    const cost = lineCost(line.text);
    this.#logs.push(line, cost);
    const budget = this.#ctx.logBudget;
    const l = budget.limits;
    const fits = () =>
      this.#pendingBytes + cost <= l.taskBacklogBytes &&
      (budget.backlogBytes + cost <= l.workerBacklogBytes ||
        this.#pendingBytes + cost <= l.taskBacklogBytes / 8);
    while (this.pendingLines > 0 && !fits()) {
      const n = this.#markers.get(this.#pending[this.#head]!) ?? 1;
      if (this.#pendingBase < this.#inflightUpTo) this.#inflightDropped += n;
      else this.#droppedPending += n;
      this.#shiftPending();
    }
    if (!fits() && line.stream !== "system") {
      this.#droppedPending++;
    } else {
      this.#pending.push(line);
      this.#costs.push(cost);
      this.#pendingBytes += cost;
      budget.backlogBytes += cost;
    }
    this.#ctx.onChange();
  }

  /** Removes the oldest pending line. */
  #shiftPending(): void {
    const cost = this.#costs[this.#head]!;
    this.#pendingBytes -= cost;
    this.#ctx.logBudget.backlogBytes -= cost;
    this.#head++;
    this.#pendingBase++;
    if (this.#head >= 1024 && this.#head * 2 >= this.#pending.length) {
      this.#pending = this.#pending.slice(this.#head);
      this.#costs = this.#costs.slice(this.#head);
      this.#head = 0;
    }
  }
}

/** Whether an attempt in `state` is still in setup (counts toward the building limit). */
function inSetup(state: TaskState): boolean {
  return state === TaskState.ASSIGNED || state === TaskState.BUILDING;
}

/** About how many bytes a log line takes on the wire (UTF-8 text, stream, level, timestamp). */
export function logLineBytes(line: LogLine): number {
  let n = 32 + line.stream.length;
  const text = line.text;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : 3;
  }
  return n;
}

/** The RunTask waits of every attempt (`leftSetup`) share one timer: a batch's attempts wait alike. */
const SETUP_WAITS = new SharedTimer();
