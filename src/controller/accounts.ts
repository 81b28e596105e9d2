/**
 * Account state the controller keeps beside its job store: per-user budgets set at run time
 * (SetUserBudget / `iris user budget set`), on top of the config's `controller.user_budgets`.
 * Persisted as one small JSON file in the state dir (`accounts.json`), written atomically
 * (temp file + rename), so a set budget survives a controller restart.
 * @module
 */
import { createHash } from "node:crypto";
import { budgetFor, type UserBudget } from "./budgets.ts";
import { type EnrolmentRecord, Enrolments } from "./enrolment.ts";
import { type Band, BAND_BATCH, type ResourceBudget } from "../types.ts";

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
  readonly users?: UserRecord[];
  readonly keys?: KeyRecord[];
  /** Live one-time enrolment tokens (hashes only). */
  readonly enrolments?: EnrolmentRecord[];
}

/** A user an admin created. */
export interface UserRecord {
  readonly user: string;
  readonly role: "user" | "admin";
  readonly createdAtMs: number;
}

/** An API key: only its SHA-256 is kept. */
export interface KeyRecord {
  readonly keyId: string;
  readonly user: string;
  readonly name: string;
  /** Role when no user record exists (a config-token user's own key). */
  readonly role: "user" | "admin";
  readonly sha256: string;
  readonly createdAtMs: number;
  /** 0: never. */
  readonly expiresAtMs: number;
}

/** Prefix of API keys: `iris-key-v1.<key id>.<secret>`. */
export const KEY_PREFIX = "iris-key-v1.";

/** The file name under the state dir. */
export const ACCOUNTS_FILE = "accounts.json";

/** Budgets from config plus those set at run time (which win for their user). */
export class Accounts {
  readonly #config: readonly UserBudget[];
  readonly #file?: string;
  readonly #set = new Map<string, UserBudget>();
  #claims: Record<string, (string | null)[]> = {};
  readonly #users = new Map<string, UserRecord>();
  readonly #keys = new Map<string, KeyRecord>();
  readonly #byHash = new Map<string, KeyRecord>();
  /** One-time enrolment tokens of new slices (saved with the rest). */
  readonly enrolments: Enrolments;
  /** Last use per key (memory only). */
  readonly #lastUsed = new Map<string, number>();

  /**
   * @param file JSON file to load and save; without one, set budgets last until restart.
   * @throws {Error} naming the file when it exists but cannot be read or parsed.
   */
  constructor(configBudgets: readonly UserBudget[], file?: string) {
    this.#config = configBudgets;
    this.#file = file;
    this.enrolments = new Enrolments([], () => this.#save(this.#set));
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
    for (const u of parsed.users ?? []) this.#users.set(u.user, u);
    for (const k of parsed.keys ?? []) {
      this.#keys.set(k.keyId, k);
      this.#byHash.set(k.sha256, k);
    }
    this.enrolments = new Enrolments(parsed.enrolments ?? [], () => this.#save(this.#set));
  }

  /** Users created by admins. */
  users(): UserRecord[] {
    return [...this.#users.values()].sort((a, b) => a.user < b.user ? -1 : 1);
  }

  user(name: string): UserRecord | undefined {
    return this.#users.get(name);
  }

  /** Creates (or changes the role of) a user; saved before returning. */
  createUser(user: string, role: "user" | "admin", nowMs: number): UserRecord {
    const rec = { user, role, createdAtMs: this.#users.get(user)?.createdAtMs ?? nowMs };
    this.#users.set(user, rec);
    this.#persist();
    return rec;
  }

  /** Deletes a user and revokes their keys; returns the revoked key count. */
  deleteUser(user: string): number {
    const keys = [...this.#keys.values()].filter((k) => k.user === user);
    this.#users.delete(user);
    for (const k of keys) this.#dropKey(k);
    this.#persist();
    return keys.length;
  }

  /**
   * Creates a key; the token is returned once and only its SHA-256 is stored.
   * @param expiresAtMs 0 for no expiry.
   */
  createKey(
    user: string,
    name: string,
    role: "user" | "admin",
    nowMs: number,
    expiresAtMs: number,
  ): { key: KeyRecord; token: string } {
    const keyId = Array.from(crypto.getRandomValues(new Uint8Array(6)))
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    const secret = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))
      .replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
    const token = `${KEY_PREFIX}${keyId}.${secret}`;
    const key: KeyRecord = {
      keyId,
      user,
      name,
      role,
      sha256: sha256Hex(token),
      createdAtMs: nowMs,
      expiresAtMs,
    };
    this.#keys.set(keyId, key);
    this.#byHash.set(key.sha256, key);
    this.#persist();
    return { key, token };
  }

  keys(user?: string): KeyRecord[] {
    return [...this.#keys.values()].filter((k) => user === undefined || k.user === user)
      .sort((a, b) => a.createdAtMs - b.createdAtMs || (a.keyId < b.keyId ? -1 : 1));
  }

  key(keyId: string): KeyRecord | undefined {
    return this.#keys.get(keyId);
  }

  lastUsed(keyId: string): number {
    return this.#lastUsed.get(keyId) ?? 0;
  }

  /** Revokes a key: the next request with it is refused. Saved before returning. */
  revokeKey(keyId: string): boolean {
    const k = this.#keys.get(keyId);
    if (!k) return false;
    this.#dropKey(k);
    this.#persist();
    return true;
  }

  #dropKey(k: KeyRecord): void {
    this.#keys.delete(k.keyId);
    this.#byHash.delete(k.sha256);
    this.#lastUsed.delete(k.keyId);
  }

  /**
   * Who an API key authenticates, or undefined (not a key, unknown, revoked or expired). The
   * role is the user record's when there is one (so a role change applies at once).
   */
  principalForKey(
    token: string,
    nowMs: number,
  ): { user: string; role: "user" | "admin"; keyId: string } | undefined {
    if (!token.startsWith(KEY_PREFIX)) return undefined;
    const k = this.#byHash.get(sha256Hex(token));
    if (!k || (k.expiresAtMs > 0 && nowMs >= k.expiresAtMs)) return undefined;
    this.#lastUsed.set(k.keyId, nowMs);
    return { user: k.user, role: this.#users.get(k.user)?.role ?? k.role, keyId: k.keyId };
  }

  #persist(): void {
    this.#save(this.#set);
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
      users: [...this.#users.values()],
      keys: [...this.#keys.values()],
      enrolments: this.enrolments.records(),
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
      if (h.band >= BAND_BATCH) {
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

function sha256Hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}
