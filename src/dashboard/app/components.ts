/**
 * Reusable view pieces: state badges, gauges, metric cards, info rows, chips, sortable table
 * headers. Every piece builds DOM with `h()`, so data is always inserted as text.
 * @module
 */
import { type ButtonEl, type Child, type El, h, on, setStyle } from "./dom.ts";
import {
  formatPercent,
  formatRelative,
  type GaugeLevel,
  gaugeLevel,
  type SortDir,
  stateLabel,
} from "./format.ts";
import { formatDateTime } from "../../format.ts";

/** A coloured state pill; colours come from `.state-<name>` in app.css. */
export function badge(state: string, label = stateLabel(state)): El {
  return h("span", { class: `badge state-${cssToken(state)}`, "data-state": state }, label);
}

/** Restricts a data value used inside a class name to `[a-z0-9_-]`. */
export function cssToken(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9_-]/g, "-");
}

/** A small neutral (or toned) label, e.g. a constraint or an attribute. */
export function chip(text: string, tone = "", title?: string): El {
  return h("span", { class: tone ? `chip chip-${cssToken(tone)}` : "chip", title }, text);
}

/**
 * A horizontal bar gauge with ok/warning/danger colouring (70 % / 90 %). `neutral` gauges
 * (allocations, where full is fine) keep the accent colour but still report their level.
 */
export function gauge(
  frac: number,
  label: string,
  options: { compact?: boolean; title?: string; neutral?: boolean } = {},
): El {
  const level: GaugeLevel = gaugeLevel(frac);
  const cls = [
    "gauge",
    `gauge-${level}`,
    options.compact ? "gauge-compact" : "",
    options.neutral ? "gauge-neutral" : "",
  ];
  const fill = setStyle(h("div", { class: "gauge-fill" }), {
    width: `${(frac * 100).toFixed(1)}%`,
  });
  return h(
    "div",
    {
      class: cls.filter(Boolean).join(" "),
      "data-level": level,
      title: options.title ?? `${formatPercent(frac)} — ${label}`,
    },
    h("div", { class: "gauge-track" }, fill),
    h("span", { class: "gauge-label" }, label),
  );
}

/** A prominent number with a label ("12 Running tasks"). */
export function metricCard(label: string, value: Child, sub?: Child, tone = ""): El {
  return h(
    "div",
    { class: tone ? `metric metric-${cssToken(tone)}` : "metric" },
    h("div", { class: "metric-value" }, value),
    h("div", { class: "metric-label" }, label),
    sub ? h("div", { class: "metric-sub" }, sub) : null,
  );
}

/** A titled card. */
export function card(title: Child, ...children: Child[]): El {
  return h(
    "section",
    { class: "card" },
    title ? h("h2", { class: "card-title" }, title) : null,
    h("div", { class: "card-body" }, children),
  );
}

/** A label/value list (`dl`) skipping rows whose value is empty. */
export function infoList(rows: ReadonlyArray<readonly [string, Child]>): El {
  return h(
    "dl",
    { class: "info" },
    rows.filter(([, v]) => v !== "" && v !== null && v !== undefined && v !== false).map((
      [k, v],
    ) => [h("dt", null, k), h("dd", null, v)]),
  );
}

/** A link to an in-app hash route. */
export function link(href: string, text: string, cls = ""): El {
  return h("a", { href, class: cls || undefined }, text);
}

/** Relative time ("3m ago") with the absolute time as a tooltip. */
export function relTime(ts: number | undefined, now: number): El {
  return h("time", { title: ts ? formatDateTime(ts) : undefined }, formatRelative(ts, now));
}

/** A table row spanning all columns with a muted message. */
export function emptyRow(colspan: number, text: string): El {
  return h("tr", { class: "empty" }, h("td", { colspan }, text));
}

/** A column of a sortable table. */
export interface Column {
  readonly key: string;
  readonly label: string;
  /** False for columns that cannot be sorted. @default true */
  readonly sortable?: boolean;
  readonly class?: string;
}

/** Sort state of a table. */
export interface SortState {
  key: string;
  dir: SortDir;
}

/** A `thead` whose headers toggle `sort` on click and show the direction. */
export function sortableHead(
  columns: readonly Column[],
  sort: SortState,
  onSort: (key: string) => void,
): El {
  return h(
    "thead",
    null,
    h(
      "tr",
      null,
      columns.map((c) => {
        if (c.sortable === false) return h("th", { class: c.class }, c.label);
        const active = sort.key === c.key;
        const btn = h(
          "button",
          { type: "button", class: "sort-btn", "data-sort": c.key },
          c.label,
          h("span", { class: "sort-ind" }, active ? (sort.dir === "asc" ? "▲" : "▼") : ""),
        );
        on(btn, "click", () => onSort(c.key));
        return h(
          "th",
          {
            class: [c.class, "sortable", active ? "sorted" : ""].filter(Boolean).join(" "),
            "aria-sort": active ? (sort.dir === "asc" ? "ascending" : "descending") : "none",
          },
          btn,
        );
      }),
    ),
  );
}

/** Next sort state after clicking `key`: same column flips, a new column starts descending for times. */
export function nextSort(sort: SortState, key: string, defaultDir: SortDir = "asc"): SortState {
  if (sort.key === key) return { key, dir: sort.dir === "asc" ? "desc" : "asc" };
  return { key, dir: defaultDir };
}

/** A plain `thead`. */
export function head(...labels: string[]): El {
  return h("thead", null, h("tr", null, labels.map((l) => h("th", null, l))));
}

/** An error box shown above stale data when a refresh fails. */
export function errorBox(message: string): El {
  return h("div", { class: "alert alert-danger", role: "alert" }, message);
}

/** A button with a click handler. */
export function button(
  label: string,
  onClick: () => void,
  attrs: Readonly<Record<string, string | boolean | undefined>> = {},
): ButtonEl {
  return on(h("button", { type: "button", class: "btn", ...attrs }, label), "click", onClick);
}
