/**
 * Jobs tab: the job tree of one ListJobs page, with state filter, id-prefix filter, sortable
 * columns and paging. Refreshes every 5 s.
 * @module
 */
import { JobState, type JobStatus } from "../../rpc/gen/iris/v1/types_pb.ts";
import {
  badge,
  type Column,
  emptyRow,
  errorBox,
  nextSort,
  relTime,
  sortableHead,
  type SortState,
} from "./components.ts";
import { type El, h, on, replace, setStyle } from "./dom.ts";
import {
  elapsed,
  formatDuration,
  jobStateName,
  leafName,
  stateLabel,
  taskCountEntries,
} from "./format.ts";
import type { Page, PageEnv } from "./page.ts";
import { errorMessage, LIST_INTERVAL_MS, Poller } from "./poll.ts";
import type { ControllerApi } from "./rpc.ts";
import { jobHref } from "./routes.ts";
import { buildJobTree, flattenTree, parentIds, sortTree } from "./tree.ts";

const PAGE_SIZES = [25, 50, 100, 200];

const STATE_FILTERS: ReadonlyArray<readonly [string, readonly JobState[]]> = [
  ["all states", []],
  ["active", [JobState.PENDING, JobState.BUILDING, JobState.RUNNING]],
  ["pending", [JobState.PENDING]],
  ["building", [JobState.BUILDING]],
  ["running", [JobState.RUNNING]],
  ["succeeded", [JobState.SUCCEEDED]],
  ["failed", [JobState.FAILED]],
  ["killed", [JobState.KILLED]],
  ["worker failed", [JobState.WORKER_FAILED]],
  ["unschedulable", [JobState.UNSCHEDULABLE]],
];

/** Display order used when sorting by state: active states first. */
const STATE_RANK: readonly JobState[] = [
  JobState.RUNNING,
  JobState.BUILDING,
  JobState.PENDING,
  JobState.UNSCHEDULABLE,
  JobState.FAILED,
  JobState.WORKER_FAILED,
  JobState.KILLED,
  JobState.SUCCEEDED,
];

const COLUMNS: readonly Column[] = [
  { key: "name", label: "Job", class: "col-name" },
  { key: "state", label: "State", class: "col-state" },
  { key: "tasks", label: "Tasks", class: "col-tasks" },
  { key: "user", label: "User", class: "col-user" },
  { key: "age", label: "Age", class: "col-age" },
  { key: "duration", label: "Duration", class: "col-duration" },
];

/** List settings survive navigating to a job and back. */
const view = {
  offset: 0,
  limit: 50,
  prefix: "",
  stateFilter: 0,
  sort: { key: "age", dir: "asc" } as SortState,
  collapsed: new Set<string>(),
};

function sortKey(key: string, now: number): (j: JobStatus) => string | number {
  switch (key) {
    case "name":
      return (j) => j.jobId;
    case "state":
      return (j) => {
        const i = STATE_RANK.indexOf(j.state);
        return i < 0 ? STATE_RANK.length : i;
      };
    case "tasks":
      return (j) => j.taskCount;
    case "user":
      return (j) => j.user;
    case "duration":
      return (j) => elapsed(j.startedAtMs, j.finishedAtMs, now) ?? -1;
    default: // age: youngest first when ascending
      return (j) => now - (j.submittedAtMs || 0);
  }
}

/** Tasks cell: a stacked bar plus "2 running · 1 pending". */
export function taskCounts(job: JobStatus): El {
  const entries = taskCountEntries(job.taskStateCounts);
  const total = job.taskCount || entries.reduce((s, [, n]) => s + n, 0);
  const bar = h("div", { class: "stackbar", "aria-hidden": "true" });
  for (const [state, n] of entries) {
    bar.appendChild(
      setStyle(h("span", { class: `seg state-${state}` }), {
        width: `${total ? (100 * n) / total : 0}%`,
      }),
    );
  }
  return h(
    "div",
    { class: "task-counts" },
    bar,
    h(
      "span",
      { class: "tc-list" },
      entries.length === 0 ? h("span", { class: "muted" }, `${total} tasks`) : entries.map((
        [state, n],
        i,
      ) => [
        i > 0 ? h("span", { class: "sep" }, "·") : null,
        h("span", { class: `tc tc-${state}`, "data-state": state }, `${n} ${stateLabel(state)}`),
      ]),
    ),
  );
}

