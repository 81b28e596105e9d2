/**
 * Pure autoscaling decision: routes unplaceable demand to scale groups, sizes whole slices, and
 * picks idle or failed slices to terminate. Does not call platforms, read the clock or keep state;
 * per-group memory (backoff, cooldown) comes in as GroupState and is advanced by record* helpers.
 * @module
 */
import type {
  ConstraintSpec,
  DemandEntry,
  GroupState,
  ScaleGroupSpec,
  ScalingPlan,
  SliceState,
} from "../types.ts";
import { after, type Duration, formatDuration, minutes, seconds, type Timestamp } from "../time.ts";
import {
  acceleratorMatches,
  buildAttributeIndex,
  constraintsKey,
  filterByConstraints,
  matchesRequired,
} from "./constraints.ts";
import {
  claimSlice,
  demandSlicesOf,
  type GroupPack,
  newGroupPack,
  packTasks,
  type TaskShape,
  vmAccelerators,
} from "./_autoscaler_pack.ts";

/**
 * Attributes that differ per VM or only exist after a slice is created; constraints on them are
 * ignored when routing demand to a group.
 */
export const PER_VM_ATTRIBUTES: ReadonlySet<string> = new Set([
  "tpu-name",
  "tpu-worker-id",
  "tpu-worker-hostnames",
  "worker-id",
  "hostname",
  "reservation-job",
]);

/** Groups named per unmet entry before the rest are summarised as "N more groups". */
const MAX_REASONS = 8;

/** Exponential backoff for failed slice creation. */
export interface ScaleBackoff {
  /** Delay after the first failure. @default 5s */
  readonly initial: Duration;
  /** Longest delay. @default 5m */
  readonly max: Duration;
  /** Growth per consecutive failure. @default 2 */
  readonly factor: number;
}

/** 5 s doubling up to 5 min. */
export const DEFAULT_SCALE_BACKOFF: ScaleBackoff = {
  initial: seconds(5),
  max: minutes(5),
  factor: 2,
};

/** Input of {@linkcode planScaling}. */
export interface PlanScalingInput {
  readonly groups: readonly ScaleGroupSpec[];
  /** Missing groups start with no failures, no backoff and no cooldown. */
  readonly groupStates: ReadonlyMap<string, GroupState>;
  readonly slices: readonly SliceState[];
  /** One entry per job with tasks the scheduler could not place. */
  readonly demand: readonly DemandEntry[];
  readonly now: Timestamp;
}

/**
 * The state after a slice of the group was created: failures and backoff reset, cooldown starts.
 * @returns a new GroupState; `state` is not modified.
 */
export function recordSliceCreated(state: GroupState, now: Timestamp): GroupState {
  return {
    name: state.name,
    consecutiveFailures: 0,
    lastScaleUp: now,
    lastScaleDown: state.lastScaleDown,
  };
}

/**
 * The state after creating a slice of the group failed: one more consecutive failure and a backoff
 * of `initial × factor^(failures−1)`, capped at `max`. Deterministic (no jitter).
 * @returns a new GroupState; `state` is not modified.
 */
export function recordSliceFailed(
  state: GroupState,
  now: Timestamp,
  backoff: ScaleBackoff = DEFAULT_SCALE_BACKOFF,
): GroupState {
  const failures = state.consecutiveFailures + 1;
  const delay = Math.min(
    backoff.max,
    backoff.initial * backoff.factor ** (failures - 1),
  ) as Duration;
  return { ...state, consecutiveFailures: failures, backoffUntil: after(now, delay) };
}

/** Group attributes plus the synthetic `scale-group`, `device-type` and `device-variant`. */
function routingAttributes(group: ScaleGroupSpec): ScaleGroupSpec["attributes"] {
  return {
    ...group.attributes,
    "scale-group": group.name,
    "device-type": group.accelerator.kind,
    "device-variant": group.accelerator.variant,
  };
}

/** Accelerator, per-VM resources and gang size; everything but constraints. */
function shapeFits(group: ScaleGroupSpec, e: DemandEntry): boolean {
  if (!acceleratorMatches(e.accelerator, group.accelerator)) return false;
  const r = e.resources;
  const acc = Math.max(e.accelerator.count, r.accelerators);
  if (
    r.cpuMillicores > group.vmResources.cpuMillicores ||
    r.memoryBytes > group.vmResources.memoryBytes
  ) return false;
  if (acc > vmAccelerators(group)) return false;
  return !e.gang || group.vmsPerSlice === e.taskCount;
}

/** Required constraints that routing evaluates (per-VM attributes skipped). */
function routingConstraints(e: DemandEntry): ConstraintSpec[] {
  return e.constraints.filter((c) => !c.preferred && !PER_VM_ATTRIBUTES.has(c.key));
}

