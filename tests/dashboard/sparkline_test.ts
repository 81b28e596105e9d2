import assert from "node:assert/strict";
import { SPARK_HEIGHT, SPARK_WIDTH, sparkPoints } from "../../src/dashboard/app/sparkline.ts";
import { recordSnapshot, SNAPSHOT_HISTORY, WorkerTable } from "../../src/controller/workers.ts";
import { create } from "@bufbuild/protobuf";
import { ResourceSnapshotSchema } from "../../src/rpc/gen/iris/v1/types_pb.ts";

Deno.test("sparkPoints spreads values over the width and scales them to the height", () => {
  assert.equal(sparkPoints([], 100), "");
  assert.equal(sparkPoints([50], 100), "");
  assert.equal(sparkPoints([0, 50, 100], 100, 100, 10), "0,10 50,5 100,0");
  // Clamped, non-finite as 0, a zero max does not divide by zero.
  assert.equal(sparkPoints([-5, 250, NaN], 100, 10, 10), "0,10 5,0 10,10");
  assert.equal(sparkPoints([1, 2], 0, 10, 10), "0,0 10,0");
  assert.equal(sparkPoints([0, 0], 100).split(" ").at(-1), `${SPARK_WIDTH},${SPARK_HEIGHT}`);
});

Deno.test("recordSnapshot keeps the current snapshot and the last 120 in order", () => {
  const table = new WorkerTable();
  const { worker } = table.register(
    { workerId: "w1", address: "a", scaleGroup: "", sliceId: "", attributes: {} },
    0,
  );
  for (let i = 0; i < SNAPSHOT_HISTORY + 5; i++) {
    recordSnapshot(worker, create(ResourceSnapshotSchema, { timestampMs: i, cpuPercent: i }));
  }
  assert.equal(worker.history.length, SNAPSHOT_HISTORY);
  assert.equal(worker.history[0]!.timestampMs, 5);
  assert.equal(worker.snapshot?.timestampMs, SNAPSHOT_HISTORY + 4);
  table.recordSnapshot(worker, create(ResourceSnapshotSchema, { timestampMs: 1000 }));
  assert.equal(worker.history.length, SNAPSHOT_HISTORY);
  assert.equal(worker.history.at(-1)!.timestampMs, 1000);
});
