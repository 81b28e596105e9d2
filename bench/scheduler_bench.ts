/**
 * Scheduler and autoscaler throughput on synthetic clusters (goals G3 and G8), I/O-free.
 * Run: `deno run -A bench/scheduler_bench.ts`. The clusters come from tests/_helpers/synthetic_clusters.ts,
 * which the scheduler and autoscaler tests share.
 * @module
 */
import { schedule } from "../src/controller/scheduler/scheduler.ts";
import { planScaling } from "../src/controller/autoscaler/autoscaler.ts";
import {
  makeCluster,
  makeGangCluster,
  makePreemptionCluster,
  makeScalingInput,
} from "../tests/_helpers/synthetic_clusters.ts";

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

function time(fn: () => void, repeats: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    fn();
    out.push(performance.now() - t0);
  }
  return out;
}

/**
 * Runs the scheduler at 1k/5k/10k workers × 100k tasks, the 4-host gang case and the
 * 1000-group autoscaler decision. Asserts each plan is non-empty before timing.
 * @returns figures keyed like `placements_per_s_10k`, `gangs_per_s_10k`, `autoscaler_p99_ms`.
 */
export function runSchedulerBench(
  opts: { repeats?: number } = {},
): Promise<Record<string, number>> {
  const repeats = opts.repeats ?? 5;
  const out: Record<string, number> = {};
  for (const n of [1000, 5000, 10_000]) {
    const snapshot = makeCluster({ workers: n, tasks: 100_000 });
    const placed = schedule(snapshot).assignments.length;
    if (placed === 0) throw new Error(`Benchmark plan is empty for ${n} workers`);
    const ms = time(() => schedule(snapshot), repeats);
    const k = `${n / 1000}k`;
    out[`placements_${k}`] = placed;
    out[`schedule_p50_ms_${k}`] = percentile(ms, 50);
    out[`schedule_p99_ms_${k}`] = percentile(ms, 99);
    out[`placements_per_s_${k}`] = Math.round(placed / (percentile(ms, 50) / 1000));
  }
  for (const [label, gangs] of [["10k", 2500], ["10k_oversubscribed", 10_000]] as const) {
    const snapshot = makeGangCluster({ slices: 2500, gangs });
    const placedGangs = schedule(snapshot).assignments.length / 4;
    if (placedGangs === 0) throw new Error("Benchmark gang plan is empty");
    const ms = time(() => schedule(snapshot), repeats);
    out[`gangs_placed_${label}`] = placedGangs;
    out[`gang_schedule_p50_ms_${label}`] = percentile(ms, 50);
    out[`gangs_per_s_${label}`] = Math.round(placedGangs / (percentile(ms, 50) / 1000));
  }
  {
    const snapshot = makePreemptionCluster({ workers: 4000, jobs: 1000 });
    const victims = schedule(snapshot).preemptions?.length ?? 0;
    if (victims === 0) throw new Error("Benchmark preemption plan is empty");
    const ms = time(() => schedule(snapshot), repeats);
    out.preemptions_4k = victims;
    out.preempt_schedule_p50_ms_4k = percentile(ms, 50);
  }
  const input = makeScalingInput({ groups: 1000, entries: 5000 });
  const plan = planScaling(input);
  if (plan.create.length === 0) throw new Error("Benchmark scaling plan creates nothing");
  const ms = time(() => planScaling(input), repeats * 10);
  out.autoscaler_groups = input.groups.length;
  out.autoscaler_demand_entries = input.demand.length;
  out.autoscaler_slices_created = plan.create.reduce((s, c) => s + c.count, 0);
  out.autoscaler_p50_ms = percentile(ms, 50);
  out.autoscaler_p99_ms = percentile(ms, 99);
  return Promise.resolve(out);
}

if (import.meta.main) {
  const results = await runSchedulerBench();
  for (const [k, v] of Object.entries(results)) {
    console.log(`${k.padEnd(36)} ${Number.isInteger(v) ? v : v.toFixed(2)}`);
  }
  const ok3 = (results.placements_per_s_10k ?? 0) >= 50_000 &&
    (results.gangs_per_s_10k ?? 0) >= 5_000;
  const ok8 = (results.autoscaler_p99_ms ?? Infinity) <= 1000;
  console.log(`G3 ${ok3 ? "met" : "MISSED"}; G8 ${ok8 ? "met" : "MISSED"}`);
}
