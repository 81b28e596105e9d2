/**
 * ScriptedRunner: a CommandRunner that replays scripted outputs and records every call, plus
 * golden-file helpers for the recorded transcripts (`IRIS_UPDATE_GOLDENS=1` rewrites them).
 * @module
 */
import { strictEqual } from "node:assert/strict";
import type {
  Command,
  CommandResult,
  CommandRunner,
  RunOptions,
  StreamHandle,
  StreamOptions,
} from "../../src/command/command.ts";
import { describeSecretStdin, formatCommand } from "../../src/command/command.ts";
import type { Clock, Duration } from "../../src/time.ts";

/** What a scripted process does. */
export interface ScriptedReply {
  /** @default 0 */
  readonly code?: number;
  readonly stdout?: string;
  readonly stderr?: string;
  /** Runs this long (real time, or the runner's clock) before exiting. */
  readonly delay?: Duration;
  /** Never exits on its own: only a timeout or an abort ends it. */
  readonly hang?: boolean;
}

/** An argv prefix (`["gcloud", "compute", "tpus"]`) or a regex over the shell-quoted line. */
export type ArgvMatcher = readonly string[] | RegExp;

/** One scripted entry; the first matching entry with uses left answers. */
export interface ScriptEntry extends ScriptedReply {
  readonly match: ArgvMatcher;
  /** How many calls it answers. @default unlimited */
  readonly times?: number;
  /** Computes the reply from the call (stateful fakes); overrides the static fields. */
  readonly respond?: (cmd: Command) => ScriptedReply;
}

/** One recorded call. */
export interface RecordedCall {
  readonly kind: "run" | "stream";
  readonly cmd: Command;
  /** The shell-quoted argv. */
  readonly line: string;
}

function describeStdin(stdin: string): string {
  const comment = stdin.split("\n").find((l) => l.startsWith("# "));
  return comment ? ` (${comment})` : "";
}

function matches(m: ArgvMatcher, cmd: Command, line: string): boolean {
  if (m instanceof RegExp) return m.test(line);
  return m.every((w, i) => cmd.argv[i] === w);
}

/** Waits `delay` (or forever), stopping early on abort or timeout; on `clock` when given. */
function wait(
  reply: ScriptedReply,
  signal: AbortSignal | undefined,
  timeout: Duration | undefined,
  clock?: Clock,
): Promise<"done" | "aborted" | "timedOut"> {
  if (clock) return waitOn(clock, reply, signal, timeout);
  return new Promise((resolve) => {
    const timers: ReturnType<typeof setTimeout>[] = [];
    const finish = (how: "done" | "aborted" | "timedOut") => {
      timers.forEach(clearTimeout);
      signal?.removeEventListener("abort", onAbort);
      resolve(how);
    };
    const onAbort = () => finish("aborted");
    if (signal?.aborted) return finish("aborted");
    signal?.addEventListener("abort", onAbort, { once: true });
    if (!reply.hang) timers.push(setTimeout(() => finish("done"), reply.delay ?? 0));
    if (timeout !== undefined) timers.push(setTimeout(() => finish("timedOut"), timeout));
  });
}

/** {@linkcode wait} on a clock (a FakeClock in tests): the delay and timeout are clock sleeps. */
function waitOn(
  clock: Clock,
  reply: ScriptedReply,
  signal: AbortSignal | undefined,
  timeout: Duration | undefined,
): Promise<"done" | "aborted" | "timedOut"> {
  return new Promise((resolve) => {
    const stop = new AbortController();
    const finish = (how: "done" | "aborted" | "timedOut") => {
      if (stop.signal.aborted) return;
      stop.abort();
      signal?.removeEventListener("abort", onAbort);
      resolve(how);
    };
    const onAbort = () => finish("aborted");
    if (signal?.aborted) return finish("aborted");
    signal?.addEventListener("abort", onAbort, { once: true });
    const ignore = () => {};
    if (!reply.hang) {
      clock.sleep(reply.delay ?? (0 as Duration), stop.signal).then(() => finish("done"), ignore);
    }
    if (timeout !== undefined) {
      clock.sleep(timeout, stop.signal).then(() => finish("timedOut"), ignore);
    }
  });
}

/**
 * Replays `(argv prefix | regex) → {code, stdout, stderr, delay?, hang?}` entries and records
 * every call. Unmatched calls exit 127 and are listed in `unmatched`.
 */
export class ScriptedRunner implements CommandRunner {
  readonly calls: RecordedCall[] = [];
  readonly unmatched: string[] = [];
  readonly #entries: { entry: ScriptEntry; used: number }[] = [];
  #activeStreams = 0;

  readonly #clock?: Clock;

  /**
   * @param options.clock runs delays and timeouts on this clock (a FakeClock: they pass when the
   * test advances it). @default real time
   */
  constructor(entries: readonly ScriptEntry[] = [], options: { clock?: Clock } = {}) {
    for (const entry of entries) this.#entries.push({ entry, used: 0 });
    this.#clock = options.clock;
  }

