/**
 * Passes over part of the queue (scheduling_pass.ts, PassMemo) against passes over all of it, on
 * what the equivalence test in scheduling_pass_test.ts leaves out: gangs, partly placed jobs,
 * workers registering, dying and re-registering with other sizes and attributes, failed and
 * retried tasks, cancels, scheduling timeouts, reservations, reloads of the job table, restarts
 * (workers reconnecting), attempts that stay BUILDING, small building limits and queues longer
 * than QUEUE_HEAD. After every pass the pure scheduler over the whole queue must place nothing
 * more. No I/O.
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { type FakeClock, ms } from "../../src/time.ts";
import { TaskState } from "../../src/rpc/mod.ts";
import { ConstraintOp, ResourcesSchema } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { create } from "@bufbuild/protobuf";
import { JobTable, noEffects } from "../../src/controller/state.ts";
import { Reservations } from "../../src/controller/reservations.ts";
import { clusterSnapshot, holdAttempt } from "../../src/controller/snapshot.ts";
import { parseAttemptKey, WorkerTable } from "../../src/controller/workers.ts";
import { isTaskActive } from "../../src/controller/job_rules.ts";
import { schedule } from "../../src/controller/scheduler/scheduler.ts";
import {
  performEffects,
  QUEUE_HEAD,
  scheduleOnce,
  type SchedulingPassContext,
} from "../../src/controller/scheduling_pass.ts";
import { inertPassParts, spec } from "./_concern_fixtures.ts";

type Ctx = SchedulingPassContext & {
  readonly jobs: JobTable;
  readonly workers: WorkerTable;
  readonly clock: FakeClock;
  readonly ids: Map<string, string>;
  killed: string[];
  /** Passes asked for (a pass whose effects freed room asks for the next). */
  requested: number;
  /** Passes that read part of the queue. */
  partial: number;
  wholeSnapshot(): ReturnType<typeof clusterSnapshot>;
};

function context(maxBuildingPerWorker: number, passOver: boolean): Ctx {
  const jobs = new JobTable();
  const workers = new WorkerTable();
  const reservations = new Reservations({ save: () => {}, log: () => {} });
  const sources = { jobs, workers, reservations, usage: () => new Map(), maxBuildingPerWorker };
  const ctx: Ctx = {
    ...inertPassParts(),
    jobs,
    workers,
    reservations,
    dispatcher: { dispatchJob: () => {}, kill: (a, k) => ctx.killed.push(`${a} ${k.taskId}`) },
    snapshot: (only) => {
      if (only && passOver) ctx.partial++;
      return clusterSnapshot(sources, passOver ? only : undefined);
    },
    wholeSnapshot: () => clusterSnapshot(sources),
    requestSchedule: () => ctx.requested++,
    ids: new Map(),
    killed: [],
    partial: 0,
    requested: 0,
  };
  return ctx;
}

type Random = () => number;

function generator(seed: number): Random {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
}

