/**
 * The controller's durable state (store.ts): a JobTable written through StateStore.flush and
 * loaded back is equal in every job and task state, retries included; versioning is enforced.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { DatabaseSync } from "node:sqlite";
import assertStrict from "node:assert/strict";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { toJson } from "@bufbuild/protobuf";
import {
  AcceleratorType,
  EndpointSchema,
  ExistingJobPolicy,
  type JobSpec,
  JobSpecSchema,
  JobState,
  ResourcesSchema,
  TaskState,
} from "../../src/rpc/mod.ts";
import { JobTable, noEffects } from "../../src/controller/state.ts";
import {
  STATE_FILE,
  STATE_SCHEMA_VERSION,
  StateStore,
  StateStoreError,
} from "../../src/controller/store.ts";
import { EndpointTable } from "../../src/controller/endpoints.ts";
import { RECONNECTING_MESSAGE, WorkerTable } from "../../src/controller/workers.ts";
import type { Timestamp } from "../../src/time.ts";

type SpecInit = MessageInitShape<typeof JobSpecSchema>;

function spec(name: string, init: SpecInit = {}): JobSpec {
  return create(JobSpecSchema, {
    name,
    user: "alice",
    entrypoint: { kind: { case: "command", value: { argv: ["true"] } } },
    ...init,
  } as SpecInit);
}

function start(t: JobTable, taskId: string, worker = "w1") {
  const a = t.assign(taskId, worker, 10);
  t.attemptStarted(t.task(taskId), a, TaskState.RUNNING, 11, noEffects());
  return a;
}

function end(t: JobTable, taskId: string, state: TaskState, exitCode = 0) {
  const task = t.task(taskId);
  t.attemptEnded(task, t.currentAttempt(task)!, { state, exitCode, finishedAtMs: 12 }, noEffects());
}

/** The table's observable content, in a form deepStrictEqual compares. */
function contents(t: JobTable) {
  return {
    jobs: [...t.jobs.values()].map((j) => ({
      ...j,
      childIds: [...j.childIds].sort(),
      counts: Object.fromEntries(Object.entries(j.counts).filter(([, n]) => n)),
    })),
    // Through JSON: an absent pendingReason and an undefined one are the same.
    tasks: JSON.parse(JSON.stringify([...t.tasks.entries()])),
    pending: [...t.pending.entries()].map(([id, s]) => [id, [...s].sort()]),
  };
}

/** Jobs in every state, with retries, a child, request ids and a scheduling timeout. */
function fixture(): JobTable {
  const t = new JobTable();
  const fx = noEffects();
  t.submit(spec("pending", { replicas: 3 }), "req-pending", 1, fx);
  t.submit(spec("assigned"), "", 2, fx);
  t.assign("/alice/assigned/0", "w1", 3);
  t.submit(spec("running"), "", 3, fx);
  start(t, "/alice/running/0");
  t.submit(spec("child", { parentJobId: "/alice/running" }), "req-child", 4, fx);
  t.submit(spec("ok"), "", 5, fx);
  start(t, "/alice/ok/0");
  end(t, "/alice/ok/0", TaskState.SUCCEEDED);
  t.submit(spec("retried", { maxRetriesFailure: 1 }), "", 6, fx);
  start(t, "/alice/retried/0");
  end(t, "/alice/retried/0", TaskState.FAILED, 3); // retry 1: back to pending
  start(t, "/alice/retried/0", "w2");
  end(t, "/alice/retried/0", TaskState.WORKER_FAILED); // preemption retry
  start(t, "/alice/retried/0", "w3"); // third attempt running
  t.submit(spec("failed"), "", 7, fx);
  start(t, "/alice/failed/0");
  end(t, "/alice/failed/0", TaskState.FAILED, 2);
  t.submit(spec("killed"), "", 8, fx);
  start(t, "/alice/killed/0");
  t.terminate("/alice/killed", "by test", 9, fx);
  t.submit(spec("late", { schedulingTimeoutMs: 1 }), "", 9, fx);
  t.unschedulable(t.task("/alice/late/0"), "no capacity", 10, fx);

  return t;
}

