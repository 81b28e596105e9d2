/**
 * Host figures between worker and page: the controller keeps them in the worker's snapshot and
 * history (dropping impossible values), and the dashboard's fractions and labels tell "unknown"
 * (absent) apart from 0.
 * @module
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { ResourceSnapshotSchema } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { recordSnapshot, WorkerTable } from "../../src/controller/workers.ts";
import { workerInfo } from "../../src/controller/convert.ts";
import {
  hostCpuFraction,
  hostMemoryFraction,
  taskCpuFraction,
} from "../../src/dashboard/app/host.ts";
import { formatUsedOfTotal } from "../../src/dashboard/app/format.ts";

const GiB = 1024 ** 3;

function worker() {
  const table = new WorkerTable();
  return table.register(
    { workerId: "w1", address: "a", scaleGroup: "", sliceId: "", attributes: {} },
    0,
  ).worker;
}

Deno.test("the controller keeps host figures in the snapshot and history, and drops impossible ones", () => {
  const w = worker();
  recordSnapshot(
    w,
    create(ResourceSnapshotSchema, {
      timestampMs: 1,
      hostCpuMillicores: 0,
      hostCpuTotalMillicores: 4000,
      hostMemoryUsedBytes: 3 * GiB,
      hostMemoryTotalBytes: 16 * GiB,
    }),
  );
  recordSnapshot(
    w,
    create(ResourceSnapshotSchema, {
      timestampMs: 2,
      hostCpuMillicores: -5,
      hostCpuTotalMillicores: 4000,
      hostMemoryUsedBytes: NaN,
      hostMemoryTotalBytes: Infinity,
    }),
  );
  const info = workerInfo(w);
  assert.equal(info.history.length, 2);
  // A real 0 stays 0.
  assert.equal(info.history[0]!.hostCpuMillicores, 0);
  assert.equal(info.history[0]!.hostMemoryTotalBytes, 16 * GiB);
  const last = info.snapshot!;
  assert.equal(last.hostCpuTotalMillicores, 4000);
  for (const key of ["hostCpuMillicores", "hostMemoryUsedBytes", "hostMemoryTotalBytes"]) {
    assert.equal(key in last, false, `${key} is unknown, not kept`);
  }
});

Deno.test("host fractions are undefined when unknown, and 0 when idle", () => {
  const known = create(ResourceSnapshotSchema, {
    cpuPercent: 50,
    hostCpuMillicores: 0,
    hostCpuTotalMillicores: 8000,
    hostMemoryUsedBytes: 12 * GiB,
    hostMemoryTotalBytes: 16 * GiB,
  });
  assert.equal(hostCpuFraction(known), 0);
  assert.equal(hostMemoryFraction(known), 0.75);
  assert.equal(taskCpuFraction(known), 0.5);
  const unknown = create(ResourceSnapshotSchema, { cpuPercent: 10, hostCpuTotalMillicores: 8000 });
  assert.equal(hostCpuFraction(unknown), undefined, "one CPU reading so far");
  assert.equal(hostMemoryFraction(unknown), undefined);
  assert.equal(hostCpuFraction(undefined), undefined);
  assert.equal(taskCpuFraction(undefined), undefined);
});

Deno.test("formatUsedOfTotal writes a shared unit once", () => {
  assert.equal(formatUsedOfTotal("80 GiB", "192 GiB"), "80 / 192 GiB");
  assert.equal(formatUsedOfTotal("3.3 MiB", "5.89 GiB"), "3.3 MiB / 5.89 GiB");
  assert.equal(formatUsedOfTotal("1.5 cpu", "2 cpu"), "1.5 / 2 cpu");
  assert.equal(formatUsedOfTotal("12", "20"), "12 / 20");
});
