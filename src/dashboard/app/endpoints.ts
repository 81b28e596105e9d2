/**
 * Endpoints tab: registered service endpoints, filtered by name prefix. ListEndpoints every 5 s.
 * @module
 */
import type { Endpoint } from "../../rpc/gen/iris/v1/types_pb.ts";
import { chip, emptyRow, errorBox, head, link } from "./components.ts";
import { h, on, replace } from "./dom.ts";
import { jobIdOfTask, sortBy } from "./format.ts";
import type { Page, PageEnv } from "./page.ts";
import { errorMessage, LIST_INTERVAL_MS, Poller } from "./poll.ts";
import type { ControllerApi } from "./rpc.ts";
import { jobHref } from "./routes.ts";

/** Builds the Endpoints page and starts its refresh loop. */
export function endpointsPage(env: PageEnv<ControllerApi>): Page {
  env.setTitle("Endpoints");
  let prefix = "";
  const alertSlot = h("div", { class: "alert-slot" });
  const count = h("span", { class: "muted count" });
  const tbody = h("tbody", null, emptyRow(5, "Loading…"));
  const filter = h("input", {
    type: "search",
    class: "input filter",
    placeholder: "Filter by name prefix",
    "aria-label": "Endpoint name prefix",
  });
  let debounce: ReturnType<typeof setTimeout> | undefined;
  on(filter, "input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      prefix = filter.value.trim();
      poller.kick();
    }, 300);
  });
  const el = h(
    "div",
    { class: "page page-endpoints" },
    h(
      "div",
      { class: "toolbar" },
      h("h1", null, "Endpoints"),
      count,
      h("div", { class: "spacer" }),
      filter,
    ),
    alertSlot,
    h(
      "div",
      { class: "card card-flush" },
      h(
        "table",
        { class: "table endpoints-table" },
        head("Name", "Address", "Job", "Task", "Metadata"),
        tbody,
      ),
    ),
  );

  function render(endpoints: readonly Endpoint[]): void {
    count.textContent = `${endpoints.length} endpoint${endpoints.length === 1 ? "" : "s"}`;
    replace(
      tbody,
      endpoints.length === 0
        ? emptyRow(5, "No endpoints registered")
        : sortBy(endpoints, (e) => e.name, "asc").map((e) => {
          const jobId = e.jobId || jobIdOfTask(e.taskId);
          return h(
            "tr",
            { class: "endpoint-row", "data-endpoint-id": e.endpointId },
            h("td", null, h("strong", null, e.name)),
            h("td", null, h("code", null, e.address)),
            h("td", null, jobId ? link(jobHref(jobId), jobId) : "—"),
            h("td", null, e.taskId ? h("code", null, e.taskId) : "—"),
            h(
              "td",
              null,
              h(
                "div",
                { class: "chips" },
                Object.entries(e.metadata).map(([k, v]) => chip(`${k}=${v}`)),
              ),
            ),
          );
        }),
    );
  }

  const poller = new Poller(
    async (signal) => {
      try {
        const res = await env.api.listEndpoints({ prefix, exact: false }, { signal });
        replace(alertSlot);
        render(res.endpoints);
      } catch (e) {
        if (!signal.aborted) {
          replace(alertSlot, errorBox(`ListEndpoints failed: ${errorMessage(e)}`));
        }
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
