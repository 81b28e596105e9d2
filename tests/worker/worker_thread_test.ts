/**
 * The worker inside a Deno Worker with scoped permissions, as local mode runs it: read/write only
 * its root (plus the code), loopback network, and only `sh`, `ps` and `kill` may be run.
 * @module
 */
import assert from "node:assert/strict";
import { TaskState } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { workerClient } from "../../src/rpc/client.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { FakeController } from "./fake_controller.ts";
import { commandTask } from "./harness.ts";
import { groupProcesses } from "./procs.ts";

type Reply = { type: "started"; url: string } | { type: "stopped" } | {
  type: "error";
  message: string;
};

Deno.test("startWorker() runs tasks and kills process trees inside a permission-restricted Deno Worker", async () => {
  await using fake = new FakeController();
  const rootDir = await Deno.makeTempDir({ prefix: "iris-thread-worker-" });
  const code = new URL("../../", import.meta.url).pathname;
  const thread = new Worker(new URL("./thread_entry.ts", import.meta.url), {
    type: "module",
    deno: {
      permissions: {
        read: [code, rootDir],
        write: [rootDir],
        net: ["127.0.0.1"],
        run: ["sh", "ps", "kill"],
        env: false,
        sys: false,
        ffi: false,
        import: false,
      },
    },
  });
  const replies: Reply[] = [];
  thread.onmessage = (e: MessageEvent<Reply>) => replies.push(e.data);
  const reply = (type: Reply["type"]) =>
    waitFor(() => replies.find((r) => r.type === type || r.type === "error"), {
      timeout: seconds(30),
      what: `"${type}" from the thread`,
    });
  try {
    thread.postMessage({ type: "start", controllerUrl: fake.url, rootDir });
    const started = await reply("started");
    assert.equal(started.type, "started", JSON.stringify(started));
    const client = workerClient((started as { url: string }).url);

    await client.runTask(commandTask("/t/echo/0", ["sh", "-c", "echo in thread; exit 4"]));
    const failed = await fake.waitForState("/t/echo/0", TaskState.FAILED);
    assert.equal(failed.exitCode, 4);
    assert.ok(fake.logsOf("/t/echo/0").some((l) => l.text === "in thread"));

    await client.runTask(commandTask("/t/sleep/0", ["sh", "-c", "sleep 1000 & sleep 1000; wait"]));
    await fake.waitForState("/t/sleep/0", TaskState.RUNNING);
    const pid = (await client.getTaskStatus({ taskId: "/t/sleep/0" })).task?.pid ?? 0;
    await waitFor(async () => (await groupProcesses(pid)).length >= 3, {
      timeout: seconds(5),
      what: "sh and two sleeps",
    });
    await client.killTask({ taskId: "/t/sleep/0", attemptId: 0, reason: "test" });
    await fake.waitForState("/t/sleep/0", TaskState.KILLED);
    assert.deepEqual(await groupProcesses(pid), []);
    // Without `sys` permission the host cannot be read: host figures are absent, never 0.
    const snapshots = fake.heartbeats.flatMap((b) => b.snapshot ? [b.snapshot] : []);
    assert.ok(snapshots.length > 0);
    for (const s of snapshots) {
      assert.deepEqual(
        [s.hostCpuMillicores, s.hostCpuTotalMillicores, s.hostMemoryUsedBytes],
        [undefined, undefined, undefined],
      );
      assert.equal(s.hostMemoryTotalBytes, undefined);
    }

    thread.postMessage({ type: "stop" });
    assert.equal((await reply("stopped")).type, "stopped");
  } finally {
    thread.terminate();
    await Deno.remove(rootDir, { recursive: true });
  }
});
