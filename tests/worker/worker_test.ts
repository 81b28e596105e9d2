/**
 * The worker's life with its controller: registration, heartbeats, immediate updates,
 * re-registration, kill orders, retries while the controller is away, and stop().
 * @module
 */
import assert from "node:assert/strict";
import { TaskState } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { ms, seconds, waitFor } from "../../src/time.ts";
import { workerClient } from "../../src/rpc/client.ts";
import { PortAllocator, startWorker } from "../../src/worker/mod.ts";
import { FakeController } from "./fake_controller.ts";
import { commandTask, startHarness } from "./harness.ts";

Deno.test("startWorker() registers its address, resources and typed attributes, then heartbeats with a snapshot", async () => {
  await using h = await startHarness({
    workerId: "w-1",
    attributes: { zone: "us-a", "tpu-worker-id": 0, preemptible: true, ratio: 0.5 },
    scaleGroup: "cpu",
    sliceId: "slice-1",
  });
  await h.worker.registered;
  const reg = h.fake.registrations[0]!;
  assert.equal(reg.workerId, "w-1");
  assert.equal(reg.address, h.worker.url);
  assert.equal(reg.resources?.cpuMillicores, 2000);
  assert.equal(reg.resources?.memoryBytes, 4 * 1024 ** 3);
  // The worker adds the version of the task PATH's python3 (docs/python.md).
  const { python_version: python, ...given } = reg.attributes;
  assert.match(String(python?.kind.value), /^\d+\.\d+/);
  assert.deepEqual(
    Object.fromEntries(
      Object.entries(given).map(([k, v]) => [k, [v.kind.case, v.kind.value]]),
    ),
    {
      zone: ["stringValue", "us-a"],
      "tpu-worker-id": ["intValue", 0],
      preemptible: ["boolValue", true],
      ratio: ["floatValue", 0.5],
    },
  );
  assert.deepEqual([reg.scaleGroup, reg.sliceId], ["cpu", "slice-1"]);
  await waitFor(() => h.fake.heartbeats.length >= 2, {
    timeout: seconds(5),
    what: "two heartbeats",
  });
  // The first heartbeat after registering carries the whole snapshot (later ones only changes).
  const hb = h.fake.heartbeats[0]!;
  assert.equal(hb.workerId, "w-1");
  assert.equal(hb.snapshot?.memoryTotalBytes, 4 * 1024 ** 3);
  assert.equal(hb.snapshot?.runningTasks, 0);
  const health = await h.client.health({});
  assert.deepEqual([health.healthy, health.workerId, health.runningTasks], [true, "w-1", 0]);
  if (Deno.build.os !== "linux") return;
  // Host figures (this process may read /proc): memory at once, CPU from the second reading.
  const host = await waitFor(
    () => h.fake.heartbeats.findLast((b) => b.snapshot?.hostCpuMillicores !== undefined)?.snapshot,
    { timeout: seconds(5), what: "a heartbeat with host CPU" },
  );
  assert.ok(host.hostCpuTotalMillicores! >= 1000, JSON.stringify(host));
  assert.ok(host.hostCpuMillicores! <= host.hostCpuTotalMillicores!);
  assert.ok(host.hostMemoryTotalBytes! > 0, JSON.stringify(host));
  assert.ok(
    host.hostMemoryUsedBytes! > 0 && host.hostMemoryUsedBytes! <= host.hostMemoryTotalBytes!,
  );
  // WorkerService.Health carries the same snapshot (without per-task samples) for the dashboard.
  const snap = (await h.client.health({})).snapshot;
  assert.equal(snap?.memoryTotalBytes, 4 * 1024 ** 3);
  assert.ok(snap?.hostMemoryTotalBytes === host.hostMemoryTotalBytes, JSON.stringify(snap));
  assert.ok(snap?.hostCpuMillicores !== undefined);
});

Deno.test("worker sends task updates at once, not at the next heartbeat tick", async () => {
  await using h = await startHarness({ heartbeatInterval: seconds(30) });
  await h.worker.registered;
  const started = performance.now();
  await h.client.runTask(commandTask("/u/quick/0", ["sh", "-c", "echo hi"]));
  // Well before the next heartbeat (30 s): the update did not wait for the tick.
  await h.fake.waitForState("/u/quick/0", TaskState.SUCCEEDED, seconds(20));
  assert.ok(performance.now() - started < 20_000);
  assert.ok(h.fake.logsOf("/u/quick/0").some((l) => l.text === "hi"));
});

