/**
 * End-to-end benchmarks of Iris next to the floors of this machine (and, with `--peer slurm`,
 * next to a real Slurm run on the same machine). Goals G1–G5 and G8 of
 * docs/reference performance §5.
 *
 * Run: `deno task bench` (Iris only, ≈ 1–2 min) or `deno task bench --peer slurm` (adds the
 * Slurm peer, several minutes; needs root and Debian's package repository).
 * Prints a table and writes bench/results/latest.json (with `ratios` and `fleet`), whose README
 * table `deno task bench:readme` regenerates (bench/report.ts). `--fleet N[,N]` runs only the
 * fleet benchmark (bench/fleet_bench.ts) and replaces those sizes in latest.json's `fleet`;
 * `--state [jobs]` runs only the controller memory and restart figures (#20: 10,000 jobs × 100
 * replicas) and replaces those; `--fleet-sizes` and `--tasks-jobs` size the full run.
 *
 * The end-to-end figures (submit→running, 1000 trivial jobs) are taken twice: with the worker in
 * the controller's process, and with the worker in its own process (`iris worker serve`, as on a
 * real host; tasks run as their own users when root). The 1000 jobs run five times in each
 * placement, after one uncounted warm-up run (`throughput.warmup`: a fresh controller and worker
 * spend their first thousand jobs compiling), from one load generator process per placement, each
 * run right after its own spawn floor, and the run with the median share of its spawn ceiling
 * (cores ÷ spawn p50) is the figure (`ratios` in latest.json; every run under `throughput.runs`).
 * Latencies are compared with the floor taken at the start.
 * @module
 */
import { startController } from "../src/controller/server.ts";
import { startWorker } from "../src/worker/mod.ts";
import { IrisClient } from "../src/client/client.ts";
import { JobState, TaskState } from "../src/rpc/gen/iris/v1/types_pb.ts";
import { runSchedulerBench } from "./scheduler_bench.ts";
import { loadBenchMain } from "./load_bench.ts";
import { stalledBench } from "./stalled_bench.ts";
import { create } from "@bufbuild/protobuf";
import { JobSpecSchema } from "../src/rpc/gen/iris/v1/types_pb.ts";
import { StateStore } from "../src/controller/store.ts";
import { JobTable, noEffects } from "../src/controller/state.ts";
import { controllerClient } from "../src/rpc/client.ts";
import { GetControllerStatusResponseSchema } from "../src/rpc/gen/iris/v1/controller_pb.ts";
import { toBinary } from "@bufbuild/protobuf";
import { ms } from "../src/time.ts";
import { fleetBench, fleetChild, type FleetResult } from "./fleet_bench.ts";
import { renderReadmeSection } from "./report.ts";
import { forEachLine } from "../src/line_reader.ts";

const GiB = 2 ** 30;
const MiB = 2 ** 20;

// ---------------------------------------------------------------- helpers

function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i]!;
}

interface Dist {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

function dist(xs: readonly number[]): Dist {
  return {
    n: xs.length,
    p50: percentile(xs, 50),
    p99: percentile(xs, 99),
    max: percentile(xs, 100),
  };
}

const sleepMs = (n: number) => new Promise<void>((r) => setTimeout(r, n));

/** Runs `fn` for `items` with at most `limit` in flight. */
async function pool<T>(items: number, limit: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(items);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items) }, async () => {
      while (next < items) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

function log(msg: string) {
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);
}

// ---------------------------------------------------------------- floors

/** `a` as a multiple of `b`, e.g. "2.5×". */
const x = (a: number, b: number) => Number.isFinite(a / b) ? `${(a / b).toFixed(1)}×` : "n/a";

async function spawnFloor(n: number): Promise<number[]> {
  const cmd = new Deno.Command("/bin/true", { stdin: "null", stdout: "null", stderr: "null" });
  for (let i = 0; i < 10; i++) await cmd.output();
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await cmd.output();
    xs.push(performance.now() - t0);
  }
  return xs;
}

async function denoRunFloor(n: number): Promise<number[]> {
  const dir = await Deno.makeTempDir({ prefix: "iris-bench-" });
  const file = `${dir}/trivial.ts`;
  await Deno.writeTextFile(file, "const x: number = 1;\nif (x !== 1) console.log(x);\n");
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-config", file],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  });
  await cmd.output(); // warm the module cache
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await cmd.output();
    xs.push(performance.now() - t0);
  }
  await Deno.remove(dir, { recursive: true });
  return xs;
}

async function fetchFloor(n: number): Promise<{ get: number[]; post: number[] }> {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) =>
      req.method === "POST"
        ? new Response(await req.text(), { headers: { "content-type": "application/json" } })
        : new Response("ok"),
  );
  const url = `http://127.0.0.1:${server.addr.port}/`;
  const body = JSON.stringify({ payload: "x".repeat(180) }); // ≈ 200 B
  const get: number[] = [];
  const post: number[] = [];
  for (let i = 0; i < n + 50; i++) {
    let t0 = performance.now();
    await (await fetch(url)).text();
    if (i >= 50) get.push(performance.now() - t0);
    t0 = performance.now();
    await (await fetch(url, {
      method: "POST",
      body,
      headers: { "content-type": "application/json" },
    })).text();
    if (i >= 50) post.push(performance.now() - t0);
  }
  await server.shutdown();
  return { get, post };
}

// ---------------------------------------------------------------- Iris cluster

/** Where the bench's worker runs: in the controller's process, or in its own (as on a host). */
export type WorkerPlacement = "in-process" | "own-process";

const CLI = new URL("../cli.ts", import.meta.url).pathname;

/**
 * `iris worker serve` in its own process (tasks as their own users when root, as in production),
 * until disposed. With IRIS_BENCH_CPU_PROF=DIR the worker writes a V8 CPU profile there (and
 * the tput bench those of the controller and the clients); IRIS_BENCH_WORKER_V8_FLAGS (comma
 * separated) are given to its V8.
 */
function spawnWorkerProcess(
  url: string,
  rootDir: string,
): AsyncDisposable & { pid: number } {
  const prof = Deno.env.get("IRIS_BENCH_CPU_PROF");
  const v8Flags = Deno.env.get("IRIS_BENCH_WORKER_V8_FLAGS");
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      ...(prof
        ? ["--cpu-prof", `--cpu-prof-dir=${prof}`, "--cpu-prof-name=worker.cpuprofile"]
        : []),
      ...(v8Flags ? [`--v8-flags=${v8Flags}`] : []),
      CLI,
      "worker",
      "serve",
      "--controller",
      url,
      "--cpu",
      "64",
      "--memory",
      "64GiB",
      "--root-dir",
      rootDir,
      "-q",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
    env: { NO_COLOR: "1" },
  }).spawn();
  return {
    pid: child.pid,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      await child.status;
    },
  };
}

/**
 * CPU time (user + system) of process `pid`, in ms, or with `children` that of its reaped
 * children (for a worker: its tasks, wrappers included); NaN where /proc cannot tell.
 */
/** System (kernel) CPU time of a process: its syscalls (socket and file writes, fsyncs). */
function pidSysCpuMs(pid: number | "self"): number {
  try {
    return Number(Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1]!.split(" ")[12]) * 10;
  } catch {
    return NaN;
  }
}

