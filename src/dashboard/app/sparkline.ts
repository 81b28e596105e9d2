/**
 * Small inline SVG sparklines (built with createElementNS through `svg()`, never markup) for a
 * worker's heartbeat history (CPU % and memory use over the last snapshots) and for one task's
 * usage samples.
 * @module
 */
import type { ResourceSnapshot, TaskResourceUsage } from "../../rpc/gen/iris/v1/types_pb.ts";
import { type El, h, svg } from "./dom.ts";
import { formatBytes, formatCpu } from "../../format.ts";

/** Sparkline drawing size in SVG user units. */
export const SPARK_WIDTH = 240;
export const SPARK_HEIGHT = 36;

/**
 * The `points` attribute of a polyline for `values` scaled to `[0, max]`, spread evenly over
 * the width, y growing downwards. Values are clamped; non-finite values count as 0. Needs at
 * least two values (returns "" otherwise).
 */
export function sparkPoints(
  values: readonly number[],
  max: number,
  width = SPARK_WIDTH,
  height = SPARK_HEIGHT,
): string {
  if (values.length < 2) return "";
  const top = max > 0 && Number.isFinite(max) ? max : 1;
  const step = width / (values.length - 1);
  return values.map((v, i) => {
    const f = Number.isFinite(v) ? Math.min(1, Math.max(0, v / top)) : 0;
    return `${round(i * step)},${round(height - f * height)}`;
  }).join(" ");
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}

/** One sparkline: an SVG polyline over a baseline, with an accessible label. */
export function sparkline(
  values: readonly number[],
  max: number,
  kind: string,
  label: string,
): El {
  return svg(
    "svg",
    {
      class: `sparkline sparkline-${kind}`,
      viewBox: `0 0 ${SPARK_WIDTH} ${SPARK_HEIGHT}`,
      width: SPARK_WIDTH,
      height: SPARK_HEIGHT,
      preserveAspectRatio: "none",
      role: "img",
      "aria-label": label,
      "data-points": values.length,
    },
    svg("title", null, label),
    svg("line", {
      class: "sparkline-base",
      x1: 0,
      y1: SPARK_HEIGHT - 0.5,
      x2: SPARK_WIDTH,
      y2: SPARK_HEIGHT - 0.5,
    }),
    svg("polyline", { class: "sparkline-line", points: sparkPoints(values, max) }),
  );
}

/**
 * The history card body: sparklines of the tasks' CPU % and memory and, from the snapshots that
 * carry them, the host's CPU % and memory; or a note while there is too little.
 */
export function historyView(history: readonly ResourceSnapshot[]): El {
  if (history.length < 2) {
    return h("p", { class: "muted history-empty" }, "Waiting for heartbeats…");
  }
  const cpu = history.map((s) => s.cpuPercent);
  const mem = history.map((s) => s.memoryUsedBytes);
  const last = history[history.length - 1]!;
  const memMax = Math.max(last.memoryTotalBytes, ...mem);
  const spanS = Math.round((last.timestampMs - history[0]!.timestampMs) / 1000);
  const row = (name: string, spark: El, value: string) =>
    h(
      "div",
      { class: "spark-row" },
      h("span", { class: "gauge-name" }, name),
      spark,
      h("span", { class: "spark-value" }, value),
    );
  return h(
    "div",
    { class: "history", "data-samples": history.length },
    row(
      "Task CPU",
      sparkline(cpu, 100, "cpu", `CPU % over the last ${history.length} heartbeats`),
      `${last.cpuPercent.toFixed(1)}%`,
    ),
    row(
      "Task memory",
      sparkline(mem, memMax, "mem", `Memory used over the last ${history.length} heartbeats`),
      formatBytes(last.memoryUsedBytes),
    ),
    hostRows(history, row),
    h("p", { class: "muted history-span" }, `${history.length} samples over ${spanS} s`),
  );
}

/** Host CPU % and memory rows over the snapshots that know them (none with fewer than two). */
function hostRows(
  history: readonly ResourceSnapshot[],
  row: (name: string, spark: El, value: string) => El,
): El[] {
  const rows: El[] = [];
  const cpu = history.filter((s) =>
    s.hostCpuMillicores !== undefined && (s.hostCpuTotalMillicores ?? 0) > 0
  );
  if (cpu.length >= 2) {
    const pct = cpu.map((s) => (100 * s.hostCpuMillicores!) / s.hostCpuTotalMillicores!);
    rows.push(row(
      "Host CPU",
      sparkline(pct, 100, "host-cpu", `Host CPU % over the last ${cpu.length} heartbeats`),
      `${pct.at(-1)!.toFixed(1)}%`,
    ));
  }
  const mem = history.filter((s) =>
    s.hostMemoryUsedBytes !== undefined && (s.hostMemoryTotalBytes ?? 0) > 0
  );
  if (mem.length >= 2) {
    const used = mem.map((s) => s.hostMemoryUsedBytes!);
    rows.push(row(
      "Host memory",
      sparkline(
        used,
        Math.max(mem.at(-1)!.hostMemoryTotalBytes!, ...used),
        "host-mem",
        `Host memory used over the last ${mem.length} heartbeats`,
      ),
      formatBytes(used.at(-1)!),
    ));
  }
  return rows;
}

/** Drawing width of the small per-task sparklines. */
const TASK_SPARK_WIDTH = 90;

/**
 * A task's latest CPU and memory (with peak) from its worker's samples, and small CPU and memory
 * sparklines once there are two or more samples in `history`. "—" when there is no sample.
 */
export function taskUsageCell(
  usage: TaskResourceUsage | undefined,
  history: readonly TaskResourceUsage[] = [],
): El {
  if (!usage) return h("div", { class: "usage-cell muted" }, "—");
  const mini = (values: number[], max: number, kind: string, label: string) =>
    setWidth(sparkline(values, max, kind, label), TASK_SPARK_WIDTH);
  const memMax = Math.max(usage.peakMemoryBytes, ...history.map((u) => u.memoryBytes));
  const cpuMax = Math.max(1000, ...history.map((u) => u.cpuMillicores));
  return h(
    "div",
    { class: "usage-cell", "data-samples": history.length },
    h(
      "div",
      { class: "usage-line" },
      h(
        "span",
        { class: "usage-cpu", title: "CPU between the last two samples" },
        formatCpu(usage.cpuMillicores),
      ),
      history.length >= 2
        ? mini(
          history.map((u) => u.cpuMillicores),
          cpuMax,
          "task-cpu",
          `CPU over ${history.length} samples`,
        )
        : null,
    ),
    h(
      "div",
      { class: "usage-line" },
      h(
        "span",
        { class: "usage-mem", title: `${usage.processCount} processes` },
        `${formatBytes(usage.memoryBytes)} · peak ${formatBytes(usage.peakMemoryBytes)}`,
      ),
      history.length >= 2
        ? mini(
          history.map((u) => u.memoryBytes),
          memMax,
          "task-mem",
          `Memory over ${history.length} samples`,
        )
        : null,
    ),
  );
}

function setWidth(el: El, width: number): El {
  el.setAttribute("width", String(width));
  return el;
}
