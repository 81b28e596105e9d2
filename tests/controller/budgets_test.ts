/**
 * Per-user budgets (budgets.ts), their config (`controller.user_budgets`), and the job-table side
 * of preemption (JobTable.preempt: budget, free ASSIGNED evictions).
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import {
  bandName,
  budgetFor,
  budgetsFromConfig,
  effectiveBand,
  type UserBudget,
} from "../../src/controller/budgets.ts";
import { BAND_BATCH, BAND_INTERACTIVE, BAND_PRODUCTION, bandOrUndefined } from "../../src/types.ts";
import { ConfigValidationError, parseConfigObject } from "../../src/config/mod.ts";
import { JobTable, noEffects } from "../../src/controller/state.ts";
import { StateStore } from "../../src/controller/store.ts";
import {
  JobSpecSchema,
  JobState,
  PriorityBand,
  TaskState,
} from "../../src/rpc/gen/iris/v1/types_pb.ts";

const machine = { cpuCores: 8, memoryBytes: 32 * 2 ** 30 };

Deno.test("effectiveBand() lowers to max_band and downgrades an over-budget job to BATCH", () => {
  const budgets: UserBudget[] = [
    { users: ["alice"], maxTasks: 4 },
    { users: ["*"], maxBand: 2 },
  ];
  const alice = budgetFor(budgets, "alice");
  assert.deepEqual(effectiveBand(2, "alice", alice, 2, 2), { band: 2, reason: undefined });
  const over = effectiveBand(2, "alice", alice, 3, 2);
  assert.equal(over.band, 3);
  assert.match(
    over.reason!,
    /alice is over budget: 3 unfinished INTERACTIVE.* 2 new exceed max_tasks 4/,
  );
  assert.equal(effectiveBand(3, "alice", alice, 100, 1).band, 3, "BATCH is never over budget");
  const bob = budgetFor(budgets, "bob");
  const lowered = effectiveBand(1, "bob", bob, 0, 1);
  assert.equal(lowered.band, 2);
  assert.match(
    lowered.reason!,
    /bob may not submit PRODUCTION jobs \(highest allowed: INTERACTIVE\)/,
  );
  assert.deepEqual(effectiveBand(1, "carol", budgetFor([], "carol"), 9, 9), { band: 1 });
});

Deno.test("bands: the named constants are the PriorityBand numbers; 0 and unknown numbers are no band", () => {
  assert.deepEqual(
    [BAND_PRODUCTION, BAND_INTERACTIVE, BAND_BATCH],
    [PriorityBand.PRODUCTION, PriorityBand.INTERACTIVE, PriorityBand.BATCH],
  );
  assert.deepEqual([1, 2, 3].map(bandOrUndefined), [1, 2, 3]);
  assert.equal(bandOrUndefined(PriorityBand.UNSPECIFIED), undefined);
  assert.equal(bandOrUndefined(4), undefined);
  assert.equal(bandOrUndefined(-1), undefined);
  assert.equal(bandOrUndefined(1.5), undefined);
  assert.deepEqual(
    [BAND_PRODUCTION, BAND_INTERACTIVE, BAND_BATCH].map(bandName),
    ["PRODUCTION", "INTERACTIVE", "BATCH"],
  );
});

Deno.test("controller.user_budgets parses, and bad entries are rejected naming the path", () => {
  const tree = (budgets: unknown) => ({
    controller: { local: { port: 0 }, user_budgets: budgets },
    scale_groups: { cpu: { provider: { local: {} }, max_slices: 1 } },
  });
  const config = parseConfigObject(
    tree([{ users: ["alice"], max_tasks: 10 }, { users: ["*"], max_band: "interactive" }]),
    undefined,
    { machine },
  );
  assert.deepEqual(budgetsFromConfig(config.controller!.userBudgets), [
    { users: ["alice"], maxTasks: 10, maxBand: undefined },
    { users: ["*"], maxTasks: undefined, maxBand: 2 },
  ]);
  const problems = (budgets: unknown): string[] => {
    try {
      parseConfigObject(tree(budgets), undefined, { machine });
    } catch (err) {
      assert.ok(err instanceof ConfigValidationError);
      return err.issues.map((i) => `${i.path}: ${i.message}`);
    }
    assert.fail("expected a rejection");
  };
  assert.deepEqual(problems("alice"), [
    'controller.user_budgets: must be a list of {users, max_tasks, max_band} (got "alice")',
  ]);
  const bad = problems([{ users: [], max_tasks: -1, max_band: "urgent" }, { max_tasks: 1 }]);
  assert.ok(
    bad.some((p) => p.startsWith("controller.user_budgets[0].users: must list")),
    bad.join(),
  );
  assert.ok(
    bad.some((p) => p.startsWith("controller.user_budgets[1].users: required")),
    bad.join(),
  );
  assert.ok(
    bad.some((p) => p.startsWith("controller.user_budgets[0].max_band: must be one of")),
    bad.join(),
  );
});

Deno.test("JobTable.preempt() retries under the preemption budget; an ASSIGNED eviction is free", () => {
  const t = new JobTable();
  const fx = noEffects();
  const { jobId } = t.submit(
    create(JobSpecSchema, {
      name: "b",
      user: "alice",
      replicas: 2,
      maxRetriesPreemption: 1,
      priority: PriorityBand.BATCH,
      entrypoint: { kind: { case: "command", value: { argv: ["true"] } } },
    }),
    "",
    0,
    fx,
  );
  const [t0, t1] = t.job(jobId).taskIds.map((id) => t.task(id));
  // Only ASSIGNED: evicting it costs nothing.
  t.assign(t0!.taskId, "w1", 1);
  assert.equal(t.preempt(t0!, "preempted for /x", 2, fx), true);
  assert.equal(t0!.preemptionCount, 0);
  assert.equal(t0!.state, TaskState.PENDING);
  assert.equal(t0!.attempts[0]!.state, TaskState.PREEMPTED);
  assert.deepEqual(fx.kills.map((k) => [k.taskId, k.workerId]), [[t0!.taskId, "w1"]]);
  // RUNNING: each eviction uses the budget; past it the task ends PREEMPTED.
  for (let i = 0; i < 2; i++) {
    const a = t.assign(t1!.taskId, "w1", 3);
    t.attemptStarted(t1!, a, TaskState.RUNNING, 4, fx);
    assert.equal(t.preempt(t1!, "preempted for /x", 5, fx), true);
  }
  assert.equal(t1!.preemptionCount, 2);
  assert.equal(t1!.state, TaskState.PREEMPTED);
  assert.equal(t.preempt(t1!, "again", 6, fx), false, "nothing active to preempt");
});

Deno.test("a job's lowered band, its reason and an opened reservation gate survive a restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-budget-store-" });
  try {
    const t = new JobTable();
    const { jobId } = t.submit(
      create(JobSpecSchema, {
        name: "j",
        user: "alice",
        entrypoint: { kind: { case: "command", value: { argv: ["true"] } } },
      }),
      "",
      0,
      noEffects(),
    );
    Object.assign(t.job(jobId), { band: 3, bandReason: "over budget", reservationReady: true });
    const store = StateStore.open(dir);
    try {
      store.flush(t);
    } finally {
      store.close();
    }
    const again = StateStore.open(dir);
    try {
      const loaded = new JobTable();
      again.load(loaded);
      const job = loaded.job(jobId);
      assert.deepEqual([job.band, job.bandReason, job.reservationReady], [
        3,
        "over budget",
        true,
      ]);
    } finally {
      again.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bandAtSubmit() counts the user's unfinished tasks above BATCH; bandOf() reads it back", async () => {
  const { bandAtSubmit, bandOf } = await import("../../src/controller/budgets.ts");
  const jobs = new JobTable();
  const submit = (name: string, replicas: number, user = "alice", priority = 0) => {
    const { jobId } = jobs.submit(
      create(JobSpecSchema, {
        name,
        user,
        replicas,
        priority,
        entrypoint: { kind: { case: "command", value: { argv: ["true"] } } },
      }),
      "",
      0,
      noEffects(),
    );
    return jobs.job(jobId);
  };
  const budget: UserBudget = { users: ["alice"], maxTasks: 4 };
  submit("running", 2);
  submit("batch", 5, "alice", PriorityBand.BATCH);
  submit("bob", 9, "bob");
  const fits = submit("fits", 2);
  assert.equal(bandAtSubmit(fits, jobs.jobs.values(), budget), undefined);
  assert.equal(bandAtSubmit(fits, jobs.jobs.values(), undefined), undefined);
  const over = submit("over", 1);
  const res = bandAtSubmit(over, jobs.jobs.values(), budget);
  assert.equal(res?.band, 3);
  assert.match(res!.reason, /over budget: 4 unfinished INTERACTIVE/);
  assert.equal(bandOf(over), 2);
  over.band = res!.band;
  assert.equal(bandOf(over), 3);
});

Deno.test("JobTable.activeJobsOf() holds a user's unfinished jobs: submit, finish, restore", () => {
  const jobs = new JobTable();
  const submit = (name: string, user: string) =>
    jobs.submit(
      create(JobSpecSchema, {
        name,
        user,
        entrypoint: { kind: { case: "command", value: { argv: ["true"] } } },
      }),
      "",
      0,
      noEffects(),
    ).jobId;
  const names = (user: string) => [...jobs.activeJobsOf(user)].map((j) => j.jobId).sort();
  const a1 = submit("a1", "alice");
  const a2 = submit("a2", "alice");
  const b1 = submit("b1", "bob");
  assert.deepEqual(names("alice"), [a1, a2].sort());
  assert.deepEqual(names("bob"), [b1]);
  assert.deepEqual(names("carol"), []);
  // Finished: out of the index, still in the table (retention keeps it).
  jobs.terminate(a1, "stopped", 1, noEffects());
  assert.equal(jobs.job(a1).state, JobState.KILLED);
  assert.deepEqual(names("alice"), [a2]);
  // Restored from records: the unfinished ones only.
  const again = new JobTable();
  again.restore(
    [a1, a2, b1].map((id) => ({
      job: jobs.job(id),
      tasks: jobs.job(id).taskIds.map((t) => jobs.task(t)),
    })),
  );
  assert.deepEqual([...again.activeJobsOf("alice")].map((j) => j.jobId), [a2]);
  again.clear();
  assert.deepEqual([...again.activeJobsOf("bob")], []);
});
