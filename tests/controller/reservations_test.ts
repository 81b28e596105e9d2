/** Reservations (reservations.ts): claims, the gate, release, dead workers, restore. No I/O. */
import { assertEquals } from "../_helpers/assert.ts";
import { JobTable, noEffects } from "../../src/controller/state.ts";
import {
  type Claims,
  gateReason,
  isGated,
  Reservations,
} from "../../src/controller/reservations.ts";
import { spec } from "./_concern_fixtures.ts";

function setup() {
  const jobs = new JobTable();
  const { jobId } = jobs.submit(
    spec({
      replicas: 2,
      reservation: [{ resources: { cpuMillicores: 1000 } }, { resources: { cpuMillicores: 2000 } }],
    }),
    "",
    0,
    noEffects(),
  );
  const saved: Claims[] = [];
  const logs: string[] = [];
  const r = new Reservations({
    save: (c) => saved.push(new Map([...c].map(([k, v]) => [k, [...v]]))),
    log: (l) => logs.push(l),
  });
  return { jobs, job: jobs.job(jobId), r, saved, logs };
}

Deno.test("reservations: the claim of the last entry completes the reservation; a worker holds one job", () => {
  const { job, r } = setup();
  assertEquals(isGated(job), true);
  assertEquals(r.progress(job), { claimed: 0, total: 2 });
  assertEquals(r.request(job).entries.map((e) => e.index), [0, 1]);
  assertEquals(r.claim(job, 0, "w0"), false);
  assertEquals(r.claim(job, 0, "w1"), false, "an entry claimed already");
  assertEquals(r.claim(job, 1, "w0"), false, "a worker held already");
  assertEquals(r.request(job).entries.map((e) => e.index), [1]);
  assertEquals(r.claim(job, 1, "w1"), true);
  assertEquals(r.progress(job), { claimed: 2, total: 2 });
  assertEquals([...r.reservedBy], [["w0", job.jobId], ["w1", job.jobId]]);
});

Deno.test("reservations: a dead worker frees its entry, the job's end releases all, each saved", () => {
  const { job, r, saved } = setup();
  r.claim(job, 0, "w0");
  r.claim(job, 1, "w1");
  r.workerGone("w0");
  assertEquals(r.progress(job), { claimed: 1, total: 2 });
  assertEquals(saved.at(-1)?.get(job.jobId), [undefined, "w1"]);
  r.workerGone("w9"); // holds nothing: not saved
  assertEquals(saved.length, 1);
  r.release(job.jobId);
  assertEquals(r.reservedBy.size, 0);
  assertEquals(saved.at(-1)?.size, 0);
});

Deno.test("reservations: restore keeps claims of live jobs on known workers only", () => {
  const { job, r } = setup();
  const n = r.restore(
    new Map([[job.jobId, ["w0", "gone"]], ["/alice/ended", ["w1"]]]),
    (id) => id === job.jobId,
    (w) => w !== "gone",
  );
  assertEquals(n, 1);
  assertEquals(r.progress(job), { claimed: 1, total: 2 });
  assertEquals(r.reservedBy.has("w1"), false);
});

Deno.test("reservations: a failed save is logged, the claims stay", () => {
  const logs: string[] = [];
  const r = new Reservations({
    save: () => {
      throw new Error("disk full");
    },
    log: (l) => logs.push(l),
  });
  const { job } = setup();
  r.claim(job, 0, "w0");
  r.save();
  assertEquals(logs.at(-1), "saving reservation claims failed: disk full");
  assertEquals(r.progress(job).claimed, 1);
});

Deno.test("reservations: the gate's pending reason says how many entries hold a worker", () => {
  assertEquals(gateReason({ claimed: 1, total: 3 }, 5), {
    code: "reserved",
    message: "waiting for its reservation: 1 of 3 worker(s) claimed; tasks start once all are held",
    workersConsidered: 5,
  });
});
