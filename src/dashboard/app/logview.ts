/**
 * A scrolling log panel that appends lines as text and keeps the view pinned to the bottom
 * while the user has not scrolled up.
 * @module
 */
import { type El, h } from "./dom.ts";
import { formatClock } from "../../format.ts";
import { MAX_LOG_LINES, overflow } from "./logs.ts";

/** One line to show. */
export interface ViewLine {
  readonly timestampMs?: number;
  /** stdout | stderr | system */
  readonly stream?: string;
  /** Short source tag, e.g. the task index. */
  readonly tag?: string;
  readonly text: string;
}

/** The log panel (`#log-container`). */
export class LogView {
  readonly el: El;
  readonly #empty: El;
  #count = 0;

  constructor(emptyText = "No log lines yet") {
    this.#empty = h("div", { class: "log-empty" }, emptyText);
    this.el = h(
      "div",
      { id: "log-container", class: "log-view", role: "log", "aria-live": "off" },
      this.#empty,
    );
  }

  /** Number of lines shown. */
  get count(): number {
    return this.#count;
  }

  /** Appends lines; scrolls to the bottom when `follow` and the view was at the bottom. */
  append(lines: readonly ViewLine[], follow = true): void {
    if (lines.length === 0) return;
    const el = this.el;
    const atBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - 24;
    if (this.#count === 0) this.#empty.remove();
    const drop = overflow(this.#count, lines.length, MAX_LOG_LINES);
    for (let i = 0; i < drop && el.firstChild; i++) el.firstChild.remove();
    this.#count -= Math.min(drop, this.#count);
    // Lines of several tasks arrive in batches; each goes in timestamp order (a stable insert
    // from the end, so in-order lines cost nothing extra).
    const incoming = lines.slice(Math.max(0, lines.length - MAX_LOG_LINES));
    for (const line of incoming) {
      const row = h(
        "div",
        { class: `log-line log-${line.stream || "stdout"}` },
        line.timestampMs ? h("span", { class: "log-ts" }, formatClock(line.timestampMs)) : null,
        line.tag ? h("span", { class: "log-tag" }, line.tag) : null,
        h("span", { class: "log-text" }, line.text),
      );
      const ts = line.timestampMs ?? 0;
      row.setAttribute("data-ts", String(ts));
      let before: El | null = null;
      for (let prev = el.lastElementChild; prev; prev = prev.previousElementSibling) {
        if (!ts || Number(prev.getAttribute("data-ts") ?? 0) <= ts) break;
        before = prev;
      }
      el.insertBefore(row, before);
      this.#count++;
    }
    if (follow && atBottom) el.scrollTop = el.scrollHeight;
  }

  /** Replaces all lines (e.g. for a snapshot such as controller status logs). */
  set(lines: readonly ViewLine[]): void {
    const el = this.el;
    const atBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - 24;
    this.clear();
    this.append(lines, false);
    if (atBottom) el.scrollTop = el.scrollHeight;
  }

  /** The lines shown, as text (time, tag, text), for a download. */
  text(): string {
    return [...this.el.querySelectorAll(".log-line")].map((row) =>
      [...row.children].map((c) => c.textContent ?? "").join("  ")
    ).join("\n") + "\n";
  }

  /** Removes all lines. */
  clear(): void {
    this.el.replaceChildren(this.#empty);
    this.#count = 0;
  }
}
