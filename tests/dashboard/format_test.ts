import assert from "node:assert/strict";
import {
  coarseDuration,
  compareValues,
  elapsed,
  formatAccelerator,
  formatAttributeValue,
  formatConstraint,
  formatEntrypoint,
  formatPercent,
  formatRelative,
  formatResources,
  fraction,
  gaugeLevel,
  isTerminalJobState,
  jobIdOfTask,
  jobStateName,
  leafName,
  parentPath,
  priorityName,
  shellQuote,
  sortBy,
  stateLabel,
  taskCountEntries,
  taskStateName,
} from "../../src/dashboard/app/format.ts";
import {
  formatBytes,
  formatClock,
  formatCores,
  formatCpu,
  formatDateTime,
  formatDuration,
  formatTimestamp,
} from "../../src/format.ts";
import { overflow, START_POSITION, takeNewLines } from "../../src/dashboard/app/logs.ts";
import { create } from "@bufbuild/protobuf";
import {
  AcceleratorType,
  ConstraintMode,
  ConstraintOp,
  ConstraintSchema,
  EntrypointSchema,
  JobState,
  PriorityBand,
  ResourcesSchema,
  TaskState,
} from "../../src/rpc/gen/iris/v1/types_pb.ts";

Deno.test("jobStateName() and taskStateName() give lower-case names", () => {
  assert.equal(jobStateName(JobState.RUNNING), "running");
  assert.equal(jobStateName(JobState.WORKER_FAILED), "worker_failed");
  assert.equal(jobStateName(JobState.UNSPECIFIED), "unknown");
  assert.equal(jobStateName(99 as JobState), "unknown");
  assert.equal(taskStateName(TaskState.ASSIGNED), "assigned");
  assert.equal(taskStateName(TaskState.PREEMPTED), "preempted");
  assert.equal(stateLabel("worker_failed"), "worker failed");
});

Deno.test("isTerminalJobState() is true only for finished jobs", () => {
  assert.equal(isTerminalJobState(JobState.RUNNING), false);
  assert.equal(isTerminalJobState(JobState.PENDING), false);
  assert.equal(isTerminalJobState(JobState.BUILDING), false);
  for (
    const s of [
      JobState.SUCCEEDED,
      JobState.FAILED,
      JobState.KILLED,
      JobState.WORKER_FAILED,
      JobState.UNSCHEDULABLE,
    ]
  ) {
    assert.equal(isTerminalJobState(s), true);
  }
});

Deno.test("taskCountEntries() drops zeros and orders by lifecycle", () => {
  assert.deepEqual(
    taskCountEntries({ succeeded: 3, running: 2, pending: 0, failed: 1, weird: 1 }),
    [
      ["running", 2],
      ["failed", 1],
      ["succeeded", 3],
      ["weird", 1],
    ],
  );
  assert.deepEqual(taskCountEntries({}), []);
});

Deno.test("formatBytes() is exact below 10 KiB, then binary units with three digits", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(undefined), "0 B");
  assert.equal(formatBytes(-5), "0 B");
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(1536), "1536 B");
  assert.equal(formatBytes(2000), "2000 B", "close limits stay distinct");
  assert.equal(formatBytes(10 * 1024), "10 KiB");
  assert.equal(formatBytes(1.5 * 1024 ** 2), "1.5 MiB");
  assert.equal(formatBytes(32 * 1024 ** 3), "32 GiB");
  assert.equal(formatBytes(1.25 * 1024 ** 4), "1.25 TiB");
  assert.equal(formatBytes(183 * 1024 ** 2), "183 MiB");
  assert.equal(formatBytes(12.34 * 1024 ** 2), "12.3 MiB");
});

Deno.test("formatCpu() and formatCores() spell millicores as cores, to the millicore", () => {
  assert.equal(formatCpu(0), "0 cpu");
  assert.equal(formatCpu(undefined), "0 cpu");
  assert.equal(formatCpu(500), "0.5 cpu");
  assert.equal(formatCpu(2000), "2 cpu");
  assert.equal(formatCpu(1250), "1.25 cpu");
  assert.equal(formatCores(4000), "4");
  assert.equal(formatCores(1234), "1.234");
  assert.equal(formatCores(1), "0.001");
  assert.equal(formatCores(1234.4), "1.234", "measured usage rounds to the millicore");
  assert.equal(formatCores(0.4), "0", "never -0 or 0.0004");
  assert.equal(formatCores(-0.4), "0");
  assert.equal(formatCores(-500), "-0.5", "an overcommitted 'free' keeps its sign");
  assert.equal(formatCores(512_000), "512");
  assert.equal(formatCores(NaN), "0");
  assert.equal(formatCores(Infinity), "0");
  assert.equal(formatCores(undefined), "0");
});

