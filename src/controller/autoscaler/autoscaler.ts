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
  TokenBucket,
} from "../../types.ts";
import { after, type Duration, minutes, seconds, type Timestamp } from "../../time.ts";
import { formatDuration } from "../../format.ts";
import {
  acceleratorMatches,
  buildAttributeIndex,
  constraintsKey,
  filterByConstraints,
  matchesRequired,
} from "../constraints.ts";
import {
  claimSlice,
  claimSlices,
  demandSlicesOf,
  type GroupPack,
  newGroupPack,
  packTasks,
  type TaskShape,
  vmAccelerators,
} from "./pack.ts";

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
    ...(state.upTokens ? { upTokens: state.upTokens } : {}),
    ...(state.downTokens ? { downTokens: state.downTokens } : {}),
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
  reason?: string,
): GroupState {
  const failures = state.consecutiveFailures + 1;
  return {
    ...state,
    consecutiveFailures: failures,
    backoffUntil: after(now, backoffDelay(backoff, failures)),
    ...(reason !== undefined ? { backoffReason: reason } : {}),
  };
}

function backoffDelay(backoff: ScaleBackoff, failures: number): Duration {
  return Math.min(backoff.max, backoff.initial * backoff.factor ** (failures - 1)) as Duration;
}

/** 5 min doubling up to 20 min: how long a group waits after a quota error. */
export const DEFAULT_QUOTA_BACKOFF: ScaleBackoff = {
  initial: minutes(5),
  max: minutes(20),
  factor: 2,
};

/**
 * The state after the platform refused a slice for quota or capacity: the group is
 * `quota_exceeded` until `quotaUntil` (its own backoff, growing with consecutive quota errors)
 * and passes demand on to other groups. The generic backoff is not touched.
 * @returns a new GroupState; `state` is not modified.
 */
export function recordQuotaExceeded(
  state: GroupState,
  now: Timestamp,
  reason: string,
  backoff: ScaleBackoff = DEFAULT_QUOTA_BACKOFF,
): GroupState {
  const failures = (state.quotaFailures ?? 0) + 1;
  return {
    ...state,
    quotaFailures: failures,
    quotaUntil: after(now, backoffDelay(backoff, failures)),
    quotaReason: reason,
  };
}

/** Whole tokens available in a bucket refilling `perMinute` per minute (capacity `perMinute`). */
export function availableTokens(
  bucket: TokenBucket | undefined,
  perMinute: number | undefined,
  now: Timestamp,
): number {
  if (!perMinute || perMinute <= 0) return Infinity;
  if (!bucket) return perMinute;
  const refill = Math.max(0, now - bucket.at) * perMinute / minutes(1);
  return Math.floor(Math.min(perMinute, bucket.tokens + refill) + 1e-9);
}

/**
 * The bucket after taking `n` tokens at `now` (unlimited rate: unchanged).
 * @returns a new bucket, or `bucket` itself when the rate is unlimited.
 */
export function takeTokens(
  bucket: TokenBucket | undefined,
  perMinute: number | undefined,
  now: Timestamp,
  n: number,
): TokenBucket | undefined {
  if (!perMinute || perMinute <= 0 || n <= 0) return bucket;
  const refill = bucket ? Math.max(0, now - bucket.at) * perMinute / minutes(1) : perMinute;
  const tokens = Math.min(perMinute, (bucket?.tokens ?? 0) + refill);
  return { tokens: Math.max(0, tokens - n), at: now };
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
  return !e.gang || group.vmsPerSlice === e.taskCount || spreadsOverSlices(group, e);
}

/**
 * A gang of several tasks served by as many single-VM slices of the group (GPU or CPU hosts), one
 * task per host: the gang's `groupBy` must be an attribute the group's VMs share (not a per-VM
 * one such as `hostname`, nor `slice-id`). TPU gangs take one slice of exactly their size.
 */
export function spreadsOverSlices(group: ScaleGroupSpec, e: DemandEntry): boolean {
  return e.gang && e.taskCount > 1 && group.vmsPerSlice === 1 &&
    group.accelerator.kind !== "tpu" && e.groupBy !== undefined &&
    !PER_VM_ATTRIBUTES.has(e.groupBy) && e.groupBy !== "slice-id";
}

