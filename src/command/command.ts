/**
 * The one seam for every shell-out of the platform layer and the worker's helper commands:
 * Command/CommandRunner, the real DenoCommandRunner (the only caller of Deno.Command among them)
 * and runAll for bounded, timed parallel work. Builds no gcloud/ssh argv itself (see
 * src/platform/gcloud.ts, ssh.ts).
 * @module
 */
import { InvalidArgumentError } from "../errors.ts";
import { type Duration, ms, seconds } from "../time.ts";
import { formatDuration } from "../format.ts";
import { forEachLine, textReader } from "../line_reader.ts";

/** A process to run: argv plus optional stdin text and extra environment. */
export interface Command {
  readonly argv: readonly string[];
  /** Written to the child's stdin, which is then closed. No stdin (`/dev/null`) when absent. */
  readonly stdin?: string;
  /**
   * A secret (e.g. the worker token) written to stdin before `stdin`: never put in argv, and
   * logs and transcripts show only its size (`<secret: N bytes redacted>`).
   */
  readonly secretStdin?: string;
  /** Added to the inherited environment. */
  readonly env?: Readonly<Record<string, string>>;
}

/** What a finished process left behind. */
export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** The signal that ended the process, when one did. */
  readonly signal?: string;
  /** True when the runner killed the process because its timeout passed. */
  readonly timedOut: boolean;
}