function pidCpuMs(pid: number | "self", children = false): number {
  try {
    const f = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1]!.split(" ");
    return children ? (Number(f[13]) + Number(f[14])) * 10 : (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
}

/**
 * CPU time of the worker's task spawner (src/worker/spawner.ts), its own and its reaped
 * children's (the tasks it started), in ms: they reach the worker's reaped-children time only
 * when the spawner exits.
 */
function spawnerCpuMs(worker: number | "self"): number {
  const parent = worker === "self" ? Deno.pid : worker;
  let total = 0;
  for (const dirent of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(dirent.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${dirent.name}/stat`);
      const f = stat.split(") ")[1]!.split(" ");
      if (Number(f[1]) !== parent || !/\((perl|iris-task-spaw)/.test(stat)) continue;
      total += pidCpuMs(Number(dirent.name)) + pidCpuMs(Number(dirent.name), true);
    } catch {
      // Exited meanwhile.
    }
  }
  return total;
}

async function withCluster<T>(
  fn: (
    client: IrisClient,
    workerCpuMs: () => number,
    taskCpuMs: () => number,
  ) => Promise<T>,
  placement: WorkerPlacement = "in-process",
  durable = false,
): Promise<T> {
  // Durable: the controller writes its state (SQLite, synchronous=FULL) as a deployed one does.
  const stateDir = durable ? await Deno.makeTempDir({ prefix: "iris-bench-state-" }) : undefined;
  const ctl = startController({ port: 0, log: () => {}, stateDir });
  const rootDir = await Deno.makeTempDir({ prefix: "iris-bench-worker-" });
  const worker: AsyncDisposable & { pid?: number } = placement === "own-process"
    ? spawnWorkerProcess(ctl.url, rootDir)
    : await startWorker({
      controllerUrl: ctl.url,
      rootDir,
      cleanup: true,
      resources: { cpuMillicores: 64_000, memoryBytes: 64 * GiB },
    });
  const client = new IrisClient(ctl.url);
  try {
    const t0 = performance.now();
    while ((await client.workers()).length < 1) {
      if (performance.now() - t0 > 30_000) throw new Error("worker did not register in 30 s");
      await sleepMs(5);
    }
    // In-process, the worker's CPU is part of this process's.
    return await fn(
      client,
      () => worker.pid === undefined ? 0 : pidCpuMs(worker.pid),
      () => pidCpuMs(worker.pid ?? "self", true) + spawnerCpuMs(worker.pid ?? "self"),
    );
  } finally {
    await worker[Symbol.asyncDispose]();
    await ctl.stop();
    await Deno.remove(rootDir, { recursive: true }).catch(() => {});
    if (stateDir) await Deno.remove(stateDir, { recursive: true }).catch(() => {});
  }
}

const trivialJob = (name: string) => ({
  name,
  user: "bench",
  command: ["true"],
  cpu: 0.01,
  memory: 16 * MiB,
});

interface LatencyResult {
  submitRttMs: number[];
  submitToRunningMs: number[];
  submitToCompletedMs: number[];
  clientWallMs: number[];
  failed: number;
}

/**
 * One job at a time: submit, poll every 1 ms until finished. Submit→running is the worker's
 * timestamp taken as the task's process was spawned (what the controller stores as the attempt's
 * start) minus the controller's as it took the submit, before its commit: both from the system
 * clock, in microseconds.
 */
async function latencyBench(client: IrisClient, n: number): Promise<LatencyResult> {
  const r: LatencyResult = {
    submitRttMs: [],
    submitToRunningMs: [],
    submitToCompletedMs: [],
    clientWallMs: [],
    failed: 0,
  };
  for (let i = -10; i < n; i++) { // 10 warm-up jobs, not recorded
    const t0 = performance.now();
    const jobId = await client.submit(trivialJob(`lat-${i + 10}`));
    const t1 = performance.now();
    let res;
    while (true) {
      res = await client.status(jobId);
      if (
        res.job && (res.job.state === JobState.SUCCEEDED || res.job.state === JobState.FAILED ||
          res.job.state === JobState.KILLED || res.job.state === JobState.WORKER_FAILED ||
          res.job.state === JobState.UNSCHEDULABLE)
      ) break;
      await sleepMs(1);
    }
    const t2 = performance.now();
    if (i < 0) continue;
    const job = res.job!;
    const task = res.tasks[0];
    if (job.state !== JobState.SUCCEEDED || !task) {
      r.failed++;
      continue;
    }
    r.submitRttMs.push(t1 - t0);
    r.submitToRunningMs.push(task.startedAtMs - job.submittedAtMs);
    r.submitToCompletedMs.push(job.finishedAtMs - job.submittedAtMs);
    r.clientWallMs.push(t2 - t0);
  }
  return r;
}

const FINISHED = [
  JobState.SUCCEEDED,
  JobState.FAILED,
  JobState.KILLED,
  JobState.WORKER_FAILED,
  JobState.UNSCHEDULABLE,
];

/**
 * Waits until the `n` jobs whose ids are `ids` (named `…0` to `…n-1`) have finished, polling every
 * `every` ms.
 */
async function waitFinished(client: IrisClient, ids: string[], n: number, every: number) {
  const prefix = ids[0]!.slice(0, -"0".length);
  const t0 = performance.now();
  let first: { at: number; count: number } | undefined;
  while (true) {
    const res = await client.rpc.listJobs({ prefix, states: FINISHED, limit: 1, offset: 0 });
    const now = performance.now();
    if (res.totalCount >= n) return;
    if (now - t0 > 300_000) throw new Error(`only ${res.totalCount}/${n} jobs finished`);
    // At the rate since the first poll, about when half of what is left has finished, between 2
    // and 5 × `every` ms: few polls while most jobs wait (each counts every job the controller
    // holds), and soon after the last finished at the end (a fixed `every` added half of it, on
    // average, to a run of a few hundred ms; #20).
    first ??= { at: now, count: res.totalCount };
    const rate = (res.totalCount - first.count) / (now - first.at);
    const eta = rate > 0 ? (n - res.totalCount) / rate : every;
    await sleepMs(Math.max(2, Math.min(5 * every, eta / 2)));
  }
}

/**
 * `n` trivial jobs, submitted by `par` concurrent submitters, then waited for. The clock starts
 * after `par` warm-up jobs, one per submitter, have finished: a fresh load generator otherwise
 * spends its first ~100 ms compiling its own submit path and opening connections with one core
 * busy and Iris waiting on it, which is the generator's start-up, not Iris's throughput.
 */
async function throughputBench(
  client: IrisClient,
  n: number,
  par: number,
): Promise<{ jobsPerS: number; submitPerS: number; makespanS: number; failed: number }> {
  const tag = `tput${Date.now()}-`;
  const warm = `${tag}warm-`;
  const warmIds = await pool(par, par, (i) => client.submit(trivialJob(`${warm}${i}`)));
  await waitFinished(client, warmIds, par, 5);
  const t0 = performance.now();
  const ids = await pool(n, par, (i) => client.submit(trivialJob(`${tag}run-${i}`)));
  const t1 = performance.now();
  // Each poll counts the prefix's jobs: a tighter loop would load the controller.
  await waitFinished(client, ids, n, 20);
  const t2 = performance.now();
  const ok = await client.rpc.listJobs({
    prefix: ids[0]!.slice(0, -"0".length),
    states: [JobState.SUCCEEDED],
    limit: 1,
    offset: 0,
  });
  return {
    jobsPerS: n / ((t2 - t0) / 1000),
    submitPerS: n / ((t1 - t0) / 1000),
    makespanS: (t2 - t0) / 1000,
    failed: n - ok.totalCount,
  };
}

/** One throughput run beside the spawn floor measured just before it. */
type RunBesideFloor<T> = T & { spawnP50Ms: number; spawnCeiling: number; vsSpawnCeiling: number };

/**
 * `runs` throughput runs, each right after its own spawn floor (200 × /bin/true): this machine's
 * speed drifts by tens of percent within minutes, and the floor taken minutes earlier at the start
 * of the bench is not the one the run met. Returns the run with the median ratio to its ceiling
 * (cores ÷ spawn p50), with every run beside it.
 *
 * One run before them, the same but not counted (`warmup`, reported beside them), warms the
 * cluster: a controller and a worker run for days, and a fresh one spends its first thousand
 * jobs compiling its hot paths (V8's optimizing compiler runs on background threads then, and
 * the code is slower until it is done; #20: 0.35 against 0.2 ms of controller CPU per job here).
 */
async function throughputRuns<T extends { jobsPerS: number }>(
  runs: number,
  cores: number,
  run: () => Promise<T>,
): Promise<RunBesideFloor<T> & { runs: RunBesideFloor<T>[]; warmup: RunBesideFloor<T> }> {
  const besideFloor = async (): Promise<RunBesideFloor<T>> => {
    const spawnP50Ms = dist(await spawnFloor(200)).p50;
    const spawnCeiling = cores / (spawnP50Ms / 1000);
    const r = await run();
    return { ...r, spawnP50Ms, spawnCeiling, vsSpawnCeiling: r.jobsPerS / spawnCeiling };
  };
  const warmup = await besideFloor();
  const all: RunBesideFloor<T>[] = [];
  for (let i = 0; i < runs; i++) all.push(await besideFloor());
  const median = [...all].sort((a, b) => a.vsSpawnCeiling - b.vsSpawnCeiling)[
    Math.floor(all.length / 2)
  ]!;
  return { ...median, runs: all, warmup };
}

/** "48 %, 52 %, 55 %": each run's share of its spawn ceiling. */
const ceilingPercents = (runs: readonly { vsSpawnCeiling: number }[]) =>
  runs.map((r) => `${(100 * r.vsSpawnCeiling).toFixed(0)} %`).join(", ");

/** "median of 3 runs: 48 %, 52 %, 55 %, after a warm-up run: 41 %". */
const runsSummary = (
  t: { runs: { vsSpawnCeiling: number }[]; warmup: { vsSpawnCeiling: number } },
) =>
  `median of ${t.runs.length} runs: ${ceilingPercents(t.runs)}, after a warm-up run: ${
    ceilingPercents([t.warmup])
  }`;

/**
 * Runs this script with `--<mode> args…` in a process of its own and returns its last stdout line
 * as JSON (undefined when it printed nothing): each child benchmark's answer.
 */
async function benchChild<T>(mode: string, ...args: (string | number)[]): Promise<T> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, `--${mode}`, ...args.map(String)],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`bench child --${mode} exited ${out.code}`);
  const last = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1);
  return (last ? JSON.parse(last) : undefined) as T;
}

/** What a run of {@linkcode throughputGenerator} measures. */
interface ThroughputResult {
  jobsPerS: number;
  submitPerS: number;
  makespanS: number;
  failed: number;
  /** CPU of the controller's process (nothing else runs in it then, the worker aside). */
  controllerCpuMsPerJob: number;
  /** The part of it spent in the kernel. */
  controllerSysCpuMsPerJob: number;
  /** CPU of the submitters and the poller (their own process). */
  clientCpuMsPerJob: number;
}

/** A load generator kept for several throughput runs ({@linkcode throughputGenerator}). */
type ThroughputGenerator = AsyncDisposable & { run(): Promise<ThroughputResult> };

/** `fn` with a load generator, which ends with it. */
async function withGenerator<T>(
  url: string,
  n: number,
  par: number,
  fn: (generator: ThroughputGenerator) => Promise<T>,
): Promise<T> {
  await using generator = throughputGenerator(url, n, par);
  return await fn(generator);
}

/**
 * The load generator of the throughput runs: {@linkcode throughputBench} in a child process
 * (`--tput-child URL N PAR`), so the controller's CPU per job is its own (the submitters and the
 * poller cost about as much again, and a controller does not serve its users from inside its own
 * process). One generator serves every run of a placement, the warm-up run included, so that it
 * runs warm as the cluster does (#20: a fresh one per run compiled its submit path inside the
 * counted window, with V8's compiler threads on the other core). `run` starts a run and answers
 * with its figures; disposing of it ends the child.
 */
function throughputGenerator(url: string, n: number, par: number): ThroughputGenerator {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, "--tput-child", url, `${n}`, `${par}`],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  // Each run's answer is one stdout line; undefined once the child's stdout ended.
  const waiting: ((line: string | undefined) => void)[] = [];
  const reading = forEachLine(
    child.stdout.pipeThrough(new TextDecoderStream()).getReader(),
    (line) => waiting.shift()?.(line),
  ).catch(() => {}).finally(() => {
    for (const answer of waiting.splice(0)) answer(undefined);
  });
  return {
    async run(): Promise<ThroughputResult> {
      await using _profile = await cpuProfile(Deno.env.get("IRIS_BENCH_CPU_PROF"), "controller");
      const c0 = processCpuMs();
      const s0 = pidSysCpuMs("self");
      const answer = new Promise<string | undefined>((resolve) => waiting.push(resolve));
      await writer.write(new TextEncoder().encode("run\n"));
      const line = await answer;
      if (line === undefined) throw new Error("the throughput load generator exited mid-run");
      return {
        ...JSON.parse(line),
        controllerCpuMsPerJob: (processCpuMs() - c0) / n,
        controllerSysCpuMsPerJob: (pidSysCpuMs("self") - s0) / n,
      };
    },
    async [Symbol.asyncDispose]() {
      await writer.close().catch(() => {});
      await reading;
      const status = await child.status;
      if (!status.success) throw new Error(`the throughput load generator exited ${status.code}`);
    },
  };
}

/**
 * With a `dir` (IRIS_BENCH_CPU_PROF), a V8 CPU profile of this process until disposed of, sampled
 * every 100 µs, written as `dir`/`name`.cpuprofile; with IRIS_BENCH_HEAP set too, its allocations
 * (sampled every KiB, collected ones included) as `name`.heapprofile.
 */
async function cpuProfile(dir: string | undefined, name: string): Promise<AsyncDisposable> {
  if (!dir) return { async [Symbol.asyncDispose]() {} };
  const { Session } = await import("node:inspector/promises");
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: 100 });
  await session.post("Profiler.start");
  if (Deno.env.get("IRIS_BENCH_HEAP")) {
    await session.post("HeapProfiler.startSampling", {
      samplingInterval: 1024,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
  }
  return {
    async [Symbol.asyncDispose]() {
      if (Deno.env.get("IRIS_BENCH_HEAP")) {
        const { profile: heap } = await session.post("HeapProfiler.stopSampling");
        await Deno.writeTextFile(`${dir}/${name}.heapprofile`, JSON.stringify(heap));
      }
      const { profile } = await session.post("Profiler.stop");
      session.disconnect();
      await Deno.writeTextFile(`${dir}/${name}.cpuprofile`, JSON.stringify(profile));
    },
  };
}

async function throughputBenchChild(url: string, n: number, par: number) {
  const client = new IrisClient(url);
  await using _profile = await cpuProfile(Deno.env.get("IRIS_BENCH_CPU_PROF"), "clients");
  // One run per "run" line on stdin, one after the other, each answered with a line of figures.
  let runs = Promise.resolve();
  await forEachLine(
    Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader(),
    (line) => {
      if (line !== "run") return;
      runs = runs.then(async () => {
        const c0 = processCpuMs();
        const r = await throughputBench(client, n, par);
        console.log(JSON.stringify({ ...r, clientCpuMsPerJob: (processCpuMs() - c0) / n }));
      });
    },
  );
  await runs;
}

/** Runs in a child process (`--rpc-child URL`) so the load generator does not share the
 * controller's event loop. */
async function rpcBenchChild(url: string, echoUrl: string) {
  const client = new IrisClient(url);
  const c0 = processCpuMs();
  const r = await rpcBench(client, echoUrl);
  console.log(JSON.stringify({ ...r, clientCpuUsPerCall: (processCpuMs() - c0) * 1000 / r.calls }));
}

/** CPU time (user + system) of this process: steadier than wall time on a shared machine. Linux
 * only; NaN elsewhere. */
function processCpuMs(): number {
  return pidCpuMs("self");
}

/**
 * CPU time of the whole host so far (all cores, in ms), busy and total, from /proc/stat (Linux;
 * NaN elsewhere): with Iris's own CPU over the same interval it tells whether the cores Iris left
 * unused were idle or taken by other work (a shared machine).
 */
function hostCpuMs(): { busy: number; total: number } {
  try {
    const f = Deno.readTextFileSync("/proc/stat").split("\n")[0]!.trim().split(/\s+/).slice(1)
      .map(Number);
    const total = f.reduce((a, b) => a + b, 0) * 10;
    return { busy: total - (f[3]! + f[4]!) * 10, total };
  } catch {
    return { busy: NaN, total: NaN };
  }
}

interface RpcResult {
  concurrency: number;
  /** GetJobStatus of a one-task job: the call clients poll. */
  callsPerS: number;
  single: number[];
  /** GetControllerStatus: carries up to 200 recent log lines, so it measures payload size too. */
  statusCallsPerS: number;
  statusSingle: number[];
  statusBytes: number;
  /** Every call the child made (warm-up, single and concurrent, both methods). */
  calls: number;
  /**
   * Plain fetch POSTs (200 B, echoed by Deno.serve in the controller's process) from the calling
   * process, in blocks alternating with the single-connection GetJobStatus calls: the floor
   * between the same two processes under the same load (the run's other fetch floor is within
   * one process). Their CPU is in the per-call figures (about 1 % of the calls).
   */
  fetchPostSameProcesses: number[];
  /** CPU of the calling process per call (Iris's client). */
  clientCpuUsPerCall: number;
  /** CPU of the controller's process per call, measured around the child's run. */
  serverCpuUsPerCall: number;
}

/** Controller unary RPC load from a separate process (a real client, not the server's loop). */
async function rpcBenchRemote(url: string): Promise<RpcResult> {
  // The fetch floor's server lives in the controller's process, like the RPC server.
  const echo = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) =>
      new Response(await req.text(), { headers: { "content-type": "application/json" } }),
  );
  const c0 = processCpuMs();
  const r = await benchChild<Omit<RpcResult, "serverCpuUsPerCall">>(
    "rpc-child",
    url,
    `http://127.0.0.1:${echo.addr.port}/`,
  ).finally(() => echo.shutdown());
  return { ...r, serverCpuUsPerCall: (processCpuMs() - c0) * 1000 / r.calls };
}

/**
 * Single-connection latencies (n after 200 warm-up calls) and calls/s at 32 callers for 3 s. With
 * `floor`, blocks of 50 single calls alternate with blocks of 50 floor calls, timed apart: the same
 * conditions, without one call's wake-ups disturbing the next one's.
 */
async function callLoad(call: () => Promise<unknown>, n: number, floor?: () => Promise<unknown>) {
  const single: number[] = [];
  const floorMs: number[] = [];
  const block = 50;
  for (let i = 0; i < n + 200; i += block) {
    for (
      const [fn, into] of floor
        ? [[call, single], [floor, floorMs]] as const
        : [[call, single]] as const
    ) {
      for (let k = i; k < i + block; k++) {
        const t0 = performance.now();
        await fn();
        if (k >= 200) into.push(performance.now() - t0);
      }
    }
  }
  const concurrency = 32;
  const durationMs = 3000;
  let calls = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() - t0 < durationMs) {
      await call();
      calls++;
    }
  }));
  return {
    concurrency,
    single,
    floorMs,
    callsPerS: calls / ((performance.now() - t0) / 1000),
    calls: n + 200 + calls,
  };
}

