/**
 * Per-group packing state for one autoscaler decision: VM-sized bins for independent tasks,
 * whole slices for gangs, in-flight slices absorbing demand first. No routing, no clock.
 * @module
 */
import type { ScaleGroupSpec } from "../../types.ts";

/** Per-task request as plain numbers. */
export interface TaskShape {
  readonly cpu: number;
  readonly mem: number;
  readonly acc: number;
}

/** Mutable packing state of one scale group during one decision. */
export interface GroupPack {
  readonly spec: ScaleGroupSpec;
  readonly vmCpu: number;
  readonly vmMem: number;
  readonly vmAcc: number;
  /** Slices requesting/booting/ready (not failed, not terminating). */
  readonly current: number;
  /** New slices this decision may still add before max_slices. */
  room: number;
  newSlices: number;
  /** In-flight (requesting/booting) slices not yet used by a gang. */
  inflightFree: number;
  /** Idle ready slices a multi-host gang may still count on (see {@linkcode claimSlices}). */
  idleFree: number;
  inflightClaimed: number;
  /** Fully empty VMs available: unclaimed in-flight ones first, then those of new slices. */
  emptyVms: number;
  inflightVmsLeft: number;
  inflightVmsUsed: number;
  /** Partly used VMs in first-fit order: remaining capacity and how many VMs are alike. */
  binCpu: number[];
  binMem: number[];
  binAcc: number[];
  binCount: number[];
  jobs: number;
  tasks: number;
}

/** Offered accelerators per VM of a group. */
export function vmAccelerators(spec: ScaleGroupSpec): number {
  return Math.max(spec.vmResources.accelerators, spec.accelerator.count);
}

/** A fresh packing state for a group with `current` live and `inflight` requesting/booting slices. */
export function newGroupPack(
  spec: ScaleGroupSpec,
  current: number,
  inflight: number,
  idle = 0,
): GroupPack {
  const vms = Math.max(1, spec.vmsPerSlice);
  return {
    spec,
    vmCpu: spec.vmResources.cpuMillicores,
    vmMem: spec.vmResources.memoryBytes,
    vmAcc: vmAccelerators(spec),
    current,
    room: Math.max(0, spec.maxSlices - current),
    newSlices: 0,
    inflightFree: inflight,
    idleFree: idle,
    inflightClaimed: 0,
    emptyVms: inflight * vms,
    inflightVmsLeft: inflight * vms,
    inflightVmsUsed: 0,
    binCpu: [],
    binMem: [],
    binAcc: [],
    binCount: [],
    jobs: 0,
    tasks: 0,
  };
}

function fits(cpu: number, mem: number, acc: number, t: TaskShape, cap: number): number {
  let k = cap;
  if (t.cpu > 0) k = Math.min(k, Math.floor(cpu / t.cpu));
  if (t.mem > 0) k = Math.min(k, Math.floor(mem / t.mem));
  if (t.acc > 0) k = Math.min(k, Math.floor(acc / t.acc));
  return Math.max(0, k);
}

/** Takes one whole slice for a gang: an unclaimed in-flight slice, else a new one. */
export function claimSlice(p: GroupPack): boolean {
  const vms = Math.max(1, p.spec.vmsPerSlice);
  if (p.inflightFree > 0 && p.inflightVmsLeft >= vms) {
    p.inflightFree--;
    p.inflightClaimed++;
    p.emptyVms -= vms;
    p.inflightVmsLeft -= vms;
    return true;
  }
  if (p.room <= 0) return false;
  p.room--;
  p.newSlices++;
  return true;
}

/**
 * Takes `n` single-VM slices for a gang spread over `n` hosts of the group: idle ready ones first
 * (they may already be part of its placement), then unclaimed in-flight ones, then new ones up to
 * max_slices. All or none: false (nothing taken) when the group cannot reach `n`.
 */
export function claimSlices(p: GroupPack, n: number): boolean {
  const fromIdle = Math.min(p.idleFree, n);
  const fromInflight = Math.min(p.inflightFree, p.inflightVmsLeft, n - fromIdle);
  const fresh = n - fromIdle - fromInflight;
  if (fresh > p.room) return false;
  p.idleFree -= fromIdle;
  p.inflightFree -= fromInflight;
  p.inflightClaimed += fromInflight;
  p.emptyVms -= fromInflight;
  p.inflightVmsLeft -= fromInflight;
  p.room -= fresh;
  p.newSlices += fresh;
  return true;
}

