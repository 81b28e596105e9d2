/**
 * Autoscaler tab: scale groups (min/max, slices by state, demand, availability, backoff),
 * unmet demand, slices and recent actions. GetAutoscalerStatus every 5 s.
 * @module
 */
import type {
  GetAutoscalerStatusResponse,
  ScaleGroupStatus,
} from "../../rpc/gen/iris/v1/controller_pb.ts";
import { AcceleratorType } from "../../rpc/gen/iris/v1/types_pb.ts";
import { badge, card, emptyRow, errorBox, head, link, metricCard, relTime } from "./components.ts";
import { type Child, h, replace } from "./dom.ts";
import { sortBy } from "./format.ts";
import { formatDuration } from "../../format.ts";
import type { Page, PageEnv } from "./page.ts";
import { errorMessage, LIST_INTERVAL_MS, Poller } from "./poll.ts";
import type { ControllerApi } from "./rpc.ts";
import { jobHref, workerHref } from "./routes.ts";

/**
 * An unmet-demand line ("job /alice/x: …" or "/alice/x: …") with its job id as a link to the
 * job's page.
 */
function demandLine(text: string): Child[] {
  const m = /^(job )?(\/[^\s:]+)(:.*)$/s.exec(text);
  if (!m) return [text];
  return [m[1] ?? "", link(jobHref(m[2]!), m[2]!), m[3]!];
}

const SLICE_STATE_ORDER = ["ready", "booting", "requesting", "terminating", "failed"];

function sliceCounts(g: ScaleGroupStatus): Array<[string, number]> {
  const counts = new Map<string, number>();
  for (const s of g.slices) counts.set(s.state, (counts.get(s.state) ?? 0) + 1);
  return sortBy([...counts], ([s]) => {
    const i = SLICE_STATE_ORDER.indexOf(s);
    return i < 0 ? 99 : i;
  }, "asc");
}

function acceleratorText(g: ScaleGroupStatus): string {
  const kind = g.acceleratorType === AcceleratorType.TPU
    ? "tpu"
    : g.acceleratorType === AcceleratorType.GPU
    ? "gpu"
    : "cpu";
  return g.acceleratorVariant ? `${kind} ${g.acceleratorVariant}` : kind;
}

