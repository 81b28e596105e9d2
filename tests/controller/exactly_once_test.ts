/**
 * The controller's side of exactly-once execution (controller.ts): final updates that reach a
 * restarted controller are applied once their worker re-registers (and listed as `finished` in the
 * registration, they are not declared lost meanwhile); a worker that comes back without an
 * attempt has it failed at once and its resources freed; a commit that fails leaves no trace, the
 * call answers `unavailable`, nothing is dispatched, the controller reports itself unhealthy and
 * recovers on its own; request ids are per owner and survive RECREATE.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { Controller } from "../../src/controller/controller.ts";
import { StateStore } from "../../src/controller/store.ts";
import {
  ExistingJobPolicy,
  HeartbeatRequestSchema,
  JobSpecSchema,
  RegisterWorkerRequestSchema,
  type RunTaskRequest,
  RunTaskResponseSchema,
  type RunTasksRequest,
  RunTasksResponseSchema,
  TaskState,
  type TaskUpdate,
  TaskUpdateSchema,
  type WorkerClient,
} from "../../src/rpc/mod.ts";
import { ms, seconds, waitFor } from "../../src/time.ts";
import { withTempDir } from "../_helpers/temp_dir.ts";
import { UnavailableError } from "../../src/errors.ts";

/** Records RunTask calls and accepts them. */
function recordingClient(sent: RunTaskRequest[]): () => WorkerClient {
  return () =>
    ({
      runTask: (req: RunTaskRequest) => {
        sent.push(req);
        return Promise.resolve(create(RunTaskResponseSchema, { accepted: true }));
      },
      runTasks: (req: RunTasksRequest) => {
        sent.push(...req.attempts);
        return Promise.resolve(create(RunTasksResponseSchema, {
          results: req.attempts.map(() => create(RunTaskResponseSchema, { accepted: true })),
        }));
      },
      killTask: () => Promise.resolve({}),
    }) as unknown as WorkerClient;
}

function controller(
  store: StateStore | undefined,
  sent: RunTaskRequest[] = [],
  placeAtSubmit?: boolean,
): Controller {
  return new Controller({
    store,
    placeAtSubmit,
    heartbeatInterval: ms(50),
    workerReconnectMax: ms(300),
    reclaimMargin: ms(200),
    workerClientFactory: recordingClient(sent),
  });
}

type Ref = { taskId: string; attemptId: number };

function register(c: Controller, running: Ref[] = [], finished: Ref[] = []) {
  return c.registerWorker(create(RegisterWorkerRequestSchema, {
    workerId: "w1",
    address: "http://127.0.0.1:1",
    resources: { cpuMillicores: 4000, memoryBytes: 2 ** 32 },
    running,
    finished,
  }));
}

function update(taskId: string, state: TaskState, exitCode = 0): TaskUpdate {
  return create(TaskUpdateSchema, {
    taskId,
    attemptId: 0,
    state,
    exitCode,
    finishedAtMs: state === TaskState.RUNNING ? 0 : Date.now(),
    startedAtMs: Date.now(),
    logs: [{ timestampMs: Date.now(), stream: "stdout", text: `${TaskState[state]} line` }],
  });
}

function beat(c: Controller, updates: TaskUpdate[], running: Ref[] = [], finished: Ref[] = []) {
  return c.heartbeat(
    create(HeartbeatRequestSchema, { workerId: "w1", updates, running, finished }),
  );
}

type SpecInit = Omit<MessageInitShape<typeof JobSpecSchema>, "$typeName">;

const job = (name: string, extra: SpecInit = {}) =>
  create(JobSpecSchema, {
    name,
    user: "alice",
    entrypoint: { kind: { case: "command", value: { argv: ["true"] } } },
    resources: { cpuMillicores: 500 },
    maxRetriesFailure: 0,
    ...extra,
  });

function withDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  return withTempDir("iris-exactly-once-", fn);
}

