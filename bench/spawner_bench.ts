/**
 * The worker's task spawner alone (#20): `deno run -A bench/spawner_bench.ts [N] [PAR]` starts N
 * `/bin/true` (default 2000), PAR at once (default 8), through {@linkcode TaskSpawner} as the
 * worker does — as a task user and in a task cgroup when root — and prints the CPU per task of the
 * spawner and its children (what bench.ts counts as the tasks'), the spawner's own part, its page
 * faults, and this process's CPU (which reads the spawner's records). `--native` uses the native
 * spawner (src/worker/spawner_native.ts, compiled into this user's cache) instead of the Perl one.
 * @module
 */
import { TaskSpawner } from "../src/worker/spawner.ts";
import { nativeSpawner, nativeSpawnerCacheDirs } from "../src/worker/spawner_native.ts";
import { removeCgroup, taskCgroup } from "../src/worker/reaper.ts";

const NATIVE = Deno.args.includes("--native");
const [tasksArg, parallelArg] = Deno.args.filter((a) => a !== "--native");
const TASKS = Number(tasksArg ?? 2000);
const PARALLEL = Number(parallelArg ?? 8);
/** A uid and gid no account uses, as the worker's task user pool hands out. */
const TASK_USER = { uid: 61_234, gid: 61_234 };
const CLOCK_TICK_MS = 10;

/** CPU (own, and own + reaped children's) in ms and minor faults (same) from /proc/<pid>/stat. */
function usage(
  pid: number,
): { ownMs: number; allMs: number; ownFaults: number; allFaults: number } {
  const f = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1]!.split(" ").map(Number);
  const own = f[11]! + f[12]!;
  return {
    ownMs: own * CLOCK_TICK_MS,
    allMs: (own + f[13]! + f[14]!) * CLOCK_TICK_MS,
    ownFaults: f[7]!,
    allFaults: f[7]! + f[8]!,
  };
}

const isRoot = Deno.uid() === 0;
const cwd = await Deno.makeTempDir({ prefix: "iris-spawner-bench-" });
await Deno.chmod(cwd, 0o777);
const cgroup = isRoot ? taskCgroup(`bench-${Deno.pid}`) : undefined;
const env: Record<string, string> = { PATH: "/usr/bin:/bin", HOME: cwd, LANG: "C.UTF-8" };
for (let i = 0; i < 12; i++) env[`IRIS_BENCH_${i}`] = `value-${i}-${"x".repeat(20)}`;
const native = NATIVE ? nativeSpawner(nativeSpawnerCacheDirs(cwd)) : null;
const spawner = new TaskSpawner(undefined, native);
try {
  const runOne = async () => {
    const child = await spawner.spawn({
      program: "/bin/true",
      args: [],
      cwd,
      env,
      user: isRoot ? TASK_USER : undefined,
      limits: { processes: 4096, openFiles: 1024, fileBytes: 2 ** 30 },
      cgroup,
    });
    if (!child) throw new Error("the spawner is not available here");
    // Read to the end, as the task runner does.
    await Promise.all([
      child.stdout.pipeTo(new WritableStream()),
      child.stderr.pipeTo(new WritableStream()),
    ]);
    const status = await child.status;
    if (status.code !== 0) throw new Error(`/bin/true exited ${status.code}`);
  };
  await runOne(); // starts the spawner
  const pid = spawner.pid!;
  const before = usage(pid);
  const selfBefore = usage(Deno.pid);
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      while (next++ < TASKS) await runOne();
    }),
  );
  const wallMs = performance.now() - started;
  const after = usage(pid);
  const selfAfter = usage(Deno.pid);
  const perTask = (ms: number) => `${(ms / TASKS * 1000).toFixed(0)} µs`;
  console.log(
    `${spawner.kind} spawner, ${TASKS} tasks, ${PARALLEL} at once${
      isRoot ? ", as a task user" : ""
    }${cgroup ? ", in a cgroup" : ""}: spawner + children ${
      perTask(after.allMs - before.allMs)
    } CPU per task (spawner itself ${perTask(after.ownMs - before.ownMs)}, ${
      ((after.ownFaults - before.ownFaults) / TASKS).toFixed(1)
    } faults; children ${
      ((after.allFaults - after.ownFaults - before.allFaults + before.ownFaults) / TASKS).toFixed(1)
    } faults); this process ${perTask(selfAfter.ownMs - selfBefore.ownMs)}; wall ${
      perTask(wallMs)
    } per task`,
  );
} finally {
  await spawner.close();
  if (cgroup) removeCgroup(cgroup);
  await Deno.remove(cwd, { recursive: true });
}
