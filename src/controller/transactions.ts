/**
 * The transactions log: a record of the controller's actions (submits, cancels, scale-ups and
 * -downs, preemptions, worker deaths, execs) with who did them and why, for `GetTransactions` and
 * the dashboard's Transactions page.
 *
 * Kept in a memory ring of the newest entries and, with a state dir, appended to
 * `<state_dir>/transactions.jsonl` (one JSON object a line). When that file passes `maxFileBytes`
 * it is renamed to `transactions.jsonl.1` (replacing the previous one) and a new file starts, so
 * at most about twice `maxFileBytes` is kept on disk. On start the ring is refilled from the files.
 * A failed append is reported once through `log` and never fails the action being recorded.
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type Transaction, TransactionSchema } from "../rpc/gen/iris/v1/controller_pb.ts";
import { describeError } from "../errors.ts";

/** Transactions kept in memory (and returned at most). */
export const TRANSACTIONS_IN_MEMORY = 5000;
/** Size at which the transactions file is rotated. */
export const TRANSACTIONS_FILE_BYTES = 8 * 1024 * 1024;
/** The file name under the state dir. */
export const TRANSACTIONS_FILE = "transactions.jsonl";

/** One action to record. */
export interface TransactionInput {
  /** submit, cancel, scale_up, scale_down, preempt, worker_dead, exec, … */
  readonly action: string;
  /** The job, task, worker or slice acted on. */
  readonly entity: string;
  /** Who: a user name, or "controller"/"autoscaler" for the system. */
  readonly user: string;
  /** Why, or what (free text, at most 2000 characters kept). */
  readonly details: string;
}

/** Options for {@linkcode TransactionLog}. */
export interface TransactionLogOptions {
  /** Directory for transactions.jsonl; memory only without it. */
  readonly dir?: string;
  /** @default TRANSACTIONS_FILE_BYTES */
  readonly maxFileBytes?: number;
  /** @default TRANSACTIONS_IN_MEMORY */
  readonly maxInMemory?: number;
  readonly now?: () => number;
  readonly log?: (line: string) => void;
}

/** Filters of {@linkcode TransactionLog.list}. */
export interface TransactionQuery {
  /** Most entries, newest kept; 0 = 500. */
  readonly limit?: number;
  /** Only these actions (empty = all). */
  readonly actions?: readonly string[];
  /** Only entries whose entity starts with this. */
  readonly entityPrefix?: string;
  /** Only entries after this sequence number. */
  readonly afterSeq?: number;
}

/** The log. */
export class TransactionLog {
  readonly #ring: Transaction[] = [];
  readonly #file?: string;
  readonly #maxFileBytes: number;
  readonly #maxInMemory: number;
  readonly #now: () => number;
  readonly #log: (line: string) => void;
  #fileBytes = 0;
  #seq = 0;
  #failed = false;
  /** Lines recorded in this turn, appended at its end (see {@linkcode flush}). */
  #pending: string[] = [];

  constructor(options: TransactionLogOptions = {}) {
    this.#maxFileBytes = options.maxFileBytes ?? TRANSACTIONS_FILE_BYTES;
    this.#maxInMemory = options.maxInMemory ?? TRANSACTIONS_IN_MEMORY;
    this.#now = options.now ?? Date.now;
    this.#log = options.log ?? (() => {});
    if (options.dir) {
      this.#file = `${options.dir}/${TRANSACTIONS_FILE}`;
      this.#load(`${this.#file}.1`);
      this.#load(this.#file);
      try {
        this.#fileBytes = Deno.statSync(this.#file).size;
      } catch {
        this.#fileBytes = 0;
      }
    }
  }

  /** The file appended to, or undefined in memory-only mode. */
  get file(): string | undefined {
    return this.#file;
  }

  #load(path: string): void {
    let text: string;
    try {
      text = Deno.readTextFileSync(path);
    } catch {
      return;
    }
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      try {
        const o = JSON.parse(line) as Record<string, unknown>;
        const t = create(TransactionSchema, {
          seq: Number(o.seq) || 0,
          timestampMs: Number(o.timestampMs) || 0,
          action: String(o.action ?? ""),
          entity: String(o.entity ?? ""),
          user: String(o.user ?? ""),
          details: String(o.details ?? ""),
        });
        this.#push(t);
        this.#seq = Math.max(this.#seq, t.seq);
      } catch {
        // A torn last line (a crash mid-append) is skipped.
      }
    }
  }

  #push(t: Transaction): void {
    this.#ring.push(t);
    if (this.#ring.length > this.#maxInMemory) {
      this.#ring.splice(0, this.#ring.length - this.#maxInMemory);
    }
  }

  /** Records one action; returns it. */
  record(input: TransactionInput): Transaction {
    const t = create(TransactionSchema, {
      seq: ++this.#seq,
      timestampMs: this.#now(),
      action: input.action,
      entity: input.entity.slice(0, 1000),
      user: input.user.slice(0, 200),
      details: input.details.slice(0, 2000),
    });
    this.#push(t);
    if (this.#file) {
      // Appended at the end of the turn: the submits of one group commit share one open and
      // write of the file, not one each (#20).
      if (this.#pending.length === 0) queueMicrotask(() => this.flush());
      this.#pending.push(
        JSON.stringify({
          seq: t.seq,
          timestampMs: t.timestampMs,
          action: t.action,
          entity: t.entity,
          user: t.user,
          details: t.details,
        }) + "\n",
      );
    }
    return t;
  }

  /**
   * Appends the entries recorded but not written yet (record leaves that to the end of its
   * turn); the file rotates where it would for one append per entry.
   */
  flush(): void {
    const lines = this.#pending;
    if (lines.length === 0) return;
    this.#pending = [];
    const encoder = new TextEncoder();
    let chunk: Uint8Array[] = [];
    let chunkBytes = 0;
    for (const line of lines) {
      const bytes = encoder.encode(line);
      const before = this.#fileBytes + chunkBytes;
      if (before > 0 && before + bytes.length > this.#maxFileBytes) {
        this.#append(chunk, chunkBytes);
        chunk = [];
        chunkBytes = 0;
        this.#rotate();
      }
      chunk.push(bytes);
      chunkBytes += bytes.length;
    }
    this.#append(chunk, chunkBytes);
  }

  #rotate(): void {
    try {
      Deno.renameSync(this.#file!, `${this.#file}.1`);
      this.#fileBytes = 0;
    } catch (err) {
      this.#failedWith(err);
    }
  }

  #append(chunk: readonly Uint8Array[], size: number): void {
    if (size === 0) return;
    const bytes = new Uint8Array(size);
    let at = 0;
    for (const c of chunk) {
      bytes.set(c, at);
      at += c.length;
    }
    try {
      Deno.writeFileSync(this.#file!, bytes, { append: true, create: true, mode: 0o600 });
      this.#fileBytes += size;
      this.#failed = false;
    } catch (err) {
      this.#failedWith(err);
    }
  }

  #failedWith(err: unknown): void {
    if (!this.#failed) this.#log(`writing ${this.#file} failed: ${describeError(err)}`);
    this.#failed = true;
  }

  /** Matching entries, oldest first (the newest `limit` of them). */
  list(q: TransactionQuery = {}): Transaction[] {
    const limit = Math.min(q.limit || 500, this.#maxInMemory);
    const actions = new Set(q.actions ?? []);
    const out = this.#ring.filter((t) =>
      (actions.size === 0 || actions.has(t.action)) &&
      (!q.entityPrefix || t.entity.startsWith(q.entityPrefix)) &&
      t.seq > (q.afterSeq ?? 0)
    );
    return out.slice(-limit);
  }
}
