/**
 * Job detail: spec summary, status, child jobs, tasks, a terminate button and live task logs.
 * Status refreshes every 2 s (GetJobStatus; ListTasks with usage history for jobs of at most 50
 * tasks; ListJobs for children); logs follow every 1 s (GetTaskLogs with a cursor).
 * @module
 */
import { gpuPeakNote } from "./devices.ts";
import { Code, ConnectError } from "@connectrpc/connect";
import { type JobStatus, PriorityBand, type TaskStatus } from "../../rpc/gen/iris/v1/types_pb.ts";
import {
  badge,
  card,
  chip,
  emptyRow,
  errorBox,
  head,
  infoList,
  link,
  relTime,
} from "./components.ts";
import { type Child, downloadText, type El, goHash, h, on, replace, setStyle } from "./dom.ts";
import {
  elapsed,
  formatConstraint,
  formatEntrypoint,
  formatResources,
  isTerminalJobState,
  jobStateName,
  leafName,
  priorityName,
  taskStateName,
} from "./format.ts";
import { formatBytes, formatDateTime, formatDuration } from "../../format.ts";
import { taskCounts } from "./jobs.ts";
import { LogView } from "./logview.ts";
import type { Page, PageEnv } from "./page.ts";
import { DETAIL_INTERVAL_MS, errorMessage, LOG_INTERVAL_MS, Poller } from "./poll.ts";
import type { ControllerApi } from "./rpc.ts";
import { jobHref, workerHref } from "./routes.ts";
import { buildJobTree, flattenTree, sortTree } from "./tree.ts";
import { taskUsageCell } from "./sparkline.ts";

const LOG_BATCH = 1000;
/** Jobs with at most this many tasks get per-task usage sparklines. */
const USAGE_HISTORY_MAX_TASKS = 50;