/** Builds the Jobs page and starts its refresh loop. */
export function jobsPage(env: PageEnv<ControllerApi>): Page {
  env.setTitle("Jobs");
  let jobs: JobStatus[] = [];
  let total = 0;
  let loaded = false;

  const countEl = h("span", { class: "muted count" });
  const alertSlot = h("div", { class: "alert-slot" });
  const tbody = h("tbody");
  const table = h("table", { class: "table jobs-table" }, tbody);
  const pagerText = h("span", { class: "pager-text" });

  const prefixInput = h("input", {
    type: "search",
    class: "input filter",
    placeholder: "Filter by id prefix, e.g. /alice/",
    "aria-label": "Job id prefix",
    value: view.prefix,
  });
  let debounce: ReturnType<typeof setTimeout> | undefined;
  on(prefixInput, "input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      view.prefix = prefixInput.value.trim();
      view.offset = 0;
      poller.kick();
    }, 300);
  });

  const stateSelect = h(
    "select",
    { class: "input", "aria-label": "State filter" },
    STATE_FILTERS.map(([label], i) =>
      h("option", { value: i, selected: i === view.stateFilter }, label)
    ),
  );
  on(stateSelect, "change", () => {
    view.stateFilter = Number(stateSelect.value);
    view.offset = 0;
    poller.kick();
  });

  const sizeSelect = h(
    "select",
    { class: "input page-size", "aria-label": "Page size" },
    PAGE_SIZES.map((n) => h("option", { value: n, selected: n === view.limit }, `${n} / page`)),
  );
  on(sizeSelect, "change", () => {
    view.limit = Number(sizeSelect.value);
    view.offset = 0;
    poller.kick();
  });

  const prevBtn = on(
    h("button", { type: "button", class: "btn", "aria-label": "Previous page" }, "‹ Prev"),
    "click",
    () => {
      view.offset = Math.max(0, view.offset - view.limit);
      poller.kick();
    },
  );
  const nextBtn = on(
    h("button", { type: "button", class: "btn", "aria-label": "Next page" }, "Next ›"),
    "click",
    () => {
      if (view.offset + view.limit < total) view.offset += view.limit;
      poller.kick();
    },
  );
  const expandBtn = on(
    h("button", { type: "button", class: "btn" }, "Collapse all"),
    "click",
    () => {
      if (view.collapsed.size > 0) view.collapsed.clear();
      else for (const id of parentIds(buildJobTree(jobs))) view.collapsed.add(id);
      render();
    },
  );

  const el = h(
    "div",
    { class: "page page-jobs" },
    h(
      "div",
      { class: "toolbar" },
      h("h1", null, "Jobs"),
      countEl,
      h("div", { class: "spacer" }),
      prefixInput,
      stateSelect,
      expandBtn,
    ),
    alertSlot,
    h("div", { class: "card card-flush" }, table),
    h(
      "div",
      { class: "pager" },
      sizeSelect,
      h("div", { class: "spacer" }),
      pagerText,
      prevBtn,
      nextBtn,
    ),
  );

  function render(): void {
    const now = Date.now();
    const tree = sortTree(buildJobTree(jobs), sortKey(view.sort.key, now), view.sort.dir);
    const rows = flattenTree(tree, view.collapsed);
    const head = sortableHead(COLUMNS, view.sort, (key) => {
      view.sort = nextSort(view.sort, key, "asc");
      render();
    });
    table.querySelector("thead")?.remove();
    table.prepend(head);
    replace(
      tbody,
      rows.length === 0
        ? emptyRow(
          COLUMNS.length,
          !loaded ? "Loading…" : total === 0 ? "No jobs" : "No jobs on this page",
        )
        : rows.map((r) => {
          const j = r.job;
          const state = jobStateName(j.state);
          const toggle = r.childCount > 0
            ? on(
              h("button", {
                type: "button",
                class: "tree-toggle",
                "aria-expanded": r.expanded ? "true" : "false",
                "aria-label": r.expanded ? "Collapse" : "Expand",
                title: `${r.childCount} child job${r.childCount === 1 ? "" : "s"}`,
              }, r.expanded ? "▾" : "▸"),
              "click",
              () => {
                if (view.collapsed.has(j.jobId)) view.collapsed.delete(j.jobId);
                else view.collapsed.add(j.jobId);
                render();
              },
            )
            : h("span", { class: "tree-spacer" });
          const name = r.depth > 0 ? leafName(j.jobId) : j.jobId;
          const reason = j.pendingReason?.message &&
              (j.state === JobState.PENDING || j.state === JobState.UNSCHEDULABLE)
            ? h("div", { class: "pending-reason" }, j.pendingReason.message)
            : null;
          const error = j.error && !reason ? h("div", { class: "row-error" }, j.error) : null;
          const nameCell = setStyle(
            h(
              "div",
              { class: "name-cell" },
              toggle,
              h(
                "div",
                { class: "name-main" },
                h("a", { href: jobHref(j.jobId), class: "job-link", title: j.jobId }, name),
                r.childCount > 0 && !r.expanded
                  ? h("span", { class: "muted child-count" }, ` +${r.childCount}`)
                  : null,
                reason,
                error,
              ),
            ),
            { "padding-left": `${r.depth * 20}px` },
          );
          const dur = elapsed(j.startedAtMs, j.finishedAtMs, now);
          return h(
            "tr",
            {
              class: `job-row depth-${Math.min(r.depth, 6)}`,
              "data-job-id": j.jobId,
              "data-state": state,
              "data-depth": r.depth,
            },
            h("td", { class: "col-name" }, nameCell),
            h("td", { class: "col-state" }, badge(state)),
            h("td", { class: "col-tasks" }, taskCounts(j)),
            h("td", { class: "col-user" }, j.user || "—"),
            h("td", { class: "col-age" }, relTime(j.submittedAtMs, now)),
            h("td", { class: "col-duration num" }, dur === undefined ? "—" : formatDuration(dur)),
          );
        }),
    );
    expandBtn.textContent = view.collapsed.size > 0 ? "Expand all" : "Collapse all";
    countEl.textContent = `${total} job${total === 1 ? "" : "s"}`;
    const first = total === 0 ? 0 : view.offset + 1;
    const last = Math.min(total, view.offset + jobs.length);
    pagerText.textContent = `${first}–${last} of ${total}`;
    prevBtn.disabled = view.offset === 0;
    nextBtn.disabled = view.offset + view.limit >= total;
  }

  render();
  const poller = new Poller(
    async (signal) => {
      try {
        const res = await env.api.listJobs({
          prefix: view.prefix,
          states: [...(STATE_FILTERS[view.stateFilter]?.[1] ?? [])],
          limit: view.limit,
          offset: view.offset,
        }, { signal });
        jobs = res.jobs;
        total = res.totalCount;
        loaded = true;
        if (jobs.length === 0 && view.offset > 0 && total > 0) {
          view.offset = Math.max(0, Math.floor((total - 1) / view.limit) * view.limit);
          poller.kick();
        }
        replace(alertSlot);
        render();
      } catch (e) {
        if (!signal.aborted) replace(alertSlot, errorBox(`ListJobs failed: ${errorMessage(e)}`));
        throw e;
      }
    },
    LIST_INTERVAL_MS,
    env.onStatus,
  );
  poller.start();

  return {
    el,
    dispose() {
      clearTimeout(debounce);
      poller.stop();
    },
  };
}