async function rpcBench(
  client: IrisClient,
  echoUrl: string,
): Promise<Omit<RpcResult, "clientCpuUsPerCall" | "serverCpuUsPerCall">> {
  const jobId = await client.submit(trivialJob("rpc-bench"));
  await client.wait(jobId, { pollInterval: ms(5) });
  const body = JSON.stringify({ payload: "x".repeat(180) }); // ≈ 200 B, as fetchFloor
  const fetchPost = async () =>
    await (await fetch(echoUrl, {
      method: "POST",
      body,
      headers: { "content-type": "application/json" },
    })).text();
  const job = await callLoad(() => client.rpc.getJobStatus({ jobId }), 1000, fetchPost);
  const status = await callLoad(() => client.rpc.getControllerStatus({}), 1000);
  const one = await client.rpc.getControllerStatus({});
  return {
    concurrency: job.concurrency,
    callsPerS: job.callsPerS,
    single: job.single,
    fetchPostSameProcesses: job.floorMs,
    statusCallsPerS: status.callsPerS,
    statusSingle: status.single,
    statusBytes: toBinary(GetControllerStatusResponseSchema, one).length,
    calls: job.calls + status.calls + 1,
  };
}

interface MemResult {
  rssDeltaBytes: number;
  heapDeltaBytes: number;
  tasks: number;
  submitS: number;
}

