/**
 * Fleet tab (workers with health, attributes and live gauges of their tasks' and their host's
 * CPU and memory; every 5 s) and the worker detail page (every 2 s) with CPU/memory sparklines of
 * the worker's recent heartbeat history, its running tasks with their CPU/memory samples and its
 * recent attempts. The list reads ListWorkers, the detail page GetWorkerStatus.
 * @module
 */
import { deviceGaugeRows } from "./devices.ts";
import { Code, ConnectError } from "@connectrpc/connect";
import type { WorkerAttempt } from "../../rpc/gen/iris/v1/controller_pb.ts";
import type { TaskStatus, WorkerInfo } from "../../rpc/gen/iris/v1/types_pb.ts";
import {
  badge,
  card,
  type Column,
  emptyRow,
  errorBox,
  gauge,
  head,
  infoList,
  link,
  metricCard,
  nextSort,
  relTime,
  sortableHead,
  type SortState,
} from "./components.ts";
import { type Child, type El, h, on, replace } from "./dom.ts";
import {
  elapsed,
  formatAccelerator,
  formatAttributeValue,
  formatPercent,
  fraction,
  sortBy,
  taskStateName,
} from "./format.ts";
import { formatBytes, formatCpu, formatDateTime, formatDuration } from "../../format.ts";
import type { Page, PageEnv } from "./page.ts";
import { DETAIL_INTERVAL_MS, errorMessage, LIST_INTERVAL_MS, Poller } from "./poll.ts";
import type { ControllerApi } from "./rpc.ts";
import { jobHref, workerHref } from "./routes.ts";
import { historyView, taskUsageCell } from "./sparkline.ts";
import {
  gaugePair,
  gaugeRow,
  HOST_NOTE,
  hostCpuGauge,
  hostMemoryGauge,
  taskCpuFraction,
  taskCpuGauge,
  taskMemoryFraction,
  taskMemoryGauge,
} from "./host.ts";

/** A heartbeat older than this is shown as stale. */
const STALE_HEARTBEAT_MS = 30_000;

const COLUMNS: readonly Column[] = [
  { key: "id", label: "Worker" },
  { key: "health", label: "Health" },
  { key: "group", label: "Group / slice" },
  { key: "tpu", label: "TPU worker" },
  { key: "accel", label: "Accelerator" },
  // Each cell stacks the tasks' gauge over the host's; the header sorts by the tasks' use.
  { key: "cpu", label: "CPU", class: "col-gauge" },
  { key: "mem", label: "Memory", class: "col-gauge" },
  { key: "tasks", label: "Tasks", class: "num" },
  { key: "heartbeat", label: "Heartbeat" },
];

const view = { sort: { key: "id", dir: "asc" } as SortState, filter: "" };

function attr(w: WorkerInfo, key: string): string {
  return formatAttributeValue(w.attributes[key]);
}

/** Task CPU gauge from the heartbeat snapshot, or static capacity when there is none yet. */
function cpuCell(w: WorkerInfo, compact: boolean): Child {
  return taskCpuGauge(
    w.snapshot,
    compact,
    h("span", { class: "muted" }, `${formatCpu(w.resources?.cpuMillicores)} (no data)`),
  );
}

function memCell(w: WorkerInfo, compact: boolean): Child {
  return taskMemoryGauge(
    w.snapshot,
    compact,
    h("span", { class: "muted" }, `${formatBytes(w.resources?.memoryBytes)} (no data)`),
  );
}

function heartbeat(w: WorkerInfo, now: number): El {
  const stale = w.lastHeartbeatMs > 0 && now - w.lastHeartbeatMs > STALE_HEARTBEAT_MS;
  const t = relTime(w.lastHeartbeatMs, now);
  if (stale) t.classList.add("stale");
  return t;
}

function healthBadge(w: WorkerInfo): El {
  return badge(w.healthy ? "healthy" : "unhealthy");
}

function sortKey(key: string): (w: WorkerInfo) => string | number {
  switch (key) {
    case "health":
      return (w) => (w.healthy ? 1 : 0);
    case "group":
      return (w) => `${w.scaleGroup}/${w.sliceId}`;
    case "tpu":
      return (w) => Number(attr(w, "tpu-worker-id") || -1);
    case "accel":
      return (w) => formatAccelerator(w.resources?.accelerator);
    case "cpu":
      return (w) => taskCpuFraction(w.snapshot) ?? -1;
    case "mem":
      return (w) => taskMemoryFraction(w.snapshot) ?? -1;
    case "tasks":
      return (w) => w.runningTaskIds.length;
    case "heartbeat":
      return (w) => w.lastHeartbeatMs;
    default:
      return (w) => w.workerId;
  }
}

