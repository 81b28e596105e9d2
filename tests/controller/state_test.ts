/** The job model's transitions (JobTable): budgets, gangs, cascades, names. No I/O. */
import { create } from "@bufbuild/protobuf";
import assertStrict from "node:assert/strict";
import { assert, assertEquals } from "../_helpers/assert.ts";
import {
  ExistingJobPolicy,
  type JobSpec,
  JobSpecSchema,
  JobState,
  TaskState,
} from "../../src/rpc/mod.ts";
import { JobTable, noEffects, REQUEST_ID_WINDOW_MS } from "../../src/controller/state.ts";
import { deriveJobState } from "../../src/controller/job_rules.ts";
import { AlreadyExistsError, InvalidArgumentError } from "../../src/errors.ts";

import type { MessageInitShape } from "@bufbuild/protobuf";

type SpecInit = MessageInitShape<typeof JobSpecSchema>;

function spec(init: SpecInit = {}): JobSpec {
  const base: SpecInit = {
    name: "job",
    user: "alice",
    entrypoint: { kind: { case: "command", value: { argv: ["true"] } } },
  };
  return create(JobSpecSchema, { ...base, ...init } as SpecInit);
}

function run(t: JobTable, taskId: string, worker = "w1") {
  const a = t.assign(taskId, worker, 1);
  t.attemptStarted(t.task(taskId), a, TaskState.RUNNING, 2, noEffects());
  return a;
}

function end(t: JobTable, taskId: string, state: TaskState, exitCode = 0) {
  const task = t.task(taskId);
  const fx = noEffects();
  t.attemptEnded(task, t.currentAttempt(task)!, { state, exitCode, finishedAtMs: 3 }, fx);
  return fx;
}

Deno.test("JobTable.submit() names jobs under the user and the parent", () => {
  const t = new JobTable();
  const fx = noEffects();
  assertEquals(t.submit(spec(), "", 0, fx).jobId, "/alice/job");
  assertEquals(
    t.submit(spec({ name: "child", parentJobId: "/alice/job" }), "", 0, fx).jobId,
    "/alice/job/child",
  );
  assertEquals(t.job("/alice/job").childIds.has("/alice/job/child"), true);
  assertStrict.throws(
    () => t.submit(spec({ name: "x", parentJobId: "/alice/none" }), "", 0, fx),
    /parent_job_id: no job/,
  );
});

Deno.test("JobTable.submit() is idempotent per request id", () => {
  const t = new JobTable();
  const a = t.submit(spec(), "req-1", 0, noEffects());
  const b = t.submit(spec(), "req-1", 0, noEffects());
  assertEquals(a, { jobId: "/alice/job", created: true });
  assertEquals(b, { jobId: "/alice/job", created: false });
  assertEquals(t.jobs.size, 1);
});

Deno.test("JobTable.submit() follows existing_job_policy for a same-name job", () => {
  const t = new JobTable();
  t.submit(spec(), "", 0, noEffects());
  assertStrict.throws(() => t.submit(spec(), "", 0, noEffects()), AlreadyExistsError);
  assertEquals(
    t.submit(spec({ existingJobPolicy: ExistingJobPolicy.KEEP }), "", 0, noEffects()).created,
    false,
  );
  run(t, "/alice/job/0");
  end(t, "/alice/job/0", TaskState.SUCCEEDED);
  // Finished: replaced by default; attempt numbers continue after the old job's.
  assertEquals(t.submit(spec(), "", 5, noEffects()).created, true);
  assertEquals(t.assign("/alice/job/0", "w1", 6).attemptId, 1);
  assertStrict.throws(
    () => t.submit(spec({ existingJobPolicy: ExistingJobPolicy.ERROR }), "", 0, noEffects()),
    AlreadyExistsError,
  );
});

Deno.test("existing_job_policy RECREATE kills an active same-name job and replaces it", () => {
  const t = new JobTable();
  t.submit(spec({ replicas: 2 }), "", 0, noEffects());
  const old = run(t, "/alice/job/0");
  const fx = noEffects();
  const res = t.submit(
    spec({ existingJobPolicy: ExistingJobPolicy.RECREATE, replicas: 1 }),
    "",
    5,
    fx,
  );
  assertEquals(res, { jobId: "/alice/job", created: true });
  // The running attempt of the old job is stopped; the new job starts fresh and PENDING.
  assertEquals(fx.kills.map((k) => [k.taskId, k.attemptId]), [["/alice/job/0", old.attemptId]]);
  assertEquals(t.job("/alice/job").state, JobState.PENDING);
  assertEquals(t.job("/alice/job").taskIds, ["/alice/job/0"]);
  assertEquals(t.tasks.has("/alice/job/1"), false);
  assertEquals(t.assign("/alice/job/0", "w1", 6).attemptId, 1, "attempt ids continue");
});

