/**
 * Entry point of the worker dashboard (served by each worker at its root, bundled into
 * `/app.js`): gauges of its tasks' and its host's CPU and memory (Health), the worker's tasks
 * with state, CPU and memory (ListTasks + Health, every 5 s) and
 * one task's status, usage sparklines and logs (GetTaskStatus every 2 s, FetchTaskLogs every
 * 1 s).
 * @module
 */
import { deviceGaugeRows } from "./devices.ts";
import type { WorkerTaskInfo } from "../../rpc/gen/iris/v1/worker_pb.ts";
import { create } from "@bufbuild/protobuf";
import {
  type TaskResourceUsage,
  TaskResourceUsageSchema,
  TaskState,
} from "../../rpc/gen/iris/v1/types_pb.ts";
import {
  badge,
  card,
  emptyRow,
  errorBox,
  head,
  infoList,
  link,
  metricCard,
  relTime,
} from "./components.ts";
import { type El, h, on, replace } from "./dom.ts";
import { elapsed, jobIdOfTask, sortBy, taskStateName } from "./format.ts";
import { formatBytes, formatCpu, formatDateTime, formatDuration } from "../../format.ts";
import { START_POSITION, takeNewLines } from "./logs.ts";
import { LogView } from "./logview.ts";
import type { Page, PageEnv } from "./page.ts";
import {
  DETAIL_INTERVAL_MS,
  errorMessage,
  LIST_INTERVAL_MS,
  LOG_INTERVAL_MS,
  Poller,
} from "./poll.ts";
import { type WorkerApi, workerApi } from "./rpc.ts";
import { taskUsageCell } from "./sparkline.ts";
import {
  gaugeRow,
  HOST_NOTE,
  hostCpuGauge,
  hostMemoryGauge,
  taskCpuGauge,
  taskMemoryGauge,
} from "./host.ts";
import { parseWorkerRoute, workerHref, type WorkerRoute, workerRouteHash } from "./routes.ts";
import { startShell } from "./shell.ts";

const ACTIVE = new Set([
  TaskState.PENDING,
  TaskState.ASSIGNED,
  TaskState.BUILDING,
  TaskState.RUNNING,
]);

function taskHref(taskId: string): string {
  return workerRouteHash({ page: "task", id: taskId });
}

function tasksPage(env: PageEnv<WorkerApi>): Page {
  env.setTitle("Tasks");
  const alertSlot = h("div", { class: "alert-slot" });
  const title = h("h1", null, "Worker");
  const back = h("span", { class: "controller-link-slot" });
  const metrics = h("div", { class: "metrics" });
  const gauges = h("div", { class: "gauges" });
  const tbody = h("tbody", null, emptyRow(10, "Loading…"));
  const el = h(
    "div",
    { class: "page page-worker-tasks" },
    h("div", { class: "toolbar" }, title, h("div", { class: "spacer" }), back),
    alertSlot,
    metrics,
    card("Resources", gauges),
    card(
      "Tasks",
      h(
        "table",
        { class: "table worker-tasks-table" },
        head(
          "Task",
          "Attempt",
          "State",
          "PID",
          "CPU",
          "Memory",
          "Peak memory",
          "Started",
          "Duration",
          "Exit / error",
        ),
        tbody,
      ),
    ),
  );

  const poller = new Poller(
    async (signal) => {
      try {
        const [health, list] = await Promise.all([
          env.api.health({}, { signal }),
          env.api.listTasks({}, { signal }),
        ]);
        const now = Date.now();
        title.textContent = `Worker ${health.workerId}`;
        env.setTitle(health.workerId);
        // Back to this worker's page on the controller's dashboard.
        const base = /^https?:\/\/[A-Za-z0-9.:[\]-]+\/?$/.test(health.controllerUrl)
          ? health.controllerUrl.replace(/\/+$/, "")
          : "";
        replace(
          back,
          base
            ? h(
              "a",
              {
                class: "controller-link",
                id: "controller-link",
                href: `${base}/${workerHref(health.workerId)}`,
                rel: "noopener noreferrer",
              },
              "Controller dashboard ↗",
            )
            : null,
        );
        const active = list.tasks.filter((t) => ACTIVE.has(t.state));
        const mem = active.reduce((s, t) => s + t.memoryBytes, 0);
        const cpu = active.reduce((s, t) => s + t.cpuMillicores, 0);
        replace(
          metrics,
          metricCard("Health", badge(health.healthy ? "healthy" : "unhealthy")),
          metricCard("Uptime", formatDuration(health.uptimeMs)),
          metricCard("Running tasks", String(health.runningTasks)),
          metricCard("Task CPU", formatCpu(cpu), "between the last two samples"),
          metricCard(
            "Task memory",
            formatBytes(mem),
            `${active.length} active task${active.length === 1 ? "" : "s"}`,
          ),
        );
        const s = health.snapshot;
        const none = () => h("span", { class: "muted" }, "no data");
        replace(
          gauges,
          gaugeRow("Task CPU", taskCpuGauge(s, false, none())),
          gaugeRow("Task memory", taskMemoryGauge(s, false, none())),
          gaugeRow("Host CPU", hostCpuGauge(s, false)),
          gaugeRow("Host memory", hostMemoryGauge(s, false)),
          ...deviceGaugeRows(s),
          h("p", { class: "muted host-note" }, HOST_NOTE),
        );
        const tasks = sortBy(
          list.tasks,
          (t) => (ACTIVE.has(t.state) ? 1e15 : 0) + (t.startedAtMs || 0),
          "desc",
        );
        replace(
          tbody,
          tasks.length === 0
            ? emptyRow(10, "No tasks on this worker")
            : tasks.map((t) => taskRow(t, now)),
        );
        replace(alertSlot);
      } catch (e) {
        if (!signal.aborted) replace(alertSlot, errorBox(`Worker RPC failed: ${errorMessage(e)}`));
        throw e;
      }
    },
    LIST_INTERVAL_MS,
    env.onStatus,
  );
  poller.start();
  return { el, dispose: () => poller.stop() };
}