/** Builds the job detail page for `jobId` and starts its refresh loops. */
export function jobDetailPage(env: PageEnv<ControllerApi>, jobId: string): Page {
  env.setTitle(jobId);
  let job: JobStatus | undefined;
  let tasks: TaskStatus[] = [];
  let confirming = false;
  let notice: Child = null;

  const alertSlot = h("div", { class: "alert-slot" });
  const badgeSlot = h("span", { class: "title-badge" });
  const actions = h("div", { class: "actions" });
  const summary = h("div", { class: "detail-grid" });
  const childrenSlot = h("div");
  const tasksBody = h("tbody", null, emptyRow(9, "Loading…"));
  // `iris task profile` from the page: the latest profile taken here, or its error.
  const profileSlot = h("div", { class: "profile-slot" });
  let profiling = "";

  async function profile(taskId: string): Promise<void> {
    if (profiling) return;
    profiling = taskId;
    replace(profileSlot, h("p", { class: "muted" }, `Profiling ${taskId} for 5 s…`));
    try {
      const res = await env.api.profileTask({ taskId, seconds: 5 });
      const body = res.format === "text"
        ? h("pre", { class: "profile-text" }, new TextDecoder().decode(res.profile))
        : h(
          "p",
          null,
          `${res.method} profile (${res.format}, ${res.profile.length} bytes): fetch it with ` +
            `iris task profile ${taskId}`,
        );
      replace(
        profileSlot,
        card(
          `Profile of ${taskId} (${res.method})`,
          res.note ? h("p", { class: "muted" }, res.note) : "",
          body,
        ),
      );
    } catch (e) {
      replace(profileSlot, errorBox(`ProfileTask failed: ${errorMessage(e)}`));
    } finally {
      profiling = "";
    }
  }

  // Logs: the source is the whole job (all tasks) or one task id.
  let logSource = jobId;
  let cursor = 0;
  let substring = "";
  const logs = new LogView();
  const sourceSelect = h(
    "select",
    { class: "input", "aria-label": "Log source" },
    h("option", { value: jobId }, "All tasks"),
  );
  const followBox = h("input", { type: "checkbox", checked: true, id: "log-follow" });
  const filterInput = h("input", {
    type: "search",
    class: "input filter",
    placeholder: "Filter lines (substring)",
    "aria-label": "Log filter",
  });
  const logCount = h("span", { class: "muted" });
  const logError = h("div", { class: "alert-slot" });

  function resetLogs(): void {
    cursor = 0;
    logs.clear();
    logPoller.kick();
  }
  on(sourceSelect, "change", () => {
    logSource = sourceSelect.value;
    resetLogs();
  });
  let debounce: ReturnType<typeof setTimeout> | undefined;
  on(filterInput, "input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      substring = filterInput.value;
      resetLogs();
    }, 300);
  });
  on(followBox, "change", () => {
    if (followBox.checked) {
      logs.el.scrollTop = logs.el.scrollHeight;
      logPoller.kick();
    }
  });

  const el = h(
    "div",
    { class: "page page-job" },
    breadcrumb(jobId),
    h(
      "div",
      { class: "toolbar" },
      h("h1", { class: "job-title" }, jobId),
      badgeSlot,
      h("div", { class: "spacer" }),
      actions,
    ),
    alertSlot,
    summary,
    childrenSlot,
    card(
      "Tasks",
      h(
        "table",
        { class: "table tasks-table" },
        head(
          "#",
          "State",
          "Worker",
          "Attempts",
          "Exit",
          "Duration",
          "CPU / memory",
          "Error / reason",
          "",
        ),
        tasksBody,
      ),
    ),
    profileSlot,
    card(
      h("span", null, "Logs ", logCount),
      h(
        "div",
        { class: "log-toolbar" },
        sourceSelect,
        filterInput,
        h("label", { class: "check", for: "log-follow" }, followBox, " Follow"),
        on(
          h("button", { type: "button", class: "btn", id: "log-download" }, "Download"),
          "click",
          () => {
            const source = logSource === jobId ? leafName(jobId) : logSource.split("/").slice(-2)
              .join("-");
            downloadText(`${source}.log`, logs.text());
          },
        ),
      ),
      logError,
      logs.el,
    ),
  );

  /** Submits the job's spec again under a new name and opens the new job. */
  async function resubmit(): Promise<void> {
    const spec = job?.spec;
    if (!spec) return;
    const name = `${leafName(jobId).replace(/-r[0-9a-z]{6,}$/, "")}-r${Date.now().toString(36)}`;
    try {
      const res = await env.api.launchJob({
        spec: { ...spec, name, user: job!.user },
        requestId: crypto.randomUUID(),
      });
      goHash(jobHref(res.jobId));
    } catch (e) {
      notice = h(
        "span",
        { class: "notice notice-danger", role: "status" },
        `Resubmit failed: ${errorMessage(e)}`,
      );
      renderActions();
    }
  }

  function resubmitButton(): El {
    return on(
      h("button", {
        type: "button",
        class: "btn",
        id: "resubmit-btn",
        title: "Submit the same spec again as a new job",
      }, "Resubmit"),
      "click",
      () => void resubmit(),
    );
  }

  function renderActions(): void {
    if (!job) return replace(actions);
    if (isTerminalJobState(job.state)) return replace(actions, notice, resubmitButton());
    if (!confirming) {
      return replace(
        actions,
        notice,
        resubmitButton(),
        on(
          h(
            "button",
            { type: "button", class: "btn btn-danger", id: "terminate-btn" },
            "Terminate job",
          ),
          "click",
          () => {
            confirming = true;
            renderActions();
          },
        ),
      );
    }
    replace(
      actions,
      h("span", { class: "confirm-text" }, "Terminate this job and its children?"),
      on(
        h(
          "button",
          { type: "button", class: "btn btn-danger", id: "terminate-confirm" },
          "Terminate",
        ),
        "click",
        () => void terminate(),
      ),
      on(h("button", { type: "button", class: "btn" }, "Keep running"), "click", () => {
        confirming = false;
        renderActions();
      }),
    );
  }

  async function terminate(): Promise<void> {
    confirming = false;
    try {
      const res = await env.api.terminateJob({ jobId, reason: "terminated from the dashboard" });
      const n = res.terminatedJobIds.length;
      notice = h(
        "span",
        { class: "notice", role: "status" },
        `Terminated ${n} job${n === 1 ? "" : "s"}`,
      );
    } catch (e) {
      notice = h(
        "span",
        { class: "notice notice-danger", role: "status" },
        `Terminate failed: ${errorMessage(e)}`,
      );
    }
    renderActions();
    poller.kick();
  }

  function renderSummary(j: JobStatus, now: number): void {
    const spec = j.spec;
    const constraints = spec?.constraints ?? [];
    const env_ = Object.keys(spec?.env ?? {});
    const dur = elapsed(j.startedAtMs, j.finishedAtMs, now);
    replace(
      summary,
      card(
        "Spec",
        infoList([
          ["Command", h("code", { class: "cmd" }, formatEntrypoint(spec?.entrypoint))],
          ["Resources", `${formatResources(spec?.resources)} per task`],
          ["Replicas", String(spec?.replicas || 1)],
          [
            "Priority",
            j.priorityReason
              ? `${priorityName(j.effectivePriority)} (asked ${
                priorityName(spec?.priority || PriorityBand.INTERACTIVE)
              }: ${j.priorityReason})`
              : priorityName(spec?.priority ?? PriorityBand.UNSPECIFIED),
          ],
          [
            "Coscheduling",
            spec?.coscheduling?.groupBy ? `group by ${spec.coscheduling.groupBy}` : "",
          ],
          [
            "Retries",
            `failure ${spec?.maxRetriesFailure ?? 0} · preemption ${
              spec?.maxRetriesPreemption ?? 100
            }` +
            (spec?.maxTaskFailures ? ` · max task failures ${spec.maxTaskFailures}` : ""),
          ],
          ["Timeout", spec?.timeoutMs ? formatDuration(spec.timeoutMs) : ""],
          [
            "Scheduling timeout",
            spec?.schedulingTimeoutMs ? formatDuration(spec.schedulingTimeoutMs) : "",
          ],
          [
            "Ports",
            spec?.ports.length ? h("div", { class: "chips" }, spec.ports.map((p) => chip(p))) : "",
          ],
          ["Env", env_.length ? h("div", { class: "chips" }, env_.map((k) => chip(k))) : ""],
          ["Bundle", spec?.bundleId ? h("code", null, spec.bundleId) : ""],
          [
            "Constraints",
            constraints.length
              ? h(
                "div",
                { class: "chips constraints" },
                constraints.map((c) => chip(formatConstraint(c), "constraint")),
              )
              : h("span", { class: "muted" }, "none"),
          ],
        ]),
      ),
      card(
        "Status",
        infoList([
          ["State", badge(jobStateName(j.state))],
          [
            "Pending",
            j.pendingReason?.message
              ? h(
                "div",
                { class: "pending-reason" },
                j.pendingReason.message,
                j.pendingReason.workersConsidered
                  ? h(
                    "span",
                    { class: "muted" },
                    ` (${j.pendingReason.workersConsidered} workers considered)`,
                  )
                  : null,
              )
              : "",
          ],
          ["User", j.user],
          ["Parent", j.parentJobId ? link(jobHref(j.parentJobId), j.parentJobId) : ""],
          ["Submitted", dateWithRel(j.submittedAtMs, now)],
          ["Started", j.startedAtMs ? dateWithRel(j.startedAtMs, now) : ""],
          ["Finished", j.finishedAtMs ? dateWithRel(j.finishedAtMs, now) : ""],
          ["Duration", dur === undefined ? "" : formatDuration(dur)],
          [
            "Tasks",
            h(
              "div",
              null,
              h("div", null, `${j.completedCount} of ${j.taskCount} completed`),
              taskCounts(j),
            ),
          ],
          [
            "Failures",
            j.failureCount || j.preemptionCount
              ? `${j.failureCount} failures · ${j.preemptionCount} preemptions`
              : "",
          ],
          ["Exit code", j.exitCode ? String(j.exitCode) : ""],
          ["Error", j.error ? h("div", { class: "error-text" }, j.error) : ""],
        ]),
      ),
    );
  }

  function renderTasks(now: number): void {
    const options: El[] = [
      h("option", { value: jobId, selected: logSource === jobId }, "All tasks"),
    ];
    for (const t of tasks) {
      options.push(
        h("option", { value: t.taskId, selected: logSource === t.taskId }, `Task ${t.index}`),
      );
    }
    if (sourceSelect.options.length !== options.length) replace(sourceSelect, options);
    replace(
      tasksBody,
      tasks.length === 0 ? emptyRow(9, "No tasks") : tasks.map((t) => {
        const state = taskStateName(t.state);
        const attempts = Math.max(t.attempts.length, t.currentAttemptId + 1);
        const reason = t.error
          ? h("span", { class: "error-text" }, t.error)
          : t.pendingReason?.message
          ? h("span", { class: "pending-reason" }, t.pendingReason.message)
          : "";
        const dur = elapsed(t.startedAtMs, t.finishedAtMs, now);
        const peak = t.attempts.at(-1)?.peakMemoryBytes;
        const viewLogs = on(
          h("button", { type: "button", class: "btn btn-small" }, "Logs"),
          "click",
          () => {
            logSource = t.taskId;
            sourceSelect.value = t.taskId;
            resetLogs();
            logs.el.scrollIntoView({ block: "nearest" });
          },
        );
        return h(
          "tr",
          { class: "task-row", "data-task-id": t.taskId, "data-state": state },
          h("td", { class: "num" }, String(t.index)),
          h("td", null, badge(state)),
          h(
            "td",
            null,
            t.workerId
              ? link(workerHref(t.workerId), t.workerId)
              : h("span", { class: "muted" }, "—"),
          ),
          h(
            "td",
            { class: "num", title: `${t.failureCount} failures, ${t.preemptionCount} preemptions` },
            String(attempts),
          ),
          h("td", { class: "num" }, t.finishedAtMs ? String(t.exitCode) : "—"),
          h(
            "td",
            { class: "num", title: peak ? `peak memory ${formatBytes(peak)}` : undefined },
            dur === undefined ? "—" : formatDuration(dur),
          ),
          h(
            "td",
            { class: "col-usage" },
            taskUsageCell(t.resourceUsage, t.usageHistory),
            gpuPeakNote(t.resourceUsage),
          ),
          h("td", { class: "col-error" }, reason),
          h(
            "td",
            { class: "col-actions" },
            viewLogs,
            state === "running"
              ? on(
                h("button", { type: "button", class: "btn btn-small btn-profile" }, "Profile"),
                "click",
                () => void profile(t.taskId),
              )
              : "",
          ),
        );
      }),
    );
  }

  function renderChildren(children: JobStatus[], now: number): void {
    if (children.length === 0) return replace(childrenSlot);
    // Descendants as a tree: direct children are the roots (this job is not in the list).
    const rows = flattenTree(
      sortTree(buildJobTree(children), (c) => c.submittedAtMs, "asc"),
      new Set(),
    );
    replace(
      childrenSlot,
      card(
        `Child jobs (${children.length})`,
        h(
          "table",
          { class: "table children-table" },
          head("Job", "State", "Tasks", "Age", "Duration"),
          h(
            "tbody",
            null,
            rows.map(({ job: c, depth }) => {
              const dur = elapsed(c.startedAtMs, c.finishedAtMs, now);
              const name = depth === 0 ? c.jobId.slice(jobId.length + 1) : leafName(c.jobId);
              return h(
                "tr",
                { class: "child-row", "data-job-id": c.jobId, "data-depth": depth },
                h(
                  "td",
                  null,
                  setStyle(
                    h(
                      "div",
                      { class: "name-cell" },
                      link(jobHref(c.jobId), name || c.jobId, "job-link"),
                    ),
                    {
                      "padding-left": `${depth * 20}px`,
                    },
                  ),
                ),
                h("td", null, badge(jobStateName(c.state))),
                h("td", null, taskCounts(c)),
                h("td", null, relTime(c.submittedAtMs, now)),
                h("td", { class: "num" }, dur === undefined ? "—" : formatDuration(dur)),
              );
            }),
          ),
        ),
      ),
    );
  }

  const poller = new Poller(
    async (signal) => {
      try {
        const status = await env.api.getJobStatus({ jobId }, { signal });
        job = status.job;
        if (!job) throw new ConnectError(`job ${jobId} not found`, Code.NotFound);
        // Small jobs: ListTasks again with each running task's usage history (sparklines).
        const taskList = job.taskCount <= USAGE_HISTORY_MAX_TASKS
          ? (await env.api.listTasks({ jobId, includeUsageHistory: true }, { signal })).tasks
          : status.tasks;
        tasks = [...taskList].sort((a, b) => a.index - b.index);
        const children = job.hasChildren
          ? (await env.api.listJobs({ prefix: `${jobId}/`, limit: 500 }, { signal })).jobs
          : [];
        const now = Date.now();
        replace(alertSlot);
        replace(badgeSlot, badge(jobStateName(job.state)));
        renderActions();
        renderSummary(job, now);
        renderChildren(children, now);
        renderTasks(now);
      } catch (e) {
        if (signal.aborted) throw e;
        const notFound = ConnectError.from(e).code === Code.NotFound;
        replace(
          alertSlot,
          errorBox(notFound ? `Job ${jobId} not found` : `GetJobStatus failed: ${errorMessage(e)}`),
        );
        if (!notFound) throw e;
        // Nothing will appear: stop polling (the controller is fine, so no "Disconnected").
        replace(tasksBody, emptyRow(9, "Job not found"));
        replace(badgeSlot, h("span", { class: "badge state-unknown" }, "not found"));
        setTimeout(() => {
          poller.stop();
          logPoller.stop();
        }, 0);
      }
    },
    DETAIL_INTERVAL_MS,
    env.onStatus,
  );

  const logPoller = new Poller(async (signal) => {
    if (!followBox.checked) return;
    const source = logSource;
    const filter = substring;
    try {
      const res = await env.api.getTaskLogs({
        id: source,
        cursor,
        maxLines: LOG_BATCH,
        substring: filter,
      }, { signal });
      if (source !== logSource || filter !== substring) return; // Switched while in flight.
      const all = source === jobId;
      logs.append(
        res.lines.map((l) => ({
          timestampMs: l.timestampMs,
          stream: l.stream,
          tag: all ? `${leafName(l.taskId)}${l.attemptId ? `.${l.attemptId}` : ""}` : undefined,
          text: l.text,
        })),
        followBox.checked,
      );
      if (res.nextCursor) cursor = res.nextCursor;
      logCount.textContent = `(${logs.count} lines)`;
      replace(logError);
      if (res.lines.length >= LOG_BATCH) logPoller.kick();
    } catch (e) {
      if (!signal.aborted) replace(logError, errorBox(`GetTaskLogs failed: ${errorMessage(e)}`));
      throw e;
    }
  }, LOG_INTERVAL_MS);

  poller.start();
  logPoller.start();
  return {
    el,
    dispose() {
      clearTimeout(debounce);
      poller.stop();
      logPoller.stop();
    },
  };
}

function breadcrumb(jobId: string): El {
  const parts = jobId.split("/").filter(Boolean);
  const items: Child[] = [link("#/jobs", "Jobs")];
  let path = "";
  parts.forEach((p, i) => {
    path += `/${p}`;
    items.push(h("span", { class: "crumb-sep" }, "/"));
    // The first segment is the user, not a job.
    items.push(i === 0 || i === parts.length - 1 ? h("span", null, p) : link(jobHref(path), p));
  });
  return h("nav", { class: "breadcrumb", "aria-label": "Breadcrumb" }, items);
}

function dateWithRel(ts: number, now: number): El {
  return h(
    "span",
    null,
    formatDateTime(ts),
    " ",
    h("span", { class: "muted" }, "(", relTime(ts, now), ")"),
  );
}