Deno.test("JobTable.submit() rejects bad specs naming the field and keeps state intact", () => {
  const t = new JobTable();
  const bad: [SpecInit, RegExp][] = [
    [
      { entrypoint: { kind: { case: "command", value: { argv: [] } } } },
      /spec.entrypoint.command.argv: must not be empty/,
    ],
    [{ entrypoint: {} }, /spec.entrypoint: must have a command or a module/],
    [{ replicas: -1 }, /spec.replicas: must be an integer in 0..10000 \(got -1\)/],
    [{ replicas: 1_000_000 }, /spec.replicas/],
    [{ name: "" }, /spec.name: must not be empty/],
    [{ name: "a b" }, /spec.name: name segment/],
    [{ name: "x".repeat(300) }, /spec.name: must be at most 256/],
    [{ resources: { cpuMillicores: -5 } }, /spec.resources.cpu_millicores/],
    [{ resources: { memoryBytes: 1e30 } }, /spec.resources.memory_bytes/],
    [{ env: { "BAD KEY": "x" } }, /spec.env.BAD KEY: must be a valid environment variable name/],
    [{ ports: ["http", "http"] }, /spec.ports: names must be unique/],
    [{ user: "../root" }, /spec.user/],
    [{ timeoutMs: -1 }, /spec.timeout_ms/],
  ];
  for (const [init, re] of bad) {
    assertStrict.throws(
      () => t.submit(spec(init), "", 0, noEffects()),
      (e: unknown) => e instanceof InvalidArgumentError && re.test(e.message),
    );
  }
  assertEquals(t.jobs.size, 0);
  assertEquals(t.tasks.size, 0);
});

Deno.test("attemptEnded() retries a failure exactly max_retries_failure times", () => {
  const t = new JobTable();
  t.submit(spec({ maxRetriesFailure: 2 }), "", 0, noEffects());
  for (let i = 0; i < 2; i++) {
    run(t, "/alice/job/0");
    end(t, "/alice/job/0", TaskState.FAILED, 1);
    assertEquals(t.task("/alice/job/0").state, TaskState.PENDING);
    assertEquals(t.job("/alice/job").state, JobState.PENDING);
  }
  run(t, "/alice/job/0");
  const fx = end(t, "/alice/job/0", TaskState.FAILED, 1);
  assertEquals(t.task("/alice/job/0").state, TaskState.FAILED);
  assertEquals(t.task("/alice/job/0").attempts.length, 3);
  assertEquals(t.job("/alice/job").state, JobState.FAILED);
  assertEquals(t.job("/alice/job").exitCode, 1);
  assertEquals(fx.finishedJobs, ["/alice/job"]);
});

Deno.test("attemptEnded() draws worker failures from the preemption budget", () => {
  const t = new JobTable();
  t.submit(spec({ maxRetriesPreemption: 1 }), "", 0, noEffects());
  run(t, "/alice/job/0");
  end(t, "/alice/job/0", TaskState.WORKER_FAILED);
  assertEquals(t.task("/alice/job/0").state, TaskState.PENDING);
  assertEquals(t.task("/alice/job/0").failureCount, 0);
  run(t, "/alice/job/0");
  end(t, "/alice/job/0", TaskState.WORKER_FAILED);
  assertEquals(t.task("/alice/job/0").state, TaskState.WORKER_FAILED);
  assertEquals(t.job("/alice/job").state, JobState.WORKER_FAILED);
});

Deno.test("a coscheduled job retries as a whole when one member fails", () => {
  const t = new JobTable();
  t.submit(
    spec({ replicas: 4, coscheduling: { groupBy: "tpu-name" }, maxRetriesFailure: 1 }),
    "",
    0,
    noEffects(),
  );
  for (let i = 0; i < 4; i++) run(t, `/alice/job/${i}`, `w${i}`);
  const fx = end(t, "/alice/job/2", TaskState.FAILED, 3);
  assertEquals(fx.kills.map((k) => k.taskId).sort(), [
    "/alice/job/0",
    "/alice/job/1",
    "/alice/job/3",
  ]);
  for (let i = 0; i < 4; i++) assertEquals(t.task(`/alice/job/${i}`).state, TaskState.PENDING);
  assertEquals(t.pending.get("/alice/job")!.size, 4);
  // Task 2's budget is exhausted the second time: the whole gang ends.
  for (let i = 0; i < 4; i++) run(t, `/alice/job/${i}`, `w${i}`);
  end(t, "/alice/job/2", TaskState.FAILED, 3);
  assertEquals(t.job("/alice/job").state, JobState.FAILED);
  assertEquals(t.task("/alice/job/0").state, TaskState.KILLED);
});

