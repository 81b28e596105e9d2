/**
 * Log floods over real processes (issue #16): a controller and a worker started as
 * `iris controller serve` / `iris worker serve`, as in the hostile-input run.
 * - A task printing 200 MB of 100-character lines as fast as it can, beside a `sleep` task on the
 *   same worker: no worker is declared dead, neither task restarts, and every line is accounted
 *   for (delivered, or counted in a "… N lines dropped" marker).
 * - Six tasks printing 64 KiB lines (500 each here, 190 MB in all; the issue's run had 3000):
 *   lines are cut at 16 KiB with a marker, heartbeats stay under the request limit (with the
 *   old 64 KiB lines and no byte bounds one heartbeat could carry far more than the 64 MiB
 *   limit), every task succeeds once.
 * - Task logs survive a controller restart (served from `<state_dir>/logs`).
 * Figures are printed (docs/durability.md, "Task logs").
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { IrisClient, JobState } from "../../mod.ts";
import type { LogLine } from "../../src/rpc/mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { type IrisProcess, spawnIris } from "../_helpers/iris_process.ts";
import { loadConfig } from "../../src/config/mod.ts";
import { startCluster } from "../../src/cluster/cluster.ts";

function spawnWorker(url: string, root: string): IrisProcess {
  return spawnIris([
    "worker",
    "serve",
    "--controller",
    url,
    "--root-dir",
    root,
    "--worker-id",
    "w-logs",
    "--cpu",
    "8",
    "--memory",
    "8GiB",
  ]);
}

async function withCluster(
  fn: (
    c: { url: string; client: IrisClient; controller: IrisProcess; worker: IrisProcess },
  ) => Promise<void>,
): Promise<void> {
  const stateDir = await Deno.makeTempDir({ prefix: "iris-logs-state-" });
  const root = await Deno.makeTempDir({ prefix: "iris-logs-root-" });
  try {
    await using controller = spawnIris([
      "controller",
      "serve",
      "--port",
      "0",
      "--state-dir",
      stateDir,
    ]);
    const url = (await controller.waitForLine(/Controller started at (\S+)/))[1]!;
    await using worker = spawnWorker(url, root);
    const client = new IrisClient(url, { retryFor: seconds(30) });
    await waitFor(async () => (await client.workers()).some((w) => w.healthy), {
      timeout: seconds(30),
      what: "the worker to register",
    });
    await fn({ url, client, controller, worker });
  } finally {
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

/** Every line of a job, paged with cursors. */
async function allLines(client: IrisClient, id: string): Promise<LogLine[]> {
  const out: LogLine[] = [];
  let cursor = 0;
  for (let i = 0; i < 1000; i++) {
    const page = await client.logsPage(id, { cursor, maxLines: 5000 });
    out.push(...page.lines);
    if (page.lines.length === 0) break;
    cursor = page.nextCursor;
  }
  return out;
}

/** Peak resident memory of a process (VmHWM), in MiB; NaN where /proc is not readable. */
async function peakRssMiB(pid: number): Promise<number> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const kb = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]);
    return Math.round(kb / 1024);
  } catch {
    return NaN;
  }
}

