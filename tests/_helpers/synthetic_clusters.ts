/**
 * Synthetic cluster snapshots and autoscaler inputs, shared by the scheduler and autoscaler tests
 * and by bench/scheduler_bench.ts: a realistic mixed cluster, TPU gang slices, a full cluster for
 * preemption, and a 1000-group scaling input. Deterministic for a given seed.
 * @module
 */
import type { PlanScalingInput } from "../../src/controller/autoscaler/autoscaler.ts";
import type {
  AcceleratorSpec,
  Attributes,
  Band,
  ClusterSnapshot,
  ConstraintSpec,
  DemandEntry,
  GroupState,
  RunningTask,
  ScaleGroupSpec,
  SchedulerJob,
  SchedulerWorker,
  SliceState,
} from "../../src/types.ts";
import { minutes, seconds, timestamp } from "../../src/time.ts";
import { rng } from "../_helpers/rng.ts";

const GiB = 2 ** 30;
const REGIONS = ["us-central1", "europe-west4"] as const;
const ZONES = ["a", "b"] as const;

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)]!;
}

function makeWorker(
  id: string,
  acc: AcceleratorSpec,
  cpu: number,
  memGiB: number,
  attributes: Attributes,
): SchedulerWorker {
  const total = { cpuMillicores: cpu * 1000, memoryBytes: memGiB * GiB, accelerators: acc.count };
  return {
    id,
    sliceId: String(attributes["tpu-name"] ?? id),
    scaleGroup: "bench",
    accelerator: acc,
    total,
    free: total,
    attributes,
    healthy: true,
    buildingCount: 0,
  };
}

function locality(i: number): Attributes {
  const region = REGIONS[i % 2]!;
  return { region, zone: `${region}-${ZONES[(i >> 1) % 2]}` };
}

/**
 * A realistic mixed cluster: 40% cpu hosts (10% tainted), 20% v5litepod-16 hosts in slices of 4,
 * 20% v4-8 hosts, 20% 8-GPU hosts in pools of 8; and `tasks` pending tasks across cpu jobs with
 * mixed constraints, TPU/GPU jobs and 4-host v5litepod-16 gangs.
 */
export function makeCluster(
  opts: { workers: number; tasks: number; seed?: number },
): ClusterSnapshot {
  const r = rng(opts.seed ?? 1);
  const workers: SchedulerWorker[] = [];
  const n = opts.workers;
  const cpuHosts = Math.floor(n * 0.4);
  const v5Slices = Math.floor((n * 0.2) / 4);
  const v4Hosts = Math.floor(n * 0.2);
  const gpuHosts = n - cpuHosts - v5Slices * 4 - v4Hosts;
  const cpuAcc: AcceleratorSpec = { kind: "cpu", variant: "", count: 0 };
  for (let i = 0; i < cpuHosts; i++) {
    const attrs: Attributes = { ...locality(i), preemptible: i % 3 === 0 };
    workers.push(
      makeWorker(
        `cpu-${i}`,
        cpuAcc,
        32,
        128,
        i % 10 === 0 ? { ...attrs, "taint:maintenance": true } : attrs,
      ),
    );
  }
  const v5: AcceleratorSpec = { kind: "tpu", variant: "v5litepod-16", count: 4 };
  for (let s = 0; s < v5Slices; s++) {
    for (let h = 0; h < 4; h++) {
      workers.push(
        makeWorker(`v5-${s}-${h}`, v5, 112, 192, {
          ...locality(s),
          "tpu-name": `v5-${s}`,
          "tpu-worker-id": h,
        }),
      );
    }
  }
  const v4: AcceleratorSpec = { kind: "tpu", variant: "v4-8", count: 4 };
  for (let i = 0; i < v4Hosts; i++) {
    workers.push(
      makeWorker(`v4-${i}`, v4, 240, 400, {
        ...locality(i),
        "tpu-name": `v4-${i}`,
        "tpu-worker-id": 0,
      }),
    );
  }
  const gpu: AcceleratorSpec = { kind: "gpu", variant: "h100", count: 8 };
  for (let i = 0; i < gpuHosts; i++) {
    workers.push(makeWorker(`gpu-${i}`, gpu, 96, 1024, { ...locality(i), pool: `pool-${i >> 3}` }));
  }
  const cpuConstraints: ConstraintSpec[][] = [
    [],
    [],
    [{ key: "region", op: "eq", value: "us-central1" }],
    [{ key: "zone", op: "in", values: ["europe-west4-a", "us-central1-b"] }],
    [{ key: "taint:maintenance", op: "not_exists" }],
    [{ key: "preemptible", op: "ne", value: true }, { key: "taint:maintenance", op: "not_exists" }],
    [{ key: "zone", op: "eq", value: "us-central1-a", preferred: true }],
  ];
  const jobs: SchedulerJob[] = [];
  let tasks = 0;
  let id = 0;
  const add = (
    acc: AcceleratorSpec,
    count: number,
    cpu: number,
    memGiB: number,
    constraints: readonly ConstraintSpec[],
    groupBy?: string,
  ) => {
    jobs.push({
      jobId: `/bench/job-${id++}`,
      resources: { cpuMillicores: cpu, memoryBytes: memGiB * GiB, accelerators: acc.count },
      accelerator: acc,
      constraints,
      groupBy,
      replicas: count,
      pendingTaskIndices: Array.from({ length: count }, (_, i) => i),
      band: (1 + Math.floor(r() * 3)) as Band,
      submittedAt: timestamp(id),
    });
    tasks += count;
  };
  while (tasks < opts.tasks) {
    const roll = r();
    if (roll < 0.7) {
      const count = Math.min(opts.tasks - tasks, 1 + Math.floor(r() * 8));
      add(
        cpuAcc,
        count,
        pick(r, [250, 500, 1000, 2000]),
        pick(r, [1, 2, 4, 8]),
        pick(r, cpuConstraints),
      );
    } else if (roll < 0.8 && tasks + 4 <= opts.tasks) {
      add(
        v5,
        4,
        8000,
        64,
        r() < 0.5 ? [] : [{ key: "region", op: "eq", value: pick(r, REGIONS) }],
        "tpu-name",
      );
    } else if (roll < 0.9) {
      add(v4, 1, 16_000, 64, []);
    } else {
      add(
        { ...gpu, count: pick(r, [1, 2, 8]) },
        1,
        8000,
        64,
        r() < 0.3 ? [{ key: "zone", op: "exists" }] : [],
      );
    }
  }
  return { workers, jobs, maxBuildingPerWorker: 0 };
}

