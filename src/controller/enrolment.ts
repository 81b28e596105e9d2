/**
 * One-time enrolment tokens (gcp with auth): the autoscaler issues one per slice it creates and
 * puts it in the slice's startup script; each of the slice's workers trades it once for the
 * worker token (EnrolWorker). A token is good for `uses` workers of its slice until it expires.
 * Only its SHA-256 is kept, saved with the accounts (accounts.json) on every issue and use, so a
 * slice still booting when the controller restarts can enrol with the new controller.
 * @module
 */
import { createHash } from "node:crypto";

/** Prefix of enrolment tokens. */
export const ENROL_PREFIX = "iris-enrol-v1.";

/** One issued token, as saved (its hash, never the token). */
export interface EnrolmentRecord {
  readonly sha256: string;
  readonly sliceId: string;
  readonly usesLeft: number;
  readonly expiresAtMs: number;
  /** Workers that have enrolled with it. */
  readonly workers: readonly string[];
}

interface Enrolment {
  readonly sliceId: string;
  usesLeft: number;
  readonly expiresAtMs: number;
  readonly workers: Set<string>;
}

const sha = (t: string) => createHash("sha256").update(t, "utf8").digest("hex");

/** Issued enrolment tokens by hash. */
export class Enrolments {
  readonly #byHash = new Map<string, Enrolment>();
  readonly #changed: () => void;

  /**
   * @param saved tokens saved before a restart.
   * @param changed called after every change (to save them).
   */
  constructor(saved: readonly EnrolmentRecord[] = [], changed: () => void = () => {}) {
    for (const r of saved) {
      this.#byHash.set(r.sha256, {
        sliceId: r.sliceId,
        usesLeft: r.usesLeft,
        expiresAtMs: r.expiresAtMs,
        workers: new Set(r.workers),
      });
    }
    this.#changed = changed;
  }

  /** The live tokens, to save. */
  records(): EnrolmentRecord[] {
    return [...this.#byHash].map(([sha256, e]) => ({
      sha256,
      sliceId: e.sliceId,
      usesLeft: e.usesLeft,
      expiresAtMs: e.expiresAtMs,
      workers: [...e.workers],
    }));
  }

  /** A fresh token for `uses` workers of `sliceId`, valid until `expiresAtMs`. */
  issue(sliceId: string, uses: number, expiresAtMs: number, nowMs = Date.now()): string {
    const secret = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))
      .replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
    const token = `${ENROL_PREFIX}${secret}`;
    this.#dropExpired(nowMs);
    this.#byHash.set(sha(token), { sliceId, usesLeft: uses, expiresAtMs, workers: new Set() });
    this.#changed();
    return token;
  }

  #dropExpired(nowMs: number): void {
    for (const [h, e] of this.#byHash) if (nowMs >= e.expiresAtMs) this.#byHash.delete(h);
  }

  /** The slice a live token was issued for, or undefined (unknown, used up or expired). */
  sliceOf(token: string, nowMs: number): string | undefined {
    if (!token.startsWith(ENROL_PREFIX)) return undefined;
    const e = this.#byHash.get(sha(token));
    if (!e || e.usesLeft <= 0 || nowMs >= e.expiresAtMs) return undefined;
    return e.sliceId;
  }

  /**
   * Uses the token for `workerId` (which must belong to its slice and not have enrolled before).
   * @returns an error message, or undefined when the worker may have the worker token.
   */
  redeem(token: string, workerId: string, nowMs: number): string | undefined {
    const e = this.#byHash.get(sha(token));
    if (!e || e.usesLeft <= 0 || nowMs >= e.expiresAtMs) {
      return "enrolment token unknown, used or expired";
    }
    if (!workerId.startsWith(e.sliceId)) {
      return `worker ${workerId} is not of slice ${e.sliceId}, which the token was issued for`;
    }
    if (e.workers.has(workerId)) return `worker ${workerId} has enrolled already`;
    e.workers.add(workerId);
    e.usesLeft--;
    if (e.usesLeft === 0) this.#byHash.delete(sha(token));
    this.#changed();
    return undefined;
  }

  /** Forgets tokens of a slice (terminated) and expired ones. */
  drop(sliceId: string | undefined, nowMs: number): void {
    const before = this.#byHash.size;
    for (const [h, e] of this.#byHash) {
      if (e.sliceId === sliceId || nowMs >= e.expiresAtMs) this.#byHash.delete(h);
    }
    if (this.#byHash.size !== before) this.#changed();
  }
}
