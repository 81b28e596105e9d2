import assert from "node:assert/strict";
import { schedule } from "../../src/controller/scheduler/scheduler.ts";
import { acceleratorMatches, matchesRequired } from "../../src/controller/constraints.ts";
import type {
  AcceleratorSpec,
  Attributes,
  ClusterSnapshot,
  ConstraintSpec,
  SchedulePlan,
  SchedulerJob,
  SchedulerWorker,
} from "../../src/types.ts";
import { makeCluster } from "../_helpers/synthetic_clusters.ts";
import { schedulerJob as job, schedulerWorker as worker } from "../_helpers/snapshot.ts";

const GiB = 2 ** 30;
const CPU: AcceleratorSpec = { kind: "cpu", variant: "", count: 0 };

function tpuSlice(
  name: string,
  variant: string,
  hosts: number,
  extra: Attributes = {},
): SchedulerWorker[] {
  const acc: AcceleratorSpec = { kind: "tpu", variant, count: 4 };
  return Array.from({ length: hosts }, (_, i) =>
    worker(`${name}-w${i}`, {
      cpu: 100,
      memGiB: 300,
      acc,
      attributes: { "tpu-name": name, "tpu-worker-id": i, ...extra },
    }));
}

function placed(plan: SchedulePlan, jobId: string): Map<number, string> {
  return new Map(
    plan.assignments.filter((a) => a.jobId === jobId).map((a) => [a.taskIndex, a.workerId]),
  );
}

function reasonOf(plan: SchedulePlan, jobId: string) {
  return plan.unplaced.find((u) => u.jobId === jobId);
}

/** Checks no worker is over-committed and every gang is whole on one group. */
function assertInvariants(snapshot: ClusterSnapshot, plan: SchedulePlan): void {
  const workers = new Map(snapshot.workers.map((w) => [w.id, w]));
  const jobs = new Map(snapshot.jobs.map((j) => [j.jobId, j]));
  const used = new Map<string, { cpu: number; mem: number; acc: number; n: number }>();
  const byJob = new Map<string, Map<number, string>>();
  for (const a of plan.assignments) {
    const w = workers.get(a.workerId)!;
    const j = jobs.get(a.jobId)!;
    let tasks = byJob.get(a.jobId);
    if (!tasks) byJob.set(a.jobId, tasks = new Map());
    assert.ok(!tasks.has(a.taskIndex), `task placed twice: ${a.jobId}#${a.taskIndex}`);
    tasks.set(a.taskIndex, a.workerId);
    assert.ok(w.healthy, `placed on unhealthy ${w.id}`);
    assert.ok(j.pendingTaskIndices.includes(a.taskIndex));
    assert.equal(w.accelerator.kind, j.accelerator.kind);
    const u = used.get(w.id) ?? { cpu: 0, mem: 0, acc: 0, n: 0 };
    u.cpu += j.resources.cpuMillicores;
    u.mem += j.resources.memoryBytes;
    u.acc += j.accelerator.count;
    u.n++;
    used.set(w.id, u);
  }
  for (const [id, u] of used) {
    const w = workers.get(id)!;
    assert.ok(u.cpu <= w.free.cpuMillicores, `cpu over-committed on ${id}`);
    assert.ok(u.mem <= w.free.memoryBytes, `memory over-committed on ${id}`);
    assert.ok(u.acc <= w.free.accelerators, `accelerators over-committed on ${id}`);
    const limit = snapshot.maxBuildingPerWorker ?? 0;
    if (limit > 0) assert.ok(w.buildingCount + u.n <= limit, `building limit exceeded on ${id}`);
  }
  const unplaced = new Map(plan.unplaced.map((u) => [u.jobId, u.taskCount]));
  for (const j of snapshot.jobs) {
    const got = byJob.get(j.jobId) ?? new Map<number, string>();
    assert.equal(
      got.size + (unplaced.get(j.jobId) ?? 0),
      j.pendingTaskIndices.length,
      `accounting ${j.jobId}`,
    );
    if (j.groupBy === undefined || got.size === 0) continue;
    assert.equal(got.size, j.pendingTaskIndices.length, `gang ${j.jobId} split`);
    const values = new Set(
      [...got.values()].map((id) => String(workers.get(id)!.attributes[j.groupBy!])),
    );
    assert.equal(values.size, 1, `gang ${j.jobId} spans ${[...values].join(",")}`);
  }
}

