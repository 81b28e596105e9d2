/**
 * Users tab: per user, their jobs (total and by state), active tasks in their band and as BATCH,
 * resources held against their budget, and their highest band. ListJobs (user counts) and
 * ListUserBudgets every 5 s.
 * @module
 */
import type { UserBudgetInfo, UserJobCounts } from "../../rpc/gen/iris/v1/controller_pb.ts";
import { PriorityBand } from "../../rpc/gen/iris/v1/types_pb.ts";
import { badge, emptyRow, errorBox, head, link } from "./components.ts";
import { h, replace } from "./dom.ts";
import { formatBytes, formatCpu } from "../../format.ts";
import type { Page, PageEnv } from "./page.ts";
import { errorMessage, LIST_INTERVAL_MS, Poller } from "./poll.ts";
import type { ControllerApi } from "./rpc.ts";
import { routeHash } from "./routes.ts";

const BAND_NAMES: Record<number, string> = {
  [PriorityBand.PRODUCTION]: "production",
  [PriorityBand.INTERACTIVE]: "interactive",
  [PriorityBand.BATCH]: "batch",
};

/** "used / max", or "used" when unlimited. */
function against(used: string, max: number, maxText: string): string {
  return max > 0 ? `${used} / ${maxText}` : used;
}

/** One row per user seen in jobs or budgets (budget entry "*" shown as the default). */
export function userRows(
  counts: readonly UserJobCounts[],
  budgets: readonly UserBudgetInfo[],
): { user: string; jobs?: UserJobCounts; budget?: UserBudgetInfo }[] {
  const byUser = new Map<string, { user: string; jobs?: UserJobCounts; budget?: UserBudgetInfo }>();
  for (const c of counts) byUser.set(c.user, { user: c.user, jobs: c });
  for (const b of budgets) byUser.set(b.user, { ...byUser.get(b.user), user: b.user, budget: b });
  return [...byUser.values()].sort((a, b) => a.user < b.user ? -1 : a.user > b.user ? 1 : 0);
}

/** Builds the Users page and starts its refresh loop. */
export function usersPage(env: PageEnv<ControllerApi>): Page {
  env.setTitle("Users");
  const alertSlot = h("div", { class: "alert-slot" });
  const count = h("span", { class: "muted count" });
  const tbody = h("tbody", null, emptyRow(8, "Loading…"));
  const el = h(
    "div",
    { class: "page page-users" },
    h("div", { class: "toolbar" }, h("h1", null, "Users"), count),
    alertSlot,
    h(
      "div",
      { class: "card card-flush" },
      h(
        "table",
        { class: "table users-table" },
        head("User", "Jobs", "Active tasks", "CPU", "Memory", "Accelerators", "Band", "Budget"),
        tbody,
      ),
    ),
  );

  function render(rows: ReturnType<typeof userRows>): void {
    count.textContent = `${rows.length} user${rows.length === 1 ? "" : "s"}`;
    replace(
      tbody,
      rows.length === 0 ? emptyRow(8, "No users with jobs or budgets") : rows.map((r) => {
        const b = r.budget;
        const states = Object.entries(r.jobs?.stateCounts ?? {}).filter(([, n]) => n > 0);
        return h(
          "tr",
          { class: "user-row", "data-user": r.user },
          h(
            "td",
            null,
            r.user === "*"
              ? h("em", null, "* (everyone else)")
              : link(routeHash({ page: "jobs", query: { user: r.user } }), r.user),
          ),
          h(
            "td",
            null,
            h("span", { class: "num" }, String(r.jobs?.total ?? 0)),
            " ",
            h("span", { class: "chips inline" }, states.map(([s, n]) => badge(s, `${n} ${s}`))),
          ),
          h(
            "td",
            { class: "num" },
            `${b?.activeTasks ?? 0}${b?.activeBatchTasks ? ` (+${b.activeBatchTasks} batch)` : ""}`,
          ),
          h(
            "td",
            { class: "num" },
            against(
              formatCpu(b?.usedCpuMillicores ?? 0),
              b?.maxCpuMillicores ?? 0,
              formatCpu(b?.maxCpuMillicores),
            ),
          ),
          h(
            "td",
            { class: "num" },
            against(
              formatBytes(b?.usedMemoryBytes ?? 0),
              b?.maxMemoryBytes ?? 0,
              formatBytes(b?.maxMemoryBytes),
            ),
          ),
          h(
            "td",
            { class: "num" },
            against(
              String(b?.usedAccelerators ?? 0),
              b?.maxAccelerators ?? 0,
              String(b?.maxAccelerators ?? 0),
            ),
          ),
          h("td", null, b?.maxBand ? badge(BAND_NAMES[b.maxBand] ?? "any") : "any"),
          h(
            "td",
            null,
            b?.source ? `${b.source}${b.maxTasks ? `, max ${b.maxTasks} tasks` : ""}` : "none",
          ),
        );
      }),
    );
  }

  const poller = new Poller(
    async (signal) => {
      try {
        const [jobs, budgets] = await Promise.all([
          env.api.listJobs({ limit: 1, includeUserCounts: true }, { signal }),
          env.api.listUserBudgets({}, { signal }),
        ]);
        replace(alertSlot);
        render(userRows(jobs.users, budgets.budgets));
      } catch (e) {
        if (!signal.aborted) replace(alertSlot, errorBox(`Users failed: ${errorMessage(e)}`));
        throw e;
      }
    },
    LIST_INTERVAL_MS,
    env.onStatus,
  );
  poller.start();
  return { el, dispose: () => poller.stop() };
}