/** `slices` v5litepod-16 slices (4 hosts each) and `gangs` 4-task gang jobs for them. */
export function makeGangCluster(opts: { slices: number; gangs: number }): ClusterSnapshot {
  const v5: AcceleratorSpec = { kind: "tpu", variant: "v5litepod-16", count: 4 };
  const workers: SchedulerWorker[] = [];
  for (let s = 0; s < opts.slices; s++) {
    for (let h = 0; h < 4; h++) {
      workers.push(
        makeWorker(`v5-${s}-${h}`, v5, 112, 192, {
          ...locality(s),
          "tpu-name": `v5-${s}`,
          "tpu-worker-id": h,
        }),
      );
    }
  }
  const jobs: SchedulerJob[] = Array.from({ length: opts.gangs }, (_, i) => ({
    jobId: `/bench/gang-${i}`,
    resources: { cpuMillicores: 8000, memoryBytes: 64 * GiB, accelerators: 4 },
    accelerator: v5,
    constraints: i % 2 === 0 ? [] : [{ key: "region", op: "eq", value: REGIONS[i % 2]! }],
    groupBy: "tpu-name",
    replicas: 4,
    pendingTaskIndices: [0, 1, 2, 3],
    band: 2,
    submittedAt: timestamp(i),
  }));
  return { workers, jobs };
}

/**
 * `workers` full 32-core cpu hosts, each running eight 4-core BATCH tasks, and `jobs` blocked
 * PRODUCTION jobs of 4 × 4-core tasks: every task needs one eviction (the preemption pass).
 */
