/** `iris job status` shows the peak GPU memory the workers reported (#19). */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { TaskStatusSchema } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { peakDeviceMemory, peakDeviceMemoryLine } from "../../src/cli/device_status.ts";

const GiB = 1024 ** 3;

Deno.test("peak GPU memory is the highest peak among the tasks, with its task", () => {
  const tasks = [
    create(TaskStatusSchema, { index: 0, resourceUsage: { peakDeviceMemoryBytes: 10 * GiB } }),
    create(TaskStatusSchema, { index: 1, resourceUsage: { peakDeviceMemoryBytes: 40 * GiB } }),
    create(TaskStatusSchema, { index: 2 }),
  ];
  assert.deepEqual(peakDeviceMemory(tasks), { bytes: 40 * GiB, task: 1 });
  assert.match(peakDeviceMemoryLine(tasks), /^Peak GPU: +40(\.0)? GiB memory \(task 1\)\n$/);
  assert.equal(peakDeviceMemoryLine([create(TaskStatusSchema, { index: 0 })]), "");
});
