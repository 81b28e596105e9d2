/**
 * The scheduler's preemption choices and reservation holds, on hand-built snapshots: victims of
 * lower bands only (never PRODUCTION), whole gangs, lowest band and newest first, minimal sets,
 * capacity already being released used first, same device variant only.
 */
import assert from "node:assert/strict";
import { schedule } from "../../src/controller/scheduler/scheduler.ts";
import type {
  AcceleratorSpec,
  Attributes,
  Band,
  ClusterSnapshot,
  RunningTask,
  SchedulerJob,
  SchedulerWorker,
} from "../../src/types.ts";
import { timestamp } from "../../src/time.ts";

const GiB = 2 ** 30;
const CPU: AcceleratorSpec = { kind: "cpu", variant: "", count: 0 };
const V5: AcceleratorSpec = { kind: "tpu", variant: "v5litepod-16", count: 4 };
const V4: AcceleratorSpec = { kind: "tpu", variant: "v4-8", count: 4 };

/** A worker with `cpu` cores of which `used` are held by the given running tasks. */
function worker(
  id: string,
  opts: {
    cpu?: number;
    used?: number;
    acc?: AcceleratorSpec;
    attributes?: Attributes;
    releasing?: number;
    reservedFor?: string;
  } = {},
): SchedulerWorker {
  const acc = opts.acc ?? CPU;
  const cpu = opts.cpu ?? 4;
  const used = opts.used ?? 0;
  return {
    id,
    sliceId: `slice-${id}`,
    scaleGroup: "g",
    accelerator: acc,
    total: { cpuMillicores: cpu * 1000, memoryBytes: 16 * GiB, accelerators: acc.count },
    free: {
      cpuMillicores: (cpu - used - (opts.releasing ?? 0)) * 1000,
      memoryBytes: 16 * GiB,
      accelerators: acc.count === 0 ? 0 : used > 0 ? 0 : acc.count,
    },
    attributes: opts.attributes ?? {},
    healthy: true,
    buildingCount: 0,
    ...(opts.releasing
      ? { releasing: { cpuMillicores: opts.releasing * 1000, memoryBytes: 0, accelerators: 0 } }
      : {}),
    ...(opts.reservedFor ? { reservedFor: opts.reservedFor } : {}),
  };
}

function job(jobId: string, band: Band, opts: {
  tasks?: number;
  cpu?: number;
  acc?: AcceleratorSpec;
  groupBy?: string;
} = {}): SchedulerJob {
  const n = opts.tasks ?? 1;
  const acc = opts.acc ?? CPU;
  return {
    jobId,
    resources: { cpuMillicores: (opts.cpu ?? 1) * 1000, memoryBytes: GiB, accelerators: acc.count },
    accelerator: acc,
    constraints: [],
    groupBy: opts.groupBy,
    replicas: n,
    pendingTaskIndices: Array.from({ length: n }, (_, i) => i),
    band,
    submittedAt: timestamp(0),
  };
}

function running(
  jobId: string,
  taskIndex: number,
  workerId: string,
  band: Band,
  opts: { cpu?: number; acc?: number; gang?: boolean; since?: number } = {},
): RunningTask {
  return {
    jobId,
    taskIndex,
    workerId,
    band,
    resources: {
      cpuMillicores: (opts.cpu ?? 1) * 1000,
      memoryBytes: GiB,
      accelerators: opts.acc ?? 0,
    },
    gang: opts.gang ?? false,
    since: timestamp(opts.since ?? 0),
  };
}

function victims(snapshot: ClusterSnapshot): string[] {
  return (schedule(snapshot).preemptions ?? []).map((p) =>
    `${p.jobId}/${p.taskIndex}@${p.workerId}`
  )
    .sort();
}

Deno.test("a PRODUCTION job preempts the newest BATCH tasks, only as many as it needs", () => {
  const snapshot: ClusterSnapshot = {
    workers: [worker("w1", { used: 4 })],
    jobs: [job("/p", 1, { cpu: 2 })],
    running: [0, 1, 2, 3].map((i) => running("/batch", i, "w1", 3, { since: i })),
  };
  const plan = schedule(snapshot);
  assert.deepEqual(victims(snapshot), ["/batch/2@w1", "/batch/3@w1"]);
  assert.equal(plan.assignments.length, 0, "the job waits for its victims to stop");
  assert.equal(plan.unplaced[0]?.reason.code, "preempting");
  assert.match(plan.unplaced[0]!.reason.message, /preempting 2 lower-band task/);
  assert.equal(plan.preemptions![0]!.forJobId, "/p");
});

