/**
 * `iris smoke`: proves a whole cluster works. One code path for every mode: phase 0 (images and
 * leftovers; skipped locally), 1 start the cluster through the config's lifecycle, 2 connect,
 * 3 run the jobs through the client API, 4 results and cleanup. A global deadline is enforced;
 * every started thing is stopped and awaited whatever happens.
 * @module
 */
import type { ClusterConfig } from "../rpc/gen/iris/v1/config_pb.ts";
import { AcceleratorType } from "../rpc/gen/iris/v1/types_pb.ts";
import { configMode } from "../config/mod.ts";
import { IrisClient, isFinished } from "../client/mod.ts";
import {
  type ClusterConnection,
  connectCluster,
  createControllerLifecycle,
  LocalController,
  readLocalRecord,
  removeLeftovers,
  stopCluster,
  writeLocalRecord,
} from "../cluster/mod.ts";
import type { ControllerLifecycle } from "../platform/mod.ts";
import { JobState } from "../rpc/mod.ts";
import { type Duration, ms, seconds } from "../time.ts";
import { formatDuration } from "../format.ts";
import { describeError } from "../errors.ts";
import { LogTree, taskLogHeader } from "./log_tree.ts";
import { type RegionTarget, SMOKE_JOBS, type SmokeContext, SmokeFailure } from "./jobs.ts";

/** Options for {@linkcode runSmoke}. */
export interface SmokeOptions {
  readonly config: ClusterConfig;
  readonly configPath: string;
  /** Global limit for the whole run. */
  readonly timeout: Duration;
  readonly logDir: string;
  /** Only these jobs (names as in SMOKE_JOBS). */
  readonly only?: readonly string[];
  /**
   * full: clean start (remote: leftovers removed), run, stop everything. keep: the same but the
   * cluster stays up afterwards (local: until Ctrl-C or `iris cluster stop`; remote: the run
   * exits and prints how to reach and stop it). redeploy: no clean start; the running cluster is
   * reused (remote: its controller restarted with this code; local: the running
   * `iris cluster start`), and it stays up. @default "full"
   */
  readonly mode?: SmokeMode;
  /** Per-job wait limit. @default min(timeout, 300s) */
  readonly jobTimeout?: Duration;
  /** The slice variant of the TPU jobs (tpu-hello, coscheduled). @default DEFAULT_TPU_TYPE */
  readonly tpuType?: string;
  readonly print: (line: string) => void;
  /** Rewrites the progress line in place when true. */
  readonly isTty: boolean;
  readonly signal: AbortSignal;
}

/** How the smoke test treats the cluster (see {@linkcode SmokeOptions.mode}). */
export type SmokeMode = "full" | "keep" | "redeploy";

/** Every smoke mode, for the CLI. */
export const SMOKE_MODES: readonly SmokeMode[] = ["full", "keep", "redeploy"];

/** The TPU jobs' slice variant when --tpu-type is not given. */
export const DEFAULT_TPU_TYPE = "v5litepod-16";

/** One job's result. */
export interface SmokeResult {
  readonly name: string;
  readonly passed: boolean;
  readonly durationMs: number;
  readonly detail: string;
}

/**
 * Where the region jobs can go: one entry per CPU or TPU scale group with a region, CPU groups
 * first, each in config order.
 */
function regionTargets(config: ClusterConfig): RegionTarget[] {
  const cpu: RegionTarget[] = [];
  const tpu: RegionTarget[] = [];
  for (const g of Object.values(config.scaleGroups)) {
    if (!g.region) continue;
    if (g.acceleratorType === AcceleratorType.CPU) cpu.push({ region: g.region });
    if (g.acceleratorType === AcceleratorType.TPU && g.acceleratorVariant) {
      tpu.push({ region: g.region, tpuVariant: g.acceleratorVariant });
    }
  }
  return [...cpu, ...tpu];
}

function irisArgv(): string[] {
  const main = Deno.mainModule;
  if (main.startsWith("file:") && /\.(ts|js)$/.test(main)) {
    return [Deno.execPath(), "run", "-A", new URL(main).pathname];
  }
  return [Deno.execPath()];
}

