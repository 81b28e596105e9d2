/**
 * `iris task exec` on the worker: runs a command like a running task (its directory, environment,
 * user and rlimits, in a session of its own tagged for the reaper like the task), streaming its
 * output as it comes and then its exit code. The command's whole process group is killed at the
 * time limit or when the caller goes away, and always awaited.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type ExecInTaskResponse, ExecInTaskResponseSchema } from "../rpc/gen/iris/v1/types_pb.ts";
import { describeError } from "../errors.ts";
import type { Duration } from "../time.ts";
import { formatDuration } from "../format.ts";
import { type SpawnOptions, spawnSessionLeader } from "./process_tree.ts";
import { childSession, type Sessions, terminalArgv, type TerminalSize } from "./sessions.ts";

/** An interactive exec: stdin written through `sessions` as `id`, maybe under a terminal. */
export interface ExecInteractive {
  readonly sessions: Sessions;
  readonly id: string;
  /** Run under a terminal of this size; undefined: stdin is a pipe. */
  readonly terminal?: TerminalSize;
}

function killGroup(pid: number): void {
  for (const target of [-pid, pid]) {
    try {
      Deno.kill(target, "SIGKILL");
    } catch {
      // Gone already, or not a group leader.
    }
  }
}

/** Runs `argv` with `spec`; yields output chunks, then one finished message. */
export async function* execLikeTask(
  spec: SpawnOptions,
  argv: readonly string[],
  timeout: Duration | undefined,
  signal: AbortSignal,
  interactive?: ExecInteractive,
): AsyncGenerator<ExecInTaskResponse> {
  let child: Deno.ChildProcess;
  try {
    const full = interactive?.terminal ? terminalArgv(argv, interactive.terminal) : argv;
    child = spawnSessionLeader(full[0]!, full.slice(1), {
      ...spec,
      ...(interactive ? { stdin: "piped" } : {}),
    });
  } catch (err) {
    yield create(ExecInTaskResponseSchema, {
      finished: true,
      exitCode: 127,
      error: `cannot start ${argv[0]}: ${describeError(err)}`,
    });
    return;
  }
  const queue: ExecInTaskResponse[] = [];
  let wake: (() => void) | undefined;
  const push = (m: ExecInTaskResponse) => {
    queue.push(m);
    wake?.();
  };
  const pump = async (stream: ReadableStream<Uint8Array>, which: "stdout" | "stderr") => {
    for await (const chunk of stream) push(create(ExecInTaskResponseSchema, { [which]: chunk }));
  };
  let stopped = "";
  const stop = (why: string) => {
    stopped ||= why;
    killGroup(child.pid);
  };
  const timer = timeout === undefined
    ? undefined
    : setTimeout(() => stop(`stopped after ${formatDuration(timeout)} (the time limit)`), timeout);
  const onAbort = () => stop("the caller went away");
  signal.addEventListener("abort", onAbort);
  let done = false;
  const input = interactive && childSession(child, !!interactive.terminal);
  const session = input && interactive.sessions.add(interactive.id, input);
  if (interactive) push(create(ExecInTaskResponseSchema, { sessionId: interactive.id }));
  const finished = Promise.all([pump(child.stdout, "stdout"), pump(child.stderr, "stderr")])
    .then(() => child.status)
    .finally(() => {
      done = true;
      wake?.();
    });
  try {
    while (!done || queue.length) {
      if (queue.length === 0) {
        await new Promise<void>((resolve) => wake = resolve);
        wake = undefined;
        continue;
      }
      yield queue.shift()!;
    }
    const status = await finished;
    yield create(ExecInTaskResponseSchema, {
      finished: true,
      exitCode: status.code,
      error: stopped,
    });
  } finally {
    clearTimeout(timer);
    session?.[Symbol.dispose]();
    signal.removeEventListener("abort", onAbort);
    if (!done) stop("the caller went away");
    await finished.catch(() => {});
    await input?.end();
  }
}
