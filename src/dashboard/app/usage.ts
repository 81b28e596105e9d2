/**
 * Usage tab: the cluster's CPU, memory and accelerators committed to tasks versus free, now and
 * over time (sampled from ListWorkers every 2 s while the dashboard is open; the last 30 minutes
 * are kept for the session), per scale group too.
 * @module
 */
import type { WorkerInfo } from "../../rpc/gen/iris/v1/types_pb.ts";
import { card, errorBox, head, metricCard } from "./components.ts";
import { h, replace } from "./dom.ts";
import { formatBytes, formatCpu } from "../../format.ts";
import type { Page, PageEnv } from "./page.ts";
import { DETAIL_INTERVAL_MS, errorMessage, Poller } from "./poll.ts";
import type { ControllerApi } from "./rpc.ts";
import { sparkline } from "./sparkline.ts";

/** Committed and total of one resource. */
export interface Use {
  readonly committed: number;
  readonly total: number;
}

/** One sample of the cluster's use. */
export interface UsageSample {
  readonly atMs: number;
  readonly cpu: Use;
  readonly memory: Use;
  readonly accelerators: Use;
  readonly workers: number;
}

/** Sums the healthy workers' capacity and what is committed to tasks on them. */
export function usageOf(workers: readonly WorkerInfo[], atMs: number): UsageSample {
  const healthy = workers.filter((w) => w.healthy);
  const sum = (f: (w: WorkerInfo) => number) => healthy.reduce((s, w) => s + (f(w) || 0), 0);
  return {
    atMs,
    workers: healthy.length,
    cpu: {
      committed: sum((w) => w.committed?.cpuMillicores ?? 0),
      total: sum((w) => w.resources?.cpuMillicores ?? 0),
    },
    memory: {
      committed: sum((w) => w.committed?.memoryBytes ?? 0),
      total: sum((w) => w.resources?.memoryBytes ?? 0),
    },
    accelerators: {
      committed: sum((w) => w.committed?.accelerator?.count ?? 0),
      total: sum((w) => w.resources?.accelerator?.count ?? 0),
    },
  };
}

/** Samples kept: 30 minutes at one per 2 s. */
const MAX_SAMPLES = 900;
/** Session-wide history, so leaving and coming back to the tab keeps the graph. */
const history: UsageSample[] = [];

function percent(u: Use): string {
  return u.total > 0 ? `${Math.round((100 * u.committed) / u.total)} %` : "—";
}

/** Builds the Usage page and starts its refresh loop. */
export function usagePage(env: PageEnv<ControllerApi>): Page {
  env.setTitle("Usage");
  const alertSlot = h("div", { class: "alert-slot" });
  const metrics = h("div", { class: "metrics" });
  const graphs = h("div", { class: "usage-graphs" });
  const groups = h("tbody");
  const el = h(
    "div",
    { class: "page page-usage" },
    h("div", { class: "toolbar" }, h("h1", null, "Cluster usage")),
    alertSlot,
    metrics,
    card("Committed to tasks over time (share of capacity)", graphs),
    card(
      "By scale group",
      h(
        "table",
        { class: "table usage-table" },
        head("Group", "Workers", "CPU committed / total", "Memory", "Accelerators"),
        groups,
      ),
    ),
  );

  function render(workers: readonly WorkerInfo[]): void {
    const now = history.at(-1)!;
    const fmtCpu = (u: Use) => `${formatCpu(u.committed)} / ${formatCpu(u.total)}`;
    const fmtMem = (u: Use) => `${formatBytes(u.committed)} / ${formatBytes(u.total)}`;
    const fmtAcc = (u: Use) => `${u.committed} / ${u.total}`;
    replace(
      metrics,
      metricCard("Workers", String(now.workers), "healthy"),
      metricCard(
        "CPU committed",
        percent(now.cpu),
        `${fmtCpu(now.cpu)} · free ${formatCpu(now.cpu.total - now.cpu.committed)}`,
      ),
      metricCard(
        "Memory committed",
        percent(now.memory),
        `${fmtMem(now.memory)} · free ${formatBytes(now.memory.total - now.memory.committed)}`,
      ),
      metricCard(
        "Accelerators committed",
        percent(now.accelerators),
        `${fmtAcc(now.accelerators)} chips/GPUs`,
      ),
    );
    const line = (kind: "cpu" | "memory" | "accelerators", label: string) => {
      const values = history.map((s) => s[kind].total > 0 ? s[kind].committed / s[kind].total : 0);
      return h(
        "div",
        { class: `usage-graph usage-${kind}`, "data-samples": history.length },
        h("div", { class: "usage-graph-label" }, `${label} ${percent(now[kind])}`),
        history.length >= 2
          ? sparkline(values, 1, kind === "cpu" ? "cpu" : "mem", `${label} committed over time`)
          : h("span", { class: "muted" }, "collecting samples…"),
      );
    };
    replace(
      graphs,
      line("cpu", "CPU"),
      line("memory", "Memory"),
      line("accelerators", "Accelerators"),
    );
    const byGroup = new Map<string, WorkerInfo[]>();
    for (const w of workers) {
      const g = w.scaleGroup || "(manual)";
      byGroup.set(g, [...(byGroup.get(g) ?? []), w]);
    }
    replace(
      groups,
      [...byGroup.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([g, ws]) => {
        const u = usageOf(ws, now.atMs);
        return h(
          "tr",
          { class: "usage-row", "data-group": g },
          h("td", null, g),
          h("td", null, String(u.workers)),
          h("td", null, `${fmtCpu(u.cpu)} (${percent(u.cpu)})`),
          h("td", null, `${fmtMem(u.memory)} (${percent(u.memory)})`),
          h(
            "td",
            null,
            u.accelerators.total ? `${fmtAcc(u.accelerators)} (${percent(u.accelerators)})` : "—",
          ),
        );
      }),
    );
  }

  const poller = new Poller(
    async (signal) => {
      try {
        const { workers } = await env.api.listWorkers({}, { signal });
        history.push(usageOf(workers, Date.now()));
        if (history.length > MAX_SAMPLES) history.splice(0, history.length - MAX_SAMPLES);
        replace(alertSlot);
        render(workers);
      } catch (e) {
        if (!signal.aborted) replace(alertSlot, errorBox(`ListWorkers failed: ${errorMessage(e)}`));
        throw e;
      }
    },
    DETAIL_INTERVAL_MS,
    env.onStatus,
  );
  poller.start();
  return { el, dispose: () => poller.stop() };
}