Deno.test("schedule() honours cpu and memory and reports the shortfall with numbers", () => {
  const snapshot = {
    workers: [worker("w1", { cpu: 4, memGiB: 8 })],
    jobs: [job("a", { tasks: 3, cpu: 2, memGiB: 2 })],
  };
  const plan = schedule(snapshot);
  assert.equal(plan.assignments.length, 2);
  assert.deepEqual(reasonOf(plan, "a")?.taskCount, 1);
  assert.equal(reasonOf(plan, "a")?.reason.code, "insufficient_cpu");
  const mem = schedule({
    workers: [worker("w1", { memGiB: 32, freeMemGiB: 8 })],
    jobs: [job("b", { memGiB: 64 })],
  });
  assert.equal(mem.unplaced[0]?.reason.code, "insufficient_memory");
  assert.match(
    mem.unplaced[0]!.reason.message,
    /no eligible worker has 64 GiB memory in total \(largest: 32 GiB on 1 of 1 eligible workers\); it can never fit/,
  );
  const now = schedule({
    workers: [
      worker("w1", { memGiB: 128, freeMemGiB: 8 }),
      worker("w2", { memGiB: 128, freeMemGiB: 4 }),
    ],
    jobs: [job("c", { memGiB: 64 })],
  });
  assert.equal(now.unplaced[0]?.reason.code, "insufficient_memory");
  assert.match(
    now.unplaced[0]!.reason.message,
    /no worker has 64 GiB free memory \(largest free: 8 GiB on 1 of 2 eligible workers\); waiting/,
  );
  assert.equal(now.unplaced[0]!.reason.workersConsidered, 2);
});

Deno.test("schedule() packs several tasks per worker and never over-commits", () => {
  const snapshot = {
    workers: [worker("w1", { cpu: 4 }), worker("w2", { cpu: 4 })],
    jobs: [job("a", { tasks: 5, cpu: 1 }), job("b", { tasks: 4, cpu: 1 })],
  };
  const plan = schedule(snapshot);
  assert.equal(plan.assignments.length, 8);
  assert.equal(reasonOf(plan, "b")?.taskCount, 1);
  assertInvariants(snapshot, plan);
});

Deno.test("schedule() matches accelerator kind and variant; cpu jobs stay on cpu workers", () => {
  const v48: AcceleratorSpec = { kind: "tpu", variant: "v4-8", count: 4 };
  const snapshot = {
    workers: [worker("tpu1", { acc: v48 }), worker("cpu1")],
    jobs: [
      job("wants-v5e", { acc: { kind: "tpu", variant: "v5litepod-16", count: 4 } }),
      job("any-tpu", { acc: { kind: "tpu", variant: "", count: 4 } }),
      job("cpu", { tasks: 1 }),
    ],
  };
  const plan = schedule(snapshot);
  assert.equal(placed(plan, "any-tpu").get(0), "tpu1");
  assert.equal(placed(plan, "cpu").get(0), "cpu1");
  const r = reasonOf(plan, "wants-v5e")!.reason;
  assert.equal(r.code, "accelerator_mismatch");
  assert.equal(r.message, "no tpu v5litepod-16 worker (2 workers considered)");
  const cpuOnlyTpu = schedule({ workers: [worker("tpu1", { acc: v48 })], jobs: [job("cpu")] });
  assert.equal(cpuOnlyTpu.unplaced[0]?.reason.code, "accelerator_mismatch");
  assert.match(
    cpuOnlyTpu.unplaced[0]!.reason.message,
    /cpu jobs run only on workers without accelerators/,
  );
});

