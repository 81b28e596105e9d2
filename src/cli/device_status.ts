/**
 * The device lines of `iris job status`: the peak GPU memory of the job's running attempts, from
 * the usage their workers report in heartbeats.
 * @module
 */
import type { TaskStatus } from "../rpc/gen/iris/v1/types_pb.ts";
import { formatBytes } from "../format.ts";

/** The highest peak GPU memory among the tasks' current attempts; 0 when none reported one. */
export function peakDeviceMemory(tasks: readonly TaskStatus[]): { bytes: number; task?: number } {
  let best: { bytes: number; task?: number } = { bytes: 0 };
  for (const t of tasks) {
    const peak = t.resourceUsage?.peakDeviceMemoryBytes ?? 0;
    if (peak > best.bytes) best = { bytes: peak, task: t.index };
  }
  return best;
}

/** "Peak GPU memory: 39.1 GiB (task 0)\n", or "" when no task reported GPU memory. */
export function peakDeviceMemoryLine(tasks: readonly TaskStatus[]): string {
  const p = peakDeviceMemory(tasks);
  return p.bytes > 0 ? `Peak GPU:  ${formatBytes(p.bytes)} memory (task ${p.task})\n` : "";
}
