#!/usr/bin/env -S deno run -A
/**
 * The `iris` executable: controller, worker, client and smoke test in one binary.
 * @module
 */
import { Interrupted, signalExitCode } from "./src/cli/interrupt.ts";

/** Prints `question [y/N] ` on stderr and reads one line of the terminal. */
async function confirm(question: string): Promise<boolean> {
  Deno.stderr.writeSync(new TextEncoder().encode(`${question} [y/N] `));
  const buf = new Uint8Array(256);
  const n = await Deno.stdin.read(buf);
  const answer = n === null ? "" : new TextDecoder().decode(buf.subarray(0, n)).trim();
  return /^y(es)?$/i.test(answer);
}

let started = false;

/** Runs `iris` with the process's arguments and exits (once, however often it is called). */
export async function runCli(): Promise<void> {
  if (started) return;
  started = true;
  if (Deno.args[0] === "--version" || Deno.args[0] === "version") {
    // Without loading the commands (RPC code, npm packages): the cheapest start there is.
    const { VERSION } = await import("./src/version.ts");
    console.log(`iris ${VERSION}`);
    return;
  }
  const { main } = await import("./src/cli/main.ts");
  const encoder = new TextEncoder();
  const write = (stream: { writeSync(p: Uint8Array): number }) => (text: string) => {
    const data = encoder.encode(text);
    let off = 0;
    while (off < data.length) off += stream.writeSync(data.subarray(off));
  };
  const abort = new AbortController();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  const onSignal = (sig: Deno.Signal) => {
    const first = abort.signal.reason;
    if (!(first instanceof Interrupted)) return abort.abort(new Interrupted(sig));
    // A further signal goes to a command that asked for it (job run: second Ctrl-C cancels);
    // otherwise it exits at once, for when graceful shutdown hangs.
    if (!first.deliver(sig)) Deno.exit(signalExitCode(sig));
  };
  const handlers = signals.map((sig) => [sig, () => onSignal(sig)] as const);
  for (const [sig, h] of handlers) Deno.addSignalListener(sig, h);
  const code = await main(Deno.args, {
    out: write(Deno.stdout),
    err: write(Deno.stderr),
    isTty: Deno.stdout.isTerminal(),
    confirm: Deno.stdin.isTerminal() ? confirm : undefined,
  }, abort.signal);
  for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);
  Deno.exit(code);
}

if (import.meta.main) await runCli();
