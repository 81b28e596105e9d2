/**
 * Runs one task attempt as a subprocess in its own session: streams its output as timestamped
 * lines, samples its tree's memory, enforces timeout and memory limit, kills the whole tree.
 * Knows nothing about RPC, task states or directories.
 * @module
 */
import {
  type Duration,
  ms,
  seconds,
  SharedTimer,
  type SharedTimerEntry,
  type Timestamp,
} from "../time.ts";
import { formatBytes, formatDuration } from "../format.ts";
import { decodeLine, LineSplitter } from "./lines.ts";
import { childSession, type Session, terminalArgv, type TerminalSize } from "./sessions.ts";
import {
  killLeftovers,
  ProcessTable,
  sendSignal,
  signalTreeBottomUp,
  spawnedIntoCgroup,
  spawnerRequest,
  type SpawnOptions,
  spawnSessionLeader,
  summarize,
  type TreeSample,
} from "./process_tree.ts";
import type { OutputSink, TaskChild, TaskSpawner } from "./spawner.ts";

/** One line of task output. */
export interface OutputLine {
  /** Which pipe it came from. */
  readonly stream: "stdout" | "stderr";
  /** The line without its terminator. */
  readonly text: string;
  /** When the worker read it. */
  readonly timestampMs: Timestamp;
}

/**
 * Why a process ended without exiting on its own; "evicted": its task Pod was evicted or
 * deleted by the cluster (light worker mode, src/worker/kube_task.ts); "lost": the worker's task
 * spawner died, which kills the tasks it started (spawner.ts).
 */
export type KillCause = "kill" | "timeout" | "oom" | "limit" | "evicted" | "lost";

/** Options for {@linkcode TaskProcess.start}. */
export interface TaskProcessOptions {
  /** Program and arguments; argv[0] is looked up on `env.PATH`. */
  argv: readonly string[];
  /** Working directory; must exist. */
  cwd: string;
  /** The complete environment (nothing is inherited). */
  env: Record<string, string>;
  /** Kill the tree after this long. @default no limit */
  timeout?: Duration;
  /** Kill the tree (SIGKILL, exit 137) when its RSS exceeds this. @default 0 = no limit */
  memoryLimitBytes?: number;
  /** How often to sample the tree's memory. @default 500ms */
  sampleInterval?: Duration;
  /** Stderr lines kept for the failure report. @default 50 */
  stderrTailLines?: number;
  /** Longer lines are cut to this many bytes, with a marker. @default 16 KiB */
  maxLineBytes?: number;
  /**
   * Asked before each line is decoded, with its size in bytes; false drops it (it then costs
   * no decoding and never reaches `onLine`; stderr lines still feed the failure report's tail).
   * @default every line passes
   */
  admit?: (stream: "stdout" | "stderr", bytes: number) => boolean;
  /** Called for every admitted output line, in order per stream. */
  onLine?: (line: OutputLine) => void;
  /** Called after every memory sample. */
  onSample?: (sample: TreeSample) => void;
  /** Called once when something degrades, e.g. memory sampling is off (no /proc, no `ps`). */
  onWarning?: (message: string) => void;
  /** Where memory samples come from; share one between tasks. @default a private table */
  processTable?: ProcessTable;
  /** Run as this unprivileged user (see spawnSessionLeader). @default the worker's user */
  user?: SpawnOptions["user"];
  /** RLIMIT_NPROC / RLIMIT_NOFILE for the task (see spawnSessionLeader). @default none */
  limits?: SpawnOptions["limits"];
  /** Kill the tree when a sample counts more processes in its session. @default 0 = no limit */
  maxProcesses?: number;
  /** A cgroup-v2 directory the task joins before it starts (see spawnSessionLeader). */
  cgroup?: string;
  /**
   * Interactive (`iris job run -i`): stdin is a pipe the caller writes through `input`, under a
   * terminal of `terminal`'s size when given (script(1); stdout and stderr then both come as
   * stdout). @default stdin is /dev/null
   */
  interactive?: { terminal?: TerminalSize };
  /** Called with every raw output chunk as read, before it is split into lines. */
  onChunk?: (stream: "stdout" | "stderr", bytes: Uint8Array) => void;
  /**
   * Start through this long-lived spawner when it applies (see {@linkcode TaskProcess.launch}).
   * @default the wrapper chain of spawnSessionLeader
   */
  spawner?: TaskSpawner;
}

