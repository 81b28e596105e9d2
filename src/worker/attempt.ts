/**
 * One task attempt on a worker: its pipeline (ports, fresh directory, bundle, process), its state,
 * its logs, and the TaskUpdates still owed to the controller. Does not talk RPC itself.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type TaskUpdate, TaskUpdateSchema } from "../rpc/gen/iris/v1/controller_pb.ts";
import { type LogLine, LogLineSchema, TaskState } from "../rpc/gen/iris/v1/types_pb.ts";
import type { RunTaskRequest, WorkerTaskInfo } from "../rpc/gen/iris/v1/worker_pb.ts";
import { WorkerTaskInfoSchema } from "../rpc/gen/iris/v1/worker_pb.ts";
import { describeError, InvalidArgumentError } from "../errors.ts";
import { type Duration, formatDuration, ms } from "../time.ts";
import { RingBuffer } from "./lines.ts";
import type { PortAllocator } from "./ports.ts";
import type { ProcessTable } from "./process_tree.ts";
import { buildTaskEnv, copyTree, moduleArgv } from "./task_spec.ts";
import { chownTree, type TaskUser, type TaskUserPool } from "./task_users.ts";
import { TaskProcess } from "./task_runner.ts";
import { type AttemptOutcome, classifyExit, isTerminalState } from "./outcome.ts";

/** Fetches a bundle and returns the directory holding its files (the worker copies them). */
export type BundleFetcher = (bundleId: string, signal: AbortSignal) => Promise<string>;

/** What an attempt needs from its worker. */
export interface AttemptContext {
  readonly workerId: string;
  readonly controllerUrl: string;
  /** The attempt's directory (created fresh). */
  readonly dir: string;
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
  /** Lines kept per attempt for FetchTaskLogs. */
  readonly logCapacity: number;
  /** Called whenever there is something new to report. */
  readonly onChange: () => void;
  /** When set, the task runs as its own OS user from this pool (see task_users.ts). */
  readonly taskUsers?: {
    readonly pool: TaskUserPool;
    /** A deno executable task users may run. */
    readonly denoPath: () => Promise<string>;
  };
}