/** Runs the smoke test; resolves to the exit code (0 only if every job passed). */
export async function runSmoke(o: SmokeOptions): Promise<number> {
  const deadline = AbortSignal.timeout(o.timeout);
  const signal = AbortSignal.any([o.signal, deadline]);
  const why =
    () => (deadline.aborted
      ? `global timeout of ${formatDuration(o.timeout)} reached`
      : "interrupted");
  using tree = new LogTree(o.logDir, o.print);
  const mode = configMode(o.config);
  const runMode = o.mode ?? "full";
  const jobTimeout = o.jobTimeout ?? ms(Math.min(o.timeout, seconds(300)));
  const tpuType = o.tpuType ?? DEFAULT_TPU_TYPE;
  const selected = o.only?.length ? SMOKE_JOBS.filter((j) => o.only!.includes(j.name)) : SMOKE_JOBS;
  tree.markdown(
    `# Iris smoke test\n\n- started: ${
      new Date().toISOString()
    }\n- config: ${o.configPath} (${mode})\n- jobs: ${
      selected.map((j) => j.name).join(", ")
    }\n- mode: ${runMode}\n- log dir: ${o.logDir}\n- timeout: ${
      formatDuration(o.timeout)
    } (per job ${formatDuration(jobTimeout)})\n- TPU type: ${tpuType}\n`,
  );
  const results: SmokeResult[] = [];
  const submitted = new Map<string, string>();
  let lifecycle: ControllerLifecycle | undefined;
  /** Whether this run stops the cluster at the end (not when it is left up for the user). */
  let stopAtEnd = true;
  let connection: ClusterConnection | undefined;
  let monitor: Promise<void> | undefined;
  const stopMonitor = new AbortController();
  let current = "";
  try {
    tree.section("Phase 0: images and leftover resources");
    const running = mode === "local" && runMode === "redeploy"
      ? await readLocalRecord(o.config.name)
      : undefined;
    if (mode === "local") {
      tree.log("skipped: a local cluster needs no images and leaves no cloud resources");
    } else if (runMode === "redeploy") {
      tree.log("skipped: --mode redeploy reuses the running cluster (no image build is needed)");
    } else {
      tree.log("no image build is needed (workers run iris from the bootstrap script)");
      // A clean start: what an earlier run left is listed and removed (logged line by line).
      await abortable(
        removeLeftovers(o.config, { log: (line) => tree.log(line), timeout: seconds(120) }),
        signal,
        why,
      );
    }

    tree.section("Phase 1: start the cluster");
    let url: string;
    if (running) {
      // Another process (`iris cluster start`) owns this local cluster and runs its own code.
      url = running.url;
      stopAtEnd = false;
      tree.log(
        `redeploy: using the running local cluster '${o.config.name}' at ${url} (pid ${running.pid}); it runs its own code, so nothing is redeployed`,
      );
    } else {
      const controllerLog = tree.writer("controller.log");
      lifecycle = createControllerLifecycle(o.config, {
        configText: await Deno.readTextFile(o.configPath).catch(() => undefined),
        log: (line) => controllerLog.write(line + "\n"),
        vmLog: (workerId, line) => tree.writer(`workers/${workerId}.log`).write(line + "\n"),
      });
      // A remote cluster left up (keep, redeploy) outlives this process; a local one lives here.
      if (runMode !== "full" && mode !== "local") stopAtEnd = false;
      const started = performance.now();
      const redeploy = runMode === "redeploy" && mode !== "local";
      url = await abortable(redeploy ? lifecycle.reload() : lifecycle.start(), signal, why);
      tree.log(
        `controller ${redeploy ? "redeployed" : "started"} at ${url} in ${
          (performance.now() - started).toFixed(0)
        } ms`,
      );
      tree.writer("cluster-start.log").write(await lifecycle.fetchStartupLogs());
    }

    tree.section("Phase 2: connect");
    // gcp: the controller's internal IP is reached through an ssh tunnel. gcp/manual: the
    // connection also streams the controller's and workers' logs into <log dir>/daemons
    // (seed 004); a local cluster runs in this process and writes its logs here itself.
    // Closing the connection in cleanup stops the followers and the tunnel.
    connection = await connectCluster(o.config, {
      lifecycle,
      controllerUrl: url,
      logDir: `${o.logDir}/daemons`,
      onLogError: (e) => tree.log(`log streaming: ${describeError(e)}`, "WARN"),
    });
    tree.log(
      connection.via === "direct"
        ? `direct connection to ${url}`
        : `connected to ${url} at ${connection.url} through an ${connection.via}`,
    );
    const client = new IrisClient(connection.url);
    const health = connection.via === "direct" && lifecycle
      ? await lifecycle.status()
      : { healthy: (await client.rpc.getControllerStatus({})).healthy, message: connection.via };
    if (!health.healthy) throw new Error(`controller is not healthy: ${health.message ?? ""}`);
    tree.log(`controller healthy: ${health.message ?? ""}`);
    monitor = monitorLoop(client, tree, stopMonitor.signal);

    tree.section("Phase 3: jobs");
    const ctx: SmokeContext = {
      client,
      runId: new Date().toISOString().slice(11, 19).replace(/:/g, ""),
      jobTimeout,
      tpuVariant: tpuType,
      signal,
      irisArgv: irisArgv(),
      regionTargets: regionTargets(o.config),
      submit: async (test, request) => {
        const id = await client.submit(request);
        submitted.set(id, test);
        return id;
      },
      wait: (jobId) => client.wait(jobId, { timeout: ctx.jobTimeout, signal }),
    };
    const progress = progressLoop(client, tree, o, () => current, submitted, signal);
    try {
      for (const job of selected) {
        if (signal.aborted) {
          results.push({
            name: job.name,
            passed: false,
            durationMs: 0,
            detail: `not run: ${why()}`,
          });
          continue;
        }
        current = job.name;
        tree.log(`${job.name}: ${job.description}`);
        const t0 = performance.now();
        try {
          const detail = await abortable(job.run(ctx), signal, why);
          results.push({
            name: job.name,
            passed: true,
            durationMs: performance.now() - t0,
            detail,
          });
          tree.log(`[PASS] ${job.name}: ${detail}`);
        } catch (err) {
          const detail = signal.aborted
            ? `${why()} while running`
            : err instanceof SmokeFailure
            ? err.message
            : describeError(err);
          results.push({
            name: job.name,
            passed: false,
            durationMs: performance.now() - t0,
            detail,
          });
          tree.log(`[FAIL] ${job.name}: ${detail}`, "ERROR");
        }
        await collectTaskLogs(client, tree, submitted, job.name, o.print).catch((e) =>
          tree.log(`could not collect task logs: ${describeError(e)}`, "WARN")
        );
        await logAutoscalerStatus(client, tree, job.name);
      }
    } finally {
      current = "";
      await progress;
    }
    if (runMode !== "full" && !signal.aborted) await leaveUp(o, tree, url, lifecycle);
  } catch (err) {
    tree.log(`smoke test aborted: ${signal.aborted ? why() : describeError(err)}`, "ERROR");
    if (results.length === 0) {
      results.push({
        name: "cluster",
        passed: false,
        durationMs: 0,
        detail: signal.aborted ? why() : describeError(err),
      });
    }
  } finally {
    tree.section("Phase 4: results and cleanup");
    await cleanup(tree, {
      lifecycle,
      submitted,
      stopMonitor,
      monitor,
      clientUrl: connection?.url,
      config: o.config,
      stopCluster: stopAtEnd,
    });
    await connection?.close().catch((e) => tree.log(`closing the connection: ${describeError(e)}`));
  }
  const passed = results.filter((r) => r.passed).length;
  const total = Math.max(results.length, selected.length);
  const rows = results.map((r) =>
    `| ${r.passed ? "PASS" : "FAIL"} | ${r.name} | ${(r.durationMs / 1000).toFixed(1)} s | ${
      r.detail.replace(/\|/g, "\\|")
    } |`
  );
  tree.markdown(`\n| result | job | duration | detail |\n|---|---|---|---|\n${rows.join("\n")}\n`);
  const nameWidth = Math.max(12, ...results.map((r) => r.name.length));
  for (const r of results) {
    o.print(
      `  [${r.passed ? "PASS" : "FAIL"}] ${r.name.padEnd(nameWidth)} ${
        (r.durationMs / 1000).toFixed(1).padStart(6)
      } s  ${r.detail}`,
    );
  }
  tree.log(
    `${passed}/${total} jobs passed in ${tree.elapsed()} s`,
    passed === total ? "INFO" : "ERROR",
  );
  tree.markdown(
    `\n## Artifacts\n\n${
      tree.artifacts().map((a) => `- ${a.path} (${a.bytes} bytes)`).join("\n")
    }\n`,
  );
  o.print(`Logs: ${o.logDir}/summary.md`);
  return passed === total && results.length === selected.length ? 0 : 1;
}

