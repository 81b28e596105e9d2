/**
 * Interactive sessions on a worker (`iris task exec -i`, `iris job run -i`): a process whose
 * stdin the client writes through ExecInput, by session id. With a terminal, the program runs
 * under script(1) (util-linux), which gives it a pty of the asked size and relays the pipe;
 * a resize sets the pty's size (the kernel then sends SIGWINCH to its foreground group).
 * @module
 */
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../errors.ts";
import { findUtil } from "./process_tree.ts";

/** A terminal's size; 0 takes the default 24 x 80. */
export interface TerminalSize {
  readonly rows: number;
  readonly cols: number;
}

/** Input to one session. */
export interface Session {
  /** Writes to the program's stdin, in order. */
  write(data: Uint8Array): Promise<void>;
  /** Closes the program's stdin. */
  end(): Promise<void>;
  /** Sets the terminal's size (no-op without a terminal). */
  resize(size: TerminalSize): Promise<void>;
}

function quote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

function checkSize({ rows, cols }: TerminalSize): { rows: number; cols: number } {
  for (const [field, v] of [["rows", rows], ["cols", cols]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 10_000) {
      throw new InvalidArgumentError(field, `must be 0..10000 (got ${v})`);
    }
  }
  return { rows: rows || 24, cols: cols || 80 };
}

/**
 * `argv` wrapped to run under a terminal of `size`: `script -qfec "stty …; exec argv" /dev/null`.
 * @throws FailedPreconditionError when script(1) is not installed
 */
export function terminalArgv(argv: readonly string[], size: TerminalSize): string[] {
  const script = findUtil("script");
  if (!script) {
    throw new FailedPreconditionError(
      "this worker cannot give a terminal: script(1) (util-linux) is not installed; " +
        "run without a terminal (stdin only)",
    );
  }
  const { rows, cols } = checkSize(size);
  const command = `stty rows ${rows} cols ${cols} 2>/dev/null; exec ${argv.map(quote).join(" ")}`;
  // -e: script exits with the program's code; -f: output is flushed as it comes.
  return [script, "-qfec", command, "/dev/null"];
}

/** The pty of the program script(1) `scriptPid` runs, or undefined (gone, no /proc). */
async function ptyOf(scriptPid: number): Promise<string | undefined> {
  try {
    const children = (await Deno.readTextFile(`/proc/${scriptPid}/task/${scriptPid}/children`))
      .trim().split(/\s+/).filter(Boolean);
    for (const pid of children) {
      const tty = await Deno.readLink(`/proc/${pid}/fd/0`).catch(() => "");
      if (tty.startsWith("/dev/pts/")) return tty;
    }
  } catch {
    // Gone, or no /proc.
  }
  return undefined;
}

/** A session writing `child`'s stdin (spawned with stdin "piped"); `tty` when under script(1). */
export function childSession(child: Deno.ChildProcess, tty: boolean): Session {
  const writer = child.stdin.getWriter();
  let ended = false;
  return {
    async write(data) {
      if (ended) throw new FailedPreconditionError("the session's input is closed");
      await writer.write(data);
    },
    async end() {
      if (ended) return;
      ended = true;
      await writer.close().catch(() => {});
    },
    async resize(size) {
      if (!tty) return;
      const { rows, cols } = checkSize(size);
      const stty = findUtil("stty");
      const pty = await ptyOf(child.pid);
      if (!stty || !pty) return;
      await new Deno.Command(stty, {
        args: ["-F", pty, "rows", String(rows), "cols", String(cols)],
        stdin: "null",
        stdout: "null",
        stderr: "null",
        signal: AbortSignal.timeout(5000),
      }).output().catch(() => {});
    },
  };
}

/** The open sessions of a worker, by id. */
export class Sessions {
  readonly #sessions = new Map<string, Session>();

  /** Registers `session` as `id` until the returned handle is disposed. */
  add(id: string, session: Session): Disposable {
    this.#sessions.set(id, session);
    return { [Symbol.dispose]: () => this.#sessions.delete(id) };
  }

  /** Applies one ExecInput: resize, then data, then end of input. */
  async input(
    id: string,
    req: { data: Uint8Array; eof: boolean; rows: number; cols: number },
  ): Promise<void> {
    const session = this.#sessions.get(id);
    if (!session) throw new NotFoundError(`No interactive session ${id} on this worker (ended?)`);
    if (req.rows || req.cols) await session.resize({ rows: req.rows, cols: req.cols });
    if (req.data.length) await session.write(req.data);
    if (req.eof) await session.end();
  }
}
