/**
 * Controller state benchmarks (`deno run -A bench/state_bench.ts [--tasks N] [--load-only]`),
 * I/O on a temp state dir with synchronous=FULL, no RPC: (1) a 10,000-replica job's completion rate next to
 * 10,000 single-task jobs' (the same fake workers finish every task at their next heartbeat), as
 * a ratio; (2) restart load time of N tasks (default 1,000,000, #20's goal: ≤ 3 s) in jobs of 100
 * tasks (10,000 jobs × 100 replicas), each task with one finished attempt (a row per task; tasks
 * still as submitted have none), and the heap the loaded table holds per task. The whole
 * controller's restart and RSS are `deno task bench --state` (bench/bench.ts). The in-process
 * harness is tests/_helpers/controller_harness.ts (shared with the big-job test).
 * @module
 */
import process from "node:process";
import { JobTable, noEffects } from "../src/controller/state.ts";
import { StateStore } from "../src/controller/store.ts";
import { TaskState } from "../src/rpc/mod.ts";
import { harness, spec } from "../tests/_helpers/controller_harness.ts";

/** Completions per second of `jobs` jobs of `replicas` tasks each. */
async function completionRate(dir: string, jobs: number, replicas: number): Promise<number> {
  await using h = harness(dir);
  for (let i = 0; i < jobs; i++) h.c.launchJob(spec("alice", `j${i}`, replicas), `r${i}`);
  const t0 = performance.now();
  let done = 0;
  while (done < jobs * replicas) done += h.round().completed;
  return done / ((performance.now() - t0) / 1000);
}

/** Replicas of each job of the restart load. */
const REPLICAS = 100;

/** Writes `n` tasks (jobs of 100, each task with one finished attempt). */
function writeStore(dir: string, n: number): number {
  const t = new JobTable();
  const store = StateStore.open(dir, { synchronous: "NORMAL" });
  for (let j = 0; j < n / REPLICAS; j++) {
    const { jobId } = t.submit(spec("alice", `j${j}`, REPLICAS), "", 1, noEffects());
    for (const id of t.job(jobId).taskIds) {
      const a = t.assign(id, "w1", 2);
      t.attemptEnded(t.task(id), a, { state: TaskState.SUCCEEDED, finishedAtMs: 3 }, noEffects());
    }
    if (j % 100 === 99) store.flush(t);
  }
  store.flush(t);
  store.close();
  return Deno.statSync(`${dir}/controller.sqlite3`).size / 2 ** 20;
}

/** Times a load of the store in `dir` (in a heap without the table that wrote it). */
function restartLoad(dir: string): { ms: number; cpuMs: number; heapPerTask: number } {
  const again = StateStore.open(dir);
  try {
    const heap0 = Deno.memoryUsage().heapUsed;
    const cpu0 = process.cpuUsage();
    const table = new JobTable();
    const stats = again.load(table);
    const cpu = process.cpuUsage(cpu0);
    const heapPerTask = (Deno.memoryUsage().heapUsed - heap0) / table.tasks.size;
    return { ms: stats.ms, cpuMs: (cpu.user + cpu.system) / 1000, heapPerTask };
  } finally {
    again.close();
  }
}

if (import.meta.main && Deno.args.includes("--load-child")) {
  console.log(JSON.stringify(restartLoad(Deno.args[Deno.args.indexOf("--load-child") + 1]!)));
} else if (import.meta.main) {
  const i = Deno.args.indexOf("--tasks");
  const tasks = i >= 0 ? Number(Deno.args[i + 1]) : 1_000_000;
  const dir = await Deno.makeTempDir({ prefix: "iris-state-bench-" });
  try {
    const skipRates = Deno.args.includes("--load-only");
    if (!skipRates) {
      const big = await completionRate(`${dir}/big`, 1, 10_000);
      const trivial = await completionRate(`${dir}/trivial`, 2_000, 1);
      console.log(
        `completions/s: one 10,000-replica job ${Math.round(big)}, 2,000 single-task jobs ${
          Math.round(trivial)
        }; ratio ${(big / trivial).toFixed(2)} (goal ≥ 1)`,
      );
    }
    const mib = writeStore(`${dir}/load`, tasks);
    const child = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL(import.meta.url).pathname, "--load-child", `${dir}/load`],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).output();
    if (!child.success) throw new Error(`load child exited ${child.code}`);
    const load = JSON.parse(new TextDecoder().decode(child.stdout).trim().split("\n").at(-1)!);
    console.log(
      `restart: ${tasks} tasks (${mib.toFixed(0)} MiB) loaded in ${
        (load.ms / 1000).toFixed(2)
      } s (CPU ${(load.cpuMs / 1000).toFixed(2)} s; goal ≤ 3 s for 1,000,000), ${
        load.heapPerTask.toFixed(0)
      } B/task of heap`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