/** Builds the Fleet page and starts its refresh loop. */
export function fleetPage(env: PageEnv<ControllerApi>): Page {
  env.setTitle("Fleet");
  let workers: WorkerInfo[] = [];
  let loaded = false;
  const alertSlot = h("div", { class: "alert-slot" });
  const metrics = h("div", { class: "metrics" });
  const tbody = h("tbody", null, emptyRow(COLUMNS.length, "Loading…"));
  const table = h("table", { class: "table fleet-table" }, tbody);
  const filter = h("input", {
    type: "search",
    class: "input filter",
    placeholder: "Filter workers, groups, slices",
    "aria-label": "Worker filter",
    value: view.filter,
  });
  on(filter, "input", () => {
    view.filter = filter.value.trim().toLowerCase();
    render();
  });

  const el = h(
    "div",
    { class: "page page-fleet" },
    h("div", { class: "toolbar" }, h("h1", null, "Fleet"), h("div", { class: "spacer" }), filter),
    alertSlot,
    metrics,
    h("div", { class: "card card-flush" }, table),
    h(
      "p",
      { class: "muted fleet-note" },
      "CPU and memory: \"tasks\" is the worker's tasks against the worker's capacity. ",
      HOST_NOTE,
    ),
  );

  function render(): void {
    const now = Date.now();
    table.querySelector("thead")?.remove();
    table.prepend(sortableHead(COLUMNS, view.sort, (key) => {
      view.sort = nextSort(view.sort, key, "asc");
      render();
    }));
    const shown = sortBy(
      workers.filter((w) =>
        !view.filter ||
        [w.workerId, w.scaleGroup, w.sliceId, w.address].some((s) =>
          s.toLowerCase().includes(view.filter)
        )
      ),
      sortKey(view.sort.key),
      view.sort.dir,
    );
    replace(
      tbody,
      shown.length === 0
        ? emptyRow(COLUMNS.length, loaded ? "No workers" : "Loading…")
        : shown.map((w) =>
          h(
            "tr",
            { class: `worker-row${w.healthy ? "" : " unhealthy"}`, "data-worker-id": w.workerId },
            h(
              "td",
              null,
              link(workerHref(w.workerId), w.workerId, "worker-link"),
              h("div", { class: "sub muted" }, w.address),
            ),
            h(
              "td",
              null,
              healthBadge(w),
              w.statusMessage ? h("div", { class: "sub muted" }, w.statusMessage) : null,
            ),
            h(
              "td",
              null,
              w.scaleGroup || h("span", { class: "muted" }, "—"),
              h("div", { class: "sub muted" }, w.sliceId || attr(w, "slice")),
            ),
            h("td", { class: "num" }, attr(w, "tpu-worker-id") || "—"),
            h(
              "td",
              null,
              formatAccelerator(w.resources?.accelerator) || attr(w, "accelerator") || "cpu",
            ),
            h(
              "td",
              { class: "col-gauge col-cpu" },
              gaugePair(cpuCell(w, true), hostCpuGauge(w.snapshot, true)),
            ),
            h(
              "td",
              { class: "col-gauge col-mem" },
              gaugePair(memCell(w, true), hostMemoryGauge(w.snapshot, true)),
            ),
            h("td", { class: "num" }, String(w.runningTaskIds.length)),
            h("td", null, heartbeat(w, now)),
          )
        ),
    );
  }

  function renderMetrics(): void {
    const healthy = workers.filter((w) => w.healthy).length;
    const running = workers.reduce((s, w) => s + w.runningTaskIds.length, 0);
    const withSnap = workers.filter((w) => w.snapshot);
    const cpu = withSnap.length
      ? withSnap.reduce((s, w) => s + (taskCpuFraction(w.snapshot) ?? 0), 0) / withSnap.length
      : 0;
    const used = withSnap.reduce((s, w) => s + (w.snapshot?.memoryUsedBytes ?? 0), 0);
    const totalMem = withSnap.reduce((s, w) => s + (w.snapshot?.memoryTotalBytes ?? 0), 0);
    const chips = workers.reduce((s, w) => s + (w.resources?.accelerator?.count ?? 0), 0);
    replace(
      metrics,
      metricCard(
        "Workers",
        String(workers.length),
        `${healthy} healthy · ${workers.length - healthy} unhealthy`,
        healthy < workers.length ? "warning" : "",
      ),
      metricCard("Running tasks", String(running)),
      metricCard("Accelerator chips", String(chips)),
      metricCard(
        "Avg task CPU",
        formatPercent(cpu),
        gauge(cpu, `${withSnap.length} reporting`, { compact: true }),
      ),
      metricCard(
        "Task memory",
        formatPercent(fraction(used, totalMem)),
        gauge(fraction(used, totalMem), `${formatBytes(used)} / ${formatBytes(totalMem)}`, {
          compact: true,
        }),
      ),
    );
  }

  const poller = new Poller(
    async (signal) => {
      try {
        workers = (await env.api.listWorkers({}, { signal })).workers;
        loaded = true;
        replace(alertSlot);
        renderMetrics();
        render();
      } catch (e) {
        if (!signal.aborted) replace(alertSlot, errorBox(`ListWorkers failed: ${errorMessage(e)}`));
        throw e;
      }
    },
    LIST_INTERVAL_MS,
    env.onStatus,
  );
  render();
  poller.start();
  return { el, dispose: () => poller.stop() };
}