/** Samples the task page keeps for its sparklines (one per 2 s refresh). */
const USAGE_SAMPLES = 60;

function usageSample(t: WorkerTaskInfo): TaskResourceUsage {
  return create(TaskResourceUsageSchema, {
    taskId: t.taskId,
    attemptId: t.attemptId,
    timestampMs: Date.now(),
    cpuMillicores: t.cpuMillicores,
    memoryBytes: t.memoryBytes,
    peakMemoryBytes: t.peakMemoryBytes,
  });
}

function taskRow(t: WorkerTaskInfo, now: number): El {
  const state = taskStateName(t.state);
  const dur = elapsed(t.startedAtMs, t.finishedAtMs, now);
  return h(
    "tr",
    { class: "task-row", "data-task-id": t.taskId, "data-state": state },
    h("td", null, link(taskHref(t.taskId), t.taskId, "task-link")),
    h("td", { class: "num" }, String(t.attemptId)),
    h("td", null, badge(state)),
    h("td", { class: "num" }, t.pid ? String(t.pid) : "—"),
    h(
      "td",
      { class: "num usage-cpu" },
      ACTIVE.has(t.state) ? formatCpu(t.cpuMillicores) : "—",
    ),
    h("td", { class: "num" }, t.memoryBytes ? formatBytes(t.memoryBytes) : "—"),
    h("td", { class: "num" }, t.peakMemoryBytes ? formatBytes(t.peakMemoryBytes) : "—"),
    h("td", null, relTime(t.startedAtMs, now)),
    h("td", { class: "num" }, dur === undefined ? "—" : formatDuration(dur)),
    h(
      "td",
      { class: "col-error" },
      t.finishedAtMs
        ? h("span", { class: "num" }, `exit ${t.exitCode}${t.signal ? ` (${t.signal})` : ""}`)
        : null,
      t.error ? h("div", { class: "error-text" }, t.error) : null,
    ),
  );
}