/**
 * `--mode keep|redeploy` after the jobs: says how to reach and stop the cluster. A cluster living
 * in this process (local) stays up until Ctrl-C or `iris cluster stop` (it is recorded like one
 * `iris cluster start` runs); a remote one outlives this process.
 */
async function leaveUp(
  o: SmokeOptions,
  tree: LogTree,
  url: string,
  lifecycle: ControllerLifecycle | undefined,
): Promise<void> {
  const how =
    `status: iris cluster status --config ${o.configPath}; stop: iris cluster stop --config ${o.configPath}`;
  if (!(lifecycle instanceof LocalController)) {
    tree.log(
      `--mode ${o.mode}: the cluster is kept up; controller ${url} (dashboard at the same URL)` +
        `${
          configMode(o.config) === "gcp"
            ? ", reached through an ssh tunnel by iris cluster status"
            : ""
        }; ${how}`,
    );
    return;
  }
  const other = await readLocalRecord(o.config.name);
  await using _record = other ? undefined : await writeLocalRecord({
    name: o.config.name,
    pid: Deno.pid,
    url,
    logDir: o.logDir,
    startedAtMs: Date.now(),
  });
  tree.log(
    `--mode ${o.mode}: the cluster is kept up at ${url} (dashboard at the same URL) until Ctrl-C` +
      (other
        ? ` (another local cluster '${o.config.name}' is recorded, so iris cluster stop reaches that one)`
        : ` or: iris cluster stop --config ${o.configPath}; status: iris cluster status --config ${o.configPath}`),
  );
  await new Promise<void>((resolve) => {
    if (o.signal.aborted) return resolve();
    o.signal.addEventListener("abort", () => resolve(), { once: true });
  });
  tree.log("stopping the kept cluster");
}

