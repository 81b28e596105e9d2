/**
 * The autoscaler's guards against getting stuck (#24), as pure planner tests: boot and init
 * timeouts, the quota state, token-bucket scale rates, buffer_slices, and multi-zone groups.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import {
  availableTokens,
  planScaling,
  recordQuotaExceeded,
  recordSliceCreated,
  sliceTimeout,
  takeTokens,
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
import { expandZones } from "../../src/config/defaults.ts";
import { parseConfig } from "../../src/config/mod.ts";
import { scaleGroupsFromConfig } from "../../src/cluster/scale_groups.ts";
import { ClusterConfigSchema } from "../../src/rpc/gen/iris/v1/config_pb.ts";

const GiB = 2 ** 30;
const NOW = timestamp(1_000_000_000);
const CPU: AcceleratorSpec = { kind: "cpu", variant: "", count: 0 };

function group(name: string, opts: Partial<ScaleGroupSpec> = {}): ScaleGroupSpec {
  return {
    name,
    accelerator: CPU,
    vmsPerSlice: 1,
    vmResources: { cpuMillicores: 4000, memoryBytes: 16 * GiB, accelerators: 0 },
    attributes: {},
    minSlices: 0,
    maxSlices: 100,
    priority: 100,
    scaleUpCooldown: seconds(0),
    scaleDownDelay: minutes(5),
    ...opts,
  };
}

function demand(jobId: string, tasks: number, constraints: ConstraintSpec[] = []): DemandEntry {
  return {
    jobId,
    taskCount: tasks,
    resources: { cpuMillicores: 4000, memoryBytes: GiB, accelerators: 0 },
    accelerator: CPU,
    constraints,
    gang: false,
  };
}

function slice(
  id: string,
  g: string,
  state: SliceLifecycle,
  opts: { age?: number; bootedFor?: number; idleFor?: number } = {},
): SliceState {
  return {
    sliceId: id,
    group: g,
    state,
    createdAt: timestamp(NOW - (opts.age ?? 0)),
    ...(opts.bootedFor !== undefined ? { bootedAt: timestamp(NOW - opts.bootedFor) } : {}),
    idleSince: opts.idleFor === undefined ? undefined : timestamp(NOW - opts.idleFor),
    workerIds: [`${id}-vm0`],
  };
}

function plan(
  groups: ScaleGroupSpec[],
  d: DemandEntry[],
  extra: { slices?: SliceState[]; states?: GroupState[] } = {},
) {
  return planScaling({
    groups,
    demand: d,
    slices: extra.slices ?? [],
    groupStates: new Map((extra.states ?? []).map((s) => [s.name, s])),
    now: NOW,
  });
}

const counts = (p: { create: readonly { group: string; count: number }[] }) =>
  Object.fromEntries(p.create.map((c) => [c.group, c.count]));

Deno.test("planScaling() fails a slice past its boot timeout and creates nothing more for the group", () => {
  const g = group("cpu", { bootTimeout: minutes(5), initTimeout: minutes(10) });
  const young = slice("s1", "cpu", "requesting", { age: minutes(4) });
  assert.deepEqual(plan([g], [demand("/a", 1)], { slices: [young] }).terminate, []);
  const old = slice("s1", "cpu", "requesting", { age: minutes(5) });
  const p = plan([g], [demand("/a", 1)], { slices: [old] });
  assert.equal(p.terminate.length, 1);
  assert.equal(p.terminate[0]!.timedOut, true);
  assert.match(p.terminate[0]!.reason, /^boot_timeout: .*within 5m/);
  // The group backs off in the same decision: no replacement is requested yet.
  assert.deepEqual(p.create, []);
  assert.match(p.unmet[0]!, /cpu=backoff/);
});

Deno.test("planScaling() fails a slice whose workers do not register within the init timeout", () => {
  const g = group("cpu", { bootTimeout: minutes(5), initTimeout: minutes(10) });
  // The init clock starts when the platform created the slice (bootedAt), not at the request.
  const booting = slice("s1", "cpu", "booting", { age: minutes(14), bootedFor: minutes(9) });
  assert.deepEqual(plan([g], [], { slices: [booting] }).terminate, []);
  const stuck = slice("s1", "cpu", "booting", { age: minutes(15), bootedFor: minutes(10) });
  const p = plan([g], [], { slices: [stuck] });
  assert.deepEqual(p.terminate.map((t) => [t.sliceId, t.timedOut]), [["s1", true]]);
  assert.match(p.terminate[0]!.reason, /^init_timeout: its workers did not all register/);
  // Ready slices and groups without timeouts are never timed out.
  assert.equal(
    sliceTimeout(g, slice("s2", "cpu", "ready", { age: minutes(60), bootedFor: minutes(60) }), NOW),
    undefined,
  );
  assert.equal(
    sliceTimeout(group("x"), slice("s3", "x", "requesting", { age: 1e12 }), NOW),
    undefined,
  );
});

Deno.test("planScaling() routes demand past a quota-exceeded group and names the state", () => {
  const a = group("a", { priority: 1 });
  const b = group("b", { priority: 2, maxSlices: 1 });
  const quota = recordQuotaExceeded({ name: "a", consecutiveFailures: 0 }, NOW, "no TPU quota");
  const p = plan([a, b], [demand("/j", 2)], { states: [quota] });
  assert.deepEqual(counts(p), { b: 1 });
  assert.match(p.unmet[0]!, /\/j: 1 of 2 tasks unmet: a=quota_exceeded, b=at_max_slices/);
  // Once the quota backoff is over, the group serves again.
  const later = planScaling({
    groups: [a, b],
    demand: [demand("/j", 2)],
    slices: [],
    groupStates: new Map([["a", quota]]),
    now: after(quota.quotaUntil!, seconds(1)),
  });
  assert.deepEqual(counts(later), { a: 2 });
});

Deno.test("recordQuotaExceeded() has its own doubling backoff and reason; creation resets it", () => {
  let s: GroupState = { name: "g", consecutiveFailures: 2 };
  s = recordQuotaExceeded(s, NOW, "quota 1");
  assert.equal(s.quotaUntil, after(NOW, minutes(5)));
  assert.equal(s.quotaReason, "quota 1");
  assert.equal(s.consecutiveFailures, 2, "the generic failure count is not touched");
  s = recordQuotaExceeded(s, NOW, "quota 2");
  assert.equal(s.quotaUntil, after(NOW, minutes(10)));
  s = recordQuotaExceeded(recordQuotaExceeded(s, NOW, "q"), NOW, "q");
  assert.equal(s.quotaUntil, after(NOW, minutes(20)), "capped");
  const created = recordSliceCreated(s, NOW);
  assert.equal(created.quotaUntil, undefined);
  assert.equal(created.quotaFailures, undefined);
});

Deno.test("token buckets: full when unused, refill at the rate per minute, capped at the rate", () => {
  assert.equal(availableTokens(undefined, 4, NOW), 4);
  assert.equal(availableTokens(undefined, 0, NOW), Infinity, "0 = unlimited");
  const b = takeTokens(undefined, 4, NOW, 4)!;
  assert.equal(availableTokens(b, 4, NOW), 0);
  assert.equal(availableTokens(b, 4, after(NOW, seconds(15))), 1);
  assert.equal(availableTokens(b, 4, after(NOW, seconds(59))), 3);
  assert.equal(availableTokens(b, 4, after(NOW, minutes(10))), 4);
  assert.equal(takeTokens(b, 0, NOW, 3), b, "unlimited: unchanged");
});

Deno.test("planScaling() caps scale-up and idle scale-down by the group's token buckets", () => {
  const g = group("cpu", { scaleUpRate: 2, scaleDownRate: 1, scaleDownDelay: seconds(1) });
  const p = plan([g], [demand("/j", 5)]);
  assert.deepEqual(counts(p), { cpu: 2 });
  assert.match(p.create[0]!.reason, /scale_up_rate 2\/min: 2 of 5 now/);
  const empty: GroupState = {
    name: "cpu",
    consecutiveFailures: 0,
    upTokens: { tokens: 0, at: NOW },
    downTokens: { tokens: 0, at: NOW },
  };
  assert.deepEqual(plan([g], [demand("/j", 5)], { states: [empty] }).create, []);
  const idle = [0, 1, 2].map((i) => slice(`s${i}`, "cpu", "ready", { idleFor: minutes(1) }));
  assert.equal(plan([g], [], { slices: idle }).terminate.length, 1);
  assert.equal(plan([g], [], { slices: idle, states: [empty] }).terminate.length, 0);
  // Failed and timed-out slices are not rate limited.
  const failed = [0, 1, 2].map((i) => slice(`f${i}`, "cpu", "failed"));
  assert.equal(plan([g], [], { slices: failed, states: [empty] }).terminate.length, 3);
});

Deno.test("planScaling() keeps buffer_slices warm spares beyond demand, within max_slices", () => {
  const g = group("cpu", { bufferSlices: 2, maxSlices: 3, scaleDownDelay: seconds(1) });
  const p = plan([g], []);
  assert.deepEqual(counts(p), { cpu: 2 });
  assert.match(p.create[0]!.reason, /buffer_slices 2 \(0 spare\)/);
  // In-flight slices nothing uses count as spares: nothing more is requested.
  const inflight = [slice("a", "cpu", "requesting"), slice("b", "cpu", "booting")];
  assert.deepEqual(plan([g], [], { slices: inflight }).create, []);
  // Demand uses them: the buffer is rebuilt on top, capped by max_slices.
  assert.deepEqual(counts(plan([g], [demand("/j", 2)], { slices: inflight })), { cpu: 1 });
  // Idle ready spares are not scaled down below the buffer.
  const idle = [0, 1, 2].map((i) => slice(`s${i}`, "cpu", "ready", { idleFor: minutes(10) }));
  assert.deepEqual(plan([g], [], { slices: idle }).terminate.map((t) => t.sliceId), ["s0"]);
  assert.deepEqual(plan([g], [], { slices: idle.slice(0, 2) }).terminate, []);
});

Deno.test("multi-zone groups expand to one group per zone with zone-aware routing", () => {
  const text = `
controller: {local: {}}
scale_groups:
  cpu:
    provider: {local: {}}
    max_slices: 2
    zones: [us-central2-b, europe-west4-a]
    vm_resources: {cpu: 4, memory: 16GiB}
`;
  const config = parseConfig(text);
  const groups = scaleGroupsFromConfig(config);
  assert.deepEqual(groups.map((g) => g.spec.name), ["cpu-europe-west4-a", "cpu-us-central2-b"]);
  const eu = groups[0]!.spec;
  assert.equal(eu.attributes.zone, "europe-west4-a");
  assert.equal(eu.attributes.region, "europe-west4");
  assert.equal(groups[0]!.config.zone, "europe-west4-a");
  // Demand pinned to a zone goes only to that zone's group.
  const specs = groups.map((g) => g.spec);
  const pinned = demand("/j", 1, [{ key: "zone", op: "eq", value: "us-central2-b" }]);
  assert.deepEqual(counts(plan(specs, [pinned])), { "cpu-us-central2-b": 1 });
  // With that zone out of quota, pinned demand waits (and says why); free demand moves zones.
  const quota = recordQuotaExceeded(
    { name: "cpu-us-central2-b", consecutiveFailures: 0 },
    NOW,
    "quota",
  );
  const p = plan(specs, [pinned, demand("/free", 1)], { states: [quota] });
  assert.deepEqual(counts(p), { "cpu-europe-west4-a": 1 });
  assert.match(p.unmet.join("\n"), /\/j: 1 of 1 tasks unmet: cpu-us-central2-b=quota_exceeded/);
  // Expanding again is a no-op.
  const again = create(ClusterConfigSchema, { scaleGroups: config.scaleGroups });
  expandZones(again);
  assert.deepEqual(Object.keys(again.scaleGroups).sort(), Object.keys(config.scaleGroups).sort());
});

Deno.test("autoscaler config keys: bad values are errors naming the field", () => {
  const base = (group: string, defaults = "") => `
controller: {local: {}}
${defaults}
scale_groups:
  cpu:
    provider: {local: {}}
    max_slices: 2
${group}
`;
  const cases: [string, string, RegExp][] = [
    [base("    buffer_slices: 3"), "", /scale_groups\.cpu\.buffer_slices: must be ≤ max_slices/],
    [base("    scale_up_rate: -1"), "", /scale_groups\.cpu\.scale_up_rate: /],
    [base("    init_timeout: soon"), "", /scale_groups\.cpu\.init_timeout: /],
    [
      base("    zone: a\n    zones: [b]"),
      "",
      /scale_groups\.cpu\.zones: cannot be combined with zone/,
    ],
    [base("    zones: [a, a]"), "", /scale_groups\.cpu\.zones\[1\]: duplicate zone/],
    [
      base("", "defaults: {autoscaler: {quota_backoff: 0s}}"),
      "",
      /defaults\.autoscaler\.quota_backoff: /,
    ],
    [base("    boot_timeout: 1s\n    bogus: 1"), "", /scale_groups\.cpu\.bogus/],
  ];
  for (const [text, , re] of cases) {
    assert.throws(() => parseConfig(text), (e: Error) => {
      assert.match(e.message, re);
      return true;
    });
  }
  // Defaults fill in (remote timing differs; local shown), explicit zeros are kept.
  const config = parseConfig(base("    scale_down_rate: 0\n    boot_timeout: 0s"));
  const g = config.scaleGroups.cpu!;
  assert.deepEqual(
    [g.bootTimeoutMs, g.initTimeoutMs, g.scaleUpRate, g.scaleDownRate, g.bufferSlices],
    [0, 180_000, 16, 0, 0],
  );
});
