/**
 * Pure placement of pending tasks onto workers: snapshot in, plan out. Does not read the clock,
 * touch the store, call platforms or mutate its input; capacity is deducted from a local copy.
 * @module
 */
import { finishBudgetPlan, splitOverBudget } from "./budget.ts";
import type {
  Assignment,
  ClusterSnapshot,
  PendingReasonData,
  Preemption,
  ReservationClaim,
  SchedulePlan,
  SchedulerJob,
} from "../../types.ts";
import {
  acceleratorMatches,
  constraintsKey,
  filterByConstraints,
  preferenceScore,
} from "../constraints.ts";
import {
  acceleratorRequest,
  buildPassState,
  deduct,
  firstFit,
  fitCount,
  groupsFor,
  type PassState,
} from "./index.ts";
import { explainUnplaced, newExplainer } from "./reasons.ts";
import {
  type BlockedJob,
  newPreemptor,
  preemptFor,
  preemptionPossible,
  type Preemptor,
} from "./preempt.ts";
import { claimReservations } from "./reserve.ts";

/**
 * Everything about a job that decides where it may go. Jobs with equal signatures share
 * eligibility and scan positions: capacity only shrinks during a pass, so positions where one
 * job found nothing stay empty for the next.
 */
interface Signature {
  readonly cpu: number;
  readonly mem: number;
  readonly acc: number;
  /** Building slots one task needs (always 1). */
  readonly room: number;
  /** Kind, variant and required constraints: key into PassContext.eligibility. */
  readonly eligibilityKey: string;
  /** Eligible classes (kind, variant, constraints, totals), best preference first. */
  readonly classes: Int32Array;
  /** Per eligible class: members before this position cannot take this shape. */
  readonly pos: Int32Array;
  /** Eligible classes before this index are exhausted for this shape. */
  ci: number;
  /** Coscheduling: eligible members of qualifying groups, fewest members first. */
  groups?: Int32Array[];
  gpos: number;
}

interface PassContext {
  readonly st: PassState;
  readonly signatures: Map<string, Signature>;
  /** kind, variant and required constraints → matching class ordinals. */
  readonly eligibility: Map<string, number[]>;
  readonly constraintKeys: WeakMap<object, string>;
  readonly assignments: Assignment[];
}

/**
 * Places pending tasks onto healthy workers.
 *
 * Fit: a worker takes a task when it is healthy, its accelerator kind equals the job's (a "cpu"
 * job runs only on cpu workers), the variant matches (empty = any), free CPU, memory and
 * accelerators cover the request, it is below `maxBuildingPerWorker` (counting placements of
 * this plan) and every required constraint holds. Preferred constraints only rank workers.
 *
 * Reservations: first, each unclaimed entry of `snapshot.reservations` claims an idle matching
 * worker (plan.claims); workers held for a job (`reservedFor`) take only that job's tasks.
 *
 * Preemption: when a job still has unplaced tasks and `snapshot.running` holds tasks of a lower
 * band on workers it is eligible for, plan.preemptions names the victims (see
 * preempt.ts); the job is placed on a later pass once they stopped. Without such a
 * job the pass costs nothing.
 *
 * Order: band (lower first), then snapshot order; within a band, users take turns (fewest
 * active tasks first, `activeByUser`), so one user's huge job does not hold back another user's
 * small one (see placeBand). Coscheduled jobs (`groupBy` set) are
 * all-or-nothing within one group of workers sharing the attribute value (smallest qualifying
 * group first); task k of the pending indices (ascending) goes to the k-th fitting worker ordered
 * by `tpu-worker-id`, then worker id. Other jobs are first-fit; a job that does not fit never
 * blocks the jobs behind it.
 *
 * @param snapshot readonly cluster view; not modified.
 * @returns assignments, plus one reason per job with unplaced tasks.
 */
