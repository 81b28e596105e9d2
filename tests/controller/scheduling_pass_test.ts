/**
 * The scheduling pass (scheduling_pass.ts): placements are committed before they are dispatched,
 * nothing is placed while the state cannot be written, a failed dispatch retries the task, and
 * the effects of transitions (kill orders, finished jobs) are performed. No I/O.
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { FakeClock, ms } from "../../src/time.ts";
import { TaskState } from "../../src/rpc/mod.ts";
import { ConstraintOp } from "../../src/rpc/gen/iris/v1/types_pb.ts";
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
  /** How many jobs each snapshot was limited to (undefined: the whole queue). */
  only: (number | undefined)[];
  schedules: number;
  failDispatch?: (taskId: string, attemptId: number, workerId: string) => void;
};

/** `passOver`: false makes every pass read the whole queue (the snapshot ignores `only`). */
function context(workers = 1, maxBuildingPerWorker?: number, passOver = true): Ctx {
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
    snapshot: (only) => {
      ctx.snapshots++;
      ctx.only.push(only?.length);
      const sources = { jobs, workers: table, reservations, usage: () => new Map() };
      return clusterSnapshot({ ...sources, maxBuildingPerWorker }, passOver ? only : undefined);
    },
    requestSchedule: () => ctx.schedules++,
    dispatched: [],
    killed: [],
    lines,
    snapshots: 0,
    only: [],
    schedules: 0,
  };
  return ctx;
}

function submit(
  ctx: Ctx,
  name: string,
  replicas = 1,
  init: Parameters<typeof spec>[0] = {},
): string {
  const s = spec({ name, replicas, ...init });
  return ctx.jobs.submit(s, `r-${name}`, ctx.clock.now(), noEffects()).jobId;
}

/** Each pending job's reason, by job name. */
function reasons(ctx: Ctx): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const id of ctx.jobs.pendingJobs().keys()) {
    const job = ctx.jobs.job(id);
    out[job.spec.name] = ctx.jobs.jobPendingReason(job)?.message;
  }
  return out;
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

Deno.test("scheduling pass: while only submits arrive at a full cluster, a pass reads just them", () => {
  const ctx = context(1, 2);
  for (const name of ["a", "b", "c"]) submit(ctx, name);
  assertEquals(scheduleOnce(ctx).assignments.length, 2);
  const waiting = reasons(ctx).c;
  assert(waiting?.includes("building limit"), waiting);
  submit(ctx, "d");
  submit(ctx, "e");
  assertEquals(scheduleOnce(ctx).assignments, []);
  assertEquals(
    ctx.only.at(-1),
    3,
    "the snapshot held one waiting job per signature and the arrivals",
  );
  assertEquals(reasons(ctx), { c: waiting, d: waiting, e: waiting });
  // Nothing changed at all: no snapshot.
  const snapshots = ctx.snapshots;
  assertEquals(scheduleOnce(ctx).assignments, []);
  assertEquals(ctx.snapshots, snapshots);
});

Deno.test("scheduling pass: a slot freed after passes over arrivals goes to the oldest waiting job", () => {
  const ctx = context(1, 1);
  for (let i = 0; i < 200; i++) submit(ctx, `j${i}`);
  scheduleOnce(ctx);
  submit(ctx, "late");
  scheduleOnce(ctx);
  const waiting = reasons(ctx).j1;
  const held = [...ctx.workers.workers.get("w0")!.active.keys()][0]!;
  ctx.workers.release("w0", held);
  const plan = scheduleOnce(ctx);
  assertEquals(plan.assignments.map((a) => ctx.jobs.job(a.jobId).spec.name), ["j1"]);
  // One slot free: the head of the queue as far as it reaches, one job past it.
  assertEquals(ctx.only.at(-1), 2, "the head of the queue only");
  const after = reasons(ctx);
  assertEquals(Object.keys(after).length, 199);
  assert(Object.values(after).every((r) => r === waiting), waiting);
});

