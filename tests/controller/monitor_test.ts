/**
 * The liveness monitor (monitor.ts) on a fake clock: workers that miss their heartbeats are
 * declared dead and their attempts retried, a stall of the controller itself restarts the
 * deadlines, attempts no worker re-claims after a restart fail once the grace is over, and nothing
 * is declared while the state cannot be written. No I/O.
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { FakeClock, seconds } from "../../src/time.ts";
import { NotFoundError } from "../../src/errors.ts";
import { TaskState } from "../../src/rpc/mod.ts";
import { type Effects, JobTable, noEffects, type TaskRecord } from "../../src/controller/state.ts";
import { EndpointTable } from "../../src/controller/endpoints.ts";
import { Reconciler } from "../../src/controller/reconcile.ts";
import { Liveness } from "../../src/controller/liveness.ts";
import { attemptKey } from "../../src/controller/workers.ts";
import { holdAttempt } from "../../src/controller/snapshot.ts";
import {
  type MonitorContext,
  monitorLoop,
  monitorTick,
  workerDead,
} from "../../src/controller/monitor.ts";
import { spec, workerTable } from "./_concern_fixtures.ts";

type Ctx = MonitorContext & {
  clock: FakeClock;
  lines: string[];
  dead: string[];
  recorded: string[];
  performed: Effects[];
  schedules: number;
};

function context(): Ctx {
  const clock = new FakeClock();
  const lines: string[] = [];
  const ctx: Ctx = {
    jobs: new JobTable(),
    endpoints: new EndpointTable(),
    workers: workerTable(2, clock.now()),
    reconciler: new Reconciler(),
    clock,
    write: {},
    log: (line) => lines.push(line),
    liveness: new Liveness({
      clock,
      heartbeatInterval: seconds(1),
      failureThreshold: 3,
      reclaimGrace: seconds(5),
    }),
    heartbeatInterval: seconds(1),
    dispatcher: { forget: () => {} },
    reservations: { workerGone: () => {} },
    transactions: { record: (t) => ctx.recorded.push(`${t.action} ${t.entity}`) },
    onWorkerDead: (workerId) => ctx.dead.push(workerId),
    perform: (fx) => ctx.performed.push(fx),
    requestSchedule: () => ctx.schedules++,
    lines,
    dead: [],
    recorded: [],
    performed: [],
    schedules: 0,
  };
  return ctx;
}

/** A one-task job placed on `workerId`, its attempt held there. */
function placed(ctx: Ctx, name: string, workerId: string): TaskRecord {
  const { jobId } = ctx.jobs.submit(spec({ name }), `r-${name}`, ctx.clock.now(), noEffects());
  const job = ctx.jobs.job(jobId);
  const task = ctx.jobs.task(job.taskIds[0]!);
  const attempt = ctx.jobs.assign(task.taskId, workerId, ctx.clock.now());
  holdAttempt(ctx.workers, ctx.workers.workers.get(workerId)!, job, task, attempt);
  return task;
}

Deno.test("monitor: a dead worker's attempts fail and are retried; it is recorded and reported", () => {
  const ctx = context();
  const task = placed(ctx, "a", "w0");
  let threw: unknown;
  try {
    workerDead(ctx, "nobody", "test");
  } catch (err) {
    threw = err;
  }
  assert(threw instanceof NotFoundError);
  workerDead(ctx, "w0", "scale-down of group g", { scaleDown: true });
  assertEquals(ctx.workers.workers.has("w0"), false);
  assertEquals(ctx.jobs.currentAttempt(task)?.state, TaskState.WORKER_FAILED);
  assertEquals(task.state, TaskState.PENDING);
  assertEquals(ctx.recorded, ["worker_dead w0"]);
  assertEquals(ctx.dead, ["w0"]);
  assert(ctx.lines.includes("worker w0 removed: scale-down of group g"), ctx.lines.join("\n"));
  assertEquals(ctx.schedules, 1);
});

Deno.test("monitor: workers that miss their heartbeats are declared dead, on time", async () => {
  const ctx = context();
  const abort = new AbortController();
  const loop = monitorLoop(ctx, abort.signal);
  try {
    await ctx.clock.advance(seconds(2));
    ctx.workers.heartbeat(ctx.workers.workers.get("w1")!, ctx.clock.now());
    await ctx.clock.advance(seconds(1));
    assertEquals(ctx.dead, [], "3 intervals have not passed yet");
    await ctx.clock.advance(seconds(2));
    assertEquals(ctx.dead, ["w0"], "w1 heartbeat 3s ago, w0 never did");
    await ctx.clock.advance(seconds(1));
    assertEquals(ctx.dead, ["w0", "w1"]);
    assert(ctx.lines.some((l) => l.includes("declared dead: missed 3 heartbeats")));
  } finally {
    abort.abort();
    await loop;
  }
});

Deno.test("monitor: a stall of the controller itself restarts the heartbeat deadlines", () => {
  const ctx = context();
  ctx.clock.jump(seconds(10));
  monitorTick(ctx);
  assertEquals(ctx.dead, []);
  assert(ctx.lines.some((l) => l.startsWith("controller was blocked for")), ctx.lines.join());
  assertEquals(ctx.liveness.stalls.count, 1);
});

Deno.test("monitor: attempts not re-claimed after a restart fail once the grace is over", () => {
  const ctx = context();
  const task = placed(ctx, "a", "w0");
  const attempt = ctx.jobs.currentAttempt(task)!;
  const key = attemptKey(task.taskId, attempt.attemptId);
  ctx.workers.release("w0", key); // loaded from the store: not held until re-claimed
  ctx.reconciler.awaitClaim(key);
  for (let i = 0; i < 4; i++) {
    ctx.clock.jump(seconds(1));
    ctx.workers.heartbeat(ctx.workers.workers.get("w0")!, ctx.clock.now());
    ctx.workers.heartbeat(ctx.workers.workers.get("w1")!, ctx.clock.now());
    monitorTick(ctx);
  }
  assertEquals(attempt.state, TaskState.ASSIGNED, "within the re-claim grace");
  ctx.clock.jump(seconds(1));
  monitorTick(ctx);
  assertEquals(attempt.state, TaskState.WORKER_FAILED);
  assertEquals(ctx.reconciler.unclaimedCount, 0);
  assertEquals(ctx.dead, []);
});

Deno.test("monitor: nothing is declared dead while the state cannot be written", () => {
  const ctx = context();
  ctx.write.unwritable = { sinceMs: 0, reason: "disk full", reloaded: true };
  ctx.clock.jump(seconds(1));
  monitorTick(ctx);
  ctx.clock.jump(seconds(10));
  monitorTick(ctx);
  assertEquals(ctx.dead, []);
  workerDead(ctx, "w0", "test");
  assertEquals(ctx.workers.workers.size, 2);
  assert(ctx.lines.some((l) => l.includes("not declared dead while the state is unwritable")));
});