/** Runs {@linkcode memoryBench} in a fresh process, so earlier benchmarks do not skew the RSS. */
async function memoryBenchRemote(jobs: number, replicas: number): Promise<MemResult> {
  return await benchChild<MemResult>("memory-child", jobs, replicas);
}

/** RSS growth of a worker-less controller holding `jobs × replicas` pending tasks. */
async function memoryBench(
  jobs: number,
  replicas: number,
): Promise<MemResult> {
  const ctl = startController({ port: 0, log: () => {} });
  const client = new IrisClient(ctl.url);
  try {
    await client.rpc.getControllerStatus({});
    const before = Deno.memoryUsage();
    const t0 = performance.now();
    await pool(jobs, 8, (i) => client.submit({ ...trivialJob(`mem-${i}`), replicas }));
    const submitS = (performance.now() - t0) / 1000;
    await sleepMs(500); // let a scheduling pass run over the pending tasks
    const after = Deno.memoryUsage();
    return {
      rssDeltaBytes: after.rss - before.rss,
      heapDeltaBytes: after.heapUsed - before.heapUsed,
      tasks: ctl.controller.jobs.tasks.size,
      submitS,
    };
  } finally {
    await ctl.stop();
  }
}

interface RestartResult {
  ms: number;
  /** CPU time of the restarted process meanwhile (less skewed by a shared machine). */
  cpuMs: number;
  tasks: number;
  storeMiB: number;
  text: string;
}

/**
 * G5: time from starting a controller over a store of `jobs × 100` tasks until it answers RPCs,
 * in a fresh process (as a restart is: the heap that wrote the store would slow its collector).
 * The tasks are pending as submitted, or (`ran`) every one ran once and succeeded: the store then
 * holds a row per task with its attempt, not only the job rows.
 */