/** Builds the Autoscaler page and starts its refresh loop. */
export function autoscalerPage(env: PageEnv<ControllerApi>): Page {
  env.setTitle("Autoscaler");
  const alertSlot = h("div", { class: "alert-slot" });
  const body = h("div", { class: "stack" }, h("p", { class: "muted" }, "Loading…"));
  const el = h(
    "div",
    { class: "page page-autoscaler" },
    h("div", { class: "toolbar" }, h("h1", null, "Autoscaler")),
    alertSlot,
    body,
  );

  function render(st: GetAutoscalerStatusResponse): void {
    const now = Date.now();
    const slices = st.groups.flatMap((g) => g.slices);
    const ready = slices.filter((s) => s.state === "ready").length;
    const demand = st.groups.reduce((s, g) => s + g.demandSlices, 0);
    replace(
      body,
      h(
        "div",
        { class: "metrics" },
        metricCard(
          "Autoscaler",
          st.enabled ? "enabled" : "disabled",
          h("span", null, "evaluated ", relTime(st.lastEvaluationMs, now)),
          st.enabled ? "" : "muted",
        ),
        metricCard("Scale groups", String(st.groups.length)),
        metricCard(
          "Slices",
          String(slices.length),
          `${ready} ready · ${slices.length - ready} other`,
        ),
        metricCard(
          "Demand",
          `${demand} slice${demand === 1 ? "" : "s"}`,
          "for unplaceable tasks",
          demand > 0 ? "warning" : "",
        ),
        metricCard(
          "Unmet demand",
          String(st.unmetDemand.length),
          "no group can serve",
          st.unmetDemand.length ? "danger" : "",
        ),
      ),
      st.unmetDemand.length
        ? h(
          "div",
          { class: "alert alert-warning unmet-demand" },
          h("strong", null, "Unmet demand"),
          h("ul", null, st.unmetDemand.map((d) => h("li", { class: "unmet-item" }, demandLine(d)))),
        )
        : null,
      card(
        "Scale groups",
        h(
          "table",
          { class: "table groups-table" },
          head(
            "Group",
            "Accelerator",
            "Slices",
            "Min / max",
            "Demand",
            "Availability",
            "Backoff",
            "Last scale up",
            "Last scale down",
          ),
          h(
            "tbody",
            null,
            st.groups.length === 0
              ? emptyRow(9, "No scale groups configured")
              : st.groups.map((g) => {
                const backoff = g.backoffUntilMs > now;
                return h(
                  "tr",
                  { class: "group-row", "data-group": g.name },
                  h("td", null, h("strong", null, g.name)),
                  h("td", null, acceleratorText(g)),
                  h(
                    "td",
                    null,
                    h("span", { class: "num slice-total" }, String(g.slices.length)),
                    " ",
                    h(
                      "span",
                      { class: "chips inline" },
                      sliceCounts(g).map(([s, n]) => badge(s, `${n} ${s}`)),
                    ),
                  ),
                  h("td", { class: "num" }, `${g.minSlices} / ${g.maxSlices}`),
                  h(
                    "td",
                    { class: g.demandSlices > 0 ? "num demand-hot" : "num" },
                    String(g.demandSlices),
                  ),
                  h("td", null, g.availability ? badge(g.availability) : "—"),
                  h(
                    "td",
                    null,
                    backoff
                      ? h(
                        "span",
                        { class: "warn-text" },
                        `for ${formatDuration(g.backoffUntilMs - now)}`,
                      )
                      : "—",
                    g.consecutiveFailures
                      ? h(
                        "div",
                        { class: "sub muted" },
                        `${g.consecutiveFailures} consecutive failure${
                          g.consecutiveFailures === 1 ? "" : "s"
                        }`,
                      )
                      : null,
                    backoff && g.backoffReason
                      ? h("div", { class: "sub muted backoff-reason" }, g.backoffReason)
                      : null,
                    g.quotaUntilMs > now
                      ? h(
                        "div",
                        { class: "sub warn-text quota-reason" },
                        `quota exceeded for ${
                          formatDuration(g.quotaUntilMs - now)
                        }: ${g.quotaReason}`,
                      )
                      : null,
                  ),
                  h("td", null, relTime(g.lastScaleUpMs, now)),
                  h("td", null, relTime(g.lastScaleDownMs, now)),
                );
              }),
          ),
        ),
      ),
      card(
        `Slices (${slices.length})`,
        h(
          "table",
          { class: "table slices-table" },
          head("Slice", "Group", "State", "Workers", "Age", "Idle since", "Error"),
          h(
            "tbody",
            null,
            slices.length === 0 ? emptyRow(7, "No slices") : slices.map((s) =>
              h(
                "tr",
                { class: "slice-row", "data-slice": s.sliceId },
                h("td", null, h("code", null, s.sliceId)),
                h("td", { class: "nowrap" }, s.scaleGroup),
                h("td", null, badge(s.state)),
                h(
                  "td",
                  null,
                  s.workerIds.length === 0 ? h("span", { class: "muted" }, "—") : h(
                    "div",
                    { class: "chips" },
                    s.workerIds.map((w) => link(workerHref(w), w, "chip chip-link")),
                  ),
                ),
                h("td", null, relTime(s.createdAtMs, now)),
                h("td", null, s.idleSinceMs ? relTime(s.idleSinceMs, now) : "—"),
                h(
                  "td",
                  { class: "col-error" },
                  s.error ? h("span", { class: "error-text" }, s.error) : "",
                ),
              )
            ),
          ),
        ),
      ),
      card(
        "Recent actions",
        h(
          "table",
          { class: "table actions-table" },
          head("When", "Action", "Group", "Slice", "Reason"),
          h(
            "tbody",
            null,
            st.recentActions.length === 0
              ? emptyRow(5, "No actions yet")
              : sortBy(st.recentActions, (a) => a.timestampMs, "desc").map((a) =>
                h(
                  "tr",
                  { class: "action-row", "data-action": a.action },
                  h("td", null, relTime(a.timestampMs, now)),
                  h("td", null, badge(a.action)),
                  h("td", null, a.scaleGroup),
                  h("td", null, a.sliceId ? h("code", null, a.sliceId) : "—"),
                  h("td", null, a.reason),
                )
              ),
          ),
        ),
      ),
    );
  }

  const poller = new Poller(
    async (signal) => {
      try {
        const st = await env.api.getAutoscalerStatus({}, { signal });
        replace(alertSlot);
        render(st);
      } catch (e) {
        if (!signal.aborted) {
          replace(
            alertSlot,
            errorBox(`GetAutoscalerStatus failed: ${errorMessage(e)}`),
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
