/**
 * Fleet scale (#20): one controller (this process, default settings, no state dir) under N
 * simulated workers driven by a load generator in its own process over real RPC. Every simulated
 * worker registers, heartbeats at the interval the controller tells it, with a resource snapshot
 * whose host figures move every time (so delta snapshots do not hide the cost), accepts RunTask
 * and RunTasks at once and reports each attempt SUCCEEDED in an immediate heartbeat. One HTTP
 * server in the generator answers WorkerService for all of them (`http://127.0.0.1:PORT/w/<i>`).
 *
 * Measured per N: controller CPU (share of one core) over a steady-state window of at least two
 * told intervals, heartbeat round trip p50/p99 seen by the generator, 1,000 one-task jobs through
 * the fleet (jobs/s), and the time from a worker's last heartbeat to its declared death next to
 * the documented bound (src/controller/heartbeat_rate.ts).
 *
 * `deno task bench --fleet 10000` (one N) or as part of `deno task bench` (1,000, 10,000, 30,000).
 * @module
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { startController } from "../src/controller/server.ts";
import { deadBound } from "../src/controller/heartbeat_rate.ts";
import {
  HeartbeatRequestSchema,
  RegisterWorkerRequestSchema,
  type TaskUpdate,
  TaskUpdateSchema,
} from "../src/rpc/gen/iris/v1/controller_pb.ts";
import {
  JobSpecSchema,
  ResourceSnapshotSchema,
  TaskState,
} from "../src/rpc/gen/iris/v1/types_pb.ts";
import {
  KillTaskResponseSchema,
  RunTaskRequestSchema,
  RunTaskResponseSchema,
  RunTasksRequestSchema,
  RunTasksResponseSchema,
} from "../src/rpc/gen/iris/v1/worker_pb.ts";
import { JobState } from "../src/rpc/gen/iris/v1/types_pb.ts";
import { ms } from "../src/time.ts";
import { controllerClient } from "../src/rpc/mod.ts";

/** What one `--fleet N` run measured. */
export interface FleetResult {
  workers: number;
  /** The heartbeat interval the controller told the fleet. */
  intervalMs: number;
  /** Controller CPU over the steady-state window, in % of one core. */
  controllerCpuPercent: number;
  /** Heartbeats the controller received per second in that window. */
  heartbeatsPerS: number;
  heartbeatP50Ms: number;
  heartbeatP99Ms: number;
  heartbeatErrors: number;
  /** Workers declared dead in the window and registered again (0 on a machine keeping up). */
  reregistered: number;
  /** Time inside the controller's heartbeat handler (no transport, no queueing). */
  handlerP50Ms: number;
  handlerP99Ms: number;
  /** Controller CPU per heartbeat received (window CPU ÷ heartbeats). */
  controllerCpuUsPerHeartbeat: number;
  /** The generator's own CPU over the window, in % of one core. */
  generatorCpuPercent: number;
  /**
   * The longest stall of the generator's and of the controller's event loop in the window (a
   * loaded machine): a heartbeat caught in one waits that long, whatever the handler costs.
   */
  generatorLagMaxMs: number;
  controllerLagMaxMs: number;
  /** Times the controller's monitor found itself blocked while the stopped worker died. */
  controllerStalls: number;
  windowS: number;
  registerS: number;
  /** 1,000 one-task jobs submitted at once, until all SUCCEEDED. */
  jobsPerS: number;
  /** From the stopped worker's last answered heartbeat to its declared death. */
  deadAfterMs: number;
  deadBoundMs: number;
  controllerRssMiB: number;
}

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

function processCpuMs(): number {
  try {
    const f = Deno.readTextFileSync("/proc/self/stat").split(") ")[1]!.split(" ");
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
}

const sleepMs = (n: number) => new Promise<void>((r) => setTimeout(r, n));

async function until(what: string, timeoutMs: number, ok: () => boolean | Promise<boolean>) {
  const t0 = performance.now();
  while (!(await ok())) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`fleet bench: ${what} (timed out)`);
    await sleepMs(50);
  }
}

// ------------------------------------------------------------------ generator (child process)

interface SimWorker {
  id: string;
  interval: number;
  /** The next wait is a random part of the interval (after a registration or a new interval). */
  spread: boolean;
  timer?: ReturnType<typeof setTimeout>;
  inFlight: boolean;
  poke: boolean;
  stopped: boolean;
  running: Map<string, { taskId: string; attemptId: number }>;
  updates: TaskUpdate[];
  lastOkMs: number;
  tick: number;
}

