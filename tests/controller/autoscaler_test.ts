import assert from "node:assert/strict";
import {
  DEFAULT_SCALE_BACKOFF,
  groupCanServe,
  planScaling,
  type PlanScalingInput,
  recordSliceCreated,
  recordSliceFailed,
} from "../../src/controller/autoscaler/autoscaler.ts";
import type {
  AcceleratorSpec,
  ConstraintSpec,
  DemandEntry,
  GroupState,
  ScaleGroupSpec,
  SliceLifecycle,
  SliceState,
} from "../../src/types.ts";
import { after, minutes, seconds, timestamp } from "../../src/time.ts";
import { makeScalingInput } from "../_helpers/synthetic_clusters.ts";
import { reservationDemand } from "../../src/controller/autoscaler/runner.ts";

const GiB = 2 ** 30;
const NOW = timestamp(1_000_000_000);
const CPU: AcceleratorSpec = { kind: "cpu", variant: "", count: 0 };
const V5E16: AcceleratorSpec = { kind: "tpu", variant: "v5litepod-16", count: 4 };

function group(
  name: string,
  opts: Partial<ScaleGroupSpec> & { cpu?: number } = {},
): ScaleGroupSpec {
  const acc = opts.accelerator ?? CPU;
  return {
    name,
    accelerator: acc,
    vmsPerSlice: opts.vmsPerSlice ?? 1,
    vmResources: opts.vmResources ??
      { cpuMillicores: (opts.cpu ?? 32) * 1000, memoryBytes: 128 * GiB, accelerators: acc.count },
    attributes: opts.attributes ?? {},
    minSlices: opts.minSlices ?? 0,
    maxSlices: opts.maxSlices ?? 100,
    priority: opts.priority ?? 100,
    scaleUpCooldown: opts.scaleUpCooldown ?? seconds(60),
    scaleDownDelay: opts.scaleDownDelay ?? minutes(5),
  };
}

const tpuGroup = (name: string, opts: Partial<ScaleGroupSpec> = {}) =>
  group(name, {
    accelerator: V5E16,
    vmsPerSlice: 4,
    vmResources: { cpuMillicores: 112_000, memoryBytes: 192 * GiB, accelerators: 4 },
    ...opts,
  });

function demand(jobId: string, opts: {
  tasks?: number;
  cpu?: number;
  acc?: AcceleratorSpec;
  gang?: boolean;
  constraints?: ConstraintSpec[];
} = {}): DemandEntry {
  const acc = opts.acc ?? CPU;
  return {
    jobId,
    taskCount: opts.tasks ?? 1,
    resources: { cpuMillicores: (opts.cpu ?? 1) * 1000, memoryBytes: GiB, accelerators: acc.count },
    accelerator: acc,
    constraints: opts.constraints ?? [],
    gang: opts.gang ?? false,
  };
}

function slice(id: string, g: string, state: SliceLifecycle, idleFor?: number): SliceState {
  return {
    sliceId: id,
    group: g,
    state,
    createdAt: timestamp(0),
    idleSince: idleFor === undefined ? undefined : timestamp(NOW - idleFor),
    workerIds: [`${id}-vm0`],
  };
}

function plan(
  groups: ScaleGroupSpec[],
  demandEntries: DemandEntry[],
  extra: { slices?: SliceState[]; states?: GroupState[]; now?: number } = {},
) {
  return planScaling({
    groups,
    demand: demandEntries,
    slices: extra.slices ?? [],
    groupStates: new Map((extra.states ?? []).map((s) => [s.name, s])),
    now: extra.now === undefined ? NOW : timestamp(extra.now),
  });
}

const counts = (p: { create: readonly { group: string; count: number }[] }) =>
  Object.fromEntries(p.create.map((c) => [c.group, c.count]));

Deno.test("planScaling() scales a cpu group up from zero by bin packing tasks into VMs", () => {
  const p = plan([group("cpu")], [
    demand("/a", { cpu: 16 }),
    demand("/b", { cpu: 16 }),
    demand("/c", { cpu: 16 }),
  ]);
  assert.deepEqual(counts(p), { cpu: 2 });
  assert.deepEqual(p.demandSlices, { cpu: 2 });
  assert.match(p.create[0]!.reason, /3 jobs, 3 tasks need 2 more slices/);
  assert.deepEqual(p.unmet, []);
});

Deno.test("planScaling() requests every needed slice in one decision", () => {
  const p = plan([group("cpu")], [demand("/big", { tasks: 40, cpu: 8 })]);
  assert.deepEqual(counts(p), { cpu: 10 });
});

