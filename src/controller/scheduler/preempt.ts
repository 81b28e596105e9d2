/**
 * The preemption pass: after placement, a job of a higher band that still has unplaced tasks may
 * evict running tasks of lower bands from workers it is eligible for. Pure: reads the end-of-pass
 * capacity and returns victims as data; the controller stops them.
 *
 * Rules: a victim's band is strictly lower than the job's (PRODUCTION is never a victim); a
 * coscheduled victim is evicted as a whole gang; on each worker victims are taken lowest band
 * first, newest first, and then trimmed to a minimal set; among workers, the one whose victims
 * are of the lowest band, then fewest, then newest wins. Capacity already being released
 * (attempts told to stop) is used before anything new is evicted, so repeated passes do not
 * evict more while earlier victims are still stopping.
 * @module
 */
import type {
  Band,
  ClusterSnapshot,
  PendingReasonData,
  Preemption,
  RunningTask,
  SchedulerJob,
} from "../../types.ts";
import { acceleratorRequest, deduct, type PassState } from "./index.ts";

/** A victim: one independent task, or every running task of a gang job. */
interface Unit {
  readonly jobId: string;
  readonly band: Band;
  /** Newest assignment among its tasks. */
  since: number;
  readonly tasks: RunningTask[];
  /** Worker ordinal per task (-1: worker not in this pass). */
  readonly ordinals: number[];
  taken: boolean;
}

/** A job left with unplaced tasks, as the placement pass saw it. */
export interface BlockedJob {
  readonly job: SchedulerJob;
  readonly remaining: number;
  /** Eligible classes (kind, variant, required constraints, totals). */
  readonly classes: Int32Array;
  /** Coscheduled: eligible members of qualifying groups. */
  readonly groups?: readonly Int32Array[];
}

interface Shape {
  readonly cpu: number;
  readonly mem: number;
  readonly acc: number;
}

/**
 * Extra capacity per worker ordinal (freed by victims or being released), minus what is promised
 * in a simulation; `promised` lists the ordinals promised one task each.
 */
interface Overlay {
  readonly delta: Map<number, [number, number, number]>;
  readonly taken: Set<Unit>;
  readonly promised: number[];
}

interface Choice {
  readonly units: Unit[];
  /** Lowest band number among victims ({@linkcode NO_VICTIM_BAND} when none): higher is better. */
  readonly topBand: number;
  readonly tasks: number;
  /** Oldest assignment among victims (Infinity when none): newer is better. */
  readonly oldest: number;
}

/** The topBand of a choice without victims: above (less important than) every band. */
const NO_VICTIM_BAND = Number.POSITIVE_INFINITY;

const NONE: Choice = {
  units: [],
  topBand: NO_VICTIM_BAND,
  tasks: 0,
  oldest: Number.POSITIVE_INFINITY,
};

/** Preemption state across the bands of one pass (victims taken, capacity promised). */
export interface Preemptor {
  readonly ctx: Ctx;
  readonly preemptions: Preemption[];
  /** Reasons for jobs that are waiting on evictions (replace the placement pass's reason). */
  readonly reasons: Map<string, PendingReasonData>;
  readonly failed: Set<string>;
}

/**
 * Whether a preemption pass can do anything: some blocked job outranks some running task, or a
 * blocked job above BATCH may claim room that stopping attempts are releasing.
 */
export function preemptionPossible(
  snapshot: ClusterSnapshot,
  blocked: readonly { job: SchedulerJob }[],
): boolean {
  if (blocked.length === 0) return false;
  let best = 4;
  for (const b of blocked) best = Math.min(best, b.job.band);
  if (best >= 3) return false;
  for (const r of snapshot.running ?? []) if (r.band > best) return true;
  return snapshot.workers.some((w) => w.releasing !== undefined);
}

