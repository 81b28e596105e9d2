/**
 * Task log lines held by the controller, each with a global sequence number that serves as the
 * follow cursor. Memory is bounded per task and in total (least recently written tasks give up
 * their lines first). With a directory (`<state_dir>/logs`), every line is also appended to a
 * per-attempt file `<dir>/<job path>/<task index>@<attempt>.log` (one JSON object per line), so
 * lines evicted from memory, and lines written before a controller restart, are read back from
 * disk; files are pruned by age and total size. Each line gets a level parsed from its text on
 * arrival, so queries can filter by minimum level.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type LogLine, LogLineSchema } from "../rpc/gen/iris/v1/types_pb.ts";
import { describeError, InvalidArgumentError } from "../errors.ts";
import { type Duration, minutes, sleep } from "../time.ts";
import { formatBytes, formatDuration } from "../format.ts";

interface StoredLine {
  readonly seq: number;
  readonly line: LogLine;
  readonly rank: number;
  readonly cost: number;
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
  /** Most characters of text in one answer (at least one line). @default 8 Mi */
  readonly maxChars?: number;
}

/** Options for {@linkcode LogStore}. */
export interface LogStoreOptions {
  /** Memory for log lines, all tasks together (approximate bytes). @default 256 MiB */
  readonly memoryBytes?: number;
  /** Memory for one task's lines. @default 8 MiB */
  readonly taskMemoryBytes?: number;
  /** Where per-attempt log files go; without it, lines live in memory only. */
  readonly dir?: string;
  /** Log files not written for this long are deleted. @default 30 days */
  readonly retention?: Duration;
  /** Log files together; the least recently written are deleted past it. @default 10 GiB */
  readonly diskBytes?: number;
  /** One attempt's file; lines past it stay in memory only (a marker says so). @default 1 GiB */
  readonly attemptFileBytes?: number;
  /** How often retention runs (also once at start). @default 5 minutes */
  readonly pruneInterval?: Duration;
  /** Where disk errors and pruning are reported. */
  readonly log?: (line: string) => void;
}

/** Defaults of {@linkcode LogStoreOptions}. */
export const LOG_STORE_DEFAULTS = {
  memoryBytes: 256 * 1024 * 1024,
  taskMemoryBytes: 8 * 1024 * 1024,
  retention: minutes(30 * 24 * 60),
  diskBytes: 10 * 1024 ** 3,
  attemptFileBytes: 1024 ** 3,
  pruneInterval: minutes(5),
} as const;

/** Approximate memory of a stored line: its strings (UTF-16) and the objects around them. */
function lineCost(line: LogLine): number {
  return 2 * (line.text.length + line.taskId.length + line.stream.length) + 160;
}

/** One task's lines in memory, oldest first from `head`. */
interface TaskLines {
  lines: StoredLine[];
  head: number;
  bytes: number;
  /** Highest sequence number evicted from memory (0: none). */
  evictedSeq: number;
}

/** An attempt's file while it is being written. */
interface AttemptFile {
  readonly path: string;
  bytes: number;
  capped: boolean;
}

/** Most characters of line text in one query answer by default (about 8 MiB of ASCII). */
const MAX_ANSWER_CHARS = 8 * 1024 * 1024;

/** Sequence numbers reserved per write of the `seq` file. */
const SEQ_RESERVE = 1_000_000;
const READ_CHUNK = 1024 * 1024;

/** Per-task log buffers with a shared cursor space, bounded in memory, optionally on disk. */
export class LogStore {
  readonly #byTask = new Map<string, TaskLines>();
  readonly #files = new Map<string, AttemptFile>();
  /**
   * Directories under the log dir this store made or found (bounded: cleared when large). A new
   * attempt's directory is then one mkdir per level not known, instead of a recursive mkdir that
   * fails down the path first (#20: an attempt's first lines made ~9 synchronous fs calls).
   */
  readonly #dirs = new Set<string>();
  readonly #opts: LogStoreOptions;
  readonly #memoryBytes: number;
  readonly #taskMemoryBytes: number;
  readonly #dir?: string;
  readonly #abort = new AbortController();
  #pruning?: Promise<void>;
  /** The prune in progress, if any: prunes run one at a time (a second waits for the first). */
  #pruneTail: Promise<unknown> = Promise.resolve();
  #seq = 0;
  /** Lines with a sequence number up to this were written before this process started. */
  readonly #baseSeq: number;
  #reservedSeq = 0;
  #bytes = 0;
  #evictedLines = 0;
  #diskErrorLogged = false;
  /** Lines waiting to be written to their attempt files, by attempt, in arrival order. */
  #queued = new Map<string, { taskId: string; attemptId: number; lines: StoredLine[] }>();
  #queuedLines = 0;
  /** The writer of queued lines while it runs. */
  #draining?: Promise<void>;

