/**
 * Transactions tab: the controller's recent actions (submits, cancels, scale-ups, preemptions,
 * worker deaths, execs) with who and why, newest first, filtered by action. GetTransactions
 * every 5 s (admin only when auth is on: others see the error).
 * @module
 */
import type { Transaction } from "../../rpc/gen/iris/v1/controller_pb.ts";
import { chip, emptyRow, errorBox, head, link } from "./components.ts";
import { h, on, replace } from "./dom.ts";
import { formatDateTime } from "../../format.ts";
import type { Page, PageEnv } from "./page.ts";
import { errorMessage, LIST_INTERVAL_MS, Poller } from "./poll.ts";
import type { ControllerApi } from "./rpc.ts";
import { jobHref, workerHref } from "./routes.ts";

const ACTIONS = [
  "",
  "submit",
  "cancel",
  "preempt",
  "worker_dead",
  "scale_up",
  "scale_down",
  "create_failed",
  "exec",
];

/** A link for an entity that has a page (jobs, tasks' jobs, workers), else code. */
function entityCell(t: Transaction): ReturnType<typeof h> {
  if (t.action === "submit" || t.action === "cancel") return link(jobHref(t.entity), t.entity);
  if (t.action === "worker_dead") return link(workerHref(t.entity), t.entity);
  return h("code", null, t.entity);
}

/** Builds the Transactions page and starts its refresh loop. */
export function transactionsPage(env: PageEnv<ControllerApi>): Page {
  env.setTitle("Transactions");
  let action = "";
  const alertSlot = h("div", { class: "alert-slot" });
  const count = h("span", { class: "muted count" });
  const tbody = h("tbody", null, emptyRow(5, "Loading…"));
  const select = h(
    "select",
    { class: "input filter", "aria-label": "Action" },
    ACTIONS.map((a) => h("option", { value: a }, a || "All actions")),
  );
  on(select, "change", () => {
    action = select.value;
    poller.kick();
  });
  const el = h(
    "div",
    { class: "page page-transactions" },
    h(
      "div",
      { class: "toolbar" },
      h("h1", null, "Transactions"),
      count,
      h("div", { class: "spacer" }),
      select,
    ),
    alertSlot,
    h(
      "div",
      { class: "card card-flush" },
      h(
        "table",
        { class: "table transactions-table" },
        head("Time", "Action", "Entity", "Who", "Details"),
        tbody,
      ),
    ),
  );

  function render(list: readonly Transaction[]): void {
    count.textContent = `${list.length} action${list.length === 1 ? "" : "s"}`;
    replace(
      tbody,
      list.length === 0 ? emptyRow(5, "No actions recorded yet") : [...list].reverse().map((t) =>
        h(
          "tr",
          { class: "transaction-row", "data-action": t.action },
          h("td", null, formatDateTime(t.timestampMs)),
          h("td", null, chip(t.action)),
          h("td", null, entityCell(t)),
          h("td", null, t.user || "—"),
          h("td", null, t.details),
        )
      ),
    );
  }

  const poller = new Poller(
    async (signal) => {
      try {
        const res = await env.api.getTransactions(
          { limit: 500, actions: action ? [action] : [] },
          { signal },
        );
        replace(alertSlot);
        render(res.transactions);
      } catch (e) {
        if (!signal.aborted) {
          replace(alertSlot, errorBox(`GetTransactions failed: ${errorMessage(e)}`));
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