Deno.test("PRODUCTION tasks are never preempted, and a band never preempts its own", () => {
  const snapshot: ClusterSnapshot = {
    workers: [worker("w1", { used: 4 })],
    jobs: [job("/p", 1), job("/i", 2), job("/b", 3)],
    running: [
      running("/prod", 0, "w1", 1, { cpu: 2 }),
      running("/inter", 0, "w1", 2, { cpu: 2 }),
    ],
  };
  // /p may take /inter (INTERACTIVE < PRODUCTION); /i may not take /inter (same band) nor /prod.
  const plan = schedule(snapshot);
  assert.deepEqual(
    (plan.preemptions ?? []).map((p) => [p.jobId, p.forJobId]),
    [["/inter", "/p"]],
  );
  const onlyProd: ClusterSnapshot = { ...snapshot, running: [running("/prod", 0, "w1", 1)] };
  assert.deepEqual(victims(onlyProd), []);
  const batchOnly: ClusterSnapshot = {
    workers: [worker("w1", { used: 4 })],
    jobs: [job("/b", 3)],
    running: [running("/other-batch", 0, "w1", 3, { cpu: 4 })],
  };
  assert.deepEqual(victims(batchOnly), [], "BATCH preempts nobody");
});

Deno.test("lowest band first: BATCH victims are chosen over newer INTERACTIVE ones", () => {
  const snapshot: ClusterSnapshot = {
    workers: [worker("w1", { used: 4 }), worker("w2", { used: 4 })],
    jobs: [job("/p", 1, { cpu: 4 })],
    running: [
      running("/inter", 0, "w1", 2, { cpu: 4, since: 100 }),
      running("/batch", 0, "w2", 3, { cpu: 4, since: 1 }),
    ],
  };
  assert.deepEqual(victims(snapshot), ["/batch/0@w2"]);
});

Deno.test("minimal victims: the worker needing one eviction wins over one needing three", () => {
  const snapshot: ClusterSnapshot = {
    workers: [worker("w1", { used: 4 }), worker("w2", { used: 4 })],
    jobs: [job("/p", 1, { cpu: 3 })],
    running: [
      running("/a", 0, "w1", 3, { since: 10 }),
      running("/a", 1, "w1", 3, { since: 11 }),
      running("/a", 2, "w1", 3, { since: 12 }),
      running("/a", 3, "w1", 3, { since: 13 }),
      running("/big", 0, "w2", 3, { cpu: 4, since: 1 }),
    ],
  };
  assert.deepEqual(victims(snapshot), ["/big/0@w2"]);
  // On one worker, a superfluous small victim is trimmed when a big one alone suffices.
  const trimmed: ClusterSnapshot = {
    workers: [worker("w1", { used: 4 })],
    jobs: [job("/p", 1, { cpu: 3 })],
    running: [
      running("/small", 0, "w1", 3, { cpu: 1, since: 50 }),
      running("/big", 0, "w1", 3, { cpu: 3, since: 1 }),
    ],
  };
  assert.deepEqual(victims(trimmed), ["/big/0@w1"]);
});

Deno.test("a coscheduled victim is preempted whole, across all its workers", () => {
  const workers = [0, 1, 2, 3].map((h) =>
    worker(`v5-${h}`, {
      acc: V5,
      cpu: 8,
      used: 8,
      attributes: { "tpu-name": "s", "tpu-worker-id": h },
    })
  );
  const snapshot: ClusterSnapshot = {
    workers,
    jobs: [job("/p", 1, { acc: V5, cpu: 8 })],
    running: [0, 1, 2, 3].map((h) =>
      running("/gang", h, `v5-${h}`, 3, { cpu: 8, acc: 4, gang: true })
    ),
  };
  assert.deepEqual(victims(snapshot), [
    "/gang/0@v5-0",
    "/gang/1@v5-1",
    "/gang/2@v5-2",
    "/gang/3@v5-3",
  ]);
  const plan = schedule(snapshot);
  assert.match(plan.preemptions![0]!.reason, /whole gang of 4/);
});