export function schedule(input: ClusterSnapshot): SchedulePlan {
  // Nothing to place: no index over the workers (a large idle fleet costs nothing).
  if (input.jobs.length === 0 && !input.reservations?.length) {
    return { assignments: [], unplaced: [] };
  }
  if (!input.budgets) return schedulePass(input);
  // Resource budgets: over-budget tasks are placed as BATCH this pass (budget.ts).
  const split = splitOverBudget(input);
  return finishBudgetPlan(schedulePass({ ...input, jobs: split.jobs }), split);
}

function schedulePass(input: ClusterSnapshot): SchedulePlan {
  let snapshot = input;
  let claims: ReservationClaim[] = [];
  if (input.reservations?.length) {
    const claimed = claimReservations(input.workers, input.reservations);
    claims = claimed.claims;
    snapshot = { ...input, workers: claimed.workers };
  }
  const ctx: PassContext = {
    st: buildPassState(snapshot),
    signatures: new Map(),
    eligibility: new Map(),
    constraintKeys: new WeakMap(),
    assignments: [],
  };
  const leftover: {
    job: SchedulerJob;
    remaining: number;
    need: number;
    key: string;
    sig: Signature;
  }[] = [];
  // Preemption runs after each band's placement, before the bands below it are placed.
  let preemptor: Preemptor | undefined;
  let bandStart = 0;
  const preemptBand = () => {
    const blocked = leftover.slice(bandStart);
    bandStart = leftover.length;
    if (!preemptionPossible(snapshot, blocked)) return;
    preemptor ??= newPreemptor(ctx.st, snapshot);
    preemptFor(
      preemptor,
      blocked.map(({ job, remaining, sig }): BlockedJob => ({
        job,
        remaining,
        classes: sig.classes,
        groups: sig.groups,
      })),
    );
  };
  const ordered = jobsInOrder(snapshot.jobs);
  for (let i = 0; i < ordered.length;) {
    const band = ordered[i]!.band;
    let end = i;
    while (end < ordered.length && ordered[end]!.band === band) end++;
    if (oneUser(ordered, i, end)) {
      // Each job in turn takes all it can; no per-job bookkeeping beyond what is left over, and
      // once every building slot is taken the rest is only explained (a pass over a long queue
      // costs little more than what it places, #20).
      for (let k = i; k < end; k++) {
        const job = ordered[k]!;
        const need = job.pendingTaskIndices.length;
        if (need === 0) continue;
        const key = signatureKey(ctx, job);
        const sig = signatureFor(ctx, job, key);
        const placed = ctx.st.roomLeft > 0 ? placeAll(ctx, sig, job, job.pendingTaskIndices) : 0;
        if (placed < need) leftover.push({ job, remaining: need - placed, need, key, sig });
      }
    } else {
      const entries: BandEntry[] = [];
      for (let k = i; k < end; k++) {
        const job = ordered[k]!;
        if (job.pendingTaskIndices.length === 0) continue;
        const key = signatureKey(ctx, job);
        entries.push({ job, key, sig: signatureFor(ctx, job, key), placed: 0 });
      }
      placeBand(ctx, entries, snapshot.activeByUser?.[band] ?? {});
      for (const { job, key, sig, placed } of entries) {
        const need = job.pendingTaskIndices.length;
        if (placed < need) leftover.push({ job, remaining: need - placed, need, key, sig });
      }
    }
    if (bandStart < leftover.length) preemptBand();
    i = end;
  }
  const reasons = new Map<string, PendingReasonData>();
  const preemptions: Preemption[] = preemptor?.preemptions ?? [];
  const preemptReasons = preemptor?.reasons;
  const explainer = newExplainer(ctx.st);
  const unplaced = leftover.map(({ job, remaining, need, key, sig }) => {
    const preempting = preemptReasons?.get(job.jobId);
    if (preempting) return { jobId: job.jobId, taskCount: remaining, reason: preempting };
    let reason = reasons.get(key);
    if (!reason) {
      const matching = ctx.eligibility.get(sig.eligibilityKey)!;
      reason = explainUnplaced(explainer, {
        job,
        need,
        matching,
        fitting: sig.classes,
        eligibilityKey: sig.eligibilityKey,
      });
      reasons.set(key, reason);
    }
    return { jobId: job.jobId, taskCount: remaining, reason };
  });
  return { assignments: ctx.assignments, unplaced, preemptions, claims };
}

