/**
 * Plumbing for task output, all of it bounded: a byte-level line splitter that truncates long
 * lines, token buckets for log rates, a byte-bounded FIFO, and the worker's log limits.
 * Knows nothing about processes or RPC.
 * @module
 */

/** Limits on what a worker keeps and forwards of its tasks' output (docs/config.md). */
export interface LogLimits {
  /** Longer lines are cut to this many bytes, with a marker saying how much was cut. */
  readonly maxLineBytes: number;
  /** Sustained lines per second one task may log; more are dropped and counted. */
  readonly taskLinesPerSecond: number;
  /** Sustained bytes per second one task may log. */
  readonly taskBytesPerSecond: number;
  /** Lines a task may log at once above its rate (bucket size). */
  readonly taskBurstLines: number;
  /** Bytes a task may log at once above its rate (bucket size). */
  readonly taskBurstBytes: number;
  /** Sustained lines per second for all tasks of the worker together. */
  readonly workerLinesPerSecond: number;
  /** Sustained bytes per second for all tasks of the worker together. */
  readonly workerBytesPerSecond: number;
  /** Lines not yet delivered to the controller, per attempt, in bytes; oldest dropped first. */
  readonly taskBacklogBytes: number;
  /** Lines not yet delivered to the controller, for the whole worker, in bytes. */
  readonly workerBacklogBytes: number;
  /** Lines kept per attempt for FetchTaskLogs, in bytes (and at most `keptLines` lines). */
  readonly keptBytes: number;
  /** Lines kept per attempt for FetchTaskLogs. */
  readonly keptLines: number;
  /** Log bytes in one heartbeat, all attempts together (at least one line per attempt fits). */
  readonly heartbeatBytes: number;
}

/** Default {@linkcode LogLimits}. */
export const DEFAULT_LOG_LIMITS: LogLimits = {
  maxLineBytes: 16 * 1024,
  taskLinesPerSecond: 1000,
  taskBytesPerSecond: 256 * 1024,
  taskBurstLines: 10_000,
  taskBurstBytes: 2 * 1024 * 1024,
  workerLinesPerSecond: 5000,
  workerBytesPerSecond: 1024 * 1024,
  taskBacklogBytes: 2 * 1024 * 1024,
  workerBacklogBytes: 8 * 1024 * 1024,
  keptBytes: 2 * 1024 * 1024,
  keptLines: 10_000,
  heartbeatBytes: 1024 * 1024,
};

/**
 * Fills in and checks log limits.
 * @throws {RangeError} naming the field when a value is not a positive number
 */
export function resolveLogLimits(partial: Partial<LogLimits> = {}): LogLimits {
  const limits = { ...DEFAULT_LOG_LIMITS, ...partial };
  for (const [key, value] of Object.entries(limits)) {
    if (!(typeof value === "number" && Number.isFinite(value) && value >= 1)) {
      throw new RangeError(
        `Cannot use log limits as 'logLimits.${key}' must be a number >= 1: current value is ${value}`,
      );
    }
  }
  if (limits.maxLineBytes < 64) {
    throw new RangeError(
      `Cannot use log limits as 'logLimits.maxLineBytes' must be >= 64: current value is ${limits.maxLineBytes}`,
    );
  }
  return limits;
}

/** "12,345" */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** The marker line standing in for `n` dropped lines: `… 12,345 lines dropped (why)`. */
export function droppedMarker(n: number, why: string): string {
  return `… ${formatCount(n)} line${n === 1 ? "" : "s"} dropped (${why})`;
}

/** The suffix of a line cut to the limit: ` … [4,096 bytes truncated]`. */
export function truncatedMarker(bytes: number): string {
  return ` … [${formatCount(bytes)} bytes truncated]`;
}

const NEWLINE = 0x0a;
const CR = 0x0d;

/**
 * Splits a byte stream into lines without their terminators ("\n" or "\r\n"). A line longer
 * than `maxLineBytes` is cut there; the rest of it is only counted, so one runaway line costs
 * no memory. Lines are handed to `emit` as views that are valid only during the call.
 */
export class LineSplitter {
  readonly #max: number;
  #parts: Uint8Array[] = [];
  #partLen = 0;
  #cut = 0;

  /** A splitter that keeps at most `maxLineBytes` of a line. */
  constructor(maxLineBytes: number) {
    if (!(maxLineBytes >= 1)) {
      throw new RangeError(
        `Cannot split lines as 'maxLineBytes' must be >= 1: current value is ${maxLineBytes}`,
      );
    }
    this.#max = maxLineBytes;
  }