Deno.test("planScaling() packs first-fit-decreasing across jobs of different sizes", () => {
  // 3 × 20 CPU + 6 × 4 CPU on 32-CPU VMs: the small tasks fill the big ones' leftovers.
  const p = plan([group("cpu")], [
    demand("/small", { tasks: 6, cpu: 4 }),
    demand("/big", { tasks: 3, cpu: 20 }),
  ]);
  assert.deepEqual(counts(p), { cpu: 3 });
});

Deno.test("planScaling() routes a gang to the TPU group with one whole slice per gang", () => {
  const groups = [
    group("cpu"),
    tpuGroup("tpu-v5e"),
    group("v4", { accelerator: { kind: "tpu", variant: "v4-8", count: 4 } }),
  ];
  const gang = (id: string) => demand(id, { tasks: 4, acc: V5E16, gang: true, cpu: 8 });
  const p = plan(groups, [gang("/g1"), gang("/g2"), demand("/cpu", { tasks: 2 })]);
  assert.deepEqual(counts(p), { cpu: 1, "tpu-v5e": 2 });
  const wrongSize = plan(groups, [demand("/g3", { tasks: 2, acc: V5E16, gang: true })]);
  assert.deepEqual(wrongSize.unmet, ["job /g3: no group matches"]);
  assert.deepEqual(wrongSize.create, []);
});

Deno.test("planScaling() waterfalls past a group at max_slices to the next priority", () => {
  const groups = [
    group("b-cheap", { priority: 1, maxSlices: 2 }),
    group("a-dear", { priority: 2, maxSlices: 10 }),
  ];
  const p = plan(groups, [demand("/j", { tasks: 5, cpu: 32 })], {
    slices: [slice("s1", "b-cheap", "ready")],
  });
  assert.deepEqual(counts(p), { "b-cheap": 1, "a-dear": 4 });
  assert.deepEqual(p.unmet, []);
  const full = plan([group("only", { maxSlices: 1 })], [demand("/j", { tasks: 3, cpu: 32 })]);
  assert.deepEqual(counts(full), { only: 1 });
  assert.deepEqual(full.unmet, ["job /j: 2 of 3 tasks unmet: only=at_max_slices"]);
});

Deno.test("planScaling() orders equal priorities by name", () => {
  const p = plan([group("zeta"), group("alpha")], [demand("/j")]);
  assert.deepEqual(counts(p), { alpha: 1 });
});

Deno.test("planScaling() skips a group in backoff and reports it when nothing else serves", () => {
  const failed = recordSliceFailed({ name: "tpu-a", consecutiveFailures: 0 }, NOW);
  const groups = [
    tpuGroup("tpu-a", { priority: 1 }),
    tpuGroup("tpu-b", { priority: 2, maxSlices: 0 }),
  ];
  const gang = demand("/g", { tasks: 4, acc: V5E16, gang: true });
  const p = plan(groups, [gang], { states: [failed] });
  assert.deepEqual(p.create, []);
  assert.deepEqual(p.unmet, ["job /g: 4 of 4 tasks unmet: tpu-a=backoff, tpu-b=at_max_slices"]);
  const later = plan(groups, [gang], { states: [failed], now: NOW + 5_001 });
  assert.deepEqual(counts(later), { "tpu-a": 1 });
});

Deno.test("recordSliceFailed() backs off exponentially up to the cap; recordSliceCreated() resets", () => {
  let s: GroupState = { name: "g", consecutiveFailures: 0 };
  const delays: number[] = [];
  for (let i = 0; i < 9; i++) {
    s = recordSliceFailed(s, NOW);
    delays.push(s.backoffUntil! - NOW);
  }
  assert.deepEqual(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300].map((x) => x * 1000));
  assert.equal(s.consecutiveFailures, 9);
  const ok = recordSliceCreated(s, after(NOW, seconds(1)));
  assert.equal(ok.consecutiveFailures, 0);
  assert.equal(ok.backoffUntil, undefined);
  assert.equal(ok.lastScaleUp, NOW + 1000);
  const custom = recordSliceFailed({ name: "g", consecutiveFailures: 1 }, NOW, {
    ...DEFAULT_SCALE_BACKOFF,
    initial: seconds(1),
    factor: 3,
  });
  assert.equal(custom.backoffUntil, NOW + 3000);
});