/**
 * Whether new slices of `group` could run a task of `entry`: same accelerator rules as the
 * scheduler, required constraints hold on the group's attributes plus `scale-group`,
 * `device-type` and `device-variant` (constraints on {@linkcode PER_VM_ATTRIBUTES} are ignored),
 * one task fits a VM, and a gang has exactly `vmsPerSlice` tasks (one slice per gang).
 */
export function groupCanServe(group: ScaleGroupSpec, entry: DemandEntry): boolean {
  return shapeFits(group, entry) &&
    matchesRequired(routingAttributes(group), routingConstraints(entry));
}

function shapeOf(e: DemandEntry): TaskShape {
  return {
    cpu: e.resources.cpuMillicores,
    mem: e.resources.memoryBytes,
    acc: Math.max(e.accelerator.count, e.resources.accelerators),
  };
}

/** A task shape that fills one VM of the group (at most one per VM). */
function wholeVmShape(p: GroupPack): TaskShape {
  return { cpu: Math.max(1, p.vmCpu), mem: p.vmMem, acc: p.vmAcc };
}

function inBackoff(state: GroupState | undefined, now: Timestamp): boolean {
  return state?.backoffUntil !== undefined && state.backoffUntil > now;
}

/**
 * Decides which slices to create and terminate.
 *
 * Routing: each entry goes to candidate groups ({@linkcode groupCanServe}) by priority, then name.
 * Groups in backoff or at max_slices pass the demand on (waterfall); leftovers are `unmet`,
 * e.g. "job /a: 4 of 4 tasks unmet: tpu-a=backoff, tpu-b=at_max_slices" or "no group matches".
 * Sizing: a gang takes one whole slice; a `wholeVm` entry (reservation) takes one VM per unit; other tasks are packed first-fit-decreasing into VM-sized
 * bins, slices = ceil(VMs / vmsPerSlice). Requesting/booting slices absorb demand before new ones.
 * Scale-up: target = max(min_slices, current + new) capped at max_slices, all of it in one
 * decision. Nothing is created for a group in backoff, nor within `scaleUpCooldown` of its last
 * scale-up (the cooldown applies only between consecutive scale-ups).
 * Scale-down: failed slices are terminated; ready slices idle for `scaleDownDelay` are
 * terminated (longest idle first) down to min_slices, never while demand could use the group.
 */
