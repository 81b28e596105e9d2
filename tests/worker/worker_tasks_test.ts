/**
 * Tasks through a real worker and a fake controller: logs, exit codes, kills, timeouts, env,
 * ports, spawn failures, memory limits, bundles and module tasks.
 * @module
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { MAX_RUN_TASKS_ATTEMPTS } from "../../src/rpc/limits.ts";
import { RunTaskRequestSchema } from "../../src/rpc/gen/iris/v1/worker_pb.ts";
import { TaskState } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { commandTask, startHarness } from "./harness.ts";
import { attemptDirName } from "../../src/worker/task_spec.ts";
import { groupProcesses } from "./procs.ts";
import { type SpawnRequest, TaskSpawner } from "../../src/worker/spawner.ts";

Deno.test("worker streams a command's output to the controller as timestamped LogLines", async () => {
  await using h = await startHarness();
  const before = Date.now();
  const res = await h.client.runTask(
    commandTask("/u/echo/0", ["sh", "-c", "echo hello; echo oops >&2"]),
  );
  assert.deepEqual([res.accepted, res.error], [true, ""]);
  const done = await h.fake.waitForState("/u/echo/0", TaskState.SUCCEEDED);
  assert.equal(done.exitCode, 0);
  const lines = h.fake.logsOf("/u/echo/0");
  const out = lines.find((l) => l.stream === "stdout");
  const err = lines.find((l) => l.stream === "stderr");
  assert.equal(out?.text, "hello");
  assert.equal(err?.text, "oops");
  for (const l of [out!, err!]) {
    assert.equal(l.taskId, "/u/echo/0");
    assert.equal(l.attemptId, 0);
    assert.ok(l.timestampMs >= before && l.timestampMs <= Date.now());
  }
  assert.ok(lines.some((l) => l.stream === "system" && l.text.startsWith("started pid")));
  // The final state comes with (or after) the last lines, never before them.
  const updates = h.fake.updatesOf("/u/echo/0");
  assert.equal(updates.at(-1)?.state, TaskState.SUCCEEDED);
  assert.equal(updates.filter((u) => u.state === TaskState.SUCCEEDED).length, 1);
  // FetchTaskLogs serves the same lines from the worker.
  const fetched = await h.client.fetchTaskLogs({ taskId: "/u/echo/0", attemptId: 0 });
  assert.deepEqual(fetched.lines.filter((l) => l.stream !== "system").map((l) => l.text).sort(), [
    "hello",
    "oops",
  ]);
});

Deno.test("worker reports a non-zero exit as FAILED with the exit code and the stderr tail", async () => {
  await using h = await startHarness();
  await h.client.runTask(
    commandTask("/u/fail/0", ["sh", "-c", "echo something broke >&2; exit 3"]),
  );
  const failed = await h.fake.waitForState("/u/fail/0", TaskState.FAILED);
  assert.equal(failed.exitCode, 3);
  assert.equal(failed.error, "exited with code 3; last stderr lines:\nsomething broke");
  assert.ok(failed.finishedAtMs >= failed.startedAtMs && failed.startedAtMs > 0);
  const status = await h.client.getTaskStatus({ taskId: "/u/fail/0" });
  assert.equal(status.task?.state, TaskState.FAILED);
  assert.equal(status.task?.exitCode, 3);
});

Deno.test("KillTask kills the task's whole tree: KILLED, and no process or zombie remains", async () => {
  await using h = await startHarness();
  const taskId = "/u/sleepy/0";
  const started = performance.now();
  await h.client.runTask(commandTask(taskId, ["sh", "-c", "sleep 1000 & sleep 1000; wait"]));
  // The task runs 1000 s: any bound far below proves RunTask did not wait for it.
  assert.ok(performance.now() - started < 20_000, "RunTask returns without waiting for the task");
  const running = await h.fake.waitForState(taskId, TaskState.RUNNING);
  assert.ok(running.startedAtMs > 0);
  const pid = (await h.client.getTaskStatus({ taskId })).task?.pid ?? 0;
  assert.ok(pid > 0);
  await waitFor(async () => (await groupProcesses(pid)).length >= 3, {
    timeout: seconds(5),
    what: "sh and two sleeps",
  });
  await waitFor(() => h.fake.heartbeats.some((hb) => hb.running.some((r) => r.taskId === taskId)), {
    timeout: seconds(5),
    what: "a heartbeat listing the running attempt",
  });
  const kill = await h.client.killTask({ taskId, attemptId: 0, reason: "user asked" });
  assert.equal(kill.found, true);
  const killed = await h.fake.waitForState(taskId, TaskState.KILLED);
  assert.equal(killed.error, "user asked");
  assert.deepEqual(await groupProcesses(pid), []);
  assert.equal((await h.client.killTask({ taskId: "/u/nope/0", attemptId: 0 })).found, false);
});

Deno.test("worker kills a task that exceeds timeout_ms and reports KILLED with the reason", async () => {
  await using h = await startHarness();
  await h.client.runTask(commandTask("/u/slow/0", ["sleep", "30"], { timeoutMs: 300 }));
  const killed = await h.fake.waitForState("/u/slow/0", TaskState.KILLED);
  assert.equal(killed.error, "timed out after 300ms");
});

Deno.test("worker gives tasks a clean env plus the job env and IRIS_PORT_<NAME> for named ports", async () => {
  Deno.env.set("IRIS_WORKER_TEST_LEAK", "leaked");
  try {
    await using h = await startHarness();
    const taskId = "/u/env/0";
    await h.client.runTask(
      commandTask(taskId, ["sh", "-c", "env; pwd"], {
        env: { JOB_VAR: "x" },
        ports: ["http", "grpc-api"],
      }),
    );
    const done = await h.fake.waitForState(taskId, TaskState.SUCCEEDED);
    const ports = done.ports;
    assert.deepEqual(Object.keys(ports).sort(), ["grpc-api", "http"]);
    assert.notEqual(ports.http, ports["grpc-api"]);
    const env = h.fake.logsOf(taskId).filter((l) => l.stream === "stdout").map((l) => l.text);
    assert.ok(env.includes("JOB_VAR=x"));
    assert.ok(env.includes(`IRIS_PORT_HTTP=${ports.http}`));
    assert.ok(env.includes(`IRIS_PORT_GRPC_API=${ports["grpc-api"]}`));
    assert.ok(!env.some((l) => l.startsWith("IRIS_WORKER_TEST_LEAK")));
    const cwd = env.at(-1) ?? "";
    assert.ok(cwd.startsWith(`${h.worker.rootDir}/tasks/`) && cwd.endsWith("_attempt_0"), cwd);
    assert.ok(env.includes(`HOME=${cwd}`));
  } finally {
    Deno.env.delete("IRIS_WORKER_TEST_LEAK");
  }
});

Deno.test("worker reports a command that does not exist as FAILED with a clear error", async () => {
  await using h = await startHarness();
  await h.client.runTask(commandTask("/u/missing/0", ["iris-no-such-command-xyz"]));
  const failed = await h.fake.waitForState("/u/missing/0", TaskState.FAILED);
  assert.equal(failed.exitCode, 127);
  assert.match(failed.error, /^cannot start "iris-no-such-command-xyz": command not found/);
  const health = await h.client.health({});
  assert.equal(health.healthy, true);
});

Deno.test("worker kills a task over its memory limit: FAILED, exit 137, out of memory", async () => {
  await using h = await startHarness();
  await h.client.runTask(
    commandTask("/u/hog/0", ["sh", "-c", "x=$(head -c 50000000 /dev/zero | tr '\\0' a); sleep 5"], {
      resources: { cpuMillicores: 100, memoryBytes: 1024 * 1024 },
    }),
  );
  const failed = await h.fake.waitForState("/u/hog/0", TaskState.FAILED);
  assert.equal(failed.exitCode, 137);
  assert.equal(failed.signal, "SIGKILL");
  assert.match(failed.error, /^out of memory: peak .+ exceeds limit 1 MiB$/);
  assert.ok(failed.peakMemoryBytes > 1024 * 1024);
});

Deno.test("worker fails a bundled task clearly when it has no bundle fetcher", async () => {
  await using h = await startHarness();
  await h.client.runTask(commandTask("/u/bundled/0", ["true"], { bundleId: "sha256-abc" }));
  const failed = await h.fake.waitForState("/u/bundled/0", TaskState.FAILED);
  assert.equal(
    failed.error,
    "cannot fetch bundle sha256-abc: this worker has no bundle fetcher configured",
  );
});

Deno.test("worker copies a fetched bundle into the task dir (BUILDING first) and runs module tasks with scoped permissions", async () => {
  const bundle = await Deno.makeTempDir({ prefix: "iris-bundle-" });
  try {
    await Deno.writeTextFile(`${bundle}/data.txt`, "from the bundle\n");
    await Deno.mkdir(`${bundle}/src`);
    await Deno.writeTextFile(
      `${bundle}/src/main.ts`,
      [
        `console.log(Deno.readTextFileSync("data.txt").trim());`,
        `console.log("port " + Deno.env.get("IRIS_PORT_WEB"));`,
        `try { Deno.readTextFileSync("/etc/hostname"); console.log("read outside"); }`,
        `catch (e) { console.log("denied " + (e as Error).name); }`,
        `console.log("args " + Deno.args.join(","));`,
      ].join("\n"),
    );
    const fetched: string[] = [];
    await using h = await startHarness({
      bundleFetcher: (id) => {
        fetched.push(id);
        return Promise.resolve(bundle);
      },
    });
    await h.client.runTask(create(RunTaskRequestSchema, {
      taskId: "/u/mod/0",
      jobId: "/u/mod",
      attemptId: 1,
      bundleId: "sha256-abc",
      ports: ["web"],
      entrypoint: { kind: { case: "module", value: { path: "./src/main.ts", args: ["a", "b"] } } },
    }));
    const done = await h.fake.waitForState("/u/mod/0", TaskState.SUCCEEDED, seconds(15));
    assert.deepEqual(fetched, ["sha256-abc"]);
    const states = h.fake.updatesOf("/u/mod/0").map((u) => u.state);
    assert.ok(states.indexOf(TaskState.BUILDING) < states.indexOf(TaskState.RUNNING));
    const out = h.fake.logsOf("/u/mod/0").filter((l) => l.stream === "stdout").map((l) => l.text);
    assert.deepEqual(out, [
      "from the bundle",
      `port ${done.ports.web}`,
      "denied NotCapable",
      "args a,b",
    ]);
  } finally {
    await Deno.remove(bundle, { recursive: true });
  }
});

Deno.test("RunTask is idempotent per attempt and refuses tasks without an entrypoint", async () => {
  await using h = await startHarness();
  const req = commandTask("/u/twice/0", ["sleep", "30"]);
  assert.equal((await h.client.runTask(req)).accepted, true);
  assert.equal((await h.client.runTask(req)).accepted, true);
  const tasks = await h.client.listTasks({});
  assert.equal(tasks.tasks.filter((t) => t.taskId === "/u/twice/0").length, 1);
  const bad = await h.client.runTask(create(RunTaskRequestSchema, { taskId: "/u/bad/0" }));
  assert.deepEqual([bad.accepted, bad.error], [false, "entrypoint: must be a command or a module"]);
  // A newer attempt of the same task supersedes the running one.
  await h.client.runTask(commandTask("/u/twice/0", ["true"], { attemptId: 1 }));
  await waitFor(
    () =>
      h.fake.updatesOf("/u/twice/0").find((u) => u.attemptId === 0 && u.state === TaskState.KILLED),
    {
      timeout: seconds(5),
      what: "attempt 0 killed",
    },
  );
  await waitFor(
    () =>
      h.fake.updatesOf("/u/twice/0").find((u) =>
        u.attemptId === 1 && u.state === TaskState.SUCCEEDED
      ),
    {
      timeout: seconds(5),
      what: "attempt 1 succeeded",
    },
  );
});

Deno.test("worker delivers a flood of output in order, in capped batches, before the final state", async () => {
  // Under the log rate limits (a burst of 50,000 lines), nothing is dropped. The backlog holds
  // all 20,000 lines (~2.1 MB as counted, past the 2 MiB default): a task started as fast as the
  // spawner starts it has all its output read before the first update goes out, and a full
  // backlog drops its oldest lines by design.
  await using h = await startHarness({
    maxLinesPerUpdate: 1000,
    logLimits: {
      taskBurstLines: 50_000,
      workerLinesPerSecond: 50_000,
      taskBacklogBytes: 4 * 1024 * 1024,
    },
  });
  const started = performance.now();
  await h.client.runTask(commandTask("/u/flood/0", ["seq", "1", "20000"]));
  await h.fake.waitForState("/u/flood/0", TaskState.SUCCEEDED);
  const updates = h.fake.updatesOf("/u/flood/0");
  assert.ok(updates.every((u) => u.logs.length <= 1000));
  const out = updates.flatMap((u) => u.logs).filter((l) => l.stream === "stdout").map((l) =>
    Number(l.text)
  );
  assert.deepEqual(out, Array.from({ length: 20000 }, (_, i) => i + 1));
  const last = updates.at(-1)!;
  assert.equal(last.state, TaskState.SUCCEEDED);
  assert.equal(updates.filter((u) => u.state === TaskState.SUCCEEDED).length, 1);
  console.log(`20,000 lines delivered in ${Math.round(performance.now() - started)} ms`);
});

Deno.test("KillTask during BUILDING aborts the bundle fetch and reports KILLED without running", async () => {
  let aborted = false;
  await using h = await startHarness({
    bundleFetcher: (_id, signal) =>
      new Promise((_resolve, reject) => {
        signal.addEventListener("abort", () => {
          aborted = true;
          reject(signal.reason);
        }, { once: true });
      }),
  });
  await h.client.runTask(commandTask("/u/building/0", ["true"], { bundleId: "sha256-slow" }));
  await h.fake.waitForState("/u/building/0", TaskState.BUILDING);
  await h.client.killTask({ taskId: "/u/building/0", attemptId: 0, reason: "changed my mind" });
  const killed = await h.fake.waitForState("/u/building/0", TaskState.KILLED);
  assert.equal(killed.error, "changed my mind");
  assert.ok(aborted);
  assert.ok(!h.fake.updatesOf("/u/building/0").some((u) => u.state === TaskState.RUNNING));
  await assert.rejects(
    h.client.getTaskStatus({ taskId: "/u/unknown/0" }),
    /No task \/u\/unknown\/0 on this worker/,
  );
});

Deno.test("RunTask answers once the attempt left setup, or after a short wait while it builds (#20)", async () => {
  await using h = await startHarness({
    // A bundle that never arrives: the attempt stays in setup.
    bundleFetcher: (_id, signal) =>
      new Promise((_resolve, reject) => {
        signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      }),
  });
  const quick = await h.client.runTask(commandTask("/u/quick/0", ["sleep", "30"]));
  assert.equal(quick.accepted, true);
  assert.equal(quick.state, TaskState.RUNNING, TaskState[quick.state]);
  const t0 = performance.now();
  const slow = await h.client.runTask(
    commandTask("/u/slowsetup/0", ["true"], { bundleId: "sha256-never" }),
  );
  assert.equal(slow.state, TaskState.BUILDING, TaskState[slow.state]);
  assert.ok(performance.now() - t0 < 5_000, "answered after the wait, not after the setup");
  for (const taskId of ["/u/quick/0", "/u/slowsetup/0"]) {
    await h.client.killTask({ taskId, attemptId: 0, reason: "done" });
    await h.fake.waitForState(taskId, TaskState.KILLED);
  }
});

Deno.test("RunTasks: attempts stuck in setup share one wait; one that starts is answered RUNNING", async () => {
  await using h = await startHarness({
    bundleFetcher: (_id, signal) =>
      new Promise((_resolve, reject) => {
        signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      }),
  });
  const stuck = ["/u/stuck/0", "/u/stuck/1", "/u/stuck/2"];
  const t0 = performance.now();
  const { results } = await h.client.runTasks({
    attempts: [
      ...stuck.map((taskId) => commandTask(taskId, ["true"], { bundleId: "sha256-never" })),
      commandTask("/u/starts/0", ["sleep", "30"]),
    ],
  });
  assert.deepEqual(results.map((r) => TaskState[r.state]), [
    "BUILDING",
    "BUILDING",
    "BUILDING",
    "RUNNING",
  ]);
  assert.ok(performance.now() - t0 < 5_000, "answered after the wait, not after the setup");
  // The wait is over for all of them: a later lone RunTask waits on its own again.
  const late = await h.client.runTask(
    commandTask("/u/stuck/3", ["true"], { bundleId: "sha256-never" }),
  );
  assert.equal(TaskState[late.state], "BUILDING");
  for (const taskId of [...stuck, "/u/stuck/3", "/u/starts/0"]) {
    await h.client.killTask({ taskId, attemptId: 0, reason: "done" });
    await h.fake.waitForState(taskId, TaskState.KILLED);
  }
});

Deno.test("RunTasks answers each attempt as RunTask would: one refused does not stop the others", async () => {
  await using h = await startHarness();
  const { results } = await h.client.runTasks({
    attempts: [
      commandTask("/u/batch/0", ["sleep", "30"]),
      create(RunTaskRequestSchema, { taskId: "/u/batch/1" }),
      commandTask("/u/batch/2", ["sleep", "30"]),
    ],
  });
  assert.deepEqual(
    results.map((r) => [r.accepted, r.error, TaskState[r.state]]),
    [
      [true, "", "RUNNING"],
      [false, "entrypoint: must be a command or a module", "UNSPECIFIED"],
      [true, "", "RUNNING"],
    ],
  );
  for (const taskId of ["/u/batch/0", "/u/batch/2"]) {
    await h.client.killTask({ taskId, attemptId: 0, reason: "done" });
    await h.fake.waitForState(taskId, TaskState.KILLED);
  }
});

Deno.test("RunTasks with hostile batches: empty, too large (refused whole), duplicates, a bad job_id", async () => {
  await using h = await startHarness();
  assert.deepEqual((await h.client.runTasks({ attempts: [] })).results, []);
  const many = Array.from(
    { length: MAX_RUN_TASKS_ATTEMPTS + 1 },
    (_, i) => commandTask(`/u/many/${i}`, ["true"]),
  );
  const err = await h.client.runTasks({ attempts: many }).then(() => undefined, (e) => e);
  assert.ok(err instanceof ConnectError, "a batch past the bound is refused");
  assert.equal(err.code, Code.InvalidArgument);
  assert.match(err.rawMessage, /attempts: at most 1024 per call \(got 1025\)/);
  assert.deepEqual((await h.client.listTasks({})).tasks, [], "none of it started");

  const twice = commandTask("/u/dup/0", ["sleep", "30"]);
  const { results } = await h.client.runTasks({
    attempts: [
      twice,
      commandTask("/u/nojob/0", ["true"], { jobId: "" }),
      twice,
      commandTask("/u/dotdot/0", ["true"], { jobId: ".." }),
    ],
  });
  assert.deepEqual(results.map((r) => [r.accepted, r.error]), [
    [true, ""],
    [false, 'job_id: must name the task\'s job (got "")'],
    [true, ""],
    [false, 'job_id: must name the task\'s job (got "..")'],
  ]);
  assert.equal((await h.client.runTask(twice)).accepted, true, "and again alone");
  const tasks = (await h.client.listTasks({})).tasks;
  assert.deepEqual(tasks.map((t) => t.taskId), ["/u/dup/0"]);
  await h.client.killTask({ taskId: "/u/dup/0", attemptId: 0, reason: "done" });
  await h.fake.waitForState("/u/dup/0", TaskState.KILLED);
});

Deno.test("worker starts an attempt in an empty directory even when an earlier run left one behind", async () => {
  const rootDir = await Deno.makeTempDir({ prefix: "iris-stale-root-" });
  try {
    const taskId = "/u/stale/0";
    const stale = `${rootDir}/tasks/${attemptDirName(taskId, 0)}`;
    await Deno.mkdir(`${stale}/sub`, { recursive: true });
    await Deno.writeTextFile(`${stale}/sub/old.txt`, "from an earlier worker run");
    await using h = await startHarness({ rootDir, cleanup: true });
    await h.client.runTask(commandTask(taskId, ["sh", "-c", "ls -A; pwd"]));
    await h.fake.waitForState(taskId, TaskState.SUCCEEDED);
    const out = h.fake.logsOf(taskId).filter((l) => l.stream === "stdout").map((l) => l.text);
    assert.deepEqual(out, ["tmp", stale]); // only its TMPDIR
  } finally {
    await Deno.remove(rootDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("a reserved port (a gang's MASTER_PORT) is held for the attempt: a second task asking for it is refused", async () => {
  await using h = await startHarness();
  const port = 29_000 + Math.floor(Math.random() * 900);
  await h.client.runTask(
    commandTask("/u/gang-a/0", ["sleep", "30"], { reservedPorts: { MASTER_PORT: port } }),
  );
  await h.fake.waitForState("/u/gang-a/0", TaskState.RUNNING);
  // Same worker (one port table): refused, naming the variable and the port.
  await h.client.runTask(
    commandTask("/u/gang-b/0", ["true"], { reservedPorts: { MASTER_PORT: port } }),
  );
  const refused = await h.fake.waitForState("/u/gang-b/0", TaskState.WORKER_FAILED);
  assert.match(refused.error, new RegExp(`MASTER_PORT ${port} is already in use on this host`));
  // Its named ports are never the reserved one.
  await h.client.runTask(commandTask("/u/named/0", ["true"], { ports: ["p"] }));
  const named = await h.fake.waitForState("/u/named/0", TaskState.SUCCEEDED);
  assert.notEqual(named.ports.p, port);
  // After the holder ends the port is free again.
  await h.client.killTask({ taskId: "/u/gang-a/0", attemptId: 0, reason: "done" });
  await h.fake.waitForState("/u/gang-a/0", TaskState.KILLED);
  await h.client.runTask(
    commandTask("/u/gang-d/0", ["true"], { reservedPorts: { MASTER_PORT: port } }),
  );
  await h.fake.waitForState("/u/gang-d/0", TaskState.SUCCEEDED);
});

Deno.test({
  name: "a kill that comes while the spawner forks the task kills the process once it is up",
  ignore: !TaskSpawner.supported(),
  fn: async () => {
    // Holds every spawn until let go: the attempt then waits in TaskProcess.launch, no process yet.
    class HeldSpawner extends TaskSpawner {
      readonly entered = Promise.withResolvers<void>();
      readonly letGo = Promise.withResolvers<void>();
      override async spawn(request: SpawnRequest) {
        this.entered.resolve();
        await this.letGo.promise;
        return await super.spawn(request);
      }
    }
    const spawner = new HeldSpawner();
    await using h = await startHarness({ taskSpawner: spawner });
    const answer = h.client.runTask(commandTask("/held/0", ["sleep", "30"]));
    await spawner.entered.promise;
    assert.equal(
      (await h.client.killTask({ taskId: "/held/0", attemptId: 0, reason: "stop" })).found,
      true,
    );
    spawner.letGo.resolve();
    await answer;
    // Started, then killed: the process ran (a pid, a signal), and not for its 30 s.
    const update = await h.fake.waitForState("/held/0", TaskState.KILLED, seconds(5));
    assert.match(update.error, /stop/);
    assert.notEqual(update.signal, "");
  },
});
