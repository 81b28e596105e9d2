/**
 * The scheduling pass (scheduling_pass.ts): placements are committed before they are dispatched,
 * nothing is placed while the state cannot be written, a failed dispatch retries the task, and
 * the effects of transitions (kill orders, finished jobs) are performed. No I/O.
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { FakeClock } from "../../src/time.ts";
import { TaskState } from "../../src/rpc/mod.ts";
import { JobTable, noEffects } from "../../src/controller/state.ts";
import { EndpointTable } from "../../src/controller/endpoints.ts";
import { Reconciler } from "../../src/controller/reconcile.ts";
import { Reservations } from "../../src/controller/reservations.ts";
import { clusterSnapshot } from "../../src/controller/snapshot.ts";
import { attemptKey } from "../../src/controller/workers.ts";
import {
  anyPending,
  performEffects,
  scheduleOnce,
  type SchedulingPassContext,
} from "../../src/controller/scheduling_pass.ts";
import { spec, workerTable } from "./_concern_fixtures.ts";

type Ctx = SchedulingPassContext & {
  /** Task ids dispatched, with whether the placement was committed when RunTask left. */
  dispatched: { taskId: string; committed: boolean }[];
  killed: string[];
  lines: string[];
  snapshots: number;
  schedules: number;
  failDispatch?: (taskId: string, attemptId: number, workerId: string) => void;
};

function context(workers = 1): Ctx {
  const jobs = new JobTable();
  const table = workerTable(workers);
  const lines: string[] = [];
  const reservations = new Reservations({ save: () => {}, log: (l) => lines.push(l) });
  const ctx: Ctx = {
    jobs,
    endpoints: new EndpointTable(),
    workers: table,
    reconciler: new Reconciler(),
    clock: new FakeClock(),
    write: {},
    log: (line) => lines.push(line),
    logs: { system: () => {} },
    transactions: { record: () => {} },
    reservations,
    dispatcher: {
      dispatchJob: (_c, _job, placed, onFailed) => {
        for (const p of placed) {
          ctx.dispatched.push({ taskId: p.task.taskId, committed: jobs.dirty.size === 0 });
        }
        ctx.failDispatch = (taskId, attemptId, workerId) =>
          onFailed(taskId, attemptId, workerId, new Error("connection refused"));
      },
      kill: (address, k) => ctx.killed.push(`${address} ${k.taskId}#${k.attemptId}`),
    },
    controllerUrl: () => "http://controller:10000",
    snapshot: () => {
      ctx.snapshots++;
      return clusterSnapshot({ jobs, workers: table, reservations, usage: () => new Map() });
    },
    requestSchedule: () => ctx.schedules++,
    dispatched: [],
    killed: [],
    lines,
    snapshots: 0,
    schedules: 0,
  };
  return ctx;
}

function submit(ctx: Ctx, name: string, replicas = 1): string {
  return ctx.jobs.submit(spec({ name, replicas }), `r-${name}`, ctx.clock.now(), noEffects())
    .jobId;
}

Deno.test("scheduling pass: nothing pending, nobody reading: no snapshot at all", () => {
  const ctx = context();
  assertEquals(anyPending(ctx), false);
  assertEquals(scheduleOnce(ctx), { assignments: [], unplaced: [] });
  assertEquals(ctx.snapshots, 0);
});

Deno.test("scheduling pass: placements are held, committed, then dispatched", () => {
  const ctx = context(2);
  const jobId = submit(ctx, "a", 2);
  const seen: number[] = [];
  const plan = scheduleOnce({ ...ctx, onSchedule: (p) => seen.push(p.assignments.length) });
  assertEquals(plan.assignments.length, 2);
  assertEquals(seen, [2]);
  assertEquals(ctx.dispatched.map((d) => d.committed), [true, true]);
  const tasks = ctx.jobs.job(jobId).taskIds.map((id) => ctx.jobs.task(id));
  assertEquals(tasks.map((t) => t.state), [TaskState.ASSIGNED, TaskState.ASSIGNED]);
  const held = [...ctx.workers.workers.values()].flatMap((w) => [...w.active.keys()]).sort();
  assertEquals(held, tasks.map((t) => attemptKey(t.taskId, 0)).sort());
  assertEquals(anyPending(ctx), false);
});

Deno.test("scheduling pass: nothing is placed while the state cannot be written", () => {
  const ctx = context();
  submit(ctx, "a");
  ctx.write.unwritable = { sinceMs: 0, reason: "disk full", reloaded: true };
  assertEquals(scheduleOnce(ctx).assignments, []);
  assertEquals(ctx.snapshots, 0);
  assertEquals(ctx.dispatched, []);
});

Deno.test("scheduling pass: a failed dispatch fails the attempt, frees the worker and asks for a pass", () => {
  const ctx = context();
  const jobId = submit(ctx, "a");
  scheduleOnce(ctx);
  const task = ctx.jobs.task(ctx.jobs.job(jobId).taskIds[0]!);
  const before = ctx.schedules;
  ctx.failDispatch!(task.taskId, 0, "w0");
  assertEquals(ctx.jobs.currentAttempt(task)?.state, TaskState.WORKER_FAILED);
  assertEquals(task.state, TaskState.PENDING, "retried");
  assertEquals(ctx.workers.workers.get("w0")!.active.size, 0);
  assert(ctx.schedules > before);
  assert(ctx.lines.some((l) => l.includes("failed: connection refused")), ctx.lines.join("\n"));
});

Deno.test("scheduling pass: effects send kill orders and log finished jobs", () => {
  const ctx = context();
  const jobId = submit(ctx, "a");
  scheduleOnce(ctx);
  const fx = noEffects();
  ctx.jobs.terminate(jobId, "by test", ctx.clock.now(), fx);
  performEffects(ctx, fx);
  const key = attemptKey(ctx.jobs.job(jobId).taskIds[0]!, 0);
  assertEquals(ctx.killed, [`http://10.0.0.1:9000 ${key}`]);
  assertEquals(ctx.workers.workers.get("w0")!.active.get(key)?.state, TaskState.KILLED);
  assert(ctx.lines.some((l) => l.startsWith(`job ${jobId} finished`)), ctx.lines.join("\n"));
});