Deno.test("formatDuration() is compact, one spelling for CLI, dashboard and errors", () => {
  assert.equal(formatDuration(undefined), "0s");
  assert.equal(formatDuration(0), "0s");
  assert.equal(formatDuration(250), "250ms");
  assert.equal(formatDuration(-5), "0s");
  assert.equal(formatDuration(45_000), "45.0s");
  assert.equal(formatDuration(12_345), "12.3s");
  assert.equal(formatDuration(192_000), "3m12s");
  assert.equal(formatDuration(245_000), "4m05s");
  assert.equal(formatDuration(2 * 3600_000 + 5 * 60_000), "2h05m");
  assert.equal(formatDuration(3 * 86400_000 + 4 * 3600_000), "3d04h");
});

Deno.test("formatRelative() handles past, future and missing times", () => {
  const now = 1_000_000_000;
  assert.equal(formatRelative(0, now), "—");
  assert.equal(formatRelative(undefined, now), "—");
  assert.equal(formatRelative(now - 500, now), "just now");
  assert.equal(formatRelative(now - 12_000, now), "12s ago");
  assert.equal(formatRelative(now - 3 * 60_000, now), "3m ago");
  assert.equal(formatRelative(now - 5 * 3600_000, now), "5h ago");
  assert.equal(formatRelative(now - 3 * 86400_000, now), "3d ago");
  assert.equal(formatRelative(now + 40_000, now), "in 40s");
  assert.equal(coarseDuration(47 * 3600_000), "47h");
});

Deno.test("formatDateTime() and formatClock() format UTC deterministically", () => {
  const ts = Date.UTC(2026, 10, 23, 9, 5, 7, 42);
  assert.equal(formatDateTime(ts, true), "2026-11-23 09:05:07");
  assert.equal(formatDateTime(0, true), "—");
  assert.equal(formatClock(ts, true), "09:05:07.042");
  assert.equal(formatTimestamp(ts), "2026-11-23T09:05:07Z");
  assert.equal(formatTimestamp(0), "-");
});

Deno.test("elapsed() runs to now until finished", () => {
  assert.equal(elapsed(0, 0, 100), undefined);
  assert.equal(elapsed(10, 0, 100), 90);
  assert.equal(elapsed(10, 50, 100), 40);
  assert.equal(elapsed(100, 50, 200), 0);
});

Deno.test("gaugeLevel() switches at 70% and 90%", () => {
  assert.equal(gaugeLevel(0), "ok");
  assert.equal(gaugeLevel(0.699), "ok");
  assert.equal(gaugeLevel(0.7), "warning");
  assert.equal(gaugeLevel(0.899), "warning");
  assert.equal(gaugeLevel(0.9), "danger");
  assert.equal(gaugeLevel(1), "danger");
  assert.equal(fraction(5, 0), 0);
  assert.equal(fraction(150, 100), 1);
  assert.equal(fraction(-1, 100), 0);
  assert.equal(fraction(25, 100), 0.25);
  assert.equal(formatPercent(0.256), "26%");
});

Deno.test("formatConstraint() renders each operator", () => {
  const str = (value: string) => ({ kind: { case: "stringValue" as const, value } });
  const c = (init: Parameters<typeof create<typeof ConstraintSchema>>[1]) =>
    create(ConstraintSchema, init);
  assert.equal(
    formatConstraint(c({ key: "region", op: ConstraintOp.EQ, value: str("us-east1") })),
    "region = us-east1",
  );
  assert.equal(
    formatConstraint(
      c({ key: "gen", op: ConstraintOp.GE, value: { kind: { case: "intValue", value: 5 } } }),
    ),
    "gen ≥ 5",
  );
  assert.equal(
    formatConstraint(c({ key: "tpu-name", op: ConstraintOp.EXISTS })),
    "tpu-name exists",
  );
  assert.equal(
    formatConstraint(c({ key: "taint:x", op: ConstraintOp.NOT_EXISTS })),
    "taint:x not exists",
  );
  assert.equal(
    formatConstraint(
      c({
        key: "zone",
        op: ConstraintOp.IN,
        values: [str("a"), str("b")],
        mode: ConstraintMode.PREFERRED,
      }),
    ),
    "zone in [a, b] (preferred)",
  );
  assert.equal(
    formatAttributeValue({ kind: { case: "boolValue", value: false } } as never),
    "false",
  );
  assert.equal(formatAttributeValue(undefined), "");
});