interface BandEntry {
  readonly job: SchedulerJob;
  readonly key: string;
  readonly sig: Signature;
  /** Pending tasks placed so far in this pass (a prefix of pendingTaskIndices). */
  placed: number;
}

/**
 * Places one band's jobs (in snapshot order). With one user, each job in turn takes all it
 * can. With several, users take turns one task (a gang: the whole gang) at a time, the user
 * with the fewest active tasks in the band (counting this pass's placements) first, ties to the
 * user whose next job is earlier; a user's jobs go in snapshot order, and a job that no longer
 * fits gives its turn to the user's next job. Once one user is left it takes the rest at once.
 */
function placeBand(
  ctx: PassContext,
  entries: BandEntry[],
  active: Readonly<Record<string, number>>,
): void {
  const queues = new Map<string, { count: number; jobs: BandEntry[]; order: number[] }>();
  entries.forEach((e, order) => {
    const user = e.job.user ?? "";
    let q = queues.get(user);
    if (!q) queues.set(user, q = { count: active[user] ?? 0, jobs: [], order: [] });
    q.jobs.push(e);
    q.order.push(order);
  });
  const placeRest = (e: BandEntry) => {
    const tasks = e.job.pendingTaskIndices;
    const rest = e.placed === 0 ? tasks : tasks.slice(e.placed);
    e.placed += e.job.groupBy === undefined
      ? placeIndependent(ctx, e.sig, e.job, rest)
      : placeGang(ctx, e.sig, e.job, rest);
  };
  let live = [...queues.values()];
  while (live.length > 1) {
    // Every building slot is taken: nothing more fits anywhere in this pass.
    if (ctx.st.roomLeft <= 0) return;
    let q = live[0]!;
    for (const other of live) {
      if (other.count < q.count || (other.count === q.count && other.order[0]! < q.order[0]!)) {
        q = other;
      }
    }
    const e = q.jobs[0]!;
    const tasks = e.job.pendingTaskIndices;
    const n = e.job.groupBy === undefined
      ? placeIndependent(ctx, e.sig, e.job, [tasks[e.placed]!])
      : placeGang(ctx, e.sig, e.job, tasks);
    e.placed += n;
    q.count += n;
    if (n === 0 || e.placed === tasks.length) {
      q.jobs.shift();
      q.order.shift();
      if (q.jobs.length === 0) live = live.filter((x) => x !== q);
    }
  }
  for (const q of live) for (const e of q.jobs) if (ctx.st.roomLeft > 0) placeRest(e);
}

/** Whether the jobs `from` (inclusive) to `to` (exclusive) all belong to one user. */
function oneUser(jobs: readonly SchedulerJob[], from: number, to: number): boolean {
  const user = jobs[from]!.user ?? "";
  for (let k = from + 1; k < to; k++) if ((jobs[k]!.user ?? "") !== user) return false;
  return true;
}

/** Places what it can of `tasks` (independent: first fit; a gang: all or nothing). */
function placeAll(
  ctx: PassContext,
  sig: Signature,
  job: SchedulerJob,
  tasks: readonly number[],
): number {
  return job.groupBy === undefined
    ? placeIndependent(ctx, sig, job, tasks)
    : placeGang(ctx, sig, job, tasks);
}

/** Jobs ordered by band (ascending), stable within a band. */
function jobsInOrder(jobs: readonly SchedulerJob[]): readonly SchedulerJob[] {
  const byBand = new Map<number, SchedulerJob[]>();
  for (const job of jobs) {
    const list = byBand.get(job.band);
    if (list) list.push(job);
    else byBand.set(job.band, [job]);
  }
  if (byBand.size <= 1) return jobs;
  return [...byBand.keys()].sort((a, b) => a - b).flatMap((b) => byBand.get(b)!);
}

