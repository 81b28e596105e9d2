/**
 * Task log lines held by the controller, per task, each with a global sequence number that
 * serves as the follow cursor. Bounded per task (oldest lines dropped first).
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type LogLine, LogLineSchema } from "../rpc/gen/iris/v1/types_pb.ts";

interface StoredLine {
  readonly seq: number;
  readonly line: LogLine;
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
    for (const line of lines) buf.push({ seq: ++this.#seq, line });
    if (buf.length > this.#maxLinesPerTask) buf.splice(0, buf.length - this.#maxLinesPerTask);
  }

  /** Adds a line written by the controller itself (stream "system"). */
  system(taskId: string, attemptId: number, text: string, timestampMs: number): void {
    this.append(taskId, [
      create(LogLineSchema, { taskId, attemptId, text, stream: "system", timestampMs }),
    ]);
  }

  /** Lines of the given tasks after the cursor, merged in arrival order. */
  query(taskIds: readonly string[], q: LogQuery = {}): { lines: LogLine[]; nextCursor: number } {
    const cursor = q.cursor ?? 0;
    const max = q.maxLines && q.maxLines > 0 ? q.maxLines : 10_000;
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
        picked.push(s);
      }
    }
    if (taskIds.length > 1) picked.sort((a, b) => a.seq - b.seq);
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