Deno.test("ends that happened while the controller was down are applied once, after re-registration", () =>
  withDir(async (dir) => {
    let store = StateStore.open(dir);
    const before = controller(store);
    register(before);
    const { jobId } = before.launchJob(job("three", { replicas: 3, maxTaskFailures: 1 }), "r1");
    const [t0, t1, t2] = before.jobs.job(jobId).taskIds as [string, string, string];
    // Placed at submit (the scheduler was idle).
    assertEquals([t0, t1, t2].map((t) => before.jobs.task(t).state), [
      TaskState.ASSIGNED,
      TaskState.ASSIGNED,
      TaskState.ASSIGNED,
    ]);
    beat(before, [t0, t1, t2].map((t) => update(t, TaskState.RUNNING)));
    await before.stop();
    store.close();

    store = StateStore.open(dir);
    const after = controller(store);
    after.start();
    try {
      // During the outage t0 exited 3 and t1 exited 0; t2 still runs. The first heartbeat of
      // the worker carries both ends: the restarted controller applies nothing and asks it to
      // register again.
      const ends = [update(t0, TaskState.FAILED, 3), update(t1, TaskState.SUCCEEDED)];
      assertEquals(beat(after, ends).reregister, true);
      assertEquals(after.jobs.task(t0).state, TaskState.RUNNING);
      // It registers listing t2 as running and t0, t1 as ended but unacknowledged.
      register(after, [{ taskId: t2, attemptId: 0 }], [{ taskId: t0, attemptId: 0 }, {
        taskId: t1,
        attemptId: 0,
      }]);
      // Well past the re-claim grace (the worker heartbeating): nothing is declared lost while
      // the ends are on their way.
      const until = Date.now() + after.reclaimGrace + 300;
      const ended = [{ taskId: t0, attemptId: 0 }, { taskId: t1, attemptId: 0 }];
      while (Date.now() < until) {
        beat(after, [], [{ taskId: t2, attemptId: 0 }], ended);
        await new Promise((r) => setTimeout(r, 30));
      }
      assertEquals(after.jobs.task(t0).attempts.length, 1);
      assertEquals(after.jobs.task(t0).attempts[0]!.state, TaskState.RUNNING);
      assertEquals(beat(after, ends, [{ taskId: t2, attemptId: 0 }]).reregister, false);
      beat(after, [update(t2, TaskState.SUCCEEDED)]);
      assertEquals(
        [t0, t1, t2].map((t) => [after.jobs.task(t).state, after.jobs.task(t).attempts.length]),
        [[TaskState.FAILED, 1], [TaskState.SUCCEEDED, 1], [TaskState.SUCCEEDED, 1]],
      );
      assertEquals(after.jobs.task(t0).attempts[0]!.exitCode, 3);
      // A resent end (its answer was lost) changes nothing.
      beat(after, ends);
      assertEquals(after.jobs.task(t0).attempts.length, 1);
      assertEquals(after.workers.workers.get("w1")!.committed.cpuMillicores, 0);
    } finally {
      await after.stop();
      store.close();
    }
  }));

Deno.test("a worker that comes back under the same id without its attempt has it failed at once and freed", async () => {
  const c = controller(undefined);
  try {
    register(c);
    const { jobId } = c.launchJob(job("lost"), "");
    c.scheduleOnce();
    await new Promise((r) => setTimeout(r, 0)); // the RunTask answer
    const taskId = c.jobs.job(jobId).taskIds[0]!;
    beat(c, [update(taskId, TaskState.RUNNING)], [{ taskId, attemptId: 0 }]);
    assertEquals(c.workers.workers.get("w1")!.committed.cpuMillicores, 500);
    // The worker process restarted: it registers again, running nothing.
    register(c);
    const task = c.jobs.task(taskId);
    assertEquals(task.attempts[0]!.state, TaskState.WORKER_FAILED);
    assert(
      task.attempts[0]!.error.includes("came back without attempt 0"),
      task.attempts[0]!.error,
    );
    assertEquals(task.state, TaskState.PENDING, "retried on the preemption budget");
    assertEquals(c.workers.workers.get("w1")!.committed.cpuMillicores, 0);
    assertEquals(c.scheduleOnce().assignments.length, 1, "the retry is placed at once");
  } finally {
    await c.stop();
  }
});