  /** Splits `chunk`, calling `emit(line, cutBytes)` for each complete line. */
  push(chunk: Uint8Array, emit: (line: Uint8Array, cutBytes: number) => void): void {
    let start = 0;
    let nl = chunk.indexOf(NEWLINE);
    while (nl !== -1) {
      this.#take(chunk.subarray(start, nl));
      this.#flush(emit, true);
      start = nl + 1;
      nl = chunk.indexOf(NEWLINE, start);
    }
    if (start < chunk.length) this.#take(chunk.subarray(start), true);
  }

  /** Emits the last line when the stream did not end with a newline. */
  end(emit: (line: Uint8Array, cutBytes: number) => void): void {
    if (this.#partLen > 0 || this.#cut > 0) this.#flush(emit, true);
  }

  #take(piece: Uint8Array, copy = false): void {
    const room = this.#max - this.#partLen;
    if (piece.length > room) {
      this.#cut += piece.length - room;
      piece = piece.subarray(0, room);
    }
    if (piece.length === 0) return;
    this.#parts.push(copy ? piece.slice() : piece);
    this.#partLen += piece.length;
  }

  #flush(emit: (line: Uint8Array, cutBytes: number) => void, stripCr: boolean): void {
    let line: Uint8Array;
    if (this.#parts.length === 1) line = this.#parts[0]!;
    else {
      line = new Uint8Array(this.#partLen);
      let at = 0;
      for (const p of this.#parts) {
        line.set(p, at);
        at += p.length;
      }
    }
    // A "\r" before the newline is part of the terminator (unless the line was cut before it).
    if (stripCr && this.#cut === 0 && line.length > 0 && line[line.length - 1] === CR) {
      line = line.subarray(0, line.length - 1);
    }
    const cut = this.#cut;
    this.#parts = [];
    this.#partLen = 0;
    this.#cut = 0;
    emit(line, cut);
  }
}

/**
 * Decodes a line as UTF-8, cutting a character split by truncation, and appends the truncation
 * marker when `cutBytes` > 0.
 */
export function decodeLine(decoder: TextDecoder, line: Uint8Array, cutBytes: number): string {
  if (cutBytes === 0) return decoder.decode(line);
  let end = line.length;
  // Back up over continuation bytes to the start of a character that may be incomplete.
  let back = 0;
  while (back < 3 && end - back - 1 >= 0 && (line[end - back - 1]! & 0xc0) === 0x80) back++;
  const lead = end - back - 1;
  if (lead >= 0) {
    const b = line[lead]!;
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    if (need > back + 1) {
      cutBytes += end - lead;
      end = lead;
    }
  }
  return decoder.decode(line.subarray(0, end)) + truncatedMarker(cutBytes);
}

/** A token bucket over lines and bytes (refilled continuously). */
export class LogBucket {
  readonly #lineRate: number;
  readonly #byteRate: number;
  readonly #lineCap: number;
  readonly #byteCap: number;
  #lines: number;
  #bytes: number;
  #at: number;

  /** A full bucket: `burstLines`/`burstBytes` at once, refilled at the given rates per second. */
  constructor(
    linesPerSecond: number,
    bytesPerSecond: number,
    burstLines: number,
    burstBytes: number,
    now = performance.now(),
  ) {
    this.#lineRate = linesPerSecond / 1000;
    this.#byteRate = bytesPerSecond / 1000;
    this.#lineCap = burstLines;
    this.#byteCap = burstBytes;
    this.#lines = burstLines;
    this.#bytes = burstBytes;
    this.#at = now;
  }

  #refill(now: number): void {
    const dt = Math.max(0, now - this.#at);
    this.#at = now;
    this.#lines = Math.min(this.#lineCap, this.#lines + dt * this.#lineRate);
    this.#bytes = Math.min(this.#byteCap, this.#bytes + dt * this.#byteRate);
  }

  /** True when one line of `bytes` fits now. */
  fits(bytes: number, now: number): boolean {
    this.#refill(now);
    return this.#lines >= 1 && this.#bytes >= bytes;
  }

  /** True when at least 3/4 of the bucket is left: the owner is not chatty. */
  isQuiet(now: number): boolean {
    this.#refill(now);
    return this.#lines * 4 >= this.#lineCap * 3 && this.#bytes * 4 >= this.#byteCap * 3;
  }

  /** Takes one line of `bytes` (may go below zero: the debt is paid by refills). */
  take(bytes: number): void {
    this.#lines -= 1;
    this.#bytes -= bytes;
  }
}

/** What all attempts of one worker share: the limits, the worker's bucket and backlog. */
export class WorkerLogBudget {
  readonly limits: LogLimits;
  readonly bucket: LogBucket;
  /** Bytes of lines waiting for the controller, all attempts together. */
  backlogBytes = 0;