const pick = <T>(random: Random, xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;

/** Everything both controllers compare after a pass: task states and pending reasons. */
function observed(c: Ctx): string[] {
  const out: string[] = [];
  for (const [name, id] of c.ids) {
    const job = c.jobs.jobs.get(id);
    if (!job) continue;
    const states = job.taskIds.map((t) => c.jobs.task(t).state).join(",");
    const reason = c.jobs.pendingJobs().has(id) ? c.jobs.jobPendingReason(job)?.message : "";
    out.push(`${name} ${job.state} [${states}] ${reason}`);
  }
  return out;
}

/** One operation, applied alike to both controllers (chosen from the first one's state). */
type Op = (c: Ctx) => void;

function registerOp(random: Random, id: string): Op {
  const cpu = pick(random, [2000, 4000, 4000, 8000]);
  const pod = pick(random, ["p0", "p0", "p1", "p2"]);
  const zone = pick(random, ["a", "b"]);
  return (c) =>
    c.workers.register({
      workerId: id,
      address: `http://${id}:9000`,
      resources: create(ResourcesSchema, { cpuMillicores: cpu, memoryBytes: 8 * 2 ** 30 }),
      attributes: { pod, zone },
      scaleGroup: "",
      sliceId: "",
    }, c.clock.now());
}

function submitOp(random: Random, name: string, run: Run): Op {
  const gang = random() < 0.2;
  // Reservations turn the memo off for as long as a job holds one: churning runs only.
  const reserved = !run.calm && random() < 0.04;
  const replicas = gang ? pick(random, [2, 2, 3]) : 1 + Math.floor(random() * 4);
  const constraint = random();
  const init = {
    name,
    user: pick(random, run.users),
    priority: pick(random, run.bands),
    replicas,
    resources: {
      cpuMillicores: pick(random, [500, 500, 1000, 1500, 3000, 9000]),
      memoryBytes: 2 ** 20,
    },
    maxRetriesFailure: pick(random, [0, 1, 2]),
    ...(random() < 0.15 ? { schedulingTimeoutMs: pick(random, [500, 2000, 5000]) } : {}),
    ...(gang ? { coscheduling: { groupBy: "pod" } } : {}),
    ...(reserved ? { reservation: [{ resources: { cpuMillicores: 1000 } }] } : {}),
    constraints: constraint < 0.15
      ? [{
        key: "zone",
        op: ConstraintOp.EQ,
        value: { kind: { case: "stringValue" as const, value: "a" } },
      }]
      : constraint < 0.2
      ? [{
        key: "zone",
        op: ConstraintOp.EQ,
        value: { kind: { case: "stringValue" as const, value: "nowhere" } },
      }]
      : [],
  } as Parameters<typeof spec>[0];
  return (c) => {
    const { jobId } = c.jobs.submit(spec(init), `r-${name}`, c.clock.now(), noEffects());
    c.ids.set(name, jobId);
  };
}

/** An attempt on a worker moves on: builds, runs, ends (succeeds, fails, worker failure). */
function attemptOp(random: Random, c0: Ctx): Op | undefined {
  const keys: [string, string][] = [];
  for (const w of c0.workers.workers.values()) {
    for (const k of w.active.keys()) keys.push([w.workerId, k]);
  }
  if (keys.length === 0) return undefined;
  const [workerId, key] = pick(random, keys);
  const stopping = c0.workers.workers.get(workerId)!.active.get(key)!.state === TaskState.KILLED;
  const next = stopping ? TaskState.KILLED : pick(random, [
    TaskState.BUILDING,
    TaskState.RUNNING,
    TaskState.RUNNING,
    TaskState.SUCCEEDED,
    TaskState.FAILED,
    TaskState.WORKER_FAILED,
  ]);
  return (c) => {
    const { taskId, attemptId } = parseAttemptKey(key);
    const found = c.jobs.findAttempt(taskId, attemptId);
    const fx = noEffects();
    if (next === TaskState.BUILDING || next === TaskState.RUNNING) {
      c.workers.noteAttemptState(workerId, key, next);
      if (found) c.jobs.attemptStarted(found.task, found.attempt, next, c.clock.now(), fx);
    } else {
      c.workers.release(workerId, key);
      if (found && isTaskActive(found.attempt.state)) {
        c.jobs.attemptEnded(found.task, found.attempt, {
          state: next,
          finishedAtMs: c.clock.now(),
        }, fx);
      }
    }
    performEffects(c, fx);
  };
}

/** A worker dies: its attempts fail (WORKER_FAILED) and are retried (monitor.ts). */
function deathOp(workerId: string): Op {
  return (c) => {
    const keys = c.workers.remove(workerId);
    c.reservations.workerGone(workerId);
    const fx = noEffects();
    for (const key of keys) {
      const { taskId, attemptId } = parseAttemptKey(key);
      const found = c.jobs.findAttempt(taskId, attemptId);
      if (!found) continue;
      c.jobs.attemptEnded(found.task, found.attempt, {
        state: TaskState.WORKER_FAILED,
        finishedAtMs: c.clock.now(),
      }, fx);
    }
    performEffects(c, fx);
  };
}

function cancelOp(name: string): Op {
  return (c) => {
    const fx = noEffects();
    c.jobs.terminate(c.ids.get(name)!, "cancelled", c.clock.now(), fx);
    performEffects(c, fx);
  };
}

/** The job table is loaded again (as after a failed commit): the memo must not carry over. */
const reloadOp: Op = (c) => {
  const entries = [...c.jobs.jobs.values()].map((job) => ({
    job,
    tasks: job.taskIds.map((t) => c.jobs.task(t)),
  }));
  c.jobs.clear();
  c.jobs.restore(entries);
};

/**
 * The controller restarts: jobs reloaded, workers loaded as reconnecting (unhealthy, holding
 * nothing) until they come back ({@linkcode reclaimOp}).
 */
const restartOp: Op = (c) => {
  reloadOp(c);
  const rows = [...c.workers.workers.keys()].map((id) => c.workers.persisted(id)!);
  c.workers.restore(rows, c.clock.now());
};

/** A reconnecting worker heartbeats again and re-claims the attempts it still runs. */
function reclaimOp(workerId: string): Op {
  return (c) => {
    const worker = c.workers.workers.get(workerId)!;
    c.workers.heartbeat(worker, c.clock.now());
    for (const task of c.jobs.tasks.values()) {
      const attempt = c.jobs.currentAttempt(task);
      if (attempt?.workerId !== workerId || !isTaskActive(attempt.state)) continue;
      holdAttempt(c.workers, worker, c.jobs.job(task.jobId), task, attempt);
    }
  };
}

interface Run {
  readonly seed: number;
  readonly workers: number;
  readonly maxBuilding: number;
  /** Jobs submitted before the first pass (a queue longer than 2 × QUEUE_HEAD). */
  readonly backlog: number;
  readonly steps: number;
  /** Mostly submits and builds, so that the memo holds between passes. */
  readonly calm: boolean;
  readonly users: readonly string[];
  readonly bands: readonly number[];
}

/** Returns how many passes of the fast controller read part of the queue. */
function compare(run: Run): number {
  const random = generator(run.seed);
  const fast = context(run.maxBuilding, true);
  const whole = context(run.maxBuilding, false);
  const both = (op: Op) => {
    op(fast);
    op(whole);
  };
  let workerIds = 0;
  let jobs = 0;
  for (let i = 0; i < run.workers; i++) both(registerOp(random, `w${workerIds++}`));
  for (let i = 0; i < run.backlog; i++) both(submitOp(random, `j${jobs++}`, run));
  const at = (step: number) => `seed ${run.seed} step ${step}`;
  for (let step = 0; step < run.steps; step++) {
    let op: Op | undefined;
    const [submit, progress, register, death, cancel, jump, reload] = run.calm
      ? [0.45, 0.6, 0.61, 0.62, 0.63, 0.64, 0.645]
      : [0.3, 0.5, 0.55, 0.58, 0.61, 0.64, 0.655];
    const r = random();
    if (r < submit) op = submitOp(random, `j${jobs++}`, run);
    else if (r < progress) op = attemptOp(random, fast);
    else if (r < register) {
      const ids = [...fast.workers.workers.keys()];
      const away = [...fast.workers.workers.values()].filter((w) => !w.healthy);
      if (away.length && random() < 0.7) op = reclaimOp(pick(random, away).workerId);
      // Re-registration of a known worker (maybe resized) or a new one.
      else {
        op = registerOp(
          random,
          ids.length && random() < 0.5 ? pick(random, ids) : `w${workerIds++}`,
        );
      }
    } else if (r < death) {
      const ids = [...fast.workers.workers.keys()];
      if (ids.length > 1) op = deathOp(pick(random, ids));
    } else if (r < cancel) {
      const waiting = [...fast.ids].filter(([, id]) => fast.jobs.pendingJobs().has(id));
      if (waiting.length) op = cancelOp(pick(random, waiting)[0]);
    } else if (r < jump) {
      const d = ms(pick(random, [300, 1000, 3000]));
      op = (c) => c.clock.jump(d);
    } else if (r < reload) op = random() < 0.5 ? reloadOp : restartOp;
    if (op) {
      both(op);
      continue;
    }
    const a = scheduleOnce(fast);
    const requested = whole.requested;
    const kills = whole.killed.length;
    const b = scheduleOnce(whole);
    const placed = (c: Ctx, plan: typeof a) =>
      plan.assignments.map((x) => `${c.jobs.job(x.jobId).spec.name}/${x.taskIndex}@${x.workerId}`);
    assertEquals(placed(fast, a), placed(whole, b), at(step));
    assertEquals(observed(fast), observed(whole), at(step));
    assertEquals(fast.killed, whole.killed, at(step));
    // Nothing more fits: a pass over the whole queue now places nothing, unless the pass asked
    // for another (a claim opened a gate, a job it ended released its reservation) or sent kill
    // orders (preemptions, siblings of a timed-out task: a stopping task builds no more).
    if (whole.requested === requested && whole.killed.length === kills) {
      const again = schedule(whole.wholeSnapshot());
      assertEquals(again.claims ?? [], [], at(step));
      assertEquals(placed(whole, again), [], at(step));
    }
  }
  return fast.partial;
}

/**
 * Fixed seeds: each a small cluster, a building limit of 1–3, some with a long queue; churning
 * runs mix users and bands, calm runs have one user and band, two users in one band, or several
 * bands.
 */
const PROFILES = [
  { calm: false, users: ["alice", "alice", "bob"], bands: [1, 2, 2, 2, 3] },
  { calm: true, users: ["alice"], bands: [2] },
  { calm: true, users: ["alice", "bob"], bands: [2] },
  { calm: true, users: ["alice"], bands: [1, 2, 2, 3] },
];
const RUNS: Run[] = Array.from({ length: 300 }, (_, i) => ({
  seed: 7919 * (i + 1),
  workers: 1 + (i % 4),
  maxBuilding: 1 + (i % 3),
  backlog: i % 5 === 0 ? 2 * QUEUE_HEAD + 20 : 0,
  steps: 160,
  ...PROFILES[i % PROFILES.length]!,
}));

Deno.test("scheduling pass (randomized): passes over part of the queue decide as over all of it, with gangs, churn, retries, cancels, timeouts, reservations and reloads", () => {
  let partial = 0;
  for (const run of RUNS) partial += compare(run);
  assert(partial > RUNS.length, `passes over part of the queue: ${partial}`);
});