/** Appends `count` alike VMs with the given free capacity unless they cannot take `min`. */
function pushBin(
  p: GroupPack,
  cpu: number,
  mem: number,
  acc: number,
  count: number,
  min: TaskShape,
): void {
  if (count <= 0 || cpu < min.cpu || mem < min.mem || acc < min.acc) return;
  p.binCpu.push(cpu);
  p.binMem.push(mem);
  p.binAcc.push(acc);
  p.binCount.push(count);
}

function useEmptyVms(
  p: GroupPack,
  t: TaskShape,
  remaining: number,
  perVm: number,
  min: TaskShape,
): number {
  if (p.emptyVms <= 0 || remaining <= 0) return remaining;
  const vms = Math.min(p.emptyVms, Math.ceil(remaining / perVm));
  const placed = Math.min(remaining, vms * perVm);
  p.emptyVms -= vms;
  const fromInflight = Math.min(vms, p.inflightVmsLeft);
  p.inflightVmsLeft -= fromInflight;
  p.inflightVmsUsed += fromInflight;
  const full = Math.floor(placed / perVm);
  const rest = placed - full * perVm;
  pushBin(p, p.vmCpu - perVm * t.cpu, p.vmMem - perVm * t.mem, p.vmAcc - perVm * t.acc, full, min);
  if (rest > 0) {
    pushBin(p, p.vmCpu - rest * t.cpu, p.vmMem - rest * t.mem, p.vmAcc - rest * t.acc, 1, min);
  }
  return remaining - placed;
}

/**
 * First-fit of `remaining` identical tasks: partly used VMs, then empty VMs, then new slices up
 * to max_slices. Bins that cannot take `min` any more are dropped. Returns tasks left over.
 */
export function packTasks(p: GroupPack, t: TaskShape, remaining: number, min: TaskShape): number {
  const perVm = fits(p.vmCpu, p.vmMem, p.vmAcc, t, Number.MAX_SAFE_INTEGER);
  if (perVm <= 0) return remaining;
  if (p.binCpu.length === 0 && p.emptyVms === 0 && p.room === 0) return remaining;
  let r = remaining;
  const { binCpu, binMem, binAcc, binCount } = p;
  if (binCpu.length > 0) {
    p.binCpu = [];
    p.binMem = [];
    p.binAcc = [];
    p.binCount = [];
    for (let i = 0; i < binCpu.length; i++) {
      const cpu = binCpu[i]!;
      const mem = binMem[i]!;
      const acc = binAcc[i]!;
      const count = binCount[i]!;
      const k = r > 0 ? fits(cpu, mem, acc, t, Number.MAX_SAFE_INTEGER) : 0;
      if (k === 0) {
        pushBin(p, cpu, mem, acc, count, min);
        continue;
      }
      const full = Math.min(count, Math.floor(r / k));
      const rest = full < count ? Math.min(k - 1, r - full * k) : 0;
      pushBin(p, cpu - k * t.cpu, mem - k * t.mem, acc - k * t.acc, full, min);
      if (rest > 0) pushBin(p, cpu - rest * t.cpu, mem - rest * t.mem, acc - rest * t.acc, 1, min);
      pushBin(p, cpu, mem, acc, count - full - (rest > 0 ? 1 : 0), min);
      r -= full * k + rest;
    }
  }
  r = useEmptyVms(p, t, r, perVm, min);
  if (r > 0 && p.room > 0) {
    const vms = Math.max(1, p.spec.vmsPerSlice);
    const slices = Math.min(p.room, Math.ceil(Math.ceil(r / perVm) / vms));
    p.room -= slices;
    p.newSlices += slices;
    p.emptyVms += slices * vms;
    r = useEmptyVms(p, t, r, perVm, min);
  }
  return r;
}

/** Slices the routed demand occupies in this group: in-flight ones used plus new ones. */
export function demandSlicesOf(p: GroupPack): number {
  const vms = Math.max(1, p.spec.vmsPerSlice);
  return p.inflightClaimed + Math.ceil(p.inflightVmsUsed / vms) + p.newSlices;
}
