/**
 * Runs `deno run -A cli.ts …` as a real child process for end-to-end tests: collects its output
 * lines, waits for lines with deadlines, and stops it (SIGTERM, then SIGKILL) awaiting the exit.
 * @module
 */
import { type Duration, seconds, waitFor } from "../../src/time.ts";

const CLI = new URL("../../cli.ts", import.meta.url).pathname;

/** A running iris process. */
export interface IrisProcess extends AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  /** stdout and stderr lines so far, in arrival order. */
  readonly lines: string[];
  /** Resolves with the first match of `re` in a line (waits up to `timeout`). */
  waitForLine(re: RegExp, timeout?: Duration): Promise<RegExpMatchArray>;
  /** Exit status (after the process ends). */
  readonly status: Promise<Deno.CommandStatus>;
  /** SIGTERM (then SIGKILL after `grace`) and await exit. */
  stop(grace?: Duration): Promise<Deno.CommandStatus>;
}

/** Appends every line of `stream` to `lines` as it arrives (the last one even without "\n"). */
export async function pumpLines(
  stream: ReadableStream<Uint8Array>,
  lines: string[],
): Promise<void> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  }
  if (buf) lines.push(buf);
}

/** Starts `iris <args>`. */
export function spawnIris(
  args: readonly string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): IrisProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
    cwd: options.cwd,
    env: { RUST_BACKTRACE: "0", NO_COLOR: "1", ...options.env },
  }).spawn();
  const lines: string[] = [];
  const pumps = Promise.all([pumpLines(child.stdout, lines), pumpLines(child.stderr, lines)]);
  const status = child.status.then(async (s) => (await pumps, s));
  let exited = false;
  status.then(() => exited = true);
  const stop = async (grace: Duration = seconds(5)) => {
    if (!exited) {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
      }, grace);
      try {
        return await status;
      } finally {
        clearTimeout(timer);
      }
    }
    return await status;
  };
  return {
    child,
    pid: child.pid,
    lines,
    status,
    waitForLine: (re, timeout = seconds(30)) =>
      waitFor(() => {
        for (const l of lines) {
          const m = l.match(re);
          if (m) return m;
        }
        if (exited) {
          throw new Error(
            `iris ${args.join(" ")} exited before printing ${re}:\n${lines.join("\n")}`,
          );
        }
        return undefined;
      }, { timeout, what: `a line matching ${re} from iris ${args.join(" ")}` }),
    stop,
    [Symbol.asyncDispose]: async () => {
      await stop();
    },
  };
}

/** Runs `iris <args>` to completion; returns exit code and output. */
export async function runIris(
  args: readonly string[],
  options: { env?: Record<string, string>; timeout?: Duration } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdin: "null",
    env: { RUST_BACKTRACE: "0", NO_COLOR: "1", ...options.env },
    signal: AbortSignal.timeout(options.timeout ?? seconds(60)),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Processes (pid, pgid, state, args) currently alive, from `ps`. */
export async function listProcesses(): Promise<
  { pid: number; pgid: number; stat: string; args: string }[]
> {
  const out = await new Deno.Command("ps", {
    args: ["-eo", "pid=,pgid=,stat=,args="],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.trim()).map((l) => {
    const m = l.trim().match(/^(\d+)\s+(\d+)\s+(\S+)\s+(.*)$/)!;
    return { pid: Number(m[1]), pgid: Number(m[2]), stat: m[3]!, args: m[4]! };
  });
}