async function restartBench(jobs: number, ran = false): Promise<RestartResult> {
  const dir = await Deno.makeTempDir({ prefix: "iris-bench-restart-" });
  try {
    // The store is written by a process of its own that has exited before the restart starts:
    // written from here, the million tasks' table stayed in this process's heap and V8 collected
    // it on the other core while the restart ran (the same hour: 2.7 s for the tasks that ran
    // once, against 1.3–1.8 s with the writer gone).
    await benchChild<void>("restart-store-child", dir, jobs, ran ? "ran" : "pending");
    const sizeMiB = (await Deno.stat(`${dir}/controller.sqlite3`)).size / 2 ** 20;
    const { ms, cpuMs, tasks } = await benchChild<{ ms: number; cpuMs: number; tasks: number }>(
      "restart-child",
      dir,
    );
    return {
      ms,
      cpuMs,
      tasks,
      storeMiB: sizeMiB,
      text: `${ms.toFixed(0)} ms, CPU ${cpuMs.toFixed(0)} ms (${tasks} tasks, ${
        sizeMiB.toFixed(0)
      } MiB store)`,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * The restart store child: writes `jobs` jobs × 100 tasks into a state store in `dir`, each task
 * as submitted or, with `ran`, with one finished attempt (a row per task).
 */
function restartStoreChild(dir: string, jobs: number, ran: boolean): void {
  const store = StateStore.open(dir, { synchronous: "NORMAL" });
  const table = new JobTable();
  for (let j = 0; j < jobs; j++) {
    const spec = create(JobSpecSchema, {
      name: `restart-${j}`,
      user: "bench",
      replicas: 100,
      entrypoint: { kind: { case: "command", value: { argv: ["true"] } } },
      resources: { cpuMillicores: 10, memoryBytes: 2 ** 24 },
    });
    const { jobId } = table.submit(spec, `req-${j}`, Date.now(), noEffects());
    for (const id of ran ? table.job(jobId).taskIds : []) {
      const attempt = table.assign(id, "w1", Date.now());
      const outcome = { state: TaskState.SUCCEEDED, finishedAtMs: Date.now() };
      table.attemptEnded(table.task(id), attempt, outcome, noEffects());
    }
    if (j % 1000 === 999) store.flush(table);
  }
  store.flush(table);
  store.close();
}

/** The restart child: starts a controller over `dir`, prints how long until it answered. */
async function restartChild(dir: string): Promise<void> {
  const t0 = performance.now();
  const c0 = processCpuMs();
  const ctl = startController({ stateDir: dir, port: 0, log: () => {} });
  try {
    const st = await controllerClient(ctl.url).getControllerStatus({});
    const ms = performance.now() - t0;
    console.log(JSON.stringify({ ms, cpuMs: processCpuMs() - c0, tasks: st.taskCount }));
  } finally {
    await ctl.stop();
  }
}

// ---------------------------------------------------------------- Slurm peer

interface PeerResult {
  settings: Record<string, string>;
  metrics: Record<string, { n: number; min: number; p50: number; max: number }>;
  exitCode: number;
  error?: string;
}

async function runSlurmPeer(): Promise<PeerResult> {
  const script = new URL("../../shared/peers/slurm/run.sh", import.meta.url).pathname;
  const settings = {
    PROFILES: "tuned",
    REPS: "1",
    STARTUP_REPS: "1",
    BENCHES: "latency seq par",
    OUT_DIR: "/tmp/iris-slurm-peer",
  };
  log(`slurm peer: bash ${script} (${JSON.stringify(settings)})`);
  const child = new Deno.Command("bash", {
    args: [script, "all"],
    env: settings,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
  }, 30 * 60_000);
  const out = await child.output();
  clearTimeout(timer);
  const text = new TextDecoder().decode(out.stdout);
  const metrics: PeerResult["metrics"] = {};
  for (const line of text.split("\n")) {
    const m = line.match(
      /^RESULT profile=(\S+)\s+(\S+)\s+n=(\d+)\s+min=(\S+)\s+p50=(\S+)\s+max=(\S+)/,
    );
    if (!m) continue;
    metrics[m[2]!] = { n: Number(m[3]), min: Number(m[4]), p50: Number(m[5]), max: Number(m[6]) };
  }
  const result: PeerResult = { settings, metrics, exitCode: out.code };
  if (out.code !== 0 || Object.keys(metrics).length === 0) {
    result.error = `run.sh exited ${out.code} with ${Object.keys(metrics).length} RESULT lines`;
  }
  return result;
}

// ---------------------------------------------------------------- main

function fmtMs(x: number): string {
  if (!Number.isFinite(x)) return "n/a";
  if (x < 1) return `${(x * 1000).toFixed(0)} µs`;
  if (x < 100) return `${x.toFixed(2)} ms`;
  if (x < 10_000) return `${x.toFixed(0)} ms`;
  return `${(x / 1000).toFixed(1)} s`;
}

function fmtNum(x: number): string {
  if (!Number.isFinite(x)) return "n/a";
  return x >= 100 ? Math.round(x).toLocaleString("en-US") : x.toFixed(1);
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  const line = (r: string[]) => `| ${r.map((x, c) => x.padEnd(widths[c]!)).join(" | ")} |`;
  return [
    line(rows[0]!),
    `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`,
    ...rows.slice(1).map(line),
  ].join("\n");
}

async function machine(): Promise<Record<string, string | number>> {
  let cpu = "unknown";
  try {
    const info = await Deno.readTextFile("/proc/cpuinfo");
    cpu = info.match(/^model name\s*:\s*(.+)$/m)?.[1] ?? cpu;
  } catch { /* not Linux */ }
  const mem = Deno.systemMemoryInfo();
  return {
    nproc: navigator.hardwareConcurrency,
    memoryGiB: Number((mem.total / GiB).toFixed(1)),
    cpu,
    kernel: Deno.osRelease(),
    // A shared machine skews absolute figures: the 1-minute load average when the run started.
    loadAverage: Deno.loadavg()[0] ?? NaN,
    deno: Deno.version.deno,
  };
}

async function main() {
  const args = Deno.args;
  const peerIdx = args.indexOf("--peer");
  const peer = peerIdx >= 0 ? args[peerIdx + 1] : undefined;
  if (peer !== undefined && peer !== "slurm") {
    console.error(`unknown peer ${peer}; only "slurm" is supported`);
    Deno.exit(2);
  }
  const onlyIdx = args.indexOf("--only");
  if (onlyIdx >= 0) return await quick(new Set((args[onlyIdx + 1] ?? "").split(",")));
  const fleetIdx = args.indexOf("--fleet");
  if (fleetIdx >= 0) return await fleetOnly(fleetSizes(args[fleetIdx + 1]));
  const sizesIdx = args.indexOf("--fleet-sizes");
  const sizes = fleetSizes(sizesIdx >= 0 ? args[sizesIdx + 1] : "1000,10000,30000");
  const stateIdx = args.indexOf("--state");
  if (stateIdx >= 0) return await stateOnly(Number(args[stateIdx + 1] ?? "") || TASKS_JOBS);
  // Jobs of 100 replicas for the memory and restart figures: #20's 10,000 (1 M tasks).
  const jobsIdx = args.indexOf("--tasks-jobs");
  const memJobs = jobsIdx >= 0 ? Number(args[jobsIdx + 1]) : TASKS_JOBS;
  const started = performance.now();
  const host = await machine();
  log(`machine: ${JSON.stringify(host)}`);

  log("floors: spawn /bin/true × 200");
  const spawn = dist(await spawnFloor(200));
  log("floors: deno run --no-config trivial.ts × 20");
  const denoRun = dist(await denoRunFloor(20));
  log("floors: fetch → Deno.serve × 500");
  const fetchRtt = await fetchFloor(500);
  const fetchGet = dist(fetchRtt.get);
  const fetchPost = dist(fetchRtt.post);

  const LAT_N = 200;
  const TPUT_N = 1000;
  const TPUT_PAR = 32;
  const TPUT_RUNS = 5;
  const cores = host.nproc as number;
  const { lat, tput, rpc } = await withCluster(async (client) => {
    log(`iris: submit→running latency, ${LAT_N} jobs one at a time`);
    const lat = await latencyBench(client, LAT_N);
    log(
      `iris: ${TPUT_N} trivial jobs, ${TPUT_PAR} concurrent submitters, a warm-up run, then ` +
        `${TPUT_RUNS} runs`,
    );
    const tput = await withGenerator(
      client.url,
      TPUT_N,
      TPUT_PAR,
      (generator) => throughputRuns(TPUT_RUNS, cores, () => generator.run()),
    );
    log("iris: controller unary RPC (GetJobStatus, GetControllerStatus)");
    const rpc = await rpcBenchRemote(client.url);
    return { lat, tput, rpc };
  });
  // The same with the worker in its own process, as on a real host (#20): its CPU is its own.
  const own = await withCluster(async (client, workerCpuMs, taskCpuMs) => {
    log(`iris, worker in its own process: submit→running latency, ${LAT_N} jobs one at a time`);
    const lat = await latencyBench(client, LAT_N);
    log(
      `iris, worker in its own process: ${TPUT_N} trivial jobs, ${TPUT_PAR} submitters, ` +
        `a warm-up run, then ${TPUT_RUNS} runs`,
    );
    const tput = await withGenerator(
      client.url,
      TPUT_N,
      TPUT_PAR,
      (generator) =>
        throughputRuns(TPUT_RUNS, cores, async () => {
          const w0 = workerCpuMs();
          const t0 = taskCpuMs();
          const r = await generator.run();
          return {
            ...r,
            workerCpuMsPerJob: (workerCpuMs() - w0) / TPUT_N,
            taskCpuMsPerJob: (taskCpuMs() - t0) / TPUT_N,
          };
        }),
    );
    return { lat, tput };
  }, "own-process");

  log("scheduler/autoscaler: runSchedulerBench({ repeats: 3 })");
  const sched = await runSchedulerBench({ repeats: 3 });

  log(`controller memory: ${memJobs} jobs × 100 replicas, no workers`);
  const mem = await memoryBenchRemote(memJobs, 100);
  const { restart, restartRan } = await restartFigures(memJobs);

  log("hostile clients: GetControllerStatus with 0, then 1000 stalled 60 MB bodies (#16)");
  const calm = await stalledBench(0);
  const stalled = await stalledBench(1000);
  log("hostile clients: the same with auth.http_server: deno, then node");
  const stalledDeno = await stalledBench(1000, "deno");
  const stalledNode = await stalledBench(1000, "node");
  log("hostile clients: 1000 stalled bodies from one address (the per-client cap applies)");
  const stalledOne = await stalledBench(1000, undefined, 1);

  const fleet: FleetResult[] = [];
  for (const n of sizes) {
    log(`fleet: ${n} simulated workers in another process`);
    fleet.push(await fleetBench(n, log));
  }

  let peerResult: PeerResult | undefined;
  if (peer === "slurm") peerResult = await runSlurmPeer();

  const submitToRunning = dist(lat.submitToRunningMs);
  const submitToCompleted = dist(lat.submitToCompletedMs);
  const ownSubmitToRunning = dist(own.lat.submitToRunningMs);
  const clientWall = dist(lat.clientWallMs);
  const submitRtt = dist(lat.submitRttMs);
  const rpcSingle = dist(rpc.single);
  const fetchPostSame = dist(rpc.fetchPostSameProcesses);
  const statusSingle = dist(rpc.statusSingle);

  const rows: string[][] = [
    ["metric", "p50", "p99", "ratio / floor", "goal"],
    ["floor: spawn /bin/true (n=200)", fmtMs(spawn.p50), fmtMs(spawn.p99), "1×", ""],
    ["floor: deno run --no-config (n=20)", fmtMs(denoRun.p50), fmtMs(denoRun.p99), "", ""],
    ["floor: fetch GET → Deno.serve (n=500)", fmtMs(fetchGet.p50), fmtMs(fetchGet.p99), "", ""],
    ["floor: fetch POST 200 B (n=500)", fmtMs(fetchPost.p50), fmtMs(fetchPost.p99), "", ""],
    [
      `G1 submit→running, API (n=${submitToRunning.n})`,
      fmtMs(submitToRunning.p50),
      fmtMs(submitToRunning.p99),
      `${x(submitToRunning.p50, spawn.p50)} spawn`,
      "p50 ≤ 5 ms, p99 ≤ 15 ms",
    ],
    [
      "submit→completed, API",
      fmtMs(submitToCompleted.p50),
      fmtMs(submitToCompleted.p99),
      `${x(submitToCompleted.p50, spawn.p50)} spawn`,
      "",
    ],
    [
      "submit→SUCCEEDED seen by client (1 ms poll)",
      fmtMs(clientWall.p50),
      fmtMs(clientWall.p99),
      `${x(clientWall.p50, spawn.p50)} spawn`,
      "",
    ],
    [
      "submit RPC round trip (LaunchJob ack)",
      fmtMs(submitRtt.p50),
      fmtMs(submitRtt.p99),
      `${x(submitRtt.p50, fetchPost.p50)} fetch POST`,
      "",
    ],
    [
      `G2 ${TPUT_N} trivial jobs end to end (${TPUT_PAR} submitters)`,
      `${fmtNum(tput.jobsPerS)} jobs/s`,
      `${tput.makespanS.toFixed(2)} s total`,
      `${(100 * tput.vsSpawnCeiling).toFixed(0)} % of spawn ceiling ${
        fmtNum(tput.spawnCeiling)
      }/s (${runsSummary(tput)})`,
      "≥ 500 jobs/s",
    ],
    [
      `G2 the same, worker in its own process`,
      `${fmtNum(own.tput.jobsPerS)} jobs/s`,
      `${own.tput.makespanS.toFixed(2)} s total`,
      `${(100 * own.tput.vsSpawnCeiling).toFixed(0)} % of spawn ceiling ${
        fmtNum(own.tput.spawnCeiling)
      }/s (${runsSummary(own.tput)}); CPU/job ` +
      `worker ${own.tput.workerCpuMsPerJob.toFixed(1)} ms, task ${
        own.tput.taskCpuMsPerJob.toFixed(1)
      } ms, controller ${own.tput.controllerCpuMsPerJob.toFixed(1)} ms, clients ${
        own.tput.clientCpuMsPerJob.toFixed(1)
      } ms`,
      "≥ 50 % of spawn ceiling",
    ],
    [
      `G1 submit→running, worker in its own process (n=${ownSubmitToRunning.n})`,
      fmtMs(ownSubmitToRunning.p50),
      fmtMs(ownSubmitToRunning.p99),
      `${x(ownSubmitToRunning.p50, spawn.p50)} spawn`,
      "p50 ≤ 2× spawn",
    ],
    [
      `  submit rate / failed jobs`,
      `${fmtNum(tput.submitPerS)} jobs/s`,
      `${tput.failed} failed`,
      "",
      "",
    ],
    [
      `G4 unary RPC GetJobStatus, ${rpc.concurrency} callers (other process), 3 s`,
      `${fmtNum(rpc.callsPerS)} calls/s`,
      "",
      `CPU/call: controller ${rpc.serverCpuUsPerCall.toFixed(0)} µs, client ${
        rpc.clientCpuUsPerCall.toFixed(0)
      } µs`,
      "≥ 10k calls/s",
    ],
    [
      "G4 GetJobStatus, single conn. (other process, n=1000)",
      fmtMs(rpcSingle.p50),
      fmtMs(rpcSingle.p99),
      `${x(rpcSingle.p50, fetchPostSame.p50)} fetch POST between the same processes (${
        fmtMs(fetchPostSame.p50)
      }); ${x(rpcSingle.p50, fetchPost.p50)} the in-process floor`,
      "p50 ≤ 2× fetch POST",
    ],
    [
      `GetControllerStatus (${
        (rpc.statusBytes / 1024).toFixed(0)
      } KiB: 200 log lines), ${rpc.concurrency} callers`,
      `${fmtNum(rpc.statusCallsPerS)} calls/s`,
      `single p50 ${fmtMs(statusSingle.p50)}`,
      "",
      "",
    ],
    [
      "G3 placements/s, 10k workers × 100k tasks",
      fmtNum(sched.placements_per_s_10k ?? NaN),
      "",
      "",
      "≥ 50k/s",
    ],
    ["G3 4-host slice gangs/s", fmtNum(sched.gangs_per_s_10k ?? NaN), "", "", "≥ 5k/s"],
    [
      "G8 autoscaler decision, 1000 groups",
      fmtMs(sched.autoscaler_p50_ms ?? NaN),
      fmtMs(sched.autoscaler_p99_ms ?? NaN),
      "",
      "p99 ≤ 1 s",
    ],
    [
      `controller RSS, ${mem.tasks.toLocaleString("en-US")} pending tasks`,
      `${(mem.rssDeltaBytes / MiB).toFixed(0)} MiB`,
      `${(mem.rssDeltaBytes / mem.tasks).toFixed(0)} B/task RSS, ${
        (mem.heapDeltaBytes / mem.tasks).toFixed(0)
      } B/task heap`,
      `submitted in ${mem.submitS.toFixed(1)} s`,
      "",
    ],
    ...([[restart, "pending"], [restartRan, "that ran once"]] as const).map(([r, what]) => [
      `G5 controller restart, ${r.tasks.toLocaleString("en-US")} tasks ${what}`,
      r.text,
      "",
      `${x(r.ms, 3000 * r.tasks / 1e6)} goal`,
      "1 M tasks ≤ 3 s",
    ]),
    ...[stalled, stalledDeno, stalledNode, stalledOne].map((r) => [
      `GetControllerStatus under ${r.connections} stalled 60 MB bodies from ${r.addresses} address${
        r.addresses === 1 ? "" : "es"
      } (${r.transport}, n=${r.statusMs.n})`,
      fmtMs(r.statusMs.p50),
      fmtMs(r.statusMs.p99),
      `${x(r.statusMs.p99, calm.statusMs.p99)} p99 without; RSS ${
        (r.rssDuringBytes / MiB).toFixed(0)
      } MiB; ${r.workersDead} workers dead`,
      "p99 < 100 ms, RSS < 300 MiB, 0 dead",
    ]),
  ];

  const peerRows: string[][] = [];
  if (peerResult) {
    const s = peerResult.metrics;
    const slurmStart = (s.submit_to_start_s?.p50 ?? NaN) * 1000;
    const slurmSeq = s.seq1000_throughput_jobs_per_s?.p50 ?? NaN;
    const slurmPar = s.par4x1000_throughput_jobs_per_s?.p50 ?? NaN;
    const slurmRtt = (s.sbatch_rtt_s?.p50 ?? NaN) * 1000;
    const slurmSrun = (s.srun_true_wall_s?.p50 ?? NaN) * 1000;
    peerRows.push(
      ["metric (p50)", "Iris", "Slurm (tuned)", "Iris advantage"],
      [
        "submit→start",
        fmtMs(submitToRunning.p50),
        fmtMs(slurmStart),
        `${x(slurmStart, submitToRunning.p50)} faster`,
      ],
      [
        "submit ack (LaunchJob vs sbatch)",
        fmtMs(submitRtt.p50),
        fmtMs(slurmRtt),
        `${x(slurmRtt, submitRtt.p50)} faster`,
      ],
      [
        "run `true` and see it finish (client wall vs srun)",
        fmtMs(clientWall.p50),
        fmtMs(slurmSrun),
        `${x(slurmSrun, clientWall.p50)} faster`,
      ],
      [
        "1000 jobs/s (Iris 32 submitters vs Slurm sequential)",
        fmtNum(tput.jobsPerS),
        fmtNum(slurmSeq),
        `${x(tput.jobsPerS, slurmSeq)}`,
      ],
      [
        "1000 jobs/s (vs Slurm 4 parallel submitters)",
        fmtNum(tput.jobsPerS),
        fmtNum(slurmPar),
        `${x(tput.jobsPerS, slurmPar)}`,
      ],
    );
  }

  const totalS = (performance.now() - started) / 1000;
  console.log(
    `\nIris benchmarks — ${host.nproc} cores, ${host.memoryGiB} GiB, ${host.cpu}, kernel ${host.kernel}, Deno ${host.deno}`,
  );
  console.log(
    `Iris setup: in-process controller + 1 worker (64 cores, 64 GiB advertised), in-process or ` +
      `in its own process (\`iris worker serve\`, tasks as their own users when root); ` +
      `tasks \`true\`, cpu 0.01, 16 MiB. API times have 1 ms resolution.\n`,
  );
  console.log(table(rows));
  if (fleet.length) console.log(`\n${fleetTable(fleet)}`);
  if (peerResult) {
    console.log(
      `\nSlurm peer: ${
        Object.entries(peerResult.settings).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ")
      } (profile tuned = SchedulerParameters=batch_sched_delay=0, debug=error, NODE_CPUS=64)`,
    );
    if (peerResult.error) console.log(`Slurm peer FAILED: ${peerResult.error}`);
    if (peerRows.length > 1 && !peerResult.error) console.log(table(peerRows));
  }
  console.log(`\ntotal ${totalS.toFixed(0)} s`);

  const json = {
    at: new Date().toISOString(),
    machine: host,
    floors: { spawnMs: spawn, denoRunMs: denoRun, fetchGetMs: fetchGet, fetchPostMs: fetchPost },
    iris: {
      submitToRunningMs: submitToRunning,
      submitToCompletedMs: submitToCompleted,
      clientWallMs: clientWall,
      submitRttMs: submitRtt,
      latencyFailed: lat.failed,
      throughput: { jobs: TPUT_N, submitters: TPUT_PAR, ...tput },
      workerProcess: {
        submitToRunningMs: ownSubmitToRunning,
        latencyFailed: own.lat.failed,
        throughput: { jobs: TPUT_N, submitters: TPUT_PAR, ...own.tput },
      },
      rpc: {
        call: "GetJobStatus",
        callsPerS: rpc.callsPerS,
        concurrency: rpc.concurrency,
        singleMs: rpcSingle,
        fetchPostSameProcessesMs: fetchPostSame,
        controllerCpuUsPerCall: rpc.serverCpuUsPerCall,
        clientCpuUsPerCall: rpc.clientCpuUsPerCall,
        controllerStatus: {
          callsPerS: rpc.statusCallsPerS,
          singleMs: statusSingle,
          responseBytes: rpc.statusBytes,
        },
      },
      scheduler: sched,
      ...stateJson(mem, restart, restartRan),
      stalledConnections: {
        without: calm,
        default: stalled,
        deno: stalledDeno,
        node: stalledNode,
        defaultOneAddress: stalledOne,
      },
    },
    ratios: {
      submitToRunningP50VsSpawn: submitToRunning.p50 / spawn.p50,
      clientWallP50VsSpawn: clientWall.p50 / spawn.p50,
      rpcSingleP50VsFetchPost: rpcSingle.p50 / fetchPost.p50,
      // The same call against a fetch POST between the same two processes, interleaved with it.
      rpcSingleP50VsFetchPostSameProcesses: rpcSingle.p50 / fetchPostSame.p50,
      rpcCallsPerSVsGoal: rpc.callsPerS / 10_000,
      stalledP99VsGoal: stalled.statusMs.p99 / 100,
      jobsPerSVsSpawnCeiling: tput.vsSpawnCeiling,
      jobsPerSVsSpawnCeilingWorkerProcess: own.tput.vsSpawnCeiling,
      submitToRunningP50VsSpawnWorkerProcess: ownSubmitToRunning.p50 / spawn.p50,
      placementsVsG3: (sched.placements_per_s_10k ?? NaN) / 50_000,
      ...stateRatios(mem, restart, restartRan),
      ...fleetRatios(fleet),
      ...(peerResult && !peerResult.error
        ? {
          slurmSubmitToStartP50OverIris: (peerResult.metrics.submit_to_start_s?.p50 ?? NaN) *
            1000 / submitToRunning.p50,
          irisJobsPerSOverSlurmSeq: tput.jobsPerS /
            (peerResult.metrics.seq1000_throughput_jobs_per_s?.p50 ?? NaN),
          irisJobsPerSOverSlurmPar: tput.jobsPerS /
            (peerResult.metrics.par4x1000_throughput_jobs_per_s?.p50 ?? NaN),
        }
        : {}),
    },
    fleet,
    peer: peerResult,
    totalS,
  };
  const outDir = new URL("./results/", import.meta.url);
  await Deno.mkdir(outDir, { recursive: true });
  const outFile = new URL("latest.json", outDir);
  await Deno.writeTextFile(outFile, JSON.stringify(json, null, 2) + "\n");
  console.log(`wrote ${outFile.pathname}`);
  console.log(`\n${renderReadmeSection(json)}\n(deno task bench:readme puts it in README.md)`);
}

function fleetSizes(text: string | undefined): number[] {
  const sizes = (text ?? "").split(",").filter((s) => s !== "").map(Number);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1)) {
    console.error(`--fleet takes worker counts like 10000 or 1000,10000; got "${text}"`);
    Deno.exit(2);
  }
  return sizes;
}

/** Per-size ratios against #20's goals: CPU ≤ 50 % of a core, p99 ≤ 50 ms, death ≤ bound. */
function fleetRatios(fleet: readonly FleetResult[]): Record<string, number> {
  const out: Record<string, number> = {};
  const base = fleet.find((f) => f.workers === 1000) ?? fleet[0];
  for (const f of fleet) {
    const k = `fleet${f.workers}`;
    out[`${k}CpuVsGoal`] = f.controllerCpuPercent / 50;
    out[`${k}HeartbeatP99VsGoal`] = f.heartbeatP99Ms / 50;
    out[`${k}DeadAfterVsBound`] = f.deadAfterMs / f.deadBoundMs;
    if (base) out[`${k}JobsPerSVsFirst`] = f.jobsPerS / base.jobsPerS;
  }
  return out;
}

function fleetTable(fleet: readonly FleetResult[]): string {
  return table([
    [
      "fleet (simulated workers, other process)",
      "interval told",
      "controller CPU",
      "heartbeats/s",
      "heartbeat p50 / p99 (handler p99)",
      "1000 jobs",
      "stopped worker dead after (bound)",
    ],
    ...fleet.map((f) => [
      f.workers.toLocaleString("en-US"),
      fmtMs(f.intervalMs),
      `${f.controllerCpuPercent.toFixed(0)} % of a core (${
        f.controllerCpuUsPerHeartbeat.toFixed(0)
      } µs/heartbeat)`,
      fmtNum(f.heartbeatsPerS),
      `${fmtMs(f.heartbeatP50Ms)} / ${fmtMs(f.heartbeatP99Ms)} (${fmtMs(f.handlerP99Ms)})`,
      `${fmtNum(f.jobsPerS)} jobs/s`,
      `${fmtMs(f.deadAfterMs)} (${fmtMs(f.deadBoundMs)})`,
    ]),
  ]);
}

/** `--fleet N[,N]`: only the fleet benchmark; its sizes replace the same sizes in latest.json. */
/** #20's size of the memory and restart figures: 10,000 jobs × 100 replicas (1 M tasks). */
const TASKS_JOBS = 10_000;

/** Restart over `jobs × 100` pending tasks, then over as many that ran once. */
async function restartFigures(
  jobs: number,
): Promise<{ restart: RestartResult; restartRan: RestartResult }> {
  log(`controller restart: ${jobs} jobs × 100 pending tasks in the store`);
  const restart = await restartBench(jobs);
  log(`controller restart: ${jobs} jobs × 100 tasks that ran once in the store`);
  const restartRan = await restartBench(jobs, true);
  return { restart, restartRan };
}

/**
 * The memory and restart goals of #20 as ratios (≤ 1 meets the goal); the restart ratio is the
 * slower of the two stores'.
 */
function stateRatios(mem: MemResult, restart: RestartResult, restartRan: RestartResult) {
  const vsGoal = (r: RestartResult) => r.ms / (3000 * r.tasks / 1e6);
  return {
    memoryPerTaskVsGoal: mem.rssDeltaBytes / mem.tasks / 1536,
    restartVsGoal: Math.max(vsGoal(restart), vsGoal(restartRan)),
  };
}

/** The memory and restart figures as latest.json's `iris` holds them. */
function stateJson(mem: MemResult, restart: RestartResult, restartRan: RestartResult) {
  const figures = (r: RestartResult) => ({
    ms: r.ms,
    cpuMs: r.cpuMs,
    tasks: r.tasks,
    storeMiB: r.storeMiB,
  });
  return { memory: mem, restart: figures(restart), restartRan: figures(restartRan) };
}

/**
 * `--state [jobs]`: only the controller memory and restart figures (`jobs` × 100 tasks, default
 * 10,000 × 100), merged into latest.json (`iris.memory`, `iris.restart` and their ratios).
 */
async function stateOnly(jobs: number): Promise<void> {
  const loadAverage = Deno.loadavg()[0] ?? NaN;
  log(`controller memory: ${jobs} jobs × 100 replicas, no workers`);
  const mem = await memoryBenchRemote(jobs, 100);
  const { restart, restartRan } = await restartFigures(jobs);
  const ratios = stateRatios(mem, restart, restartRan);
  console.log(
    `memory: ${mem.tasks} tasks, ${(mem.rssDeltaBytes / mem.tasks).toFixed(0)} B/task RSS, ${
      (mem.heapDeltaBytes / mem.tasks).toFixed(0)
    } B/task heap, submitted in ${mem.submitS.toFixed(1)} s (${
      ratios.memoryPerTaskVsGoal.toFixed(2)
    }× goal); restart: pending ${restart.text}, ran once ${restartRan.text} (slower: ${
      ratios.restartVsGoal.toFixed(2)
    }× goal)`,
  );
  const outFile = new URL("./results/latest.json", import.meta.url);
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(await Deno.readTextFile(outFile));
  } catch { /* none yet */ }
  const iris = (json.iris ?? {}) as Record<string, unknown>;
  json = {
    ...json,
    iris: { ...iris, ...stateJson(mem, restart, restartRan) },
    stateAt: new Date().toISOString(),
    stateLoadAverage: loadAverage,
    ratios: { ...(json.ratios as Record<string, number> ?? {}), ...ratios },
  };
  await Deno.writeTextFile(outFile, JSON.stringify(json, null, 2) + "\n");
  console.log(`wrote memory and restart figures to ${outFile.pathname}`);
}

