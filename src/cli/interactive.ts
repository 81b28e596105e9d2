/**
 * The client end of an interactive session (`iris task exec -i`, `iris job run -i`): this
 * process's stdin goes to the remote program through ExecInput (in order, then end of input),
 * its output comes back as ExecInTaskResponse chunks. With a terminal, the local terminal is put
 * in raw mode (keys, Ctrl-C included, go to the remote program) and restored at the end, and
 * size changes (SIGWINCH) are sent along.
 * @module
 */
import type { ControllerClient, ExecInTaskResponse } from "../rpc/mod.ts";
import { type OptionSpec, type Parsed, UsageError } from "./args.ts";

/** `-i`, `-t`, `-T`: shared by `task exec` and `job run`. */
export const INTERACTIVE_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  interactive: {
    type: "boolean",
    short: "i",
    description: "Attach this terminal's stdin (a terminal too when stdin and stdout are one)",
  },
  tty: {
    type: "boolean",
    short: "t",
    description: "With -i: always give the program a terminal (a pty), like ssh -t",
  },
  "no-tty": {
    type: "boolean",
    short: "T",
    description: "With -i: never give a terminal; stdin is a pipe, stderr stays apart",
  },
};

/** What -i/-t/-T ask for: undefined when not interactive. */
export function interactiveFlags(
  p: Parsed,
): { tty: boolean; rows: number; cols: number } | undefined {
  const i = p.values.interactive === true;
  const t = p.values.tty === true;
  const noT = p.values["no-tty"] === true;
  if (t && noT) throw new UsageError("give either --tty (-t) or --no-tty (-T), not both");
  if (!i) {
    if (t || noT) throw new UsageError(`${t ? "--tty" : "--no-tty"} needs --interactive (-i)`);
    return undefined;
  }
  const local = Deno.stdin.isTerminal() && Deno.stdout.isTerminal();
  const tty = t || (!noT && local);
  const size = terminalSize();
  return { tty, rows: size.rows, cols: size.cols };
}

/** This terminal's size, or 0 x 0 (the remote default, 24 x 80) when there is none. */
function terminalSize(): { rows: number; cols: number } {
  try {
    const { columns, rows } = Deno.consoleSize();
    return { rows, cols: columns };
  } catch {
    return { rows: 0, cols: 0 };
  }
}

/** How a session ended. */
export interface SessionEnd {
  readonly exitCode: number;
  /** Why the remote side stopped it, or "". */
  readonly error: string;
  /** False when the stream ended without an exit message. */
  readonly finished: boolean;
}

/**
 * Runs a session: prints `output` (stdout bytes to stdout, stderr to stderr) and, from the
 * first message with a session id (or `sessionId` given up front), sends stdin to it.
 */
export async function runSession(options: {
  client: ControllerClient;
  output: AsyncIterable<ExecInTaskResponse>;
  sessionId?: string;
  tty: boolean;
  signal: AbortSignal;
}): Promise<SessionEnd> {
  const { client, tty } = options;
  const raw = tty && Deno.stdin.isTerminal();
  const stop = new AbortController();
  let pump: Promise<void> | undefined;
  const startInput = (sessionId: string) => {
    pump ??= sendInput(client, sessionId, raw, stop.signal);
  };
  if (options.sessionId) startInput(options.sessionId);
  if (raw) Deno.stdin.setRaw(true);
  try {
    for await (const m of options.output) {
      if (m.sessionId) startInput(m.sessionId);
      if (m.stdout.length) await writeAll(Deno.stdout, m.stdout);
      if (m.stderr.length) await writeAll(Deno.stderr, m.stderr);
      if (m.finished) return { exitCode: m.exitCode, error: m.error, finished: true };
    }
    return { exitCode: 1, error: "", finished: false };
  } finally {
    stop.abort();
    if (raw) Deno.stdin.setRaw(false);
  }
}

async function writeAll(w: { write(p: Uint8Array): Promise<number> }, data: Uint8Array) {
  let off = 0;
  while (off < data.length) off += await w.write(data.subarray(off));
}

/**
 * Sends stdin to the session in order, then end of input; and terminal size changes. Stops
 * when `signal` fires (the session ended) or a send fails (it ended remotely). A read pending
 * at the end is left to the process exit (stdin cannot be cancelled).
 */
async function sendInput(
  client: ControllerClient,
  sessionId: string,
  raw: boolean,
  signal: AbortSignal,
): Promise<void> {
  const callSignal = () => AbortSignal.any([signal, AbortSignal.timeout(30_000)]);
  let resizing = Promise.resolve();
  const onResize = () => {
    const size = terminalSize();
    resizing = resizing.then(() =>
      client.execInput({ sessionId, rows: size.rows, cols: size.cols }, { signal: callSignal() })
        .then(() => {}, () => {})
    );
  };
  if (raw) Deno.addSignalListener("SIGWINCH", onResize);
  const buf = new Uint8Array(16 * 1024);
  try {
    while (!signal.aborted) {
      const n = await Deno.stdin.read(buf);
      if (signal.aborted) return;
      if (n === null) {
        await client.execInput({ sessionId, eof: true }, { signal: callSignal() });
        return;
      }
      await client.execInput({ sessionId, data: buf.slice(0, n) }, { signal: callSignal() });
    }
  } catch {
    // The session ended (or the controller went away): the output side reports it.
  } finally {
    if (raw) Deno.removeSignalListener("SIGWINCH", onResize);
  }
}
