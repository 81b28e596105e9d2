/**
 * Jobs tab: top-level jobs paged and sorted by the server (ListJobs roots_only), the children of
 * expanded parents (ListJobs parent_job_id), a flat list when filtered by state or name, a user
 * filter with per-user chips (include_user_counts). Refreshes every 5 s.
 * @module
 */
import type { UserJobCounts } from "../../rpc/gen/iris/v1/controller_pb.ts";
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
import { type El, h, on, replace, replaceHash, setStyle } from "./dom.ts";
import { elapsed, jobStateName, leafName, stateLabel, taskCountEntries } from "./format.ts";
import { formatDuration } from "../../format.ts";
import type { Page, PageEnv } from "./page.ts";
import { errorMessage, LIST_INTERVAL_MS, Poller } from "./poll.ts";
import type { ControllerApi } from "./rpc.ts";
import { jobHref, routeHash } from "./routes.ts";

const PAGE_SIZES = [25, 50, 100, 200];

const STATE_FILTERS: ReadonlyArray<readonly [string, readonly JobState[]]> = [
  ["all states", []],
  ["active", [JobState.PENDING, JobState.BUILDING, JobState.RUNNING]],
  ["pending", [JobState.PENDING]],
  ["building", [JobState.BUILDING]],
  ["running", [JobState.RUNNING]],
  ["succeeded", [JobState.SUCCEEDED]],
  // What a user means by failed: the job did not succeed on its own (worker deaths and
  // scheduling timeouts included); "worker failed" below narrows it.
  ["failed", [JobState.FAILED, JobState.WORKER_FAILED, JobState.UNSCHEDULABLE]],
  ["killed", [JobState.KILLED]],
  ["worker failed", [JobState.WORKER_FAILED]],
  ["unschedulable", [JobState.UNSCHEDULABLE]],
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
  name: "",
  user: "",
  stateFilter: 0,
  sort: { key: "age", dir: "asc" } as SortState,
  collapsed: new Set<string>(),
};

/** Expanded parents whose children one refresh loads, at most (the rest show collapsed). */
const MAX_CHILD_FETCHES = 50;
/** Children shown per parent, at most. */
const CHILD_LIMIT = 200;
/** Users shown as summary chips (all of them are in the user filter). */
const USER_CHIPS = 8;

/** One visible row: a job at a depth of the tree. */
interface Row {
  readonly job: JobStatus;
  readonly depth: number;
  readonly expanded: boolean;
  /** Its children are loaded and shown. */
  readonly loaded: boolean;
}

/** The tree is server-paged by root; a filter by state or name switches to a flat list. */
function isFlat(): boolean {
  return view.name !== "" || view.stateFilter !== 0;
}

