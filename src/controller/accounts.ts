/**
 * Account state the controller keeps beside its job store: per-user budgets set at run time
 * (SetUserBudget / `iris user budget set`), on top of the config's `controller.user_budgets`.
 * Persisted as one small JSON file in the state dir (`accounts.json`), written atomically
 * (temp file + rename), so a set budget survives a controller restart.
 * @module
 */
import { budgetFor, type UserBudget } from "./budgets.ts";
import type { Band, ResourceBudget } from "../types.ts";

/** A budget as stored and shown for one user. */
export interface UserBudgetRecord {
  readonly user: string;
  readonly budget: UserBudget;
  /** "set" (at run time) or "config" (controller.user_budgets). */
  readonly source: "set" | "config";
}

interface AccountsFile {
  readonly version: 1;
  readonly budgets: Record<string, {
    maxTasks?: number;
    maxBand?: Band;
    resources?: ResourceBudget;
  }>;
  /** Reservation claims: per job, the worker each entry holds (null: none yet). */
  readonly claims?: Record<string, (string | null)[]>;
}

/** The file name under the state dir. */
export const ACCOUNTS_FILE = "accounts.json";

/** Budgets from config plus those set at run time (which win for their user). */
export class Accounts {
  readonly #config: readonly UserBudget[];
  readonly #file?: string;
  readonly #set = new Map<string, UserBudget>();
  #claims: Record<string, (string | null)[]> = {};

  /**
   * @param file JSON file to load and save; without one, set budgets last until restart.
   * @throws {Error} naming the file when it exists but cannot be read or parsed.
   */
  constructor(configBudgets: readonly UserBudget[], file?: string) {
    this.#config = configBudgets;
    this.#file = file;
    if (!file) return;
    let text: string | undefined;
    try {
      text = Deno.readTextFileSync(file);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    if (text === undefined) return;
    let parsed: AccountsFile;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new Error(`${file}: not valid JSON: ${(err as Error).message}`);
    }
    if (parsed?.version !== 1 || typeof parsed.budgets !== "object") {
      throw new Error(`${file}: unknown format (expected {"version": 1, "budgets": {…}})`);
    }
    for (const [user, b] of Object.entries(parsed.budgets)) {
      this.#set.set(user, { users: [user], ...b });
    }
    this.#claims = parsed.claims ?? {};
  }

  /** Reservation claims saved before the last stop, per job (undefined: entry unclaimed). */
  savedClaims(): Map<string, (string | undefined)[]> {
    return new Map(
      Object.entries(this.#claims).map(([job, ws]) => [job, ws.map((w) => w ?? undefined)]),
    );
  }

  /** Saves the reservation claims (whole set) before returning. */
  saveClaims(claims: ReadonlyMap<string, readonly (string | undefined)[]>): void {
    this.#claims = Object.fromEntries(
      [...claims.entries()].map(([job, ws]) => [job, ws.map((w) => w ?? null)]),
    );
    this.#save(this.#set);
  }

  /** The budget that applies to `user`: one set for them, else their config budget. */
  budgetFor(user: string): UserBudget | undefined {
    return this.#set.get(user) ?? budgetFor(this.#config, user);
  }

  /** Whether any budget limits resources (the scheduler then checks them every pass). */
  hasResourceBudgets(): boolean {
    const limits = (b: UserBudget) => b.resources !== undefined;
    return this.#config.some(limits) || [...this.#set.values()].some(limits);
  }

  /** Sets (replaces) `user`'s budget and saves the file before returning. */
  setBudget(user: string, budget: Omit<UserBudget, "users">): UserBudgetRecord {
    const next = new Map(this.#set);
    next.set(user, { ...budget, users: [user] });
    this.#save(next);
    this.#set.set(user, { ...budget, users: [user] });
    return { user, budget: this.#set.get(user)!, source: "set" };
  }

  /** One user's budget record, or undefined when no budget applies. */
  get(user: string): UserBudgetRecord | undefined {
    const set = this.#set.get(user);
    if (set) return { user, budget: set, source: "set" };
    const b = budgetFor(this.#config, user);
    return b ? { user, budget: b, source: "config" } : undefined;
  }

  /** Every set budget and every config entry ("*" included), set ones first, by user. */
  list(): UserBudgetRecord[] {
    const out: UserBudgetRecord[] = [...this.#set.entries()].sort(([a], [b]) => a < b ? -1 : 1)
      .map(([user, budget]) => ({ user, budget, source: "set" as const }));
    for (const b of this.#config) {
      for (const user of b.users) {
        if (!this.#set.has(user)) out.push({ user, budget: b, source: "config" });
      }
    }
    return out;
  }

  #save(set: ReadonlyMap<string, UserBudget>): void {
    if (!this.#file) return;
    const data: AccountsFile = {
      version: 1,
      budgets: Object.fromEntries(
        [...set.entries()].map(([user, b]) => [user, {
          ...(b.maxTasks !== undefined ? { maxTasks: b.maxTasks } : {}),
          ...(b.maxBand !== undefined ? { maxBand: b.maxBand } : {}),
          ...(b.resources !== undefined ? { resources: b.resources } : {}),
        }]),
      ),
      claims: this.#claims,
    };
    const tmp = `${this.#file}.tmp`;
    Deno.writeTextFileSync(tmp, JSON.stringify(data, null, 2) + "\n", { mode: 0o600 });
    Deno.renameSync(tmp, this.#file);
  }
}

/** What one user's active tasks hold: resources and count above BATCH, count in BATCH. */
export interface UserUsage {
  cpuMillicores: number;
  memoryBytes: number;
  accelerators: number;
  tasks: number;
  batchTasks: number;
}

/**
 * Usage per user from the workers' active commitments (their holder's band), user by job.
 * Pure: `userOf` maps a job id to its user (undefined: skipped).
 */
export function usageByUser(
  workers: Iterable<{ readonly active: ReadonlyMap<string, CommitmentLike> }>,
  userOf: (jobId: string) => string | undefined,
): Map<string, UserUsage> {
  const out = new Map<string, UserUsage>();
  for (const w of workers) {
    for (const c of w.active.values()) {
      const h = c.holder;
      const user = h && userOf(h.jobId);
      if (!h || user === undefined) continue;
      let u = out.get(user);
      if (!u) {
        out.set(
          user,
          u = { cpuMillicores: 0, memoryBytes: 0, accelerators: 0, tasks: 0, batchTasks: 0 },
        );
      }
      if (h.band >= 3) {
        u.batchTasks++;
        continue;
      }
      u.tasks++;
      u.cpuMillicores += c.cpuMillicores;
      u.memoryBytes += c.memoryBytes;
      u.accelerators += c.accelerators;
    }
  }
  return out;
}

/** The parts of a worker commitment usageByUser reads. */
export interface CommitmentLike {
  readonly cpuMillicores: number;
  readonly memoryBytes: number;
  readonly accelerators: number;
  readonly holder?: { readonly jobId: string; readonly band: Band };
}
