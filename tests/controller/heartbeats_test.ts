/**
 * Registrations and heartbeats (heartbeats.ts): re-claiming listed attempts, failing the ones a
 * worker came back without, applying task updates, kill orders, deferring updates while the
 * state cannot be written, and the heartbeat interval told to the worker. No I/O.
 */
import { create } from "@bufbuild/protobuf";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { FakeClock, ms, seconds } from "../../src/time.ts";
import { InvalidArgumentError } from "../../src/errors.ts";
import {
  HeartbeatRequestSchema,
  RegisterWorkerRequestSchema,
  TaskState,
  TaskUpdateSchema,
} from "../../src/rpc/mod.ts";
import { type Effects, JobTable, noEffects, type TaskRecord } from "../../src/controller/state.ts";
import { EndpointTable } from "../../src/controller/endpoints.ts";
import { Reconciler } from "../../src/controller/reconcile.ts";
import { attemptKey, WorkerTable } from "../../src/controller/workers.ts";
import { holdAttempt } from "../../src/controller/snapshot.ts";
import {
  afterHeartbeat,
  applyHeartbeat,
  heartbeat,
  type HeartbeatContext,
  registerWorker,
} from "../../src/controller/heartbeats.ts";
import { spec } from "./_concern_fixtures.ts";
import { withTempDir } from "../_helpers/temp_dir.ts";
import { StateStore } from "../../src/controller/store.ts";
import { CommitGroup } from "../../src/controller/commit.ts";

type Ctx = HeartbeatContext & {
  system: string[];
  performed: Effects[];
  schedules: number;
  dispatching: Set<string>;
};

function context(): Ctx {
  const system: string[] = [];
  const performed: Effects[] = [];
  const dispatching = new Set<string>();
  const ctx: Ctx = {
    jobs: new JobTable(),
    endpoints: new EndpointTable(),
    workers: new WorkerTable(),
    reconciler: new Reconciler(),
    clock: new FakeClock(),
    write: {},
    log: () => {},
    logs: {
      system: (taskId, attemptId, text) => system.push(`${taskId}#${attemptId}: ${text}`),
      append: () => {},
    },
    dispatcher: { forget: () => {}, isDispatching: (key) => dispatching.has(key) },
    workerHeartbeatInterval: () => seconds(3),
    perform: (fx) => performed.push(fx),
    requestSchedule: () => ctx.schedules++,
    system,
    performed,
    schedules: 0,
    dispatching,
  };
  return ctx;
}

function register(
  ctx: Ctx,
  running: { taskId: string; attemptId: number }[] = [],
  finished: { taskId: string; attemptId: number }[] = [],
) {
  return registerWorker(
    ctx,
    create(RegisterWorkerRequestSchema, {
      workerId: "w1",
      address: "http://10.0.0.1:9000",
      resources: { cpuMillicores: 4000, memoryBytes: 2 ** 32 },
      running,
      finished,
    }),
  );
}

/** A one-task job placed on w1 (registered), its attempt held there. */
function placed(ctx: Ctx, name: string): { task: TaskRecord; attemptId: number } {
  const { jobId } = ctx.jobs.submit(spec({ name }), `r-${name}`, ctx.clock.now(), noEffects());
  const job = ctx.jobs.job(jobId);
  const task = ctx.jobs.task(job.taskIds[0]!);
  const attempt = ctx.jobs.assign(task.taskId, "w1", ctx.clock.now());
  holdAttempt(ctx.workers, ctx.workers.workers.get("w1")!, job, task, attempt);
  return { task, attemptId: attempt.attemptId };
}

Deno.test("heartbeats: a registration needs an id and an address", () => {
  const ctx = context();
  let threw: unknown;
  try {
    registerWorker(ctx, create(RegisterWorkerRequestSchema, { address: "http://x:1" }));
  } catch (err) {
    threw = err;
  }
  assert(threw instanceof InvalidArgumentError);
  assertEquals(ctx.workers.workers.size, 0);
});

Deno.test("heartbeats: a re-registering worker keeps what it lists, loses the rest, and is told to kill what it should not run", () => {
  const ctx = context();
  register(ctx);
  const kept = placed(ctx, "kept");
  const lost = placed(ctx, "lost");
  const answer = register(ctx, [{ taskId: kept.task.taskId, attemptId: kept.attemptId }, {
    taskId: "nobody/0",
    attemptId: 1,
  }]);
  assertEquals(answer.workerId, "w1");
  assertEquals(answer.kill, [{ taskId: "nobody/0", attemptId: 1 }]);
  assertEquals(answer.heartbeatIntervalMs, seconds(3));
  const w1 = ctx.workers.workers.get("w1")!;
  assertEquals([...w1.active.keys()], [attemptKey(kept.task.taskId, kept.attemptId)]);
  assertEquals(ctx.jobs.currentAttempt(lost.task)?.state, TaskState.WORKER_FAILED);
  assertEquals(ctx.system, [
    `${lost.task.taskId}#${lost.attemptId}: worker w1 came back without attempt ${lost.attemptId} (it restarted)`,
  ]);
  assertEquals(ctx.performed.at(-1)?.released, 2, "its resources are free, its task pending");
  assertEquals(ctx.jobs.dirty.size, 0, "committed before the answer");
});