Deno.test("planScaling() honours the scale-up cooldown between consecutive scale-ups", () => {
  const state = recordSliceCreated(
    { name: "cpu", consecutiveFailures: 0 },
    timestamp(NOW - 30_000),
  );
  const cooling = plan([group("cpu")], [demand("/j", { cpu: 32, tasks: 2 })], { states: [state] });
  assert.deepEqual(cooling.create, []);
  assert.deepEqual(cooling.demandSlices, { cpu: 2 });
  const done = plan([group("cpu")], [demand("/j", { cpu: 32, tasks: 2 })], {
    states: [state],
    now: NOW + 31_000,
  });
  assert.deepEqual(counts(done), { cpu: 2 });
});

Deno.test("planScaling() lets requesting/booting slices absorb demand before creating more", () => {
  const slices = [slice("s1", "cpu", "requesting"), slice("s2", "cpu", "booting")];
  const absorbed = plan([group("cpu")], [demand("/j", { tasks: 2, cpu: 32 })], { slices });
  assert.deepEqual(absorbed.create, []);
  assert.deepEqual(absorbed.demandSlices, { cpu: 2 });
  const more = plan([group("cpu")], [demand("/j", { tasks: 3, cpu: 32 })], { slices });
  assert.deepEqual(counts(more), { cpu: 1 });
  const gangs = plan([tpuGroup("tpu")], [
    demand("/g1", { tasks: 4, acc: V5E16, gang: true }),
    demand("/g2", { tasks: 4, acc: V5E16, gang: true }),
  ], {
    slices: [slice("t1", "tpu", "booting")],
  });
  assert.deepEqual(counts(gangs), { tpu: 1 });
});

Deno.test("planScaling() keeps min_slices and creates them without demand", () => {
  const p = plan([group("warm", { minSlices: 2 })], []);
  assert.deepEqual(counts(p), { warm: 2 });
  assert.match(p.create[0]!.reason, /min_slices 2/);
  const idle = [
    slice("a", "warm", "ready", 600_000),
    slice("b", "warm", "ready", 900_000),
    slice("c", "warm", "ready", 700_000),
  ];
  const down = plan([group("warm", { minSlices: 2 })], [], { slices: idle });
  assert.deepEqual(down.terminate.map((t) => t.sliceId), ["b"]);
  assert.match(down.terminate[0]!.reason, /idle for 15m00s \(scale_down_delay 5m00s\)/);
});

Deno.test("planScaling() scales idle slices down only after the delay and never while demand exists", () => {
  const slices = [
    slice("young", "cpu", "ready", 240_000),
    slice("old", "cpu", "ready", 360_000),
    slice("busy", "cpu", "ready"),
  ];
  assert.deepEqual(plan([group("cpu")], [], { slices }).terminate.map((t) => t.sliceId), ["old"]);
  assert.deepEqual(plan([group("cpu")], [demand("/j", { cpu: 16 })], { slices }).terminate, []);
  const other = plan([group("cpu"), tpuGroup("tpu")], [
    demand("/g", { tasks: 4, acc: V5E16, gang: true }),
  ], { slices });
  assert.deepEqual(other.terminate.map((t) => t.sliceId), ["old"]);
});

Deno.test("planScaling() terminates failed slices and does not count them as capacity", () => {
  const p = plan([group("cpu", { maxSlices: 1 })], [demand("/j", { cpu: 32 })], {
    slices: [slice("dead", "cpu", "failed")],
  });
  assert.deepEqual(p.terminate, [{ sliceId: "dead", group: "cpu", reason: "failed" }]);
  assert.deepEqual(counts(p), { cpu: 1 });
});

