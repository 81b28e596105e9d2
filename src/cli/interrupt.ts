/**
 * Process signals as command abort reasons. No imports: cli.ts loads this before anything else.
 * @module
 */

/**
 * Why a command's AbortSignal fired: the process got `signalName`. A command that wants to hear a
 * second signal (a second Ctrl-C) calls `next()`; without a listener, a second signal exits at once.
 */
export class Interrupted extends Error {
  readonly #waiters: ((sig: Deno.Signal) => void)[] = [];
  constructor(readonly signalName: Deno.Signal) {
    super(`interrupted by ${signalName}`);
    this.name = "Interrupted";
  }

  /** Resolves with the next signal, or undefined after `within` ms. */
  next(within: number): Promise<Deno.Signal | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const i = this.#waiters.indexOf(done);
        if (i >= 0) this.#waiters.splice(i, 1);
        resolve(undefined);
      }, within);
      const done = (sig: Deno.Signal) => {
        clearTimeout(timer);
        resolve(sig);
      };
      this.#waiters.push(done);
    });
  }

  /** Delivers a further signal; false when nobody listens (the caller then exits). */
  deliver(sig: Deno.Signal): boolean {
    const waiters = this.#waiters.splice(0);
    for (const w of waiters) w(sig);
    return waiters.length > 0;
  }
}

/** The process signal behind an aborted command signal, if any. */
export function interruptOf(signal: AbortSignal): Interrupted | undefined {
  return signal.aborted && signal.reason instanceof Interrupted ? signal.reason : undefined;
}

/** Exit code for a process ended by `sig` (128 + its number). */
export function signalExitCode(sig: Deno.Signal | undefined): number {
  return sig === "SIGTERM" ? 143 : sig === "SIGHUP" ? 129 : 130;
}
