/**
 * Priority bands, per-user budgets and reservations on an in-process local cluster (startCluster,
 * real local workers and task processes): a PRODUCTION job preempts the BATCH tasks filling the
 * only cpu slice, which rerun afterwards; an over-budget user's job runs as BATCH; a reservation
 * gates its job until every entry holds a worker, keeps other jobs off those workers, and lets
 * go when the job ends.
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { IrisClient, JobState, TaskState } from "../../mod.ts";
import { parseConfig } from "../../src/config/mod.ts";
import { startCluster } from "../../src/cluster/cluster.ts";
import { jobSpecFromRequest } from "../../src/client/job_request.ts";
import { create } from "@bufbuild/protobuf";
import {
  PriorityBand,
  ReservationEntrySchema,
  ResourcesSchema,
} from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { seconds, waitFor } from "../../src/time.ts";

const GiB = 2 ** 30;

function config(maxSlices: number, extra = ""): string {
  return `
name: priority-test
controller:
  local:
    port: 0
  heartbeat_interval: 500ms
  heartbeat_failure_threshold: 30 # no liveness test here: load must not fake a death
${extra}
defaults:
  autoscaler:
    evaluation_interval: 200ms
    scale_up_cooldown: 0s
    scale_down_delay: 5m
scale_groups:
  cpu:
    provider:
      local: {}
    accelerator_type: cpu
    min_slices: 0
    max_slices: ${maxSlices}
    vm_resources:
      cpu: 2
      memory: 2GiB
`;
}

async function withCluster(
  yaml: string,
  fn: (client: IrisClient) => Promise<void>,
): Promise<void> {
  const workDir = await Deno.makeTempDir({ prefix: "iris-priority-test-" });
  const lines: string[] = [];
  const cluster = await startCluster(parseConfig(yaml), {
    workDir,
    log: (l) => lines.push(l),
  });
  try {
    await fn(new IrisClient(cluster.url));
  } catch (err) {
    console.error(lines.slice(-40).join("\n"));
    throw err;
  } finally {
    await cluster.stop();
    await Deno.remove(workDir, { recursive: true }).catch(() => {});
  }
}

Deno.test("a PRODUCTION job preempts BATCH tasks filling the cpu group; they rerun afterwards", async () => {
  await withCluster(config(1), async (client) => {
    // Attempt 0 of each BATCH task runs until preempted; the retry finishes at once.
    const batch = await client.submit({
      name: "batch",
      command: ["sh", "-c", 'if [ "$IRIS_ATTEMPT_ID" = 0 ]; then sleep 120; fi; echo done'],
      replicas: 2,
      cpu: 1,
      memory: 64 * 2 ** 20,
      priority: "batch",
    });
    await waitFor(
      async () => (await client.status(batch)).tasks.every((t) => t.state === TaskState.RUNNING),
      { timeout: seconds(60), what: "both BATCH tasks running on the only cpu slice" },
    );
    const prod = await client.submit({
      name: "prod",
      command: ["sh", "-c", "echo production"],
      cpu: 2,
      memory: 64 * 2 ** 20,
      priority: "production",
    });
    const prodJob = await client.wait(prod, { timeout: seconds(60) });
    assertEquals(prodJob.state, JobState.SUCCEEDED, prodJob.error);
    const batchJob = await client.wait(batch, { timeout: seconds(60) });
    assertEquals(batchJob.state, JobState.SUCCEEDED, batchJob.error);
    const { tasks } = await client.status(batch);
    const prodTask = (await client.status(prod)).tasks[0]!;
    for (const t of tasks) {
      assertEquals(t.preemptionCount, 1, `${t.taskId} was preempted once`);
      assertEquals(t.attempts.length, 2);
      assertEquals(t.attempts[0]!.state, TaskState.PREEMPTED);
      assertMatch(t.attempts[0]!.error, /preempted for \/\S+\/prod/);
      assert(t.attempts[1]!.assignedAtMs >= prodTask.attempts[0]!.assignedAtMs);
    }
    assertEquals(batchJob.preemptionCount, 2);
    assertEquals(prodTask.attempts.length, 1, "the PRODUCTION task ran once");
  });
});

Deno.test("a user over budget has an INTERACTIVE job run as BATCH, with the reason in its status", async () => {
  const budgets = `  user_budgets:
    - users: [alice]
      max_tasks: 2
    - users: ["*"]
      max_band: interactive`;
  await withCluster(config(1, budgets), async (client) => {
    const within = await client.submit({
      name: "within",
      user: "alice",
      command: ["true"],
      replicas: 2,
      cpu: 0.1,
    });
    const over = await client.submit({
      name: "over",
      user: "alice",
      command: ["true"],
      cpu: 0.1,
    });
    const bob = await client.submit({
      name: "bob-prod",
      user: "bob",
      command: ["true"],
      cpu: 0.1,
      priority: "production",
    });
    const s1 = (await client.status(within)).job!;
    assertEquals(s1.effectivePriority, PriorityBand.INTERACTIVE);
    assertEquals(s1.priorityReason, "");
    const s2 = (await client.status(over)).job!;
    assertEquals(s2.spec!.priority, PriorityBand.INTERACTIVE);
    assertEquals(s2.effectivePriority, PriorityBand.BATCH);
    assertMatch(s2.priorityReason, /alice is over budget.*max_tasks 2/);
    const s3 = (await client.status(bob)).job!;
    assertEquals(s3.effectivePriority, PriorityBand.INTERACTIVE);
    assertMatch(s3.priorityReason, /may not submit PRODUCTION/);
    for (const id of [within, over, bob]) {
      assertEquals((await client.wait(id, { timeout: seconds(60) })).state, JobState.SUCCEEDED);
    }
  });
});

Deno.test("a reservation gates its job until every entry holds a worker, and holds them for it alone", async () => {
  await withCluster(config(2), async (client) => {
    // The blocker keeps the first worker busy, so only one more (max_slices 2) can be reserved.
    const blocker = await client.submit({
      name: "blocker",
      command: ["sleep", "120"],
      cpu: 2,
      memory: 64 * 2 ** 20,
    });
    await waitFor(
      async () => (await client.status(blocker)).tasks[0]?.state === TaskState.RUNNING,
      { timeout: seconds(60), what: "the blocker running" },
    );
    const spec = jobSpecFromRequest({
      name: "reserved",
      command: ["sh", "-c", "echo reserved ran"],
      cpu: 1,
      memory: 64 * 2 ** 20,
    });
    spec.reservation = [0, 1].map(() =>
      create(ReservationEntrySchema, {
        resources: create(ResourcesSchema, { cpuMillicores: 1000, memoryBytes: GiB / 4 }),
      })
    );
    const reserved = await client.submit(spec);
    const gated = await waitFor(async () => {
      const s = await client.status(reserved);
      return s.job!.reservationClaimed === 1 && s.tasks[0]?.pendingReason?.code === "reserved" &&
        s;
    }, { timeout: seconds(60), what: "one of two reservation entries claimed" });
    assertEquals(gated.job!.state, JobState.PENDING);
    assertMatch(gated.tasks[0]!.pendingReason!.message, /1 of 2 worker\(s\) claimed/);
    const workers = await client.workers();
    assertEquals(workers.length, 2, "the reservation made the autoscaler add a worker");
    const heldWorker = workers.find((w) => w.runningTaskIds.length === 0)!;

    // Another job cannot use the held worker although it is idle.
    const other = await client.submit({
      name: "other",
      command: ["sh", "-c", "echo other ran"],
      cpu: 1,
      memory: 64 * 2 ** 20,
    });
    await waitFor(
      async () => (await client.status(other)).tasks[0]?.pendingReason?.message,
      { timeout: seconds(30), what: "the other job to be considered and left pending" },
    );
    assertEquals((await client.status(other)).tasks[0]!.state, TaskState.PENDING);
    assertEquals(
      (await client.workers()).find((w) => w.workerId === heldWorker.workerId)!
        .runningTaskIds.length,
      0,
    );

    // Freeing the blocker's worker lets the second entry claim it: the gate opens.
    await client.cancel(blocker);
    const done = await client.wait(reserved, { timeout: seconds(60) });
    assertEquals(done.state, JobState.SUCCEEDED, done.error);
    // The job ended: its workers are released and the other job runs.
    const otherDone = await client.wait(other, { timeout: seconds(60) });
    assertEquals(otherDone.state, JobState.SUCCEEDED, otherDone.error);
    const otherTask = (await client.status(other)).tasks[0]!;
    const reservedTask = (await client.status(reserved)).tasks[0]!;
    assert(otherTask.attempts[0]!.assignedAtMs >= reservedTask.finishedAtMs);
  });
});
