/**
 * Per-task resource usage: the worker puts one sample per active attempt into its heartbeat
 * snapshot (and into WorkerService task info); the controller keeps a short history per active
 * attempt, drops it when the attempt ends, and remembers recent attempts per worker.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { assert, assertEquals } from "../_helpers/assert.ts";
import {
  ResourceSnapshotSchema,
  ResourcesSchema,
  TaskResourceUsageSchema,
} from "../../src/rpc/gen/iris/v1/types_pb.ts";
import {
  attemptKey,
  RECENT_ATTEMPTS,
  recordSnapshot,
  TASK_USAGE_HISTORY,
  WorkerTable,
} from "../../src/controller/workers.ts";
import { ms, seconds, waitFor } from "../../src/time.ts";
import { commandTask, startHarness } from "../worker/harness.ts";

function table() {
  const t = new WorkerTable();
  const { worker } = t.register({
    workerId: "w1",
    address: "127.0.0.1:1",
    resources: create(ResourcesSchema, { cpuMillicores: 4000, memoryBytes: 8e9 }),
    attributes: {},
    scaleGroup: "",
    sliceId: "",
  }, 0);
  return { t, worker };
}

const usage = (taskId: string, attemptId: number, i: number) =>
  create(TaskResourceUsageSchema, {
    taskId,
    attemptId,
    timestampMs: i,
    cpuMillicores: i,
    memoryBytes: 1000 + i,
    peakMemoryBytes: 2000 + i,
    processCount: 1,
  });

Deno.test("controller keeps usage history only for attempts the worker holds", () => {
  const { t, worker } = table();
  t.commit(worker, attemptKey("/u/j/0", 0), {
    cpuMillicores: 100,
    memoryBytes: 1,
    accelerators: 0,
  });
  for (let i = 0; i < TASK_USAGE_HISTORY + 5; i++) {
    recordSnapshot(
      worker,
      create(ResourceSnapshotSchema, {
        timestampMs: i,
        tasks: [usage("/u/j/0", 0, i), usage("/u/stranger/0", 0, i)],
      }),
    );
  }
  const samples = worker.taskUsage.get(attemptKey("/u/j/0", 0))!;
  assertEquals(samples.length, TASK_USAGE_HISTORY);
  assertEquals(samples[0]!.timestampMs, 5);
  assertEquals(samples.at(-1)!.cpuMillicores, TASK_USAGE_HISTORY + 4);
  assertEquals(worker.taskUsage.has(attemptKey("/u/stranger/0", 0)), false);
  // The worker's own history stays small: per-task samples are not repeated in it.
  assertEquals(worker.history.every((s) => s.tasks.length === 0), true);
  assertEquals(worker.snapshot?.tasks.length, 0);

  assertEquals(t.release("w1", attemptKey("/u/j/0", 0)), true);
  assertEquals(worker.taskUsage.size, 0);
  assertEquals(worker.recentAttempts, [attemptKey("/u/j/0", 0)]);
  for (let i = 1; i <= RECENT_ATTEMPTS + 3; i++) {
    const key = attemptKey(`/u/j/${i}`, 0);
    t.commit(worker, key, { cpuMillicores: 1, memoryBytes: 1, accelerators: 0 });
    t.release("w1", key);
  }
  assertEquals(worker.recentAttempts.length, RECENT_ATTEMPTS);
  assertEquals(worker.recentAttempts.at(-1), attemptKey(`/u/j/${RECENT_ATTEMPTS + 3}`, 0));
});

Deno.test("worker reports per-task CPU, memory, peak and processes in heartbeats", async () => {
  await using h = await startHarness({ heartbeatInterval: ms(250) });
  await h.worker.registered;
  // A busy loop, so CPU time grows by at least a second between two of ps's readings.
  await h.client.runTask(commandTask("/u/busy/0", ["sh", "-c", "while :; do :; done"]));
  const sample = await waitFor(() => {
    for (const hb of h.fake.heartbeats.toReversed()) {
      const u = hb.snapshot?.tasks.find((x) => x.taskId === "/u/busy/0");
      if (u && u.cpuMillicores > 0 && u.memoryBytes > 0) return u;
    }
    return undefined;
  }, { timeout: seconds(20), what: "a heartbeat with CPU and memory of /u/busy/0" });
  assertEquals(sample.attemptId, 0);
  assert(sample.peakMemoryBytes >= sample.memoryBytes, JSON.stringify(sample));
  assert(sample.processCount >= 1);
  assert(sample.timestampMs > 0);
  const info = (await h.client.listTasks({})).tasks.find((x) => x.taskId === "/u/busy/0");
  assert(info && info.cpuMillicores > 0, `WorkerService.ListTasks cpu: ${info?.cpuMillicores}`);
  await h.client.killTask({ taskId: "/u/busy/0", attemptId: 0, graceMs: 100 });
});
