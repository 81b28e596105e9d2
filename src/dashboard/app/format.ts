/**
 * Pure formatting helpers for the dashboard: states, sizes, times, resources, constraints.
 * No DOM access, so Deno unit tests import this module directly.
 * @module
 */
import { formatBytes, formatCpu } from "../../format.ts";
import {
  type Accelerator,
  AcceleratorType,
  type AttributeValue,
  type Constraint,
  ConstraintMode,
  ConstraintOp,
  type Entrypoint,
  JobState,
  PriorityBand,
  type Resources,
  TaskState,
} from "../../rpc/gen/iris/v1/types_pb.ts";

/** Lower-case job state name ("running"), as used in badges and CSS classes. */
export function jobStateName(state: JobState): string {
  return enumName(JobState, state);
}

/** Lower-case task state name ("worker_failed"). */
export function taskStateName(state: TaskState): string {
  return enumName(TaskState, state);
}

function enumName(e: Record<number, string>, value: number): string {
  const name = e[value];
  return name === undefined || name === "UNSPECIFIED" ? "unknown" : name.toLowerCase();
}

/** A state name for people: "worker_failed" → "worker failed". */
export function stateLabel(name: string): string {
  return name.replaceAll("_", " ");
}

const TERMINAL_JOB_STATES: ReadonlySet<JobState> = new Set([
  JobState.SUCCEEDED,
  JobState.FAILED,
  JobState.KILLED,
  JobState.WORKER_FAILED,
  JobState.UNSCHEDULABLE,
]);

/** True once a job can no longer change state (so it cannot be cancelled). */
export function isTerminalJobState(state: JobState): boolean {
  return TERMINAL_JOB_STATES.has(state);
}

/** Task states in lifecycle order; used to order count summaries. */
export const TASK_STATE_ORDER: readonly string[] = [
  "running",
  "building",
  "assigned",
  "pending",
  "preempted",
  "worker_failed",
  "failed",
  "unschedulable",
  "killed",
  "succeeded",
];

/** Non-zero `task_state_counts` entries in lifecycle order. */
export function taskCountEntries(
  counts: Readonly<Record<string, number>>,
): Array<[state: string, count: number]> {
  const entries = Object.entries(counts).filter(([, n]) => n > 0);
  const rank = (s: string) => {
    const i = TASK_STATE_ORDER.indexOf(s);
    return i < 0 ? TASK_STATE_ORDER.length : i;
  };
  entries.sort((a, b) => rank(a[0]) - rank(b[0]) || a[0].localeCompare(b[0]));
  return entries;
}

/** "used / total" with the unit once when both share it: "80 / 192 GiB", "3.3 MiB / 5.89 GiB". */
export function formatUsedOfTotal(used: string, total: string): string {
  const [usedNumber, usedUnit] = used.split(" ");
  const totalUnit = total.split(" ")[1];
  return usedUnit !== undefined && usedUnit === totalUnit
    ? `${usedNumber} / ${total}`
    : `${used} / ${total}`;
}

/** "12s ago", "3m ago", "in 40s"; zero/missing timestamps → "—". */
export function formatRelative(timestampMs: number | undefined, nowMs: number): string {
  if (!timestampMs) return "—";
  const delta = nowMs - timestampMs;
  if (Math.abs(delta) < 2000) return "just now";
  const text = coarseDuration(Math.abs(delta));
  return delta >= 0 ? `${text} ago` : `in ${text}`;
}

/** Largest unit only: "12s", "3m", "2h", "4d". */
export function coarseDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

/** Elapsed time from start to end (or now while running); undefined before it starts. */
export function elapsed(startMs: number, endMs: number, nowMs: number): number | undefined {
  if (!startMs) return undefined;
  return Math.max(0, (endMs || nowMs) - startMs);
}

/** Gauge level for a used fraction: ok below 70 %, warning below 90 %, danger above. */
export type GaugeLevel = "ok" | "warning" | "danger";

/** Thresholds for {@linkcode gaugeLevel}. */
export const GAUGE_WARNING = 0.7;
/** Thresholds for {@linkcode gaugeLevel}. */
export const GAUGE_DANGER = 0.9;

/** Colour level of a gauge at `fraction` (0..1). */
export function gaugeLevel(fraction: number): GaugeLevel {
  if (fraction >= GAUGE_DANGER) return "danger";
  if (fraction >= GAUGE_WARNING) return "warning";
  return "ok";
}

/** used/total clamped to 0..1; 0 when total is unknown. */
export function fraction(used: number, total: number): number {
  if (!total || total <= 0 || !Number.isFinite(used)) return 0;
  return Math.min(1, Math.max(0, used / total));
}