Deno.test("heartbeats list running attempts; a reregister answer makes the worker register again with them", async () => {
  await using h = await startHarness();
  const taskId = "/u/long/0";
  await h.client.runTask(commandTask(taskId, ["sleep", "30"], { attemptId: 2 }));
  await h.fake.waitForState(taskId, TaskState.RUNNING);
  await waitFor(
    () =>
      h.fake.heartbeats.some((hb) =>
        hb.running.some((r) => r.taskId === taskId && r.attemptId === 2)
      ),
    {
      timeout: seconds(5),
      what: "a heartbeat listing the attempt",
    },
  );
  assert.equal(h.fake.registrations.length, 1);
  h.fake.reregisterNext = true;
  await waitFor(() => h.fake.registrations.length === 2, {
    timeout: seconds(5),
    what: "a second registration",
  });
  assert.deepEqual(h.fake.registrations[1]!.running.map((r) => [r.taskId, r.attemptId]), [[
    taskId,
    2,
  ]]);
});

Deno.test("worker kills the attempts a heartbeat answer lists", async () => {
  await using h = await startHarness();
  await h.client.runTask(commandTask("/u/unwanted/0", ["sleep", "30"]));
  await h.fake.waitForState("/u/unwanted/0", TaskState.RUNNING);
  h.fake.killNext = [{ taskId: "/u/unwanted/0", attemptId: 0 }];
  const killed = await h.fake.waitForState("/u/unwanted/0", TaskState.KILLED);
  assert.equal(killed.error, "the controller no longer wants this attempt");
});

Deno.test("worker retries registration until the controller is up and keeps updates across failed heartbeats", async () => {
  const port = new PortAllocator({ min: 31500, max: 31999 }).allocate();
  const logs: string[] = [];
  await using worker = await startWorker({
    controllerUrl: `http://127.0.0.1:${port}`,
    resources: { cpuMillicores: 1000, memoryBytes: 1024 ** 3 },
    heartbeatInterval: ms(100),
    log: (line) => logs.push(line),
  });
  await waitFor(
    () =>
      logs.find((l) =>
        l.startsWith(`register with controller at http://127.0.0.1:${port} failed (attempt 1)`)
      ),
    {
      timeout: seconds(5),
      what: "a logged registration failure",
    },
  );
  await using fake = new FakeController(port);
  await worker.registered;
  fake.failHeartbeats = 3;
  const client = workerClient(worker.url);
  await client.runTask(commandTask("/u/retry/0", ["sh", "-c", "echo kept"]));
  await fake.waitForState("/u/retry/0", TaskState.SUCCEEDED);
  assert.equal(fake.failHeartbeats, 0);
  assert.ok(fake.logsOf("/u/retry/0").some((l) => l.text === "kept"));
  assert.ok(
    logs.some((l) => /^heartbeat to controller at .* failed \(attempt 1\)/.test(l)),
    logs.join("\n"),
  );
});

Deno.test("stop() kills running tasks, reports them WORKER_FAILED, removes a temp root and is idempotent", async () => {
  const fake = new FakeController();
  try {
    const worker = await startWorker({
      controllerUrl: fake.url,
      resources: { cpuMillicores: 1000, memoryBytes: 1024 ** 3 },
      heartbeatInterval: ms(100),
    });
    const client = workerClient(worker.url);
    await client.runTask(commandTask("/u/orphan/0", ["sleep", "30"]));
    await fake.waitForState("/u/orphan/0", TaskState.RUNNING);
    await Promise.all([worker.stop(), worker.stop()]);
    const failed = fake.updatesOf("/u/orphan/0").find((u) => u.state === TaskState.WORKER_FAILED);
    assert.equal(failed?.error, "worker stopped");
    await assert.rejects(Deno.stat(worker.rootDir), Deno.errors.NotFound);
    await worker.stop();
  } finally {
    await fake[Symbol.asyncDispose]();
  }
});

Deno.test("startWorker() stops when its signal aborts", async () => {
  await using fake = new FakeController();
  const abort = new AbortController();
  const worker = await startWorker({
    controllerUrl: fake.url,
    resources: { cpuMillicores: 1000, memoryBytes: 1024 ** 3 },
    signal: abort.signal,
  });
  await worker.registered;
  abort.abort();
  await worker.stop();
  await assert.rejects(fetch(`${worker.url}/`), TypeError);
});