Deno.test("schedule() requires constraints and explains which one fails", () => {
  const workers = [
    worker("us", { attributes: { region: "us-central1" } }),
    worker("eu-tainted", { attributes: { region: "europe-west4", "taint:maintenance": true } }),
    worker("eu", { attributes: { region: "europe-west4" } }),
  ];
  const plan = schedule({
    workers,
    jobs: [
      job("eu", {
        tasks: 2,
        cpu: 4,
        constraints: [{ key: "region", op: "eq", value: "europe-west4" }, {
          key: "taint:maintenance",
          op: "not_exists",
        }],
      }),
      job("asia", { constraints: [{ key: "region", op: "eq", value: "asia-east1" }] }),
      job("both", {
        constraints: [{ key: "region", op: "eq", value: "us-central1" }, {
          key: "taint:maintenance",
          op: "exists",
        }],
      }),
    ],
  });
  assert.deepEqual([...placed(plan, "eu").values()], ["eu", "eu"]);
  assert.equal(
    reasonOf(plan, "asia")?.reason.message,
    "no worker matches region = asia-east1 (0 of 3 cpu-only workers)",
  );
  assert.equal(reasonOf(plan, "both")?.reason.code, "constraint_unsatisfied");
  assert.match(
    reasonOf(plan, "both")!.reason.message,
    /all constraints together: region = us-central1 \(1 of 3\), taint:maintenance exists \(1 of 3\)/,
  );
});

Deno.test("schedule() lets an unconstrained job use a tainted worker (taints are plain attributes)", () => {
  const plan = schedule({
    workers: [worker("t", { attributes: { "taint:spot": true } })],
    jobs: [job("a")],
  });
  assert.equal(placed(plan, "a").get(0), "t");
});

Deno.test("schedule() places a gang all on one slice with task i on tpu-worker-id i", () => {
  const variant = "v5litepod-16";
  const a = tpuSlice("slice-a", variant, 4);
  const b = tpuSlice("slice-b", variant, 4);
  // Shuffle snapshot order so placement must follow tpu-worker-id, not position.
  const workers = [b[2]!, a[3]!, a[1]!, b[0]!, a[0]!, b[3]!, a[2]!, b[1]!];
  const gang = (id: string) =>
    job(id, {
      tasks: 4,
      cpu: 10,
      memGiB: 10,
      acc: { kind: "tpu", variant, count: 4 },
      groupBy: "tpu-name",
    });
  const snapshot = { workers, jobs: [gang("g1"), gang("g2"), gang("g3")] };
  const plan = schedule(snapshot);
  assertInvariants(snapshot, plan);
  for (const id of ["g1", "g2"]) {
    const got = placed(plan, id);
    assert.equal(got.size, 4);
    const slice = got.get(0)!.split("-w")[0];
    for (let i = 0; i < 4; i++) assert.equal(got.get(i), `${slice}-w${i}`);
  }
  assert.notEqual(placed(plan, "g1").get(0), placed(plan, "g2").get(0));
  const r = reasonOf(plan, "g3")!;
  assert.equal(r.taskCount, 4);
  assert.equal(r.reason.code, "gang_no_slice");
  assert.match(
    r.reason.message,
    /needs 4 workers with the same tpu-name; best group has 0 free \(2 groups considered\)/,
  );
});

Deno.test("schedule() never splits a gang across slices even when the total would fit", () => {
  const variant = "v5litepod-16";
  const a = tpuSlice("a", variant, 4);
  const b = tpuSlice("b", variant, 4);
  const busy = (w: SchedulerWorker) => ({ ...w, free: { ...w.free, accelerators: 0 } });
  const workers = [a[0]!, a[1]!, a[2]!, busy(a[3]!), b[0]!, b[1]!, busy(b[2]!), busy(b[3]!)];
  const plan = schedule({
    workers,
    jobs: [job("g", { tasks: 4, acc: { kind: "tpu", variant, count: 4 }, groupBy: "tpu-name" })],
  });
  assert.equal(plan.assignments.length, 0);
  assert.match(plan.unplaced[0]!.reason.message, /best group has 3 free/);
  const never = schedule({
    workers: a.slice(0, 2),
    jobs: [job("g", { tasks: 4, acc: { kind: "tpu", variant, count: 4 }, groupBy: "tpu-name" })],
  });
  assert.match(
    never.unplaced[0]!.reason.message,
    /largest group has 2 eligible workers \(1 groups\); it can never fit/,
  );
});

