/**
 * How an attempt's end is reported: the final task state, exit code, signal and error text for a
 * process exit. Pure; knows nothing about processes or RPC.
 * @module
 */
import { TaskState } from "../rpc/gen/iris/v1/types_pb.ts";
import type { TaskExit } from "./task_runner.ts";

/** Largest stderr tail quoted in a failure's error text. */
const MAX_TAIL_CHARS = 4096;

/** The final report of an attempt. */
export interface AttemptOutcome {
  state: TaskState;
  /** Empty on success. */
  error: string;
  exitCode?: number;
  signal?: string;
}

/** States an attempt ends in. */
export function isTerminalState(state: TaskState): boolean {
  return state === TaskState.SUCCEEDED || state === TaskState.FAILED ||
    state === TaskState.KILLED || state === TaskState.WORKER_FAILED;
}

/**
 * Classifies a process exit. An evicted task Pod → WORKER_FAILED (retried under the preemption
 * budget). Out of memory or another resource limit (disk, processes) → FAILED; timeout → KILLED; a kill the
 * worker was asked for → that kill's state and reason; exit 0 → SUCCEEDED; anything else → FAILED
 * with the code or signal and the last stderr lines.
 */
export function classifyExit(
  exit: TaskExit,
  kill?: { state: TaskState; reason: string },
): AttemptOutcome {
  const base = { exitCode: exit.exitCode, signal: exit.signal };
  if (exit.killedBy === "oom") {
    return { ...base, state: TaskState.FAILED, error: exit.killReason ?? "out of memory" };
  }
  if (exit.killedBy === "limit") {
    return {
      ...base,
      state: TaskState.FAILED,
      error: exit.killReason ?? "resource limit exceeded",
    };
  }
  if ((exit.killedBy === "evicted" || exit.killedBy === "lost") && !kill) {
    // The cluster took the task's Pod away (node pressure, preemption), or the worker's task
    // spawner died and took the task with it: not the task's fault.
    return { ...base, state: TaskState.WORKER_FAILED, error: exit.killReason ?? "evicted" };
  }
  if (exit.killedBy === "timeout") {
    return { ...base, state: TaskState.KILLED, error: exit.killReason ?? "timed out" };
  }
  if (kill) return { ...base, state: kill.state, error: kill.reason };
  // Started through the spawner, its program never ran: reported as a failed start.
  if (exit.spawnError) return { ...base, state: TaskState.FAILED, error: exit.spawnError };
  if (exit.exitCode === 0) return { ...base, state: TaskState.SUCCEEDED, error: "" };
  const how = exit.signal
    ? `killed by signal ${exit.signal} (exit code ${exit.exitCode})`
    : `exited with code ${exit.exitCode}`;
  let tail = exit.stderrTail.join("\n");
  if (tail.length > MAX_TAIL_CHARS) tail = "…" + tail.slice(-MAX_TAIL_CHARS);
  return {
    ...base,
    state: TaskState.FAILED,
    error: tail ? `${how}; last stderr lines:\n${tail}` : how,
  };
}
