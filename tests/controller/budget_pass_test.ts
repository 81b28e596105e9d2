/**
 * Resource budgets in the pure scheduler (#24): checked every pass from the users' active usage;
 * tasks beyond a budget are placed as BATCH (Assignment.band = 3), after every job of the higher
 * bands, and a gang moves whole. Plus the Accounts store (set budgets persist in a JSON file).
 */
import assert from "node:assert/strict";
import { schedule } from "../../src/controller/scheduler/scheduler.ts";
import { Accounts, usageByUser } from "../../src/controller/accounts.ts";
import type {
  ClusterSnapshot,
  ResourceBudget,
  SchedulerJob,
  SchedulerWorker,
} from "../../src/types.ts";
import { GiB, schedulerJob, schedulerWorker } from "../_helpers/snapshot.ts";

/** A worker with `cpu` cores, 64 GiB and the one slice's "tpu-name" attribute. */
function worker(id: string, cpu = 8): SchedulerWorker {
  return schedulerWorker(id, {
    cpu,
    memGiB: 64,
    sliceId: `s-${id}`,
    attributes: { "tpu-name": "slice" },
  });
}

/** `tasks` pending tasks of `user` (a gang over "tpu-name" when told). */
function job(jobId: string, user: string, tasks: number, opts: {
  cpu?: number;
  band?: 1 | 2 | 3;
  gang?: boolean;
} = {}): SchedulerJob {
  return schedulerJob(jobId, {
    user,
    tasks,
    cpu: opts.cpu,
    band: opts.band,
    groupBy: opts.gang ? "tpu-name" : undefined,
  });
}

const cores = (n: number): ResourceBudget => ({ cpuMillicores: n * 1000 });

function bands(plan: ReturnType<typeof schedule>, jobId: string) {
  return plan.assignments.filter((a) => a.jobId === jobId).map((a) => a.band ?? "own");
}

Deno.test("schedule() keeps a user's tasks within their resource budget; the rest run as BATCH", () => {
  const snapshot: ClusterSnapshot = {
    workers: [worker("w1")],
    jobs: [job("/alice/a", "alice", 4)],
    budgets: { alice: cores(3) },
    budgetUsage: { alice: { cpuMillicores: 1000, memoryBytes: GiB, accelerators: 0 } },
  };
  const plan = schedule(snapshot);
  // 3 cores of budget, 1 in use: 2 tasks in their band, 2 as BATCH.
  assert.deepEqual(bands(plan, "/alice/a"), ["own", "own", 3, 3]);
  // Without usage (tasks ended), the next pass keeps 3 in band.
  const later = schedule({ ...snapshot, budgetUsage: {} });
  assert.deepEqual(bands(later, "/alice/a"), ["own", "own", "own", 3]);
  // Users without a budget, and BATCH jobs, are not affected.
  const others = schedule({
    ...snapshot,
    jobs: [job("/bob/b", "bob", 4), job("/alice/c", "alice", 2, { band: 3 })],
  });
  assert.deepEqual(bands(others, "/bob/b"), ["own", "own", "own", "own"]);
  assert.deepEqual(bands(others, "/alice/c"), ["own", "own"]);
});

Deno.test("schedule() places over-budget tasks after every higher-band job and other BATCH jobs", () => {
  const plan = schedule({
    workers: [worker("w1", 4)],
    jobs: [
      job("/alice/a", "alice", 3),
      job("/carol/batch", "carol", 1, { band: 3 }),
      job("/bob/b", "bob", 2),
    ],
    budgets: { alice: cores(1) },
  });
  // 4 cores: alice 1 in band, bob 2 in band, carol's BATCH job, then none left for alice's rest.
  assert.deepEqual(bands(plan, "/alice/a"), ["own"]);
  assert.deepEqual(bands(plan, "/bob/b"), ["own", "own"]);
  assert.deepEqual(bands(plan, "/carol/batch"), ["own"]);
  // One unplaced entry per job, with the job's whole shortfall.
  assert.deepEqual(plan.unplaced.map((u) => [u.jobId, u.taskCount]), [["/alice/a", 2]]);
});