/** Options of {@linkcode CommandRunner.run}. */
export interface RunOptions {
  /** Hard limit; the process group is killed when it passes. Required: no call may hang. */
  readonly timeout: Duration;
  /** Aborting kills the process group; `run` then rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/** Which output stream a line came from. */
export type OutputStream = "stdout" | "stderr";

/** Options of {@linkcode CommandRunner.stream}. */
export interface StreamOptions {
  /** The only way to stop a long-running stream: aborting kills the process group. */
  readonly signal: AbortSignal;
  /** Called once per output line (without the newline). */
  readonly onLine: (line: string, stream: OutputStream) => void;
}

/** A running streamed process. */
export interface StreamHandle {
  /**
   * Resolves once the process has exited and been reaped (never rejects). stdout/stderr hold
   * the last lines of each stream, for error messages.
   */
  readonly done: Promise<CommandResult>;
}

/**
 * Runs processes. The real one is {@linkcode DenoCommandRunner}; tests use a ScriptedRunner that
 * replays recorded outputs and keeps a transcript of every argv.
 */
export interface CommandRunner {
  /** Runs a command to completion, collecting its output. */
  run(cmd: Command, opts: RunOptions): Promise<CommandResult>;
  /** Starts a long-running command (log following, tunnels) and reports its lines as they come. */
  stream(cmd: Command, opts: StreamOptions): StreamHandle;
}

/** Grace between SIGTERM and SIGKILL of a process group. */
export const KILL_GRACE: Duration = seconds(2);
/** How long to wait for output pipes after the process exited before abandoning them. */
const PIPE_GRACE: Duration = ms(1000);
/** Lines of each stream kept in the result of a streamed command. */
const STREAM_TAIL_LINES = 50;

const SAFE_WORD = /^[A-Za-z0-9_\-+=:,./@%^]+$/;

/** POSIX-shell quoting of one word: `it's` → `'it'\''s'`; plain words stay as they are. */
export function shellQuote(word: string): string {
  if (word === "") return "''";
  if (SAFE_WORD.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** A command as one shell-quoted line (for logs, errors and golden transcripts). */
export function formatCommand(cmd: Command): string {
  return cmd.argv.map(shellQuote).join(" ");
}

/** How a command's stdin is shown in logs and transcripts: its secret part only by size. */
export function describeSecretStdin(cmd: Command): string | undefined {
  return cmd.secretStdin === undefined
    ? undefined
    : `<secret: ${new TextEncoder().encode(cmd.secretStdin).length} bytes redacted>`;
}

/** Everything written to a command's stdin, or undefined for none. */
function stdinText(cmd: Command): string | undefined {
  if (cmd.secretStdin === undefined) return cmd.stdin;
  return cmd.secretStdin + (cmd.stdin ?? "");
}

/** The last `n` non-empty lines of `text`, joined with newlines. */
export function lastLines(text: string, n = 5): string {
  return text.split("\n").map((l) => l.trimEnd()).filter((l) => l !== "").slice(-n).join("\n");
}

function killGroup(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(-pid, signal);
  } catch {
    // The group is already gone.
  }
}

/** Reads a byte stream line by line; `cancel()` abandons it (e.g. a pipe held by an orphan). */
function readLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): { done: Promise<void>; cancel(): Promise<void> } {
  const reader = textReader(stream);
  // Cancelled or broken pipe: keep what we have.
  const done = forEachLine(reader, onLine, true).catch(() => {});
  return { done, cancel: () => reader.cancel().catch(() => {}) };
}

interface Spawned {
  readonly result: Promise<CommandResult & { aborted: boolean }>;
}

/**
 * Spawns `cmd` as a process-group leader and supervises it: on timeout or abort the group gets
 * SIGTERM, then SIGKILL after {@linkcode KILL_GRACE}; once the leader exits, whatever is left
 * in its group is killed too, and the child is always awaited.
 */
function spawnSupervised(
  cmd: Command,
  opts: {
    timeout?: Duration;
    signal?: AbortSignal;
    onLine: (line: string, s: OutputStream) => void;
  },
): Spawned {
  const [program, ...args] = cmd.argv;
  if (program === undefined) {
    throw new InvalidArgumentError("argv", "Cannot run a command with an empty argv");
  }
  const input = stdinText(cmd);
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, {
      args,
      env: cmd.env ? { ...cmd.env } : undefined,
      stdin: input === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
      detached: true,
    }).spawn();
  } catch (err) {
    const stderr = err instanceof Deno.errors.NotFound
      ? `${program}: command not found`
      : `${program}: ${err instanceof Error ? err.message : String(err)}`;
    return {
      result: Promise.resolve({ code: 127, stdout: "", stderr, timedOut: false, aborted: false }),
    };
  }
  const pid = child.pid;
  let timedOut = false;
  let aborted = false;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  let exited = false;
  const terminate = () => {
    if (exited || killTimer !== undefined) return;
    killGroup(pid, "SIGTERM");
    killTimer = setTimeout(() => killGroup(pid, "SIGKILL"), KILL_GRACE);
  };
  const timeoutTimer = opts.timeout === undefined ? undefined : setTimeout(() => {
    timedOut = true;
    terminate();
  }, opts.timeout);
  const onAbort = () => {
    aborted = true;
    terminate();
  };
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener("abort", onAbort, { once: true });

  const stdin = input === undefined ? Promise.resolve() : (async () => {
    const writer = child.stdin.getWriter();
    try {
      await writer.write(new TextEncoder().encode(input));
      await writer.close();
    } catch {
      // The child exited without reading all of its input.
      await writer.abort().catch(() => {});
    }
  })();
  const out = readLines(child.stdout, (l) => opts.onLine(l, "stdout"));
  const err = readLines(child.stderr, (l) => opts.onLine(l, "stderr"));

  const result = (async () => {
    const status = await child.status;
    exited = true;
    clearTimeout(timeoutTimer);
    clearTimeout(killTimer);
    opts.signal?.removeEventListener("abort", onAbort);
    // Nothing a supervised command leaves in its process group outlives it.
    killGroup(pid, "SIGKILL");
    let graceTimer: ReturnType<typeof setTimeout> | undefined;
    const pipesClosed = Promise.all([out.done, err.done]).then(() => true);
    const grace = new Promise<boolean>((r) => graceTimer = setTimeout(() => r(false), PIPE_GRACE));
    if (!(await Promise.race([pipesClosed, grace]))) {
      // A process that left the group (setsid) still holds a pipe: stop reading it.
      await Promise.all([out.cancel(), err.cancel()]);
    }
    clearTimeout(graceTimer);
    await Promise.all([out.done, err.done, stdin]);
    return {
      code: status.code,
      stdout: "",
      stderr: "",
      signal: status.signal ?? undefined,
      timedOut,
      aborted,
    };
  })();
  return { result };
}

/**
 * The real runner, over `Deno.Command`. Every child runs in its own process group (detached);
 * timeouts and aborts kill the whole group (SIGTERM, SIGKILL 2 s later) and the child is always
 * awaited, so no call leaves a process or a pending op behind.
 */