/** Indexes the snapshot's running tasks by worker for {@linkcode preemptFor}. */
export function newPreemptor(st: PassState, snapshot: ClusterSnapshot): Preemptor {
  const ordinalOf = new Map<string, number>();
  st.workers.forEach((w, o) => ordinalOf.set(w.id, o));
  const units = buildUnits(snapshot.running ?? [], ordinalOf);
  const byWorker = new Map<number, Unit[]>();
  for (const u of units) {
    for (const o of new Set(u.ordinals)) {
      if (o < 0) continue;
      const list = byWorker.get(o);
      if (list) list.push(u);
      else byWorker.set(o, [u]);
    }
  }
  for (const list of byWorker.values()) list.sort(victimOrder);
  const soon: Overlay = { delta: new Map(), taken: new Set(), promised: [] };
  st.workers.forEach((w, o) => {
    const r = w.releasing;
    if (r && (r.cpuMillicores > 0 || r.memoryBytes > 0 || r.accelerators > 0)) {
      soon.delta.set(o, [r.cpuMillicores, r.memoryBytes, r.accelerators]);
    }
  });
  const candidates = [...new Set([...byWorker.keys(), ...soon.delta.keys()])].sort((a, b) => a - b);
  const live = new Int32Array(st.workers.length);
  let lowestBand = 0;
  for (const [o, list] of byWorker) live[o] = list.length;
  for (const u of units) lowestBand = Math.max(lowestBand, u.band);
  return {
    ctx: { st, byWorker, soon, candidates, lowestBand, live },
    preemptions: [],
    reasons: new Map(),
    failed: new Set(),
  };
}

/**
 * Chooses victims for blocked jobs of one band (in scheduling order). Room promised to a job is
 * taken out of the pass's free capacity, so jobs of lower bands placed afterwards cannot use it.
 */
export function preemptFor(pre: Preemptor, blocked: readonly BlockedJob[]): void {
  const { ctx, preemptions, reasons, failed } = pre;
  const { st, soon } = ctx;
  for (const b of blocked) {
    const { job } = b;
    const shape: Shape = {
      cpu: job.resources.cpuMillicores,
      mem: job.resources.memoryBytes,
      acc: acceleratorRequest(job),
    };
    const mask = new Uint8Array(st.classes.length);
    for (const c of b.classes) mask[c] = 1;
    const candidates = ctx.candidates.filter((o) => mask[st.classOf[o]!] === 1);
    // Jobs with the same needs fail the same way once capacity is gone.
    const key = `${job.band}\u0001${shape.cpu}\u0001${shape.mem}\u0001${shape.acc}\u0001${
      Array.from(b.classes).join(",")
    }\u0001${b.groups ? b.remaining : "-"}`;
    if (candidates.length === 0 || failed.has(key)) continue;
    const before = preemptions.length;
    let covered = 0;
    if (b.groups) {
      const plan = bestGroup(ctx, b.groups, shape, job.band, b.remaining);
      if (plan) {
        commit(ctx, plan.overlay, job, shape, preemptions);
        covered = b.remaining;
      }
    } else {
      // Workers before `start` cannot help this job any more (capacity only shrinks, except
      // where a taken gang frees room on other workers: then the scan starts over).
      let start = 0;
      for (; covered < b.remaining; covered++) {
        let best: { o: number; choice: Choice } | undefined;
        for (let i = start; i < candidates.length; i++) {
          const o = candidates[i]!;
          // Cheap skip of workers whose victims are all taken and that have no spare room.
          const choice = ctx.live[o] === 0 && !spare(ctx, o, shape)
            ? undefined
            : victimsOn(ctx, soon, o, shape, job.band);
          if (!choice) {
            if (i === start) start++;
            continue;
          }
          if (!best || better(choice, best.choice)) best = { o, choice };
          // Nothing beats no eviction, or one eviction of the least important band present.
          if (best.choice.tasks === 0) break;
          if (best.choice.tasks === 1 && best.choice.topBand === ctx.lowestBand) break;
        }
        if (!best) break;
        if (best.choice.units.some((u) => u.tasks.length > 1)) start = 0;
        const overlay: Overlay = { delta: new Map(), taken: new Set(), promised: [] };
        take(overlay, best.choice.units);
        promise(overlay, best.o, shape);
        commit(ctx, overlay, job, shape, preemptions);
      }
    }
    if (covered === 0) {
      failed.add(key);
      continue;
    }
    const evicted = preemptions.length - before;
    reasons.set(job.jobId, {
      code: "preempting",
      message: evicted > 0
        ? `preempting ${evicted} lower-band task(s) to make room for ${covered} task(s); waiting for them to stop`
        : `waiting for preempted or killed tasks to stop to make room for ${covered} task(s)`,
      workersConsidered: st.workers.length,
    });
  }
}