/**
 * A job's signature key without its reservation holder, by the (readonly) job object: the
 * controller hands a waiting job's same object to pass after pass (snapshot.ts), and building
 * the key was a good part of a pass over a long queue (#20).
 */
const plainKeys = new WeakMap<SchedulerJob, string>();

function signatureKey(ctx: PassContext, job: SchedulerJob): string {
  const plain = plainSignature(job, ctx.constraintKeys);
  return ctx.st.reservedJobs.has(job.jobId) ? job.jobId + plain : plain;
}

/**
 * What decides where a job's tasks may go and why they wait, but for a reservation it holds:
 * jobs with equal signatures place and are explained alike (scheduling_pass.ts relies on it).
 */
export function plainSignature(
  job: SchedulerJob,
  constraintKeys?: WeakMap<object, string>,
): string {
  let plain = plainKeys.get(job);
  if (plain === undefined) {
    let ck = constraintKeys?.get(job.constraints);
    if (ck === undefined) {
      ck = constraintsKey(job.constraints);
      constraintKeys?.set(job.constraints, ck);
    }
    const gang = job.groupBy === undefined
      ? ""
      : `${job.groupBy}\u0001${job.pendingTaskIndices.length}`;
    plain =
      `\u0001${job.accelerator.kind}\u0001${job.accelerator.variant}\u0001${job.resources.cpuMillicores}\u0001${job.resources.memoryBytes}\u0001${
        acceleratorRequest(job)
      }\u0001${gang}\u0001${ck}`;
    plainKeys.set(job, plain);
  }
  return plain;
}

function signatureFor(ctx: PassContext, job: SchedulerJob, key: string): Signature {
  const existing = ctx.signatures.get(key);
  if (existing) return existing;
  const { st } = ctx;
  const cpu = job.resources.cpuMillicores;
  const mem = job.resources.memoryBytes;
  const acc = acceleratorRequest(job);
  const required = job.constraints.filter((c) => !c.preferred);
  // Workers held for a reservation serve only their job: holders get their own eligibility.
  const holder = st.reservedJobs.has(job.jobId) ? job.jobId : undefined;
  const eligibilityKey = `${
    holder ?? ""
  }\u0001${job.accelerator.kind}\u0001${job.accelerator.variant}\u0001${constraintsKey(required)}`;
  let matching = ctx.eligibility.get(eligibilityKey);
  if (!matching) {
    matching = filterByConstraints(st.classIndex, st.classes, required)
      .filter((c) => {
        const cls = st.classes[c]!;
        return acceleratorMatches(job.accelerator, cls) &&
          (cls.reservedFor === undefined || cls.reservedFor === holder);
      });
    ctx.eligibility.set(eligibilityKey, matching);
  }
  const eligible = matching.filter((c) => {
    const cls = st.classes[c]!;
    return cls.totalCpu >= cpu && cls.totalMem >= mem && cls.totalAcc >= acc;
  });
  // Preferred constraints rank classes (and gang groups by their members' classes).
  const score = new Int32Array(st.classes.length);
  if (job.constraints.some((c) => c.preferred)) {
    for (const c of eligible) {
      score[c] = preferenceScore(st.classes[c]!.attributes, job.constraints);
    }
    eligible.sort((a, b) => score[b]! - score[a]! || a - b);
  }
  if (holder !== undefined) {
    // A job's own reserved workers first: that is what they are held for.
    const own = (c: number) => (st.classes[c]!.reservedFor === holder ? 0 : 1);
    eligible.sort((a, b) => own(a) - own(b));
  }
  const classes = Int32Array.from(eligible);
  const sig: Signature = {
    cpu,
    mem,
    acc,
    room: 1,
    eligibilityKey,
    classes,
    pos: new Int32Array(classes.length),
    ci: 0,
    gpos: 0,
  };
  if (job.groupBy !== undefined) {
    sig.groups = qualifyingGroups(st, job.groupBy, classes, score, job.pendingTaskIndices.length);
  }
  ctx.signatures.set(key, sig);
  return sig;
}

