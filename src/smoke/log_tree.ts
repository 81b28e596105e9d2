/**
 * The smoke test's log directory: summary.md written by a logger that prints to the terminal and
 * the file with elapsed time, plus one writer per artifact file (task logs, snapshots, controller
 * and worker logs). Every file is owned by exactly one writer and closed by `close()`.
 * @module
 */

import { JobState, TaskState } from "../rpc/gen/iris/v1/types_pb.ts";

const encoder = new TextEncoder();

/** What a task log file's header needs: the test, the job, and the task itself. */
export interface TaskLogHeader {
  readonly test: string;
  readonly jobId: string;
  readonly jobState: JobState;
  readonly taskIndex: number;
  readonly taskState: TaskState;
}

/**
 * The header lines of `task-logs/<job>/task-<i>.log`: `task_state` is the task's own state (a
 * gang's job can fail while some of its tasks succeeded or were killed), `job_state` the job's.
 */
export function taskLogHeader(h: TaskLogHeader): string {
  return `test_name=${h.test}\njob_id=${h.jobId}\njob_state=${JobState[h.jobState]}\n` +
    `task_index=${h.taskIndex}\ntask_state=${TaskState[h.taskState]}\n`;
}

/** One owner of one file: appends lines, closed once. */
export class FileWriter {
  readonly path: string;
  #file: Deno.FsFile | undefined;

  constructor(path: string) {
    this.path = path;
    this.#file = Deno.openSync(path, { write: true, create: true, append: true });
  }

  /** Appends text (ignored after close). */
  write(text: string): void {
    const file = this.#file;
    if (!file) return;
    const data = encoder.encode(text);
    let off = 0;
    while (off < data.length) off += file.writeSync(data.subarray(off));
  }

  close(): void {
    this.#file?.close();
    this.#file = undefined;
  }
}

/** The log directory and every writer in it. Dispose to close them all. */
export class LogTree implements Disposable {
  readonly root: string;
  readonly #writers = new Map<string, FileWriter>();
  readonly #startedAt = performance.now();
  readonly #summary: FileWriter;
  readonly #print: (line: string) => void;

  constructor(root: string, print: (line: string) => void) {
    this.root = root;
    Deno.mkdirSync(root, { recursive: true });
    this.#print = print;
    this.#summary = this.writer("summary.md");
  }

  /** The writer of `relPath` (created once; one writer per file). */
  writer(relPath: string): FileWriter {
    let w = this.#writers.get(relPath);
    if (!w) {
      const path = `${this.root}/${relPath}`;
      Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      w = new FileWriter(path);
      this.#writers.set(relPath, w);
    }
    return w;
  }

  /** Seconds since the smoke test started. */
  elapsed(): string {
    return ((performance.now() - this.#startedAt) / 1000).toFixed(1);
  }

  /** A timestamped line to the terminal and summary.md. */
  log(message: string, level: "INFO" | "WARN" | "ERROR" = "INFO"): void {
    const line = `[${new Date().toISOString()}] [${
      this.elapsed().padStart(6)
    }s] [${level}] ${message}`;
    this.#print(line);
    this.#summary.write(line + "\n");
  }

  /** A section heading. */
  section(title: string): void {
    this.#print(`\n=== ${title} ===`);
    this.#summary.write(`\n## ${title}\n\n`);
  }

  /** Raw markdown to summary.md only. */
  markdown(text: string): void {
    this.#summary.write(text);
  }

  /** Every file written so far with its size, for the Artifacts list. */
  artifacts(): { path: string; bytes: number }[] {
    return [...this.#writers.keys()].sort().map((p) => {
      let bytes = 0;
      try {
        bytes = Deno.statSync(`${this.root}/${p}`).size;
      } catch { /* removed */ }
      return { path: p, bytes };
    });
  }

  /** Closes every writer. */
  close(): void {
    for (const w of this.#writers.values()) w.close();
    this.#writers.clear();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
