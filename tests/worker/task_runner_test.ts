/**
 * TaskProcess on real subprocesses: output lines, exit codes, group kill without leftovers,
 * timeout, memory limit, spawn failure.
 * @module
 */
import assert from "node:assert/strict";
import {
  type OutputLine,
  TaskProcess,
  type TaskProcessOptions,
} from "../../src/worker/task_runner.ts";
import { DEFAULT_TASK_PATH } from "../../src/worker/task_spec.ts";
import { resolveProgram } from "../../src/worker/process_tree.ts";
import { ms, seconds, waitFor } from "../../src/time.ts";
import { groupProcesses, liveGroupProcesses, liveSessionProcesses } from "./procs.ts";
import { TaskSpawner } from "../../src/worker/spawner.ts";

function start(argv: string[], options: Partial<TaskProcessOptions> = {}) {
  const lines: OutputLine[] = [];
  const proc = TaskProcess.start({
    argv,
    cwd: Deno.cwd(),
    env: { PATH: DEFAULT_TASK_PATH },
    sampleInterval: ms(50),
    onLine: (l) => lines.push(l),
    ...options,
  });
  return { proc, lines };
}

Deno.test("TaskProcess.start() streams stdout and stderr as timestamped lines, partial last line included", async () => {
  const before = Date.now();
  const { proc, lines } = start(["sh", "-c", "echo one; echo two >&2; printf 'no newline'"]);
  const exit = await proc.exited;
  assert.equal(exit.exitCode, 0);
  assert.equal(exit.signal, "");
  assert.deepEqual(
    lines.map((l) => [l.stream, l.text]).sort(),
    [["stderr", "two"], ["stdout", "no newline"], ["stdout", "one"]],
  );
  for (const l of lines) assert.ok(l.timestampMs >= before && l.timestampMs <= Date.now());
});

Deno.test("TaskProcess.start() cuts very long lines at 16 KiB with a marker", async () => {
  const { proc, lines } = start([
    "sh",
    "-c",
    "head -c 200000 /dev/zero | tr '\\0' a; echo; echo end",
  ]);
  await proc.exited;
  assert.deepEqual(lines.map((l) => l.text), [
    `${"a".repeat(16384)} … [${(200000 - 16384).toLocaleString("en-US")} bytes truncated]`,
    "end",
  ]);
});

Deno.test("TaskProcess.start() decodes only admitted lines; stderr still feeds the tail", async () => {
  let asked = 0;
  const { proc, lines } = start(["sh", "-c", "seq 1 100; seq 1 10 >&2; exit 2"], {
    admit: (stream) => {
      asked++;
      return stream === "stdout" && asked % 10 === 0;
    },
    stderrTailLines: 3,
  });
  const exit = await proc.exited;
  assert.equal(asked, 110);
  assert.equal(lines.length, 10);
  assert.ok(lines.every((l) => l.stream === "stdout"));
  assert.deepEqual(exit.stderrTail, ["8", "9", "10"]);
});

Deno.test("TaskProcess.start() reports a non-zero exit code with the stderr tail", async () => {
  const { proc } = start(["sh", "-c", "for i in $(seq 1 60); do echo line$i >&2; done; exit 3"], {
    stderrTailLines: 5,
  });
  const exit = await proc.exited;
  assert.equal(exit.exitCode, 3);
  assert.equal(exit.killedBy, undefined);
  assert.deepEqual(exit.stderrTail, ["line56", "line57", "line58", "line59", "line60"]);
});

Deno.test("TaskProcess.kill() ends the whole process group and leaves no process or zombie", async () => {
  const { proc } = start(["sh", "-c", "sleep 1000 & sleep 1000; wait"]);
  await waitFor(async () => (await groupProcesses(proc.pid)).length >= 3, {
    timeout: seconds(5),
    what: "sh and two sleeps",
  });
  const exit = await proc.kill("test kill", { grace: seconds(3) });
  assert.equal(exit.killedBy, "kill");
  assert.equal(exit.killReason, "test kill");
  assert.deepEqual(await groupProcesses(proc.pid), []);
});

Deno.test("TaskProcess.kill() escalates to SIGKILL when SIGTERM is ignored", async () => {
  const { proc } = start(["sh", "-c", "trap '' TERM; sleep 1000 & sleep 1000; wait"]);
  await waitFor(async () => (await groupProcesses(proc.pid)).length >= 3, {
    timeout: seconds(5),
    what: "sh and two sleeps",
  });
  const started = performance.now();
  const exit = await proc.kill("stubborn", { grace: ms(300) });
  assert.ok(performance.now() - started < 3000, "killed within the grace period plus a margin");
  assert.equal(exit.killedBy, "kill");
  assert.deepEqual(await groupProcesses(proc.pid), []);
});

Deno.test("TaskProcess leaves nothing of its session running after the leader exits on its own", async () => {
  // A background child that outlives the shell, and one that moved to its own process group
  // inside the session (as job-control shells do), which a group signal alone would miss.
  const perl = resolveProgram("perl", DEFAULT_TASK_PATH, "/");
  const escapee = perl ? "perl -e 'setpgrp(0, 0); sleep 1000' & " : "";
  const { proc } = start(["sh", "-c", `sleep 1000 & ${escapee}sleep 0.3; echo leader done`]);
  await waitFor(async () => (await liveSessionProcesses(proc.pid)).length >= (perl ? 3 : 2), {
    timeout: seconds(5),
    what: "the leftovers to start",
  });
  const exit = await proc.exited;
  assert.equal(exit.exitCode, 0);
  assert.deepEqual(await liveSessionProcesses(proc.pid), []);
});

