/**
 * The reporter's heartbeat cadence (src/worker/reporter.ts): after a registration, and whenever
 * the controller tells a new interval, the next wait is a random part of the interval, so workers
 * that registered together (or heard a longer interval together) do not heartbeat in step.
 */
import { create } from "@bufbuild/protobuf";
import {
  type ControllerClient,
  HeartbeatRequestSchema,
  HeartbeatResponseSchema,
  RegisterWorkerRequestSchema,
  RegisterWorkerResponseSchema,
} from "../../src/rpc/mod.ts";
import { Reporter } from "../../src/worker/reporter.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { assertEquals } from "../_helpers/assert.ts";

Deno.test("reporter: a registration and a new interval spread the next heartbeat over the interval", async () => {
  // Intervals of a minute: without the spread, no second heartbeat would come within the test.
  const told = [60_000, 61_000, 61_000];
  let beats = 0;
  const client = {
    registerWorker: () =>
      Promise.resolve(create(RegisterWorkerResponseSchema, { heartbeatIntervalMs: 60_000 })),
    heartbeat: () =>
      Promise.resolve(
        create(HeartbeatResponseSchema, { heartbeatIntervalMs: told[Math.min(beats++, 2)] }),
      ),
  } as unknown as ControllerClient;
  const draws: number[] = [];
  const reporter = new Reporter({
    client,
    controllerUrl: "http://fake",
    interval: seconds(1),
    registerRequest: () => create(RegisterWorkerRequestSchema, { workerId: "w" }),
    collect: () => ({
      request: create(HeartbeatRequestSchema, { workerId: "w" }),
      commit: () => {},
      more: false,
    }),
    onRegistered: () => {},
    onKill: () => {},
    log: () => {},
    // The spread's draw: the earliest point of the interval.
    random: () => {
      draws.push(beats);
      return 0;
    },
  });
  try {
    // 1: right after registering; 2: after the registration's spread; 3: after the new interval
    // (61 s) told in answer 2; answer 3 repeats it, so the next wait is the whole interval.
    await waitFor(() => beats >= 3, { timeout: seconds(10), what: "three heartbeats" });
    assertEquals(draws, [1, 2]);
  } finally {
    await reporter.stop();
  }
  assertEquals(beats, 3);
});