function flatten(
  roots: readonly JobStatus[],
  children: ReadonlyMap<string, JobStatus[]>,
): Row[] {
  const rows: Row[] = [];
  const walk = (jobs: readonly JobStatus[], depth: number) => {
    for (const job of jobs) {
      const kids = children.get(job.jobId);
      const expanded = job.hasChildren && !view.collapsed.has(job.jobId);
      rows.push({ job, depth, expanded, loaded: kids !== undefined });
      if (expanded && kids && depth < 20) walk(kids, depth + 1);
    }
  };
  walk(roots, 0);
  return rows;
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

const DEFAULT_SORT: SortState = { key: "age", dir: "asc" };

/** Applies a shared link's query (`#/jobs?user=alice&state=running&sort=name&dir=desc`). */
function applyQuery(query: Readonly<Record<string, string>>): void {
  const int = (v: string | undefined, fallback: number) =>
    v !== undefined && /^\d+$/.test(v) ? Number(v) : fallback;
  const state = STATE_FILTERS.findIndex(([label]) => label === query.state);
  view.user = query.user ?? "";
  view.name = query.name ?? "";
  view.stateFilter = Math.max(0, state);
  view.sort = {
    key: COLUMNS.some((c) => c.key === query.sort) ? query.sort! : DEFAULT_SORT.key,
    dir: query.dir === "desc" ? "desc" : query.dir === "asc" ? "asc" : DEFAULT_SORT.dir,
  };
  view.limit = PAGE_SIZES.includes(int(query.limit, 0)) ? int(query.limit, 0) : view.limit;
  view.offset = int(query.offset, 0);
}

/** The view as a query for the URL; defaults are left out. */
function viewQuery(): Record<string, string> {
  const q: Record<string, string> = {};
  if (view.user) q.user = view.user;
  if (view.stateFilter) q.state = STATE_FILTERS[view.stateFilter]?.[0] ?? "";
  if (view.name) q.name = view.name;
  if (view.sort.key !== DEFAULT_SORT.key || view.sort.dir !== DEFAULT_SORT.dir) {
    q.sort = view.sort.key;
    q.dir = view.sort.dir;
  }
  if (view.offset) q.offset = String(view.offset);
  if (view.limit !== 50) q.limit = String(view.limit);
  return q;
}

/**
 * Builds the Jobs page and starts its refresh loop. A route query sets the view; without one
 * the page keeps the view it had last time. The URL always shows the current view.
 */
export function jobsPage(
  env: PageEnv<ControllerApi>,
  query?: Readonly<Record<string, string>>,
): Page {
  env.setTitle("Jobs");
  if (query) applyQuery(query);
  let roots: JobStatus[] = [];
  let children = new Map<string, JobStatus[]>();
  let users: UserJobCounts[] = [];
  let total = 0;
  let loaded = false;

  const countEl = h("span", { class: "muted count" });
  const alertSlot = h("div", { class: "alert-slot" });
  const userStrip = h("div", { class: "user-strip", "aria-label": "Jobs per user" });
  const tbody = h("tbody");
  const table = h("table", { class: "table jobs-table" }, tbody);
  const pagerText = h("span", { class: "pager-text" });

  const nameInput = h("input", {
    type: "search",
    class: "input filter",
    placeholder: "Filter by name, e.g. /alice/train",
    "aria-label": "Job name filter",
    value: view.name,
  });
  let debounce: ReturnType<typeof setTimeout> | undefined;
  on(nameInput, "input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      view.name = nameInput.value.trim();
      view.offset = 0;
      poller.kick();
    }, 300);
  });

  const userSelect = h("select", { class: "input user-filter", "aria-label": "User filter" });
  on(userSelect, "change", () => setUser(userSelect.value));

  function setUser(user: string): void {
    view.user = user;
    view.offset = 0;
    renderUsers();
    poller.kick();
  }

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
      else {for (const r of flatten(roots, children)) {
          if (r.job.hasChildren) view.collapsed.add(r.job.jobId);
        }}
      render();
      poller.kick();
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
      nameInput,
      userSelect,
      stateSelect,
      expandBtn,
    ),
    userStrip,
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

  /** The user filter and one chip per busiest user: total, running, pending and failed jobs. */
  function renderUsers(): void {
    const all = users.reduce((n, u) => n + u.total, 0);
    const known = users.some((u) => u.user === view.user);
    replace(
      userSelect,
      h("option", { value: "", selected: view.user === "" }, `all users (${all})`),
      users.map((u) =>
        h("option", { value: u.user, selected: u.user === view.user }, `${u.user} (${u.total})`)
      ),
      view.user && !known ? h("option", { value: view.user, selected: true }, view.user) : null,
    );
    const top = [...users].sort((a, b) => b.total - a.total || a.user.localeCompare(b.user))
      .slice(0, USER_CHIPS);
    replace(
      userStrip,
      top.map((u) => {
        const n = (s: string) => u.stateCounts[s] ?? 0;
        const parts = [
          ["running", n("running") + n("building")],
          ["pending", n("pending")],
          ["failed", n("failed") + n("worker_failed") + n("unschedulable")],
        ] as const;
        return on(
          h(
            "button",
            {
              type: "button",
              class: `user-chip${u.user === view.user ? " active" : ""}`,
              "data-user": u.user,
              "aria-pressed": u.user === view.user ? "true" : "false",
              title: `Show only ${u.user}'s jobs`,
            },
            h("span", { class: "user-name" }, u.user || "—"),
            h("span", { class: "user-total" }, String(u.total)),
            parts.filter(([, c]) => c > 0).map(([state, c]) =>
              h("span", { class: `tc tc-${state}`, "data-state": state }, `${c} ${state}`)
            ),
          ),
          "click",
          () => setUser(u.user === view.user ? "" : u.user),
        );
      }),
    );
  }

  function render(): void {
    const now = Date.now();
    const rows = flatten(roots, children);
    const head = sortableHead(COLUMNS, view.sort, (key) => {
      view.sort = nextSort(view.sort, key, "asc");
      view.offset = 0;
      poller.kick();
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
          const kids = children.get(j.jobId);
          const toggle = j.hasChildren && !isFlat()
            ? on(
              h("button", {
                type: "button",
                class: "tree-toggle",
                "aria-expanded": r.expanded ? "true" : "false",
                "aria-label": r.expanded ? "Collapse" : "Expand",
                title: kids ? `${kids.length} child job${kids.length === 1 ? "" : "s"}` : "",
              }, r.expanded ? "▾" : "▸"),
              "click",
              () => {
                if (view.collapsed.has(j.jobId)) view.collapsed.delete(j.jobId);
                else view.collapsed.add(j.jobId);
                render();
                if (!children.has(j.jobId)) poller.kick();
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
                r.expanded && !r.loaded ? h("span", { class: "muted child-count" }, " …") : null,
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
            h(
              "td",
              { class: "col-user" },
              j.user
                ? on(
                  h(
                    "button",
                    { type: "button", class: "link-btn user-link", title: "Filter" },
                    j.user,
                  ),
                  "click",
                  () => setUser(j.user),
                )
                : "—",
            ),
            h("td", { class: "col-age" }, relTime(j.submittedAtMs, now)),
            h("td", { class: "col-duration num" }, dur === undefined ? "—" : formatDuration(dur)),
          );
        }),
    );
    expandBtn.textContent = view.collapsed.size > 0 ? "Expand all" : "Collapse all";
    expandBtn.hidden = isFlat();
    countEl.textContent = `${total} ${isFlat() ? "" : "top-level "}job${total === 1 ? "" : "s"}`;
    const first = total === 0 ? 0 : view.offset + 1;
    const last = Math.min(total, view.offset + roots.length);
    pagerText.textContent = `${first}–${last} of ${total}`;
    prevBtn.disabled = view.offset === 0;
    nextBtn.disabled = view.offset + view.limit >= total;
  }

  /** Loads the children of expanded parents, level by level, within MAX_CHILD_FETCHES calls. */
  async function loadChildren(
    parents: readonly JobStatus[],
    signal: AbortSignal,
  ): Promise<Map<string, JobStatus[]>> {
    const out = new Map<string, JobStatus[]>();
    let frontier = parents;
    let budget = MAX_CHILD_FETCHES;
    while (frontier.length > 0 && budget > 0) {
      const open = frontier.filter((j) => j.hasChildren && !view.collapsed.has(j.jobId))
        .slice(0, budget);
      budget -= open.length;
      const pages = await Promise.all(open.map((j) =>
        env.api.listJobs({
          parentJobId: j.jobId,
          sortBy: view.sort.key,
          descending: view.sort.dir === "desc",
          limit: CHILD_LIMIT,
        }, { signal })
      ));
      const next: JobStatus[] = [];
      open.forEach((j, i) => {
        const kids = pages[i]!.jobs;
        out.set(j.jobId, kids);
        next.push(...kids);
      });
      frontier = next;
    }
    return out;
  }

  render();
  const poller = new Poller(
    async (signal) => {
      replaceHash(routeHash({ page: "jobs", query: viewQuery() }));
      try {
        const res = await env.api.listJobs({
          nameContains: view.name,
          user: view.user,
          states: [...(STATE_FILTERS[view.stateFilter]?.[1] ?? [])],
          rootsOnly: !isFlat(),
          sortBy: view.sort.key,
          descending: view.sort.dir === "desc",
          limit: view.limit,
          offset: view.offset,
          includeUserCounts: true,
        }, { signal });
        const kids = isFlat() ? new Map() : await loadChildren(res.jobs, signal);
        roots = res.jobs;
        children = kids;
        users = res.users;
        total = res.totalCount;
        loaded = true;
        if (roots.length === 0 && view.offset > 0 && total > 0) {
          view.offset = Math.max(0, Math.floor((total - 1) / view.limit) * view.limit);
          poller.kick();
        }
        replace(alertSlot);
        renderUsers();
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
