/** The scheduler's input (snapshot.ts): gated jobs, bands, reserved workers, budgets. No I/O. */
import { assertEquals } from "../_helpers/assert.ts";
import { JobTable, noEffects } from "../../src/controller/state.ts";
import { Reservations } from "../../src/controller/reservations.ts";
import { clusterSnapshot } from "../../src/controller/snapshot.ts";
import { spec, workerTable } from "./_concern_fixtures.ts";

Deno.test("snapshot: a gated job asks for its reservation; others are jobs in their band", () => {
  const jobs = new JobTable();
  const workers = workerTable(2);
  const reservations = new Reservations({ save: () => {}, log: () => {} });
  const gated = jobs.submit(
    spec({ name: "gated", reservation: [{ resources: { cpuMillicores: 1000 } }] }),
    "",
    0,
    noEffects(),
  );
  jobs.submit(spec({ name: "batch", priority: 3, replicas: 2 }), "", 1, noEffects());
  reservations.claim(jobs.job(gated.jobId), 0, "w1");
  const s = clusterSnapshot({ jobs, workers, reservations, usage: () => new Map() });
  assertEquals(s.reservations, [{ jobId: gated.jobId, entries: [] }]);
  assertEquals(s.jobs.map((j) => [j.jobId, j.band, j.pendingTaskIndices]), [
    ["/alice/batch", 3, [0, 1]],
  ]);
  assertEquals(s.running, [], "nothing is preemptible while every pending job is BATCH");
  assertEquals(s.workers.map((w) => [w.id, w.reservedFor]), [["w0", undefined], [
    "w1",
    gated.jobId,
  ]]);
  assertEquals(s.maxBuildingPerWorker, 64, "the default window");
  assertEquals(s.budgets, undefined);
});

Deno.test("snapshot: resource budgets of users with pending jobs above BATCH, with usage", () => {
  const jobs = new JobTable();
  jobs.submit(spec({ name: "a" }), "", 0, noEffects());
  jobs.submit(spec({ name: "b", user: "bob", priority: 3 }), "", 0, noEffects());
  const s = clusterSnapshot({
    jobs,
    workers: workerTable(1),
    reservations: new Reservations({ save: () => {}, log: () => {} }),
    budgetOf: () => ({ users: ["*"], resources: { cpuMillicores: 1000 } }),
    usage: () => new Map([["alice", { cpuMillicores: 1, memoryBytes: 2, accelerators: 0 }]]),
  });
  assertEquals(s.budgets, { alice: { cpuMillicores: 1000 } });
  assertEquals(s.budgetUsage, { alice: { cpuMillicores: 1, memoryBytes: 2, accelerators: 0 } });
});

Deno.test("snapshot: a waiting job's view is reused pass after pass, and renewed when it changes", () => {
  const jobs = new JobTable();
  const reservations = new Reservations({ save: () => {}, log: () => {} });
  const sources = { jobs, workers: workerTable(1), reservations, usage: () => new Map() };
  jobs.submit(spec({ name: "a", replicas: 3 }), "", 0, noEffects());
  const first = clusterSnapshot(sources).jobs[0]!;
  assertEquals(clusterSnapshot(sources).jobs[0] === first, true);
  jobs.assign("/alice/a/1", "w0", 1);
  const next = clusterSnapshot(sources).jobs[0]!;
  assertEquals(next === first, false);
  assertEquals(next.pendingTaskIndices, [0, 2]);
  assertEquals(first.pendingTaskIndices, [0, 1, 2], "a view handed out is not changed");
  jobs.setBand(jobs.job("/alice/a"), 1, "over budget");
  assertEquals(clusterSnapshot(sources).jobs[0]!.band, 1);
});