/** A started child, or why it could not start. */
type Started =
  | {
    readonly child: TaskChild;
    readonly joinsCgroup: boolean;
    readonly input?: Session;
  }
  | { readonly error: unknown };

/** Options for {@linkcode TaskProcess.kill}. */
export interface KillOptions {
  /** Time between SIGTERM and SIGKILL. @default 5s */
  grace?: Duration;
  /** Recorded as the exit's `killedBy`. @default "kill" */
  cause?: KillCause;
  /** Skip SIGTERM and send SIGKILL right away. @default false */
  immediate?: boolean;
}

/** How a process ended. */
export interface TaskExit {
  /** Exit status; 128 + n after signal n; 127 when it could not be started. */
  readonly exitCode: number;
  /** "SIGKILL", "SIGTERM", … or "" when it exited on its own. */
  readonly signal: string;
  /** Set when the worker ended it: the reason given (timeout, out of memory, kill). */
  readonly killReason?: string;
  /** What made the worker end it. */
  readonly killedBy?: KillCause;
  /**
   * Set when the program could not be started at all: its pid is then 0 (from `start`), or,
   * from a spawner (`launch`), a child whose chdir or exec failed.
   */
  readonly spawnError?: string;
  /** Highest sampled resident memory of the tree. */
  readonly peakMemoryBytes: number;
  /** Last stderr lines, oldest first. */
  readonly stderrTail: readonly string[];
}

const DEFAULT_GRACE = seconds(5);
/** How long to wait for output pipes to drain after the tree is gone. */
const DRAIN_TIMEOUT = seconds(2);
/** The output pump lets other work run after this many bytes read in a row. */
const YIELD_EVERY_BYTES = 1024 * 1024;

/**
 * A running task process. Start with {@linkcode TaskProcess.start}, which never throws: a program
 * that cannot be started yields an already-finished process whose exit has `spawnError`.
 */
export class TaskProcess {
  /** The leader's pid (also its session and process-group id); 0 when it never started. */
  readonly pid: number;
  /** True when the spawn put the task in `options.cgroup` before its program started. */
  readonly joinsCgroup: boolean = false;
  /** Resolves once the leader is reaped, leftovers are killed and output is drained. */
  readonly exited: Promise<TaskExit>;
  /** The program's stdin, for an interactive process that started. */
  readonly input?: Session;
  readonly #options: TaskProcessOptions;
  readonly #table: ProcessTable;
  /** Raw last stderr lines (decoded at exit, so a flood costs no decoding). */
  readonly #tail: { bytes: Uint8Array; cut: number }[] = [];
  readonly #readers: ReadableStreamDefaultReader<Uint8Array>[] = [];
  /** Stops the output a spawner's child pushes (TaskChild.listen), once it pushes. */
  #stopListening?: () => void;
  /** Output streams still open. */
  #openPumps = 0;
  /**
   * Timers and callbacks rather than AbortControllers: an abort() builds a DOMException with a
   * stack trace, and a task that ends in milliseconds would pay three (#20).
   */
  #sampleTimer?: SharedTimerEntry;
  /** The memory sample in progress, if any. */
  #sampling?: Promise<void>;
  #samplingStopped = false;
  /** Set once the SIGTERM grace is cut short (an immediate kill, or the leader exited). */
  #graceCut = false;
  /** Ends the grace wait of #terminate early, while it waits. */
  #wakeFromGrace?: () => void;
  #child?: TaskChild;
  #leaderExited = false;
  #killReason?: string;
  #killedBy?: KillCause;
  #killing?: Promise<void>;
  #timer?: ReturnType<typeof setTimeout>;
  #sample: TreeSample = { processCount: 0, rssBytes: 0, cpuSeconds: 0 };
  #peak = 0;