/** The sum of the counts in "… N lines dropped (…)" markers. */
function droppedCount(lines: readonly LogLine[]): number {
  let n = 0;
  for (const l of lines) {
    const m = /^… ([\d,]+) lines? dropped \(/.exec(l.text);
    if (m && l.stream === "system") n += Number(m[1]!.replaceAll(",", ""));
  }
  return n;
}

Deno.test("a task flooding its output beside a sleep task: no worker declared dead, no restart, drops counted", async () => {
  await withCluster(async ({ client, controller, worker }) => {
    const TOTAL = 2_000_000; // 200 MB of 100-character lines
    const flood = await client.submit({
      name: "flood",
      command: ["sh", "-c", `yes "$(printf %099d 7)" | head -n ${TOTAL}`],
      cpu: 1,
    });
    const sleeper = await client.submit({ name: "sleeper", command: ["sleep", "6"], cpu: 1 });
    // Watch the worker's heartbeats as the controller sees them while both run.
    let maxGap = 0;
    const started = Date.now();
    const done = await waitFor(async () => {
      const [w] = await client.workers();
      if (w) maxGap = Math.max(maxGap, Date.now() - w.lastHeartbeatMs);
      const a = await client.status(flood);
      const b = await client.status(sleeper);
      const ended = (s: typeof a) =>
        s.job!.state !== JobState.PENDING && s.job!.state !== JobState.RUNNING;
      return ended(a) && ended(b) ? { a, b } : undefined;
    }, { timeout: seconds(180), what: "both jobs to finish" });
    const took = Date.now() - started;
    assertEquals(done.a.job!.state, JobState.SUCCEEDED);
    assertEquals(done.b.job!.state, JobState.SUCCEEDED);
    assertEquals(done.a.tasks[0]!.attempts.length, 1, "the flooding task ran once");
    assertEquals(done.b.tasks[0]!.attempts.length, 1, "the sleep task ran once");
    assert(!controller.lines.some((l) => /declared dead/.test(l)), controller.lines.join("\n"));
    assert((await client.workers()).every((w) => w.healthy));
    const lines = await allLines(client, flood);
    const status = await client.call((rpc) => rpc.getControllerStatus({}));
    // The flooding task's lines are bounded at 8 MiB (log_task_memory_size); the rest is small.
    const logMiB = status.logMemoryBytes / 2 ** 20;
    assert(logMiB > 0 && logMiB <= 8.1, `controller log memory ${logMiB} MiB`);
    const workerPeak = await peakRssMiB(worker.pid);
    const controllerPeak = await peakRssMiB(controller.pid);
    // Before the bounds the worker buffered 3.24 GB for floods like these.
    assert(!(workerPeak > 1024), `worker peak RSS ${workerPeak} MiB`);
    const stdout = lines.filter((l) => l.stream === "stdout").length;
    const dropped = droppedCount(lines);
    assert(dropped > 0, "lines were dropped");
    // Every line is delivered or counted as dropped; the count may include the worker's own
    // "started pid" line when the backlog dropped it.
    assert(
      stdout + dropped - TOTAL >= 0 && stdout + dropped - TOTAL <= 1,
      `${stdout} + ${dropped}`,
    );
    assert(
      lines.some((l) => /^… [\d,]+ lines dropped \(log rate limit: 1,000 lines\/s/.test(l.text)),
    );
    console.log(
      `flood of ${TOTAL.toLocaleString("en-US")} lines beside sleep 6: both done in ${took} ms, ` +
        `${stdout.toLocaleString("en-US")} lines delivered, ${dropped.toLocaleString("en-US")} ` +
        `counted as dropped, longest heartbeat gap seen ${maxGap} ms, controller log memory ` +
        `${
          logMiB.toFixed(1)
        } MiB; peak RSS worker ${workerPeak} MiB, controller ${controllerPeak} MiB`,
    );
  });
});

Deno.test("six tasks printing 64 KiB lines: cut at 16 KiB, heartbeats accepted, each task runs once", async () => {
  const LINES = 500;
  await withCluster(async ({ client, controller, worker }) => {
    const job = await client.submit({
      name: "wide",
      replicas: 6,
      command: ["sh", "-c", `yes "$(head -c 65535 /dev/zero | tr '\\0' x)" | head -n ${LINES}`],
      cpu: 0.5,
    });
    const started = Date.now();
    const status = await client.wait(job, { timeout: seconds(180) });
    const took = Date.now() - started;
    const tasks = await client.tasks(job);
    const summary = tasks.map((t) =>
      `${t.taskId}: ${
        t.attempts.map((a) => `${JobState[a.state] ?? a.state} ${a.exitCode} ${a.error}`).join("; ")
      }`
    ).join("\n");
    assertEquals(status.state, JobState.SUCCEEDED, summary);
    assertEquals(tasks.map((t) => t.attempts.length), [1, 1, 1, 1, 1, 1], summary);
    assert(
      !controller.lines.some((l) => /declared dead/.test(l)),
      controller.lines.filter((l) => /dead|heartbeat/.test(l)).join("\n"),
    );
    assert(
      !worker.lines.some((l) => /heartbeat to controller .* failed/.test(l)),
      worker.lines.join("\n"),
    );
    const lines = await allLines(client, job);
    const stdout = lines.filter((l) => l.stream === "stdout");
    assert(stdout.length > 0);
    for (const l of stdout) {
      if (l.text !== `${"x".repeat(16384)} … [49,151 bytes truncated]`) {
        throw new Error(`unexpected line: ${l.text.slice(0, 40)}… (${l.text.length} characters)`);
      }
    }
    const dropped = droppedCount(lines);
    const workerPeak = await peakRssMiB(worker.pid);
    const controllerPeak = await peakRssMiB(controller.pid);
    assert(!(workerPeak > 1024), `worker peak RSS ${workerPeak} MiB`);
    // Every line is delivered or counted (the count may include each task's "started pid" line).
    const extra = stdout.length + dropped - 6 * LINES;
    assert(extra >= 0 && extra <= 6, `${stdout.length} delivered + ${dropped} dropped`);
    console.log(
      `6 × ${LINES} lines of 64 KiB: done in ${took} ms, ${stdout.length} lines delivered (cut to 16 KiB), ` +
        `${dropped} counted as dropped; peak RSS worker ${workerPeak} MiB, controller ${controllerPeak} MiB`,
    );
  });
});

Deno.test("task logs survive a controller restart (served from <state_dir>/logs)", async () => {
  const stateDir = await Deno.makeTempDir({ prefix: "iris-logs-state-" });
  const root = await Deno.makeTempDir({ prefix: "iris-logs-root-" });
  const serve = (port: string) =>
    spawnIris(["controller", "serve", "--port", port, "--state-dir", stateDir, "--quiet"]);
  try {
    let controller = serve("0");
    try {
      const url = (await controller.waitForLine(/Controller started at (\S+)/))[1]!;
      await using _worker = spawnWorker(url, root);
      const client = new IrisClient(url, { retryFor: seconds(30) });
      const job = await client.submit({
        name: "chatty",
        command: ["sh", "-c", "for i in 1 2 3; do echo line $i; done; echo oops >&2; exit 1"],
      });
      assertEquals((await client.wait(job, { timeout: seconds(60) })).state, JobState.FAILED);
      const texts = (ls: LogLine[]) => ls.map((l) => `${l.attemptId} ${l.stream} ${l.text}`);
      const before = texts(await allLines(client, job));
      assert(
        before.includes("0 stdout line 3") && before.includes("0 stderr oops"),
        before.join("\n"),
      );
      const files = await Array.fromAsync(Deno.readDir(`${stateDir}/logs/${job.slice(1)}`));
      assertEquals(files.map((f) => f.name), ["0@0.log"]);

      await controller.stop();
      controller = serve(new URL(url).port);
      await controller.waitForLine(/Controller started at/);
      assertEquals(texts(await allLines(client, job)), before);
      const tail = await client.logsPage(job, { tail: true, maxLines: 1, minLevel: "" });
      assertEquals(texts(tail.lines), [before.at(-1)!]);
    } finally {
      await controller.stop();
    }
  } finally {
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
});

Deno.test("controller.log_* settings of the cluster config reach the controller's log store", async () => {
  const workDir = await Deno.makeTempDir({ prefix: "iris-logs-config-" });
  try {
    const config = await loadConfig(new URL("../../examples/local.yaml", import.meta.url).pathname);
    const c = config.controller!;
    c.stateDir = `${workDir}/state`;
    c.logMemoryBytes = 64 * 2 ** 20;
    c.logTaskMemoryBytes = 2 ** 20;
    c.logRetentionMs = 3600_000;
    c.logDiskBytes = 2 ** 30;
    c.logAttemptFileBytes = 100 * 2 ** 20;
    await using cluster = await startCluster(config, { workDir, log: () => {}, vmLog: () => {} });
    assertEquals(cluster.server.controller.logs.settings, {
      memoryBytes: 64 * 2 ** 20,
      taskMemoryBytes: 2 ** 20,
      dir: `${workDir}/state/logs`,
      retention: 3600_000,
      diskBytes: 2 ** 30,
      attemptFileBytes: 100 * 2 ** 20,
    });
  } finally {
    await Deno.remove(workDir, { recursive: true }).catch(() => {});
  }
});
