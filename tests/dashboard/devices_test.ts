/**
 * GPU figures between worker and page (#19): the controller keeps a heartbeat's devices in the
 * worker's snapshot and history, and the worker page turns them into one gauge per GPU.
 * @module
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { ResourceSnapshotSchema } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { recordSnapshot, WorkerTable } from "../../src/controller/workers.ts";
import { deviceGauges, gpuPeakText } from "../../src/dashboard/app/devices.ts";
import { TaskResourceUsageSchema } from "../../src/rpc/gen/iris/v1/types_pb.ts";

const GiB = 1024 ** 3;

Deno.test("device use from heartbeats is kept in the worker's history and shown per GPU", () => {
  const w = new WorkerTable().register(
    { workerId: "w1", address: "a", scaleGroup: "", sliceId: "", attributes: {} },
    0,
  ).worker;
  for (const used of [10, 40]) {
    recordSnapshot(
      w,
      create(ResourceSnapshotSchema, {
        timestampMs: used,
        devices: [
          {
            index: 0,
            uuid: "GPU-a",
            utilizationPercent: 97,
            memoryUsedBytes: used * GiB,
            memoryTotalBytes: 80 * GiB,
          },
          { index: 1, uuid: "GPU-b", memoryTotalBytes: 80 * GiB, problem: "ERR!" },
        ],
      }),
    );
  }
  assert.deepEqual(
    w.history.map((s) => s.devices[0]?.memoryUsedBytes),
    [10 * GiB, 40 * GiB],
  );
  const g = deviceGauges(w.snapshot);
  assert.equal(g.length, 2);
  assert.equal(g[0]?.label, "GPU 0");
  assert.equal(g[0]?.fraction, 0.5);
  assert.match(g[0]?.text ?? "", /40.*80.*97% busy/);
  assert.equal(g[1]?.text, "failed");
  assert.equal(g[1]?.title, "ERR!");
  assert.deepEqual(deviceGauges(create(ResourceSnapshotSchema, {})), []);
});

Deno.test("the job page notes a task's peak GPU memory when its worker reported one", () => {
  const u = create(TaskResourceUsageSchema, { peakDeviceMemoryBytes: 40 * GiB });
  assert.match(gpuPeakText(u) ?? "", /^GPU peak 40(\.0)? GiB$/);
  assert.equal(gpuPeakText(create(TaskResourceUsageSchema, {})), undefined);
  assert.equal(gpuPeakText(undefined), undefined);
});
