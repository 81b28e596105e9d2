/**
 * Liveness (liveness.ts) on a fake clock, moved by `jump` (no timer fires): expiry, stalls, the
 * re-claim grace. No I/O.
 */
import { assertEquals } from "../_helpers/assert.ts";
import { FakeClock, ms, seconds } from "../../src/time.ts";
import { Liveness } from "../../src/controller/liveness.ts";
import { WorkerTable } from "../../src/controller/workers.ts";
import { workerTable } from "./_concern_fixtures.ts";

function setup(workers: WorkerTable, clock: FakeClock) {
  const l = new Liveness({
    clock,
    heartbeatInterval: seconds(1),
    failureThreshold: 3,
    reclaimGrace: seconds(10),
  });
  l.start();
  return { l, workers };
}

Deno.test("liveness: a worker silent for more than threshold × interval is due", () => {
  const clock = new FakeClock();
  const { l, workers } = setup(workerTable(2, clock.now()), clock);
  for (let i = 0; i < 3; i++) {
    clock.jump(ms(1000));
    assertEquals(l.tick(), undefined, "ticks on time");
  }
  assertEquals(l.due(workers, clock.now()), []);
  workers.workers.get("w1")!.lastHeartbeatMs = clock.now();
  clock.jump(ms(1));
  assertEquals(l.due(workers, clock.now()), [{
    workerId: "w0",
    reason: "missed 3 heartbeats (1.0s apart)",
  }]);
});

Deno.test("liveness: a tick more than an interval late is a stall; deadlines restart from it", () => {
  const clock = new FakeClock();
  const { l, workers } = setup(workerTable(1, clock.now()), clock);
  clock.jump(ms(5000));
  assertEquals(l.tick(), ms(4000));
  assertEquals(l.stalls, { count: 1, lastMs: 4000 });
  assertEquals(l.due(workers, clock.now()), [], "the stall restarted the deadline");
  clock.jump(ms(1000));
  assertEquals(l.tick(), undefined, "on time");
  clock.jump(ms(2001));
  assertEquals(l.due(workers, clock.now()).map((d) => d.workerId), ["w0"]);
});

Deno.test("liveness: a reconnecting worker gets the re-claim grace, then is due", () => {
  const clock = new FakeClock();
  const workers = new WorkerTable();
  workers.restore([{
    workerId: "w0",
    address: "http://10.0.0.1:9000",
    total: { cpuMillicores: 1, memoryBytes: 1, accelerators: 0 },
    accelerator: { kind: "cpu", variant: "", count: 0 },
    attributes: {},
    scaleGroup: "",
    sliceId: "",
    registeredAtMs: 0,
  }], clock.now());
  const { l } = setup(workers, clock);
  clock.jump(ms(9999));
  assertEquals(l.inGrace(clock.now()), true);
  assertEquals(l.due(workers, clock.now()), []);
  clock.jump(ms(1));
  assertEquals(l.due(workers, clock.now()), [{
    workerId: "w0",
    reason: "did not re-register within 10.0s of a controller restart",
  }]);
});
