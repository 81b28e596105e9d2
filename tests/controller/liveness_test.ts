/**
 * Honest liveness (#16): a controller that was itself blocked does not count that time against its
 * workers. Heartbeat deadlines restart from its resumption; a worker that stays silent afterwards
 * is still declared dead after the usual timeout.
 */
import { create } from "@bufbuild/protobuf";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { Controller } from "../../src/controller/controller.ts";
import { RegisterWorkerRequestSchema } from "../../src/rpc/mod.ts";
import { ms, seconds, waitFor } from "../../src/time.ts";

/** Blocks the event loop (as a huge synchronous parse would) for `n` milliseconds. */
function blockFor(n: number): void {
  const end = performance.now() + n;
  while (performance.now() < end) {
    // busy: no timer, no I/O runs meanwhile
  }
}

Deno.test("a blocked controller declares no worker dead; silence after resumption still does", async () => {
  const dead: string[] = [];
  const c = new Controller({
    heartbeatInterval: ms(100),
    heartbeatFailureThreshold: 3,
    onWorkerDead: (id) => dead.push(id),
  });
  c.start();
  try {
    c.registerWorker(create(RegisterWorkerRequestSchema, {
      workerId: "w1",
      address: "http://127.0.0.1:1",
      resources: { cpuMillicores: 1000, memoryBytes: 2 ** 30 },
    }));
    // Let the monitor tick once with the worker fresh, then block for 10 timeouts.
    await new Promise((r) => setTimeout(r, 150));
    blockFor(3000);
    // The first ticks after the stall: the worker's deadline restarted from the resumption.
    await new Promise((r) => setTimeout(r, 150));
    assertEquals(dead.join(","), "", "no worker is declared dead for the controller's own stall");
    assertEquals(c.workers.workers.get("w1")?.healthy, true);
    assertEquals(c.stalls.count >= 1, true, "the stall was noticed");
    assert(c.stalls.lastMs >= 2500, `stall measured: ${c.stalls.lastMs} ms`);
    assert(c.recentLogs.some((l) => /controller was blocked for \d/.test(l)), "and logged");
    // Silence after the resumption still counts: dead after about 3 intervals.
    await waitFor(() => dead.includes("w1"), { timeout: seconds(5), what: "w1 declared dead" });
  } finally {
    await c.stop();
  }
});