Deno.test("scheduling pass: a scheduling timeout fires while passes read only arrivals", () => {
  const ctx = context(1, 1);
  submit(ctx, "a");
  const timed = submit(ctx, "timed", 1, { schedulingTimeoutMs: 1000 });
  scheduleOnce(ctx);
  (ctx.clock as FakeClock).jump(ms(1000));
  submit(ctx, "late");
  scheduleOnce(ctx);
  const task = ctx.jobs.task(ctx.jobs.job(timed).taskIds[0]!);
  assertEquals(task.state, TaskState.UNSCHEDULABLE);
  assert(task.error.includes("building limit"), task.error);
  assertEquals(Object.keys(reasons(ctx)), ["late"]);
});

/**
 * Two controllers see the same submits, builds ending, tasks ending and passes; one always reads
 * the whole queue. Returns how many passes read part of it.
 */
function compareWithWholeQueue(seed: number, users: string[], bands: number[]): number {
  const fast = context(2, 3);
  const whole = context(2, 3, false);
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)]!;
  const names = (c: Ctx, plan: { assignments: readonly { jobId: string; taskIndex: number }[] }) =>
    plan.assignments.map((a) => `${c.jobs.job(a.jobId).spec.name}/${a.taskIndex}`);
  let n = 0;
  for (let step = 0; step < 400; step++) {
    const r = random();
    if (r < 0.5) {
      const init = {
        user: pick(users),
        priority: pick(bands),
        resources: { cpuMillicores: pick([500, 500, 500, 1500, 5000]), memoryBytes: 2 ** 20 },
        constraints: random() < 0.2
          ? [{
            key: "device-type",
            op: ConstraintOp.EQ,
            value: { kind: { case: "stringValue" as const, value: "cpu" } },
          }]
          : [],
      } as Parameters<typeof spec>[0];
      const replicas = 1 + Math.floor(random() * 3);
      const name = `j${n++}`;
      submit(fast, name, replicas, init);
      submit(whole, name, replicas, init);
    } else if (r < 0.7) {
      // A build ends (the task runs on) or a task ends.
      const w = `w${Math.floor(random() * 2)}`;
      const keys = [...fast.workers.workers.get(w)!.active.keys()];
      const key = keys[Math.floor(random() * keys.length)];
      for (const c of key === undefined ? [] : [fast, whole]) {
        if (r < 0.6) c.workers.noteAttemptState(w, key!, TaskState.RUNNING);
        else c.workers.release(w, key!);
      }
    } else {
      assertEquals(
        names(fast, scheduleOnce(fast)),
        names(whole, scheduleOnce(whole)),
        `step ${step}`,
      );
      assertEquals(reasons(fast), reasons(whole), `step ${step}`);
      assertEquals(fast.killed, whole.killed);
    }
  }
  return fast.only.filter((o) => o !== undefined).length;
}

Deno.test("scheduling pass: passes over part of the queue decide as passes over all of it", () => {
  for (let seed = 1; seed <= 12; seed++) {
    // Users and bands mixed (turns, preemption), and one user in one band (queue order).
    assert(compareWithWholeQueue(seed, ["alice", "bob"], [1, 2, 2, 2, 3]) > 0);
    assert(compareWithWholeQueue(seed, ["alice"], [2]) > 0);
  }
});

Deno.test("scheduling pass: a job that ends frees the workers of its reservation and asks for a pass", () => {
  const ctx = context(2);
  const jobId = submit(ctx, "held", 1, { reservation: [{ resources: { cpuMillicores: 1000 } }] });
  scheduleOnce(ctx);
  assertEquals([...ctx.reservations.reservedBy.values()], [jobId]);
  const before = ctx.schedules;
  const fx = noEffects();
  // Pending tasks only: nothing on a worker is released, only the reservation's claim.
  ctx.jobs.terminate(jobId, "by test", ctx.clock.now(), fx);
  assertEquals(fx.released, 0);
  performEffects(ctx, fx);
  assertEquals(ctx.reservations.reservedBy.size, 0);
  assert(ctx.schedules > before, "a pass is asked for: the freed worker may take another job");
});
