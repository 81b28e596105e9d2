/**
 * The worker's log bounds against a recording controller (issue #16): rate limits degrade the
 * flooding task only, and the backlog waiting for an unreachable controller stays bounded in
 * bytes, with the dropped lines counted.
 * @module
 */
import assert from "node:assert/strict";
import { toBinary } from "@bufbuild/protobuf";
import { HeartbeatRequestSchema } from "../../src/rpc/gen/iris/v1/controller_pb.ts";
import { type LogLine, TaskState } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { commandTask, startHarness } from "./harness.ts";

/** The sum of the counts in "… N lines dropped (<why>" markers. */
function dropped(lines: readonly LogLine[], why: RegExp): number {
  let n = 0;
  for (const l of lines) {
    const m = /^… ([\d,]+) lines? dropped \((.*)$/.exec(l.text);
    if (m && l.stream === "system" && why.test(m[2]!)) n += Number(m[1]!.replaceAll(",", ""));
  }
  return n;
}

Deno.test("a flooding task loses lines to its rate limit, counted; a quiet neighbour loses none", async () => {
  await using h = await startHarness({
    logLimits: {
      taskLinesPerSecond: 1000,
      taskBurstLines: 1000,
      workerLinesPerSecond: 1500,
    },
  });
  const FLOOD = 300_000;
  await h.client.runTask(commandTask("/u/flood/0", ["sh", "-c", `seq 1 ${FLOOD}`]));
  await h.client.runTask(
    commandTask("/u/quiet/0", [
      "sh",
      "-c",
      "for i in $(seq 1 40); do echo q$i; sleep 0.02; done",
    ]),
  );
  await h.fake.waitForState("/u/flood/0", TaskState.SUCCEEDED, seconds(60));
  await h.fake.waitForState("/u/quiet/0", TaskState.SUCCEEDED, seconds(60));
  const flood = h.fake.logsOf("/u/flood/0");
  const out = flood.filter((l) => l.stream === "stdout");
  const n = dropped(flood, /^log rate limit: 1,000 lines\/s/);
  assert.ok(n > 0);
  assert.equal(out.length + n, FLOOD, "every line is delivered or counted");
  // The lines that pass are in order (the first ones are the burst).
  const nums = out.map((l) => Number(l.text));
  assert.deepEqual(nums.slice(0, 1000), Array.from({ length: 1000 }, (_, i) => i + 1));
  assert.ok(nums.every((v, i) => i === 0 || v > nums[i - 1]!));
  const quiet = h.fake.logsOf("/u/quiet/0");
  assert.deepEqual(
    quiet.filter((l) => l.stream === "stdout").map((l) => l.text),
    Array.from({ length: 40 }, (_, i) => `q${i + 1}`),
  );
  assert.equal(dropped(quiet, /./), 0);
});

Deno.test("while the controller is unreachable the backlog stays within its bytes; the drop is counted", async () => {
  await using h = await startHarness({
    logLimits: {
      taskLinesPerSecond: 1e9,
      taskBytesPerSecond: 1e12,
      taskBurstLines: 1e9,
      taskBurstBytes: 1e12,
      workerLinesPerSecond: 1e9,
      workerBytesPerSecond: 1e12,
      taskBacklogBytes: 64 * 1024,
      workerBacklogBytes: 128 * 1024,
    },
  });
  await h.worker.registered;
  h.fake.failHeartbeats = 1e9;
  const LINES = 50_000;
  await h.client.runTask(commandTask("/u/backlog/0", ["seq", "1", String(LINES)]));
  await waitFor(async () => {
    const s = await h.client.getTaskStatus({ taskId: "/u/backlog/0" });
    return s.task?.state === TaskState.SUCCEEDED;
  }, { timeout: seconds(30), what: "the task to end on the worker" });
  h.fake.failHeartbeats = 0;
  await h.fake.waitForState("/u/backlog/0", TaskState.SUCCEEDED, seconds(30));
  const lines = h.fake.logsOf("/u/backlog/0");
  const out = lines.filter((l) => l.stream === "stdout").map((l) => Number(l.text));
  const n = dropped(lines, /^log backlog full/);
  // Every line is delivered or counted (the count may include the worker's "started pid" line).
  assert.ok(out.length + n - LINES >= 0 && out.length + n - LINES <= 1, `${out.length} + ${n}`);
  // At ~106 bytes a line, 64 KiB holds about 600 lines: the newest ones.
  assert.ok(out.length > 300 && out.length < 700, `${out.length} lines delivered`);
  assert.equal(out.at(-1), LINES);
  for (const hb of h.fake.heartbeats) {
    assert.ok(toBinary(HeartbeatRequestSchema, hb).length < 256 * 1024);
  }
});

Deno.test("a task that floods and then goes quiet gets its dropped marker while it still runs", async () => {
  await using h = await startHarness({
    logLimits: { taskLinesPerSecond: 10, taskBurstLines: 100 },
  });
  await h.client.runTask(commandTask("/u/burst/0", ["sh", "-c", "seq 1 1000; sleep 5"]));
  const marker = await waitFor(
    () => h.fake.logsOf("/u/burst/0").find((l) => /lines dropped \(log rate limit/.test(l.text)),
    { timeout: seconds(10), what: "the dropped marker" },
  );
  assert.ok(
    !h.fake.updatesOf("/u/burst/0").some((u) => u.state === TaskState.SUCCEEDED),
    "the marker came before the task ended",
  );
  assert.match(marker.text, /^… [\d,]+ lines dropped/);
  await h.fake.waitForState("/u/burst/0", TaskState.SUCCEEDED, seconds(20));
  const lines = h.fake.logsOf("/u/burst/0");
  const out = lines.filter((l) => l.stream === "stdout").length;
  assert.equal(out + dropped(lines, /^log rate limit/), 1000);
});

Deno.test("heartbeats carry at most heartbeatBytes of log lines; all lines still arrive in order", async () => {
  await using h = await startHarness({
    logLimits: {
      taskBurstLines: 1e9,
      workerLinesPerSecond: 1e9,
      taskBacklogBytes: 32 * 1024 * 1024,
      workerBacklogBytes: 32 * 1024 * 1024,
      heartbeatBytes: 64 * 1024,
    },
  });
  await h.client.runTask(commandTask("/u/chunked/0", ["seq", "1", "50000"]));
  await h.fake.waitForState("/u/chunked/0", TaskState.SUCCEEDED, seconds(60));
  const out = h.fake.logsOf("/u/chunked/0").filter((l) => l.stream === "stdout");
  const nums = out.map((l) => Number(l.text));
  const gap = nums.findIndex((v, i) => v !== i + 1);
  assert.ok(nums.length === 50_000 && gap === -1, `${nums.length} lines, first gap at ${gap}`);
  // ~106 bytes of cost per line: about 600 lines (20 KiB on the wire) per heartbeat.
  const sizes = h.fake.heartbeats.map((hb) => toBinary(HeartbeatRequestSchema, hb).length);
  assert.ok(sizes.length >= 50_000 / 700, `${sizes.length} heartbeats`);
  assert.ok(Math.max(...sizes) < 64 * 1024, `largest heartbeat ${Math.max(...sizes)} bytes`);
});

Deno.test("a task's first output follows its started line, stamped no earlier, sent with RUNNING or later", async () => {
  await using h = await startHarness();
  // Many at once: a spawner's child may have output queued by the time its pid comes back.
  const ids = Array.from({ length: 16 }, (_, i) => `/u/early/${i}`);
  await Promise.all(ids.map((id) => h.client.runTask(commandTask(id, ["echo", "first"]))));
  for (const id of ids) {
    await h.fake.waitForState(id, TaskState.SUCCEEDED, seconds(30));
    const lines = h.fake.logsOf(id);
    const started = lines.findIndex((l) =>
      l.stream === "system" && l.text.startsWith("started pid")
    );
    const first = lines.findIndex((l) => l.stream === "stdout");
    assert.ok(started >= 0 && first > started, `${id}: ${lines.map((l) => l.text).join(" | ")}`);
    assert.equal(lines[first]!.text, "first");
    assert.ok(lines[first]!.timestampMs >= lines[started]!.timestampMs);
  }
  for (const hb of h.fake.heartbeats) {
    for (const u of hb.updates) {
      if (u.logs.some((l) => l.stream === "stdout")) {
        assert.ok(u.state !== TaskState.ASSIGNED && u.state !== TaskState.BUILDING, u.taskId);
      }
    }
  }
});
