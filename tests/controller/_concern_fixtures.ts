/**
 * Fixtures shared by the per-concern controller tests: job specs and workers.
 * @module
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { type JobSpec, JobSpecSchema } from "../../src/rpc/mod.ts";
import { ResourcesSchema } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { WorkerTable } from "../../src/controller/workers.ts";
import { EndpointTable } from "../../src/controller/endpoints.ts";
import { Reconciler } from "../../src/controller/reconcile.ts";
import { FakeClock } from "../../src/time.ts";

/** A job spec running `true` as alice, with `init` on top. */
export function spec(init: MessageInitShape<typeof JobSpecSchema> = {}): JobSpec {
  return create(JobSpecSchema, {
    name: "job",
    user: "alice",
    entrypoint: { kind: { case: "command", value: { argv: ["true"] } } },
    ...init,
  } as MessageInitShape<typeof JobSpecSchema>);
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

/**
 * The parts of a scheduling pass context that tests and benches leave inert: no endpoints, logs,
 * transactions or write failures, a FakeClock, a fixed controller URL.
 */
export function inertPassParts() {
  return {
    endpoints: new EndpointTable(),
    reconciler: new Reconciler(),
    clock: new FakeClock(),
    write: {},
    log: () => {},
    logs: { system: () => {} },
    transactions: { record: () => {} },
    controllerUrl: () => "http://controller:10000",
  };
}
