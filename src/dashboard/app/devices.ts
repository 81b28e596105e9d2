/**
 * GPUs on the pages: one gauge per device (memory used of total, utilisation in the label) from the
 * `devices` of a worker's last heartbeat snapshot, and a task's peak GPU memory.
 * @module
 */
import type { ResourceSnapshot, TaskResourceUsage } from "../../rpc/gen/iris/v1/types_pb.ts";
import { gauge } from "./components.ts";
import { type El, h } from "./dom.ts";
import { formatPercent, formatUsedOfTotal } from "./format.ts";
import { formatBytes } from "../../format.ts";
import { gaugeRow } from "./host.ts";

/** What one device's gauge shows. */
export interface DeviceGauge {
  readonly label: string;
  /** Memory used over total, 0..1; undefined when unreadable. */
  readonly fraction?: number;
  readonly text: string;
  readonly title: string;
}

/** The gauges of a snapshot's devices (none when the worker reported none). */
export function deviceGauges(s: ResourceSnapshot | undefined): DeviceGauge[] {
  return (s?.devices ?? []).map((d) => {
    const label = `GPU ${d.index}`;
    if (d.problem) return { label, text: "failed", title: d.problem };
    const used = d.memoryUsedBytes;
    const fraction = used !== undefined && d.memoryTotalBytes > 0
      ? Math.min(1, used / d.memoryTotalBytes)
      : undefined;
    const util = d.utilizationPercent === undefined ? "" : `, ${d.utilizationPercent}% busy`;
    return {
      label,
      fraction,
      text: used === undefined
        ? "unknown"
        : formatUsedOfTotal(formatBytes(used), formatBytes(d.memoryTotalBytes)) + util,
      title: `${label} ${d.uuid}: memory ${
        fraction === undefined ? "unknown" : formatPercent(fraction)
      }${util}`,
    };
  });
}

/** One gauge row per device. */
export function deviceGaugeRows(s: ResourceSnapshot | undefined): El[] {
  return deviceGauges(s).map((g) =>
    gaugeRow(
      g.label,
      gauge(g.fraction ?? 0, g.text, { title: g.title, neutral: g.fraction === undefined }),
    )
  );
}

/** "GPU peak 39.1 GiB" for an attempt that reported GPU memory, else undefined. */
export function gpuPeakText(u: TaskResourceUsage | undefined): string | undefined {
  const peak = u?.peakDeviceMemoryBytes ?? 0;
  return peak > 0 ? `GPU peak ${formatBytes(peak)}` : undefined;
}

/** A muted note under a task's usage with its peak GPU memory, or null. */
export function gpuPeakNote(u: TaskResourceUsage | undefined): El | null {
  const text = gpuPeakText(u);
  return text ? h("div", { class: "muted gpu-peak" }, text) : null;
}
