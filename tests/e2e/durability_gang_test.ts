/**
 * Gang retry end to end: a coscheduled job (2 replicas grouped by tpu-name) runs on the two hosts
 * of "slice-a"; one host's worker process is killed with SIGKILL. The gang is retried as a whole:
 * the surviving member is stopped, both tasks get a new attempt in the same scheduling pass on
 * the two hosts of "slice-b", and the job succeeds.
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { IrisClient, JobState, TaskState } from "../../mod.ts";
import { startController } from "../../src/controller/server.ts";
import { startWorker } from "../../src/worker/mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { spawnIris } from "../_helpers/iris_process.ts";

/** Attempt 0 runs until its worker goes away (or it is killed); later attempts finish at once. */
const GANG_SCRIPT = [
  'if [ "$IRIS_ATTEMPT_ID" = 0 ]; then',
  // A task running as its own user may not signal the worker: /proc tells it is still there.
  "  while kill -0 $PPID 2>/dev/null || [ -d /proc/$PPID ]; do sleep 0.1; done",
  "  exit 3",
  "fi",
  'echo "attempt $IRIS_ATTEMPT_ID of task $IRIS_TASK_INDEX on $IRIS_WORKER_ID"',
].join("\n");

Deno.test("a gang with one host killed (SIGKILL) is retried as a whole and succeeds", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-gang-" });
  try {
    await using controller = startController({ port: 0 });
    const url = controller.url;
    const resources = { cpuMillicores: 1000, memoryBytes: 2 ** 30 };
    // Slice a: host 0 is a real process (to be killed), host 1 runs in this process.
    await using victim = spawnIris([
      "worker",
      "serve",
      "--controller",
      url,
      "--root-dir",
      `${root}/a0`,
      "--worker-id",
      "a0",
      "--cpu",
      "1",
      "--memory",
      "1GiB",
      "-a",
      "tpu-name=slice-a",
      "--quiet",
    ]);
    await using _a1 = await startWorker({
      controllerUrl: url,
      workerId: "a1",
      resources,
      attributes: { "tpu-name": "slice-a" },
    });
    const client = new IrisClient(url);
    await waitFor(async () => (await client.workers()).length === 2, {
      timeout: seconds(20),
      what: "both hosts of slice-a to register",
    });
    const jobId = await client.submit({
      name: "gang",
      command: ["sh", "-c", GANG_SCRIPT],
      replicas: 2,
      cpu: 0.25,
      groupBy: "tpu-name",
    });
    await waitFor(async () => {
      const tasks = await client.tasks(jobId);
      return tasks.every((t) => t.state === TaskState.RUNNING);
    }, { timeout: seconds(20), what: "both gang members to run on slice-a" });

    // Slice b comes up; only then is a host of slice a lost.
    await using _b0 = await startWorker({
      controllerUrl: url,
      workerId: "b0",
      resources,
      attributes: { "tpu-name": "slice-b" },
    });
    await using _b1 = await startWorker({
      controllerUrl: url,
      workerId: "b1",
      resources,
      attributes: { "tpu-name": "slice-b" },
    });
    await waitFor(async () => (await client.workers()).length === 4, {
      timeout: seconds(20),
      what: "slice-b to register",
    });
    victim.child.kill("SIGKILL");
    await victim.status;

    const job = await client.wait(jobId, { timeout: seconds(30) });
    assertEquals(job.state, JobState.SUCCEEDED, job.error);
    const tasks = await client.tasks(jobId);
    const byHost = new Map(tasks.map((t) => [t.attempts[0]!.workerId, t]));
    assertEquals([...byHost.keys()].sort(), ["a0", "a1"], "attempt 0 ran on slice-a");
    for (const t of tasks) {
      assertEquals(t.attempts.length, 2, `${t.taskId} has exactly two attempts`);
      const retry = t.attempts[1]!;
      assertEquals(retry.state, TaskState.SUCCEEDED);
      assert(retry.workerId === "b0" || retry.workerId === "b1", `retry on ${retry.workerId}`);
    }
    // The lost host's member failed with its worker; the survivor was stopped, not left running.
    assertEquals(byHost.get("a0")!.attempts[0]!.state, TaskState.WORKER_FAILED);
    // The survivor's kill is asynchronous: its end may be reported after the job succeeded.
    const survivor = await waitFor(async () => {
      const t = (await client.tasks(jobId)).find((x) => x.attempts[0]!.workerId === "a1")!;
      const a = t.attempts[0]!;
      return a.state !== TaskState.RUNNING && a.state !== TaskState.ASSIGNED ? a : undefined;
    }, { timeout: seconds(20), what: "the surviving member's first attempt to be stopped" });
    assertEquals(survivor.state, TaskState.KILLED);
    // Retried together: one placement pass, on two distinct hosts of one slice.
    const [r0, r1] = tasks.map((t) => t.attempts[1]!);
    assertEquals(r0!.assignedAtMs, r1!.assignedAtMs);
    assert(r0!.workerId !== r1!.workerId);
    const out = (await client.logs(jobId)).filter((l) => l.stream === "stdout").map((l) => l.text);
    assertEquals(out.length, 2);
    assert(out.every((l) => l.startsWith("attempt 1 of task")), out.join("\n"));
    console.log(
      `gang: survivor attempt ended ${TaskState[survivor.state]}; retried on ${r0!.workerId}, ${
        r1!.workerId
      }`,
    );
  } finally {
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
});
