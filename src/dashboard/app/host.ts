/**
 * Gauges of a worker's resource snapshot, shared by the fleet, the worker detail page and the
 * worker's own dashboard: task use (the worker's tasks against the worker's capacity) and host use
 * (the whole machine, every process). Host figures the worker could not read are absent and shown
 * as "unknown", never as 0. Local VMs share one host, so they all show the same host figures.
 * @module
 */
import type { ResourceSnapshot } from "../../rpc/gen/iris/v1/types_pb.ts";
import { gauge } from "./components.ts";
import { type Child, type El, h } from "./dom.ts";
import { formatPercent, formatUsedOfTotal, fraction } from "./format.ts";
import { formatBytes, formatCpu } from "../../format.ts";

/** The note shown next to host gauges. */
export const HOST_NOTE =
  "Host = the whole machine, every process included. Local VMs share one host, so they all " +
  "show the same host figures.";

/** Host CPU busy as a fraction of its cores, or undefined when unknown. */
export function hostCpuFraction(s: ResourceSnapshot | undefined): number | undefined {
  if (s?.hostCpuMillicores === undefined || !s.hostCpuTotalMillicores) return undefined;
  return fraction(s.hostCpuMillicores, s.hostCpuTotalMillicores);
}

/** Host memory in use as a fraction of its total, or undefined when unknown. */
export function hostMemoryFraction(s: ResourceSnapshot | undefined): number | undefined {
  if (s?.hostMemoryUsedBytes === undefined || !s.hostMemoryTotalBytes) return undefined;
  return fraction(s.hostMemoryUsedBytes, s.hostMemoryTotalBytes);
}

/** Task CPU as a fraction of the worker's cores, or undefined without a snapshot. */
export function taskCpuFraction(s: ResourceSnapshot | undefined): number | undefined {
  return s ? fraction(s.cpuPercent, 100) : undefined;
}

/** Task memory as a fraction of the worker's memory, or undefined without a snapshot. */
export function taskMemoryFraction(s: ResourceSnapshot | undefined): number | undefined {
  return s && s.memoryTotalBytes ? fraction(s.memoryUsedBytes, s.memoryTotalBytes) : undefined;
}

function unknown(title: string): El {
  return h("span", { class: "muted host-unknown", title }, "unknown");
}

/** Host CPU gauge ("1.2 cpu / 8 cpu"), or "unknown". */
export function hostCpuGauge(s: ResourceSnapshot | undefined, compact: boolean): Child {
  const f = hostCpuFraction(s);
  if (f === undefined) {
    return unknown(
      s?.hostCpuTotalMillicores
        ? "Host CPU needs two readings; it shows from the next heartbeat"
        : "The worker cannot read host CPU (/proc/stat)",
    );
  }
  const gaugeEl = gauge(
    f,
    formatUsedOfTotal(
      formatCpu(s!.hostCpuMillicores),
      formatCpu(s!.hostCpuTotalMillicores),
    ),
    { compact, title: `Host CPU ${formatPercent(f)} (every process on the machine)` },
  );
  gaugeEl.classList.add("host-gauge", "host-cpu");
  return gaugeEl;
}

/** Host memory gauge ("12 GiB / 64 GiB"), or "unknown". */
export function hostMemoryGauge(s: ResourceSnapshot | undefined, compact: boolean): Child {
  const f = hostMemoryFraction(s);
  if (f === undefined) return unknown("The worker cannot read host memory (/proc/meminfo)");
  const gaugeEl = gauge(
    f,
    formatUsedOfTotal(formatBytes(s!.hostMemoryUsedBytes), formatBytes(s!.hostMemoryTotalBytes)),
    { compact, title: `Host memory ${formatPercent(f)} (every process on the machine)` },
  );
  gaugeEl.classList.add("host-gauge", "host-mem");
  return gaugeEl;
}

/** Task CPU gauge against the worker's cores, or `fallback` without a snapshot. */
export function taskCpuGauge(
  s: ResourceSnapshot | undefined,
  compact: boolean,
  fallback: Child,
): Child {
  const f = taskCpuFraction(s);
  if (f === undefined) return fallback;
  const gaugeEl = gauge(f, formatPercent(f), {
    compact,
    title: `Tasks use ${s!.cpuPercent.toFixed(1)}% of the worker's CPU`,
  });
  gaugeEl.classList.add("task-gauge", "task-cpu");
  return gaugeEl;
}

/** Task memory gauge against the worker's memory, or `fallback` without a snapshot. */
export function taskMemoryGauge(
  s: ResourceSnapshot | undefined,
  compact: boolean,
  fallback: Child,
): Child {
  const f = taskMemoryFraction(s);
  if (f === undefined) return fallback;
  const gaugeEl = gauge(
    f,
    formatUsedOfTotal(formatBytes(s!.memoryUsedBytes), formatBytes(s!.memoryTotalBytes)),
    { compact, title: `Tasks use ${formatPercent(f)} of the worker's memory` },
  );
  gaugeEl.classList.add("task-gauge", "task-mem");
  return gaugeEl;
}

/** A labelled gauge line of a `.gauges` block. */
export function gaugeRow(label: string, g: Child): El {
  return h("div", { class: "gauge-row" }, h("span", { class: "gauge-name" }, label), g);
}

/** A table cell's two gauges, tagged: the worker's tasks over the whole host. */
export function gaugePair(task: Child, host: Child): El {
  return h(
    "div",
    { class: "gauge-pair" },
    h("div", { class: "gauge-pair-row" }, h("span", { class: "gauge-tag" }, "tasks"), task),
    h(
      "div",
      { class: "gauge-pair-row" },
      h("span", { class: "gauge-tag", title: HOST_NOTE }, "host"),
      host,
    ),
  );
}