Deno.test("schedule() prefers the smallest group that fits a gang", () => {
  const big = tpuSlice("big", "v5litepod-32", 8).map((w) => ({
    ...w,
    accelerator: { ...w.accelerator, variant: "x" },
  }));
  const small = tpuSlice("small", "x", 2);
  const plan = schedule({
    workers: [...big, ...small],
    jobs: [
      job("g", { tasks: 2, acc: { kind: "tpu", variant: "x", count: 4 }, groupBy: "tpu-name" }),
    ],
  });
  assert.deepEqual([...placed(plan, "g").values()], ["small-w0", "small-w1"]);
});

Deno.test("schedule() has no head-of-line blocking: a job too big to fit does not stop later jobs", () => {
  const plan = schedule({
    workers: [worker("w1", { cpu: 4 }), worker("w2", { cpu: 4 })],
    jobs: [
      job("huge", { cpu: 64 }),
      job("gang", { tasks: 3, groupBy: "pool" }),
      job("small", { tasks: 6, cpu: 1 }),
    ],
  });
  assert.equal(placed(plan, "small").size, 6);
  assert.equal(reasonOf(plan, "huge")?.reason.code, "insufficient_cpu");
  assert.match(reasonOf(plan, "gang")!.reason.message, /no eligible worker has a pool attribute/);
});

Deno.test("schedule() serves lower bands first, then snapshot order", () => {
  const plan = schedule({
    workers: [worker("w1", { cpu: 2 })],
    jobs: [
      job("batch", { cpu: 2, band: 3 }),
      job("prod", { cpu: 2, band: 1 }),
      job("prod2", { cpu: 2, band: 1 }),
    ],
  });
  assert.deepEqual(plan.assignments.map((a) => a.jobId), ["prod"]);
  assert.deepEqual(plan.unplaced.map((u) => u.jobId), ["prod2", "batch"]);
});

Deno.test("schedule() respects the building limit including placements of this plan", () => {
  const snapshot = {
    workers: [worker("w1", { building: 1 }), worker("w2", { building: 2 })],
    jobs: [job("a", { tasks: 3, cpu: 0.1 })],
    maxBuildingPerWorker: 2,
  };
  const plan = schedule(snapshot);
  assert.equal(plan.assignments.length, 1);
  assert.equal(plan.assignments[0]?.workerId, "w1");
  const r = reasonOf(plan, "a")!;
  assert.equal(r.taskCount, 2);
  assert.equal(r.reason.code, "building_limit");
  assert.match(
    r.reason.message,
    /all 2 workers with room are at the building limit \(2 ASSIGNED\/BUILDING each\)/,
  );
  assertInvariants(snapshot, plan);
});

Deno.test("schedule() behind a full building window still explains each job by its own shape", () => {
  // The first job takes the only slot; the rest of the queue is explained without being searched.
  const snapshot = {
    workers: [worker("w1", { cpu: 4, memGiB: 8 })],
    jobs: [
      job("a", { cpu: 1 }),
      job("huge", { cpu: 1, memGiB: 64 }),
      job("b", { cpu: 1 }),
      job("c", { cpu: 1, tasks: 2 }),
    ],
    maxBuildingPerWorker: 1,
  };
  const plan = schedule(snapshot);
  assert.deepEqual(plan.assignments.map((a) => a.jobId), ["a"]);
  assert.deepEqual(plan.unplaced.map((u) => [u.jobId, u.taskCount, u.reason.code]), [
    ["huge", 1, "insufficient_memory"],
    ["b", 1, "building_limit"],
    ["c", 2, "building_limit"],
  ]);
  assertInvariants(snapshot, plan);
  assertComplete(snapshot, plan);
});

Deno.test("schedule() reports no_workers when nothing is healthy and skips unhealthy workers", () => {
  const plan = schedule({ workers: [worker("w1", { healthy: false })], jobs: [job("a")] });
  assert.equal(plan.unplaced[0]?.reason.code, "no_workers");
  assert.equal(plan.unplaced[0]?.reason.message, "no healthy workers (1 registered)");
  const mixed = schedule({
    workers: [worker("sick", { healthy: false }), worker("ok")],
    jobs: [job("a")],
  });
  assert.equal(placed(mixed, "a").get(0), "ok");
});

