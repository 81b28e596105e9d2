/**
 * Workspace bundles on a local cluster, whose workers are Deno Workers with scoped permissions
 * (no `sys` access beyond host metrics): a shipped script and data file run there, and a bundle
 * that cannot be fetched or is corrupt fails the task under the failure budget (max_retries_failure),
 * never as a worker failure retried under the preemption budget.
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { IrisClient, JobState, TaskState } from "../../mod.ts";
import { parseConfig } from "../../src/config/mod.ts";
import { LocalController } from "../../src/cluster/local_controller.ts";
import { seconds } from "../../src/time.ts";
import { runIris, spawnIris } from "../_helpers/iris_process.ts";

/** No bundle_prefix: the controller keeps bundles in <state_dir>/bundles. */
function localConfig(stateDir: string) {
  return parseConfig(
    `
name: ws
controller:
  local: { port: 0 }
  state_dir: ${stateDir}
defaults:
  autoscaler: { evaluation_interval: 200ms, scale_up_cooldown: 200ms }
scale_groups:
  cpu:
    provider: { local: {} }
    accelerator_type: cpu
    min_slices: 1
    max_slices: 1
    vm_resources: { cpu: 2, memory: 2GiB }
`,
    "ws.yaml",
  );
}

Deno.test("workspace bundles on a local cluster: shipped files run; a bad bundle spends the failure budget", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "iris-ws-local-" });
  const controller = new LocalController(localConfig(`${root}/state`));
  try {
    const url = await controller.start();
    const client = new IrisClient(url);

    await t.step("a script and its data file ship to a Deno-Worker VM and run", async () => {
      await Deno.mkdir(`${root}/ws/data`, { recursive: true });
      await Deno.writeTextFile(`${root}/ws/data/input.txt`, "three\nlines\nhere\n");
      await Deno.writeTextFile(
        `${root}/ws/run.sh`,
        '#!/bin/sh\necho "lines=$(wc -l < data/input.txt) mode=$(stat -c %a run.sh)"\n',
      );
      await Deno.chmod(`${root}/ws/run.sh`, 0o755);
      const bundleId = await client.uploadWorkspace(`${root}/ws`);
      const id = await client.submit({
        name: "ws-run",
        command: ["./run.sh"],
        bundleId,
        cpu: 0.5,
        memory: 2 ** 27,
      });
      const job = await client.wait(id, { timeout: seconds(60) });
      assertEquals(job.state, JobState.SUCCEEDED, job.error);
      const out = (await client.logs(id)).filter((l) => l.stream === "stdout").map((l) => l.text);
      assertEquals(out, ["lines=3 mode=755"]);
    });

    await t.step(
      "iris job run -w DIR -- ls: the CLI ships the workspace and lists it",
      async () => {
        const res = await runIris([
          "job",
          "run",
          "--controller",
          url,
          "--cpu",
          "0.5",
          "--memory",
          "128MiB",
          "-w",
          `${root}/ws`,
          "--",
          "ls",
          "data",
        ]);
        assertEquals(res.code, 0, res.stdout + res.stderr);
        assertMatch(res.stderr, /Uploaded workspace .* as sha256-[0-9a-f]{64}/);
        assertMatch(res.stdout, /input\.txt/);
      },
    );

    await t.step(
      "a bundle the controller does not have: FAILED after 1 + max_retries_failure attempts",
      async () => {
        const missing = `sha256-${"0".repeat(64)}`;
        const id = await client.submit({
          name: "ws-missing",
          command: ["true"],
          bundleId: missing,
          cpu: 0.5,
          memory: 2 ** 27,
          maxRetriesFailure: 2,
        });
        const job = await client.wait(id, { timeout: seconds(60) });
        assertEquals(JobState[job.state], "FAILED", job.error);
        const task = (await client.status(id)).tasks[0]!;
        assertEquals(TaskState[task.state], "FAILED");
        assertEquals(task.attempts.length, 3);
        assert(task.attempts.every((a) => a.state === TaskState.FAILED), JSON.stringify(task));
        assertEquals([task.failureCount, task.preemptionCount], [3, 0]);
        assertMatch(task.error, new RegExp(`fetching bundle ${missing} failed: .*not found`, "i"));
      },
    );

    await t.step("a bundle corrupted in storage: FAILED, naming the hash mismatch", async () => {
      await Deno.mkdir(`${root}/ws2`);
      await Deno.writeTextFile(`${root}/ws2/a.txt`, "original");
      const bundleId = await client.uploadWorkspace(`${root}/ws2`);
      await Deno.mkdir(`${root}/ws3`);
      await Deno.writeTextFile(`${root}/ws3/a.txt`, "substituted");
      const other = await client.uploadWorkspace(`${root}/ws3`);
      // Storage now returns other bytes for the id: the worker's hash check refuses them.
      const store = `${root}/state/bundles`;
      await Deno.copyFile(`${store}/${other}.tar.gz`, `${store}/${bundleId}.tar.gz`);
      const id = await client.submit({
        name: "ws-corrupt",
        command: ["cat", "a.txt"],
        bundleId,
        cpu: 0.5,
        memory: 2 ** 27,
        maxRetriesFailure: 1,
      });
      const job = await client.wait(id, { timeout: seconds(60) });
      assertEquals(JobState[job.state], "FAILED", job.error);
      const task = (await client.status(id)).tasks[0]!;
      assertEquals(task.attempts.length, 2);
      assertEquals([task.failureCount, task.preemptionCount], [2, 0]);
      assertMatch(task.error, new RegExp(`fetching bundle ${bundleId} failed: .*${other}`));
    });
  } finally {
    await controller.stop();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("controller serve keeps bundles in <state-dir>/bundles across a restart", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-ws-state-" });
  try {
    await Deno.mkdir(`${root}/ws`);
    await Deno.writeTextFile(`${root}/ws/a.txt`, "kept");
    const serve = ["controller", "serve", "--port", "0", "--state-dir", `${root}/state`];
    let bundleId: string;
    {
      await using ctl = spawnIris(serve);
      const [, url] = await ctl.waitForLine(/Controller started at (\S+)/);
      bundleId = await new IrisClient(url!).uploadWorkspace(`${root}/ws`);
    }
    const stored = await Deno.stat(`${root}/state/bundles/${bundleId}.tar.gz`);
    assert(stored.isFile);
    await using ctl = spawnIris(serve);
    const [, url] = await ctl.waitForLine(/Controller started at (\S+)/);
    const { data } = await new IrisClient(url!).rpc.getBundle({ bundleId });
    assertEquals(data.length, stored.size);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