export function makePreemptionCluster(opts: { workers: number; jobs: number }): ClusterSnapshot {
  const cpuAcc: AcceleratorSpec = { kind: "cpu", variant: "", count: 0 };
  const workers: SchedulerWorker[] = [];
  const running: RunningTask[] = [];
  for (let i = 0; i < opts.workers; i++) {
    const w = makeWorker(`cpu-${i}`, cpuAcc, 32, 128, locality(i));
    workers.push({ ...w, free: { cpuMillicores: 0, memoryBytes: 64 * GiB, accelerators: 0 } });
    for (let k = 0; k < 8; k++) {
      running.push({
        jobId: `/bench/batch-${i}`,
        taskIndex: k,
        workerId: w.id,
        band: 3,
        resources: { cpuMillicores: 4000, memoryBytes: 8 * GiB, accelerators: 0 },
        gang: false,
        since: timestamp(i * 8 + k),
      });
    }
  }
  const jobs: SchedulerJob[] = Array.from({ length: opts.jobs }, (_, i) => ({
    jobId: `/bench/prod-${i}`,
    resources: { cpuMillicores: 4000, memoryBytes: 8 * GiB, accelerators: 0 },
    accelerator: cpuAcc,
    constraints: [],
    replicas: 4,
    pendingTaskIndices: [0, 1, 2, 3],
    band: 1,
    submittedAt: timestamp(i),
  }));
  return { workers, jobs, running };
}

/** 1000 scale groups (zones × shapes), about 10k workers' worth of slices, and mixed demand. */
export function makeScalingInput(
  opts: { groups: number; entries: number; seed?: number },
): PlanScalingInput {
  const r = rng(opts.seed ?? 3);
  const now = timestamp(1_700_000_000_000);
  const shapes: {
    kind: "cpu" | "gpu" | "tpu";
    variant: string;
    vms: number;
    acc: number;
    cpu: number;
    mem: number;
  }[] = [
    { kind: "cpu", variant: "", vms: 1, acc: 0, cpu: 32, mem: 128 },
    { kind: "cpu", variant: "", vms: 1, acc: 0, cpu: 8, mem: 32 },
    { kind: "tpu", variant: "v5litepod-16", vms: 4, acc: 4, cpu: 112, mem: 192 },
    { kind: "tpu", variant: "v4-8", vms: 1, acc: 4, cpu: 240, mem: 400 },
    { kind: "gpu", variant: "h100", vms: 1, acc: 8, cpu: 96, mem: 1024 },
  ];
  const groups: ScaleGroupSpec[] = [];
  const slices: SliceState[] = [];
  const groupStates = new Map<string, GroupState>();
  for (let i = 0; i < opts.groups; i++) {
    const s = shapes[i % shapes.length]!;
    const zone = `zone-${Math.floor(i / shapes.length)}`;
    const name = `g${i}-${s.kind}${s.variant ? `-${s.variant}` : ""}-${zone}`;
    groups.push({
      name,
      accelerator: { kind: s.kind, variant: s.variant, count: s.acc },
      vmsPerSlice: s.vms,
      vmResources: { cpuMillicores: s.cpu * 1000, memoryBytes: s.mem * GiB, accelerators: s.acc },
      attributes: { zone, region: zone.slice(0, 6) },
      minSlices: i % 7 === 0 ? 1 : 0,
      maxSlices: 4 + (i % 5) * 4,
      priority: 100 + (i % 3),
      scaleUpCooldown: seconds(60),
      scaleDownDelay: minutes(5),
    });
    const count = 2 + Math.floor(r() * 4);
    for (let k = 0; k < count; k++) {
      const state = pick(
        r,
        ["ready", "ready", "ready", "booting", "requesting", "failed"] as const,
      );
      slices.push({
        sliceId: `${name}-${k}`,
        group: name,
        state,
        createdAt: timestamp(now - 3_600_000),
        idleSince: state === "ready" && r() < 0.3 ? timestamp(now - 600_000) : undefined,
        workerIds: Array.from({ length: s.vms }, (_, v) => `${name}-${k}-vm${v}`),
      });
    }
    if (i % 11 === 0) {
      groupStates.set(name, {
        name,
        consecutiveFailures: 2,
        backoffUntil: timestamp(now + 10_000),
      });
    }
  }
  const demand: DemandEntry[] = Array.from({ length: opts.entries }, (_, i) => {
    const s = shapes[Math.floor(r() * shapes.length)]!;
    const gang = s.vms > 1;
    const zone = `zone-${Math.floor(r() * (opts.groups / shapes.length))}`;
    return {
      jobId: `/bench/demand-${i}`,
      taskCount: gang ? s.vms : 1 + Math.floor(r() * 16),
      resources: {
        cpuMillicores: s.kind === "cpu" ? 1000 : 8000,
        memoryBytes: 4 * GiB,
        accelerators: s.acc,
      },
      accelerator: { kind: s.kind, variant: s.variant, count: s.acc },
      constraints: r() < 0.5 ? [{ key: "zone", op: "eq", value: zone }] : [],
      gang,
    };
  });
  return { groups, groupStates, slices, demand, now };
}
