/**
 * Restoring after a restart (restore.ts): the tables are loaded from the store, active attempts
 * await their worker's re-claim, workers come back reconnecting, and reservation claims are kept
 * only for live jobs on known workers.
 */
import { create } from "@bufbuild/protobuf";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { withTempDir } from "../_helpers/temp_dir.ts";
import { FakeClock } from "../../src/time.ts";
import { ResourcesSchema } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { JobTable, noEffects } from "../../src/controller/state.ts";
import { EndpointTable } from "../../src/controller/endpoints.ts";
import { StateStore } from "../../src/controller/store.ts";
import { Reconciler } from "../../src/controller/reconcile.ts";
import { Reservations } from "../../src/controller/reservations.ts";
import { attemptKey, WorkerTable } from "../../src/controller/workers.ts";
import { loadState, restoreClaims, type RestoreContext } from "../../src/controller/restore.ts";
import { spec } from "./_concern_fixtures.ts";

function tables(): RestoreContext & { lines: string[] } {
  const lines: string[] = [];
  return {
    jobs: new JobTable(),
    endpoints: new EndpointTable(),
    workers: new WorkerTable(),
    reconciler: new Reconciler(),
    log: (line) => lines.push(line),
    lines,
  };
}

Deno.test("restore: loaded active attempts await their worker, which comes back reconnecting", () =>
  withTempDir("iris-restore-", (dir) => {
    const clock = new FakeClock();
    const before = tables();
    before.workers.register({
      workerId: "w0",
      address: "http://10.0.0.1:9000",
      resources: create(ResourcesSchema, { cpuMillicores: 4000, memoryBytes: 2 ** 32 }),
      attributes: {},
      scaleGroup: "",
      sliceId: "",
    }, clock.now());
    const { jobId } = before.jobs.submit(spec({ replicas: 2 }), "r1", clock.now(), noEffects());
    const task = before.jobs.task(before.jobs.job(jobId).taskIds[0]!);
    const attempt = before.jobs.assign(task.taskId, "w0", clock.now());
    let store = StateStore.open(dir);
    try {
      store.flush(before.jobs, before.endpoints, before.workers);
    } finally {
      store.close();
    }

    const after = tables();
    store = StateStore.open(dir);
    try {
      assertEquals(loadState(after, store, clock.now()), 1);
    } finally {
      store.close();
    }
    assertEquals(after.jobs.tasks.size, 2);
    assertEquals(after.workers.workers.get("w0")?.reconnecting, true);
    assertEquals(after.reconciler.takeUnclaimed(), [attemptKey(task.taskId, attempt.attemptId)]);
    assert(
      after.lines.some((l) =>
        l.startsWith("loaded 1 job(s), 2 task(s), 0 endpoint(s), 1 worker(s)")
      ),
      after.lines.join("\n"),
    );
  }));

Deno.test("restore: reservation claims come back for live jobs on known workers only", () => {
  const ctx = tables();
  const clock = new FakeClock();
  const reserved = spec({ reservation: [{ resources: { cpuMillicores: 1000 } }] });
  const live = ctx.jobs.submit({ ...reserved, name: "live" }, "r1", clock.now(), noEffects());
  const done = ctx.jobs.submit({ ...reserved, name: "done" }, "r2", clock.now(), noEffects());
  ctx.jobs.terminate(done.jobId, "test", clock.now(), noEffects());
  ctx.workers.register({
    workerId: "w0",
    address: "http://10.0.0.1:9000",
    resources: create(ResourcesSchema, { cpuMillicores: 4000 }),
    attributes: {},
    scaleGroup: "",
    sliceId: "",
  }, clock.now());
  const reservations = new Reservations({ save: () => {}, log: () => {} });
  restoreClaims(
    ctx,
    reservations,
    new Map([[live.jobId, ["w0"]], [done.jobId, ["w1"]], ["/nobody/x", ["w0"]]]),
  );
  assertEquals([...reservations.reservedBy], [["w0", live.jobId]]);
  assertEquals(ctx.lines, ["restored the reservation claims of 1 job(s)"]);
});