/** Builds the worker detail page for `workerId` and starts its refresh loop. */
export function workerDetailPage(env: PageEnv<ControllerApi>, workerId: string): Page {
  env.setTitle(workerId);
  const alertSlot = h("div", { class: "alert-slot" });
  const badgeSlot = h("span", { class: "title-badge" });
  const body = h("div", { class: "worker-detail-grid" });
  const el = h(
    "div",
    { class: "page page-worker" },
    h(
      "nav",
      { class: "breadcrumb" },
      link("#/fleet", "Fleet"),
      h("span", { class: "crumb-sep" }, "/"),
      h("span", null, workerId),
    ),
    h("div", { class: "toolbar" }, h("h1", null, workerId), badgeSlot),
    alertSlot,
    body,
  );

  function render(
    w: WorkerInfo,
    tasks: readonly TaskStatus[],
    recent: readonly WorkerAttempt[],
  ): void {
    const now = Date.now();
    const s = w.snapshot;
    const committed = w.committed;
    const res = w.resources;
    const attrs = Object.entries(w.attributes).sort(([a], [b]) => a.localeCompare(b));
    // Workers advertise "host:port" or a plain http(s) URL (local VMs); anything else is no link.
    const dashboardUrl = /^[A-Za-z0-9.:[\]-]+$/.test(w.address)
      ? `http://${w.address}/`
      : /^https?:\/\/[A-Za-z0-9.:[\]-]+\/?$/.test(w.address)
      ? w.address.replace(/\/?$/, "/")
      : "";
    replace(badgeSlot, healthBadge(w));
    replace(
      body,
      card(
        "Identity",
        infoList([
          [
            "Address",
            dashboardUrl
              ? h(
                "a",
                { href: dashboardUrl, rel: "noopener noreferrer", target: "_blank" },
                w.address,
              )
              : w.address,
          ],
          ["Scale group", w.scaleGroup],
          ["Slice", w.sliceId],
          ["Accelerator", formatAccelerator(res?.accelerator) || "cpu"],
          ["Registered", w.registeredAtMs ? `${formatDateTime(w.registeredAtMs)}` : ""],
          ["Last heartbeat", heartbeat(w, now)],
          ["Status", w.statusMessage],
        ]),
      ),
      card(
        "Live resources",
        s
          ? h(
            "div",
            { class: "gauges" },
            gaugeRow("Task CPU", cpuCell(w, false)),
            gaugeRow("Task memory", memCell(w, false)),
            gaugeRow("Host CPU", hostCpuGauge(s, false)),
            gaugeRow("Host memory", hostMemoryGauge(s, false)),
            ...deviceGaugeRows(s),
            h("p", { class: "muted host-note" }, HOST_NOTE),
            infoList([
              ["Processes", String(s.processCount)],
              ["Running tasks", String(s.runningTasks)],
              ["Sampled", relTime(s.timestampMs, now)],
            ]),
          )
          : h("p", { class: "muted" }, "No heartbeat snapshot yet"),
      ),
      card("Resource history", historyView(w.history)),
      card(
        "Committed / capacity",
        h(
          "div",
          { class: "gauges" },
          gaugeRow(
            "CPU",
            gauge(
              fraction(committed?.cpuMillicores ?? 0, res?.cpuMillicores ?? 0),
              `${formatCpu(committed?.cpuMillicores)} / ${formatCpu(res?.cpuMillicores)}`,
              { neutral: true },
            ),
          ),
          gaugeRow(
            "Memory",
            gauge(
              fraction(committed?.memoryBytes ?? 0, res?.memoryBytes ?? 0),
              `${formatBytes(committed?.memoryBytes)} / ${formatBytes(res?.memoryBytes)}`,
              { neutral: true },
            ),
          ),
          res?.accelerator?.count
            ? gaugeRow(
              "Accelerators",
              gauge(
                fraction(committed?.accelerator?.count ?? 0, res.accelerator.count),
                `${committed?.accelerator?.count ?? 0} / ${res.accelerator.count}`,
                { neutral: true },
              ),
            )
            : null,
          res?.diskBytes ? infoList([["Disk", formatBytes(res.diskBytes)]]) : null,
        ),
      ),
      card(
        `Attributes (${attrs.length})`,
        attrs.length
          ? h(
            "table",
            { class: "table attrs-table" },
            h(
              "tbody",
              null,
              attrs.map(([k, v]) =>
                h(
                  "tr",
                  null,
                  h("td", { class: "attr-key" }, k),
                  h("td", null, formatAttributeValue(v)),
                )
              ),
            ),
          )
          : h("p", { class: "muted" }, "No attributes"),
      ),
      h(
        "div",
        { class: "span-all" },
        card(
          `Running tasks (${tasks.length})`,
          h(
            "table",
            { class: "table worker-tasks-table" },
            head("Task", "Job", "State", "Attempt", "Running for", "CPU / memory"),
            h(
              "tbody",
              null,
              tasks.length === 0 ? emptyRow(6, "No running tasks") : tasks.map((t) =>
                h(
                  "tr",
                  { class: "task-row", "data-task-id": t.taskId },
                  h("td", null, h("code", null, t.taskId)),
                  h("td", null, link(jobHref(t.jobId), t.jobId)),
                  h("td", null, badge(taskStateName(t.state))),
                  h("td", { class: "num" }, String(t.currentAttemptId)),
                  h(
                    "td",
                    { class: "num" },
                    t.startedAtMs ? formatDuration(now - t.startedAtMs) : "—",
                  ),
                  h("td", { class: "col-usage" }, taskUsageCell(t.resourceUsage, t.usageHistory)),
                )
              ),
            ),
          ),
        ),
      ),
      h(
        "div",
        { class: "span-all" },
        card(
          `Recent attempts (${recent.length})`,
          h(
            "table",
            { class: "table recent-attempts-table" },
            head("Task", "Attempt", "State", "Exit", "Ended", "Duration", "Peak memory", "Error"),
            h(
              "tbody",
              null,
              recent.length === 0
                ? emptyRow(8, "No finished attempts on this worker yet")
                : recent.map((r) => {
                  const a = r.attempt!;
                  const dur = elapsed(a.startedAtMs, a.finishedAtMs, now);
                  return h(
                    "tr",
                    { class: "attempt-row", "data-task-id": r.taskId },
                    h("td", null, link(jobHref(r.jobId), r.taskId)),
                    h("td", { class: "num" }, String(a.attemptId)),
                    h("td", null, badge(taskStateName(a.state))),
                    h("td", { class: "num" }, a.finishedAtMs ? String(a.exitCode) : "—"),
                    h("td", null, relTime(a.finishedAtMs, now)),
                    h("td", { class: "num" }, dur === undefined ? "—" : formatDuration(dur)),
                    h(
                      "td",
                      { class: "num" },
                      a.peakMemoryBytes ? formatBytes(a.peakMemoryBytes) : "—",
                    ),
                    h("td", { class: "col-error" }, a.error),
                  );
                }),
            ),
          ),
        ),
      ),
    );
  }

  const poller = new Poller(
    async (signal) => {
      try {
        const res = await env.api.getWorkerStatus({ workerId }, { signal });
        replace(alertSlot);
        render(res.worker!, res.tasks, res.recentAttempts);
      } catch (e) {
        if (signal.aborted) throw e;
        const notFound = ConnectError.from(e).code === Code.NotFound;
        replace(
          alertSlot,
          errorBox(
            notFound
              ? `Worker ${workerId} not found (it may have been removed)`
              : `GetWorkerStatus failed: ${errorMessage(e)}`,
          ),
        );
        throw e;
      }
    },
    DETAIL_INTERVAL_MS,
    env.onStatus,
  );
  poller.start();
  return { el, dispose: () => poller.stop() };
}