async function fleetOnly(sizes: number[]): Promise<void> {
  const fleet: FleetResult[] = [];
  for (const n of sizes) {
    log(`fleet: ${n} simulated workers in another process`);
    fleet.push(await fleetBench(n, log));
  }
  console.log(fleetTable(fleet));
  const outDir = new URL("./results/", import.meta.url);
  await Deno.mkdir(outDir, { recursive: true });
  const outFile = new URL("latest.json", outDir);
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(await Deno.readTextFile(outFile));
  } catch { /* none yet */ }
  const ratios = Object.fromEntries(
    Object.entries((json.ratios ?? {}) as Record<string, number>).filter(([k]) =>
      !k.startsWith("fleet")
    ),
  );
  // Sizes run now replace the same sizes of an earlier run; the others stay.
  const merged = [
    ...((json.fleet ?? []) as FleetResult[]).filter((f) => !sizes.includes(f.workers)),
    ...fleet,
  ].sort((a, b) => a.workers - b.workers);
  json = {
    ...json,
    fleet: merged,
    fleetAt: new Date().toISOString(),
    ratios: { ...ratios, ...fleetRatios(merged) },
  };
  await Deno.writeTextFile(outFile, JSON.stringify(json, null, 2) + "\n");
  console.log(`wrote fleet figures to ${outFile.pathname}`);
}