export class DenoCommandRunner implements CommandRunner {
  /** Runs `cmd`; resolves with its output, `timedOut` set when the timeout killed it. */
  async run(cmd: Command, opts: RunOptions): Promise<CommandResult> {
    if (!(opts.timeout > 0)) {
      throw new InvalidArgumentError(
        "timeout",
        `Cannot run a command without a positive timeout: ${opts.timeout}`,
      );
    }
    opts.signal?.throwIfAborted();
    const stdout: string[] = [];
    const stderr: string[] = [];
    const spawned = spawnSupervised(cmd, {
      timeout: opts.timeout,
      signal: opts.signal,
      onLine: (line, s) => (s === "stdout" ? stdout : stderr).push(line),
    });
    const r = await spawned.result;
    if (r.aborted && !r.timedOut) {
      throw opts.signal?.reason ?? new DOMException("Aborted", "AbortError");
    }
    if (r.code === 127 && stdout.length === 0 && stderr.length === 0 && r.stderr) {
      stderr.push(r.stderr);
    }
    const timeoutNote = r.timedOut
      ? [`(killed after timeout of ${formatDuration(opts.timeout)})`]
      : [];
    return {
      code: r.code,
      stdout: joinLines(stdout),
      stderr: joinLines([...stderr, ...timeoutNote]),
      signal: r.signal,
      timedOut: r.timedOut,
    };
  }

  /** Starts `cmd`, reporting lines as they arrive; abort `opts.signal` to stop it. */
  stream(cmd: Command, opts: StreamOptions): StreamHandle {
    const tails: Record<OutputStream, string[]> = { stdout: [], stderr: [] };
    const onLine = (line: string, s: OutputStream) => {
      const tail = tails[s];
      tail.push(line);
      if (tail.length > STREAM_TAIL_LINES) tail.shift();
      try {
        opts.onLine(line, s);
      } catch {
        // A failing consumer must not kill the reader.
      }
    };
    const spawned = spawnSupervised(cmd, { signal: opts.signal, onLine });
    const done = spawned.result.then((r) => ({
      code: r.code,
      stdout: joinLines(tails.stdout),
      stderr: joinLines(tails.stderr.length ? tails.stderr : r.stderr ? [r.stderr] : []),
      signal: r.signal,
      timedOut: false,
    }));
    return { done };
  }
}

function joinLines(lines: readonly string[]): string {
  return lines.length === 0 ? "" : lines.join("\n") + "\n";
}

/** The outcome of one task of {@linkcode runAll}. */
export type TaskOutcome<T> =
  | { readonly status: "fulfilled"; readonly value: T }
  | { readonly status: "rejected"; readonly reason: unknown }
  /** Still running (its signal was aborted) or never started when the overall timeout passed. */
  | { readonly status: "timedOut" };

/** Options of {@linkcode runAll}. */
export interface RunAllOptions {
  /** Overall limit; unfinished tasks are aborted and reported as timedOut, not awaited. */
  readonly timeout: Duration;
  /** At most this many tasks run at once. @default 16 */
  readonly concurrency?: number;
  /** Aborting stops everything like the timeout does. */
  readonly signal?: AbortSignal;
}

/**
 * Promise.allSettled for platform operations, bounded and timed: runs `tasks` with at most
 * `concurrency` in flight and returns by `timeout` at the latest. Each task gets an AbortSignal
 * that fires on the overall timeout; tasks pass it to `runner.run`, so their processes are killed
 * even though runAll does not wait for them.
 */
export function runAll<T>(
  tasks: readonly ((signal: AbortSignal) => Promise<T>)[],
  opts: RunAllOptions,
): Promise<TaskOutcome<T>[]> {
  const concurrency = opts.concurrency ?? 16;
  if (!(concurrency >= 1)) {
    throw new InvalidArgumentError(
      "concurrency",
      `Cannot run tasks as concurrency must be >= 1: ${concurrency}`,
    );
  }
  const outcomes: (TaskOutcome<T> | undefined)[] = tasks.map(() => undefined);
  const abort = new AbortController();
  let next = 0;
  let finished = false;
  return new Promise((resolve) => {
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onOuterAbort);
      abort.abort(new DOMException("runAll timed out", "TimeoutError"));
      resolve(outcomes.map((o) => o ?? { status: "timedOut" }));
    };
    const onOuterAbort = () => finish();
    const timer = setTimeout(finish, opts.timeout);
    if (opts.signal?.aborted) return finish();
    opts.signal?.addEventListener("abort", onOuterAbort, { once: true });
    let running = 0;
    const launch = () => {
      while (!finished && running < concurrency && next < tasks.length) {
        const index = next++;
        const task = tasks[index]!;
        running++;
        let promise: Promise<T>;
        try {
          promise = task(abort.signal);
        } catch (err) {
          promise = Promise.reject(err);
        }
        promise.then(
          (value) => {
            if (!finished) outcomes[index] = { status: "fulfilled", value };
          },
          (reason) => {
            if (!finished) outcomes[index] = { status: "rejected", reason };
          },
        ).finally(() => {
          running--;
          if (finished) return;
          if (next >= tasks.length && running === 0) finish();
          else launch();
        });
      }
    };
    if (tasks.length === 0) return finish();
    launch();
  });
}
