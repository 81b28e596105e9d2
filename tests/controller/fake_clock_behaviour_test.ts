/**
 * Controller behaviour on a FakeClock (#21), over Connect's in-memory transport: heartbeats and
 * liveness, a stalled controller, re-claim after a restart, gang retry, reservations and scheduling
 * timeouts. Each runs minutes of controller time in milliseconds and checks *when* things happen,
 * not only that they do. Real processes keep their own end-to-end tests (tests/e2e/).
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { FakeClockCluster } from "./_fake_clock_cluster.ts";
import { tempDir } from "../_helpers/temp_dir.ts";
import { StateStore } from "../../src/controller/store.ts";
import { JobSpecSchema, JobState, TaskState } from "../../src/rpc/mod.ts";
import { FakeClock, ms, seconds, waitFor } from "../../src/time.ts";

type SpecInit = Omit<MessageInitShape<typeof JobSpecSchema>, "$typeName">;

const job = (name: string, extra: SpecInit = {}) =>
  create(JobSpecSchema, {
    name,
    user: "alice",
    entrypoint: { kind: { case: "command", value: { argv: ["true"] } } },
    resources: { cpuMillicores: 1000 },
    ...extra,
  });

async function launch(c: FakeClockCluster, spec: ReturnType<typeof job>): Promise<string> {
  const { jobId } = await c.rpc.launchJob({ spec, requestId: spec.name });
  await c.clock.settle();
  return jobId;
}

Deno.test("liveness: a beating worker stays; a silent one is dead after 3 missed heartbeats and its task moves", async () => {
  await using c = new FakeClockCluster({ heartbeatInterval: seconds(1) });
  const dead: [string, number][] = [];
  const w1 = c.worker("w1", { cpu: 1 });
  const w2 = c.worker("w2", { cpu: 1 });
  await w1.register();
  const jobId = await launch(c, job("steady"));
  assertEquals(w1.runs.map((r) => [r.taskId, r.attemptId]), [[`${jobId}/0`, 0]]);
  await w2.register();
  w1.startBeating(seconds(1));
  w2.startBeating(seconds(1));
  // A minute of heartbeats: nothing happens.
  await c.clock.advance(seconds(60));
  assertEquals(c.controller.jobs.task(`${jobId}/0`).state, TaskState.RUNNING);
  assertEquals([...c.controller.workers.workers.keys()].sort(), ["w1", "w2"]);
  // w1 goes silent at t0: declared dead after three intervals, not before.
  w1.stopBeating();
  const t0 = c.clock.monotonic();
  await c.clock.advanceUntil(() => {
    if (!c.controller.workers.workers.has("w1")) dead.push(["w1", c.clock.monotonic() - t0]);
    return dead.length > 0;
  }, { step: ms(250), limit: seconds(30), what: "w1 declared dead" });
  const after = dead[0]![1];
  assert(after >= 3000 && after <= 4250, `declared dead ${after} ms after its last heartbeat`);
  assert(
    c.controller.recentLogs.some((l) => l.includes("worker w1 declared dead: missed 3 heartbeats")),
  );
  // Its attempt is WORKER_FAILED and the task is retried on w2 at once.
  await c.clock.advance(seconds(1));
  const task = c.controller.jobs.task(`${jobId}/0`);
  assertEquals(task.attempts.map((a) => [a.state, a.workerId]), [
    [TaskState.WORKER_FAILED, "w1"],
    [TaskState.RUNNING, "w2"],
  ]);
  assertEquals(w2.runs.map((r) => r.attemptId), [1]);
});

Deno.test("a worker RunTask cannot reach gets no placements until it heartbeats; the task runs elsewhere after one failed attempt", async () => {
  await using c = new FakeClockCluster({ heartbeatInterval: seconds(1) });
  const w1 = c.worker("w1", { cpu: 1 });
  const w2 = c.worker("w2", { cpu: 1 });
  await w1.register();
  // w1's host is gone, but it is not declared dead yet (that takes 3 missed heartbeats).
  w1.unreachable = true;
  const jobId = await launch(c, job("moves"));
  await c.clock.advance(ms(100));
  const task = c.controller.jobs.task(`${jobId}/0`);
  // One attempt failed on w1, and no pass placed another there (before, every pass did, each
  // failing at once, until the preemption budget was spent and the job ended WORKER_FAILED).
  assertEquals(task.attempts.map((a) => [a.state, a.workerId]), [[TaskState.WORKER_FAILED, "w1"]]);
  assertEquals(task.state, TaskState.PENDING);
  const info = (await c.rpc.listWorkers({})).workers.find((w) => w.workerId === "w1")!;
  assertEquals(info.healthy, false);
  assert(info.statusMessage.startsWith("unreachable"), info.statusMessage);
  // Another worker joins: the task runs there.
  await w2.register();
  await c.clock.advance(ms(100));
  assertEquals(task.attempts.map((a) => [a.state, a.workerId]), [
    [TaskState.WORKER_FAILED, "w1"],
    [TaskState.ASSIGNED, "w2"],
  ]);
  // w1 answers again and heartbeats: healthy, placeable, its message cleared.
  w1.unreachable = false;
  await w1.beat();
  const back = (await c.rpc.listWorkers({})).workers.find((w) => w.workerId === "w1")!;
  assertEquals([back.healthy, back.statusMessage], [true, ""]);
  const next = await launch(c, job("after"));
  await c.clock.advance(ms(100));
  assertEquals(c.controller.jobs.task(`${next}/0`).attempts.map((a) => a.workerId), ["w1"]);
});

Deno.test("liveness: a stalled controller declares nobody dead; silence after it resumes still does", async () => {
  await using c = new FakeClockCluster({
    heartbeatInterval: ms(100),
    heartbeatFailureThreshold: 3,
  });
  const w = c.worker("w1");
  await w.register();
  await c.clock.advance(ms(150));
  // The controller's event loop is blocked for 3 s (30 intervals): no timer and no RPC runs.
  c.clock.jump(seconds(3));
  await c.clock.runDue();
  await c.clock.advance(ms(150));
  assertEquals(c.controller.workers.workers.get("w1")?.healthy, true, "not dead for our own stall");
  assertEquals(c.controller.stalls.count, 1);
  assert(c.controller.stalls.lastMs >= 2800, `stall measured: ${c.controller.stalls.lastMs} ms`);
  assert(c.controller.recentLogs.some((l) => /controller was blocked for [23]\.\ds/.test(l)));
  // The worker never beats again: dead about three intervals after the resumption.
  const resumed = c.clock.monotonic();
  const at = await c.clock.advanceUntil(
    () => !c.controller.workers.workers.has("w1") && c.clock.monotonic(),
    { step: ms(50), limit: seconds(5), what: "w1 declared dead" },
  );
  assert(at - resumed <= 400, `dead ${at - resumed} ms after the resumption`);
});

Deno.test("re-claim: after a restart a re-registering worker keeps its attempt; one that never returns fails after the grace", async () => {
  await using dir = await tempDir("iris-fake-clock-reclaim-");
  const clock = new FakeClock();
  let store = StateStore.open(dir.path);
  let jobId = "";
  {
    await using before = new FakeClockCluster({ clock, store });
    const back = before.worker("w-back", { cpu: 1 });
    const gone = before.worker("w-gone", { cpu: 1 });
    await back.register();
    await gone.register();
    jobId = await launch(before, job("pair", { replicas: 2 }));
    await back.beat();
    await gone.beat();
    assertEquals(before.controller.jobs.job(jobId).state, JobState.RUNNING);
  }
  store.close();

  // The restart: the same fake time runs on; default grace = 5 s × 1.2 + 3 s = 9 s.
  store = StateStore.open(dir.path);
  await using after = new FakeClockCluster({ clock, store });
  assertEquals(after.controller.reclaimGrace, 9000);
  const back = after.worker("w-back", { cpu: 1 });
  after.worker("w-gone", { cpu: 1 });
  // w-back backs off for 4 s, then re-registers, re-claims and beats.
  await clock.advance(seconds(4));
  back.running.set(`${jobId}/0#0`, {
    taskId: `${jobId}/0`,
    attemptId: 0,
    request: undefined as never,
  });
  assertEquals((await back.beat()).reregister, true, "a heartbeat alone is not enough");
  back.startBeating(seconds(1));
  const t0 = `${jobId}/0`, t1 = `${jobId}/1`;
  // Within the grace nothing is lost.
  await clock.advance(seconds(4.5));
  assertEquals(after.controller.jobs.task(t1).attempts.length, 1, "w-gone still in its grace");
  // Past the grace: w-gone is dead, its attempt failed and retried; w-back's attempt runs on.
  await clock.advance(seconds(2));
  assertEquals(after.controller.workers.workers.has("w-gone"), false);
  assert(
    after.controller.recentLogs.some((l) =>
      l.includes("worker w-gone declared dead: did not re-register within 9.0s")
    ),
    after.controller.recentLogs.join("\n"),
  );
  assertEquals(after.controller.jobs.task(t0).attempts.map((a) => a.state), [TaskState.RUNNING]);
  assertEquals(after.controller.jobs.task(t1).attempts.map((a) => a.state), [
    TaskState.WORKER_FAILED,
  ]);
  assertEquals(after.controller.jobs.task(t1).state, TaskState.PENDING);
  // The retry waits for room: w-back (1 CPU) is busy with t0 until it ends.
  back.finish(t0, TaskState.SUCCEEDED);
  await clock.advance(seconds(2));
  assertEquals(back.runs.map((r) => [r.taskId, r.attemptId]), [[t1, 1]]);
  back.finish(t1, TaskState.SUCCEEDED);
  await clock.advance(seconds(2));
  assertEquals(after.controller.jobs.job(jobId).state, JobState.SUCCEEDED);
  store.close();
});

Deno.test("gang retry: one member failing kills its peers and the gang is placed again as a whole", async () => {
  await using c = new FakeClockCluster();
  const slice = { "tpu-name": "slice-a" };
  const workers = [0, 1].map((i) => c.worker(`w${i}`, { attributes: slice, sliceId: "slice-a" }));
  for (const w of workers) await w.register();
  for (const w of workers) w.startBeating(seconds(1));
  const jobId = await launch(
    c,
    job("gang", { replicas: 2, coscheduling: { groupBy: "tpu-name" }, maxRetriesFailure: 1 }),
  );
  await c.clock.advance(seconds(1));
  const hostsOf = (w: typeof workers[number]) =>
    w.runs.map((r) => [r.attemptId, r.env.IRIS_GANG_HOSTS]);
  assertEquals(hostsOf(workers[0]!), [[0, "w0.test,w1.test"]]);
  // Member 1 exits 3: member 0 is killed, both are retried together as attempt 1.
  workers[1]!.finish(`${jobId}/1`, TaskState.FAILED, 3);
  await c.clock.advance(seconds(3));
  assertEquals(workers[0]!.kills, [{ taskId: `${jobId}/0`, attemptId: 0 }]);
  const attempts = (i: number) =>
    c.controller.jobs.task(`${jobId}/${i}`).attempts.map((a) => a.state);
  assertEquals(attempts(0), [TaskState.KILLED, TaskState.RUNNING]);
  assertEquals(attempts(1), [TaskState.FAILED, TaskState.RUNNING]);
  assertEquals(c.controller.jobs.job(jobId).state, JobState.RUNNING);
  // The second failure exhausts the budget: the whole gang ends.
  workers[1]!.finish(`${jobId}/1`, TaskState.FAILED, 3);
  await c.clock.advance(seconds(3));
  assertEquals(c.controller.jobs.job(jobId).state, JobState.FAILED);
  assertEquals(workers[0]!.running.size, 0, "the surviving member was killed");
});

Deno.test("reservation: tasks wait until every entry holds a worker, then start on them", async () => {
  await using c = new FakeClockCluster();
  const w1 = c.worker("w1", { cpu: 2 });
  await w1.register();
  w1.startBeating(seconds(1));
  const entry = { resources: { cpuMillicores: 2000 } };
  const jobId = await launch(c, job("held", { reservation: [entry, entry] }));
  await c.clock.advance(seconds(30));
  assertEquals(c.controller.reservationProgress(jobId), { claimed: 1, total: 2 });
  assertEquals(w1.runs.length, 0, "no task starts on a partial reservation");
  const jobs = c.controller.jobs;
  const pending = jobs.pendingReasonOf(jobs.task(`${jobId}/0`))?.message ?? "";
  assert(pending.includes("waiting for its reservation: 1 of 2"), pending);
  const w2 = c.worker("w2", { cpu: 2 });
  await w2.register();
  w2.startBeating(seconds(1));
  await c.clock.advance(seconds(2));
  assertEquals(c.controller.reservationProgress(jobId), { claimed: 2, total: 2 });
  assertEquals(w1.runs.length + w2.runs.length, 1, "the job's one task started");
  assertEquals(c.controller.reservedWorkers().size, 2);
  // Once the job ends its workers are free again.
  const runner = w1.runs.length ? w1 : w2;
  runner.finish(`${jobId}/0`, TaskState.SUCCEEDED);
  await c.clock.advance(seconds(2));
  assertEquals(c.controller.jobs.job(jobId).state, JobState.SUCCEEDED);
  assertEquals(c.controller.reservedWorkers().size, 0);
});

Deno.test("scheduling timeout: a task that cannot be placed is UNSCHEDULABLE at its deadline, not before", async () => {
  await using c = new FakeClockCluster();
  const w = c.worker("small", { cpu: 1 });
  await w.register();
  w.startBeating(seconds(1));
  const jobId = await launch(
    c,
    job("too-big", { resources: { cpuMillicores: 8000 }, schedulingTimeoutMs: 30_000 }),
  );
  const task = () => c.controller.jobs.task(`${jobId}/0`);
  await c.clock.advance(seconds(29));
  assertEquals(task().state, TaskState.PENDING);
  await c.clock.advance(seconds(2));
  assertEquals(task().state, TaskState.UNSCHEDULABLE);
  assert(task().error.startsWith("not scheduled within 30.0s: "), task().error);
  assertEquals(c.controller.jobs.job(jobId).state, JobState.UNSCHEDULABLE);
  // A job that fits is placed at once and never times out.
  const ok = await launch(c, job("fits", { schedulingTimeoutMs: 1000 }));
  await c.clock.advance(seconds(60));
  assertEquals(c.controller.jobs.task(`${ok}/0`).state, TaskState.RUNNING);
});

Deno.test("building limit: a task held back by it is placed as soon as a heartbeat says a setup ended, not at the next tick", async () => {
  await using c = new FakeClockCluster({ heartbeatInterval: seconds(10), maxBuildingPerWorker: 1 });
  const w = c.worker("w1", { cpu: 4 });
  await w.register();
  const first = await launch(c, job("first"));
  const second = await launch(c, job("second"));
  assertEquals(w.runs.map((r) => r.taskId), [`${first}/0`], "one attempt in setup at a time");
  assertEquals(c.controller.jobs.task(`${second}/0`).state, TaskState.PENDING);
  // The first reports RUNNING (its setup is over): the second is dispatched with no time passing.
  await w.beat();
  await c.clock.settle();
  // The fake clock stands still; the RunTask, sent at the end of the pass's turn, may take a few
  // more turns through the in-memory transport.
  await waitFor(() => w.runs.length === 2, { timeout: seconds(5), what: "the second RunTask" });
  assertEquals(w.runs.map((r) => r.taskId), [`${first}/0`, `${second}/0`]);
});

Deno.test("building limit: a RunTask answer saying the attempt runs frees its place before any heartbeat", async () => {
  await using c = new FakeClockCluster({ heartbeatInterval: seconds(10), maxBuildingPerWorker: 1 });
  const w = c.worker("w1", { cpu: 4 });
  w.runTaskState = TaskState.RUNNING;
  await w.register();
  const ids = [];
  for (const name of ["a", "b", "c"]) ids.push(await launch(c, job(name)));
  await c.clock.settle();
  assertEquals(w.runs.map((r) => r.taskId), ids.map((id) => `${id}/0`));
  // The answer frees the place only: the state still comes by heartbeat.
  assertEquals(c.controller.jobs.task(`${ids[0]}/0`).state, TaskState.ASSIGNED);
  await w.beat();
  assertEquals(c.controller.jobs.task(`${ids[0]}/0`).state, TaskState.RUNNING);
});
