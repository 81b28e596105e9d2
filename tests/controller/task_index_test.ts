/**
 * The job table's compact indexes (#20): tasks held per job (TaskIndex) and each job's pending
 * indices as one array that stays the same while they do not change. No I/O.
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { ExistingJobPolicy, TaskState } from "../../src/rpc/mod.ts";
import { JobTable, NO_ATTEMPTS, NO_PORTS, noEffects } from "../../src/controller/state.ts";
import { spec } from "./_concern_fixtures.ts";

Deno.test("TaskIndex: ids resolve through their job, odd ids name nothing, order is by job then index", () => {
  const t = new JobTable();
  t.submit(spec({ name: "a", replicas: 3 }), "", 1, noEffects());
  // A child job: its id holds more slashes (the index is after the last one).
  t.submit(spec({ name: "c", parentJobId: "/alice/a", replicas: 12 }), "", 2, noEffects());
  const a = t.job("/alice/a").jobId;
  const bc = t.job("/alice/a/c").jobId;
  assertEquals(t.tasks.size, 15);
  assertEquals(t.tasks.get(`${bc}/11`)?.index, 11);
  assertEquals(t.tasks.get(`${a}/2`)?.jobId, a, "after another job's read");
  const odd = [`${a}/3`, `${a}/01`, `${a}/`, `${a}/x`, `${a}/-1`, "/alice/a", "", "nope/0", bc];
  for (const id of odd) {
    assertEquals(t.tasks.get(id), undefined, id);
    assertEquals(t.tasks.has(id), false, id);
  }
  assertEquals([...t.tasks.keys()].slice(0, 4), [`${a}/0`, `${a}/1`, `${a}/2`, `${bc}/0`]);
  assertEquals([...t.tasks.values()].length, 15);
  // A task that never ran shares the empty values; its first attempt replaces them.
  const task = t.task(`${a}/1`);
  assert(task.attempts === NO_ATTEMPTS && task.ports === NO_PORTS);
  t.assign(task.taskId, "w1", 3);
  assertEquals(task.attempts.length, 1);
  assert(t.task(`${a}/0`).attempts === NO_ATTEMPTS, "the others still share it");
});

Deno.test("TaskIndex: a replaced job's tasks go, the new job's come (RECREATE with fewer replicas)", () => {
  const t = new JobTable();
  const fx = noEffects();
  const { jobId } = t.submit(spec({ name: "r", replicas: 4 }), "", 1, fx);
  t.terminate(jobId, "done", 2, fx);
  t.submit(
    spec({ name: "r", replicas: 2, existingJobPolicy: ExistingJobPolicy.RECREATE }),
    "",
    3,
    fx,
  );
  assertEquals(t.tasks.size, 2);
  assertEquals(t.tasks.get(`${jobId}/3`), undefined);
  assertEquals(t.task(`${jobId}/1`).state, TaskState.PENDING);
});

Deno.test("pendingIndices: one array per job, the same while nothing changes, renewed on a change", () => {
  const t = new JobTable();
  const fx = noEffects();
  const { jobId } = t.submit(spec({ name: "p", replicas: 4, maxRetriesFailure: 1 }), "", 1, fx);
  const first = t.pendingIndices(jobId);
  assertEquals(first, [0, 1, 2, 3]);
  assert(t.pendingIndices(jobId) === first, "unchanged: the same array");
  const attempt = t.assign(`${jobId}/1`, "w1", 2);
  assertEquals(t.pendingIndices(jobId), [0, 2, 3]);
  assertEquals(first, [0, 1, 2, 3], "an array handed out is never changed");
  t.attemptEnded(t.task(`${jobId}/1`), attempt, { state: TaskState.FAILED, finishedAtMs: 3 }, fx);
  assertEquals(t.pendingIndices(jobId), [0, 2, 3, 1], "a retry queues after the others");
  t.setPendingReason(jobId, { code: "no_workers", message: "no workers", workersConsidered: 0 });
  assertEquals(t.pendingReasonOf(t.task(`${jobId}/2`))?.code, "no_workers");
  assertEquals(t.jobPendingReason(t.job(jobId))?.code, "no_workers");
  t.terminate(jobId, "stop", 4, fx);
  assertEquals(t.pendingIndices(jobId), []);
  assertEquals(t.pendingReasonOf(t.task(`${jobId}/2`)), undefined, "not pending any more");
  assertEquals(t.jobPendingReason(t.job(jobId)), undefined);
});
