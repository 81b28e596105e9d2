/**
 * Time of one scheduling pass (scheduling_pass.ts: timeouts, snapshot, plan, reasons, holds)
 * against the number of pending jobs, on a FakeClock with one worker whose building slots
 * (32) are the bottleneck, as in `deno task bench --only tput` (#20). Two cases per queue length:
 * "frees 8": 8 builds finished since the last pass (they are released) and 8 jobs arrived, the
 * pass places 8; "full": only 2 submits arrived, no slot is free, the pass places nothing (the
 * queue grows by 100 over the 50 passes timed).
 * Run: `deno run -A bench/pass_bench.ts [pending,...]`.
 * @module
 */
import { type FakeClock, ms } from "../src/time.ts";
import { JobTable, noEffects } from "../src/controller/state.ts";
import { Reservations } from "../src/controller/reservations.ts";
import { clusterSnapshot } from "../src/controller/snapshot.ts";
import { scheduleOnce, type SchedulingPassContext } from "../src/controller/scheduling_pass.ts";
import { inertPassParts, spec, workerTable } from "../tests/controller/_concern_fixtures.ts";

const PER_PASS = 8;

/** A pass context over a fresh job table and one worker; dispatch and logs do nothing. */
function passContext(): SchedulingPassContext & { jobs: JobTable } {
  const jobs = new JobTable();
  const workers = workerTable(1);
  const reservations = new Reservations({ save: () => {}, log: () => {} });
  return {
    ...inertPassParts(),
    jobs,
    workers,
    reservations,
    dispatcher: { dispatchJob: () => {}, kill: () => {} },
    snapshot: (only) =>
      clusterSnapshot({ jobs, workers, reservations, usage: () => new Map() }, only),
    requestSchedule: () => {},
  };
}

let submitted = 0;
function submit(ctx: { jobs: JobTable; clock: FakeClock }, n: number): void {
  for (let i = 0; i < n; i++) {
    const name = `j${submitted++}`;
    ctx.jobs.submit(spec({ name }), `r-${name}`, ctx.clock.now(), noEffects());
  }
}

/** µs per pass (median of `passes`) with `pending` jobs waiting. */
export function measure(pending: number, freeing: boolean, passes = 300): number {
  const ctx = passContext() as ReturnType<typeof passContext> & { clock: FakeClock };
  submit(ctx, pending + 32);
  scheduleOnce(ctx);
  const worker = ctx.workers.workers.get("w0")!;
  const times: number[] = [];
  for (let p = 0; p < passes; p++) {
    if (freeing) {
      const done = [...worker.active.keys()].slice(0, PER_PASS);
      for (const key of done) ctx.workers.release("w0", key);
    }
    submit(ctx, freeing ? PER_PASS : 2);
    ctx.clock.jump(ms(1));
    const t0 = performance.now();
    const plan = scheduleOnce(ctx);
    times.push(performance.now() - t0);
    if (plan.assignments.length !== (freeing ? PER_PASS : 0)) throw new Error("unexpected plan");
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]! * 1000;
}

if (import.meta.main) {
  const sizes = (Deno.args[0] ?? "100,300,1000,3000").split(",").map(Number);
  for (const warm of [true, false]) {
    for (const n of sizes) {
      const frees = measure(n, true);
      const full = measure(n, false, 50);
      if (!warm) {
        console.log(
          `pending ${n}: frees 8 ${frees.toFixed(1)} µs/pass; full ${full.toFixed(1)} µs/pass`,
        );
      }
    }
  }
}
