/**
 * Explains why a job's tasks stayed pending after a scheduling pass, as a code plus a message
 * with numbers. Reads the end-of-pass capacity; does not place anything.
 * @module
 */
import { formatBytes, formatCpu } from "../../format.ts";
import type { ConstraintSpec, PendingCode, PendingReasonData, SchedulerJob } from "../../types.ts";
import { acceleratorMatches, formatConstraint, matchesConstraint } from "../constraints.ts";
import {
  acceleratorRequest,
  countFit,
  fitCount,
  groupsFor,
  type PassState,
  type WorkerClass,
} from "./index.ts";

/** How a reason says no worker of the current fleet could ever hold the task. */
export const NEVER_FITS = "it can never fit the current fleet";
const WAIT = "waiting for capacity to free up";

function describeAccelerator(job: SchedulerJob): string {
  const { kind, variant } = job.accelerator;
  if (kind === "cpu") return "cpu-only";
  const v = variant.trim();
  return v === "" || v.toLowerCase() === "auto" ? kind : `${kind} ${v}`;
}

interface Dim {
  readonly code: PendingCode;
  /** 0 = cpu, 1 = memory, 2 = accelerators (index into the sorted free arrays). */
  readonly index: 0 | 1 | 2;
  /** Per-task request. */
  readonly req: number;
  readonly total: (c: WorkerClass) => number;
  readonly format: (n: number) => string;
  /** Noun after the amount: "memory", "cpu"… */
  readonly noun: string;
}

function dimsOf(job: SchedulerJob): Dim[] {
  const dims: Dim[] = [
    {
      code: "insufficient_cpu",
      index: 0,
      req: job.resources.cpuMillicores,
      total: (c) => c.totalCpu,
      format: formatCpu,
      // formatCpu already says "cpu".
      noun: "",
    },
    {
      code: "insufficient_memory",
      index: 1,
      req: job.resources.memoryBytes,
      total: (c) => c.totalMem,
      format: formatBytes,
      noun: "memory",
    },
    {
      code: "insufficient_accelerator",
      index: 2,
      req: acceleratorRequest(job),
      total: (c) => c.totalAcc,
      format: (n) => `${n}`,
      noun: `${job.accelerator.kind} accelerators`,
    },
  ];
  return dims.filter((d) => d.req > 0);
}

/** Memo for one pass: early reasons per eligibility key and sorted end-of-pass free capacity. */
export interface Explainer {
  readonly st: PassState;
  readonly early: Map<string, PendingReasonData>;
  readonly sorted: Map<number, readonly [Float64Array, Float64Array, Float64Array]>;
}

/** A fresh explainer; call after the placement pass (capacity is read as final). */
export function newExplainer(st: PassState): Explainer {
  return { st, early: new Map(), sorted: new Map() };
}

/** A job left with unplaced tasks, with the class sets the scheduler already computed. */
export interface UnplacedJob {
  readonly job: SchedulerJob;
  /** Pending tasks of the job (gang size for coscheduled jobs). */
  readonly need: number;
  /** Classes matching kind, variant and required constraints. */
  readonly matching: readonly number[];
  /** Of those, classes whose totals fit one task. */
  readonly fitting: Int32Array;
  readonly eligibilityKey: string;
}

function sortedFree(
  ex: Explainer,
  c: WorkerClass,
): readonly [Float64Array, Float64Array, Float64Array] {
  let s = ex.sorted.get(c.ordinal);
  if (!s) {
    const { st } = ex;
    const pick = (arr: Float64Array) => Float64Array.from(c.members, (o) => arr[o]!).sort();
    s = [pick(st.freeCpu), pick(st.freeMem), pick(st.freeAcc)];
    ex.sorted.set(c.ordinal, s);
  }
  return s;
}

