/**
 * LaunchJob and TerminateJob (job_requests.ts): a submit is committed before it is answered and
 * is lowered to BATCH over its user's budget; a repeated submit is answered while the state cannot
 * be written, a new one is refused; a terminate ends the job and its children and sends the kills.
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { FakeClock } from "../../src/time.ts";
import { UnavailableError } from "../../src/errors.ts";
import { JobState, TaskState } from "../../src/rpc/mod.ts";
import { BAND_BATCH } from "../../src/types.ts";
import { type Effects, JobTable } from "../../src/controller/state.ts";
import { EndpointTable } from "../../src/controller/endpoints.ts";
import { Reconciler } from "../../src/controller/reconcile.ts";
import type { UserBudget } from "../../src/controller/budgets.ts";
import {
  type JobRequestContext,
  launchJob,
  terminateJob,
} from "../../src/controller/job_requests.ts";
import { spec, workerTable } from "./_concern_fixtures.ts";

type Ctx = JobRequestContext & { lines: string[]; performed: Effects[]; schedules: number };

function context(budgets: UserBudget[] = []): Ctx {
  const lines: string[] = [];
  const ctx: Ctx = {
    jobs: new JobTable(),
    endpoints: new EndpointTable(),
    workers: workerTable(1),
    reconciler: new Reconciler(),
    clock: new FakeClock(),
    write: {},
    log: (line) => lines.push(line),
    accounts: { budgetFor: (user) => budgets.find((b) => b.users.includes(user)) },
    perform: (fx) => ctx.performed.push(fx),
    requestSchedule: () => ctx.schedules++,
    lines,
    performed: [],
    schedules: 0,
  };
  return ctx;
}

function refused(fn: () => unknown): boolean {
  try {
    fn();
  } catch (err) {
    return err instanceof UnavailableError;
  }
  return false;
}

Deno.test("job requests: a submit is committed, logged and asks for a pass; a repeat is the same job", () => {
  const ctx = context();
  const first = launchJob(ctx, spec({ name: "a", replicas: 2 }), "r1");
  assertEquals(first.created, true);
  assertEquals(ctx.jobs.dirty.size, 0, "committed before the answer");
  assertEquals(ctx.schedules, 1);
  assert(ctx.lines.includes(`job ${first.jobId} submitted (2 task(s))`), ctx.lines.join("\n"));
  assertEquals(launchJob(ctx, spec({ name: "a", replicas: 2 }), "r1"), {
    jobId: first.jobId,
    created: false,
  });
});

Deno.test("job requests: an idle scheduler places a new job before its commit, and dispatches only once committed", () => {
  const ctx = context();
  const steps: string[] = [];
  ctx.placeNow = () => {
    steps.push(`planned, ${ctx.jobs.dirty.size} job(s) to commit`);
    const plan = { assignments: [], unplaced: [] };
    return {
      plan,
      finish: () => {
        steps.push(`dispatched, ${ctx.jobs.dirty.size} job(s) to commit`);
        return plan;
      },
    };
  };
  launchJob(ctx, spec({ name: "a" }), "r1");
  assertEquals(steps, ["planned, 1 job(s) to commit", "dispatched, 0 job(s) to commit"]);
  assertEquals(ctx.schedules, 0, "the pass ran: none asked for");
  // A repeat submit places nothing; a busy scheduler (no pass now) gets a request.
  launchJob(ctx, spec({ name: "a" }), "r1");
  assertEquals(steps.length, 2);
  ctx.placeNow = () => undefined;
  launchJob(ctx, spec({ name: "b" }), "r2");
  assertEquals(ctx.schedules, 2);
});

Deno.test("job requests: over its user's task budget a job runs as BATCH", () => {
  const ctx = context([{ users: ["alice"], maxTasks: 1 }]);
  const { jobId } = launchJob(ctx, spec({ name: "big", replicas: 3 }), "r1");
  assertEquals(ctx.jobs.job(jobId).band, BAND_BATCH);
  assert(ctx.lines.some((l) => l.startsWith(`job ${jobId}: `)), ctx.lines.join("\n"));
});

Deno.test("job requests: while the state cannot be written, only a committed repeat is answered", () => {
  const ctx = context();
  const { jobId } = launchJob(ctx, spec({ name: "a" }), "r1");
  ctx.write.unwritable = { sinceMs: 0, reason: "disk full", reloaded: true };
  assertEquals(launchJob(ctx, spec({ name: "a" }), "r1"), { jobId, created: false });
  assert(refused(() => launchJob(ctx, spec({ name: "b" }), "r2")));
  assert(refused(() => terminateJob(ctx, jobId, "")));
  assertEquals(ctx.jobs.jobs.size, 1);
});

Deno.test("job requests: a terminate ends the job and its children and hands over the kills", () => {
  const ctx = context();
  const { jobId } = launchJob(ctx, spec({ name: "parent" }), "r1");
  const child = launchJob(ctx, spec({ name: "child", parentJobId: jobId }), "r2").jobId;
  const task = ctx.jobs.task(ctx.jobs.job(jobId).taskIds[0]!);
  ctx.jobs.assign(task.taskId, "w0", ctx.clock.now());
  const ids = terminateJob(ctx, jobId, "");
  assertEquals(ids.sort(), [jobId, child].sort());
  assertEquals(ctx.jobs.job(child).state, JobState.KILLED);
  assertEquals(task.state, TaskState.KILLED);
  assertEquals(ctx.performed.at(-1)?.kills.map((k) => k.taskId), [task.taskId]);
  assert(ctx.lines.some((l) => l.endsWith(": by user")), ctx.lines.join("\n"));
  assertEquals(ctx.jobs.dirty.size, 0);
});