function buildUnits(running: readonly RunningTask[], ordinalOf: Map<string, number>): Unit[] {
  const gangs = new Map<string, Unit>();
  const units: Unit[] = [];
  for (const r of running) {
    const o = ordinalOf.get(r.workerId) ?? -1;
    if (r.gang) {
      const u = gangs.get(r.jobId);
      if (u) {
        u.tasks.push(r);
        u.ordinals.push(o);
        u.since = Math.max(u.since, r.since);
        continue;
      }
    }
    const u: Unit = {
      jobId: r.jobId,
      band: r.band,
      since: r.since,
      tasks: [r],
      ordinals: [o],
      taken: false,
    };
    units.push(u);
    if (r.gang) gangs.set(r.jobId, u);
  }
  return units;
}

/** Lowest band (highest number) first, then newest, then job id and task for determinism. */
function victimOrder(a: Unit, b: Unit): number {
  return b.band - a.band || b.since - a.since ||
    (a.jobId < b.jobId
      ? -1
      : a.jobId > b.jobId
      ? 1
      : a.tasks[0]!.taskIndex - b.tasks[0]!.taskIndex);
}

function better(a: Choice, b: Choice): boolean {
  return a.topBand !== b.topBand
    ? a.topBand > b.topBand
    : a.tasks !== b.tasks
    ? a.tasks < b.tasks
    : a.oldest > b.oldest;
}

/** Resources a unit holds on worker `o`. */
function heldOn(u: Unit, o: number): [number, number, number] {
  let cpu = 0, mem = 0, acc = 0;
  u.tasks.forEach((t, i) => {
    if (u.ordinals[i] !== o) return;
    cpu += t.resources.cpuMillicores;
    mem += t.resources.memoryBytes;
    acc += t.resources.accelerators;
  });
  return [cpu, mem, acc];
}

function extra(o: number, ...overlays: Overlay[]): [number, number, number] {
  let cpu = 0, mem = 0, acc = 0;
  for (const ov of overlays) {
    const d = ov.delta.get(o);
    if (d) [cpu, mem, acc] = [cpu + d[0], mem + d[1], acc + d[2]];
  }
  return [cpu, mem, acc];
}

function fits(have: readonly number[], shape: Shape): boolean {
  return have[0]! >= shape.cpu && have[1]! >= shape.mem && have[2]! >= shape.acc;
}

interface Ctx {
  readonly st: PassState;
  readonly byWorker: Map<number, Unit[]>;
  readonly soon: Overlay;
  /** Workers with victims or releasing capacity, ascending (victims only free room there). */
  readonly candidates: readonly number[];
  /** The least important band among victims (the best a victim can be). */
  readonly lowestBand: number;
  /** Per worker ordinal: victims not yet taken. */
  readonly live: Int32Array;
}

/**
 * The minimal victims on worker `o` that make one task of `shape` fit, given what is free, being
 * released (`ctx.soon`) and already simulated (`sim`); undefined when no victim set does.
 */
function victimsOn(
  ctx: Ctx,
  sim: Overlay,
  o: number,
  shape: Shape,
  band: Band,
): Choice | undefined {
  const { st } = ctx;
  const layers = sim === ctx.soon ? [ctx.soon] : [ctx.soon, sim];
  const x = extra(o, ...layers);
  const have: [number, number, number] = [
    st.freeCpu[o]! + x[0],
    st.freeMem[o]! + x[1],
    st.freeAcc[o]! + x[2],
  ];
  if (fits(have, shape)) return NONE;
  const chosen: { u: Unit; r: [number, number, number] }[] = [];
  for (const u of ctx.byWorker.get(o) ?? []) {
    if (u.taken || sim.taken.has(u) || ctx.soon.taken.has(u) || u.band <= band) continue;
    const r = heldOn(u, o);
    chosen.push({ u, r });
    have[0] += r[0];
    have[1] += r[1];
    have[2] += r[2];
    if (fits(have, shape)) break;
  }
  if (!fits(have, shape)) return undefined;
  // Trim: drop the least desirable victims (taken last) that are not needed after all.
  for (let i = chosen.length - 2; i >= 0; i--) {
    const { r } = chosen[i]!;
    const without: [number, number, number] = [have[0] - r[0], have[1] - r[1], have[2] - r[2]];
    if (fits(without, shape)) {
      have[0] = without[0];
      have[1] = without[1];
      have[2] = without[2];
      chosen.splice(i, 1);
    }
  }
  let topBand = NO_VICTIM_BAND, tasks = 0, oldest = Number.POSITIVE_INFINITY;
  for (const { u } of chosen) {
    topBand = Math.min(topBand, u.band);
    tasks += u.tasks.length;
    oldest = Math.min(oldest, u.since);
  }
  return { units: chosen.map((c) => c.u), topBand, tasks, oldest };
}