Deno.test("terminate() kills pending and running tasks and cascades to children", () => {
  const t = new JobTable();
  t.submit(spec({ replicas: 2 }), "", 0, noEffects());
  t.submit(spec({ name: "kid", parentJobId: "/alice/job" }), "", 0, noEffects());
  run(t, "/alice/job/0");
  const fx = noEffects();
  const ids = t.terminate("/alice/job", "user asked", 9, fx);
  assertEquals(ids.sort(), ["/alice/job", "/alice/job/kid"]);
  assertEquals(fx.kills.map((k) => k.taskId), ["/alice/job/0"]);
  assertEquals(t.job("/alice/job").state, JobState.KILLED);
  assertEquals(t.job("/alice/job/kid").state, JobState.KILLED);
  // The killed attempt keeps its resources until the worker confirms.
  assert(t.currentAttempt(t.task("/alice/job/0"))!.state === TaskState.RUNNING);
  assertEquals(t.terminate("/alice/job", "again", 10, noEffects()), []);
});

Deno.test("a failed job stops its children", () => {
  const t = new JobTable();
  t.submit(spec(), "", 0, noEffects());
  t.submit(spec({ name: "kid", parentJobId: "/alice/job" }), "", 0, noEffects());
  run(t, "/alice/job/kid/0");
  run(t, "/alice/job/0");
  const fx = end(t, "/alice/job/0", TaskState.FAILED, 2);
  assertEquals(t.job("/alice/job/kid").state, JobState.KILLED);
  assertEquals(fx.kills.map((k) => k.taskId), ["/alice/job/kid/0"]);
});

Deno.test("deriveJobState() applies the documented rules in order", () => {
  const S = TaskState;
  assertEquals(deriveJobState({ [S.SUCCEEDED]: 3 }, 3, 0), JobState.SUCCEEDED);
  assertEquals(deriveJobState({ [S.SUCCEEDED]: 2, [S.FAILED]: 1 }, 3, 0), JobState.FAILED);
  assertEquals(deriveJobState({ [S.SUCCEEDED]: 2, [S.FAILED]: 1 }, 3, 1), JobState.SUCCEEDED);
  assertEquals(
    deriveJobState({ [S.RUNNING]: 1, [S.UNSCHEDULABLE]: 1 }, 2, 0),
    JobState.UNSCHEDULABLE,
  );
  assertEquals(deriveJobState({ [S.RUNNING]: 1, [S.KILLED]: 1 }, 2, 0), JobState.KILLED);
  assertEquals(
    deriveJobState({ [S.SUCCEEDED]: 1, [S.WORKER_FAILED]: 1 }, 2, 0),
    JobState.WORKER_FAILED,
  );
  assertEquals(deriveJobState({ [S.PENDING]: 1, [S.ASSIGNED]: 1 }, 2, 0), JobState.RUNNING);
  assertEquals(deriveJobState({ [S.PENDING]: 2 }, 2, 0), JobState.PENDING);
});

Deno.test("a replaced job's request id answers with the new job for 24 h, then no longer", () => {
  const t = new JobTable();
  const recreate = (requestId: string, nowMs: number) =>
    t.submit(
      spec({ name: "r", existingJobPolicy: ExistingJobPolicy.RECREATE }),
      requestId,
      nowMs,
      noEffects(),
    );
  const hour = 60 * 60 * 1000;
  assertEquals(recreate("first", 0).created, true);
  assertEquals(recreate("second", hour).created, true);
  assertEquals(recreate("first", 2 * hour), { jobId: "/alice/r", created: false });
  assertEquals(t.job("/alice/r").requestId, "second");
  assertEquals(recreate("first", REQUEST_ID_WINDOW_MS - 1).created, false);
  // Past the window the old request id is a new request (it replaces the job again).
  assertEquals(recreate("first", REQUEST_ID_WINDOW_MS).created, true);
  assertEquals(t.job("/alice/r").requestId, "first");
});

Deno.test("pendingJobs() holds only jobs with pending tasks, in submission order after a retry", () => {
  const t = new JobTable();
  for (const name of ["a", "b", "c"]) {
    t.submit(spec({ name, maxRetriesFailure: 1 }), "", 0, noEffects());
  }
  const queued = () => [...t.pendingJobs().keys()];
  assertEquals(queued(), ["/alice/a", "/alice/b", "/alice/c"]);
  run(t, "/alice/a/0");
  run(t, "/alice/b/0");
  assertEquals(queued(), ["/alice/c"]);
  // a's retry is pending again: it goes back before c, where it was submitted.
  end(t, "/alice/a/0", TaskState.FAILED, 1);
  assertEquals(queued(), ["/alice/a", "/alice/c"]);
  end(t, "/alice/b/0", TaskState.SUCCEEDED);
  t.terminate("/alice/c", "user asked", 4, noEffects());
  assertEquals(queued(), ["/alice/a"]);
  // Finished jobs stay in the table but not in the queue.
  assertEquals(t.pending.size, 3);
  t.submit(spec({ name: "d" }), "", 5, noEffects());
  assertEquals(queued(), ["/alice/a", "/alice/d"]);
});
