/**
 * Retry budgets end to end (in-process controller and worker, real task processes): a task that
 * exits 1 with `max_retries_failure: 2` runs exactly three attempts, each visible through the API
 * with its own exit status and its own log lines, and the job ends FAILED.
 */
import { assertEquals, assertMatch } from "../_helpers/assert.ts";
import { IrisClient, JobState, TaskState } from "../../mod.ts";
import { startController } from "../../src/controller/server.ts";
import { startWorker } from "../../src/worker/mod.ts";
import { seconds } from "../../src/time.ts";

Deno.test("a task exiting 1 with max_retries_failure 2 runs exactly 3 attempts, then its job fails", async () => {
  await using controller = startController({ port: 0 });
  await using _worker = await startWorker({
    controllerUrl: controller.url,
    resources: { cpuMillicores: 2000, memoryBytes: 2 ** 30 },
  });
  const client = new IrisClient(controller.url);
  const jobId = await client.submit({
    name: "always-fails",
    command: [
      "sh",
      "-c",
      'echo "try $IRIS_ATTEMPT_ID"; echo "broken $IRIS_ATTEMPT_ID" >&2; exit 1',
    ],
    cpu: 0.1,
    maxRetriesFailure: 2,
  });
  const job = await client.wait(jobId, { timeout: seconds(30) });
  assertEquals(job.state, JobState.FAILED);
  assertEquals(job.exitCode, 1);

  const [task] = await client.tasks(jobId);
  assertEquals(task!.state, TaskState.FAILED);
  assertEquals(task!.attempts.map((a) => a.attemptId), [0, 1, 2]);
  for (const a of task!.attempts) {
    assertEquals(a.state, TaskState.FAILED, `attempt ${a.attemptId}`);
    assertEquals(a.exitCode, 1, `attempt ${a.attemptId}`);
    assertEquals(a.isWorkerFailure, false);
  }
  assertEquals(task!.currentAttemptId, 2);

  // Each attempt's logs are its own.
  for (const attemptId of [0, 1, 2]) {
    const lines = (await client.logs(task!.taskId, { attemptId })).filter((l) =>
      l.stream !== "system"
    );
    assertEquals(lines.map((l) => [l.stream, l.text]).sort(), [
      ["stderr", `broken ${attemptId}`],
      ["stdout", `try ${attemptId}`],
    ]);
    for (const l of lines) assertEquals(l.attemptId, attemptId);
  }
  // No fourth attempt appears later.
  const again = await client.status(jobId);
  assertEquals(again.tasks[0]!.attempts.length, 3);
  assertMatch(again.job!.error, /exit code 1|failed/);
});
