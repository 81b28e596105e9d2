/**
 * Controller state benchmarks (`deno run -A bench/state_bench.ts [--tasks N]`), I/O on a temp
 * state dir with synchronous=FULL, no RPC: (1) a 10,000-replica job's completion rate next to
 * 10,000 single-task jobs' (the same fake workers finish every task at their next heartbeat), as
 * a ratio; (2) restart load time of N tasks (default 1,000,000) in jobs of 10 tasks. The
 * in-process harness is tests/_helpers/controller_harness.ts (shared with the big-job test).
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

/** Writes `n` tasks (jobs of 10, each task with one finished attempt) and times a load. */
function restartLoad(dir: string, n: number): { ms: number; cpuMs: number; mib: number } {
  const t = new JobTable();
  const store = StateStore.open(dir, { synchronous: "NORMAL" });
  for (let j = 0; j < n / 10; j++) {
    const { jobId } = t.submit(spec("alice", `j${j}`, 10), "", 1, noEffects());
    for (const id of t.job(jobId).taskIds) {
      const a = t.assign(id, "w1", 2);
      t.attemptEnded(t.task(id), a, { state: TaskState.SUCCEEDED, finishedAtMs: 3 }, noEffects());
    }
    if (j % 1000 === 999) store.flush(t);
  }
  store.flush(t);
  store.close();
  const mib = Deno.statSync(`${dir}/controller.sqlite3`).size / 2 ** 20;
  const again = StateStore.open(dir);
  try {
    const cpu0 = process.cpuUsage();
    const stats = again.load(new JobTable());
    const cpu = process.cpuUsage(cpu0);
    return { ms: stats.ms, cpuMs: (cpu.user + cpu.system) / 1000, mib };
  } finally {
    again.close();
  }
}

if (import.meta.main) {
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
    const load = restartLoad(`${dir}/load`, tasks);
    console.log(
      `restart: ${tasks} tasks (${load.mib.toFixed(0)} MiB) loaded in ${
        (load.ms / 1000).toFixed(2)
      } s (CPU ${(load.cpuMs / 1000).toFixed(2)} s; goal ≤ 3 s for 1,000,000)`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