  /** Spawns `options.argv` in a new session with piped output and no stdin. */
  static start(options: TaskProcessOptions): TaskProcess {
    return new TaskProcess(options, TaskProcess.#spawn(options));
  }

  /**
   * {@linkcode start}, through `options.spawner` when there is one and the task is not
   * interactive (one fork and one exec in the spawner instead of four execs here, #20); the
   * usual way when the spawner is off, unusable or died meanwhile. A spawner's child may have
   * output queued already: `onLine` may then be called before the returned promise resolves.
   */
  static async launch(options: TaskProcessOptions): Promise<TaskProcess> {
    const program = options.argv[0];
    if (options.spawner && program && !options.interactive) {
      const request = spawnerRequest(program, options.argv.slice(1), {
        cwd: options.cwd,
        env: options.env,
        user: options.user,
        limits: options.limits,
        cgroup: options.cgroup,
      });
      if (request) {
        try {
          const child = await options.spawner.spawn(request);
          if (child) {
            return new TaskProcess(options, { child, joinsCgroup: !!options.cgroup });
          }
        } catch (error) {
          return new TaskProcess(options, { error });
        }
      }
    }
    return TaskProcess.start(options);
  }

  static #spawn(options: TaskProcessOptions): Started {
    const program = options.argv[0];
    try {
      if (!program) throw new Error("empty argv");
      const terminal = options.interactive?.terminal;
      const full = terminal ? terminalArgv(options.argv, terminal) : options.argv;
      const child = spawnSessionLeader(full[0]!, full.slice(1), {
        ...(options.interactive ? { stdin: "piped" } : {}),
        cwd: options.cwd,
        env: options.env,
        user: options.user,
        limits: options.limits,
        cgroup: options.cgroup,
      });
      return {
        child,
        joinsCgroup: spawnedIntoCgroup(child),
        input: options.interactive
          ? childSession(child, !!options.interactive.terminal)
          : undefined,
      };
    } catch (error) {
      return { error };
    }
  }

  private constructor(options: TaskProcessOptions, started: Started) {
    this.#options = options;
    this.#table = options.processTable ?? new ProcessTable();
    const program = options.argv[0];
    if ("error" in started) {
      const err = started.error;
      this.pid = 0;
      const spawnError = describeSpawnError(program ?? "", err, options.env.PATH ?? "");
      this.exited = Promise.resolve({
        exitCode: err instanceof Deno.errors.PermissionDenied ? 126 : 127,
        signal: "",
        spawnError,
        peakMemoryBytes: 0,
        stderrTail: [],
      });
      this.#leaderExited = true;
      return;
    }
    const child = started.child;
    this.pid = child.pid;
    this.joinsCgroup = started.joinsCgroup;
    this.#child = child;
    this.input = started.input;
    const pumps = child.listen
      ? [this.#listen(child.listen.bind(child))]
      : [this.#pump(child.stdout, "stdout"), this.#pump(child.stderr, "stderr")];
    // The first sample waits one interval: a tree still being built is not worth a scan, and
    // killing it mid-fork (a tiny memory limit) could orphan children.
    this.#scheduleSample();
    const timeout = options.timeout;
    if (timeout !== undefined && timeout > 0) {
      this.#timer = setTimeout(() => {
        this.kill(`timed out after ${formatDuration(timeout)}`, { cause: "timeout" });
      }, timeout);
    }
    this.exited = this.#wait(child, pumps);
  }

  /** Resident memory of the tree at the last sample, in bytes. */
  get memoryBytes(): number {
    return this.#sample.rssBytes;
  }

  /** Highest sampled resident memory of the tree, in bytes. */
  get peakMemoryBytes(): number {
    return this.#peak;
  }

  /** The last sample of the tree. */
  get lastSample(): TreeSample {
    return this.#sample;
  }

  /**
   * Ends the tree: SIGTERM (leaves first, then the group), then after the grace period SIGKILL.
   * The first reason given is the one reported. Calling again with `immediate` cuts the grace short.
   */
  kill(reason: string, options: KillOptions = {}): Promise<TaskExit> {
    if (this.#leaderExited) return this.exited;
    this.#killReason ??= reason;
    this.#killedBy ??= options.cause ?? "kill";
    if (options.immediate) this.#cutGrace();
    this.#killing ??= this.#terminate(options.grace ?? DEFAULT_GRACE, options.immediate ?? false);
    return this.exited;
  }

  async #terminate(grace: Duration, immediate: boolean): Promise<void> {
    const pid = this.pid;
    const isDone = () => this.#leaderExited;
    if (!immediate && grace > 0) {
      const started = performance.now();
      const walkBudget = ms(Math.min(grace / 2, 1000));
      await signalTreeBottomUp(pid, pid, "SIGTERM", {
        isDone,
        budget: walkBudget,
        table: this.#table,
      });
      if (!isDone()) await this.#signalLeader("SIGTERM");
      const left = grace - (performance.now() - started);
      if (!isDone() && left > 0 && !this.#graceCut) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          this.#wakeFromGrace = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.#wakeFromGrace = undefined;
      }
    }
    if (isDone()) return;
    await signalTreeBottomUp(pid, pid, "SIGKILL", {
      isDone,
      budget: seconds(1),
      roundWait: ms(100),
      table: this.#table,
    });
    if (!isDone()) await this.#signalLeader("SIGKILL");
  }