Deno.test("shellQuote() and formatEntrypoint() quote only when needed", () => {
  assert.equal(shellQuote(["python", "-m", "train", "--lr=3e-4"]), "python -m train --lr=3e-4");
  assert.equal(shellQuote(["echo", "a b", "it's"]), `echo 'a b' 'it'\\''s'`);
  assert.equal(formatEntrypoint(undefined), "—");
  assert.equal(
    formatEntrypoint(
      create(EntrypointSchema, {
        kind: { case: "command", value: { argv: ["sh", "-c", "echo hi"] } },
      }),
    ),
    "sh -c 'echo hi'",
  );
  assert.equal(
    formatEntrypoint(
      create(EntrypointSchema, {
        kind: { case: "module", value: { path: "main.ts", args: ["--x"] } },
      }),
    ),
    "deno-module main.ts --x",
  );
});

Deno.test("formatResources() and formatAccelerator() summarize a request", () => {
  const r = create(ResourcesSchema, {
    cpuMillicores: 8000,
    memoryBytes: 32 * 1024 ** 3,
    accelerator: { type: AcceleratorType.TPU, variant: "v5litepod-16", count: 4 },
  });
  assert.equal(formatResources(r), "8 cpu · 32 GiB · tpu v5litepod-16 ×4");
  assert.equal(formatResources(undefined), "—");
  assert.equal(formatAccelerator(create(ResourcesSchema, {}).accelerator), "");
  assert.equal(
    formatAccelerator({ type: AcceleratorType.GPU, variant: "", count: 8 } as never),
    "gpu ×8",
  );
  assert.equal(
    formatAccelerator({ type: AcceleratorType.CPU, variant: "", count: 0 } as never),
    "",
  );
  assert.equal(priorityName(PriorityBand.BATCH), "batch");
  assert.equal(priorityName(PriorityBand.UNSPECIFIED), "");
});

Deno.test("leafName(), parentPath() and jobIdOfTask() split hierarchical ids", () => {
  assert.equal(leafName("/alice/train/eval"), "eval");
  assert.equal(leafName("/alice/train/"), "train");
  assert.equal(leafName("plain"), "plain");
  assert.equal(parentPath("/alice/train/eval"), "/alice/train");
  assert.equal(parentPath("/alice"), "");
  assert.equal(jobIdOfTask("/alice/train/3"), "/alice/train");
});

Deno.test("sortBy() is stable and natural", () => {
  assert.ok(compareValues("job-2", "job-10") < 0);
  assert.ok(compareValues(3, 20) < 0);
  const items = [{ k: "b", i: 0 }, { k: "a", i: 1 }, { k: "b", i: 2 }, { k: "a", i: 3 }];
  assert.deepEqual(sortBy(items, (x) => x.k, "asc").map((x) => x.i), [1, 3, 0, 2]);
  assert.deepEqual(sortBy(items, (x) => x.k, "desc").map((x) => x.i), [0, 2, 1, 3]);
});

Deno.test("takeNewLines() follows a since_ms stream without duplicates or gaps", () => {
  const l = (timestampMs: number, text: string) => ({ timestampMs, text });
  let r = takeNewLines([l(10, "a"), l(20, "b"), l(20, "c")], START_POSITION);
  assert.deepEqual(r.fresh.map((x) => x.text), ["a", "b", "c"]);
  assert.deepEqual(r.pos, { lastTs: 20, seenAtLastTs: 2 });
  // Inclusive server: returns the two lines at 20 again plus a new one at 20 and one at 30.
  r = takeNewLines([l(20, "b"), l(20, "c"), l(20, "d"), l(30, "e")], r.pos);
  assert.deepEqual(r.fresh.map((x) => x.text), ["d", "e"]);
  assert.deepEqual(r.pos, { lastTs: 30, seenAtLastTs: 1 });
  // Nothing new: the position stays.
  const same = takeNewLines([l(30, "e")], r.pos);
  assert.deepEqual(same.fresh, []);
  assert.deepEqual(same.pos, r.pos);
  // Exclusive server: only newer lines come back.
  r = takeNewLines([l(31, "f")], r.pos);
  assert.deepEqual(r.fresh.map((x) => x.text), ["f"]);
  assert.equal(overflow(4990, 20, 5000), 10);
  assert.equal(overflow(10, 20, 5000), 0);
});
