/**
 * Refresh loops: run a fetch-and-render function every `intervalMs`, never overlapping,
 * paused while the tab is hidden and run at once when it becomes visible again.
 * @module
 */
import { doc } from "./dom.ts";

/** What a poller reports after each run. */
export type PollStatus =
  | { readonly state: "ok"; readonly at: number }
  | { readonly state: "error"; readonly at: number; readonly error: string }
  | { readonly state: "paused" };

/** Refresh cadences (ms). */
export const LIST_INTERVAL_MS = 5000;
/** Refresh cadence of detail pages (ms). */
export const DETAIL_INTERVAL_MS = 2000;
/** Log following cadence (ms). */
export const LOG_INTERVAL_MS = 1000;

/** Runs `fn` now and then every `intervalMs` after the previous run finished. */
export class Poller {
  readonly #fn: (signal: AbortSignal) => Promise<void>;
  readonly #intervalMs: number;
  readonly #onStatus: ((s: PollStatus) => void) | undefined;
  readonly #abort = new AbortController();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running = false;
  #again = false;
  #stopped = false;
  readonly #onVisibility = () => {
    if (!doc().hidden) this.kick();
  };

  constructor(
    fn: (signal: AbortSignal) => Promise<void>,
    intervalMs: number,
    onStatus?: (s: PollStatus) => void,
  ) {
    this.#fn = fn;
    this.#intervalMs = intervalMs;
    this.#onStatus = onStatus;
  }

  /** Starts the loop with an immediate run. */
  start(): this {
    doc().addEventListener("visibilitychange", this.#onVisibility);
    void this.#run();
    return this;
  }

  /** Runs as soon as possible (after the current run, if one is in flight). */
  kick(): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#timer);
    void this.#run();
  }

  /** Stops the loop and aborts an in-flight run. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#abort.abort();
    doc().removeEventListener("visibilitychange", this.#onVisibility);
  }

  async #run(): Promise<void> {
    if (this.#stopped) return;
    if (doc().hidden) {
      this.#onStatus?.({ state: "paused" });
      return; // #onVisibility resumes.
    }
    this.#running = true;
    try {
      await this.#fn(this.#abort.signal);
      if (!this.#stopped) this.#onStatus?.({ state: "ok", at: Date.now() });
    } catch (e) {
      if (!this.#stopped) {
        this.#onStatus?.({ state: "error", at: Date.now(), error: errorMessage(e) });
      }
    } finally {
      this.#running = false;
    }
    if (this.#stopped) return;
    if (this.#again) {
      this.#again = false;
      void this.#run();
      return;
    }
    this.#timer = setTimeout(() => void this.#run(), this.#intervalMs);
  }
}

/** A readable message for an RPC or other error. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}
