/**
 * classifyExit(): which final state and error text a process exit becomes.
 * @module
 */
import assert from "node:assert/strict";
import { TaskState } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { classifyExit, isTerminalState } from "../../src/worker/outcome.ts";
import type { TaskExit } from "../../src/worker/task_runner.ts";

const exit = (e: Partial<TaskExit>): TaskExit => ({
  exitCode: 0,
  signal: "",
  peakMemoryBytes: 0,
  stderrTail: [],
  ...e,
});

Deno.test("classifyExit() maps exits, kills, timeouts and out-of-memory to final states", () => {
  assert.deepEqual(classifyExit(exit({})), {
    exitCode: 0,
    signal: "",
    state: TaskState.SUCCEEDED,
    error: "",
  });
  assert.equal(classifyExit(exit({ exitCode: 2 })).error, "exited with code 2");
  assert.equal(
    classifyExit(exit({ exitCode: 139, signal: "SIGSEGV", stderrTail: ["a", "b"] })).error,
    "killed by signal SIGSEGV (exit code 139); last stderr lines:\na\nb",
  );
  const oom = classifyExit(
    exit({ exitCode: 137, signal: "SIGKILL", killedBy: "oom", killReason: "out of memory: x" }),
  );
  assert.deepEqual([oom.state, oom.exitCode, oom.error], [
    TaskState.FAILED,
    137,
    "out of memory: x",
  ]);
  const limit = classifyExit(
    exit({ exitCode: 137, signal: "SIGKILL", killedBy: "limit", killReason: "disk limit: x" }),
  );
  assert.deepEqual([limit.state, limit.error], [TaskState.FAILED, "disk limit: x"]);
  const timeout = classifyExit(
    exit({ exitCode: 143, killedBy: "timeout", killReason: "timed out after 1s" }),
  );
  assert.deepEqual([timeout.state, timeout.error], [TaskState.KILLED, "timed out after 1s"]);
  const stopped = classifyExit(exit({ exitCode: 143, killedBy: "kill" }), {
    state: TaskState.WORKER_FAILED,
    reason: "worker stopped",
  });
  assert.deepEqual([stopped.state, stopped.error], [TaskState.WORKER_FAILED, "worker stopped"]);
});

Deno.test("classifyExit() quotes at most 4 KiB of stderr tail", () => {
  const error = classifyExit(exit({ exitCode: 1, stderrTail: ["x".repeat(10_000)] })).error;
  assert.ok(error.length < 4200 && error.endsWith("x"));
});

Deno.test("isTerminalState() is true only for final states", () => {
  assert.deepEqual(
    [
      TaskState.RUNNING,
      TaskState.BUILDING,
      TaskState.SUCCEEDED,
      TaskState.KILLED,
      TaskState.WORKER_FAILED,
    ].map(isTerminalState),
    [false, false, true, true, true],
  );
});
