/** The smoke log tree: task log headers carry the task's own state, not its job's. */
import { assertEquals, assertMatch } from "../_helpers/assert.ts";
import { taskLogHeader } from "../../src/smoke/log_tree.ts";
import { JobState, TaskState } from "../../src/rpc/mod.ts";

Deno.test("a task log header writes the task's state as task_state and the job's as job_state", () => {
  // A gang whose job FAILED: task 0 succeeded, task 1 was killed when task 2 failed.
  const header = (index: number, state: TaskState) =>
    taskLogHeader({
      test: "coscheduled",
      jobId: "/alice/gang",
      jobState: JobState.FAILED,
      taskIndex: index,
      taskState: state,
    });
  assertMatch(header(0, TaskState.SUCCEEDED), /^task_state=SUCCEEDED$/m);
  assertMatch(header(1, TaskState.KILLED), /^task_state=KILLED$/m);
  assertMatch(header(2, TaskState.FAILED), /^task_state=FAILED$/m);
  assertEquals(
    header(0, TaskState.SUCCEEDED),
    "test_name=coscheduled\njob_id=/alice/gang\njob_state=FAILED\ntask_index=0\n" +
      "task_state=SUCCEEDED\n",
  );
});
