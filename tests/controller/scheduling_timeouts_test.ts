/** Scheduling timeouts (scheduling_timeouts.ts): pending too long ends UNSCHEDULABLE. No I/O. */
import { assertEquals } from "../_helpers/assert.ts";
import { TaskState } from "../../src/rpc/mod.ts";
import { JobTable, noEffects } from "../../src/controller/state.ts";
import { expireScheduling } from "../../src/controller/scheduling_timeouts.ts";
import { spec } from "./_concern_fixtures.ts";

Deno.test("scheduling timeouts: a task pending its job's timeout ends UNSCHEDULABLE with the reason", () => {
  const jobs = new JobTable();
  const timed = jobs.submit(spec({ name: "timed", schedulingTimeoutMs: 1000 }), "", 0, noEffects());
  const forever = jobs.submit(spec({ name: "forever" }), "", 0, noEffects());
  const task = jobs.task(jobs.job(timed.jobId).taskIds[0]!);
  jobs.setPendingReason(timed.jobId, {
    code: "insufficient_cpu",
    message: "no worker has 4 CPUs",
    workersConsidered: 1,
  });
  expireScheduling(jobs, 999, noEffects());
  assertEquals(task.state, TaskState.PENDING, "not yet");
  expireScheduling(jobs, 1000, noEffects());
  assertEquals(task.state, TaskState.UNSCHEDULABLE);
  assertEquals(task.error, "not scheduled within 1.0s: no worker has 4 CPUs");
  expireScheduling(jobs, 1e9, noEffects());
  assertEquals(jobs.task(jobs.job(forever.jobId).taskIds[0]!).state, TaskState.PENDING);
});
