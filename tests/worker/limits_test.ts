/**
 * Per-task resource limits on a real worker (issue #16): disk_bytes (a file past it is stopped by
 * the kernel; a directory past it is killed by the watcher; either way FAILED with the reason and
 * the attempt directory removed), the process count (RLIMIT_NPROC for a task user, the sampled
 * session count otherwise), open files (RLIMIT_NOFILE), and an environment as large as
 * validation accepts still starts. Figures: docs/security.md ("Resource limits").
 */
import { create } from "@bufbuild/protobuf";
import { TaskState } from "../../src/rpc/mod.ts";
import { JobSpecSchema } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { LIMITS, validateJobSpec } from "../../src/controller/validate.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { commandTask, startHarness } from "./harness.ts";

const MiB = 1024 * 1024;
const linux = Deno.build.os === "linux";
const isRoot = linux && Deno.uid() === 0;

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

for (const mode of ["auto", "off"] as const) {
  const users = mode === "auto" && isRoot;
  const label = `task users ${users ? "on" : "off"}`;

  Deno.test({
    name: `limits: disk_bytes stops a task filling its directory or one file (${label})`,
    ignore: !linux || (mode === "auto" && !isRoot),
    async fn() {
      await using h = await startHarness({ taskUserIsolation: mode });
      const resources = { diskBytes: 8 * MiB };
      // Many 1 MiB files in TMPDIR (inside the task directory), as fast as it can.
      const many = "/lim/many/0";
      await h.client.runTask(commandTask(many, [
        "sh",
        "-c",
        'i=0; while :; do head -c 1048576 /dev/zero > "$TMPDIR/f$i" || exit 9; i=$((i+1)); done',
      ], { resources }));
      // One growing file: RLIMIT_FSIZE stops it at the limit.
      const one = "/lim/one/0";
      await h.client.runTask(commandTask(one, [
        "sh",
        "-c",
        "head -c 1073741824 /dev/zero > big; wc -c < big",
      ], { resources }));
      for (const id of [many, one]) {
        const failed = await h.fake.waitForState(id, TaskState.FAILED, seconds(20));
        assertMatch(failed.error, /^disk limit: /, failed.error);
        assertMatch(failed.error, /8 MiB/);
      }
      const manyOut = h.fake.logsOf(many).map((l) => l.text).join("\n");
      const killedAt = /the task directory holds ([\d.]+) (MiB|GiB)/.exec(
        h.fake.updatesOf(many).at(-1)!.error,
      );
      assert(killedAt, `${h.fake.updatesOf(many).at(-1)!.error}\n${manyOut}`);
      const usedMiB = Number(killedAt[1]) * (killedAt[2] === "GiB" ? 1024 : 1);
      // The kernel stopped the file at the limit; the shell went on, and still the task failed.
      const oneOut = h.fake.logsOf(one).filter((l) => l.stream === "stdout").map((l) => l.text);
      assertEquals(oneOut.map((l) => l.trim()), [String(8 * MiB)]);
      // Both attempt directories are gone at once, not after the debugging window.
      const dirs = await waitFor(
        () => {
          const left = [...Deno.readDirSync(`${h.worker.rootDir}/tasks`)];
          return left.length === 0 ? left : undefined;
        },
        { timeout: seconds(5), what: "the attempt directories removed" },
      );
      assertEquals(dirs.length, 0);
      console.log(
        `disk figure (${label}): limit 8 MiB; a writer of 1 MiB files killed at ${usedMiB} MiB; ` +
          "a single 1 GiB write stopped at 8 MiB",
      );
    },
  });

  Deno.test({
    name: `limits: a task cannot run more processes than its limit (${label})`,
    ignore: !linux || (mode === "auto" && !isRoot),
    async fn() {
      await using h = await startHarness({
        taskUserIsolation: mode,
        taskLimits: { processes: 20, openFiles: 256 },
      });
      const id = "/lim/forks/0";
      await h.client.runTask(commandTask(id, [
        "sh",
        "-c",
        "ulimit -n; i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; wait",
      ]));
      if (users) {
        // RLIMIT_NPROC: forks past 20 fail; the task goes on with what it has.
        await waitFor(
          () =>
            h.fake.logsOf(id).some((l) => l.stream === "stderr" && /fork|resource/i.test(l.text)),
          { timeout: seconds(20), what: "a failed fork" },
        );
        const counts = h.worker.tasks().map((t) => t.taskId);
        assert(counts.includes(id));
        await h.client.killTask({ taskId: id, attemptId: 0, graceMs: 0 });
        // dash may give up itself on a failed fork ("Cannot fork", exit 2) before the kill lands.
        const end = await waitFor(
          () =>
            h.fake.updatesOf(id).find((u) =>
              u.state === TaskState.KILLED ||
              (u.state === TaskState.FAILED && /Cannot fork/.test(u.error))
            ),
          { timeout: seconds(20), what: `${id} killed, or failed on a fork` },
        );
        assert(end.state === TaskState.KILLED || end.state === TaskState.FAILED);
      } else {
        const failed = await h.fake.waitForState(id, TaskState.FAILED, seconds(20));
        assertMatch(failed.error, /^process limit: \d+ processes exceed limit 20/);
      }
      const lines = h.fake.logsOf(id).filter((l) => l.stream === "stdout").map((l) => l.text);
      assertEquals(lines[0], "256", "RLIMIT_NOFILE");
      const peak = Math.max(
        0,
        ...h.fake.heartbeats.flatMap((hb) =>
          (hb.snapshot?.tasks ?? []).filter((t) => t.taskId === id).map((t) => t.processCount)
        ),
      );
      console.log(`process figure (${label}): limit 20, at most ${peak} processes sampled`);
      if (users) assert(peak <= 20, `peak ${peak}`);
    },
  });
}

