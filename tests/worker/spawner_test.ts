/**
 * The long-lived task spawner (src/worker/spawner.ts) and TaskProcess.launch through it: the
 * child's credentials, limits, cgroup, cwd and environment, output and exit statuses, spawn
 * failures worded as before, group kills, and the spawner dying under running tasks.
 * @module
 */
import assert from "node:assert/strict";
import {
  decodeWaitStatus,
  SPAWNER_ENV,
  type SpawnRequest,
  TaskSpawner,
} from "../../src/worker/spawner.ts";
import {
  type OutputLine,
  TaskProcess,
  type TaskProcessOptions,
} from "../../src/worker/task_runner.ts";
import { DEFAULT_TASK_PATH } from "../../src/worker/task_spec.ts";
import { ms, seconds, waitFor } from "../../src/time.ts";
import { removeCgroup, taskCgroup } from "../../src/worker/reaper.ts";
import { findUtil } from "../../src/worker/process_tree.ts";
import { liveSessionProcesses } from "./procs.ts";
import { commandTask, startHarness } from "./harness.ts";
import { TaskState } from "../../src/rpc/mod.ts";
import type { CommandRunner } from "../../src/command/mod.ts";
import {
  type NativeSpawner,
  nativeSpawner,
  nativeSpawnerCacheDirs,
} from "../../src/worker/spawner_native.ts";

const supported = TaskSpawner.supported();
const isRoot = Deno.uid() === 0;
type Kind = "perl" | "native";
const compiler = findUtil("cc") ?? findUtil("gcc") ?? findUtil("clang");
/** The native spawner, compiled (once) into this user's cache by the first test that uses it. */
const native: NativeSpawner | null = compiler
  ? nativeSpawner(nativeSpawnerCacheDirs("/tmp/iris-spawner-test-root"))
  : null;

/** A spawner of `kind` (the native one tried before Perl, as a worker does). */
function newSpawner(kind: Kind): Promise<TaskSpawner> {
  return Promise.resolve(new TaskSpawner(undefined, kind === "native" ? native : null));
}

async function launch(
  spawner: TaskSpawner,
  argv: string[],
  options: Partial<TaskProcessOptions> = {},
) {
  const lines: OutputLine[] = [];
  const proc = await TaskProcess.launch({
    argv,
    cwd: Deno.cwd(),
    env: { PATH: DEFAULT_TASK_PATH },
    sampleInterval: ms(50),
    onLine: (l) => lines.push(l),
    spawner,
    ...options,
  });
  const text = (stream: "stdout" | "stderr") =>
    lines.filter((l) => l.stream === stream).map((l) => l.text);
  return { proc, lines, text };
}

Deno.test("decodeWaitStatus() gives exit codes, and 128 + n for signal n", () => {
  assert.deepEqual(decodeWaitStatus(3 << 8), { code: 3, signal: null });
  assert.deepEqual(decodeWaitStatus(9), { code: 137, signal: "SIGKILL" });
  assert.deepEqual(decodeWaitStatus(15 | 0x80), { code: 143, signal: "SIGTERM" });
});