Deno.test("groupCanServe() checks kind, variant, constraints on group and synthetic attributes, VM fit", () => {
  const eu = group("cpu-eu", { attributes: { region: "europe-west4" } });
  assert.equal(
    groupCanServe(
      eu,
      demand("/j", { constraints: [{ key: "region", op: "eq", value: "europe-west4" }] }),
    ),
    true,
  );
  assert.equal(
    groupCanServe(
      eu,
      demand("/j", { constraints: [{ key: "region", op: "eq", value: "us-east1" }] }),
    ),
    false,
  );
  assert.equal(
    groupCanServe(
      eu,
      demand("/j", { constraints: [{ key: "scale-group", op: "eq", value: "cpu-eu" }] }),
    ),
    true,
  );
  assert.equal(
    groupCanServe(
      eu,
      demand("/j", { constraints: [{ key: "device-type", op: "eq", value: "cpu" }] }),
    ),
    true,
  );
  assert.equal(
    groupCanServe(eu, demand("/j", { constraints: [{ key: "taint:spot", op: "not_exists" }] })),
    true,
  );
  assert.equal(
    groupCanServe(
      eu,
      demand("/j", { constraints: [{ key: "tpu-worker-id", op: "eq", value: 3 }] }),
    ),
    true,
    "per-VM keys ignored",
  );
  assert.equal(
    groupCanServe(
      eu,
      demand("/j", { constraints: [{ key: "zone", op: "eq", value: "x", preferred: true }] }),
    ),
    true,
  );
  assert.equal(groupCanServe(eu, demand("/j", { cpu: 64 })), false, "one task must fit a VM");
  assert.equal(groupCanServe(eu, demand("/j", { acc: V5E16 })), false, "kind mismatch");
  const tpu = tpuGroup("tpu");
  assert.equal(groupCanServe(tpu, demand("/j", { acc: V5E16, tasks: 4, gang: true })), true);
  assert.equal(
    groupCanServe(
      tpu,
      demand("/j", { acc: { kind: "tpu", variant: "", count: 4 }, tasks: 4, gang: true }),
    ),
    true,
  );
  assert.equal(
    groupCanServe(tpu, demand("/j", { acc: { kind: "tpu", variant: "v4-8", count: 4 } })),
    false,
  );
  assert.equal(
    groupCanServe(tpu, demand("/j", { acc: { kind: "tpu", variant: "v5litepod-16", count: 8 } })),
    false,
  );
  assert.equal(
    groupCanServe(
      tpu,
      demand("/j", {
        constraints: [{ key: "device-variant", op: "eq", value: "v5litepod-16" }],
        acc: V5E16,
      }),
    ),
    true,
  );
  assert.equal(groupCanServe(tpu, demand("/j")), false, "cpu demand never goes to a TPU group");
});

Deno.test("planScaling() reports demand no group can serve", () => {
  const p = plan([group("cpu")], [
    demand("/gpu", { acc: { kind: "gpu", variant: "h100", count: 8 } }),
    demand("/ok"),
  ]);
  assert.deepEqual(p.unmet, ["job /gpu: no group matches"]);
  assert.deepEqual(counts(p), { cpu: 1 });
});

Deno.test("planScaling() with 1000 groups stays within every group's limits and is deterministic", () => {
  const input: PlanScalingInput = makeScalingInput({ groups: 1000, entries: 5000 });
  const before = JSON.stringify({ ...input, groupStates: [...input.groupStates] });
  const p = planScaling(input);
  assert.deepEqual(planScaling(input), p);
  assert.equal(
    JSON.stringify({ ...input, groupStates: [...input.groupStates] }),
    before,
    "input unchanged",
  );
  const groups = new Map(input.groups.map((g) => [g.name, g]));
  const live = new Map<string, number>();
  for (const s of input.slices) {
    if (s.state !== "failed" && s.state !== "terminating") {
      live.set(s.group, (live.get(s.group) ?? 0) + 1);
    }
  }
  const seen = new Set<string>();
  let created = 0;
  for (const c of p.create) {
    const g = groups.get(c.group)!;
    assert.ok(!seen.has(c.group), `group ${c.group} created twice`);
    seen.add(c.group);
    assert.ok(c.count > 0);
    created += c.count;
    assert.ok((live.get(c.group) ?? 0) + c.count <= g.maxSlices, `${c.group} over max_slices`);
    const st = input.groupStates.get(c.group);
    assert.ok(
      !(st?.backoffUntil !== undefined && st.backoffUntil > input.now),
      `${c.group} in backoff`,
    );
  }
  assert.ok(created > 100, `only ${created} slices created`);
  const slices = new Map(input.slices.map((s) => [s.sliceId, s]));
  const terminated = new Set<string>();
  for (const t of p.terminate) {
    assert.ok(!terminated.has(t.sliceId));
    terminated.add(t.sliceId);
    const s = slices.get(t.sliceId)!;
    if (t.reason === "failed") assert.equal(s.state, "failed");
    else {
      assert.equal(s.state, "ready");
      assert.ok(input.now - s.idleSince! >= groups.get(t.group)!.scaleDownDelay);
      assert.equal(p.demandSlices[t.group], undefined, `${t.group} scaled down with demand`);
    }
  }
  for (const [name, g] of groups) {
    const down = p.terminate.filter((t) => t.group === name && t.reason !== "failed").length;
    if (down > 0) {
      assert.ok((live.get(name) ?? 0) - down >= g.minSlices, `${name} below min_slices`);
    }
  }
  for (const u of p.unmet) {
    assert.match(
      u,
      /^job \/bench\/demand-\d+: (no group matches|\d+ of \d+ tasks unmet: .+=(backoff|at_max_slices))/,
    );
  }
});

