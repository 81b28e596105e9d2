/**
 * The worker's per-attempt directory work alone (#20): `deno run -A bench/worker_dirs_bench.ts [N]`
 * runs N attempts (default 4000) through {@linkcode AttemptDirs} (make, then prune 60 attempts
 * later, as a burst does) and N new jobs through {@linkcode JobOutputs} (acquire, then release 60
 * jobs later), each as its own task user when root, and prints the CPU per attempt and per job of
 * this process (user and kernel). The spare pools are filled first, as a worker does at start.
 * @module
 */
import process from "node:process";
import { AttemptDirs } from "../src/worker/attempt_dirs.ts";
import { JobOutputs } from "../src/worker/outputs.ts";

const N = Number(Deno.args[0] ?? 4000);
/** Attempts (and jobs) running at once: a directory is pruned (released) this many later. */
const RUNNING = 60;
const WARMUP = 500;
const isRoot = Deno.build.os === "linux" && Deno.uid() === 0;
const owner = isRoot ? { uid: 0, gid: 0 } : undefined;
/** Task users as the pool hands them out: a new uid per attempt. */
let nextUid = 300_000;
const taskUser = () => isRoot ? { uid: nextUid, gid: nextUid++ } : undefined;

/** CPU of this process during `fn`, in µs per `n`. */
async function cpuPer(n: number, fn: () => Promise<void> | void): Promise<string> {
  const start = process.cpuUsage();
  await fn();
  const used = process.cpuUsage(start);
  const per = (us: number) => (us / n).toFixed(1);
  return `${per(used.user + used.system)} µs (user ${per(used.user)}, kernel ${per(used.system)})`;
}

const root = await Deno.makeTempDir({ prefix: "iris-dirs-bench-" });
try {
  await Deno.mkdir(`${root}/tasks`, { mode: 0o711 });
  const dirs = new AttemptDirs(root, owner);
  await dirs.fill(64);
  const made: string[] = [];
  const attempts = (n: number) => {
    for (let i = 0; i < n; i++) {
      const dir = `${root}/tasks/attempt-${made.length}`;
      dirs.make(dir, taskUser());
      made.push(dir);
      if (made.length > RUNNING) dirs.release(made[made.length - RUNNING - 1]!);
    }
  };
  attempts(WARMUP);
  console.log(`attempt directory, make + prune: ${await cpuPer(N, () => attempts(N))}`);
  await dirs.drained();

  const outputs = new JobOutputs(`${root}/outputs`, undefined, undefined, owner);
  await outputs.fill(64);
  const held: string[] = [];
  let job = 0;
  const jobs = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const jobId = `/bench/job-${job++}`;
      await outputs.acquire(jobId, taskUser());
      held.push(jobId);
      if (held.length > RUNNING) await outputs.release(held.shift()!);
    }
  };
  await jobs(WARMUP);
  console.log(`job output directory, acquire + release: ${await cpuPer(N, () => jobs(N))}`);
} finally {
  await Deno.remove(root, { recursive: true });
}
