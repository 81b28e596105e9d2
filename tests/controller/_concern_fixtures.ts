/**
 * Fixtures shared by the per-concern controller tests: job specs, a manual clock and workers.
 * @module
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { type JobSpec, JobSpecSchema } from "../../src/rpc/mod.ts";
import { ResourcesSchema } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import type { Clock, Duration, Timestamp } from "../../src/time.ts";
import { WorkerTable } from "../../src/controller/workers.ts";

/** A job spec running `true` as alice, with `init` on top. */
export function spec(init: MessageInitShape<typeof JobSpecSchema> = {}): JobSpec {
  return create(JobSpecSchema, {
    name: "job",
    user: "alice",
    entrypoint: { kind: { case: "command", value: { argv: ["true"] } } },
    ...init,
  } as MessageInitShape<typeof JobSpecSchema>);
}

/**
 * A clock that moves only when told. Its sleeps never end: wake-ups the code under test asks for
 * (e.g. a coalesced scheduling pass) don't run; tests call the step they check themselves.
 */
export class ManualClock implements Clock {
  wall = 1_000_000;
  mono = 0;
  now(): Timestamp {
    return this.wall as Timestamp;
  }
  monotonic(): number {
    return this.mono;
  }
  /** Moves both clocks forward. */
  advance(d: number): void {
    this.wall += d;
    this.mono += d;
  }
  sleep(_d: Duration, _signal?: AbortSignal): Promise<void> {
    return new Promise(() => {});
  }
}

/** A worker table with `n` 4-CPU workers w0..w(n-1) registered at `nowMs`. */
export function workerTable(n: number, nowMs = 0): WorkerTable {
  const t = new WorkerTable();
  for (let i = 0; i < n; i++) {
    t.register({
      workerId: `w${i}`,
      address: `http://10.0.0.${i + 1}:9000`,
      resources: create(ResourcesSchema, { cpuMillicores: 4000, memoryBytes: 8 * 2 ** 30 }),
      attributes: {},
      scaleGroup: "",
      sliceId: "",
    }, nowMs);
  }
  return t;
}
