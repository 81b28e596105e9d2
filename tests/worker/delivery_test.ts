/**
 * The worker's side of exactly-once delivery (reporter.ts): an update leaves the queue only when
 * the controller acknowledged it; a heartbeat answered with "register again" applied nothing, so
 * its updates stay queued, the registration lists the ended attempt as `finished`, and the
 * updates go again. Heartbeats stay under a byte budget however large the backlog.
 */
import assert from "node:assert/strict";
import { assertEquals } from "../_helpers/assert.ts";
import { toBinary } from "@bufbuild/protobuf";
import { HeartbeatRequestSchema } from "../../src/rpc/gen/iris/v1/controller_pb.ts";
import { TaskState } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { commandTask, startHarness } from "./harness.ts";

Deno.test("a final update answered with 'register again' stays queued, is listed as finished and is sent again", async () => {
  await using h = await startHarness();
  const taskId = "/u/exits3/0";
  let refused = 0;
  // The controller "restarts" just as the end arrives: it answers the first heartbeat carrying it
  // with reregister, without applying it.
  h.fake.reregisterIf = (req) => {
    const final = req.updates.some((u) => u.taskId === taskId && u.state === TaskState.FAILED);
    if (final && refused === 0) {
      refused++;
      return true;
    }
    return false;
  };
  await h.client.runTask(commandTask(taskId, ["sh", "-c", "exit 3"]));
  await waitFor(() => h.fake.registrations.length === 2, {
    timeout: seconds(10),
    what: "the worker to register again",
  });
  assert.deepEqual(
    h.fake.registrations[1]!.finished.map((r) => [r.taskId, r.attemptId]),
    [[taskId, 0]],
    "the registration lists the unacknowledged end",
  );
  await waitFor(
    () => h.fake.updatesOf(taskId).filter((u) => u.state === TaskState.FAILED).length === 2,
    { timeout: seconds(10), what: "the final update to be sent again" },
  );
  const finals = h.fake.updatesOf(taskId).filter((u) => u.state === TaskState.FAILED);
  assert.deepEqual(finals.map((u) => u.exitCode), [3, 3]);
  // Acknowledged now: not sent a third time, and no longer listed on a new registration.
  const heartbeats = h.fake.heartbeats.length;
  await waitFor(() => h.fake.heartbeats.length >= heartbeats + 3, {
    timeout: seconds(10),
    what: "more heartbeats",
  });
  assert.equal(h.fake.updatesOf(taskId).filter((u) => u.state === TaskState.FAILED).length, 2);
  h.fake.reregisterNext = true;
  await waitFor(() => h.fake.registrations.length === 3, {
    timeout: seconds(10),
    what: "a third registration",
  });
  assert.deepEqual(h.fake.registrations[2]!.finished, []);
});

Deno.test("updates answered 'deferred' (controller cannot write) stay queued while heartbeats go on", async () => {
  await using h = await startHarness();
  const taskId = "/u/deferred/0";
  let deferring = true;
  h.fake.deferIf = (req) => deferring && req.updates.some((u) => u.taskId === taskId);
  await h.client.runTask(commandTask(taskId, ["sh", "-c", "echo out; exit 3"]));
  await waitFor(
    () => h.fake.updatesOf(taskId).filter((u) => u.state === TaskState.FAILED).length >= 3,
    { timeout: seconds(10), what: "the deferred end to be sent three times" },
  );
  deferring = false;
  const sent = () => h.fake.updatesOf(taskId).filter((u) => u.state === TaskState.FAILED).length;
  const atAck = await waitFor(() => {
    const last = h.fake.heartbeats.at(-1);
    return last && !last.updates.some((u) => u.taskId === taskId) ? sent() : undefined;
  }, { timeout: seconds(10), what: "the end to be acknowledged" });
  const heartbeats = h.fake.heartbeats.length;
  await waitFor(() => h.fake.heartbeats.length >= heartbeats + 2, {
    timeout: seconds(10),
    what: "more heartbeats",
  });
  assertEquals(sent(), atAck, "not sent again once acknowledged");
  assertEquals(h.fake.registrations.length, 1, "no re-registration: the link stayed up");
  assert.ok(h.logs.some((l) => l.includes("cannot write its state; keeping updates")));
});