Deno.test("planScaling() names at most 8 rejecting groups per unmet job", () => {
  const groups = Array.from({ length: 10 }, (_, i) => group(`g${i}`, { maxSlices: 0 }));
  const p = plan(groups, [demand("/j")]);
  assert.deepEqual(p.unmet, [
    `job /j: 1 of 1 tasks unmet: ${
      groups.slice(0, 8).map((g) => `${g.name}=at_max_slices`).join(", ")
    }, 2 more groups`,
  ]);
});

Deno.test("planScaling() gives each reservation entry (wholeVm) a VM of its own", () => {
  // Two 1-core entries would share one 32-core VM as tasks; as reservation entries they need two.
  const entry = { ...demand("/r (reservation)", { tasks: 2, cpu: 1 }), wholeVm: true };
  assert.deepEqual(counts(plan([group("cpu")], [entry])), { cpu: 2 });
  assert.deepEqual(counts(plan([group("cpu")], [demand("/t", { tasks: 2, cpu: 1 })])), { cpu: 1 });
  // Capped by max_slices, the rest is reported unmet.
  const capped = plan([group("cpu", { maxSlices: 1 })], [entry]);
  assert.deepEqual(counts(capped), { cpu: 1 });
  assert.match(capped.unmet[0]!, /\/r \(reservation\): 1 of 2 tasks unmet: cpu=at_max_slices/);
});

Deno.test("reservationDemand() turns unclaimed entries into wholeVm demand, grouped by shape", () => {
  const entry = (index: number, cpu: number) => ({
    index,
    resources: { cpuMillicores: cpu * 1000, memoryBytes: GiB, accelerators: 0 },
    accelerator: CPU,
    constraints: [],
  });
  const snapshot = {
    workers: [],
    jobs: [],
    reservations: [{ jobId: "/r", entries: [entry(0, 1), entry(1, 1), entry(2, 4)] }],
  };
  const claims = [{ jobId: "/r", entryIndex: 0, workerId: "w" }];
  const d = reservationDemand({ assignments: [], unplaced: [], claims }, snapshot);
  assert.deepEqual(
    d.map((e) => [e.jobId, e.taskCount, e.resources.cpuMillicores, e.wholeVm, e.gang]),
    [["/r (reservation)", 1, 1000, true, false], ["/r (reservation)", 1, 4000, true, false]],
  );
  assert.deepEqual(
    reservationDemand({ assignments: [], unplaced: [] }, { workers: [], jobs: [] }),
    [],
  );
});

Deno.test("planScaling() scales up one host per task for a multi-host GPU gang, all or none", () => {
  const H100x8: AcceleratorSpec = { kind: "gpu", variant: "H100", count: 8 };
  const gpu = (opts: Partial<ScaleGroupSpec> = {}) =>
    group("h100", { accelerator: H100x8, ...opts });
  const gang = (tasks: number, groupBy = "scale-group"): DemandEntry => ({
    ...demand("/ddp", { tasks, acc: H100x8, gang: true }),
    groupBy,
  });
  // A 4-host gang on single-VM slices: 4 new hosts (before: no group could serve it).
  assert.equal(groupCanServe(gpu(), gang(4)), true);
  assert.deepEqual(counts(plan([gpu()], [gang(4)])), { h100: 4 });
  // Idle ready hosts and booting ones count toward it: 1 idle + 1 booting → 2 new.
  const some = plan([gpu()], [gang(4)], {
    slices: [slice("s1", "h100", "ready", 1000), slice("s2", "h100", "booting")],
  });
  assert.deepEqual(counts(some), { h100: 2 });
  // All or none: max_slices 3 cannot hold 4 hosts, so nothing is created and the job says why.
  const capped = plan([gpu({ maxSlices: 3 })], [gang(4)]);
  assert.deepEqual(counts(capped), {});
  assert.match(capped.unmet.join("\n"), /\/ddp: 4 of 4 tasks unmet: h100=at_max_slices/);
  // A per-VM groupBy (hostname) keeps a gang on one slice: single-VM groups cannot serve 4.
  assert.equal(groupCanServe(gpu(), gang(4, "hostname")), false);
  // TPU gangs still take one slice of exactly their size.
  assert.equal(
    groupCanServe(tpuGroup("tpu"), {
      ...demand("/j", { acc: V5E16, tasks: 8, gang: true }),
      groupBy: "x",
    }),
    false,
  );
});