/** The load generator: `--fleet-child URL N`; reads commands on stdin, prints JSON at "report". */
export async function fleetChild(url: string, n: number): Promise<void> {
  // The product's client, as a real worker's heartbeat loop uses (src/rpc/http1_client.ts): Iris's
  // own HTTP/1.1 transport. One client for all: the simulated workers share its kept-alive
  // connections (at most MAX_CONNECTIONS_PER_SERVER), where real ones each open their own from
  // their own address (see the README, "Fleet scale").
  const client = controllerClient(url);
  const clientOf = (_w: SimWorker) => client;
  // The generator's own event-loop stalls (a loaded machine): they show up as heartbeat latency.
  let lagMaxMs = 0;
  let lagAt = performance.now();
  const lagTimer = setInterval(() => {
    const now = performance.now();
    lagMaxMs = Math.max(lagMaxMs, now - lagAt - 10);
    lagAt = now;
  }, 10);
  const workers: SimWorker[] = [];
  const lat: number[] = [];
  let errors = 0;
  let marked = false;
  let reregistered = 0;
  let register: (w: SimWorker) => Promise<void> = () => Promise.resolve();
  let cpuAtMark = 0;
  let wallAtMark = 0;
  let cpuPercent = NaN;
  let windowLagMaxMs = NaN;
  const beat = async (w: SimWorker) => {
    if (w.stopped || w.inFlight) return;
    w.inFlight = true;
    w.poke = false;
    clearTimeout(w.timer);
    const updates = w.updates.splice(0);
    w.tick++;
    const t0 = performance.now();
    try {
      const res = await clientOf(w).heartbeat(create(HeartbeatRequestSchema, {
        workerId: w.id,
        updates,
        running: [...w.running.values()],
        snapshot: create(ResourceSnapshotSchema, {
          timestampMs: Date.now(),
          cpuPercent: (w.tick * 7) % 100,
          memoryUsedBytes: 2 ** 30 + (w.tick % 13) * 2 ** 20,
          memoryTotalBytes: 32 * 2 ** 30,
          runningTasks: w.running.size,
          processCount: w.running.size,
          hostCpuMillicores: 500 + (w.tick * 37) % 4000,
          hostCpuTotalMillicores: 8000,
          hostMemoryUsedBytes: 4 * 2 ** 30 + (w.tick % 17) * 2 ** 20,
          hostMemoryTotalBytes: 32 * 2 ** 30,
        }),
      }));
      if (marked) lat.push(performance.now() - t0);
      w.lastOkMs = Date.now();
      // A new interval: the next wait is a random part of it, as src/worker/reporter.ts does.
      if (res.heartbeatIntervalMs > 0 && res.heartbeatIntervalMs !== w.interval) {
        w.interval = res.heartbeatIntervalMs;
        w.spread = true;
      }
      if (res.reregister) {
        // Declared dead meanwhile (a loaded machine): register again, as a real worker does.
        reregistered++;
        w.updates.unshift(...updates);
        await register(w);
      }
    } catch (err) {
      errors++;
      w.updates.unshift(...updates);
      if (errors <= 3) console.error(`fleet child: heartbeat failed: ${err}`);
    } finally {
      w.inFlight = false;
    }
    if (w.stopped) return;
    const wait = w.poke ? 0 : w.spread ? Math.random() * w.interval : w.interval;
    w.spread = false;
    w.timer = setTimeout(() => beat(w), wait);
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname; // /w/<i>/iris.v1.WorkerService/<Method>
    const m = /^\/w\/(\d+)\/iris\.v1\.WorkerService\/(\w+)$/.exec(path);
    const w = m ? workers[Number(m[1])] : undefined;
    if (!m || !w) return new Response("no such worker", { status: 404 });
    const body = new Uint8Array(await req.arrayBuffer());
    const headers = { "content-type": "application/proto" };
    if (m[2] === "RunTask" || m[2] === "RunTasks") {
      const attempts = m[2] === "RunTask"
        ? [fromBinary(RunTaskRequestSchema, body)]
        : fromBinary(RunTasksRequestSchema, body).attempts;
      const now = Date.now();
      // Accepted and finished at once: the end goes in an immediate heartbeat.
      for (const r of attempts) {
        w.updates.push(create(TaskUpdateSchema, {
          taskId: r.taskId,
          attemptId: r.attemptId,
          state: TaskState.SUCCEEDED,
          startedAtMs: now,
          finishedAtMs: now,
        }));
      }
      w.poke = true;
      if (!w.inFlight) setTimeout(() => beat(w), 0);
      const accepted = create(RunTaskResponseSchema, { accepted: true });
      const answer = m[2] === "RunTask" ? toBinary(RunTaskResponseSchema, accepted) : toBinary(
        RunTasksResponseSchema,
        create(RunTasksResponseSchema, { results: attempts.map(() => accepted) }),
      );
      return new Response(answer, { headers });
    }
    if (m[2] === "KillTask") {
      return new Response(toBinary(KillTaskResponseSchema, create(KillTaskResponseSchema)), {
        headers,
      });
    }
    return new Response("not simulated", { status: 501 });
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  register = async (w: SimWorker) => {
    const i = Number(w.id.slice(4));
    const res = await clientOf(w).registerWorker(create(RegisterWorkerRequestSchema, {
      workerId: w.id,
      address: `${base}/w/${i}`,
      resources: { cpuMillicores: 8000, memoryBytes: 32 * 2 ** 30 },
      scaleGroup: `group-${i % 10}`,
      sliceId: `slice-${i}`,
      attributes: { zone: { kind: { case: "stringValue", value: `zone-${i % 3}` } } },
    }));
    w.interval = res.heartbeatIntervalMs || 1000;
    w.spread = true;
    w.lastOkMs = Date.now();
  };
  for (let i = 0; i < n; i++) {
    workers.push({
      id: `sim-${i}`,
      interval: 1000,
      spread: false,
      inFlight: false,
      poke: false,
      stopped: false,
      running: new Map(),
      updates: [],
      lastOkMs: 0,
      tick: i,
    });
  }
  const t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (next < n) {
      const w = workers[next]!;
      const i = next++;
      await register(w).catch((err) => {
        errors++;
        console.error(`fleet child: register ${i} failed: ${err}`);
      });
      // A real worker heartbeats at once after registering, then after a random part of the
      // interval (reporter.ts): the first beat here stands for that second one.
      w.spread = false;
      w.timer = setTimeout(() => beat(w), Math.random() * w.interval);
    }
  }));
  console.error(
    `fleet child: ${n} workers registered in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  let buf = "";
  for await (const chunk of lines) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const cmd = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (cmd === "mark") {
        marked = true;
        lat.length = 0;
        lagMaxMs = 0;
        errors = 0;
        reregistered = 0;
        cpuAtMark = processCpuMs();
        wallAtMark = performance.now();
      } else if (cmd === "unmark") {
        marked = false;
        cpuPercent = 100 * (processCpuMs() - cpuAtMark) / (performance.now() - wallAtMark);
        windowLagMaxMs = lagMaxMs;
      } else if (cmd.startsWith("stop ")) {
        const w = workers[Number(cmd.slice(5))]!;
        w.stopped = true;
        clearTimeout(w.timer);
        console.log(JSON.stringify({ stopped: w.id, lastOkMs: w.lastOkMs }));
      } else if (cmd === "report") {
        for (const w of workers) {
          w.stopped = true;
          clearTimeout(w.timer);
        }
        console.log(JSON.stringify({
          heartbeats: lat.length,
          p50: percentile(lat, 50),
          p99: percentile(lat, 99),
          errors,
          reregistered,
          cpuPercent,
          intervalMs: workers.at(-1)!.interval,
          lagMaxMs: windowLagMaxMs,
        }));
        clearInterval(lagTimer);
        await server.shutdown();
        return;
      }
    }
  }
}

// ------------------------------------------------------------------ controller side

/** Runs the controller here and the generator as a child; returns what one N measured. */
export async function fleetBench(
  n: number,
  log: (line: string) => void = () => {},
): Promise<FleetResult> {
  let deadAtMs = 0;
  const ctl = startController({
    port: 0,
    log: () => {},
    onWorkerDead: (id) => {
      if (id === "sim-0") deadAtMs = Date.now();
    },
  });
  const c = ctl.controller;
  // Time inside the handler, apart from transport and queueing on a loaded machine.
  const handler: number[] = [];
  let timing = false;
  // The Heartbeat RPC's handler: applied with the other heartbeats and submits of its event-loop
  // turn, answered once their commit is done (so the time includes the rest of that turn).
  const heartbeatInGroup = c.heartbeatInGroup.bind(c);
  c.heartbeatInGroup = async (req) => {
    const t = performance.now();
    try {
      return await heartbeatInGroup(req);
    } finally {
      if (timing) handler.push(performance.now() - t);
    }
  };
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, "--fleet-child", ctl.url, `${n}`],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  const send = (cmd: string) => writer.write(new TextEncoder().encode(`${cmd}\n`));
  const out = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let outBuf = "";
  const readLine = async (): Promise<string> => {
    while (!outBuf.includes("\n")) {
      const { value, done } = await out.read();
      if (done) throw new Error("fleet generator exited early");
      outBuf += value;
    }
    const i = outBuf.indexOf("\n");
    const line = outBuf.slice(0, i);
    outBuf = outBuf.slice(i + 1);
    return line;
  };
  try {
    const t0 = performance.now();
    let lastLog = performance.now();
    await until(`${n} workers registered`, 900_000, () => {
      if (performance.now() - lastLog > 15_000) {
        lastLog = performance.now();
        log(`fleet ${n}: ${c.workers.workers.size} registered so far`);
      }
      return c.workers.workers.size >= n;
    });
    const registerS = (performance.now() - t0) / 1000;
    const interval = c.workerHeartbeatInterval();
    log(`fleet ${n}: registered in ${registerS.toFixed(1)} s; interval told ${interval} ms`);
    // Every worker has heard the final interval after one of its old intervals; then settle.
    await sleepMs(Math.max(1000, interval) + 2000);
    const windowMs = Math.max(10_000, 2 * interval);
    await send("mark");
    timing = true;
    let controllerLagMaxMs = 0;
    let lagAt = performance.now();
    const lagTimer = setInterval(() => {
      const now = performance.now();
      controllerLagMaxMs = Math.max(controllerLagMaxMs, now - lagAt - 10);
      lagAt = now;
    }, 10);
    const cpu0 = processCpuMs();
    const w0 = performance.now();
    await sleepMs(windowMs);
    // Every heartbeat in the window went through the timed handler.
    const beats = handler.length;
    if (beats === 0) {
      // Rather no figure than one divided by zero: the RPC reaches the handler some other way.
      throw new Error(`fleet ${n}: no heartbeat went through the timed handler in the window`);
    }
    const cpuMs = processCpuMs() - cpu0;
    const wallMs = performance.now() - w0;
    clearInterval(lagTimer);
    await send("unmark");
    timing = false;
    const rss = Deno.memoryUsage().rss;
    log(`fleet ${n}: steady state ${(100 * cpuMs / wallMs).toFixed(0)} % of a core`);
    // Scheduling through the fleet: 1,000 one-task jobs at once.
    const j0 = performance.now();
    const ids: string[] = [];
    for (let i = 0; i < 1000; i++) {
      ids.push(
        c.launchJob(
          create(JobSpecSchema, {
            name: `fleet-${i}`,
            user: "bench",
            entrypoint: { kind: { case: "command", value: { argv: ["true"] } } },
            resources: { cpuMillicores: 10, memoryBytes: 2 ** 24 },
          }),
          `fleet-${n}-${i}`,
        ).jobId,
      );
    }
    await until(
      "1000 fleet jobs finished",
      300_000,
      () => ids.every((id) => c.jobs.jobs.get(id)?.state === JobState.SUCCEEDED),
    );
    const jobsPerS = 1000 / ((performance.now() - j0) / 1000);
    log(`fleet ${n}: 1000 jobs at ${jobsPerS.toFixed(0)}/s`);
    // Liveness: stop one worker and time its declared death.
    deadAtMs = 0; // a death during the ramp-up (a loaded machine) is not this one
    const stalls0 = c.stalls.count;
    await send("stop 0");
    const stopped = JSON.parse(await readLine()) as { lastOkMs: number };
    const told = c.workers.workers.get("sim-0")?.heartbeatIntervalMs ?? interval;
    const bound = deadBound(ms(told), 3, c.heartbeatInterval);
    await until("sim-0 declared dead", bound + 30_000, () => deadAtMs > 0);
    log(`fleet ${n}: stopped worker declared dead after ${deadAtMs - stopped.lastOkMs} ms`);
    await send("report");
    const rep = JSON.parse(await readLine()) as {
      heartbeats: number;
      p50: number;
      p99: number;
      errors: number;
      reregistered: number;
      cpuPercent: number;
      intervalMs: number;
      lagMaxMs: number;
    };
    return {
      workers: n,
      intervalMs: interval,
      controllerCpuPercent: 100 * cpuMs / wallMs,
      heartbeatsPerS: beats / (wallMs / 1000),
      heartbeatP50Ms: rep.p50,
      heartbeatP99Ms: rep.p99,
      heartbeatErrors: rep.errors,
      reregistered: rep.reregistered,
      handlerP50Ms: percentile(handler, 50),
      handlerP99Ms: percentile(handler, 99),
      controllerCpuUsPerHeartbeat: cpuMs * 1000 / Math.max(1, beats),
      generatorCpuPercent: rep.cpuPercent,
      generatorLagMaxMs: rep.lagMaxMs,
      controllerLagMaxMs,
      controllerStalls: c.stalls.count - stalls0,
      windowS: wallMs / 1000,
      registerS,
      jobsPerS,
      deadAfterMs: deadAtMs - stopped.lastOkMs,
      deadBoundMs: bound,
      controllerRssMiB: rss / 2 ** 20,
    };
  } finally {
    await writer.close().catch(() => {});
    try {
      child.kill();
    } catch { /* exited */ }
    await child.status;
    await out.cancel().catch(() => {});
    await ctl.stop();
  }
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--fleet-child");
  if (i >= 0) {
    await fleetChild(Deno.args[i + 1]!, Number(Deno.args[i + 2]));
    Deno.exit(0);
  }
}