Deno.test("TaskProcess.start() kills a task that runs past its timeout", async () => {
  const { proc } = start(["sh", "-c", "sleep 30"], { timeout: ms(300) });
  const exit = await proc.exited;
  assert.equal(exit.killedBy, "timeout");
  assert.equal(exit.killReason, "timed out after 300ms");
  assert.deepEqual(await groupProcesses(proc.pid), []);
});

Deno.test("TaskProcess.start() kills a tree over its memory limit with exit 137", async () => {
  const { proc } = start(["sh", "-c", "x=$(head -c 50000000 /dev/zero | tr '\\0' a); sleep 5"], {
    memoryLimitBytes: 1024 * 1024,
  });
  const exit = await proc.exited;
  assert.equal(exit.killedBy, "oom");
  assert.equal(exit.exitCode, 137);
  assert.equal(exit.signal, "SIGKILL");
  assert.match(exit.killReason ?? "", /^out of memory: peak .+ exceeds limit 1 MiB$/);
  assert.ok(exit.peakMemoryBytes > 1024 * 1024);
  // No zombie check here, unlike the kill() tests: the shell forks `sleep` as soon as the
  // substitution's children die, racing the final group SIGKILL, and a child that dies with its
  // parent goes to init (dead; init reaps it). The worker cannot reap what it did not spawn.
  assert.deepEqual(await liveGroupProcesses(proc.pid), []);
});

Deno.test("TaskProcess.start() turns a missing command into exit 127 with a clear error", async () => {
  const { proc } = start(["iris-no-such-command-xyz", "arg"]);
  assert.equal(proc.pid, 0);
  const exit = await proc.exited;
  assert.equal(exit.exitCode, 127);
  assert.equal(
    exit.spawnError,
    `cannot start "iris-no-such-command-xyz": command not found on PATH ${DEFAULT_TASK_PATH}`,
  );
});

Deno.test("TaskProcess.start() gives the task only the environment it is handed", async () => {
  Deno.env.set("IRIS_RUNNER_TEST_LEAK", "leaked");
  try {
    const { proc, lines } = start(["sh", "-c", "env"], {
      env: { PATH: DEFAULT_TASK_PATH, JOB_VAR: "x" },
    });
    await proc.exited;
    const env = lines.map((l) => l.text);
    assert.ok(env.includes("JOB_VAR=x"));
    assert.ok(!env.some((l) => l.startsWith("IRIS_RUNNER_TEST_LEAK")));
  } finally {
    Deno.env.delete("IRIS_RUNNER_TEST_LEAK");
  }
});

Deno.test({
  name:
    "TaskProcess.launch(): a spawner's child's output is pushed; a leftover holding the pipe is cut off",
  ignore: !TaskSpawner.supported(),
  async fn() {
    const spawner = new TaskSpawner();
    const pidFile = await Deno.makeTempFile();
    try {
      const lines: OutputLine[] = [];
      const proc = await TaskProcess.launch({
        argv: [
          "sh",
          "-c",
          `echo one; echo two >&2; setsid sh -c 'echo $$ > ${pidFile}; exec sleep 30' & echo three`,
        ],
        cwd: Deno.cwd(),
        env: { PATH: DEFAULT_TASK_PATH },
        sampleInterval: ms(50),
        onLine: (l) => lines.push(l),
        spawner,
      });
      const started = performance.now();
      const exit = await proc.exited;
      // The leftover left the session with the stdout pipe: the drain gives up after its 2 s.
      assert.ok(performance.now() - started < 10_000);
      assert.equal(exit.exitCode, 0);
      assert.deepEqual(exit.stderrTail, ["two"]);
      assert.deepEqual(lines.filter((l) => l.stream === "stdout").map((l) => l.text), [
        "one",
        "three",
      ]);
    } finally {
      const pid = Number((await Deno.readTextFile(pidFile)).trim());
      if (pid > 0) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
      await Deno.remove(pidFile);
      await spawner.close();
    }
  },
});

Deno.test("TaskProcess: tasks sampled on one shared timer each get their samples at their own pace", async () => {
  const counts = [0, 0, 0];
  const procs = counts.map((_, i) =>
    start(["sleep", i === 0 ? "0.05" : "0.6"], {
      // The slow one's first sample is due after the others' first ones.
      sampleInterval: ms(i === 2 ? 250 : 40),
      onSample: () => counts[i]!++,
    }).proc
  );
  await procs[0]!.exited; // its end leaves the others' samples due
  await Promise.all(procs.map((p) => p.exited));
  assert.ok(counts[0]! <= 1, `the short task: ${counts[0]} samples`);
  assert.ok(counts[1]! >= 5, `every 40 ms over 0.6 s: ${counts[1]} samples`);
  assert.ok(counts[2]! >= 1 && counts[2]! <= 3, `every 250 ms over 0.6 s: ${counts[2]} samples`);
});
