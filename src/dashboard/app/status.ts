/**
 * Status tab: controller health, version, uptime, counts, memory and recent log lines.
 * GetControllerStatus every 5 s.
 * @module
 */
import type { GetControllerStatusResponse } from "../../rpc/gen/iris/v1/controller_pb.ts";
import { badge, card, errorBox, metricCard } from "./components.ts";
import { h, replace } from "./dom.ts";
import { formatBytes, formatDateTime, formatDuration } from "../../format.ts";
import { LogView } from "./logview.ts";
import type { Page, PageEnv } from "./page.ts";
import { errorMessage, LIST_INTERVAL_MS, Poller } from "./poll.ts";
import type { ControllerApi } from "./rpc.ts";

/** Builds the Status page and starts its refresh loop. */
export function statusPage(env: PageEnv<ControllerApi>): Page {
  env.setTitle("Status");
  const alertSlot = h("div", { class: "alert-slot" });
  const metrics = h("div", { class: "metrics" });
  const logs = new LogView("No controller log lines");
  const el = h(
    "div",
    { class: "page page-status" },
    h("div", { class: "toolbar" }, h("h1", null, "Controller status")),
    alertSlot,
    metrics,
    card("Recent controller logs", logs.el),
  );
  let lastLogs: readonly string[] = [];

  function render(st: GetControllerStatusResponse): void {
    const now = Date.now();
    replace(
      metrics,
      metricCard("Health", badge(st.healthy ? "healthy" : "unhealthy"), st.statusMessage || null),
      metricCard("Version", st.version || "—"),
      metricCard(
        "Uptime",
        st.startedAtMs ? formatDuration(now - st.startedAtMs) : "—",
        st.startedAtMs ? `since ${formatDateTime(st.startedAtMs)}` : null,
      ),
      metricCard("Jobs", String(st.jobCount)),
      metricCard("Tasks", String(st.taskCount)),
      metricCard("Workers", String(st.workerCount)),
      metricCard("Memory (RSS)", formatBytes(st.rssBytes)),
    );
    if (
      st.recentLogs.length !== lastLogs.length || st.recentLogs.some((l, i) => l !== lastLogs[i])
    ) {
      lastLogs = st.recentLogs;
      logs.set(
        st.recentLogs.map((text) => ({
          text,
          stream: /\b(error|fatal|panic)\b/i.test(text) ? "stderr" : "stdout",
        })),
      );
    }
  }

  const poller = new Poller(
    async (signal) => {
      try {
        const st = await env.api.getControllerStatus({}, { signal });
        replace(alertSlot);
        render(st);
      } catch (e) {
        if (!signal.aborted) {
          replace(
            alertSlot,
            errorBox(`GetControllerStatus failed: ${errorMessage(e)}`),
          );
        }
        throw e;
      }
    },
    LIST_INTERVAL_MS,
    env.onStatus,
  );
  poller.start();
  return { el, dispose: () => poller.stop() };
}