/**
 * `--only lat,tput,rpc`: just those Iris benchmarks, one line each, for before/after comparisons
 * while changing the code (no table, no JSON file). The tput clients run in their own process;
 * `--worker-process` runs the worker in its own process too (the controller's CPU figure is then
 * its own); `--durable` gives the controller a state dir; `--warmups N` runs tput N times unmeasured
 * first (default 1).
 */
async function quick(only: Set<string>): Promise<void> {
  const known = new Set(["lat", "tput", "rpc"]);
  const unknown = [...only].filter((k) => !known.has(k));
  if (unknown.length || only.size === 0) {
    console.error(`--only takes a comma-separated subset of lat,tput,rpc; got "${[...only]}"`);
    Deno.exit(2);
  }
  // CPU time of this process (controller + worker + client): steadier than wall time on a
  // shared machine. Linux only; NaN elsewhere.
  const cpuMs = processCpuMs;
  const placement: WorkerPlacement = Deno.args.includes("--worker-process")
    ? "own-process"
    : "in-process";
  // `--durable`: the controller keeps its state in a state dir, as deployed (the default bench runs
  // it in memory, like the figures before).
  const durable = Deno.args.includes("--durable");
  // `--warmups N`: unmeasured tput runs first (default 1, as the full bench; 0 for a cold run).
  const w = Deno.args.indexOf("--warmups");
  const warmups = w >= 0 ? Number(Deno.args[w + 1]) : 1;
  if (!Number.isInteger(warmups) || warmups < 0) {
    console.error(`--warmups takes a count of runs (0 or more); got "${Deno.args[w + 1]}"`);
    Deno.exit(2);
  }
  console.log(`worker: ${placement}${durable ? "; controller state in SQLite" : ""}`);
  // The floor the #20 goals are stated against, measured in this run: cores ÷ spawn p50.
  const spawn = dist(await spawnFloor(200));
  const cores = navigator.hardwareConcurrency;
  const spawnCeiling = cores / (spawn.p50 / 1000);
  console.log(
    `spawn /bin/true: p50 ${fmtMs(spawn.p50)} p99 ${fmtMs(spawn.p99)}; ceiling ${
      fmtNum(spawnCeiling)
    } jobs/s on ${cores} cores`,
  );
  await withCluster(
    async (client, workerCpuMs, taskCpuMs) => {
      if (only.has("lat")) {
        const c0 = cpuMs();
        const lat = await latencyBench(client, 200);
        const cpuPerJob = (cpuMs() - c0) / 210;
        const f = (d: Dist) => `p50 ${fmtMs(d.p50)} p99 ${fmtMs(d.p99)}`;
        console.log(
          `lat: submit→running ${f(dist(lat.submitToRunningMs))}; submit→completed ${
            f(dist(lat.submitToCompletedMs))
          }; client wall ${f(dist(lat.clientWallMs))}; LaunchJob ${
            f(dist(lat.submitRttMs))
          }; failed ${lat.failed}; CPU ${cpuPerJob.toFixed(2)} ms/job; submit→running p50 ${
            x(dist(lat.submitToRunningMs).p50, spawn.p50)
          } spawn`,
        );
      }
      if (only.has("tput")) {
        // As in the full bench (throughputRuns): a fresh cluster's first thousand jobs mostly
        // measure V8 compiling its hot paths.
        await using generator = throughputGenerator(client.url, 1000, 32);
        for (let i = 0; i < warmups; i++) await generator.run();
        // The floor again, just before the run: the machine's speed drifts within minutes.
        const floor = dist(await spawnFloor(200));
        const ceiling = cores / (floor.p50 / 1000);
        const w0 = workerCpuMs();
        const k0 = taskCpuMs();
        const h0 = hostCpuMs();
        const t = await generator.run();
        const h1 = hostCpuMs();
        const workerPerJob = (workerCpuMs() - w0) / 1000;
        const taskPerJob = (taskCpuMs() - k0) / 1000;
        // Cores' worth of CPU over the run: the host's (everything) and Iris's (all of the above).
        const wall = t.makespanS * 1000;
        const hostCores = (h1.busy - h0.busy) / (h1.total - h0.total) * cores;
        const irisCores = (t.controllerCpuMsPerJob + t.clientCpuMsPerJob +
          (placement === "own-process" ? workerPerJob : 0) + taskPerJob) * 1000 / wall;
        console.log(
          `tput: ${fmtNum(t.jobsPerS)} jobs/s (submits ${fmtNum(t.submitPerS)}/s, ${
            t.makespanS.toFixed(2)
          } s, ${t.failed} failed; ${(100 * t.jobsPerS / ceiling).toFixed(0)} % of spawn ceiling ${
            fmtNum(ceiling)
          }/s, spawn p50 ${fmtMs(floor.p50)} just before); CPU controller ${
            t.controllerCpuMsPerJob.toFixed(2)
          } ms/job (${t.controllerSysCpuMsPerJob.toFixed(2)} in the kernel) + clients ${
            t.clientCpuMsPerJob.toFixed(2)
          } ms/job` +
            (placement === "own-process"
              ? ` + worker process ${workerPerJob.toFixed(2)} ms/job`
              : "") +
            ` + tasks (wrappers included) ${taskPerJob.toFixed(2)} ms/job; host busy ${
              hostCores.toFixed(2)
            } of ${cores} cores, Iris ${irisCores.toFixed(2)}`,
        );
      }
      if (only.has("rpc")) {
        const r = await rpcBenchRemote(client.url);
        const single = dist(r.single);
        const same = dist(r.fetchPostSameProcesses);
        const fetchPost = dist((await fetchFloor(500)).post);
        console.log(
          `rpc: GetJobStatus ${fmtNum(r.callsPerS)} calls/s at ${r.concurrency}; single p50 ${
            fmtMs(single.p50)
          } p99 ${fmtMs(single.p99)} (${(single.p50 / same.p50).toFixed(1)}× fetch POST ${
            fmtMs(same.p50)
          } between the same processes, ${(single.p50 / fetchPost.p50).toFixed(1)}× ${
            fmtMs(fetchPost.p50)
          } in-process); GetControllerStatus (${r.statusBytes} B) ${
            fmtNum(r.statusCallsPerS)
          } calls/s, single p50 ${fmtMs(dist(r.statusSingle).p50)}; CPU/call controller ${
            r.serverCpuUsPerCall.toFixed(0)
          } µs, client ${r.clientCpuUsPerCall.toFixed(0)} µs`,
        );
      }
    },
    placement,
    durable,
  );
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--rpc-child");
  const m = Deno.args.indexOf("--memory-child");
  const f = Deno.args.indexOf("--fleet-child");
  const r = Deno.args.indexOf("--restart-child");
  const rs = Deno.args.indexOf("--restart-store-child");
  const tc = Deno.args.indexOf("--tput-child");
  if (tc >= 0) {
    const [url, n, par] = Deno.args.slice(tc + 1);
    await throughputBenchChild(url!, Number(n), Number(par));
  } else if (r >= 0) await restartChild(Deno.args[r + 1]!);
  else if (rs >= 0) {
    restartStoreChild(Deno.args[rs + 1]!, Number(Deno.args[rs + 2]), Deno.args[rs + 3] === "ran");
  } else if (f >= 0) await fleetChild(Deno.args[f + 1]!, Number(Deno.args[f + 2]));
  else if (i >= 0) await rpcBenchChild(Deno.args[i + 1]!, Deno.args[i + 2]!);
  else if (Deno.args.includes("--load")) await loadBenchMain(Deno.args);
  else if (m >= 0) {
    console.log(
      JSON.stringify(await memoryBench(Number(Deno.args[m + 1]), Number(Deno.args[m + 2]))),
    );
  } else await main();
  Deno.exit(0);
}