Deno.test("a failed commit leaves no trace, answers unavailable, dispatches nothing, and the controller recovers by itself", () =>
  withDir(async (dir) => {
    const store = StateStore.open(dir);
    const realFlush = store.flush.bind(store);
    const realProbe = store.probe.bind(store);
    let failing = false;
    const diskFull = () => {
      if (failing) throw new Error("database or disk is full");
    };
    store.flush = (table, endpoints, workers) => {
      if (
        table.dirty.size || table.dirtyTasks.size || endpoints?.dirty.size || workers?.dirty.size
      ) {
        diskFull();
      }
      realFlush(table, endpoints, workers);
    };
    store.probe = () => {
      diskFull();
      realProbe();
    };
    const sent: RunTaskRequest[] = [];
    // Submits wait for a pass here: the story is the pass's commit (the next test: a submit's).
    const c = controller(store, sent, false);
    c.start();
    try {
      register(c);
      const { jobId: runningJob } = c.launchJob(job("running"), "r-running");
      c.scheduleOnce();
      // RunTask leaves at the end of the turn (attempts for one worker go together).
      await waitFor(() => sent.length === 1, { timeout: seconds(5), what: "the RunTask" });
      const runningTask = c.jobs.job(runningJob).taskIds[0]!;
      beat(c, [update(runningTask, TaskState.RUNNING)]);

      failing = true;
      const isUnavailable = (err: unknown) =>
        err instanceof UnavailableError && err.message.includes("database or disk is full");
      // A submit: refused, and no trace of it.
      let threw: unknown;
      try {
        c.launchJob(job("new"), "r-new");
      } catch (err) {
        threw = err;
      }
      assert(isUnavailable(threw), String(threw));
      assertEquals(c.jobs.jobs.has("/alice/new"), false);
      assertEquals(c.health.healthy, false);
      assert(c.health.message.includes("database or disk is full"), c.health.message);
      // Further changes are refused up front; an end reported meanwhile is deferred: the worker
      // keeps it and resends it (its heartbeat still counts as liveness).
      assertEquals(beat(c, [update(runningTask, TaskState.FAILED, 3)]).updatesDeferred, true);
      assertEquals(c.jobs.task(runningTask).state, TaskState.RUNNING);
      threw = undefined;
      try {
        c.terminateJob(runningJob, "");
      } catch (err) {
        threw = err;
      }
      assert(isUnavailable(threw), String(threw));
      // A heartbeat without updates is still liveness.
      assertEquals(beat(c, []).reregister, false);
      // A repeated, committed submit is still answered.
      assertEquals(c.launchJob(job("running"), "r-running"), { jobId: runningJob, created: false });

      // A scheduling pass whose commit fails dispatches nothing and keeps nothing.
      failing = false;
      await waitFor(() => c.health.healthy, { timeout: seconds(5), what: "recovery" });
      c.launchJob(job("queued"), "r-queued");
      failing = true;
      const plan = c.scheduleOnce();
      assertEquals(plan.assignments, []);
      await new Promise((r) => setTimeout(r, 0)); // a RunTask would leave at the end of the turn
      assertEquals(sent.length, 1, "no RunTask for an uncommitted placement");
      assertEquals(c.jobs.task("/alice/queued/0").attempts.length, 0);
      assertEquals(c.jobs.task("/alice/queued/0").state, TaskState.PENDING);
      assertEquals(c.workers.workers.get("w1")!.committed.cpuMillicores, 500);

      // The disk recovers: the controller notices by itself, then accepts the retried calls.
      failing = false;
      await waitFor(() => c.health.healthy, { timeout: seconds(5), what: "recovery" });
      assertEquals(c.launchJob(job("new"), "r-new").created, true);
      assertEquals(c.launchJob(job("new"), "r-new").created, false);
      beat(c, [update(runningTask, TaskState.FAILED, 3)]);
      assertEquals(c.jobs.task(runningTask).state, TaskState.FAILED);
      await waitFor(() => sent.length === 3, { timeout: seconds(5), what: "both queued jobs" });
    } finally {
      await c.stop();
      store.close();
    }
  }));