Deno.test("StateStore round-trips jobs in every state, with retries, children and request ids", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-store-" });
  try {
    const t = fixture();
    const fx = noEffects();
    using store = disposable(StateStore.open(dir));
    store.flush(t);
    assertEquals(t.dirty.size, 0);
    const states = [...t.jobs.values()].map((j) => JobState[j.state]);
    for (const s of ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "KILLED", "UNSCHEDULABLE"]) {
      assert(states.includes(s), `fixture covers ${s}: ${states}`);
    }
    assertEquals(t.task("/alice/retried/0").attempts.length, 3);

    // A later mutation and a removal (RECREATE of a finished job) are journaled too.
    end(t, "/alice/running/0", TaskState.SUCCEEDED);
    t.submit(spec("ok"), "req-ok-2", 20, fx);
    store.flush(t);
    store.close();

    using again = disposable(StateStore.open(dir));
    const loaded = new JobTable();
    const stats = again.load(loaded);
    assertEquals(stats.jobs, t.jobs.size);
    assertEquals(stats.tasks, t.tasks.size);
    assertEquals(contents(loaded), contents(t));
    // Derived indexes work: request ids dedupe, children are linked, attempts continue.
    assertEquals(loaded.submit(spec("pending", { replicas: 3 }), "req-pending", 30, fx), {
      jobId: "/alice/pending",
      created: false,
    });
    assert(loaded.job("/alice/running").childIds.has("/alice/running/child"));
    assertEquals(loaded.assign("/alice/pending/1", "w9", 31).attemptId, 0);
    assertEquals(loaded.job("/alice/retried").counts[TaskState.RUNNING], 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("StateStore refuses a state file with a newer schema and leaves it unchanged", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-store-" });
  try {
    StateStore.open(dir).close();
    const path = `${dir}/${STATE_FILE}`;
    const db = new DatabaseSync(path);
    db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(
      String(STATE_SCHEMA_VERSION + 1),
    );
    db.close();
    const before = await Deno.readFile(path);
    assertStrict.throws(() => StateStore.open(dir), (e: unknown) => {
      assert(e instanceof StateStoreError);
      assert(e.message.includes(path), e.message);
      assert(e.message.includes(`schema version ${STATE_SCHEMA_VERSION + 1}`), e.message);
      assert(e.message.includes(`up to version ${STATE_SCHEMA_VERSION}`), e.message);
      return true;
    });
    assertEquals(await Deno.readFile(path), before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function disposable(store: StateStore): StateStore & Disposable {
  return Object.assign(store, { [Symbol.dispose]: () => store.close() });
}

Deno.test("StateStore migrates a version 1 file to the current version in place, keeping its jobs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-store-" });
  try {
    const t = new JobTable();
    t.submit(spec("old", { replicas: 2 }), "req-old", 1, noEffects());
    writeLegacyFile(dir, 1, t);

    using store = disposable(StateStore.open(dir));
    assertEquals(schemaOf(dir), {
      version: String(STATE_SCHEMA_VERSION),
      tables: ["autoscaler", "endpoints", "jobs", "meta", "quarantine", "tasks", "workers"],
    });
    const loaded = new JobTable();
    assertEquals(store.load(loaded).tasks, 2);
    assertEquals(loaded.job("/alice/old").requestId, "req-old");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("StateStore migrates a version 3 file to the current version: one row per task not as submitted, every job and task as it was", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-store-" });
  try {
    const t = fixture();
    writeLegacyFile(dir, 3, t);
    {
      using store = disposable(StateStore.open(dir));
      const raw = new DatabaseSync(`${dir}/${STATE_FILE}`, { readOnly: true });
      try {
        // The 3 tasks of /alice/pending and the child's are as submitted: they have no row.
        assertEquals(
          Number(raw.prepare("SELECT count(*) AS n FROM tasks").get()!.n),
          t.tasks.size - 4,
        );
        for (const r of raw.prepare("SELECT row FROM jobs").all()) {
          const row = JSON.parse(String(r.row));
          assert(!("tasks" in row) && !("taskIds" in row), "a job row holds no tasks");
        }
      } finally {
        raw.close();
      }
      const loaded = new JobTable();
      assertEquals(store.load(loaded).tasks, t.tasks.size);
      assertEquals(contents(loaded), contents(t));
    }
    // Reopened: already the current version, nothing migrates twice.
    using again = disposable(StateStore.open(dir));
    const loaded = new JobTable();
    again.load(loaded);
    assertEquals(contents(loaded), contents(t));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("StateStore writes what changed: one task of a 10,000-replica job is one task row and the job row", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-store-" });
  try {
    const t = new JobTable();
    t.submit(spec("big", { replicas: 10_000 }), "", 1, noEffects());
    using store = disposable(StateStore.open(dir));
    store.flush(t);
    // Tasks as submitted have no row: the job's row says all of them.
    assertEquals(store.lastFlush, { jobRows: 1, taskRows: 0 });
    start(t, "/alice/big/17");
    store.flush(t);
    assertEquals(store.lastFlush, { jobRows: 1, taskRows: 1 });
    end(t, "/alice/big/17", TaskState.SUCCEEDED);
    start(t, "/alice/big/18");
    store.flush(t);
    // The job is RUNNING still: its row is as committed, not written again.
    assertEquals(store.lastFlush, { jobRows: 0, taskRows: 2 });
    // RECREATE with fewer replicas: the old job's extra task rows go.
    t.submit(
      spec("big", { replicas: 3, existingJobPolicy: ExistingJobPolicy.RECREATE }),
      "",
      2,
      noEffects(),
    );
    store.flush(t);
    store.close();
    using again = disposable(StateStore.open(dir));
    const loaded = new JobTable();
    assertEquals(again.load(loaded).tasks, 3);
    assertEquals(contents(loaded), contents(t));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("StateStore writes a job's row only when it changed, and drops the rows of a job submitted again under its id", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-store-" });
  try {
    const t = new JobTable();
    t.submit(spec("one"), "", 1, noEffects());
    using store = disposable(StateStore.open(dir));
    store.flush(t);
    // Assigned: the job is RUNNING (its row changed), and so is its task once started, which
    // leaves the job's row as it was: only the task's row is written.
    t.assign("/alice/one/0", "w1", 5);
    store.flush(t);
    assertEquals(store.lastFlush, { jobRows: 1, taskRows: 1 });
    t.attemptStarted(
      t.task("/alice/one/0"),
      t.currentAttempt(t.task("/alice/one/0"))!,
      TaskState.RUNNING,
      6,
      noEffects(),
    );
    store.flush(t);
    assertEquals(store.lastFlush, { jobRows: 0, taskRows: 1 });
    end(t, "/alice/one/0", TaskState.SUCCEEDED);
    store.flush(t);
    assertEquals(store.lastFlush, { jobRows: 1, taskRows: 1 });
    // Replaced and replaced again before a flush: the first job's task row still goes.
    const recreate = { existingJobPolicy: ExistingJobPolicy.RECREATE };
    t.submit(spec("one", recreate), "", 7, noEffects());
    t.submit(spec("one", recreate), "", 8, noEffects());
    t.submit(spec("two"), "", 9, noEffects());
    store.flush(t);
    store.close();
    using again = disposable(StateStore.open(dir));
    const loaded = new JobTable();
    assertEquals(again.load(loaded).tasks, 2);
    assertEquals(contents(loaded), contents(t));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("StateStore migrates a version 4 file to version 5: the rows of tasks as submitted go, every job and task as it was", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-store-" });
  try {
    const t = fixture();
    t.submit(spec("big", { replicas: 1000 }), "", 11, noEffects());
    start(t, "/alice/big/7");
    writeV4File(dir, t);
    const rows = () => {
      const raw = new DatabaseSync(`${dir}/${STATE_FILE}`, { readOnly: true });
      try {
        return Number(raw.prepare("SELECT count(*) AS n FROM tasks").get()!.n);
      } finally {
        raw.close();
      }
    };
    assertEquals(rows(), t.tasks.size, "version 4: a row per task");
    {
      using store = disposable(StateStore.open(dir));
      assertEquals(schemaOf(dir).version, "5");
      // Left: the placed task of /alice/big and the fixture's tasks that are not as submitted.
      assertEquals(rows(), t.tasks.size - 999 - 4);
      const loaded = new JobTable();
      assertEquals(store.load(loaded).tasks, t.tasks.size);
      assertEquals(contents(loaded), contents(t));
    }
    using again = disposable(StateStore.open(dir));
    const loaded = new JobTable();
    again.load(loaded);
    assertEquals(contents(loaded), contents(t));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Writes `t` as Iris with schema version 4 did: a row per task (with its pending reason). */
function writeV4File(dir: string, t: JobTable) {
  const store = StateStore.open(dir);
  store.flush(t);
  store.close();
  const db = new DatabaseSync(`${dir}/${STATE_FILE}`);
  const insert = db.prepare(
    "INSERT OR REPLACE INTO tasks (job_id, task_index, row) VALUES (?, ?, ?)",
  );
  for (const task of t.tasks.values()) {
    const { taskId: _id, jobId, index, ...rest } = task;
    const reason = { code: "no_workers", message: "no workers", workersConsidered: 0 };
    insert.run(jobId, index, JSON.stringify({ ...rest, pendingReason: reason }));
  }
  db.prepare("UPDATE meta SET value = '4' WHERE key = 'schema_version'").run();
  db.close();
}

/**
 * Writes `t` as Iris with schema version `version` (1–3) did: one JSON row per job holding its
 * tasks; v2 adds the endpoint and autoscaler tables, v3 the workers table.
 */
function writeLegacyFile(dir: string, version: 1 | 2 | 3, t: JobTable, eps?: EndpointTable) {
  const db = new DatabaseSync(`${dir}/${STATE_FILE}`);
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
  db.exec(
    "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, submitted_at INTEGER NOT NULL, row TEXT NOT NULL)",
  );
  if (version >= 2) {
    db.exec("CREATE TABLE endpoints (endpoint_id TEXT PRIMARY KEY, row TEXT NOT NULL)");
    db.exec("CREATE TABLE autoscaler (key TEXT PRIMARY KEY, row TEXT NOT NULL)");
  }
  if (version >= 3) {
    db.exec("CREATE TABLE workers (worker_id TEXT PRIMARY KEY, row TEXT NOT NULL)");
  }
  db.prepare("INSERT INTO meta VALUES ('schema_version', ?)").run(String(version));
  for (const job of t.jobs.values()) {
    const { spec: s, childIds: _c, counts: _n, ...rest } = job;
    const row = {
      job: { ...rest, spec: toJson(JobSpecSchema, s) },
      tasks: job.taskIds.map((id) => t.tasks.get(id)!),
    };
    db.prepare("INSERT INTO jobs VALUES (?, ?, ?)").run(
      job.jobId,
      job.submittedAtMs,
      JSON.stringify(row),
    );
  }
  for (const e of eps ? [...eps.dirty].map((id) => eps.get(id)!) : []) {
    db.prepare("INSERT INTO endpoints VALUES (?, ?)").run(
      e.endpointId,
      JSON.stringify(toJson(EndpointSchema, e)),
    );
  }
  if (eps) db.prepare("INSERT INTO meta VALUES ('endpoint_seq', ?)").run(String(eps.sequence));
  db.close();
}

function schemaOf(dir: string) {
  const check = new DatabaseSync(`${dir}/${STATE_FILE}`, { readOnly: true });
  try {
    return {
      version: String(
        check.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get()?.value,
      ),
      tables: check.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all()
        .map((r) => String(r.name)).sort(),
    };
  } finally {
    check.close();
  }
}

function registerWorker(table: WorkerTable, workerId: string, sliceId: string) {
  return table.register({
    workerId,
    address: `127.0.0.1:${workerId.length}`,
    resources: create(ResourcesSchema, {
      cpuMillicores: 4000,
      memoryBytes: 2 ** 33,
      accelerator: { type: AcceleratorType.TPU, variant: "v5e-8", count: 8 },
    }),
    attributes: { zone: "us-a", rack: 3, spot: true },
    scaleGroup: "tpu",
    sliceId,
  }, 1000 + workerId.length).worker;
}

Deno.test("StateStore writes worker registrations and removals, and loads them as reconnecting", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-store-" });
  try {
    const t = new JobTable();
    const workers = new WorkerTable();
    const w1 = registerWorker(workers, "w1", "s1");
    registerWorker(workers, "w22", "s2");
    registerWorker(workers, "w333", "s2");
    {
      using store = disposable(StateStore.open(dir));
      store.flush(t, undefined, workers);
      assertEquals(workers.dirty.size, 0);
      // A heartbeat changes liveness only: nothing to write.
      w1.lastHeartbeatMs = 5000;
      store.flush(t, undefined, workers);
      assertEquals(workers.dirty.size, 0);
      workers.remove("w22");
      store.flush(t, undefined, workers);
    }
    using store = disposable(StateStore.open(dir));
    const rows = store.loadWorkers();
    assertEquals(rows.map((r) => r.workerId), ["w1", "w333"]);
    assertEquals(rows[0], workers.persisted("w1"));
    const loaded = new WorkerTable();
    loaded.restore(rows, 9000);
    const back = loaded.workers.get("w1")!;
    assertEquals(back.total, w1.total);
    assertEquals(back.accelerator, { kind: "tpu", variant: "v5e-8", count: 8 });
    assertEquals(back.attributes, w1.attributes);
    assertEquals(back.attributes.rack, 3);
    assertEquals([back.sliceId, back.scaleGroup, back.address], ["s1", "tpu", w1.address]);
    assertEquals(back.registeredAtMs, w1.registeredAtMs);
    assertEquals([back.healthy, back.reconnecting, back.lastHeartbeatMs], [false, true, 9000]);
    assertEquals(back.statusMessage, RECONNECTING_MESSAGE);
    assertEquals(loaded.schedulerView().map((w) => w.healthy), [false, false]);
    assertEquals(loaded.dirty.size, 0, "loading writes nothing back");
    // Re-registering confirms the worker.
    registerWorker(loaded, "w1", "s1");
    assertEquals([back.healthy, back.reconnecting, back.statusMessage], [true, false, ""]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("StateStore migrates a version 2 file to the current version in place, keeping jobs and endpoints", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-store-" });
  try {
    const t = new JobTable();
    const eps = new EndpointTable();
    t.submit(spec("old"), "req-old", 1, noEffects());
    eps.register({
      name: "svc/a",
      address: "127.0.0.1:1",
      taskId: "/alice/old/0",
      jobId: "/alice/old",
      metadata: {},
    });
    writeLegacyFile(dir, 2, t, eps);

    using store = disposable(StateStore.open(dir));
    assertEquals(schemaOf(dir), {
      version: String(STATE_SCHEMA_VERSION),
      tables: ["autoscaler", "endpoints", "jobs", "meta", "quarantine", "tasks", "workers"],
    });
    assertEquals(store.loadWorkers(), []);
    const loaded = new JobTable();
    assertEquals(store.load(loaded).jobs, 1);
    assertEquals(store.loadEndpoints(new EndpointTable()), 1);
    const workers = new WorkerTable();
    registerWorker(workers, "w1", "s1");
    store.flush(loaded, undefined, workers);
    assertEquals(store.loadWorkers().map((r) => r.workerId), ["w1"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("StateStore persists endpoints with the job changes and the autoscaler state", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-store-" });
  try {
    const t = new JobTable();
    const eps = new EndpointTable();
    t.submit(spec("server"), "", 1, noEffects());
    const a = eps.register({
      name: "svc/a",
      address: "127.0.0.1:1",
      taskId: "/alice/server/0",
      jobId: "/alice/server",
      metadata: { k: "v" },
    });
    const b = eps.register({
      name: "svc/b",
      address: "127.0.0.1:2",
      taskId: "/alice/server/0",
      jobId: "/alice/server",
      metadata: {},
    });
    eps.unregister(a.endpointId);
    const autoscaler = {
      slices: [{
        state: {
          sliceId: "iris-cpu-1",
          group: "cpu",
          state: "ready" as const,
          createdAt: 5 as Timestamp,
          idleSince: 7 as Timestamp,
          workerIds: ["iris-cpu-1-w0"],
        },
        workerIds: ["iris-cpu-1-w0"],
      }],
      groups: [{ name: "cpu", consecutiveFailures: 2, backoffUntil: 99 as Timestamp }],
    };
    {
      using store = disposable(StateStore.open(dir));
      store.flush(t, eps);
      assertEquals(eps.dirty.size, 0);
      store.saveAutoscaler(autoscaler);
    }
    using store = disposable(StateStore.open(dir));
    const loaded = new EndpointTable();
    assertEquals(store.loadEndpoints(loaded), 1);
    assertEquals(loaded.list("svc/", false), [b]);
    // Ids are never reused after a restart.
    const c = loaded.register({
      name: "svc/c",
      address: "x",
      taskId: "/alice/server/0",
      jobId: "/alice/server",
      metadata: {},
    });
    assertEquals(c.endpointId, "ep-3");
    assertEquals(store.loadAutoscaler(), autoscaler);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("StateStore keeps its directory private to the controller's user (0700)", async () => {
  const parent = await Deno.makeTempDir({ prefix: "iris-store-" });
  try {
    const made = `${parent}/new/state`;
    StateStore.open(made).close();
    assertEquals((await Deno.stat(made)).mode! & 0o777, 0o700);
    const given = `${parent}/given`;
    await Deno.mkdir(given, { mode: 0o755 });
    await Deno.chmod(given, 0o755);
    StateStore.open(given).close();
    assertEquals((await Deno.stat(given)).mode! & 0o777, 0o700, "an operator's dir is tightened");
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});