/** Whether worker `o` fits one task of `shape` from free plus releasing room alone. */
function spare(ctx: Ctx, o: number, shape: Shape): boolean {
  const d = ctx.soon.delta.get(o);
  if (!d) return false;
  const { st } = ctx;
  return st.freeCpu[o]! + d[0] >= shape.cpu && st.freeMem[o]! + d[1] >= shape.mem &&
    st.freeAcc[o]! + d[2] >= shape.acc;
}

/** Marks units as victims in an overlay and adds their resources on every worker they hold. */
function take(ov: Overlay, units: readonly Unit[]): void {
  for (const u of units) {
    if (ov.taken.has(u)) continue;
    ov.taken.add(u);
    for (const o of new Set(u.ordinals)) {
      if (o < 0) continue;
      const r = heldOn(u, o);
      const d = ov.delta.get(o) ?? [0, 0, 0];
      ov.delta.set(o, [d[0] + r[0], d[1] + r[1], d[2] + r[2]]);
    }
  }
}

/** Reserves one task of `shape` on worker `o` in an overlay. */
function promise(ov: Overlay, o: number, shape: Shape): void {
  ov.promised.push(o);
  const d = ov.delta.get(o) ?? [0, 0, 0];
  ov.delta.set(o, [d[0] - shape.cpu, d[1] - shape.mem, d[2] - shape.acc]);
}

/** The cheapest group where `need` members fit after evictions, as a simulated overlay. */
function bestGroup(
  ctx: Ctx,
  groups: readonly Int32Array[],
  shape: Shape,
  band: Band,
  need: number,
): { overlay: Overlay } | undefined {
  let best: { overlay: Overlay; cost: Choice } | undefined;
  for (const members of groups) {
    if (!members.some((o) => ctx.byWorker.has(o) || ctx.soon.delta.has(o))) continue;
    const sim: Overlay = { delta: new Map(), taken: new Set(), promised: [] };
    let placed = 0, topBand = NO_VICTIM_BAND, tasks = 0, oldest = Number.POSITIVE_INFINITY;
    // Members that fit without evictions first.
    const free = members.filter((o) => victimsOn(ctx, sim, o, shape, band) === NONE);
    const order = [...free, ...members.filter((o) => !free.includes(o))];
    for (const o of order) {
      if (placed === need) break;
      const choice = victimsOn(ctx, sim, o, shape, band);
      if (!choice) continue;
      take(sim, choice.units);
      promise(sim, o, shape);
      placed++;
      for (const u of choice.units) {
        topBand = Math.min(topBand, u.band);
        tasks += u.tasks.length;
        oldest = Math.min(oldest, u.since);
      }
    }
    if (placed < need) continue;
    const cost: Choice = { units: [], topBand, tasks, oldest };
    if (!best || better(cost, best.cost)) best = { overlay: sim, cost };
  }
  return best && { overlay: best.overlay };
}

/**
 * Applies a simulated overlay: its victims become preemptions and their capacity joins `soon`;
 * each promised task is deducted from the pass's free capacity (it may go negative: the rest
 * comes from `soon`), which keeps later placements off it.
 */
function commit(ctx: Ctx, ov: Overlay, job: SchedulerJob, shape: Shape, out: Preemption[]): void {
  const freed = new Map(ov.delta);
  for (const o of ov.promised) {
    const d = freed.get(o)!;
    freed.set(o, [d[0] + shape.cpu, d[1] + shape.mem, d[2] + shape.acc]);
    deduct(ctx.st, o, shape.cpu, shape.mem, shape.acc, 1);
  }
  for (const [o, d] of freed) {
    const s = ctx.soon.delta.get(o) ?? [0, 0, 0];
    ctx.soon.delta.set(o, [s[0] + d[0], s[1] + d[1], s[2] + d[2]]);
  }
  for (const u of ov.taken) {
    u.taken = true;
    for (const o of new Set(u.ordinals)) if (o >= 0) ctx.live[o]!--;
    const why = u.tasks.length > 1
      ? `preempted (whole gang of ${u.tasks.length}) for ${job.jobId}, a higher band`
      : `preempted for ${job.jobId}, a higher band`;
    for (const t of u.tasks) {
      out.push({
        jobId: t.jobId,
        taskIndex: t.taskIndex,
        workerId: t.workerId,
        forJobId: job.jobId,
        reason: why,
      });
    }
  }
}