Deno.test("schedule() moves a gang that does not fit the budget whole to BATCH", () => {
  const plan = schedule({
    workers: [worker("w1"), worker("w2")],
    jobs: [job("/alice/g", "alice", 2, { gang: true, cpu: 2 })],
    budgets: { alice: cores(3) },
  });
  assert.deepEqual(bands(plan, "/alice/g"), [3, 3]);
  const fits = schedule({
    workers: [worker("w1"), worker("w2")],
    jobs: [job("/alice/g", "alice", 2, { gang: true, cpu: 2 })],
    budgets: { alice: cores(4) },
  });
  assert.deepEqual(bands(fits, "/alice/g"), ["own", "own"]);
});

Deno.test("usageByUser() sums active tasks above BATCH per user and counts BATCH ones", () => {
  const c = (jobId: string, band: 1 | 2 | 3, cpu: number) => ({
    cpuMillicores: cpu,
    memoryBytes: 10,
    accelerators: 1,
    holder: { jobId, band },
  });
  const users: Record<string, string> = { "/a/1": "alice", "/a/2": "alice", "/b/1": "bob" };
  const usage = usageByUser([
    { active: new Map([["x", c("/a/1", 2, 1000)], ["y", c("/a/2", 3, 500)]]) },
    { active: new Map([["z", c("/a/1", 1, 2000)], ["q", c("/b/1", 2, 100)]]) },
  ], (id) => users[id]);
  assert.deepEqual(usage.get("alice"), {
    cpuMillicores: 3000,
    memoryBytes: 20,
    accelerators: 2,
    tasks: 2,
    batchTasks: 1,
  });
  assert.equal(usage.get("bob")?.tasks, 1);
});

Deno.test("Accounts: set budgets win over config, persist atomically, and reload", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-accounts-" });
  try {
    const file = `${dir}/accounts.json`;
    const config = [{ users: ["*"], maxTasks: 50 }, { users: ["alice"], maxTasks: 10 }];
    const a = new Accounts(config, file);
    assert.equal(a.budgetFor("alice")?.maxTasks, 10);
    assert.equal(a.get("zed")?.source, "config");
    a.setBudget("alice", { resources: cores(8), maxBand: 2 });
    assert.deepEqual(a.budgetFor("alice")?.resources, cores(8));
    assert.equal(a.budgetFor("alice")?.maxTasks, undefined, "a set budget replaces the config one");
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    const b = new Accounts(config, file);
    assert.deepEqual(b.get("alice"), {
      user: "alice",
      source: "set",
      budget: { users: ["alice"], resources: cores(8), maxBand: 2 },
    });
    assert.deepEqual(b.list().map((r) => `${r.user}:${r.source}`), ["alice:set", "*:config"]);
    assert.equal(b.hasResourceBudgets(), true);
    await Deno.writeTextFile(file, "{oops");
    assert.throws(() => new Accounts(config, file), /accounts\.json: not valid JSON/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("controller.user_budgets: max_cpu, max_memory, max_accelerators parse; bad ones name the path", async () => {
  const { parseConfig } = await import("../../src/config/mod.ts");
  const { budgetsFromConfig } = await import("../../src/controller/budgets.ts");
  const text = (entry: string) =>
    `controller:\n  local: {}\n  user_budgets:\n    - {users: [alice], ${entry}}\n` +
    `scale_groups:\n  cpu: {provider: {local: {}}, max_slices: 1, vm_resources: {cpu: 1, memory: 1GiB}}\n`;
  const config = parseConfig(text("max_cpu: 8, max_memory: 64GiB, max_accelerators: 4"));
  assert.deepEqual(budgetsFromConfig(config.controller!.userBudgets)[0]?.resources, {
    cpuMillicores: 8000,
    memoryBytes: 64 * GiB,
    accelerators: 4,
  });
  assert.throws(
    () => parseConfig(text("max_memory: lots")),
    /controller\.user_budgets\[0\]\.max_memory/,
  );
  assert.throws(
    () => parseConfig(text("max_accelerators: -1")),
    /controller\.user_budgets\[0\]\.max_accelerators/,
  );
});
