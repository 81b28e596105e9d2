/**
 * Delta snapshots (#20): a heartbeat leaves out a resource snapshot that only the time changed
 * since the last acknowledged one, and the controller keeps showing the last one it got.
 */
import { create } from "@bufbuild/protobuf";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { sameSnapshot } from "../../src/worker/snapshot_delta.ts";
import { Controller } from "../../src/controller/controller.ts";
import {
  HeartbeatRequestSchema,
  RegisterWorkerRequestSchema,
  ResourceSnapshotSchema,
} from "../../src/rpc/mod.ts";

const snap = (at: number, cpuPercent: number, taskCpu = 100) =>
  create(ResourceSnapshotSchema, {
    timestampMs: at,
    cpuPercent,
    memoryTotalBytes: 2 ** 30,
    hostMemoryUsedBytes: 5,
    tasks: [{ taskId: "/u/j/0", attemptId: 0, timestampMs: at, cpuMillicores: taskCpu }],
  });

Deno.test("sameSnapshot ignores timestamps only", () => {
  assertEquals(sameSnapshot(undefined, snap(1, 0)), false, "nothing acknowledged yet");
  assertEquals(sameSnapshot(snap(1, 0), snap(2, 0)), true);
  assertEquals(sameSnapshot(snap(1, 0), snap(2, 1)), false);
  assertEquals(sameSnapshot(snap(1, 0), snap(2, 0, 101)), false, "a task's usage changed");
  const noHost = snap(2, 0);
  delete noHost.hostMemoryUsedBytes;
  assertEquals(sameSnapshot(snap(1, 0), noHost), false, "a host figure became unknown");
});

Deno.test("a heartbeat without a snapshot keeps the worker's last one", () => {
  const c = new Controller();
  c.registerWorker(create(RegisterWorkerRequestSchema, {
    workerId: "w1",
    address: "http://127.0.0.1:1",
    resources: { cpuMillicores: 1000, memoryBytes: 2 ** 30 },
  }));
  c.heartbeat(create(HeartbeatRequestSchema, { workerId: "w1", snapshot: snap(1, 42) }));
  c.heartbeat(create(HeartbeatRequestSchema, { workerId: "w1" }));
  const w = c.workers.workers.get("w1")!;
  assertEquals(w.snapshot?.cpuPercent, 42);
  assertEquals(w.history.length, 1, "an unchanged snapshot adds no history sample");
  assert(w.healthy);
});