export function planScaling(input: PlanScalingInput): ScalingPlan {
  const { now } = input;
  const sorted = [...input.groups].sort((a, b) =>
    a.priority - b.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  );
  const routing = sorted.map((g) => ({ attributes: routingAttributes(g) }));
  const routingIndex = buildAttributeIndex(routing);
  const terminate: { sliceId: string; group: string; reason: string }[] = [];
  const live = new Map<string, number>();
  const inflight = new Map<string, number>();
  const idle = new Map<string, SliceState[]>();
  for (const s of input.slices) {
    if (s.state === "failed") {
      terminate.push({ sliceId: s.sliceId, group: s.group, reason: "failed" });
      continue;
    }
    if (s.state === "terminating") continue;
    live.set(s.group, (live.get(s.group) ?? 0) + 1);
    if (s.state === "requesting" || s.state === "booting") {
      inflight.set(s.group, (inflight.get(s.group) ?? 0) + 1);
    }
    if (s.state === "ready" && s.idleSince !== undefined) {
      const list = idle.get(s.group);
      if (list) list.push(s);
      else idle.set(s.group, [s]);
    }
  }
  const packs = new Map<string, GroupPack>();
  const packFor = (g: ScaleGroupSpec): GroupPack => {
    let p = packs.get(g.name);
    if (!p) {
      p = newGroupPack(g, live.get(g.name) ?? 0, inflight.get(g.name) ?? 0);
      packs.set(g.name, p);
    }
    return p;
  };
  const wanted = new Set<string>();
  const candidateCache = new Map<string, ScaleGroupSpec[]>();
  const candidatesOf = (e: DemandEntry): ScaleGroupSpec[] => {
    const s = shapeOf(e);
    const key =
      `${e.accelerator.kind}\u0001${e.accelerator.variant}\u0001${s.cpu}\u0001${s.mem}\u0001${s.acc}\u0001${
        e.gang ? e.taskCount : "-"
      }\u0001${constraintsKey(e.constraints)}`;
    let list = candidateCache.get(key);
    if (!list) {
      // Seed from the index by device type, then check the remaining constraints on candidates.
      const cs = [
        { key: "device-type", op: "eq", value: e.accelerator.kind } as const,
        ...routingConstraints(e),
      ];
      list = filterByConstraints(routingIndex, routing, cs).map((i) => sorted[i]!).filter((g) =>
        shapeFits(g, e)
      );
      for (const g of list) wanted.add(g.name);
      candidateCache.set(key, list);
    }
    return list;
  };

  const entries = input.demand.filter((e) => e.taskCount > 0);
  const shapes = new Map(entries.map((e) => [e, shapeOf(e)]));
  const gangs = entries.filter((e) => e.gang);
  const independent = entries.filter((e) => !e.gang).sort((a, b) => {
    const sa = shapes.get(a)!;
    const sb = shapes.get(b)!;
    return sb.acc - sa.acc || sb.mem - sa.mem || sb.cpu - sa.cpu;
  });
  const min = { cpu: Infinity, mem: Infinity, acc: Infinity };
  for (const e of independent) {
    const s = shapes.get(e)!;
    min.cpu = Math.min(min.cpu, s.cpu);
    min.mem = Math.min(min.mem, s.mem);
    min.acc = Math.min(min.acc, s.acc);
  }
  const backoff = new Set(
    sorted.filter((g) => inBackoff(input.groupStates.get(g.name), now)).map((g) => g.name),
  );
  const unmet: string[] = [];
  for (const e of [...gangs, ...independent]) {
    const candidates = candidatesOf(e);
    if (candidates.length === 0) {
      unmet.push(`job ${e.jobId}: no group matches`);
      continue;
    }
    const shape = shapes.get(e)!;
    const rejected: ScaleGroupSpec[] = [];
    let left = e.taskCount;
    for (const g of candidates) {
      if (backoff.has(g.name)) {
        rejected.push(g);
        continue;
      }
      const p = packFor(g);
      const before = left;
      if (e.gang) left = claimSlice(p) ? 0 : left;
      else if (e.wholeVm) left = packTasks(p, wholeVmShape(p), left, min);
      else left = packTasks(p, shape, left, min);
      if (left < before) {
        p.jobs++;
        p.tasks += before - left;
      }
      if (left === 0) break;
      rejected.push(g);
    }
    if (left > 0) {
      const why = rejected.slice(0, MAX_REASONS).map((g) =>
        `${g.name}=${backoff.has(g.name) ? "backoff" : "at_max_slices"}`
      );
      if (rejected.length > MAX_REASONS) why.push(`${rejected.length - MAX_REASONS} more groups`);
      unmet.push(`job ${e.jobId}: ${left} of ${e.taskCount} tasks unmet: ${why.join(", ")}`);
    }
  }

  const create: { group: string; count: number; reason: string }[] = [];
  const demandSlices: Record<string, number> = {};
  for (const g of sorted) {
    const p = packs.get(g.name);
    const current = live.get(g.name) ?? 0;
    const state = input.groupStates.get(g.name);
    if (p) {
      const need = demandSlicesOf(p);
      if (need > 0) demandSlices[g.name] = need;
    }
    const newSlices = p?.newSlices ?? 0;
    const target = Math.min(g.maxSlices, Math.max(g.minSlices, current + newSlices));
    const count = target - current;
    const cooling = state?.lastScaleUp !== undefined &&
      after(state.lastScaleUp, g.scaleUpCooldown) > now;
    if (count > 0 && !inBackoff(state, now) && !cooling) {
      const reason = newSlices > 0
        ? `demand: ${p!.jobs} jobs, ${p!.tasks} tasks need ${newSlices} more slices`
        : `min_slices ${g.minSlices} (have ${current})`;
      create.push({ group: g.name, count, reason });
    }
    terminate.push(...scaleDown(g, idle.get(g.name), current, wanted.has(g.name), now));
  }
  return { create, terminate, demandSlices, unmet };
}

/** Idle ready slices of one group to terminate, longest idle first, keeping min_slices. */
function scaleDown(
  g: ScaleGroupSpec,
  idle: readonly SliceState[] | undefined,
  current: number,
  hasDemand: boolean,
  now: Timestamp,
): { sliceId: string; group: string; reason: string }[] {
  if (!idle || hasDemand) return [];
  const expired = idle
    .filter((s) => now - s.idleSince! >= g.scaleDownDelay)
    .sort((a, b) => a.idleSince! - b.idleSince! || (a.sliceId < b.sliceId ? -1 : 1));
  const allowed = Math.max(0, current - g.minSlices);
  return expired.slice(0, allowed).map((s) => ({
    sliceId: s.sliceId,
    group: g.name,
    reason: `idle for ${formatDuration((now - s.idleSince!) as Duration)} (scale_down_delay ${
      formatDuration(g.scaleDownDelay)
    })`,
  }));
}
