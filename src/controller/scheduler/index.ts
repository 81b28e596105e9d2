/**
 * Per-pass indexes for the scheduler: healthy workers in typed arrays, worker equivalence classes
 * with max-trees over free capacity, and coscheduling groups. Owns the local free-capacity copy;
 * never touches the snapshot.
 * @module
 */
import type {
  AcceleratorKind,
  ClusterSnapshot,
  SchedulerJob,
  SchedulerWorker,
} from "../../types.ts";
import { type AttributeIndex, buildAttributeIndex, canonicalValue } from "../constraints.ts";

/** Attribute whose integer value orders the workers of a coscheduling group. */
export const WORKER_ID_ATTRIBUTE = "tpu-worker-id";

/**
 * Workers that look identical to every job of this pass: same accelerator kind and variant,
 * same totals, and same values for every attribute key any job's constraints mention.
 * Feasibility (kind, variant, constraints, "could it ever fit") is decided once per class.
 * Free capacity of the members is mirrored in max-trees (leaf i = member i) so first-fit finds
 * the first member with room in about O(log n) instead of scanning full workers.
 */
export interface WorkerClass {
  readonly ordinal: number;
  readonly kind: AcceleratorKind;
  readonly variant: string;
  readonly totalCpu: number;
  readonly totalMem: number;
  readonly totalAcc: number;
  /** The job every member is held for (reservation), or undefined. */
  readonly reservedFor?: string;
  /** Attributes of the first member (representative for constraint checks). */
  readonly attributes: SchedulerWorker["attributes"];
  /** Worker ordinals in snapshot order. */
  readonly members: Int32Array;
  /** Leaf count (power of two ≥ members). */
  readonly leaves: number;
  readonly maxCpu: Float64Array;
  readonly maxMem: Float64Array;
  readonly maxAcc: Float64Array;
  /** Building slots left (Infinity when unlimited). */
  readonly maxRoom: Float64Array;
}

/** Mutable per-pass state: free capacity of healthy workers (local copies), classes, groups. */
export interface PassState {
  /** Healthy workers in snapshot order; ordinals index the typed arrays below. */
  readonly workers: readonly SchedulerWorker[];
  readonly registered: number;
  readonly freeCpu: Float64Array;
  readonly freeMem: Float64Array;
  readonly freeAcc: Float64Array;
  readonly building: Int32Array;
  readonly classOf: Int32Array;
  /** Position of each worker within its class's members. */
  readonly slot: Int32Array;
  /** Max ASSIGNED+BUILDING per worker, 0 = unlimited. */
  readonly buildingLimit: number;
  readonly classes: readonly WorkerClass[];
  readonly classIndex: AttributeIndex;
  /** groupBy key → groups, built lazily. */
  readonly groupsByKey: Map<string, readonly CoGroup[]>;
  /** Jobs some worker is held for (reservations). */
  readonly reservedJobs: ReadonlySet<string>;
  /**
   * Building slots left on all healthy workers together (Infinity when unlimited). Every task
   * takes one: at 0 nothing more can be placed in this pass, and the rest of the queue is only
   * explained, not searched (#20).
   */
  roomLeft: number;
}

/** Workers sharing one value of a coscheduling attribute, ordered by tpu-worker-id then id. */
export interface CoGroup {
  readonly value: string;
  /** Position of the group's first worker in the snapshot (stable tie-break). */
  readonly first: number;
  readonly members: Int32Array;
}

/** Accelerators a job needs per task (the larger of its accelerator spec and resource vector). */
export function acceleratorRequest(job: SchedulerJob): number {
  return Math.max(job.accelerator.count, job.resources.accelerators);
}

function roomOf(st: Pick<PassState, "building" | "buildingLimit">, o: number): number {
  return st.buildingLimit > 0 ? st.buildingLimit - st.building[o]! : Number.POSITIVE_INFINITY;
}