Deno.test("a submit placed at once shares its commit with its placement: sent only once committed, undone when it fails", () =>
  withDir(async (dir) => {
    const store = StateStore.open(dir);
    const realFlush = store.flush.bind(store);
    let flushes = 0;
    let failing = false;
    store.flush = (table, endpoints, workers) => {
      flushes++;
      if (failing) throw new Error("database or disk is full");
      realFlush(table, endpoints, workers);
    };
    const sent: RunTaskRequest[] = [];
    const c = controller(store, sent);
    c.start();
    try {
      register(c);
      failing = true;
      let threw: unknown;
      try {
        c.launchJob(job("lost"), "r-lost");
      } catch (err) {
        threw = err;
      }
      assert(threw instanceof UnavailableError, String(threw));
      await new Promise((r) => setTimeout(r, 0)); // a RunTask would leave at the end of the turn
      assertEquals(sent.length, 0, "no RunTask for a placement whose commit failed");
      assertEquals(c.jobs.jobs.has("/alice/lost"), false);
      assertEquals(c.workers.workers.get("w1")!.committed.cpuMillicores, 0);
      failing = false;
      await waitFor(() => c.health.healthy, { timeout: seconds(5), what: "recovery" });
      const before = flushes;
      const { jobId } = c.launchJob(job("placed"), "r-placed");
      await waitFor(() => sent.length, { timeout: seconds(5), what: "the RunTask" });
      assertEquals(sent.map((r) => r.jobId), [jobId], "dispatched once committed");
      assertEquals(flushes - before, 1, "one commit for the submit and its placement");
      assertEquals(c.jobs.task(`${jobId}/0`).state, TaskState.ASSIGNED);
    } finally {
      await c.stop();
      store.close();
    }
  }));

Deno.test("request ids are per owner and keep answering through RECREATE and a restart", () =>
  withDir(async (dir) => {
    let store = StateStore.open(dir);
    let c = controller(store);
    try {
      // Two users' identical request ids (auth off: the owner is the job id's user segment).
      const a = c.launchJob(job("x"), "same");
      const bobs = job("x");
      bobs.user = "bob";
      const b = c.launchJob(bobs, "same");
      assertEquals([a.jobId, b.jobId, a.created, b.created], ["/alice/x", "/bob/x", true, true]);
      // A full name puts the request in that user's id space.
      assertEquals(c.launchJob(job("/bob/y"), "same"), { jobId: "/bob/x", created: false });
      assertEquals(c.launchJob(job("/carol/y"), "same").created, true);

      const recreate = (requestId: string) =>
        c.launchJob(job("r", { existingJobPolicy: ExistingJobPolicy.RECREATE }), requestId);
      assertEquals(recreate("first").created, true);
      assertEquals(recreate("second").created, true);
      // A late retry of the first submit must not replace the second job.
      assertEquals(recreate("first"), { jobId: "/alice/r", created: false });
      assertEquals(c.jobs.job("/alice/r").requestId, "second");
      await c.stop();
      store.close();

      store = StateStore.open(dir);
      c = controller(store);
      assertEquals(recreate("first"), { jobId: "/alice/r", created: false });
      assertEquals(recreate("second"), { jobId: "/alice/r", created: false });
      assertEquals(c.jobs.job("/alice/r").requestId, "second");
    } finally {
      await c.stop();
      store.close();
    }
  }));

Deno.test("an attempt its worker no longer lists (neither running nor ended) is lost after two heartbeats", async () => {
  const c = controller(undefined);
  try {
    register(c);
    const { jobId } = c.launchJob(job("forgotten", { replicas: 2 }), "");
    c.scheduleOnce();
    await new Promise((r) => setTimeout(r, 0)); // the RunTask answers
    const [kept, forgotten] = c.jobs.job(jobId).taskIds as [string, string];
    const refs = [kept, forgotten].map((taskId) => ({ taskId, attemptId: 0 }));
    beat(c, [update(kept, TaskState.RUNNING), update(forgotten, TaskState.RUNNING)], refs);
    // The worker lost track of one attempt: the first heartbeat without it is not enough (it may
    // have been built before a RunTask arrived), the second is.
    beat(c, [], [refs[0]!]);
    assertEquals(c.jobs.task(forgotten).state, TaskState.RUNNING);
    // Ended but not yet reported counts as listed.
    beat(c, [], [refs[0]!], [refs[1]!]);
    beat(c, [], [refs[0]!]);
    assertEquals(c.jobs.task(forgotten).state, TaskState.RUNNING);
    beat(c, [], [refs[0]!]);
    const lost = c.jobs.task(forgotten).attempts[0]!;
    assertEquals(lost.state, TaskState.WORKER_FAILED);
    assert(lost.error.includes("no longer has attempt 0"), lost.error);
    assertEquals(c.jobs.task(kept).state, TaskState.RUNNING);
    assertEquals(c.workers.workers.get("w1")!.committed.cpuMillicores, 500);
  } finally {
    await c.stop();
  }
});