/**
 * Groups with at least `need` eligible members, as eligible members only: best mean preference
 * score of the members' classes first, then fewest members, then snapshot order.
 */
function qualifyingGroups(
  st: PassState,
  key: string,
  classes: Int32Array,
  score: Int32Array,
  need: number,
): Int32Array[] {
  const mask = new Uint8Array(st.classes.length);
  for (const c of classes) mask[c] = 1;
  const out: { members: Int32Array; first: number; score: number }[] = [];
  for (const g of groupsFor(st, key)) {
    let n = 0;
    let total = 0;
    for (const o of g.members) {
      const c = st.classOf[o]!;
      if (!mask[c]) continue;
      n++;
      total += score[c]!;
    }
    if (n < need) continue;
    const members = n === g.members.length
      ? g.members
      : g.members.filter((o) => mask[st.classOf[o]!] === 1);
    out.push({ members, first: g.first, score: total / n });
  }
  out.sort((a, b) => b.score - a.score || a.members.length - b.members.length || a.first - b.first);
  return out.map((g) => g.members);
}

/** First-fit of independent tasks over eligible classes; returns how many were placed. */
function placeIndependent(
  ctx: PassContext,
  sig: Signature,
  job: SchedulerJob,
  tasks: readonly number[],
): number {
  const { st, assignments } = ctx;
  const { cpu, mem, acc } = sig;
  const need = tasks.length;
  let t = 0;
  while (t < need && sig.ci < sig.classes.length) {
    const cls = st.classes[sig.classes[sig.ci]!]!;
    let i = firstFit(cls, sig.pos[sig.ci]!, sig);
    while (i >= 0) {
      const o = cls.members[i]!;
      const k = fitCount(st, o, cpu, mem, acc, need - t);
      deduct(st, o, cpu, mem, acc, k);
      const workerId = st.workers[o]!.id;
      for (let j = 0; j < k; j++) {
        assignments.push({ jobId: job.jobId, taskIndex: tasks[t++]!, workerId });
      }
      if (t === need) break;
      i = firstFit(cls, i + 1, sig);
    }
    if (t === need) sig.pos[sig.ci] = i;
    else sig.ci++;
  }
  return t;
}

/** All-or-nothing placement of a coscheduled job on one group; returns tasks placed (0 or all). */
function placeGang(
  ctx: PassContext,
  sig: Signature,
  job: SchedulerJob,
  tasks: readonly number[],
): number {
  const { st, assignments } = ctx;
  const groups = sig.groups!;
  const { cpu, mem, acc } = sig;
  const need = tasks.length;
  const chosen = new Int32Array(need);
  for (let g = sig.gpos; g < groups.length; g++) {
    const members = groups[g]!;
    let n = 0;
    for (let i = 0; i < members.length && n < need; i++) {
      const o = members[i]!;
      if (fitCount(st, o, cpu, mem, acc, 1) > 0) chosen[n++] = o;
    }
    if (n < need) continue;
    sig.gpos = g;
    const ordered = isAscending(tasks) ? tasks : [...tasks].sort((a, b) => a - b);
    for (let k = 0; k < need; k++) {
      const o = chosen[k]!;
      deduct(st, o, cpu, mem, acc, 1);
      assignments.push({ jobId: job.jobId, taskIndex: ordered[k]!, workerId: st.workers[o]!.id });
    }
    return need;
  }
  sig.gpos = groups.length;
  return 0;
}

function isAscending(xs: readonly number[]): boolean {
  for (let i = 1; i < xs.length; i++) if (xs[i]! < xs[i - 1]!) return false;
  return true;
}