  constructor(limits: Partial<LogLimits> = {}) {
    this.limits = resolveLogLimits(limits);
    const l = this.limits;
    this.bucket = new LogBucket(
      l.workerLinesPerSecond,
      l.workerBytesPerSecond,
      // One second of the worker's rate, but at least one task's burst.
      Math.max(l.workerLinesPerSecond, l.taskBurstLines),
      Math.max(l.workerBytesPerSecond, l.taskBurstBytes),
    );
  }

  /** A bucket for one attempt. */
  taskBucket(): LogBucket {
    const l = this.limits;
    return new LogBucket(
      l.taskLinesPerSecond,
      l.taskBytesPerSecond,
      l.taskBurstLines,
      l.taskBurstBytes,
    );
  }

  /**
   * Whether a task's line of `bytes` may pass: it must fit the task's own bucket, and the
   * worker's unless the task is quiet (3/4 of its burst left: a flooding neighbour cannot silence it). Takes the
   * tokens when it passes.
   */
  admit(task: LogBucket, bytes: number, now = performance.now()): boolean {
    if (!task.fits(bytes, now)) return false;
    if (!this.bucket.fits(bytes, now) && !task.isQuiet(now)) return false;
    task.take(bytes);
    this.bucket.take(bytes);
    return true;
  }
}

/** Approximate memory cost of a line of text (UTF-16 string plus its record). */
export function lineCost(text: string): number {
  return 2 * text.length + 96;
}

/** A FIFO bounded by item count and total cost; pushing past a bound drops the oldest items. */
export class BoundedQueue<T> {
  readonly #maxItems: number;
  readonly #maxCost: number;
  #items: T[] = [];
  #costs: number[] = [];
  #head = 0;
  #cost = 0;
  #dropped = 0;

  /** A queue holding at most `maxItems` items costing at most `maxCost` together. */
  constructor(maxItems: number, maxCost: number) {
    if (!(maxItems >= 1 && maxCost >= 1)) {
      throw new RangeError(
        `Cannot create a bounded queue as 'maxItems' and 'maxCost' must be >= 1: current values are ${maxItems}, ${maxCost}`,
      );
    }
    this.#maxItems = maxItems;
    this.#maxCost = maxCost;
  }

  /** Items held now. */
  get size(): number {
    return this.#items.length - this.#head;
  }

  /** Total cost held now. */
  get cost(): number {
    return this.#cost;
  }

  /** Items dropped so far to stay within the bounds. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Appends an item, dropping the oldest ones while a bound is exceeded (never the new one). */
  push(item: T, cost: number): void {
    this.#items.push(item);
    this.#costs.push(cost);
    this.#cost += cost;
    while (this.size > 1 && (this.size > this.#maxItems || this.#cost > this.#maxCost)) {
      this.shift();
      this.#dropped++;
    }
  }

  /** Removes and returns the oldest item. */
  shift(): T | undefined {
    if (this.size === 0) return undefined;
    const item = this.#items[this.#head]!;
    this.#cost -= this.#costs[this.#head]!;
    this.#head++;
    if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#costs = this.#costs.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** The items, oldest first. */
  toArray(): T[] {
    return this.#items.slice(this.#head);
  }
}

/** A fixed-capacity FIFO that drops its oldest items when full. */
export class RingBuffer<T> {
  /** Most items held. */
  readonly capacity: number;
  #items: (T | undefined)[];
  #start = 0;
  #size = 0;
  #dropped = 0;

  /** A buffer holding at most `capacity` items. */
  constructor(capacity: number) {
    if (!(Number.isInteger(capacity) && capacity >= 1)) {
      throw new RangeError(
        `Cannot create ring buffer as 'capacity' must be an integer >= 1: current value is ${capacity}`,
      );
    }
    this.capacity = capacity;
    this.#items = new Array<T | undefined>(capacity);
  }

  /** Items held now. */
  get size(): number {
    return this.#size;
  }

  /** Items dropped so far because the buffer was full. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Appends an item, dropping the oldest when full. */
  push(item: T): void {
    if (this.#size < this.capacity) {
      this.#items[(this.#start + this.#size) % this.capacity] = item;
      this.#size++;
      return;
    }
    this.#items[this.#start] = item;
    this.#start = (this.#start + 1) % this.capacity;
    this.#dropped++;
  }

  /** The items, oldest first. */
  toArray(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.#size; i++) {
      out.push(this.#items[(this.#start + i) % this.capacity] as T);
    }
    return out;
  }
}