/** Required constraints that routing evaluates (per-VM attributes skipped). */
function routingConstraints(e: DemandEntry): ConstraintSpec[] {
  return e.constraints.filter((c) => !c.preferred && !PER_VM_ATTRIBUTES.has(c.key));
}

/**
 * Whether new slices of `group` could run a task of `entry`: same accelerator rules as the
 * scheduler, required constraints hold on the group's attributes plus `scale-group`,
 * `device-type` and `device-variant` (constraints on {@linkcode PER_VM_ATTRIBUTES} are ignored),
 * one task fits a VM, and a gang has exactly `vmsPerSlice` tasks (one slice per gang) or spreads
 * over single-VM slices ({@linkcode spreadsOverSlices}).
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

function inQuota(state: GroupState | undefined, now: Timestamp): boolean {
  return state?.quotaUntil !== undefined && state.quotaUntil > now;
}

/** Why a slice missed its boot or init timeout, or undefined when it has not. */
export function sliceTimeout(
  g: ScaleGroupSpec | undefined,
  s: SliceState,
  now: Timestamp,
): string | undefined {
  if (!g) return undefined;
  if (s.state === "requesting" && g.bootTimeout && now - s.createdAt >= g.bootTimeout) {
    return `boot_timeout: the platform did not create the slice within ${
      formatDuration(g.bootTimeout)
    }`;
  }
  if (
    s.state === "booting" && g.initTimeout && now - (s.bootedAt ?? s.createdAt) >= g.initTimeout
  ) {
    return `init_timeout: its workers did not all register within ${formatDuration(g.initTimeout)}`;
  }
  return undefined;
}

/**
 * Decides which slices to create and terminate.
 *
 * Routing: each entry goes to candidate groups ({@linkcode groupCanServe}) by priority, then name.
 * Groups in backoff or at max_slices pass the demand on (waterfall); leftovers are `unmet`,
 * e.g. "job /a: 4 of 4 tasks unmet: tpu-a=backoff, tpu-b=at_max_slices" or "no group matches".
 * Sizing: a gang takes one whole slice (a multi-host GPU/CPU gang: one single-VM slice per task); a `wholeVm` entry (reservation) takes one VM per unit; other tasks are packed first-fit-decreasing into VM-sized
 * bins, slices = ceil(VMs / vmsPerSlice). Requesting/booting slices absorb demand before new ones.
 * Scale-up: target = max(min_slices, current + new) capped at max_slices, all of it in one
 * decision. Nothing is created for a group in backoff, nor within `scaleUpCooldown` of its last
 * scale-up (the cooldown applies only between consecutive scale-ups).
 * Groups with `quotaUntil` in the future reject demand as `quota_exceeded` and create nothing.
 * `bufferSlices` adds warm spares: new slices until idle ready plus unused in-flight slices
 * reach it. `scaleUpRate` caps creations by the group's token bucket (upTokens).
 * Scale-down: failed slices are terminated; so are slices `requesting` longer than
 * `bootTimeout` or `booting` longer than `initTimeout` (marked `timedOut`, the caller backs the
 * group off). Ready slices idle for `scaleDownDelay` are terminated (longest idle first) down to
 * min_slices, keeping `bufferSlices` spares and within the `scaleDownRate` token bucket, never
 * while demand could use the group.
 */