Deno.test({
  name: "limits: the largest environment validation accepts still starts (exec's budget)",
  ignore: !linux,
  async fn() {
    // Variables of 120,000 bytes until the next one would pass LIMITS.maxExecBytes.
    const env: Record<string, string> = {};
    const value = "x".repeat(120_000);
    for (let i = 0;; i++) {
      const next = { ...env, [`BIG${i}`]: value };
      const spec = create(JobSpecSchema, {
        name: "env",
        entrypoint: { kind: { case: "command", value: { argv: ["sh", "-c", "echo ok"] } } },
        env: next,
      });
      try {
        validateJobSpec(spec);
      } catch {
        break;
      }
      Object.assign(env, next);
    }
    const total = Object.entries(env).reduce((n, [k, v]) => n + k.length + v.length + 2, 0);
    assert(total > LIMITS.maxExecBytes - 130_000, `only ${total} bytes accepted`);
    // Plus a value as long as a variable may be.
    env.LONGEST = "y".repeat(LIMITS.maxExecStringBytes - "LONGEST=".length - 1);
    const spec = create(JobSpecSchema, {
      name: "env",
      entrypoint: { kind: { case: "command", value: { argv: ["sh", "-c", "echo ok"] } } },
      env,
    });
    let refused = "";
    try {
      validateJobSpec(spec);
    } catch (err) {
      refused = String(err);
    }
    if (refused) delete env.LONGEST; // over the total budget with it: keep the rest
    await using h = await startHarness({ taskUserIsolation: "off" });
    const id = "/lim/env/0";
    await h.client.runTask(commandTask(id, ["sh", "-c", "echo ok"], { env }));
    const done = await h.fake.waitForState(id, TaskState.SUCCEEDED, seconds(20)).catch(() =>
      h.fake.updatesOf(id).at(-1)
    );
    assertEquals(done?.state, TaskState.SUCCEEDED, done?.error);
    assert(exists("/proc/self"));
  },
});

Deno.test({
  name: "limits: what a task user left in /tmp and /dev/shm is removed after the attempt",
  ignore: !isRoot,
  async fn() {
    await using h = await startHarness({ taskUserIsolation: "auto" });
    const id = "/lim/tmp/0";
    await h.client.runTask(commandTask(id, [
      "sh",
      "-c",
      "n=iris-left-$$; mkdir /tmp/$n && head -c 65536 /dev/zero > /tmp/$n/f && echo x > /dev/shm/$n && echo $n",
    ]));
    await h.fake.waitForState(id, TaskState.SUCCEEDED, seconds(20));
    const name = h.fake.logsOf(id).find((l) => l.stream === "stdout")!.text;
    try {
      await waitFor(() => !exists(`/tmp/${name}`) && !exists(`/dev/shm/${name}`), {
        timeout: seconds(5),
        what: `/tmp/${name} and /dev/shm/${name} removed`,
      });
    } finally {
      await Deno.remove(`/tmp/${name}`, { recursive: true }).catch(() => {});
      await Deno.remove(`/dev/shm/${name}`).catch(() => {});
    }
  },
});