Deno.test("heartbeats stay under the byte budget and deliver a large backlog in order", async () => {
  const budget = 64 * 1024;
  // Rate and backlog limits high enough that no line is dropped: this is about chunking.
  const big = 64 * 1024 * 1024;
  await using h = await startHarness({
    maxHeartbeatBytes: budget,
    logLimits: {
      taskBytesPerSecond: big,
      taskBurstBytes: big,
      workerBytesPerSecond: big,
      taskBacklogBytes: big,
      workerBacklogBytes: big,
    },
  });
  const taskId = "/u/chatty/0";
  // 3,000 lines of 1,000 characters (3 MB) printed at once.
  const script = 'i=0; while [ $i -lt 3000 ]; do printf "%04d%0996d\\n" $i 0; i=$((i+1)); done';
  h.fake.failHeartbeats = 0;
  await h.client.runTask(commandTask(taskId, ["sh", "-c", script]));
  await h.fake.waitForState(taskId, TaskState.SUCCEEDED, seconds(60));
  const lines = h.fake.logsOf(taskId).filter((l) => l.stream === "stdout");
  assert.equal(lines.length, 3000);
  assert.deepEqual(
    lines.map((l) => Number(l.text.slice(0, 4))),
    Array.from({ length: 3000 }, (_, i) => i),
  );
  const sizes = h.fake.heartbeats.map((hb) => toBinary(HeartbeatRequestSchema, hb).byteLength);
  const largest = Math.max(...sizes);
  // The budget counts log text and errors; the rest of a heartbeat (snapshot, ids) is small.
  assert.ok(largest <= budget + 8 * 1024, `largest heartbeat ${largest} bytes`);
  // Line costs are counted as held in memory (2 bytes a character), so chunks are about half full.
  assert.ok(sizes.filter((s) => s > budget / 4).length >= 40, "the backlog went in many chunks");
  console.log(
    `3 MB of output in ${sizes.length} heartbeats, largest ${largest} bytes (budget ${budget})`,
  );
});

Deno.test("a single line larger than the heartbeat budget is cut, not sent whole", async () => {
  const budget = 16 * 1024;
  await using h = await startHarness({ maxHeartbeatBytes: budget });
  const taskId = "/u/longline/0";
  // One 200,000-character line, then a short one.
  const script = 'printf "%0200000d\\n" 0; echo after';
  await h.client.runTask(commandTask(taskId, ["sh", "-c", script]));
  await h.fake.waitForState(taskId, TaskState.SUCCEEDED, seconds(30));
  const lines = h.fake.logsOf(taskId).filter((l) => l.stream === "stdout");
  assert.equal(lines.at(-1)?.text, "after");
  const long = lines.find((l) => l.text.includes("line cut"));
  assert.ok(long, lines.map((l) => l.text.slice(0, 40)).join("\n"));
  const sizes = h.fake.heartbeats.map((hb) => toBinary(HeartbeatRequestSchema, hb).byteLength);
  assert.ok(Math.max(...sizes) <= budget + 8 * 1024, `largest heartbeat ${Math.max(...sizes)}`);
});

Deno.test("a burst of update heartbeats carries one resource snapshot per heartbeat interval", async () => {
  await using h = await startHarness({ heartbeatInterval: seconds(1) });
  await waitFor(() => h.fake.heartbeats.some((b) => b.snapshot), {
    timeout: seconds(10),
    what: "the first snapshot",
  });
  const from = h.fake.heartbeats.length;
  const started = performance.now();
  const ids = Array.from({ length: 20 }, (_, i) => `/u/burst${i}/0`);
  for (const id of ids) await h.client.runTask(commandTask(id, ["true"]));
  await waitFor(
    () => ids.every((id) => h.fake.updatesOf(id).some((u) => u.state === TaskState.SUCCEEDED)),
    { timeout: seconds(10), what: "every task's end" },
  );
  const burst = h.fake.heartbeats.slice(from);
  const seconds_ = (performance.now() - started) / 1000;
  const withUpdates = burst.filter((b) => b.updates.length > 0).length;
  const withSnapshot = burst.filter((b) => b.snapshot).length;
  assert.ok(withUpdates >= 4, `updates went in ${withUpdates} heartbeats: not a burst`);
  // One per started interval of the burst, and the one due as it began.
  assert.ok(
    withSnapshot <= Math.ceil(seconds_) + 1,
    `${withSnapshot} snapshots in ${burst.length} heartbeats over ${seconds_.toFixed(2)} s`,
  );
  // At rest the next interval's heartbeat brings the snapshot up to date.
  await waitFor(() => h.fake.heartbeats.at(-1)?.snapshot?.runningTasks === 0, {
    timeout: seconds(10),
    what: "a snapshot with no task running",
  });
});