/** Lines waiting for the controller beyond this are dropped, oldest first. */
const MAX_PENDING_LINES = 50_000;

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
  readonly #logs: RingBuffer<LogLine>;
  readonly #abort = new AbortController();
  #pending: LogLine[] = [];
  /** Sequence number of #pending[0]. */
  #pendingBase = 0;
  #droppedPending = 0;
  #version = 0;
  #ackedVersion = 0;
  #lastActiveState: TaskState = TaskState.ASSIGNED;
  #process?: TaskProcess;
  #kill?: { reason: string; state: TaskState; grace?: Duration };
  #user?: TaskUser;
  #denoPath = Deno.execPath();

  /** Starts the attempt's pipeline in the background. */
  constructor(request: RunTaskRequest, ctx: AttemptContext) {
    this.taskId = request.taskId;
    this.attemptId = request.attemptId;
    this.request = request;
    this.dir = ctx.dir;
    this.#ctx = ctx;
    this.#logs = new RingBuffer(ctx.logCapacity);
    this.done = this.#run();
  }

  /** Current state: ASSIGNED, BUILDING, RUNNING, then a final one. */
  get state(): TaskState {
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
    return this.isTerminal && this.#ackedVersion >= this.#version && this.#pending.length === 0 &&
      this.#droppedPending === 0;
  }

  /** Log lines not yet delivered to the controller. */
  get pendingLines(): number {
    return this.#pending.length;
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
   * The update owed to the controller, with at most `maxLines` log lines and about `maxBytes` of
   * log text (at least one line), or undefined when there is nothing new. The final state is only
   * sent together with the last pending lines. Call `commit` once the controller accepted it; an
   * update that was not committed is sent again.
   */
  takeUpdate(
    maxLines: number,
    maxBytes = Infinity,
  ): { update: TaskUpdate; commit: () => void } | undefined {
    const stateChanged = this.#version > this.#ackedVersion;
    if (!stateChanged && this.#pending.length === 0 && this.#droppedPending === 0) return undefined;
    const logs: LogLine[] = [];
    const dropped = this.#droppedPending;
    if (dropped > 0) {
      logs.push(
        this.#line(
          "system",
          `${dropped} log lines were dropped while the controller was unreachable`,
        ),
      );
    }
    let count = Math.min(this.#pending.length, Math.max(0, maxLines - logs.length));
    if (maxBytes !== Infinity) {
      let bytes = 0;
      for (let i = 0; i < count; i++) {
        bytes += logLineBytes(this.#pending[i]!);
        if (bytes > maxBytes && i > 0) {
          count = i;
          break;
        }
      }
    }
    logs.push(...this.#pending.slice(0, count));
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
    const complete = count === this.#pending.length;
    const version = this.#version;
    const upTo = this.#pendingBase + count;
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
      const n = upTo - this.#pendingBase;
      if (n > 0) {
        this.#pending.splice(0, n);
        this.#pendingBase += n;
      }
      if (final) this.#ackedVersion = Math.max(this.#ackedVersion, version);
    };
    return { update, commit };
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
      if (this.#user) this.#ctx.taskUsers?.pool.release(this.#user);
    }
  }

  async #execute(): Promise<void> {
    const req = this.request;
    const ctx = this.#ctx;
    try {
      this.#status.ports = ctx.ports.allocateNamed(req.ports);
      await freshDir(this.dir);
      const users = ctx.taskUsers;
      if (users) {
        this.#user = users.pool.allocate();
        await Deno.chmod(this.dir, 0o700);
        await Deno.chown(this.dir, this.#user.uid, this.#user.gid);
        if (req.entrypoint?.kind.case === "module") this.#denoPath = await users.denoPath();
      }
    } catch (err) {
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
        if (!this.#kill) {
          return this.#finish({
            state: TaskState.WORKER_FAILED,
            error: `fetching bundle ${req.bundleId} failed: ${describeError(err)}`,
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
    const proc = TaskProcess.start({
      argv,
      cwd: this.dir,
      env: buildTaskEnv({
        taskDir: this.dir,
        env: req.env,
        ports: this.#status.ports,
        workerId: ctx.workerId,
        // A task user gets its own cache: a shared one would let tasks plant code for others.
        denoDir: module ? (this.#user ? `${this.dir}/.deno` : ctx.denoDir) : undefined,
        token: ctx.taskToken,
      }),
      timeout,
      memoryLimitBytes: req.resources?.memoryBytes ?? 0,
      sampleInterval: ctx.sampleInterval,
      processTable: ctx.processTable,
      user: this.#user && ctx.taskUsers && { ...this.#user, setpriv: ctx.taskUsers.pool.setpriv },
      onLine: (line) => this.#append(this.#line(line.stream, line.text, line.timestampMs)),
      onWarning: (message) => this.#system(message),
    });
    if (proc.pid === 0) {
      const exit = await proc.exited;
      return this.#finish({
        state: TaskState.FAILED,
        exitCode: exit.exitCode,
        error: exit.spawnError ?? "cannot start",
      });
    }
    this.#process = proc;
    this.#status.pid = proc.pid;
    this.#status.startedAtMs = Date.now();
    this.#system(`started pid ${proc.pid}: ${argv.join(" ").slice(0, 1000)}`);
    this.#setState(TaskState.RUNNING);
    this.#finish(classifyExit(await proc.exited, this.#kill));
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
        denoPath: this.#denoPath,
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

  #finish(outcome: AttemptOutcome): void {
    if (this.isTerminal) return;
    this.#status.exitCode = outcome.exitCode ?? 0;
    this.#status.signal = outcome.signal ?? "";
    this.#status.error = outcome.error;
    this.#status.finishedAtMs = Date.now();
    const took = this.#status.startedAtMs
      ? ` after ${formatDuration(ms(this.#status.finishedAtMs - this.#status.startedAtMs))}`
      : "";
    const detail = outcome.error ? `: ${outcome.error.split("\n")[0]}` : "";
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

  #system(text: string): void {
    this.#append(this.#line("system", text));
  }

  #append(line: LogLine): void {
    this.#logs.push(line);
    this.#pending.push(line);
    if (this.#pending.length > MAX_PENDING_LINES) {
      this.#pending.shift();
      this.#pendingBase++;
      this.#droppedPending++;
    }
    this.#ctx.onChange();
  }
}

/**
 * Creates `dir` empty. The usual case (it does not exist, its parent does) is one mkdir; a
 * leftover from an earlier worker run is removed first.
 */
async function freshDir(dir: string): Promise<void> {
  try {
    await Deno.mkdir(dir);
    return;
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) {
      await Deno.remove(dir, { recursive: true });
    } else if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  await Deno.mkdir(dir, { recursive: true });
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