export function planScaling(input: PlanScalingInput): ScalingPlan {
  const { now } = input;
  const sorted = [...input.groups].sort((a, b) =>
    a.priority - b.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  );
  const routing = sorted.map((g) => ({ attributes: routingAttributes(g) }));
  const routingIndex = buildAttributeIndex(routing);
  const byName = new Map(sorted.map((g) => [g.name, g]));
  const terminate: { sliceId: string; group: string; reason: string; timedOut?: boolean }[] = [];
  const live = new Map<string, number>();
  const inflight = new Map<string, number>();
  const idle = new Map<string, SliceState[]>();
  const timedOut = new Set<string>();
  for (const s of input.slices) {
    if (s.state === "failed") {
      terminate.push({ sliceId: s.sliceId, group: s.group, reason: "failed" });
      continue;
    }
    const timeout = sliceTimeout(byName.get(s.group), s, now);
    if (timeout) {
      terminate.push({ sliceId: s.sliceId, group: s.group, reason: timeout, timedOut: true });
      timedOut.add(s.group);
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
      p = newGroupPack(
        g,
        live.get(g.name) ?? 0,
        inflight.get(g.name) ?? 0,
        idle.get(g.name)?.length ?? 0,
      );
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
        e.gang ? `${e.taskCount}/${e.groupBy ?? ""}` : "-"
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
  // Rejecting groups pass demand on: quota first (it names the cause), then generic backoff.
  const blocked = new Map<string, string>();
  for (const g of sorted) {
    const st = input.groupStates.get(g.name);
    if (inQuota(st, now)) blocked.set(g.name, "quota_exceeded");
    // A slice timing out now backs the group off (the caller records it).
    else if (inBackoff(st, now) || timedOut.has(g.name)) blocked.set(g.name, "backoff");
  }
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
      if (blocked.has(g.name)) {
        rejected.push(g);
        continue;
      }
      const p = packFor(g);
      const before = left;
      if (e.gang) {
        const ok = spreadsOverSlices(g, e) ? claimSlices(p, e.taskCount) : claimSlice(p);
        left = ok ? 0 : left;
      } else if (e.wholeVm) left = packTasks(p, wholeVmShape(p), left, min);
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
        `${g.name}=${blocked.get(g.name) ?? "at_max_slices"}`
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
    // Warm spares: idle ready slices plus in-flight ones no demand was routed to.
    const unusedInflight = (inflight.get(g.name) ?? 0) -
      (p ? p.inflightClaimed + Math.ceil(p.inflightVmsUsed / Math.max(1, g.vmsPerSlice)) : 0);
    const spare = (idle.get(g.name)?.length ?? 0) + Math.max(0, unusedInflight);
    const buffer = Math.max(0, (g.bufferSlices ?? 0) - spare);
    const target = Math.min(g.maxSlices, Math.max(g.minSlices, current + newSlices + buffer));
    const wantedCount = target - current;
    const tokens = availableTokens(state?.upTokens, g.scaleUpRate, now);
    const count = Math.min(wantedCount, tokens);
    const cooling = state?.lastScaleUp !== undefined &&
      after(state.lastScaleUp, g.scaleUpCooldown) > now;
    if (count > 0 && !blocked.has(g.name) && !cooling) {
      let reason = newSlices > 0
        ? `demand: ${p!.jobs} jobs, ${p!.tasks} tasks need ${newSlices} more slices`
        : current < g.minSlices
        ? `min_slices ${g.minSlices} (have ${current})`
        : `buffer_slices ${g.bufferSlices} (${spare} spare)`;
      if (count < wantedCount) {
        reason += ` (scale_up_rate ${g.scaleUpRate}/min: ${count} of ${wantedCount} now)`;
      }
      create.push({ group: g.name, count, reason });
    }
    terminate.push(
      ...scaleDown(g, idle.get(g.name), current, wanted.has(g.name), now, {
        keep: Math.max(0, (g.bufferSlices ?? 0) - Math.max(0, unusedInflight)),
        tokens: availableTokens(state?.downTokens, g.scaleDownRate, now),
      }),
    );
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
  limits: { keep: number; tokens: number },
): { sliceId: string; group: string; reason: string }[] {
  if (!idle || hasDemand) return [];
  const expired = idle
    .filter((s) => now - s.idleSince! >= g.scaleDownDelay)
    .sort((a, b) => a.idleSince! - b.idleSince! || (a.sliceId < b.sliceId ? -1 : 1));
  // Keep min_slices, `keep` idle spares (buffer_slices) and stay within the scale-down tokens.
  const allowed = Math.max(
    0,
    Math.min(current - g.minSlices, idle.length - limits.keep, limits.tokens),
  );
  return expired.slice(0, allowed).map((s) => ({
    sliceId: s.sliceId,
    group: g.name,
    reason: `idle for ${formatDuration((now - s.idleSince!) as Duration)} (scale_down_delay ${
      formatDuration(g.scaleDownDelay)
    })`,
  }));
}