/** Items of an ascending array that are ≥ x. */
function countAtLeast(arr: Float64Array, x: number): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (arr[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return arr.length - lo;
}

function sumMembers(classes: readonly WorkerClass[]): number {
  let n = 0;
  for (const c of classes) n += c.members.length;
  return n;
}

function reason(code: PendingCode, message: string, st: PassState): PendingReasonData {
  return { code, message, workersConsidered: st.workers.length };
}

/**
 * The reason a job still has unplaced tasks after the pass. Order of checks: no healthy workers
 * → accelerator kind/variant → required constraints → per-task resources versus worker totals
 * ("never fits") → coscheduling groups (gangs) → free resources now → building limit.
 */
export function explainUnplaced(ex: Explainer, u: UnplacedJob): PendingReasonData {
  const { st } = ex;
  const { job } = u;
  if (st.workers.length === 0) {
    return reason("no_workers", `no healthy workers (${st.registered} registered)`, st);
  }
  if (u.matching.length === 0) {
    let early = ex.early.get(u.eligibilityKey);
    if (!early) {
      early = mismatchReason(st, job);
      ex.early.set(u.eligibilityKey, early);
    }
    return early;
  }
  const dims = dimsOf(job);
  const fitting = Array.from(u.fitting, (c) => st.classes[c]!);
  if (fitting.length === 0) {
    const eligible = u.matching.map((c) => st.classes[c]!);
    const eligibleCount = sumMembers(eligible);
    let worst = dims[0]!;
    let worstCount = Number.POSITIVE_INFINITY;
    for (const d of dims) {
      const n = sumMembers(eligible.filter((c) => d.total(c) >= d.req));
      if (n < worstCount) [worst, worstCount] = [d, n];
    }
    let max = Number.NEGATIVE_INFINITY;
    let atMax = 0;
    for (const c of eligible) {
      const v = worst.total(c);
      if (v > max) [max, atMax] = [v, c.members.length];
      else if (v === max) atMax += c.members.length;
    }
    if (worst.code === "insufficient_accelerator" && job.accelerator.kind === "gpu") {
      return reason(worst.code, `${gpuShortfall(st, job)}; ${NEVER_FITS}`, st);
    }
    return reason(
      worst.code,
      `no eligible worker has ${worst.format(worst.req)}${
        worst.noun ? ` ${worst.noun}` : ""
      } in total (largest: ${
        worst.format(max)
      } on ${atMax} of ${eligibleCount} eligible workers); ${NEVER_FITS}`,
      st,
    );
  }
  if (job.groupBy !== undefined) return gangReason(st, job, u.need, fitting);
  return freeReason(ex, job, dims, fitting);
}

/** Kind/variant mismatch or unsatisfiable constraints. */
function mismatchReason(st: PassState, job: SchedulerJob): PendingReasonData {
  const kindClasses = st.classes.filter((c) => acceleratorMatches(job.accelerator, c));
  const kindCount = sumMembers(kindClasses);
  if (kindCount === 0 && job.accelerator.kind === "gpu") {
    return reason("accelerator_mismatch", gpuShortfall(st, job), st);
  }
  if (kindCount === 0) {
    const note = job.accelerator.kind === "cpu"
      ? "; cpu jobs run only on workers without accelerators"
      : "";
    return reason(
      "accelerator_mismatch",
      `no ${describeAccelerator(job)} worker (${st.workers.length} workers considered)${note}`,
      st,
    );
  }
  const required = job.constraints.filter((c) => !c.preferred);
  return constraintReason(st, job, required, kindClasses, kindCount);
}

function constraintReason(
  st: PassState,
  job: SchedulerJob,
  required: readonly ConstraintSpec[],
  kindClasses: readonly WorkerClass[],
  kindCount: number,
): PendingReasonData {
  const counts = required.map((c) =>
    sumMembers(kindClasses.filter((cls) => matchesConstraint(cls.attributes, c)))
  );
  const kind = describeAccelerator(job);
  const zero = counts.indexOf(0);
  if (zero >= 0) {
    return reason(
      "constraint_unsatisfied",
      `no worker matches ${formatConstraint(required[zero]!)} (0 of ${kindCount} ${kind} workers)`,
      st,
    );
  }
  const parts = required.map((c, i) => `${formatConstraint(c)} (${counts[i]} of ${kindCount})`);
  return reason(
    "constraint_unsatisfied",
    `no ${kind} worker matches all constraints together: ${parts.join(", ")}`,
    st,
  );
}

function freeReason(
  ex: Explainer,
  job: SchedulerJob,
  dims: readonly Dim[],
  fitting: readonly WorkerClass[],
): PendingReasonData {
  const { st } = ex;
  const total = sumMembers(fitting);
  const anyRoom = {
    cpu: job.resources.cpuMillicores,
    mem: job.resources.memoryBytes,
    acc: acceleratorRequest(job),
    room: Number.NEGATIVE_INFINITY,
  };
  let jointFit = 0;
  for (const c of fitting) jointFit += countFit(c, anyRoom);
  if (jointFit === 0) {
    let worst = dims[0]!;
    let worstCount = Number.POSITIVE_INFINITY;
    for (const d of dims) {
      let n = 0;
      for (const c of fitting) n += countAtLeast(sortedFree(ex, c)[d.index], d.req);
      if (n < worstCount) [worst, worstCount] = [d, n];
    }
    let max = Number.NEGATIVE_INFINITY;
    let atMax = 0;
    for (const c of fitting) {
      const arr = sortedFree(ex, c)[worst.index];
      const top = arr[arr.length - 1]!;
      if (top > max) [max, atMax] = [top, countAtLeast(arr, top)];
      else if (top === max) atMax += countAtLeast(arr, top);
    }
    return reason(
      worst.code,
      `no worker has ${worst.format(worst.req)} free${
        worst.noun ? ` ${worst.noun}` : ""
      } (largest free: ${
        worst.format(Math.max(0, max))
      } on ${atMax} of ${total} eligible workers); ${WAIT}`,
      st,
    );
  }
  const withRoom = fitting.reduce((n, c) => n + countFit(c, { ...anyRoom, room: 1 }), 0);
  if (withRoom === 0) {
    return reason(
      "building_limit",
      `all ${jointFit} workers with room are at the building limit (${st.buildingLimit} ASSIGNED/BUILDING each); waiting for builds to finish`,
      st,
    );
  }
  return reason(
    dims[0]?.code ?? "insufficient_cpu",
    `capacity ran out during this pass (${withRoom} of ${total} eligible workers still have room); ${WAIT}`,
    st,
  );
}

function gangReason(
  st: PassState,
  job: SchedulerJob,
  need: number,
  fitting: readonly WorkerClass[],
): PendingReasonData {
  const key = job.groupBy!;
  const mask = new Uint8Array(st.classes.length);
  for (const c of fitting) mask[c.ordinal] = 1;
  const cpu = job.resources.cpuMillicores;
  const mem = job.resources.memoryBytes;
  const acc = acceleratorRequest(job);
  let groups = 0;
  let largestGroup = 0;
  let bestFree = 0;
  for (const g of groupsFor(st, key)) {
    let size = 0;
    let free = 0;
    for (const o of g.members) {
      if (!mask[st.classOf[o]!]) continue;
      size++;
      if (fitCount(st, o, cpu, mem, acc, 1) > 0) free++;
    }
    if (size === 0) continue;
    groups++;
    largestGroup = Math.max(largestGroup, size);
    if (size >= need) bestFree = Math.max(bestFree, free);
  }
  const head = `needs ${need} workers with the same ${key}`;
  if (groups === 0) {
    return reason(
      "gang_no_slice",
      `${head}; no eligible worker has a ${key} attribute; ${NEVER_FITS}`,
      st,
    );
  }
  if (largestGroup < need) {
    return reason(
      "gang_no_slice",
      `${head}; largest group has ${largestGroup} eligible workers (${groups} groups); ${NEVER_FITS}`,
      st,
    );
  }
  return reason(
    "gang_no_slice",
    `${head}; best group has ${bestFree} free (${groups} groups considered); ${WAIT}`,
    st,
  );
}

/**
 * What a GPU job lacks, naming the biggest GPU worker there is: "no worker has 8× H100; largest:
 * 4× A100 on gpu-a" (or "no GPU workers (3 workers considered)").
 */
function gpuShortfall(st: PassState, job: SchedulerJob): string {
  const n = acceleratorRequest(job);
  const v = job.accelerator.variant.trim();
  const want = `${n}× ${v === "" || v.toLowerCase() === "auto" ? "GPU" : v}`;
  let best: PassState["workers"][number] | undefined;
  for (const w of st.workers) {
    if (w.accelerator.kind !== "gpu") continue;
    if (!best || w.accelerator.count > best.accelerator.count) best = w;
  }
  if (!best) {
    return `no worker has ${want}; no GPU workers (${st.workers.length} workers considered)`;
  }
  const a = best.accelerator;
  return `no worker has ${want}; largest: ${a.count}× ${a.variant || "GPU"} on ${best.id}`;
}