/** After each job: the autoscaler's demand and every group's slices, into summary.md. */
async function logAutoscalerStatus(client: IrisClient, tree: LogTree, test: string) {
  try {
    const st = await client.autoscalerStatus();
    if (!st.enabled) return;
    const demand = st.groups.filter((g) => g.demandSlices > 0).map((g) =>
      `${g.name}=${g.demandSlices}`
    );
    tree.log(
      `autoscaler after ${test}: demand ${demand.join(", ") || "none"}; unmet ${
        st.unmetDemand.length ? st.unmetDemand.join("; ") : "none"
      }`,
    );
    for (const g of st.groups) {
      const states = new Map<string, number>();
      for (const s of g.slices) states.set(s.state, (states.get(s.state) ?? 0) + 1);
      tree.log(
        `  scale group ${g.name}: ${
          g.acceleratorVariant || "cpu"
        }, slices ${g.minSlices}..${g.maxSlices}, ${
          [...states].map(([k, v]) => `${v} ${k}`).join(", ") || "none"
        } now, demand ${g.demandSlices}, ${g.availability}`,
      );
    }
  } catch (err) {
    tree.log(`(could not fetch autoscaler status: ${describeError(err)})`, "WARN");
  }
}

/** What {@linkcode cleanup} works on. */
interface CleanupState {
  readonly lifecycle: ControllerLifecycle | undefined;
  readonly submitted: Map<string, string>;
  readonly stopMonitor: AbortController;
  readonly monitor: Promise<void> | undefined;
  readonly clientUrl: string | undefined;
  readonly config: ClusterConfig;
  /** False when the cluster is left up (keep/redeploy on a remote or another process's cluster). */
  readonly stopCluster: boolean;
}

/**
 * Cancels unfinished jobs, stops the monitor and (unless it is left up) the cluster: each step
 * runs even if one fails.
 */
async function cleanup(tree: LogTree, s: CleanupState): Promise<void> {
  const { lifecycle, submitted, stopMonitor, monitor, clientUrl, config } = s;
  const url = clientUrl ?? await lifecycle?.discover().catch(() => undefined);
  if (url && submitted.size) {
    const client = new IrisClient(url, { retryFor: seconds(2) });
    const cancelled: string[] = [];
    await Promise.allSettled([...submitted.keys()].map(async (id) => {
      const st = await client.status(id);
      if (st.job && !isFinished(st.job.state)) {
        cancelled.push(...await client.cancel(id, "smoke test cleanup"));
      }
    }));
    if (cancelled.length) tree.log(`cancelled unfinished jobs: ${cancelled.join(", ")}`, "WARN");
  }
  stopMonitor.abort();
  await monitor?.catch(() => {});
  if (!s.stopCluster) {
    tree.log("the cluster is left running");
    return;
  }
  try {
    const t0 = performance.now();
    if (lifecycle && configMode(config) !== "local") {
      // gcp/manual slices outlive their controller: stop the controller and every slice.
      await stopCluster(config, { lifecycle, log: (line) => tree.log(line) });
    } else await lifecycle?.stop();
    if (lifecycle) tree.log(`cluster stopped in ${(performance.now() - t0).toFixed(0)} ms`);
  } catch (err) {
    tree.log(`stopping the cluster failed: ${describeError(err)}`, "ERROR");
  }
}