Deno.test("heartbeats: updates start and end attempts and free their resources", () => {
  const ctx = context();
  register(ctx);
  const { task, attemptId } = placed(ctx, "a");
  const beat = (state: TaskState) =>
    heartbeat(
      ctx,
      create(HeartbeatRequestSchema, {
        workerId: "w1",
        updates: [create(TaskUpdateSchema, { taskId: task.taskId, attemptId, state })],
        running: state === TaskState.RUNNING ? [{ taskId: task.taskId, attemptId }] : [],
      }),
    );
  assertEquals(beat(TaskState.RUNNING), { reregister: false, kill: [], heartbeatIntervalMs: 3000 });
  assertEquals(ctx.jobs.currentAttempt(task)?.state, TaskState.RUNNING);
  assertEquals(ctx.workers.workers.get("w1")!.heartbeatIntervalMs, 3000);
  const before = ctx.schedules;
  beat(TaskState.SUCCEEDED);
  assertEquals(task.state, TaskState.SUCCEEDED);
  assertEquals(ctx.workers.workers.get("w1")!.active.size, 0);
  assertEquals(ctx.schedules, before + 1, "freed resources ask for a scheduling pass");
});

Deno.test("heartbeats: an unknown worker re-registers; updates wait while the state cannot be written", () => {
  const ctx = context();
  assertEquals(heartbeat(ctx, create(HeartbeatRequestSchema, { workerId: "w1" })), {
    reregister: true,
    kill: [],
  });
  register(ctx);
  const { task, attemptId } = placed(ctx, "a");
  ctx.write.unwritable = { sinceMs: 0, reason: "disk full", reloaded: true };
  const answer = heartbeat(
    ctx,
    create(HeartbeatRequestSchema, {
      workerId: "w1",
      updates: [
        create(TaskUpdateSchema, { taskId: task.taskId, attemptId, state: TaskState.SUCCEEDED }),
      ],
    }),
  );
  assertEquals(answer.updatesDeferred, true);
  assertEquals(ctx.jobs.currentAttempt(task)?.state, TaskState.ASSIGNED);
});

Deno.test("heartbeats: an attempt missing from two heartbeats is lost, unless its RunTask is in flight", async () => {
  const ctx = context();
  register(ctx);
  const inflight = placed(ctx, "inflight");
  const missing = placed(ctx, "missing");
  ctx.dispatching.add(attemptKey(inflight.task.taskId, inflight.attemptId));
  for (let i = 0; i < 2; i++) {
    await (ctx.clock as FakeClock).advance(ms(100));
    heartbeat(ctx, create(HeartbeatRequestSchema, { workerId: "w1" }));
  }
  assertEquals(ctx.jobs.currentAttempt(missing.task)?.state, TaskState.WORKER_FAILED);
  assertEquals(ctx.jobs.currentAttempt(inflight.task)?.state, TaskState.ASSIGNED);
  assertEquals(ctx.system.length, 1);
  assert(ctx.system[0]!.includes("no longer has attempt"));
});

Deno.test("heartbeats of one turn share a commit; each is answered, and its lines stored, after it", () =>
  withTempDir("iris-heartbeats-", async (dir) => {
    const store = StateStore.open(dir);
    try {
      const stored: string[] = [];
      const base = context();
      const ctx: Ctx = {
        ...base,
        store,
        logs: {
          ...base.logs,
          append: (taskId) => {
            assertEquals(ctx.jobs.dirty.size + ctx.jobs.dirtyTasks.size, 0, "lines after commit");
            stored.push(taskId);
          },
        },
      };
      register(ctx);
      const a = placed(ctx, "a");
      const b = placed(ctx, "b");
      ctx.requestSchedule = () => ctx.schedules++;
      store.flush(ctx.jobs, ctx.endpoints, ctx.workers);
      const seq0 = store.commitSeq;
      const group = new CommitGroup(ctx);
      const ended: string[] = [];
      const beat = (t: { task: TaskRecord; attemptId: number }) =>
        group.run(
          () =>
            applyHeartbeat(
              ctx,
              create(HeartbeatRequestSchema, {
                workerId: "w1",
                updates: [
                  create(TaskUpdateSchema, {
                    taskId: t.task.taskId,
                    attemptId: t.attemptId,
                    state: TaskState.SUCCEEDED,
                    logs: [{ taskId: t.task.taskId, attemptId: t.attemptId, text: "done" }],
                  }),
                ],
              }),
            ),
          (change) => {
            assertEquals(ctx.jobs.dirty.size + ctx.jobs.dirtyTasks.size, 0, "committed first");
            ended.push(t.task.taskId);
            afterHeartbeat(ctx, change);
          },
        );
      const answers = await Promise.all([beat(a), beat(b)]);
      assertEquals(answers.map((c) => c.answer.reregister), [false, false]);
      assertEquals(store.commitSeq, seq0 + 1, "one commit for both heartbeats");
      assertEquals(ended, [a.task.taskId, b.task.taskId]);
      assertEquals(stored, [a.task.taskId, b.task.taskId]);
      assertEquals(a.task.state, TaskState.SUCCEEDED);
      assertEquals(b.task.state, TaskState.SUCCEEDED);
      assertEquals(ctx.workers.workers.get("w1")!.active.size, 0);
      assert(ctx.schedules >= 1, "freed room asks for a pass");
    } finally {
      store.close();
    }
  }));