  /**
   * A store; with `dir`, lines from earlier runs are served from the files there and new ones
   * are written to them. Retention runs at once and then every `pruneInterval` until
   * {@linkcode LogStore.close}.
   * @throws {InvalidArgumentError} on a limit that is not a positive number
   */
  constructor(opts: LogStoreOptions = {}) {
    this.#opts = opts;
    for (
      const key of ["memoryBytes", "taskMemoryBytes", "diskBytes", "attemptFileBytes"] as const
    ) {
      const v = opts[key];
      if (v !== undefined && !(v > 0)) {
        throw new InvalidArgumentError(`logs.${key}`, `must be > 0 (got ${v})`);
      }
    }
    this.#memoryBytes = opts.memoryBytes ?? LOG_STORE_DEFAULTS.memoryBytes;
    this.#taskMemoryBytes = Math.min(
      opts.taskMemoryBytes ?? LOG_STORE_DEFAULTS.taskMemoryBytes,
      this.#memoryBytes,
    );
    this.#dir = opts.dir;
    if (this.#dir) {
      Deno.mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
      let saved = 0;
      try {
        saved = Number(Deno.readTextFileSync(`${this.#dir}/seq`).trim()) || 0;
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
      this.#seq = saved;
      this.#reserveSeq();
      this.#pruning = this.#pruneLoop();
    }
    this.#baseSeq = this.#seq;
  }

  /** The limits in force (defaults filled in) and the directory, if any. */
  get settings(): {
    memoryBytes: number;
    taskMemoryBytes: number;
    dir?: string;
    retention: Duration;
    diskBytes: number;
    attemptFileBytes: number;
  } {
    return {
      memoryBytes: this.#memoryBytes,
      taskMemoryBytes: this.#taskMemoryBytes,
      dir: this.#dir,
      retention: this.#opts.retention ?? LOG_STORE_DEFAULTS.retention,
      diskBytes: this.#opts.diskBytes ?? LOG_STORE_DEFAULTS.diskBytes,
      attemptFileBytes: this.#opts.attemptFileBytes ?? LOG_STORE_DEFAULTS.attemptFileBytes,
    };
  }