Deno.test("a gang preemptor takes one group, evicting a whole victim gang once", () => {
  const workers = [0, 1, 2, 3].map((h) =>
    worker(`v5-${h}`, {
      acc: V5,
      cpu: 8,
      used: 8,
      attributes: { "tpu-name": "s", "tpu-worker-id": h },
    })
  );
  const snapshot: ClusterSnapshot = {
    workers,
    jobs: [job("/p", 2, { acc: V5, cpu: 8, tasks: 4, groupBy: "tpu-name" })],
    running: [0, 1, 2, 3].map((h) =>
      running("/gang", h, `v5-${h}`, 3, { cpu: 8, acc: 4, gang: true })
    ),
  };
  const plan = schedule(snapshot);
  assert.equal(plan.preemptions?.length, 4);
  assert.equal(plan.unplaced[0]?.reason.code, "preempting");
});

Deno.test("victims must be on workers of the same device variant the job can use", () => {
  const snapshot: ClusterSnapshot = {
    workers: [worker("v4", { acc: V4, cpu: 8, used: 8 })],
    jobs: [job("/p", 1, { acc: V5, cpu: 8 })],
    running: [running("/b", 0, "v4", 3, { cpu: 8, acc: 4 })],
  };
  assert.deepEqual(victims(snapshot), []);
  const cpuJob: ClusterSnapshot = { ...snapshot, jobs: [job("/c", 1, { cpu: 1 })] };
  assert.deepEqual(victims(cpuJob), [], "a cpu job never evicts TPU tasks");
});

Deno.test("capacity being released is used before anything new is preempted", () => {
  const snapshot: ClusterSnapshot = {
    workers: [worker("w1", { used: 2, releasing: 2 })],
    jobs: [job("/p", 1, { cpu: 2 })],
    running: [running("/b", 0, "w1", 3, { cpu: 2 })],
  };
  const plan = schedule(snapshot);
  assert.deepEqual(plan.preemptions, []);
  assert.equal(plan.unplaced[0]?.reason.code, "preempting");
  assert.match(plan.unplaced[0]!.reason.message, /waiting for preempted or killed tasks/);
});

Deno.test("two blocked jobs do not both claim the same victim", () => {
  const snapshot: ClusterSnapshot = {
    workers: [worker("w1", { used: 4 }), worker("w2", { used: 4 })],
    jobs: [job("/p1", 1, { cpu: 4 }), job("/p2", 2, { cpu: 4 })],
    running: [
      running("/b", 0, "w1", 3, { cpu: 4, since: 2 }),
      running("/b", 1, "w2", 3, { cpu: 4, since: 1 }),
    ],
  };
  const plan = schedule(snapshot);
  assert.deepEqual(
    (plan.preemptions ?? []).map((p) => [`${p.jobId}/${p.taskIndex}`, p.forJobId]),
    [["/b/0", "/p1"], ["/b/1", "/p2"]],
    "the newest victim goes to the higher band",
  );
  assert.equal(new Set(plan.preemptions!.map((p) => p.workerId)).size, 2);
});

Deno.test("no preemption pass without running tasks, or when the blocked job fits elsewhere", () => {
  const idle: ClusterSnapshot = {
    workers: [worker("w1", { used: 4 }), worker("w2")],
    jobs: [job("/p", 1, { cpu: 4 })],
    running: [running("/b", 0, "w1", 3, { cpu: 4 })],
  };
  const plan = schedule(idle);
  assert.deepEqual(plan.preemptions, []);
  assert.deepEqual(plan.assignments.map((a) => a.workerId), ["w2"]);
});

