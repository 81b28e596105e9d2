/**
 * One-time enrolment tokens (gcp with auth): the autoscaler issues one per slice it creates and
 * puts it in the slice's startup script; each of the slice's workers trades it once for the
 * worker token (EnrolWorker). A token is good for `uses` workers of its slice until it expires;
 * only its SHA-256 is kept, in memory (a controller restart voids unused tokens: such a slice
 * misses its init timeout and is replaced).
 * @module
 */
import { createHash } from "node:crypto";

/** Prefix of enrolment tokens. */
export const ENROL_PREFIX = "iris-enrol-v1.";

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

  /** A fresh token for `uses` workers of `sliceId`, valid until `expiresAtMs`. */
  issue(sliceId: string, uses: number, expiresAtMs: number): string {
    const secret = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))
      .replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
    const token = `${ENROL_PREFIX}${secret}`;
    this.#byHash.set(sha(token), { sliceId, usesLeft: uses, expiresAtMs, workers: new Set() });
    return token;
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
    return undefined;
  }

  /** Forgets tokens of a slice (terminated) and expired ones. */
  drop(sliceId: string | undefined, nowMs: number): void {
    for (const [h, e] of this.#byHash) {
      if (e.sliceId === sliceId || nowMs >= e.expiresAtMs) this.#byHash.delete(h);
    }
  }
}