  /** Memory held by lines now (approximate bytes), and lines evicted from memory so far. */
  get stats(): { memoryBytes: number; tasks: number; evictedLines: number } {
    return { memoryBytes: this.#bytes, tasks: this.#byTask.size, evictedLines: this.#evictedLines };
  }

  /** Stops retention once the queued lines are written. Files stay. */
  async close(): Promise<void> {
    await this.flushed();
    this.#abort.abort();
    await this.#pruning;
  }

  /** Resolves once every line appended so far is in its attempt file (or failed to be). */
  async flushed(): Promise<void> {
    while (this.#draining) await this.#draining;
  }

  /** Appends lines of one task. */
  append(taskId: string, lines: readonly LogLine[]): void {
    if (lines.length === 0) return;
    let buf = this.#byTask.get(taskId);
    if (buf) this.#byTask.delete(taskId); // re-inserted last: the map is in least-recent order
    else buf = { lines: [], head: 0, bytes: 0, evictedSeq: 0 };
    this.#byTask.set(taskId, buf);
    const stored: StoredLine[] = [];
    for (const line of lines) {
      if (!line.level) line.level = line.stream === "system" ? "info" : parseLogLevel(line.text);
      const cost = lineCost(line);
      const s = { seq: ++this.#seq, line, rank: LOG_LEVELS.indexOf(line.level as LogLevel), cost };
      stored.push(s);
      buf.lines.push(s);
      buf.bytes += cost;
      this.#bytes += cost;
    }
    if (this.#dir) {
      if (this.#seq >= this.#reservedSeq) this.#reserveSeq();
      this.#queueWrite(taskId, stored);
    }
    while (buf.bytes > this.#taskMemoryBytes && buf.head < buf.lines.length - 1) this.#evict(buf);
    if (this.#bytes > this.#memoryBytes) this.#evictOldest(taskId);
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
   * Lines no longer in memory are read from the attempt files.
   * @throws {InvalidArgumentError} on an unknown `minLevel`
   */
  async query(
    taskIds: readonly string[],
    q: LogQuery = {},
  ): Promise<{ lines: LogLine[]; nextCursor: number; more: boolean }> {
    const cursor = q.cursor ?? 0;
    const maxChars = q.maxChars ?? MAX_ANSWER_CHARS;
    const max = q.maxLines && q.maxLines > 0 ? q.maxLines : 10_000;
    const minRank = levelRank(q.minLevel ?? "");
    const seqNow = this.#seq;
    const match = (s: StoredLine) =>
      !(q.attemptId !== undefined && q.attemptId >= 0 && s.line.attemptId !== q.attemptId) &&
      !(q.sinceMs && s.line.timestampMs < q.sinceMs) &&
      !(q.substring && !s.line.text.includes(q.substring)) &&
      s.rank >= minRank;
    const picked: StoredLine[] = [];
    // A job directory is listed once per query, however many of its tasks are read.
    const listings = new Map<string, Promise<string[]>>();
    for (const id of taskIds) {
      const buf = this.#byTask.get(id);
      // Lines up to `onDisk` are only on disk (evicted, or from before a restart).
      const onDisk = this.#dir ? Math.max(buf?.evictedSeq ?? 0, this.#baseSeq) : 0;
      if (onDisk > cursor) {
        // Evicted lines may still be queued for their file.
        if (this.#queuedLines > 0) await this.flushed();
        picked.push(...await this.#readDisk(id, cursor, onDisk, q, match, max, listings));
      }
      if (!buf) continue;
      let lo = buf.head, hi = buf.lines.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (buf.lines[mid]!.seq <= cursor) lo = mid + 1;
        else hi = mid;
      }
      for (let i = lo; i < buf.lines.length; i++) {
        const s = buf.lines[i]!;
        if (s.seq > onDisk && match(s)) picked.push(s);
      }
    }
    if (taskIds.length > 1 || this.#dir) picked.sort((a, b) => a.seq - b.seq);
    if (q.tail) {
      const last = picked.slice(-max);
      let start = last.length;
      for (let chars = 0; start > 0; start--) {
        chars += last[start - 1]!.line.text.length;
        if (chars > maxChars && start < last.length) break;
      }
      return {
        lines: last.slice(start).map((s) => s.line),
        nextCursor: Math.max(cursor, seqNow),
        more: false,
      };
    }
    let end = 0;
    for (let chars = 0; end < Math.min(max, picked.length); end++) {
      chars += picked[end]!.line.text.length;
      if (chars > maxChars && end > 0) break;
    }
    const out = picked.slice(0, end);
    const more = out.length < picked.length;
    const nextCursor = more ? out[out.length - 1]!.seq : Math.max(cursor, seqNow);
    return { lines: out.map((s) => s.line), nextCursor, more };
  }

  /** Drops a task's lines from memory (its files stay until retention removes them). */
  delete(taskId: string): void {
    const buf = this.#byTask.get(taskId);
    if (!buf) return;
    this.#bytes -= buf.bytes;
    this.#byTask.delete(taskId);
  }

  /**
   * Applies retention once: deletes log files not written for `retention`, then the least
   * recently written ones while all files together exceed `diskBytes`.
   * @returns the number of files deleted
   */
  prune(now = Date.now()): Promise<number> {
    // One at a time: two walks at once would count and delete the same files twice.
    const run = this.#pruneTail.then(() => this.#pruneOnce(now));
    this.#pruneTail = run.catch(() => {});
    return run;
  }

  async #pruneOnce(now: number): Promise<number> {
    const dir = this.#dir;
    if (!dir) return 0;
    const retention = this.#opts.retention ?? LOG_STORE_DEFAULTS.retention;
    const limit = this.#opts.diskBytes ?? LOG_STORE_DEFAULTS.diskBytes;
    const files: { path: string; size: number; mtime: number }[] = [];
    const walk = async (d: string): Promise<void> => {
      for await (const e of Deno.readDir(d)) {
        if (this.#abort.signal.aborted) return;
        const path = `${d}/${e.name}`;
        if (e.isDirectory) await walk(path);
        else if (e.isFile && e.name.endsWith(".log")) {
          const st = await Deno.stat(path);
          files.push({ path, size: st.size, mtime: st.mtime?.getTime() ?? 0 });
        }
      }
    };
    await walk(dir);
    files.sort((a, b) => a.mtime - b.mtime);
    let total = files.reduce((sum, f) => sum + f.size, 0);
    let removed = 0;
    for (const f of files) {
      if (now - f.mtime <= retention && total <= limit) break;
      await Deno.remove(f.path).catch(() => {});
      for (const [key, w] of this.#files) if (w.path === f.path) this.#files.delete(key);
      total -= f.size;
      removed++;
    }
    if (removed > 0) {
      this.#opts.log?.(
        `task logs: deleted ${removed} file(s) older than ${formatDuration(retention)} or beyond ${
          formatBytes(limit)
        } in total`,
      );
    }
    return removed;
  }

  async #pruneLoop(): Promise<void> {
    const interval = this.#opts.pruneInterval ?? LOG_STORE_DEFAULTS.pruneInterval;
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      try {
        await this.prune();
      } catch (err) {
        this.#opts.log?.(`task logs: retention failed: ${describeError(err)}`);
      }
      await sleep(interval, signal).catch(() => {});
    }
  }

  #reserveSeq(): void {
    this.#reservedSeq = this.#seq + SEQ_RESERVE;
    const tmp = `${this.#dir}/seq.tmp`;
    Deno.writeTextFileSync(tmp, `${this.#reservedSeq}\n`);
    Deno.renameSync(tmp, `${this.#dir}/seq`);
    // After a restart, numbering continues above everything this run may have handed out.
  }

  /** Removes the oldest line of a task from memory. */
  #evict(buf: TaskLines): void {
    const s = buf.lines[buf.head]!;
    buf.head++;
    buf.bytes -= s.cost;
    this.#bytes -= s.cost;
    buf.evictedSeq = s.seq;
    this.#evictedLines++;
    if (buf.head >= 1024 && buf.head * 2 >= buf.lines.length) {
      buf.lines = buf.lines.slice(buf.head);
      buf.head = 0;
    }
  }

  /**
   * Evicts from the least recently written tasks until memory is under 90 % of the bound; the
   * task being written (`current`) goes last.
   */
  #evictOldest(current: string): void {
    const target = this.#memoryBytes * 0.9;
    for (const [id, buf] of this.#byTask) {
      if (this.#bytes <= target) return;
      if (id === current) continue;
      while (buf.head < buf.lines.length && this.#bytes > target) this.#evict(buf);
      if (buf.head === buf.lines.length) {
        buf.lines = [];
        buf.head = 0;
      }
    }
    const buf = this.#byTask.get(current);
    while (buf && buf.head < buf.lines.length - 1 && this.#bytes > target) this.#evict(buf);
  }

  /**
   * Queues stored lines for their attempt files ({@linkcode LogStore.flushed}). A new attempt's
   * directory and file are made with async fs calls, off the event loop: made synchronously they
   * stalled it (inode allocation, waiting behind the state store's fsyncs; #20). Appending to a
   * file already open once is a few µs and stays synchronous.
   */
  #queueWrite(taskId: string, stored: readonly StoredLine[]): void {
    for (const s of stored) {
      const key = `${taskId}#${s.line.attemptId}`;
      let w = this.#queued.get(key);
      if (!w) this.#queued.set(key, w = { taskId, attemptId: s.line.attemptId, lines: [] });
      w.lines.push(s);
    }
    this.#queuedLines += stored.length;
    if (!this.#draining) this.#draining = this.#drain();
  }

  /** Writes queued lines until none are left; one attempt file at a time, in queue order. */
  async #drain(): Promise<void> {
    try {
      while (this.#queued.size > 0) {
        const batch = this.#queued;
        this.#queued = new Map();
        for (const w of batch.values()) {
          await this.#writeAttempt(w.taskId, w.attemptId, w.lines);
          this.#queuedLines -= w.lines.length;
        }
      }
    } finally {
      this.#draining = undefined;
    }
  }

  /** Appends lines to their attempt file (errors are logged once, lines stay in memory). */
  async #writeAttempt(taskId: string, attemptId: number, list: readonly StoredLine[]) {
    const cap = this.#opts.attemptFileBytes ?? LOG_STORE_DEFAULTS.attemptFileBytes;
    const key = `${taskId}#${attemptId}`;
    // A new attempt file is opened once: its size (after a restart it may exist) and the first
    // write go through the same handle.
    let handle: Deno.FsFile | undefined;
    try {
      let file = this.#files.get(key);
      if (!file) {
        const { dir, path } = attemptFilePath(this.#dir!, taskId, attemptId);
        handle = await this.#openAttemptFile(dir, path);
        const bytes = handle.statSync().size;
        file = { path, bytes, capped: bytes >= cap };
        this.#files.set(key, file);
      }
      if (file.capped) return;
      let text = "";
      for (const s of list) text += encodeLine(s);
      let data = new TextEncoder().encode(text);
      if (file.bytes + data.length > cap) {
        file.capped = true;
        const last = list[list.length - 1]!;
        text = encodeLine({
          ...last,
          line: create(LogLineSchema, {
            ...last.line,
            stream: "system",
            level: "warning",
            text: `… later lines of this attempt are not kept on disk (file limit ${
              formatBytes(cap)
            }); the newest are in the controller's memory until evicted`,
          }),
        });
        data = new TextEncoder().encode(text);
      }
      file.bytes += data.length;
      if (handle) {
        for (let off = 0; off < data.length;) off += handle.writeSync(data.subarray(off));
      } else Deno.writeFileSync(file.path, data, { append: true, create: true, mode: 0o600 });
    } catch (err) {
      if (!this.#diskErrorLogged) {
        this.#diskErrorLogged = true;
        this.#opts.log?.(
          `task logs: cannot write ${taskId} attempt ${attemptId} to ${this.#dir}: ${
            describeError(err)
          }; lines stay in memory only (logged once)`,
        );
      }
    } finally {
      handle?.close();
    }
  }

  /** Opens (creating) an attempt file for appending, making its directory first. */
  async #openAttemptFile(dir: string, path: string): Promise<Deno.FsFile> {
    const open = () => Deno.open(path, { append: true, create: true, mode: 0o600 });
    try {
      await this.#makeDirs(dir);
      return await open();
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      // A directory this store knew was removed meanwhile: make the path again.
      this.#dirs.clear();
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      return await open();
    }
  }

  /** Makes `dir` and its missing parents under the log dir, one mkdir per unknown level. */
  async #makeDirs(dir: string): Promise<void> {
    if (this.#dirs.has(dir)) return;
    if (this.#dirs.size >= 10_000) this.#dirs.clear();
    const root = this.#dir!;
    const missing: string[] = [];
    let d = dir;
    while (d.length > root.length && !this.#dirs.has(d)) {
      missing.push(d);
      d = d.slice(0, d.lastIndexOf("/"));
    }
    if (d.length <= root.length && !this.#dirs.has(root)) {
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      this.#dirs.add(root);
    } else {
      for (let i = missing.length - 1; i >= 0; i--) {
        try {
          await Deno.mkdir(missing[i]!, { mode: 0o700 });
        } catch (err) {
          if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
        }
      }
    }
    for (const m of missing) this.#dirs.add(m);
  }

  /**
   * Lines of a task from its attempt files with cursor < seq <= upTo that `match`: the first
   * `max` per file, or all (for a tail, the last `max`).
   */
  async #readDisk(
    taskId: string,
    cursor: number,
    upTo: number,
    q: LogQuery,
    match: (s: StoredLine) => boolean,
    max: number,
    listings: Map<string, Promise<string[]>>,
  ): Promise<StoredLine[]> {
    const { dir, name } = attemptFilePath(this.#dir!, taskId, 0);
    const list = (d: string) => {
      let names = listings.get(d);
      if (!names) listings.set(d, names = listNames(d));
      return names;
    };
    // `<job>/<task>@<attempt>.log`, and `<job>/<task>/<attempt>.log` as written before.
    // An attempt may have both (written on each side of an upgrade): the older file first.
    const files = new Map<number, string[]>();
    for (const n of await list(`${dir}/${name}`)) {
      const m = /^(\d+)\.log$/.exec(n);
      if (m) files.set(Number(m[1]), [`${dir}/${name}/${n}`]);
    }
    const prefix = `${name}@`;
    for (const n of await list(dir)) {
      if (!n.startsWith(prefix)) continue;
      const m = /^(\d+)\.log$/.exec(n.slice(prefix.length));
      if (!m) continue;
      const paths = files.get(Number(m[1]));
      if (paths) paths.push(`${dir}/${n}`);
      else files.set(Number(m[1]), [`${dir}/${n}`]);
    }
    const attempts = [...files.keys()];
    attempts.sort((a, b) => a - b);
    const out: StoredLine[] = [];
    for (const attemptId of attempts) {
      if (q.attemptId !== undefined && q.attemptId >= 0 && attemptId !== q.attemptId) continue;
      const found: StoredLine[] = [];
      for (const path of files.get(attemptId)!) {
        await readLines(path, (text) => {
          const seq = leadingSeq(text);
          if (seq <= cursor) return true;
          if (seq > upTo) return false;
          const s = decodeStored(text, taskId, attemptId);
          if (!s || !match(s)) return true;
          found.push(s);
          if (q.tail && found.length > 2 * max) found.splice(0, found.length - max);
          return q.tail || found.length < max;
        });
      }
      out.push(...(q.tail ? found.slice(-max) : found));
    }
    return out;
  }
}

/**
 * Where an attempt's lines go: `<root>/<job path>/<task>@<attempt>.log` (`@` never appears in an
 * encoded component, so no job's directory can be named like a file). One file and no directory
 * per task: on ext4 each inode made costs 0.3–0.7 ms of kernel CPU where many were deleted (#20).
 */
export function attemptFilePath(
  root: string,
  taskId: string,
  attemptId: number,
): { dir: string; name: string; path: string } {
  const rel = taskPath(taskId);
  const slash = rel.lastIndexOf("/");
  const dir = slash < 0 ? root : `${root}/${rel.slice(0, slash)}`;
  const name = rel.slice(slash + 1);
  return { dir, name, path: `${dir}/${name}@${attemptId}.log` };
}

/** The names of the files in a directory (none when it does not exist). */
async function listNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) if (e.isFile) names.push(e.name);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) {
      return names;
    }
    throw err;
  }
  return names;
}

/** A task id as a relative path: its components, each percent-encoded ("." and ".." too). */
export function taskPath(taskId: string): string {
  return taskId.split("/").filter((c) => c !== "").map((c) =>
    encodeURIComponent(c).replace(/^\.+$/, (dots) => "%2E".repeat(dots.length))
  ).join("/");
}

function encodeLine(s: StoredLine): string {
  return JSON.stringify({
    s: s.seq,
    t: s.line.timestampMs,
    o: s.line.stream,
    l: s.line.level,
    x: s.line.text,
  }) + "\n";
}

/** The sequence number at the start of an encoded line (`{"s":123,`), NaN when malformed. */
function leadingSeq(text: string): number {
  const end = text.indexOf(",");
  return text.startsWith('{"s":') && end > 5 ? Number(text.slice(5, end)) : NaN;
}

function decodeStored(text: string, taskId: string, attemptId: number): StoredLine | undefined {
  try {
    const o = JSON.parse(text) as { s: number; t: number; o: string; l: string; x: string };
    const line = create(LogLineSchema, {
      taskId,
      attemptId,
      timestampMs: o.t,
      stream: o.o,
      level: o.l,
      text: o.x,
    });
    return { seq: o.s, line, rank: Math.max(0, LOG_LEVELS.indexOf(o.l as LogLevel)), cost: 0 };
  } catch {
    return undefined; // a torn last line after a crash
  }
}

/** Calls `onLine` for each line of a file, in order, until it returns false. */
async function readLines(path: string, onLine: (text: string) => boolean): Promise<void> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  using _ = file;
  const decoder = new TextDecoder();
  const buf = new Uint8Array(READ_CHUNK);
  let rest = "";
  while (true) {
    const n = await file.read(buf);
    if (n === null) break;
    const text = rest + decoder.decode(buf.subarray(0, n), { stream: true });
    let start = 0;
    let nl = text.indexOf("\n");
    while (nl !== -1) {
      if (!onLine(text.slice(start, nl))) return;
      start = nl + 1;
      nl = text.indexOf("\n", start);
    }
    rest = text.slice(start);
  }
  if (rest) onLine(rest);
}