Deno.test("reservations: an idle matching worker is claimed and held for its job only", () => {
  const snapshot: ClusterSnapshot = {
    workers: [worker("busy", { used: 1 }), worker("idle-a"), worker("idle-b")],
    jobs: [job("/other", 2, { tasks: 8, cpu: 1 })],
    reservations: [{
      jobId: "/res",
      entries: [{
        index: 0,
        resources: { cpuMillicores: 2000, memoryBytes: GiB, accelerators: 0 },
        accelerator: CPU,
        constraints: [],
      }],
    }],
  };
  const plan = schedule(snapshot);
  assert.deepEqual(plan.claims, [{ jobId: "/res", entryIndex: 0, workerId: "idle-a" }]);
  assert(!plan.assignments.some((a) => a.workerId === "idle-a"), "others are kept off it");
  assert.equal(plan.assignments.length, 3 + 4);
  // A held worker takes its holder's tasks.
  const held: ClusterSnapshot = {
    workers: [worker("w", { reservedFor: "/res" })],
    jobs: [job("/other", 2), job("/res", 2)],
  };
  const plan2 = schedule(held);
  assert.deepEqual(plan2.assignments.map((a) => a.jobId), ["/res"]);
  assert.equal(plan2.unplaced[0]?.jobId, "/other");
});

Deno.test("reservations: entries match accelerator and constraints; unmatched stay unclaimed", () => {
  const snapshot: ClusterSnapshot = {
    workers: [
      worker("cpu-1", { attributes: { region: "us" } }),
      worker("cpu-2", { attributes: { region: "eu" } }),
    ],
    jobs: [],
    reservations: [{
      jobId: "/res",
      entries: [
        {
          index: 0,
          resources: { cpuMillicores: 1000, memoryBytes: 0, accelerators: 0 },
          accelerator: CPU,
          constraints: [{ key: "region", op: "eq", value: "eu" }],
        },
        {
          index: 1,
          resources: { cpuMillicores: 0, memoryBytes: 0, accelerators: 4 },
          accelerator: V5,
          constraints: [],
        },
      ],
    }],
  };
  assert.deepEqual(schedule(snapshot).claims, [{
    jobId: "/res",
    entryIndex: 0,
    workerId: "cpu-2",
  }]);
});

Deno.test("room promised to a blocked higher band is kept from lower bands in the same pass", () => {
  // 1 core free, 1 core being released: enough for /p's 2 cores once the victim has stopped.
  const snapshot: ClusterSnapshot = {
    workers: [worker("w1", { cpu: 2, releasing: 1 })],
    jobs: [job("/p", 1, { cpu: 2 }), job("/b", 3, { cpu: 1 })],
    running: [running("/x", 0, "w1", 3)],
  };
  const plan = schedule(snapshot);
  assert.deepEqual(plan.assignments, [], "the BATCH job does not take the promised core");
  assert.deepEqual(plan.preemptions, []);
  assert.equal(plan.unplaced.find((u) => u.jobId === "/p")?.reason.code, "preempting");
  // Without the blocked PRODUCTION job the BATCH job takes the free core.
  const alone = schedule({ ...snapshot, jobs: [job("/b", 3, { cpu: 1 })] });
  assert.deepEqual(alone.assignments.map((a) => a.jobId), ["/b"]);
});

Deno.test("reservations: the holder's tasks go to its held workers first", () => {
  const snapshot: ClusterSnapshot = {
    workers: [worker("free-1"), worker("held", { reservedFor: "/res" }), worker("free-2")],
    jobs: [job("/res", 2, { cpu: 4 })],
  };
  assert.deepEqual(schedule(snapshot).assignments.map((a) => a.workerId), ["held"]);
});

Deno.test("room promised on a worker at its building limit keeps no building slot from other workers", () => {
  // w1 has cores for /p but builds its one task already; w2 has room for /b only. The promise on
  // w1 must not count as a building slot taken: /b still goes to w2 in this pass.
  const snapshot: ClusterSnapshot = {
    workers: [{ ...worker("w1", { cpu: 4, used: 1 }), buildingCount: 1 }, worker("w2", { cpu: 1 })],
    jobs: [job("/p", 1, { cpu: 2 }), job("/b", 3, { cpu: 1 })],
    running: [running("/x", 0, "w1", 3)],
    maxBuildingPerWorker: 1,
  };
  const plan = schedule(snapshot);
  assert.deepEqual(plan.assignments.map((a) => `${a.jobId}@${a.workerId}`), ["/b@w2"]);
});