function abortable<T>(p: Promise<T>, signal: AbortSignal, why: () => string): Promise<T> {
  if (signal.aborted) return Promise.reject(new Error(why()));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error(why()));
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Polls scheduling state through the RPC API into JSON snapshots. */
async function monitorLoop(client: IrisClient, tree: LogTree, signal: AbortSignal): Promise<void> {
  const out = tree.writer("scheduling-snapshots.jsonl");
  while (!signal.aborted) {
    try {
      const [jobs, workers, autoscaler] = await Promise.all([
        client.list({ limit: 500 }),
        client.workers(),
        client.autoscalerStatus(),
      ]);
      out.write(
        JSON.stringify({
          at: new Date().toISOString(),
          jobs: jobs.jobs.map((j) => ({
            id: j.jobId,
            state: JobState[j.state],
            tasks: j.taskStateCounts,
            pending: j.pendingReason?.message ?? "",
          })),
          workers: workers.map((w) => ({
            id: w.workerId,
            group: w.scaleGroup,
            running: w.runningTaskIds.length,
          })),
          groups: autoscaler.groups.map((g) => ({
            name: g.name,
            slices: g.slices.map((s) => s.state),
            demand: g.demandSlices,
            availability: g.availability,
          })),
          unmet: autoscaler.unmetDemand,
        }) + "\n",
      );
    } catch { /* the controller may be stopping */ }
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 1000);
      signal.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
    });
  }
}

/** Live progress: which job, state counts, elapsed. */
async function progressLoop(
  client: IrisClient,
  tree: LogTree,
  o: SmokeOptions,
  current: () => string,
  submitted: Map<string, string>,
  signal: AbortSignal,
): Promise<void> {
  let lastPrinted = 0;
  while (current() || submitted.size === 0) {
    if (signal.aborted) break;
    await new Promise((r) => setTimeout(r, 500));
    const name = current();
    if (!name) break;
    const counts: Record<string, number> = {};
    try {
      for (const [id, test] of submitted) {
        if (test !== name) continue;
        const st = (await client.status(id)).job;
        if (st) {
          counts[JobState[st.state]!.toLowerCase()] =
            (counts[JobState[st.state]!.toLowerCase()] ?? 0) + 1;
        }
      }
    } catch { /* progress is best-effort */ }
    const text = `… ${name}: ${
      Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ") || "starting"
    } (${tree.elapsed()} s)`;
    if (o.isTty) {
      Deno.stdout.writeSync(new TextEncoder().encode(`\r\x1b[2K${text}`));
    } else if (Date.now() - lastPrinted > 5000) {
      o.print(text);
      lastPrinted = Date.now();
    }
  }
  if (o.isTty) Deno.stdout.writeSync(new TextEncoder().encode("\r\x1b[2K"));
}

/** Writes task-logs/<job>/task-<i>.log for the jobs of one test; echoes the tail on failure. */
async function collectTaskLogs(
  client: IrisClient,
  tree: LogTree,
  submitted: Map<string, string>,
  test: string,
  print: (l: string) => void,
): Promise<void> {
  for (const [jobId, t] of submitted) {
    if (t !== test) continue;
    const { job, tasks } = await client.status(jobId);
    for (const task of tasks) {
      const lines = await client.logs(task.taskId);
      const w = tree.writer(
        `task-logs/${
          jobId.replace(/^\//, "").replace(/[^A-Za-z0-9._-]/g, "_")
        }/task-${task.index}.log`,
      );
      w.write(taskLogHeader({
        test,
        jobId,
        jobState: job?.state ?? JobState.UNSPECIFIED,
        taskIndex: task.index,
        taskState: task.state,
      }));
      for (const l of lines) {
        w.write(`[${new Date(l.timestampMs).toISOString()}] [${l.stream}] ${l.text}\n`);
      }
      if (job && job.state !== JobState.SUCCEEDED && job.state !== JobState.KILLED) {
        for (const l of lines.slice(-50)) print(`    ${task.taskId} | ${l.text}`);
      }
    }
  }
}