function taskPage(env: PageEnv<WorkerApi>, taskId: string): Page {
  env.setTitle(taskId);
  const alertSlot = h("div", { class: "alert-slot" });
  const badgeSlot = h("span", { class: "title-badge" });
  const info = h("div", { class: "detail-grid" });
  const logs = new LogView();
  const logError = h("div", { class: "alert-slot" });
  const followBox = h("input", { type: "checkbox", checked: true, id: "log-follow" });
  on(followBox, "change", () => {
    if (followBox.checked) logPoller.kick();
  });
  const el = h(
    "div",
    { class: "page page-worker-task" },
    h(
      "nav",
      { class: "breadcrumb" },
      link("#/tasks", "Tasks"),
      h("span", { class: "crumb-sep" }, "/"),
      h("span", null, taskId),
    ),
    h("div", { class: "toolbar" }, h("h1", null, taskId), badgeSlot),
    alertSlot,
    info,
    card(
      "Logs",
      h(
        "div",
        { class: "log-toolbar" },
        h("label", { class: "check", for: "log-follow" }, followBox, " Follow"),
      ),
      logError,
      logs.el,
    ),
  );
  let attemptId: number | undefined;
  let pos = START_POSITION;
  const history: TaskResourceUsage[] = [];

  const poller = new Poller(
    async (signal) => {
      try {
        const t = (await env.api.getTaskStatus({ taskId }, { signal })).task;
        if (!t) {
          replace(alertSlot, errorBox(`Task ${taskId} not found on this worker`));
          return;
        }
        const now = Date.now();
        const first = attemptId === undefined;
        if (!first && attemptId !== t.attemptId) {
          pos = START_POSITION; // A new attempt: start its logs from the top.
          logs.clear();
        }
        attemptId = t.attemptId;
        if (first) logPoller.kick();
        // The worker keeps no history: this page keeps the samples it has seen.
        if (ACTIVE.has(t.state)) {
          history.push(usageSample(t));
          if (history.length > USAGE_SAMPLES) history.shift();
        }
        replace(alertSlot);
        replace(badgeSlot, badge(taskStateName(t.state)));
        const dur = elapsed(t.startedAtMs, t.finishedAtMs, now);
        replace(
          info,
          card(
            "Task",
            infoList([
              ["Job", jobIdOfTask(t.taskId)],
              ["Attempt", String(t.attemptId)],
              ["State", badge(taskStateName(t.state))],
              ["PID", t.pid ? String(t.pid) : ""],
              ["Started", t.startedAtMs ? formatDateTime(t.startedAtMs) : ""],
              ["Finished", t.finishedAtMs ? formatDateTime(t.finishedAtMs) : ""],
              ["Duration", dur === undefined ? "" : formatDuration(dur)],
              [
                "Exit code",
                t.finishedAtMs ? `${t.exitCode}${t.signal ? ` (${t.signal})` : ""}` : "",
              ],
              ["Error", t.error ? h("div", { class: "error-text" }, t.error) : ""],
            ]),
          ),
          card(
            "Resources",
            ACTIVE.has(t.state) ? taskUsageCell(usageSample(t), history) : null,
            infoList([
              ["CPU", formatCpu(t.cpuMillicores)],
              ["Memory", formatBytes(t.memoryBytes)],
              ["Peak memory", formatBytes(t.peakMemoryBytes)],
              [
                "Ports",
                Object.keys(t.ports).length
                  ? Object.entries(t.ports).map(([k, v]) => `${k}=${v}`).join(", ")
                  : "",
              ],
            ]),
          ),
        );
      } catch (e) {
        if (!signal.aborted) {
          replace(alertSlot, errorBox(`GetTaskStatus failed: ${errorMessage(e)}`));
        }
        throw e;
      }
    },
    DETAIL_INTERVAL_MS,
    env.onStatus,
  );

  const logPoller = new Poller(async (signal) => {
    if (!followBox.checked || attemptId === undefined) return;
    try {
      const res = await env.api.fetchTaskLogs({
        taskId,
        attemptId,
        sinceMs: pos.lastTs,
        maxLines: 1000,
      }, { signal });
      const next = takeNewLines(res.lines, pos);
      pos = next.pos;
      logs.append(
        next.fresh.map((l) => ({ timestampMs: l.timestampMs, stream: l.stream, text: l.text })),
        followBox.checked,
      );
      replace(logError);
    } catch (e) {
      if (!signal.aborted) replace(logError, errorBox(`FetchTaskLogs failed: ${errorMessage(e)}`));
      throw e;
    }
  }, LOG_INTERVAL_MS);

  poller.start();
  logPoller.start();
  return {
    el,
    dispose() {
      poller.stop();
      logPoller.stop();
    },
  };
}

startShell<WorkerRoute, WorkerApi>({
  product: "worker",
  api: workerApi(location.origin),
  parse: parseWorkerRoute,
  mount: (route, env) => route.page === "task" ? taskPage(env, route.id) : tasksPage(env),
  tabs: [{ label: "Tasks", href: "#/tasks", active: () => true }],
});