/** Runs every test below with the Perl spawner and with the native one (spawner_native.ts). */
function suite(kind: Kind) {
  Deno.test({
    name:
      `spawner (${kind}): the task runs as its user with no groups, no new privileges, its limits, cgroup, cwd and env`,
    ignore: !supported || (kind === "native" && !native),
    async fn() {
      const spawner = await newSpawner(kind);
      const dir = await Deno.makeTempDir({ prefix: "iris-spawner-" });
      try {
        await Deno.mkdir(`${dir}/cg`);
        await Deno.chmod(dir, 0o755);
        const user = isRoot ? { uid: 54321, gid: 54322, setpriv: "unused" } : undefined;
        const { proc, text } = await launch(spawner, [
          "sh",
          "-c",
          "grep -E '^(Uid|Gid|Groups|NoNewPrivs|CapPrm|CapEff|CapAmb):' /proc/self/status; " +
          "grep -E '^Max (processes|open files|file size) ' /proc/self/limits; pwd; env | sort; " +
          "echo sid=$(cut -d' ' -f6 /proc/self/stat) pid=$$",
        ], {
          cwd: dir,
          env: { PATH: DEFAULT_TASK_PATH, ODD: "a=b c" },
          user,
          limits: { processes: 300, openFiles: 200, fileBytes: 1 << 20 },
          cgroup: `${dir}/cg`,
        });
        assert.ok(proc.pid > 0);
        assert.equal(spawner.kind, kind, "the spawner of the kind under test started it");
        assert.equal(proc.joinsCgroup, true);
        const exit = await proc.exited;
        assert.equal(exit.exitCode, 0, exit.stderrTail.join("\n"));
        const out = text("stdout");
        const field = (name: string) =>
          out.find((l) => l.startsWith(name))?.split(/\s+/).slice(1).join(" ");
        if (isRoot) {
          assert.equal(field("Uid:"), "54321 54321 54321 54321");
          assert.equal(field("Gid:"), "54322 54322 54322 54322");
          assert.equal(field("Groups:"), "");
          assert.equal(field("NoNewPrivs:"), "1");
          // The exec dropped the capabilities it was made with (a program under /root still runs).
          for (const set of ["CapPrm:", "CapEff:", "CapAmb:"]) {
            assert.equal(field(set), "0000000000000000", set);
          }
        }
        const limit = (name: string) =>
          out.find((l) => l.startsWith(name))?.slice(name.length).trim().split(/\s+/).slice(0, 2);
        if (isRoot) assert.deepEqual(limit("Max processes"), ["300", "300"]);
        assert.deepEqual(limit("Max open files"), ["200", "200"]);
        assert.deepEqual(limit("Max file size"), ["1048576", "1048576"]);
        assert.ok(out.includes(dir));
        assert.ok(out.includes("ODD=a=b c"));
        // Nothing inherited: only what was given and what sh sets itself.
        assert.deepEqual(
          out.filter((l) => /^[A-Z_]+=/.test(l)).map((l) => l.split("=")[0]).sort(),
          ["ODD", "PATH", "PWD"],
        );
        assert.ok(out.includes(`sid=${proc.pid} pid=${proc.pid}`), out.join("\n"));
        assert.equal((await Deno.readTextFile(`${dir}/cg/cgroup.procs`)).trim(), "0");
      } finally {
        await spawner.close();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });

  Deno.test({
    name: `spawner (${kind}): output, exit codes and signals come through as from a plain spawn`,
    ignore: !supported || (kind === "native" && !native),
    async fn() {
      await using stack = new AsyncDisposableStack();
      const spawner = await newSpawner(kind);
      stack.defer(() => spawner.close());
      const a = await launch(spawner, [
        "sh",
        "-c",
        "echo one; echo two >&2; printf 'no newline'; exit 3",
      ]);
      const exitA = await a.proc.exited;
      assert.deepEqual([exitA.exitCode, exitA.signal], [3, ""]);
      assert.deepEqual(a.text("stdout"), ["one", "no newline"]);
      assert.deepEqual(exitA.stderrTail, ["two"]);
      const b = await launch(spawner, ["sh", "-c", "kill -SEGV $$"]);
      const exitB = await b.proc.exited;
      assert.deepEqual([exitB.exitCode, exitB.signal], [139, "SIGSEGV"]);
      // More than the spawner keeps in flight per stream: the pipe fills behind it, nothing is lost.
      const c = await launch(spawner, ["seq", "1", "100000"]);
      assert.equal((await c.proc.exited).exitCode, 0);
      assert.equal(c.text("stdout").length, 100000);
      assert.equal(c.text("stdout").at(-1), "100000");
    },
  });

  Deno.test({
    name:
      `spawner (${kind}): the task starts with SIGPIPE not ignored, nothing blocked, and a script without #! runs with sh`,
    ignore: !supported || (kind === "native" && !native),
    async fn() {
      await using stack = new AsyncDisposableStack();
      const spawner = await newSpawner(kind);
      stack.defer(() => spawner.close());
      // The spawner ignores SIGPIPE and handles SIGCHLD; the child resets them with raw syscalls.
      const a = await launch(spawner, ["grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"]);
      assert.equal((await a.proc.exited).exitCode, 0);
      const mask = (name: string) =>
        BigInt(`0x${a.text("stdout").find((l) => l.startsWith(name))?.split(/\s+/)[1]}`);
      assert.equal(mask("SigBlk:"), 0n);
      const SIGPIPE = 13n;
      assert.equal(mask("SigIgn:") & (1n << (SIGPIPE - 1n)), 0n, "SIGPIPE ignored");
      // execve(2) fails with ENOEXEC; execvp(3), as Deno's spawn and the wrapper chain, uses sh.
      const dir = await Deno.makeTempDir({ prefix: "iris-spawner-" });
      stack.defer(() => Deno.remove(dir, { recursive: true }));
      await Deno.writeTextFile(`${dir}/plain`, 'echo ran with "$1"\n', { mode: 0o755 });
      await Deno.chmod(`${dir}/plain`, 0o755);
      const b = await launch(spawner, [`${dir}/plain`, "an arg"]);
      const exitB = await b.proc.exited;
      assert.equal(exitB.exitCode, 0, exitB.stderrTail.join("\n"));
      assert.deepEqual(b.text("stdout"), ["ran with an arg"]);
    },
  });

  Deno.test({
    name: `spawner (${kind}): a task joins its cgroup even after it was removed and made again`,
    ignore: !supported || (kind === "native" && !native) || !isRoot,
    async fn() {
      const tag = `spawner-${Deno.pid}-${Date.now()}`;
      let cgroup = taskCgroup(tag);
      if (!cgroup) {
        console.log("skipped: no writable cgroup2 hierarchy");
        return;
      }
      const spawner = await newSpawner(kind);
      try {
        for (let round = 0; round < 2; round++) {
          // The spawner keeps the first one's cgroup.procs open: the second must not use it.
          if (round === 1) {
            removeCgroup(cgroup);
            cgroup = taskCgroup(tag)!;
          }
          const { proc, text } = await launch(spawner, ["cat", "/proc/self/cgroup"], { cgroup });
          assert.equal((await proc.exited).exitCode, 0);
          const line = text("stdout").find((l) => l.startsWith("0::"));
          assert.ok(line?.endsWith(`/iris-tasks-${tag}`), `round ${round}: ran in ${line}`);
        }
      } finally {
        await spawner.close();
        removeCgroup(cgroup);
      }
    },
  });

  Deno.test({
    name:
      `spawner (${kind}): a task is in its cgroup from its first instruction (frozen there before its setsid)`,
    ignore: !supported || (kind === "native" && !native) || !isRoot,
    async fn() {
      const tag = `spawner-frozen-${Deno.pid}-${Date.now()}`;
      const cgroup = taskCgroup(tag);
      if (!cgroup) {
        console.log("skipped: no writable cgroup2 hierarchy");
        return;
      }
      const spawner = await newSpawner(kind);
      try {
        await Deno.writeTextFile(`${cgroup}/cgroup.freeze`, "1");
        // Not awaited: the native spawner waits for its child's exec, which comes after the thaw.
        const spawned = spawner.spawn({
          program: "/bin/true",
          args: [],
          cwd: "/",
          env: { PATH: DEFAULT_TASK_PATH },
          limits: {},
          cgroup,
        });
        // Moved in by the child itself (fork, then a write to cgroup.procs), it would be there only
        // after its setsid; forked into the frozen cgroup, it never ran a single instruction.
        let pid = 0;
        await waitFor(
          () => {
            pid = Number(Deno.readTextFileSync(`${cgroup}/cgroup.procs`).split("\n")[0]);
            return pid > 0 &&
              Deno.readTextFileSync(`${cgroup}/cgroup.events`).includes("frozen 1");
          },
          { timeout: seconds(10), what: "the task frozen in its cgroup" },
        );
        const sid = Number(
          Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1]!.split(" ")[3],
        );
        assert.notEqual(sid, pid, "it ran up to its setsid outside the cgroup");
        await Deno.writeTextFile(`${cgroup}/cgroup.freeze`, "0");
        const child = await spawned;
        assert.ok(child);
        assert.equal(child.pid, pid);
        await Promise.all([child.stdout.cancel(), child.stderr.cancel()]);
        assert.equal((await child.status).code, 0);
      } finally {
        await Deno.writeTextFile(`${cgroup}/cgroup.freeze`, "0").catch(() => {});
        await spawner.close();
        removeCgroup(cgroup);
      }
    },
  });

  Deno.test({
    name:
      `spawner (${kind}): a missing program or cwd fails with the same message as a plain spawn`,
    ignore: !supported || (kind === "native" && !native),
    async fn() {
      const spawner = await newSpawner(kind);
      try {
        for (
          const [argv, cwd] of [[["/no/such/program"], Deno.cwd()], [
            ["true"],
            "/no/such/dir",
          ]] as const
        ) {
          const viaSpawner = await launch(spawner, [...argv], { cwd });
          const plain = TaskProcess.start({
            argv: [...argv],
            cwd,
            env: { PATH: DEFAULT_TASK_PATH },
          });
          const [s, p] = [await viaSpawner.proc.exited, await plain.exited];
          assert.ok(s.spawnError);
          assert.deepEqual([s.exitCode, s.spawnError], [p.exitCode, p.spawnError]);
        }
        // A program gone between its lookup and the exec: the exit says so as Deno's spawn would.
        const request = { args: [], cwd: "/", env: {}, limits: {} };
        const gone = await spawner.spawn({ ...request, program: "/no/such/program" });
        const status = await gone!.status;
        assert.ok(status.spawnError instanceof Deno.errors.NotFound);
        assert.match(status.spawnError.message, /No such file/);
      } finally {
        await spawner.close();
      }
    },
  });

  Deno.test({
    name: `spawner (${kind}): kill() ends the task's whole group, leaving no process`,
    ignore: !supported || (kind === "native" && !native),
    async fn() {
      const spawner = await newSpawner(kind);
      try {
        const { proc } = await launch(spawner, ["sh", "-c", "sleep 30 & sleep 30 & exec sleep 30"]);
        await waitFor(async () => (await liveSessionProcesses(proc.pid)).length >= 3, {
          timeout: seconds(5),
          what: "the task's children",
        });
        const exit = await proc.kill("test", { grace: ms(200) });
        assert.deepEqual([exit.exitCode, exit.signal, exit.killedBy], [143, "SIGTERM", "kill"]);
        assert.deepEqual(await liveSessionProcesses(proc.pid), []);
      } finally {
        await spawner.close();
      }
    },
  });

  Deno.test({
    name:
      `spawner (${kind}): when it dies its running tasks fail with the reason, and the next task still starts`,
    ignore: !supported || (kind === "native" && !native),
    async fn() {
      const spawner = await newSpawner(kind);
      try {
        const { proc } = await launch(spawner, ["sleep", "30"]);
        const first = spawner.pid;
        assert.ok(first);
        spawner.killForTest();
        const exit = await proc.exited;
        assert.equal(exit.killedBy, "lost");
        assert.match(exit.killReason ?? "", /task spawner exited \(signal SIGKILL\)/);
        assert.deepEqual(await liveSessionProcesses(proc.pid), []);
        const next = await launch(spawner, ["echo", "again"]);
        assert.equal((await next.proc.exited).exitCode, 0);
        assert.deepEqual(next.text("stdout"), ["again"]);
        assert.notEqual(spawner.pid, first);
      } finally {
        await spawner.close();
      }
    },
  });

  Deno.test({
    name:
      `spawner (${kind}): a burst of tasks each gets its own output and status; close() leaves no child`,
    ignore: !supported || (kind === "native" && !native),
    async fn() {
      const spawner = await newSpawner(kind);
      const runs = await Promise.all(
        Array.from(
          { length: 40 },
          (_, i) => launch(spawner, ["sh", "-c", `echo ${i}; exit ${i % 7}`]),
        ),
      );
      const exits = await Promise.all(runs.map((r) => r.proc.exited));
      exits.forEach((e, i) => {
        assert.equal(e.exitCode, i % 7);
        assert.deepEqual(runs[i]!.text("stdout"), [String(i)]);
      });
      const pid = spawner.pid!;
      await spawner.close();
      assert.equal(spawner.pid, undefined);
      assert.throws(() => Deno.kill(pid, "SIGCONT"), Deno.errors.NotFound);
    },
  });

  Deno.test({
    name: `spawner (${kind}): close() with a task still running kills it and returns`,
    ignore: !supported || (kind === "native" && !native),
    async fn() {
      const spawner = await newSpawner(kind);
      const child = await spawner.spawn({
        program: "/bin/sleep",
        args: ["30"],
        cwd: "/",
        env: { PATH: DEFAULT_TASK_PATH },
        limits: {},
      });
      assert.ok(child);
      const pid = spawner.pid!;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const outcome = await Promise.race([
        spawner.close().then(() => "closed"),
        new Promise((resolve) => timer = setTimeout(() => resolve("hung"), seconds(10))),
      ]).finally(() => clearTimeout(timer));
      if (outcome === "hung") spawner.killForTest();
      assert.equal(outcome, "closed");
      assert.throws(() => Deno.kill(pid, "SIGCONT"), Deno.errors.NotFound);
      assert.throws(() => Deno.kill(child.pid, "SIGCONT"), Deno.errors.NotFound);
      await Promise.all([child.stdout.cancel(), child.stderr.cancel()]);
      assert.equal((await child.status).signal, "SIGKILL");
    },
  });

  Deno.test({
    name:
      `spawner (${kind}): a task user runs a program under a root-only directory, as with setpriv`,
    ignore: !supported || (kind === "native" && !native) || !isRoot,
    async fn() {
      await using stack = new AsyncDisposableStack();
      const dir = await Deno.makeTempDir({ prefix: "iris-spawner-private-" });
      stack.defer(() => Deno.remove(dir, { recursive: true }));
      await Deno.chmod(dir, 0o700);
      await Deno.copyFile("/bin/echo", `${dir}/echo`);
      await Deno.chmod(`${dir}/echo`, 0o755);
      const spawner = await newSpawner(kind);
      stack.defer(() => spawner.close());
      const { proc, text } = await launch(spawner, [`${dir}/echo`, "ran"], {
        cwd: "/",
        user: { uid: 54321, gid: 54322, setpriv: "unused" },
      });
      const exit = await proc.exited;
      assert.equal(exit.exitCode, 0, exit.stderrTail.join("\n"));
      assert.ok(spawner.pid, "the task went through the spawner");
      assert.deepEqual(text("stdout"), ["ran"]);
    },
  });

  Deno.test({
    name:
      `spawner (${kind}): a NUL inside an argument or the environment is left to the usual path`,
    ignore: !supported || (kind === "native" && !native),
    async fn() {
      const spawner = await newSpawner(kind);
      try {
        const request: SpawnRequest = {
          program: "/bin/echo",
          args: ["a"],
          cwd: "/",
          env: { PATH: DEFAULT_TASK_PATH },
          limits: {},
        };
        for (
          const odd of [
            { ...request, args: ["a\0b"] },
            { ...request, env: { PATH: DEFAULT_TASK_PATH, X: "1\0" } },
            { ...request, env: { PATH: DEFAULT_TASK_PATH, ["Y\0"]: "1" } },
            { ...request, cwd: "/\0tmp" },
          ] as SpawnRequest[]
        ) assert.equal(await spawner.spawn(odd), undefined, JSON.stringify(odd));
        // The spawner still starts the next task, and ids stayed in step with it.
        const next = await spawner.spawn(request);
        assert.ok(next);
        const [out] = await Promise.all([new Response(next.stdout).text(), next.stderr.cancel()]);
        assert.equal(out, "a\n");
        assert.deepEqual(await next.status, { code: 0, signal: null, spawnError: undefined });
      } finally {
        await spawner.close();
      }
    },
  });

  Deno.test({
    name:
      `spawner (${kind}): an argv or environment past the kernel's limits fails as a plain spawn's does, and one near them runs`,
    ignore: !supported || (kind === "native" && !native),
    async fn() {
      const spawner = await newSpawner(kind);
      try {
        const strings = (n: number) => Array.from({ length: n }, () => "x".repeat(1000));
        const near = await launch(spawner, ["true", ...strings(1800)]);
        assert.equal((await near.proc.exited).exitCode, 0);
        for (
          const [argv, env] of [
            [["true", ...strings(3000)], {}],
            [["echo", "y".repeat(200_000)], {}], // one string past 128 KiB
            [["true"], Object.fromEntries(strings(3000).map((v, i) => [`V${i}`, v]))],
          ] as const
        ) {
          const options = { env: { PATH: DEFAULT_TASK_PATH, ...env } };
          const viaSpawner = await launch(spawner, [...argv], options);
          const plain = TaskProcess.start({ argv: [...argv], cwd: Deno.cwd(), ...options });
          const [s, p] = [await viaSpawner.proc.exited, await plain.exited];
          assert.match(s.spawnError ?? "", /Argument list too long \(os error 7\)/);
          assert.deepEqual([s.exitCode, s.spawnError], [p.exitCode, p.spawnError]);
        }
        // The spawner is still the one that started, and starts the next task.
        const next = await launch(spawner, ["echo", "again"]);
        assert.equal((await next.proc.exited).exitCode, 0);
        assert.deepEqual(next.text("stdout"), ["again"]);
      } finally {
        await spawner.close();
      }
    },
  });

  Deno.test({
    name: `spawner (${kind}): 500 tasks started at once are all reaped, each with its own status`,
    ignore: !supported || (kind === "native" && !native),
    async fn() {
      const spawner = await newSpawner(kind);
      try {
        const runs = await Promise.all(
          Array.from({ length: 500 }, (_, i) => launch(spawner, ["sh", "-c", `exit ${i % 5}`])),
        );
        const exits = await Promise.all(runs.map((r) => r.proc.exited));
        assert.deepEqual(exits.map((e) => e.exitCode), exits.map((_, i) => i % 5));
        for (const run of runs) assert.deepEqual(await liveSessionProcesses(run.proc.pid), []);
      } finally {
        await spawner.close();
      }
    },
  });
}

for (const kind of ["perl", "native"] as const) suite(kind);

Deno.test({
  name: "spawner: IRIS_TASK_SPAWNER=0 turns it off",
  ignore: !supported,
  fn() {
    Deno.env.set(SPAWNER_ENV, "0");
    try {
      assert.equal(TaskSpawner.supported(), false);
    } finally {
      Deno.env.delete(SPAWNER_ENV);
    }
    assert.equal(TaskSpawner.supported(), true);
  },
});

Deno.test({
  name: "spawner: one that cannot start (a failed probe) leaves tasks to the usual path",
  ignore: !supported,
  async fn() {
    const broken = new TaskSpawner("/bin/false"); // exits before its first record
    try {
      const request = { program: "/bin/true", args: [], cwd: "/", env: {}, limits: {} };
      assert.equal(await broken.spawn(request), undefined);
      const { proc, text } = await launch(broken, ["echo", "still runs"]);
      assert.equal((await proc.exited).exitCode, 0);
      assert.deepEqual(text("stdout"), ["still runs"]);
      assert.equal(broken.pid, undefined);
    } finally {
      await broken.close();
    }
  },
});

Deno.test({
  name: "spawner: a task gets no descriptor beyond 0-2, not even one the worker inherited",
  ignore: !supported,
  async fn() {
    await using stack = new AsyncDisposableStack();
    const dir = await Deno.makeTempDir({ prefix: "iris-spawner-fds-" });
    stack.defer(() => Deno.remove(dir, { recursive: true }));
    // A perl that starts with fd 9 open without close-on-exec, as a worker started from a shell
    // holding one would have it.
    const perl = findUtil("perl")!;
    const wrapper = `${dir}/perl`;
    await Deno.writeTextFile(wrapper, `#!/bin/sh\nexec 9</dev/null\nexec ${perl} "$@"\n`);
    await Deno.chmod(wrapper, 0o755);
    const spawner = new TaskSpawner(wrapper);
    stack.defer(() => spawner.close());
    const { proc, text } = await launch(spawner, ["sh", "-c", "ls /proc/$$/fd"]);
    assert.equal((await proc.exited).exitCode, 0);
    assert.ok(spawner.pid, "the task went through the spawner");
    assert.deepEqual(text("stdout").sort(), ["0", "1", "2"]);
  },
});

/** The parent of a process (the spawner, for a task it started). */
function parentOf(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

Deno.test({
  name:
    "worker: a spawner killed under running tasks: they end, are reported (WORKER_FAILED) with the reason, and a new spawner starts the next",
  ignore: !supported,
  async fn() {
    await using h = await startHarness();
    const ids = ["/u/lost/0", "/u/lost/1", "/u/lost/2"];
    await h.client.runTasks({ attempts: ids.map((id) => commandTask(id, ["sleep", "30"])) });
    for (const id of ids) await h.fake.waitForState(id, TaskState.RUNNING);
    const pids = (await h.client.listTasks({})).tasks.map((t) => t.pid);
    const spawners = new Set(pids.map(parentOf));
    assert.equal(spawners.size, 1, "one spawner started them all");
    const [first] = spawners;
    assert.ok(first && first !== Deno.pid, "not the worker itself");
    Deno.kill(first, "SIGKILL");
    for (const id of ids) {
      const end = await h.fake.waitForState(id, TaskState.WORKER_FAILED, seconds(10));
      assert.match(end.error, /task spawner exited \(signal SIGKILL\)/);
    }
    await h.client.runTask(commandTask("/u/after/0", ["echo", "again"]));
    await h.fake.waitForState("/u/after/0", TaskState.SUCCEEDED, seconds(10));
    assert.deepEqual(
      h.fake.logsOf("/u/after/0").filter((l) => l.stream === "stdout").map((l) => l.text),
      ["again"],
    );
    await h.client.runTask(commandTask("/u/after/1", ["sleep", "30"]));
    await h.fake.waitForState("/u/after/1", TaskState.RUNNING);
    const { task } = await h.client.getTaskStatus({ taskId: "/u/after/1" });
    const second = parentOf(task!.pid);
    assert.ok(second !== first && second !== Deno.pid, "a new spawner started it");
    await h.client.killTask({ taskId: "/u/after/1", attemptId: 0, reason: "done" });
    await h.fake.waitForState("/u/after/1", TaskState.KILLED);
  },
});

Deno.test({
  name: "native spawner: tasks go through it, and a second worker finds it compiled",
  ignore: !supported || !native,
  async fn() {
    const spawner = new TaskSpawner(undefined, native);
    try {
      const { proc, text } = await launch(spawner, ["echo", "native"]);
      assert.equal((await proc.exited).exitCode, 0);
      assert.deepEqual(text("stdout"), ["native"]);
      assert.equal(spawner.kind, "native");
      const binary = (await native!.binary())!;
      const before = (await Deno.stat(binary)).mtime;
      const again = nativeSpawner(nativeSpawnerCacheDirs("/tmp/iris-spawner-test-root"));
      assert.equal(await again.binary(), binary);
      assert.deepEqual((await Deno.stat(binary)).mtime, before, "not compiled again");
    } finally {
      await spawner.close();
    }
  },
});

Deno.test({
  name: "native spawner: a cache directory others may write is passed over for the next one",
  ignore: !supported || !native,
  async fn() {
    await using stack = new AsyncDisposableStack();
    const dir = await Deno.makeTempDir({ prefix: "iris-spawner-cache-" });
    stack.defer(() => Deno.remove(dir, { recursive: true }));
    await Deno.mkdir(`${dir}/open`);
    await Deno.chmod(`${dir}/open`, 0o777);
    const log: string[] = [];
    const binary = await nativeSpawner([`${dir}/open`, `${dir}/own`], (l) => log.push(l)).binary();
    assert.match(log[0] ?? "", /not used from .*\/open: .*only it may write/);
    assert.match(log[1] ?? "", /compiled the native task spawner into .*\/own\//);
    assert.ok(binary?.startsWith(`${dir}/own/iris-task-spawner-`), String(binary));
    assert.deepEqual([...Deno.readDirSync(`${dir}/open`)], [], "nothing left in the open one");
    assert.equal((await Deno.stat(`${dir}/own`)).mode! & 0o777, 0o700);
    assert.equal(await nativeSpawner([`${dir}/open`]).binary(), null);
    // Under a directory others may write (not sticky), the cache could be swapped: refused; under
    // a sticky one (as /tmp), others cannot move it.
    await Deno.mkdir(`${dir}/loose`);
    await Deno.chmod(`${dir}/loose`, 0o777);
    const loose: string[] = [];
    assert.equal(await nativeSpawner([`${dir}/loose/cache`], (l) => loose.push(l)).binary(), null);
    assert.match(loose.join("\n"), /loose: others may write it/);
    await Deno.mkdir(`${dir}/sticky`);
    await Deno.chmod(`${dir}/sticky`, 0o1777);
    assert.ok(await nativeSpawner([`${dir}/sticky/cache`]).binary());
  },
});

Deno.test({
  name:
    "native spawner: one that does not start leaves tasks to Perl; both failing, to the usual path",
  ignore: !supported,
  async fn() {
    const failing: NativeSpawner = { binary: () => Promise.resolve("/bin/false") };
    const spawner = new TaskSpawner(undefined, failing);
    try {
      const { proc, text } = await launch(spawner, ["echo", "perl"]);
      assert.equal((await proc.exited).exitCode, 0);
      assert.deepEqual(text("stdout"), ["perl"]);
      assert.equal(spawner.kind, "perl");
    } finally {
      await spawner.close();
    }
    const broken = new TaskSpawner("/bin/false", failing);
    try {
      const request = { program: "/bin/true", args: [], cwd: "/", env: {}, limits: {} };
      assert.equal(await broken.spawn(request), undefined);
      assert.equal(broken.kind, undefined);
    } finally {
      await broken.close();
    }
  },
});

Deno.test({
  name: "native spawner: a task gets no descriptor beyond 0-2, not even one the worker inherited",
  ignore: !supported || !native,
  async fn() {
    await using stack = new AsyncDisposableStack();
    const dir = await Deno.makeTempDir({ prefix: "iris-spawner-fds-" });
    stack.defer(() => Deno.remove(dir, { recursive: true }));
    const wrapper = `${dir}/spawner`;
    const binary = (await native!.binary())!;
    await Deno.writeTextFile(wrapper, `#!/bin/sh\nexec 9</dev/null\nexec ${binary} "$@"\n`);
    await Deno.chmod(wrapper, 0o755);
    const spawner = new TaskSpawner(null, { binary: () => Promise.resolve(wrapper) });
    stack.defer(() => spawner.close());
    const { proc, text } = await launch(spawner, ["sh", "-c", "ls /proc/$$/fd"]);
    assert.equal((await proc.exited).exitCode, 0);
    assert.equal(spawner.kind, "native");
    assert.deepEqual(text("stdout").sort(), ["0", "1", "2"]);
  },
});

Deno.test({
  name: "spawner: IRIS_TASK_SPAWNER=perl keeps the Perl spawner",
  ignore: !supported,
  fn() {
    assert.equal(TaskSpawner.nativeAllowed(), true);
    Deno.env.set(SPAWNER_ENV, "perl");
    try {
      assert.equal(TaskSpawner.nativeAllowed(), false);
      assert.equal(TaskSpawner.supported(), true);
    } finally {
      Deno.env.delete(SPAWNER_ENV);
    }
  },
});

Deno.test({
  name:
    "native spawner: a compile that fails is logged and leaves Perl; nothing half-written stays",
  ignore: !supported || !native,
  async fn() {
    await using stack = new AsyncDisposableStack();
    const dir = await Deno.makeTempDir({ prefix: "iris-spawner-cc-" });
    stack.defer(() => Deno.remove(dir, { recursive: true }));
    const log: string[] = [];
    const failing: CommandRunner = {
      run: () => Promise.resolve({ code: 1, stdout: "", stderr: "cc: boom", timedOut: false }),
      stream: () => {
        throw new Error("not used");
      },
    };
    const broken = nativeSpawner([`${dir}/cache`], (l) => log.push(l), failing);
    assert.equal(await broken.binary(), null);
    assert.match(log.join("\n"), /failed \(code 1\): cc: boom/);
    assert.deepEqual([...Deno.readDirSync(`${dir}/cache`)], [], "no temp source or binary left");
    const spawner = new TaskSpawner(undefined, broken);
    stack.defer(() => spawner.close());
    const { proc, text } = await launch(spawner, ["echo", "perl"]);
    assert.equal((await proc.exited).exitCode, 0);
    assert.deepEqual(text("stdout"), ["perl"]);
    assert.equal(spawner.kind, "perl");
  },
});
