#!/usr/bin/env -S deno run -A
/**
 * The `iris` executable: controller, worker, client and smoke test in one binary.
 * @module
 */
import { main } from "./src/cli/main.ts";

if (import.meta.main) {
  const encoder = new TextEncoder();
  const write = (stream: { writeSync(p: Uint8Array): number }) => (text: string) => {
    const data = encoder.encode(text);
    let off = 0;
    while (off < data.length) off += stream.writeSync(data.subarray(off));
  };
  const abort = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    // A second Ctrl-C exits at once, for when graceful shutdown hangs.
    if (++interrupts > 1) Deno.exit(130);
    abort.abort(new Error("interrupted"));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const code = await main(Deno.args, {
    out: write(Deno.stdout),
    err: write(Deno.stderr),
    isTty: Deno.stdout.isTerminal(),
  }, abort.signal);
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
  Deno.exit(code);
}