/** "42%" from a fraction. */
export function formatPercent(f: number): string {
  return `${Math.round(f * 100)}%`;
}

/** An attribute value as text (strings unquoted). */
export function formatAttributeValue(v: AttributeValue | undefined): string {
  switch (v?.kind.case) {
    case "stringValue":
      return v.kind.value;
    case "intValue":
    case "floatValue":
      return String(v.kind.value);
    case "boolValue":
      return v.kind.value ? "true" : "false";
    default:
      return "";
  }
}

const OP_SYMBOLS: Record<number, string> = {
  [ConstraintOp.EQ]: "=",
  [ConstraintOp.NE]: "≠",
  [ConstraintOp.GT]: ">",
  [ConstraintOp.GE]: "≥",
  [ConstraintOp.LT]: "<",
  [ConstraintOp.LE]: "≤",
};

/** A constraint as a chip label: "region = us-east1", "tpu-name exists", "zone in [a, b]". */
export function formatConstraint(c: Constraint): string {
  let text: string;
  switch (c.op) {
    case ConstraintOp.EXISTS:
      text = `${c.key} exists`;
      break;
    case ConstraintOp.NOT_EXISTS:
      text = `${c.key} not exists`;
      break;
    case ConstraintOp.IN:
      text = `${c.key} in [${c.values.map(formatAttributeValue).join(", ")}]`;
      break;
    default:
      text = `${c.key} ${OP_SYMBOLS[c.op] ?? "?"} ${formatAttributeValue(c.value)}`;
  }
  return c.mode === ConstraintMode.PREFERRED ? `${text} (preferred)` : text;
}

/** Quotes argv for display the way a POSIX shell would need it. */
export function shellQuote(argv: readonly string[]): string {
  return argv.map((a) => /^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)
    .join(" ");
}

/** The command a job runs: "python train.py --lr 3e-4" or "module main.ts --flag". */
export function formatEntrypoint(ep: Entrypoint | undefined): string {
  switch (ep?.kind.case) {
    case "command":
      return shellQuote(ep.kind.value.argv);
    case "module":
      return shellQuote(["deno-module", ep.kind.value.path, ...ep.kind.value.args]);
    default:
      return "—";
  }
}

/** "tpu v5litepod-16 ×4", "gpu H100 ×8", "" for CPU-only. */
export function formatAccelerator(a: Accelerator | undefined): string {
  if (!a || a.type === AcceleratorType.UNSPECIFIED || a.type === AcceleratorType.CPU) return "";
  const kind = a.type === AcceleratorType.TPU ? "tpu" : "gpu";
  return [kind, a.variant, a.count ? `×${a.count}` : ""].filter(Boolean).join(" ");
}

/** "2 cpu · 8 GiB · tpu v5litepod-16 ×4". */
export function formatResources(r: Resources | undefined): string {
  if (!r) return "—";
  const parts = [formatCpu(r.cpuMillicores), formatBytes(r.memoryBytes)];
  if (r.diskBytes) parts.push(`${formatBytes(r.diskBytes)} disk`);
  const acc = formatAccelerator(r.accelerator);
  if (acc) parts.push(acc);
  return parts.join(" · ");
}

/** "production" | "interactive" | "batch" | "" */
export function priorityName(p: PriorityBand): string {
  return p === PriorityBand.UNSPECIFIED ? "" : enumName(PriorityBand, p);
}

/** The last path segment of a job or task id: "/alice/train/eval" → "eval". */
export function leafName(id: string): string {
  const trimmed = id.endsWith("/") ? id.slice(0, -1) : id;
  const i = trimmed.lastIndexOf("/");
  return i < 0 ? trimmed : trimmed.slice(i + 1);
}

/** The path parent: "/alice/train/eval" → "/alice/train"; "/alice" → "". */
export function parentPath(id: string): string {
  const i = id.lastIndexOf("/");
  return i <= 0 ? "" : id.slice(0, i);
}

/** The job id of a task id ("/alice/train/3" → "/alice/train"). */
export function jobIdOfTask(taskId: string): string {
  return parentPath(taskId);
}

/** Sort direction. */
export type SortDir = "asc" | "desc";

/** Compares two values for sorting: numbers numerically, strings naturally ("job-2" < "job-10"). */
export function compareValues(a: string | number, b: string | number): number {
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true, sensitivity: "base" });
}

/** Sorts a copy of `items` by `key`, keeping the input order for ties. */
export function sortBy<T>(items: readonly T[], key: (t: T) => string | number, dir: SortDir): T[] {
  const sign = dir === "asc" ? 1 : -1;
  return items.map((item, i) => ({ item, i, k: key(item) }))
    .sort((a, b) => sign * compareValues(a.k, b.k) || a.i - b.i)
    .map((x) => x.item);
}