Deno.test("schedule() reports accelerator shortfalls and the building limit as distinct codes", () => {
  const v48: AcceleratorSpec = { kind: "tpu", variant: "v4-8", count: 4 };
  const w = {
    ...worker("t", { acc: v48 }),
    free: { cpuMillicores: 8000, memoryBytes: 32 * GiB, accelerators: 2 },
  };
  const plan = schedule({ workers: [w], jobs: [job("a", { acc: v48 })] });
  assert.equal(plan.unplaced[0]?.reason.code, "insufficient_accelerator");
  assert.match(
    plan.unplaced[0]!.reason.message,
    /no worker has 4 free tpu accelerators \(largest free: 2 on 1 of 1/,
  );
  const eight = schedule({ workers: [w], jobs: [job("b", { acc: { ...v48, count: 8 } })] });
  assert.match(eight.unplaced[0]!.reason.message, /can never fit/);
});

Deno.test("schedule() ranks workers by preferred constraints without requiring them", () => {
  const workers = [
    worker("a", { attributes: { zone: "a" } }),
    worker("b", { attributes: { zone: "b" } }),
  ];
  const prefer = (
    zone: string,
  ): ConstraintSpec[] => [{ key: "zone", op: "eq", value: zone, preferred: true }];
  assert.equal(
    schedule({ workers, jobs: [job("j", { constraints: prefer("b") })] }).assignments[0]?.workerId,
    "b",
  );
  assert.equal(
    schedule({ workers, jobs: [job("j", { constraints: prefer("a") })] }).assignments[0]?.workerId,
    "a",
  );
  assert.equal(
    schedule({ workers, jobs: [job("j", { constraints: prefer("z") })] }).assignments[0]?.workerId,
    "a",
  );
  const spill = schedule({
    workers,
    jobs: [job("j", { tasks: 12, cpu: 1, constraints: prefer("b") })],
  });
  assert.equal(spill.assignments.filter((x) => x.workerId === "b").length, 8);
  assert.equal(spill.assignments.length, 12);
});

Deno.test("schedule() does not mutate its input", () => {
  const snapshot = {
    workers: [...tpuSlice("s", "v4-32", 4), worker("c1"), worker("c2", { building: 1 })],
    jobs: [
      job("g", { tasks: 4, acc: { kind: "tpu", variant: "v4-32", count: 4 }, groupBy: "tpu-name" }),
      job("c", { tasks: 20 }),
    ],
    maxBuildingPerWorker: 4,
  };
  const before = JSON.stringify(snapshot);
  deepFreeze(snapshot);
  const plan = schedule(snapshot);
  assert.ok(plan.assignments.length > 0);
  assert.equal(JSON.stringify(snapshot), before);
});

function deepFreeze(o: unknown): void {
  if (o === null || typeof o !== "object" || Object.isFrozen(o)) return;
  Object.freeze(o);
  for (const v of Object.values(o)) deepFreeze(v);
}

Deno.test("schedule() on 10k workers and 100k pending tasks keeps every invariant", () => {
  const snapshot = makeCluster({ workers: 10_000, tasks: 100_000, seed: 7 });
  const plan = schedule(snapshot);
  assert.ok(plan.assignments.length > 50_000, `only ${plan.assignments.length} placed`);
  assertInvariants(snapshot, plan);
  const gangs = new Set(snapshot.jobs.filter((j) => j.groupBy !== undefined).map((j) => j.jobId));
  assert.ok(plan.assignments.some((a) => gangs.has(a.jobId)), "no gang placed");
  for (const u of plan.unplaced) assert.ok(u.reason.message.length > 0 && u.taskCount > 0);
});

Deno.test("schedule() ranks gang groups by preferred constraints", () => {
  const variant = "v5litepod-16";
  const workers = [
    ...tpuSlice("a", variant, 4, { zone: "a" }),
    ...tpuSlice("b", variant, 4, { zone: "b" }),
  ];
  const acc: AcceleratorSpec = { kind: "tpu", variant, count: 4 };
  const constraints: ConstraintSpec[] = [{ key: "zone", op: "eq", value: "b", preferred: true }];
  const plan = schedule({
    workers,
    jobs: [job("g", { tasks: 4, acc, groupBy: "tpu-name", constraints })],
  });
  assert.deepEqual([...placed(plan, "g").values()], ["b-w0", "b-w1", "b-w2", "b-w3"]);
});

/** Deterministic PRNG for the property tests. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a * 1664525 + 1013904223) >>> 0;
    return a / 4294967296;
  };
}

/** After the pass, an unplaced job must have no eligible worker (or gang group) with room left. */
function assertComplete(snapshot: ClusterSnapshot, plan: SchedulePlan): void {
  const jobs = new Map(snapshot.jobs.map((j) => [j.jobId, j]));
  const free = new Map(
    snapshot.workers.map((w) => [w.id, { ...w.free, building: w.buildingCount }]),
  );
  for (const a of plan.assignments) {
    const j = jobs.get(a.jobId)!;
    const f = free.get(a.workerId)!;
    free.set(a.workerId, {
      cpuMillicores: f.cpuMillicores - j.resources.cpuMillicores,
      memoryBytes: f.memoryBytes - j.resources.memoryBytes,
      accelerators: f.accelerators - j.accelerator.count,
      building: f.building + 1,
    });
  }
  const limit = snapshot.maxBuildingPerWorker ?? 0;
  for (const u of plan.unplaced) {
    const j = jobs.get(u.jobId)!;
    const fitting = snapshot.workers.filter((w) => {
      const f = free.get(w.id)!;
      return w.healthy && acceleratorMatches(j.accelerator, w.accelerator) &&
        matchesRequired(w.attributes, j.constraints) &&
        f.cpuMillicores >= j.resources.cpuMillicores && f.memoryBytes >= j.resources.memoryBytes &&
        f.accelerators >= j.accelerator.count && (limit === 0 || f.building < limit);
    });
    if (j.groupBy === undefined) {
      assert.equal(
        fitting.length,
        0,
        `${j.jobId} left pending although ${fitting[0]?.id} has room`,
      );
      continue;
    }
    const perGroup = new Map<string, number>();
    for (const w of fitting) {
      const v = w.attributes[j.groupBy];
      if (v !== undefined) perGroup.set(String(v), (perGroup.get(String(v)) ?? 0) + 1);
    }
    const best = Math.max(0, ...perGroup.values());
    assert.ok(
      best < j.pendingTaskIndices.length,
      `gang ${j.jobId} left pending although a group has ${best} free`,
    );
  }
}

Deno.test("schedule() on random clusters places every task that still fits (property)", () => {
  for (let seed = 1; seed <= 60; seed++) {
    const r = prng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const accs: AcceleratorSpec[] = [CPU, { kind: "tpu", variant: "v4-8", count: 4 }, {
      kind: "gpu",
      variant: "h100",
      count: 8,
    }];
    const workers: SchedulerWorker[] = [];
    for (let i = 0; i < 10 + Math.floor(r() * 40); i++) {
      const acc = pick(accs);
      const attributes: Record<string, string | number | boolean> = {
        zone: pick(["a", "b", "c"]),
        "tpu-worker-id": i % 4,
      };
      if (r() < 0.7) attributes.pool = `p${Math.floor(i / 4)}`;
      if (r() < 0.2) attributes["taint:spot"] = true;
      if (r() < 0.5) attributes.rank = Math.floor(r() * 10);
      workers.push(worker(`w${i}`, {
        acc,
        cpu: pick([4, 8, 16]),
        memGiB: pick([16, 32]),
        freeCpu: pick([1, 2, 4]),
        freeMemGiB: pick([4, 8, 16]),
        healthy: r() < 0.9,
        building: Math.floor(r() * 3),
        attributes,
      }));
    }
    const constraintChoices: ConstraintSpec[][] = [
      [],
      [{ key: "zone", op: "eq", value: "a" }],
      [{ key: "zone", op: "in", values: ["b", "c"] }, { key: "taint:spot", op: "not_exists" }],
      [{ key: "rank", op: "ge", value: 5 }],
      [{ key: "rank", op: "lt", value: "3" }, { key: "zone", op: "ne", value: "b" }],
      [{ key: "zone", op: "eq", value: "c", preferred: true }],
    ];
    const jobs: SchedulerJob[] = [];
    for (let i = 0; i < 5 + Math.floor(r() * 30); i++) {
      const acc = pick(accs);
      const gang = r() < 0.2;
      jobs.push(job(`j${i}`, {
        tasks: gang ? pick([2, 3, 4]) : 1 + Math.floor(r() * 6),
        cpu: pick([0.5, 1, 2]),
        memGiB: pick([1, 2, 4]),
        acc: acc.kind === "cpu" ? acc : { ...acc, count: pick([1, 2, 4]) },
        constraints: pick(constraintChoices),
        groupBy: gang ? "pool" : undefined,
        band: pick([1, 2, 3] as const),
      }));
    }
    const snapshot = { workers, jobs, maxBuildingPerWorker: pick([0, 3, 4]) };
    const plan = schedule(snapshot);
    assertInvariants(snapshot, plan);
    assertComplete(snapshot, plan);
  }
});

Deno.test("schedule() with 8k distinct task shapes on 500 workers stays correct and complete", () => {
  const r = prng(99);
  const workers = Array.from({ length: 500 }, (_, i) => worker(`w${i}`, { cpu: 32, memGiB: 128 }));
  const jobs = Array.from({ length: 8000 }, (_, i) => ({
    ...job(`j${i}`),
    resources: {
      cpuMillicores: 100 + Math.floor(r() * 6000),
      memoryBytes: Math.floor((1 + r() * 40) * GiB),
      accelerators: 0,
    },
  }));
  const snapshot = { workers, jobs };
  const plan = schedule(snapshot);
  assert.ok(plan.assignments.length > 2000 && plan.unplaced.length > 0);
  assertInvariants(snapshot, plan);
  assertComplete(snapshot, plan);
  assert.ok(
    plan.unplaced.every((u) =>
      u.reason.code === "insufficient_memory" || u.reason.code === "insufficient_cpu"
    ),
  );
});

Deno.test("schedule() places by every constraint operator and avoids taints only when asked", () => {
  // One worker per region; the eu worker is tainted and has more chips.
  const workers = [
    worker("us", { attributes: { region: "us-central1", chips: 4, preemptible: false } }),
    worker("eu", {
      attributes: { region: "europe-west4", chips: 8, preemptible: true, "taint:spot": true },
    }),
    worker("asia", { attributes: { region: "asia-east1", chips: "16" } }),
  ];
  const cases: [ConstraintSpec, string[]][] = [
    [{ key: "region", op: "eq", value: "europe-west4" }, ["eu"]],
    [{ key: "region", op: "ne", value: "europe-west4" }, ["us", "asia"]],
    [{ key: "preemptible", op: "exists" }, ["us", "eu"]],
    [{ key: "preemptible", op: "not_exists" }, ["asia"]],
    [{ key: "taint:spot", op: "not_exists" }, ["us", "asia"]],
    [{ key: "chips", op: "gt", value: 8 }, ["asia"]],
    [{ key: "chips", op: "ge", value: 8 }, ["eu", "asia"]],
    [{ key: "chips", op: "lt", value: 8 }, ["us"]],
    [{ key: "chips", op: "le", value: "8" }, ["us", "eu"]],
    [{ key: "region", op: "in", values: ["asia-east1", "us-central1"] }, ["us", "asia"]],
    [{ key: "preemptible", op: "eq", value: false }, ["us"]],
  ];
  for (const [c, allowed] of cases) {
    // As many single-task jobs as workers, each needing a whole worker: the placements show
    // exactly which workers the constraint admits.
    const jobs = workers.map((_, i) => job(`j${i}`, { cpu: 8, constraints: [c] }));
    const plan = schedule({ workers, jobs });
    const used = plan.assignments.map((a) => a.workerId).sort();
    assert.deepEqual(used, [...allowed].sort(), JSON.stringify(c));
    assert.equal(plan.unplaced.length, workers.length - allowed.length, JSON.stringify(c));
  }
  // Two required constraints combine with AND.
  const both = schedule({
    workers,
    jobs: [job("and", {
      constraints: [
        { key: "chips", op: "ge", value: 4 },
        { key: "taint:spot", op: "not_exists" },
        { key: "region", op: "ne", value: "us-central1" },
      ],
    })],
  });
  assert.deepEqual([...placed(both, "and").values()], ["asia"]);
});

Deno.test("users share a band fairly: a small job of another user is placed beside a 10,000-task job", () => {
  const big = { ...job("/alice/big", { tasks: 10_000 }), user: "alice" };
  const small = { ...job("/bob/small", { tasks: 2 }), user: "bob" };
  const workers = [worker("w1", { cpu: 4 }), worker("w2", { cpu: 4 })];
  const plan = schedule({ workers, jobs: [big, small] });
  const placed = (id: string) => plan.assignments.filter((a) => a.jobId === id).length;
  assert.equal(placed("/bob/small"), 2);
  assert.equal(placed("/alice/big"), 6);
  // Alice already runs 50 tasks: bob's job goes first even with room for one task only.
  const one = schedule({
    workers: [worker("w1", { cpu: 1 })],
    jobs: [big, small],
    activeByUser: { 2: { alice: 50 } },
  });
  assert.deepEqual(one.assignments.map((a) => a.jobId), ["/bob/small"]);
  // Turns: fewest active first, then alternating; a user's jobs in submission order.
  const carol = { ...job("/carol/c", { tasks: 3 }), user: "carol" };
  const turns = schedule({
    workers: [worker("w1", { cpu: 6 })],
    jobs: [big, small, carol],
    activeByUser: { 2: { bob: 1 } },
  });
  assert.deepEqual(turns.assignments.map((a) => a.jobId.split("/")[1]), [
    "alice", // 0 active, earliest job
    "carol", // 0 active
    "alice", // all at 1: earliest job first
    "bob",
    "carol",
    "alice",
  ]);
  // Bands still come first: a band-1 job of alice before bob's band-2 job.
  const urgent = { ...job("/alice/urgent", { band: 1 }), user: "alice" };
  const banded = schedule({ workers: [worker("w1", { cpu: 1 })], jobs: [small, urgent] });
  assert.deepEqual(banded.assignments.map((a) => a.jobId), ["/alice/urgent"]);
  // Unplaced tasks keep their reasons per job.
  assert.deepEqual(plan.unplaced.map((u) => [u.jobId, u.taskCount]), [["/alice/big", 9_994]]);
});

Deno.test("schedule() tells a GPU job which GPU worker comes closest (#19)", () => {
  const a100x4: AcceleratorSpec = { kind: "gpu", variant: "A100", count: 4 };
  const l4: AcceleratorSpec = { kind: "gpu", variant: "L4", count: 1 };
  const workers = [worker("gpu-a", { acc: a100x4 }), worker("gpu-l4", { acc: l4 }), worker("cpu1")];
  const plan = schedule({
    workers,
    jobs: [
      job("h100", { acc: { kind: "gpu", variant: "H100", count: 8 } }),
      job("a100x8", { acc: { kind: "gpu", variant: "A100", count: 8 } }),
    ],
  });
  const h = reasonOf(plan, "h100")!.reason;
  assert.equal(h.code, "accelerator_mismatch");
  assert.equal(h.message, "no worker has 8× H100; largest: 4× A100 on gpu-a");
  const a = reasonOf(plan, "a100x8")!.reason;
  assert.equal(a.code, "insufficient_accelerator");
  assert.match(a.message, /^no worker has 8× A100; largest: 4× A100 on gpu-a; it can never fit/);
  const none = schedule({
    workers: [worker("cpu1")],
    jobs: [job("g", { acc: { kind: "gpu", variant: "", count: 1 } })],
  });
  assert.equal(
    none.unplaced[0]?.reason.message,
    "no worker has 1× GPU; no GPU workers (1 workers considered)",
  );
});
