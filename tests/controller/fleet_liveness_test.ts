/**
 * Liveness at fleet scale (#20): the heartbeat interval the controller tells workers grows with the
 * fleet (at most `heartbeatMaxRate` heartbeats per second), workers keeping that cadence are never
 * declared dead, and one that stops is declared dead within the documented bound
 * (`interval × threshold + base interval`, liveness.ts). On a fake clock.
 */
import { create } from "@bufbuild/protobuf";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { Controller } from "../../src/controller/controller.ts";
import { StateStore } from "../../src/controller/store.ts";
import { deadBound, heartbeatIntervalFor } from "../../src/controller/heartbeat_rate.ts";
import { HeartbeatRequestSchema, RegisterWorkerRequestSchema } from "../../src/rpc/mod.ts";
import { FakeClock, ms, seconds } from "../../src/time.ts";

Deno.test("the heartbeat interval grows with the fleet, in 0.5 s steps", () => {
  assertEquals(heartbeatIntervalFor(seconds(1), 1, 1000), seconds(1));
  assertEquals(heartbeatIntervalFor(seconds(1), 1000, 1000), seconds(1));
  assertEquals(heartbeatIntervalFor(seconds(1), 1001, 1000), seconds(1.5));
  assertEquals(heartbeatIntervalFor(seconds(1), 10_000, 1000), seconds(10));
  assertEquals(heartbeatIntervalFor(seconds(1), 30_000, 1000), seconds(30));
  assertEquals(heartbeatIntervalFor(seconds(20), 10_000, 1000), seconds(20));
  assertEquals(deadBound(seconds(10), 3, seconds(1)), seconds(31));
});

Deno.test("a large fleet is told a longer interval; a stopped worker dies within the bound", async () => {
  const clock = new FakeClock();
  const dead = new Map<string, number>();
  const base = seconds(1);
  const threshold = 3;
  const c = new Controller({
    clock,
    heartbeatInterval: base,
    heartbeatFailureThreshold: threshold,
    heartbeatMaxRate: 10,
    onWorkerDead: (id) => dead.set(id, clock.now()),
  });
  c.start();
  try {
    const told = new Map<string, number>();
    for (let i = 0; i < 50; i++) {
      const res = c.registerWorker(create(RegisterWorkerRequestSchema, {
        workerId: `w${i}`,
        address: `http://127.0.0.1:${1000 + i}`,
        resources: { cpuMillicores: 1000, memoryBytes: 2 ** 30 },
      }));
      told.set(`w${i}`, res.heartbeatIntervalMs);
    }
    // 50 workers at ≤ 10 heartbeats/s: 5 s (the first registrations were told less).
    const interval = heartbeatIntervalFor(base, 50, 10);
    assertEquals(interval, seconds(5));
    assertEquals(told.get("w49"), interval);
    assertEquals(told.get("w0"), base, "a fleet of one gets the configured interval");
    const beat = (id: string) =>
      c.heartbeat(create(HeartbeatRequestSchema, { workerId: id })).heartbeatIntervalMs;
    // Everyone heartbeats once (and learns 5 s); then all but w0 keep that cadence.
    for (let i = 0; i < 50; i++) assertEquals(beat(`w${i}`), interval);
    const stoppedAt = clock.now();
    const bound = deadBound(interval, threshold, base);
    for (let t = 0; t < 40_000; t += 1000) {
      await clock.advance(ms(1000));
      if ((t + 1000) % interval === 0) { for (let i = 1; i < 50; i++) beat(`w${i}`); }
    }
    assertEquals([...dead.keys()], ["w0"], "only the stopped worker is declared dead");
    const after = dead.get("w0")! - stoppedAt;
    assert(after <= bound, `declared dead ${after} ms after its last heartbeat (bound ${bound})`);
    assert(after > interval * threshold, `not before ${threshold} intervals (${after} ms)`);
    assert(
      c.recentLogs.some((l) => l.includes("w0 declared dead: missed 3 heartbeats (5.0s apart)")),
    );
  } finally {
    await c.stop();
  }
});

Deno.test("after a restart, the re-claim grace covers one interval of the restored fleet", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-fleet-liveness-" });
  try {
    const opts = { heartbeatInterval: seconds(1), heartbeatMaxRate: 1 };
    {
      const store = StateStore.open(dir);
      const c = new Controller({ ...opts, store });
      for (let i = 0; i < 20; i++) {
        c.registerWorker(create(RegisterWorkerRequestSchema, {
          workerId: `w${i}`,
          address: `http://127.0.0.1:${1000 + i}`,
          resources: { cpuMillicores: 1000, memoryBytes: 2 ** 30 },
        }));
      }
      await c.stop();
      store.close();
    }
    const store = StateStore.open(dir);
    const c = new Controller({ ...opts, store });
    try {
      // 20 workers at ≤ 1 heartbeat/s heartbeat every 20 s: the grace (9 s by default) covers
      // one such interval plus the margin, so none is declared lost before it could call.
      assertEquals(c.workers.workers.size, 20);
      assertEquals(c.reclaimGrace, seconds(23));
    } finally {
      await c.stop();
      store.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