/** Builds the per-pass state from a snapshot. */
export function buildPassState(snapshot: ClusterSnapshot): PassState {
  const workers = snapshot.workers.filter((w) => w.healthy);
  const n = workers.length;
  const relevantKeys = new Set<string>();
  for (const job of snapshot.jobs) for (const c of job.constraints) relevantKeys.add(c.key);
  const keys = [...relevantKeys].sort();
  const freeCpu = new Float64Array(n);
  const freeMem = new Float64Array(n);
  const freeAcc = new Float64Array(n);
  const building = new Int32Array(n);
  const classOf = new Int32Array(n);
  const slot = new Int32Array(n);
  const classIds = new Map<string, number>();
  const reservedJobs = new Set<string>();
  const memberLists: number[][] = [];
  const reps: SchedulerWorker[] = [];
  for (let o = 0; o < n; o++) {
    const w = workers[o]!;
    freeCpu[o] = w.free.cpuMillicores;
    freeMem[o] = w.free.memoryBytes;
    freeAcc[o] = w.free.accelerators;
    building[o] = w.buildingCount;
    let key =
      `${w.accelerator.kind}\u0001${w.accelerator.variant.trim().toLowerCase()}\u0001${w.total.cpuMillicores}\u0001${w.total.memoryBytes}\u0001${w.total.accelerators}`;
    for (const k of keys) {
      const v = w.attributes[k];
      key += v === undefined ? "\u0001-" : `\u0001${canonicalValue(v)}`;
    }
    if (w.reservedFor !== undefined) {
      key += `\u0002${w.reservedFor}`;
      reservedJobs.add(w.reservedFor);
    }
    let c = classIds.get(key);
    if (c === undefined) {
      c = memberLists.length;
      classIds.set(key, c);
      memberLists.push([]);
      reps.push(w);
    }
    slot[o] = memberLists[c]!.length;
    memberLists[c]!.push(o);
    classOf[o] = c;
  }
  const buildingLimit = Math.max(0, snapshot.maxBuildingPerWorker ?? 0);
  const base = { building, buildingLimit };
  let roomLeft = 0;
  for (let o = 0; o < n; o++) roomLeft += Math.max(0, roomOf(base, o));
  const classes: WorkerClass[] = memberLists.map((list, ordinal) => {
    const rep = reps[ordinal]!;
    let leaves = 1;
    while (leaves < list.length) leaves *= 2;
    const maxCpu = new Float64Array(2 * leaves).fill(Number.NEGATIVE_INFINITY);
    const maxMem = new Float64Array(2 * leaves).fill(Number.NEGATIVE_INFINITY);
    const maxAcc = new Float64Array(2 * leaves).fill(Number.NEGATIVE_INFINITY);
    const maxRoom = new Float64Array(2 * leaves).fill(Number.NEGATIVE_INFINITY);
    for (let i = 0; i < list.length; i++) {
      const o = list[i]!;
      maxCpu[leaves + i] = freeCpu[o]!;
      maxMem[leaves + i] = freeMem[o]!;
      maxAcc[leaves + i] = freeAcc[o]!;
      maxRoom[leaves + i] = roomOf(base, o);
    }
    for (let v = leaves - 1; v >= 1; v--) {
      maxCpu[v] = Math.max(maxCpu[2 * v]!, maxCpu[2 * v + 1]!);
      maxMem[v] = Math.max(maxMem[2 * v]!, maxMem[2 * v + 1]!);
      maxAcc[v] = Math.max(maxAcc[2 * v]!, maxAcc[2 * v + 1]!);
      maxRoom[v] = Math.max(maxRoom[2 * v]!, maxRoom[2 * v + 1]!);
    }
    return {
      ordinal,
      kind: rep.accelerator.kind,
      variant: rep.accelerator.variant,
      totalCpu: rep.total.cpuMillicores,
      totalMem: rep.total.memoryBytes,
      totalAcc: rep.total.accelerators,
      reservedFor: rep.reservedFor,
      attributes: rep.attributes,
      members: Int32Array.from(list),
      leaves,
      maxCpu,
      maxMem,
      maxAcc,
      maxRoom,
    };
  });
  return {
    workers,
    registered: snapshot.workers.length,
    freeCpu,
    freeMem,
    freeAcc,
    building,
    classOf,
    slot,
    buildingLimit,
    classes,
    classIndex: buildAttributeIndex(classes),
    groupsByKey: new Map(),
    reservedJobs,
    roomLeft,
  };
}

/** How many tasks of the given per-task shape fit on a worker now (capped at `cap`). */
export function fitCount(
  st: PassState,
  o: number,
  cpu: number,
  mem: number,
  acc: number,
  cap: number,
): number {
  let k = Math.min(cap, roomOf(st, o));
  if (cpu > 0) k = Math.min(k, Math.floor(st.freeCpu[o]! / cpu));
  if (mem > 0) k = Math.min(k, Math.floor(st.freeMem[o]! / mem));
  if (acc > 0) k = Math.min(k, Math.floor(st.freeAcc[o]! / acc));
  return k > 0 ? k : 0;
}

