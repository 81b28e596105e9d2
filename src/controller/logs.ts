/**
 * Task log lines held by the controller, per task, each with a global sequence number that
 * serves as the follow cursor. Bounded per task (oldest lines dropped first). Each line gets a
 * level parsed from its text on arrival, so queries can filter by minimum level.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type LogLine, LogLineSchema } from "../rpc/gen/iris/v1/types_pb.ts";
import { InvalidArgumentError } from "../errors.ts";

interface StoredLine {
  readonly seq: number;
  readonly line: LogLine;
  readonly rank: number;
}

/** Log levels from least to most severe; a line's level is one of these. */
export const LOG_LEVELS = ["debug", "info", "warning", "error", "critical"] as const;

/** One of {@linkcode LOG_LEVELS}. */
export type LogLevel = typeof LOG_LEVELS[number];

const LEVEL_WORDS: Readonly<Record<string, LogLevel>> = {
  TRACE: "debug",
  DEBUG: "debug",
  INFO: "info",
  NOTICE: "info",
  WARN: "warning",
  WARNING: "warning",
  ERROR: "error",
  ERR: "error",
  CRITICAL: "critical",
  FATAL: "critical",
  PANIC: "critical",
};

const WORDS = "TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERR|ERROR|CRITICAL|FATAL|PANIC";
const KEY_VALUE_RE = new RegExp(`\\blevel"?\\s*[=:]\\s*"?(${WORDS})\\b`, "i");
const UPPER_WORD_RE = new RegExp(`(?<![A-Za-z0-9_])(${WORDS})(?![A-Za-z0-9_])`);
const LEADING_RE = new RegExp(`^\\s*[[(<]?(${WORDS})(?:[\\])>]|:)`, "i");

/**
 * The level of a log line, parsed best-effort from its text, first match wins:
 * `level=warn` / `"level": "error"` (any case); a level word in capitals (DEBUG, INFO, WARN,
 * WARNING, ERROR, CRITICAL, FATAL, …) in the first 100 characters, as in `2026-… WARNING x`
 * or `[ERROR] x`; a line starting with a bracketed or colon-terminated level word in any case
 * (`[warn] x`, `error: x`). Lines without one are "info".
 */
export function parseLogLevel(text: string): LogLevel {
  const head = text.slice(0, 200);
  const m = KEY_VALUE_RE.exec(head) ?? UPPER_WORD_RE.exec(head.slice(0, 100)) ??
    LEADING_RE.exec(head);
  return m ? LEVEL_WORDS[m[1]!.toUpperCase()] ?? "info" : "info";
}

/**
 * The rank of a level name for filtering (0 = debug … 4 = critical); "" is 0 (everything).
 * Accepts "warn", "fatal" and any case.
 * @throws {InvalidArgumentError} naming `field` for an unknown level
 */
export function levelRank(level: string, field = "min_level"): number {
  if (level === "") return 0;
  const l = LEVEL_WORDS[level.toUpperCase()];
  if (!l) {
    throw new InvalidArgumentError(
      field,
      `must be one of ${LOG_LEVELS.join(", ")} (got ${JSON.stringify(level.slice(0, 40))})`,
    );
  }
  return LOG_LEVELS.indexOf(l);
}

/** Options for a log query. */
export interface LogQuery {
  /** Only lines with a sequence number above this. */
  readonly cursor?: number;
  readonly maxLines?: number;
  readonly substring?: string;
  /** Only this attempt; undefined or negative = all. */
  readonly attemptId?: number;
  readonly sinceMs?: number;
  /** Only lines at this level or above ({@linkcode levelRank}); "" = all. */
  readonly minLevel?: string;
  /** With maxLines: the last maxLines matching lines instead of the first. */
  readonly tail?: boolean;
}

/** Per-task log buffers with a shared cursor space. */
export class LogStore {
  readonly #byTask = new Map<string, StoredLine[]>();
  readonly #maxLinesPerTask: number;
  #seq = 0;

  constructor(maxLinesPerTask = 20_000) {
    this.#maxLinesPerTask = maxLinesPerTask;
  }

  /** Appends lines of one task. */
  append(taskId: string, lines: readonly LogLine[]): void {
    if (lines.length === 0) return;
    let buf = this.#byTask.get(taskId);
    if (!buf) this.#byTask.set(taskId, buf = []);
    for (const line of lines) {
      if (!line.level) line.level = line.stream === "system" ? "info" : parseLogLevel(line.text);
      buf.push({ seq: ++this.#seq, line, rank: LOG_LEVELS.indexOf(line.level as LogLevel) });
    }
    if (buf.length > this.#maxLinesPerTask) buf.splice(0, buf.length - this.#maxLinesPerTask);
  }

  /** Adds a line written by the controller itself (stream "system"). */
  system(taskId: string, attemptId: number, text: string, timestampMs: number): void {
    this.append(taskId, [
      create(LogLineSchema, { taskId, attemptId, text, stream: "system", timestampMs }),
    ]);
  }

  /**
   * Lines of the given tasks after the cursor that pass every filter, merged in arrival order:
   * the first `maxLines` (default 10 000), or the last ones with `tail`. `nextCursor` resumes
   * after the last line returned (after everything seen with `tail` or when nothing was cut).
   * @throws {InvalidArgumentError} on an unknown `minLevel`
   */
  query(taskIds: readonly string[], q: LogQuery = {}): { lines: LogLine[]; nextCursor: number } {
    const cursor = q.cursor ?? 0;
    const max = q.maxLines && q.maxLines > 0 ? q.maxLines : 10_000;
    const minRank = levelRank(q.minLevel ?? "");
    const picked: StoredLine[] = [];
    for (const id of taskIds) {
      const buf = this.#byTask.get(id);
      if (!buf) continue;
      let lo = 0, hi = buf.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (buf[mid]!.seq <= cursor) lo = mid + 1;
        else hi = mid;
      }
      for (let i = lo; i < buf.length; i++) {
        const s = buf[i]!;
        if (q.attemptId !== undefined && q.attemptId >= 0 && s.line.attemptId !== q.attemptId) {
          continue;
        }
        if (q.sinceMs && s.line.timestampMs < q.sinceMs) continue;
        if (q.substring && !s.line.text.includes(q.substring)) continue;
        if (s.rank < minRank) continue;
        picked.push(s);
      }
    }
    if (taskIds.length > 1) picked.sort((a, b) => a.seq - b.seq);
    if (q.tail) {
      return {
        lines: picked.slice(-max).map((s) => s.line),
        nextCursor: Math.max(cursor, this.#seq),
      };
    }
    const out = picked.slice(0, max);
    const nextCursor = out.length === picked.length
      ? Math.max(cursor, this.#seq)
      : out[out.length - 1]!.seq;
    return { lines: out.map((s) => s.line), nextCursor };
  }

  /** Drops a task's lines. */
  delete(taskId: string): void {
    this.#byTask.delete(taskId);
  }
}