  /** Adds an entry (checked after the earlier ones). */
  on(match: ArgvMatcher, reply: ScriptedReply = {}, times?: number): this {
    this.#entries.push({ entry: { ...reply, match, times }, used: 0 });
    return this;
  }

  /** Adds an entry whose reply is computed per call. */
  respond(match: ArgvMatcher, respond: (cmd: Command) => ScriptedReply, times?: number): this {
    this.#entries.push({ entry: { match, times, respond }, used: 0 });
    return this;
  }

  /** Forgets recorded calls (entries stay). */
  clearCalls(): void {
    this.calls.length = 0;
    this.unmatched.length = 0;
  }

  /** Streams started and not yet exited. */
  get activeStreams(): number {
    return this.#activeStreams;
  }

  /**
   * One line per call: `[stream] ` marks streams, `  < stdin (# comment)` calls given stdin (with
   * the script's first comment line, so bootstrap and teardown are told apart); a secret part of
   * stdin shows only as `<secret: N bytes redacted>`.
   */
  transcript(): string {
    return this.calls.map((c) => {
      const secret = describeSecretStdin(c.cmd);
      const stdin = c.cmd.stdin === undefined && secret === undefined
        ? ""
        : `  < ${secret ? `${secret} + ` : ""}stdin${describeStdin(c.cmd.stdin ?? "")}`;
      return `${c.kind === "stream" ? "[stream] " : ""}${c.line}${stdin}`;
    }).join("\n") + "\n";
  }

  #reply(kind: "run" | "stream", cmd: Command): ScriptedReply {
    const line = formatCommand(cmd);
    this.calls.push({ kind, cmd, line });
    const slot = this.#entries.find((s) =>
      (s.entry.times === undefined || s.used < s.entry.times) && matches(s.entry.match, cmd, line)
    );
    if (!slot) {
      this.unmatched.push(line);
      return { code: 127, stderr: `ScriptedRunner: no entry for: ${line}\n` };
    }
    slot.used++;
    return slot.entry.respond ? slot.entry.respond(cmd) : slot.entry;
  }

  async run(cmd: Command, opts: RunOptions): Promise<CommandResult> {
    if (!(opts.timeout > 0)) throw new Error("ScriptedRunner.run needs a positive timeout");
    opts.signal?.throwIfAborted();
    const reply = this.#reply("run", cmd);
    const how = await wait(reply, opts.signal, opts.timeout, this.#clock);
    if (how === "aborted") throw opts.signal?.reason ?? new DOMException("Aborted", "AbortError");
    if (how === "timedOut") {
      return {
        code: 143,
        stdout: "",
        stderr: reply.stderr ?? "",
        signal: "SIGTERM",
        timedOut: true,
      };
    }
    return {
      code: reply.code ?? 0,
      stdout: reply.stdout ?? "",
      stderr: reply.stderr ?? "",
      timedOut: false,
    };
  }

  stream(cmd: Command, opts: StreamOptions): StreamHandle {
    const reply = this.#reply("stream", cmd);
    this.#activeStreams++;
    const emit = (text: string | undefined, s: "stdout" | "stderr") => {
      for (const line of (text ?? "").split("\n").filter((l) => l !== "")) opts.onLine(line, s);
    };
    const done = (async () => {
      await Promise.resolve();
      emit(reply.stdout, "stdout");
      emit(reply.stderr, "stderr");
      const how = await wait(reply, opts.signal, undefined, this.#clock);
      this.#activeStreams--;
      const killed = how === "aborted";
      return {
        code: killed ? 143 : reply.code ?? 0,
        stdout: reply.stdout ?? "",
        stderr: reply.stderr ?? "",
        signal: killed ? "SIGTERM" : undefined,
        timedOut: false,
      };
    })();
    return { done };
  }
}

/** Path of a golden file: `tests/platform/golden/<name>.txt`. */
export function goldenPath(name: string): URL {
  return new URL(`../platform/golden/${name}.txt`, import.meta.url);
}

/**
 * Compares `actual` with the golden file `name`; with `IRIS_UPDATE_GOLDENS=1` rewrites it
 * instead.
 */
export async function assertGolden(name: string, actual: string): Promise<void> {
  const path = goldenPath(name);
  if (Deno.env.get("IRIS_UPDATE_GOLDENS") === "1") {
    await Deno.mkdir(new URL(".", path), { recursive: true });
    await Deno.writeTextFile(path, actual);
    return;
  }
  let expected: string;
  try {
    expected = await Deno.readTextFile(path);
  } catch (err) {
    throw new Error(
      `Golden ${path.pathname} is missing: run with IRIS_UPDATE_GOLDENS=1 to create it`,
      {
        cause: err,
      },
    );
  }
  strictEqual(
    actual,
    expected,
    `Transcript differs from golden ${name}.txt (IRIS_UPDATE_GOLDENS=1 rewrites it)`,
  );
}