/** Deducts `k` tasks of a shape from a worker's local free capacity and its class max-trees. */
export function deduct(
  st: PassState,
  o: number,
  cpu: number,
  mem: number,
  acc: number,
  k: number,
): void {
  st.freeCpu[o] = st.freeCpu[o]! - cpu * k;
  st.freeMem[o] = st.freeMem[o]! - mem * k;
  st.freeAcc[o] = st.freeAcc[o]! - acc * k;
  // roomLeft sums the room workers have: room promised for preemption (preempt.ts) may be on a
  // worker at its building limit, and takes no slot of another worker.
  st.roomLeft -= Math.min(k, Math.max(0, roomOf(st, o)));
  st.building[o] = st.building[o]! + k;
  const c = st.classes[st.classOf[o]!]!;
  let v = c.leaves + st.slot[o]!;
  c.maxCpu[v] = st.freeCpu[o]!;
  c.maxMem[v] = st.freeMem[o]!;
  c.maxAcc[v] = st.freeAcc[o]!;
  c.maxRoom[v] = roomOf(st, o);
  for (v >>= 1; v >= 1; v >>= 1) {
    const cpuMax = Math.max(c.maxCpu[2 * v]!, c.maxCpu[2 * v + 1]!);
    const memMax = Math.max(c.maxMem[2 * v]!, c.maxMem[2 * v + 1]!);
    const accMax = Math.max(c.maxAcc[2 * v]!, c.maxAcc[2 * v + 1]!);
    const roomMax = Math.max(c.maxRoom[2 * v]!, c.maxRoom[2 * v + 1]!);
    if (
      cpuMax === c.maxCpu[v] && memMax === c.maxMem[v] && accMax === c.maxAcc[v] &&
      roomMax === c.maxRoom[v]
    ) break;
    c.maxCpu[v] = cpuMax;
    c.maxMem[v] = memMax;
    c.maxAcc[v] = accMax;
    c.maxRoom[v] = roomMax;
  }
}

/** A per-task request for tree searches; `room` is the building slots needed (1, or -Infinity to ignore). */
export interface Need {
  readonly cpu: number;
  readonly mem: number;
  readonly acc: number;
  readonly room: number;
}

function covers(c: WorkerClass, v: number, need: Need): boolean {
  return c.maxCpu[v]! >= need.cpu && c.maxMem[v]! >= need.mem && c.maxAcc[v]! >= need.acc &&
    c.maxRoom[v]! >= need.room;
}

/** Position of the first member at or after `start` that can take one task, or -1. */
export function firstFit(c: WorkerClass, start: number, need: Need): number {
  if (start >= c.members.length || !covers(c, 1, need)) return -1;
  if (covers(c, c.leaves + start, need)) return start;
  return descend(c, 1, 0, c.leaves, start, need);
}

function descend(
  c: WorkerClass,
  v: number,
  lo: number,
  hi: number,
  start: number,
  need: Need,
): number {
  if (hi <= start || !covers(c, v, need)) return -1;
  if (hi - lo === 1) return lo;
  const mid = (lo + hi) >> 1;
  const left = descend(c, 2 * v, lo, mid, start, need);
  return left >= 0 ? left : descend(c, 2 * v + 1, mid, hi, start, need);
}

/** How many members can take one task (visits only subtrees whose maxima allow it). */
export function countFit(c: WorkerClass, need: Need, v = 1, lo = 0, hi = c.leaves): number {
  if (lo >= c.members.length || !covers(c, v, need)) return 0;
  if (hi - lo === 1) return 1;
  const mid = (lo + hi) >> 1;
  return countFit(c, need, 2 * v, lo, mid) + countFit(c, need, 2 * v + 1, mid, hi);
}

/** Coscheduling groups for an attribute key, built once per pass and cached. */
export function groupsFor(st: PassState, key: string): readonly CoGroup[] {
  const cached = st.groupsByKey.get(key);
  if (cached) return cached;
  const byValue = new Map<string, number[]>();
  const display = new Map<string, string>();
  for (let o = 0; o < st.workers.length; o++) {
    const v = st.workers[o]!.attributes[key];
    if (v === undefined) continue;
    const cv = canonicalValue(v);
    const list = byValue.get(cv);
    if (list) list.push(o);
    else {
      byValue.set(cv, [o]);
      display.set(cv, String(v));
    }
  }
  const rank = (o: number): number => {
    const v = st.workers[o]!.attributes[WORKER_ID_ATTRIBUTE];
    const n = typeof v === "number"
      ? v
      : typeof v === "string" && v.trim() !== ""
      ? Number(v)
      : NaN;
    return Number.isFinite(n) ? n : Number.POSITIVE_INFINITY;
  };
  const groups: CoGroup[] = [];
  for (const [cv, list] of byValue) {
    const first = list[0]!;
    list.sort((a, b) => {
      const d = rank(a) - rank(b);
      if (d !== 0 && !Number.isNaN(d)) return d;
      const ia = st.workers[a]!.id;
      const ib = st.workers[b]!.id;
      return ia < ib ? -1 : ia > ib ? 1 : 0;
    });
    groups.push({ value: display.get(cv)!, first, members: Int32Array.from(list) });
  }
  groups.sort((a, b) => a.first - b.first);
  st.groupsByKey.set(key, groups);
  return groups;
}