  #cutGrace(): void {
    this.#graceCut = true;
    this.#wakeFromGrace?.();
  }

  /** Signals the process group, and the leader directly in case the group signal was not allowed. */
  async #signalLeader(signal: "SIGTERM" | "SIGKILL"): Promise<void> {
    await sendSignal(-this.pid, signal);
    try {
      this.#child?.kill(signal);
    } catch {
      // Already exited.
    }
  }

  async #wait(child: TaskChild, pumps: Promise<void>[]): Promise<TaskExit> {
    const status = await child.status;
    this.#leaderExited = true;
    if (status.lost) {
      this.#killReason ??= status.lost;
      this.#killedBy ??= "lost";
    }
    await this.input?.end();
    clearTimeout(this.#timer);
    this.#cutGrace();
    this.#samplingStopped = true;
    if (this.#sampleTimer) SAMPLE_TIMERS.cancel(this.#sampleTimer);
    await this.#sampling;
    await this.#killing;
    // As its own user, what a task leaves outside its group dies with its uid's sweep.
    await killLeftovers(this.pid, this.#table, { emptyGroupIsEnough: !!this.#options.user });
    await this.#drain(pumps);
    const oom = this.#killedBy === "oom";
    if (status.spawnError) {
      // Its program never ran (a spawner's child whose chdir or exec failed).
      const err = status.spawnError;
      return {
        exitCode: err instanceof Deno.errors.PermissionDenied ? 126 : 127,
        signal: "",
        spawnError: describeSpawnError(
          this.#options.argv[0] ?? "",
          err,
          this.#options.env.PATH ?? "",
        ),
        peakMemoryBytes: 0,
        stderrTail: [],
      };
    }
    return {
      exitCode: oom ? 137 : status.code,
      signal: oom ? "SIGKILL" : status.signal ?? "",
      killReason: this.#killReason,
      killedBy: this.#killedBy,
      peakMemoryBytes: this.#peak,
      stderrTail: this.#tail.map((t) => decodeLine(new TextDecoder(), t.bytes, t.cut)),
    };
  }

  async #drain(pumps: Promise<void>[]): Promise<void> {
    const all = Promise.all(pumps);
    // Usually the pipes closed with the tree: no timer.
    if (this.#openPumps === 0) return await all.then(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(true), DRAIN_TIMEOUT)),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      // A process that left the session still holds the pipe; stop reading.
      this.#stopListening?.();
      await Promise.all(this.#readers.map((r) => r.cancel().catch(() => {})));
    }
    await all;
  }

  /**
   * Reads one pipe in chunks as they come, splits them into lines and hands the admitted ones on.
   * Yields to the event loop every YIELD_EVERY_BYTES, so a task printing as fast as it can only
   * costs CPU: timers and RPCs of the worker keep running.
   */
  async #pump(stream: ReadableStream<Uint8Array>, name: "stdout" | "stderr"): Promise<void> {
    const reader = stream.getReader();
    this.#readers.push(reader);
    this.#openPumps++;
    const lines = this.#lines(name);
    let sinceYield = 0;
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        lines.push(value);
        sinceYield += value.length;
        if (sinceYield >= YIELD_EVERY_BYTES) {
          sinceYield = 0;
          await new Promise<void>((resolve) => setTimeout(resolve, 0));
        }
      }
    } catch {
      // Cancelled after the drain timeout, or the pipe broke: the output ends here.
    } finally {
      lines.end();
      reader.releaseLock();
      this.#openPumps--;
    }
  }

  /**
   * The output a spawner's child pushes, chunk by chunk as the spawner's records come (they
   * come a read of its pipe at a time, so other work runs between them); resolves once both
   * streams ended.
   */
  #listen(listen: (sink: OutputSink) => () => void): Promise<void> {
    this.#openPumps = 2;
    const streams = { stdout: this.#lines("stdout"), stderr: this.#lines("stderr") };
    const open = { stdout: true, stderr: true };
    return new Promise<void>((resolve) => {
      const close = (name: "stdout" | "stderr") => {
        if (!open[name]) return;
        open[name] = false;
        streams[name].end();
        if (--this.#openPumps === 0) resolve();
      };
      this.#stopListening = listen((name, chunk) => {
        if (!open[name]) return;
        if (chunk === null) return close(name);
        try {
          streams[name].push(chunk);
        } catch {
          close(name); // as a pump's read failing: the output ends here, not the spawner's
        }
      });
    });
  }

  /** Splits one stream's chunks into lines and hands the admitted ones on. */
  #lines(name: "stdout" | "stderr"): { push(chunk: Uint8Array): void; end(): void } {
    const tailMax = this.#options.stderrTailLines ?? 50;
    const splitter = new LineSplitter(this.#options.maxLineBytes ?? 16 * 1024);
    let decoder: TextDecoder | undefined; // most tasks print nothing
    const admit = this.#options.admit;
    const onLine = this.#options.onLine;
    const emit = (line: Uint8Array, cut: number) => {
      if (name === "stderr" && tailMax > 0) {
        this.#tail.push({ bytes: line.slice(), cut });
        if (this.#tail.length > tailMax) this.#tail.shift();
      }
      if (admit && !admit(name, line.length)) return;
      onLine?.({
        stream: name,
        text: decodeLine(decoder ??= new TextDecoder(), line, cut),
        timestampMs: Date.now() as Timestamp,
      });
    };
    const onChunk = this.#options.onChunk;
    return {
      push: (chunk) => {
        onChunk?.(name, chunk);
        splitter.push(chunk, emit);
      },
      end: () => splitter.end(emit),
    };
  }

  /** Takes the next memory sample after one interval, unless sampling stopped. */
  #scheduleSample(): void {
    if (this.#samplingStopped) return;
    this.#sampleTimer = SAMPLE_TIMERS.add(this.#options.sampleInterval ?? ms(500), () => {
      this.#sampleTimer = undefined;
      this.#sampling = this.#sample1().then((again) => {
        this.#sampling = undefined;
        if (again) this.#scheduleSample();
      });
    });
  }

  /** One memory sample, with its limits; false when sampling ends here. */
  async #sample1(): Promise<boolean> {
    const entries = await this.#table.session(this.pid);
    if (this.#samplingStopped) return false;
    if (!entries) {
      this.#options.onWarning?.("memory sampling is off: cannot read /proc or run ps");
      return false;
    }
    const sample = summarize(entries);
    this.#sample = sample;
    this.#peak = Math.max(this.#peak, sample.rssBytes);
    this.#options.onSample?.(sample);
    const limit = this.#options.memoryLimitBytes ?? 0;
    if (limit > 0 && sample.rssBytes > limit && !this.#killReason) {
      const reason = `out of memory: peak ${formatBytes(this.#peak)} exceeds limit ${
        formatBytes(limit)
      }`;
      this.kill(reason, { cause: "oom", immediate: true });
    }
    const maxProcesses = this.#options.maxProcesses ?? 0;
    if (maxProcesses > 0 && sample.processCount > maxProcesses && !this.#killReason) {
      this.kill(`process limit: ${sample.processCount} processes exceed limit ${maxProcesses}`, {
        cause: "limit",
        immediate: true,
      });
    }
    return true;
  }
}

/**
 * The memory samples of every task share one timer: a short task ends before its first sample, and
 * a timer per task showed in the worker's profile (#20).
 */
const SAMPLE_TIMERS = new SharedTimer();

function describeSpawnError(program: string, err: unknown, path: string): string {
  const message = err instanceof Error ? err.message : String(err);
  if (!program) return "cannot start task: the command is empty";
  if (err instanceof Deno.errors.NotFound && message.includes("No such cwd")) {
    return `cannot start "${program}": working directory does not exist`;
  }
  if (err instanceof Deno.errors.NotFound) {
    return `cannot start "${program}": command not found${
      program.includes("/") ? "" : ` on PATH ${path}`
    }`;
  }
  if (err instanceof Deno.errors.PermissionDenied) {
    return `cannot start "${program}": permission denied`;
  }
  return `cannot start "${program}": ${message}`;
}
