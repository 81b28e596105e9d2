/**
 * Exactly-once execution over real processes (docs/durability.md, issue #15):
 * - a controller killed with SIGKILL while its tasks end: every task runs once and ends as its
 *   command did (exit 0 → SUCCEEDED, exit 3 with max_retries_failure 0 → FAILED, exit 3);
 * - a worker restarted under the same id without its attempt: the attempt fails at once (long
 *   before any heartbeat timeout) with a reason, and its CPU is free again;
 * - a state dir on a 1 MiB tmpfs that fills up: submits answer `unavailable` and leave nothing,
 *   the controller says it is unhealthy and why, nothing runs, a task's end is deferred (kept by
 *   the worker, which is not declared dead); when space comes back it recovers by itself, the end
 *   is applied once and the retried submit (same request id) creates its job once.
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { IrisClient, JobState, TaskState } from "../../mod.ts";
import { ms, seconds, waitFor } from "../../src/time.ts";
import { type IrisProcess, spawnIris } from "../_helpers/iris_process.ts";
import { startController } from "../../src/controller/server.ts";

function spawnWorker(url: string, root: string, id: string): IrisProcess {
  return spawnIris([
    "worker",
    "serve",
    "--controller",
    url,
    "--root-dir",
    root,
    "--worker-id",
    id,
    "--cpu",
    "8",
    "--memory",
    "4GiB",
    "--task-users",
    "off",
    "--quiet",
  ]);
}

function serveArgs(port: string, stateDir: string): string[] {
  return ["controller", "serve", "--port", port, "--state-dir", stateDir, "--quiet"];
}

/** The last segment of a job id. */
function leaf(jobId: string): string {
  return jobId.slice(jobId.lastIndexOf("/") + 1);
}

async function tempDir(prefix: string): Promise<string> {
  return await Deno.makeTempDir({ prefix });
}

Deno.test("tasks that end while the controller is down (SIGKILL) run once and keep their outcome", async () => {
  const dir = await tempDir("iris-exactly-once-");
  const stateDir = `${dir}/state`;
  const runs = `${dir}/runs`;
  await Deno.mkdir(runs);
  const first = spawnIris(serveArgs("0", stateDir));
  let second: IrisProcess | undefined;
  try {
    const url = (await first.waitForLine(/Controller started at (\S+)/))[1]!;
    const port = new URL(url).port;
    await using _worker = spawnWorker(url, `${dir}/worker`, "w-once");
    const client = new IrisClient(url, { retryFor: seconds(30) });
    // 12 tasks: even ones exit 0, odd ones exit 3 (no failure retries). Each records its run,
    // then waits for its go file: 8 are released while the controller is down, 4 after.
    const n = 12;
    const exitOf = (i: number) => (i % 2 === 0 ? 0 : 3);
    const jobIds: string[] = [];
    for (let i = 0; i < n; i++) {
      const script = `echo "$IRIS_ATTEMPT_ID" >> ${runs}/t${i}; ` +
        `while [ ! -e ${runs}/go${i} ]; do sleep 0.05; done; exit ${exitOf(i)}`;
      jobIds.push(
        await client.submit({
          name: `once-${i}`,
          command: ["sh", "-c", script],
          cpu: 0.5,
          maxRetriesFailure: 0,
        }),
      );
    }
    await waitFor(async () => {
      for (const id of jobIds) {
        if ((await client.tasks(id))[0]?.state !== TaskState.RUNNING) return false;
      }
      return true;
    }, { timeout: seconds(60), what: "every task to run" });

    first.child.kill("SIGKILL");
    await first.status;
    const killedAt = performance.now();
    // 8 tasks end during the outage, a few hundred ms apart, while the worker keeps retrying.
    for (let i = 0; i < 8; i++) {
      await Deno.writeTextFile(`${runs}/go${i}`, "");
      await new Promise((r) => setTimeout(r, 150));
    }
    await new Promise((r) => setTimeout(r, 1500)); // the worker's backoff grows past 1 s
    second = spawnIris(serveArgs(port, stateDir));
    await second.waitForLine(/Controller started at/);
    const restartedAt = performance.now();
    for (let i = 8; i < n; i++) await Deno.writeTextFile(`${runs}/go${i}`, "");

    const done = await waitFor(async () => {
      const all = await Promise.all(jobIds.map((id) => client.tasks(id)));
      return all.every((ts) =>
          ts[0] && ts[0].state !== TaskState.RUNNING &&
          ts[0].state !== TaskState.PENDING && ts[0].state !== TaskState.ASSIGNED
        )
        ? all.map((ts) => ts[0]!)
        : undefined;
    }, { timeout: seconds(60), what: "every task to end" });
    const finishedAt = performance.now();
    for (let i = 0; i < n; i++) {
      const t = done[i]!;
      const expected = exitOf(i) === 0 ? TaskState.SUCCEEDED : TaskState.FAILED;
      assertEquals(
        [TaskState[t.state], t.attempts.length, t.exitCode],
        [TaskState[expected], 1, exitOf(i)],
        `task ${i}: ${JSON.stringify(t.attempts.map((a) => [TaskState[a.state], a.error]))}`,
      );
      const ran = (await Deno.readTextFile(`${runs}/t${i}`)).trim().split("\n");
      assertEquals(ran, ["0"], `task ${i} ran once`);
    }
    for (let i = 0; i < n; i++) {
      const job = (await client.status(jobIds[i]!)).job!;
      assertEquals(job.state, exitOf(i) === 0 ? JobState.SUCCEEDED : JobState.FAILED);
    }
    console.log(
      `${n} tasks (8 ended during a ${
        Math.round(restartedAt - killedAt)
      } ms outage): every one ran once with its own outcome; all ended ${
        Math.round(finishedAt - restartedAt)
      } ms after the restart`,
    );
  } finally {
    await first.stop();
    await second?.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("a worker restarted under the same id has its lost attempt failed at once and freed", async () => {
  const dir = await tempDir("iris-same-id-");
  // A long heartbeat timeout (30 × 1 s): only the re-registration can explain a quick failure.
  await using server = startController({ heartbeatFailureThreshold: 30 });
  const client = new IrisClient(server.url);
  let second: IrisProcess | undefined;
  try {
    const first = spawnWorker(server.url, `${dir}/a`, "w-same");
    try {
      const jobId = await client.submit({
        name: "long",
        command: ["sleep", "60"],
        cpu: 0.5,
      });
      await waitFor(async () => (await client.tasks(jobId))[0]?.state === TaskState.RUNNING, {
        timeout: seconds(30),
        what: "the task to run",
      });
      first.child.kill("SIGKILL");
      await first.status;
      const killedAt = performance.now();
      second = spawnWorker(server.url, `${dir}/b`, "w-same");
      let seen = "";
      const task = await waitFor(async () => {
        const [t] = await client.tasks(jobId);
        seen = t
          ? `${TaskState[t.state]} (${t.pendingReason?.message ?? ""}); attempts: ${
            t.attempts.map((a) => `${TaskState[a.state]} ${a.error}`).join(" | ")
          }`
          : "no task";
        return t && t.attempts.length === 2 && t.state === TaskState.RUNNING ? t : undefined;
      }, { timeout: seconds(25), what: "the lost attempt to fail and its retry to run" }).catch(
        (err) => {
          throw new Error(`${err.message}; last seen: ${seen}`);
        },
      );
      const failedAfter = performance.now() - killedAt;
      const lost = task.attempts[0]!;
      assertEquals(TaskState[lost.state], "WORKER_FAILED");
      assert(lost.error.includes("came back without attempt 0"), lost.error);
      assert(failedAfter < 25_000);
      const [w] = await client.workers();
      // Only the retry's 0.5 CPU is committed on the worker.
      assertEquals(w?.workerId, "w-same");
      assertEquals(w?.committed?.cpuMillicores, 500);
      console.log(
        `worker restarted under the same id: lost attempt failed and retried after ${
          Math.round(failedAfter)
        } ms (heartbeat timeout 30 s)`,
      );
      await client.cancel(jobId);
    } finally {
      await first.stop();
    }
  } finally {
    await second?.stop();
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

/** Mounts a tmpfs of `size` on `dir`; false when this is not possible (not root, no mount). */
async function mountTmpfs(dir: string, size: string): Promise<boolean> {
  if (Deno.uid() !== 0) return false;
  const out = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => undefined);
  return out?.success ?? false;
}

async function umount(dir: string): Promise<void> {
  await new Deno.Command("umount", { args: ["-l", dir], stdout: "null", stderr: "null" }).output()
    .catch(() => {});
}

/** Fills the file system of `dir` with `${dir}/filler` until it is full. */
async function fill(dir: string): Promise<void> {
  using f = await Deno.open(`${dir}/filler`, { create: true, write: true, append: true });
  const chunk = new Uint8Array(4096);
  try {
    while (true) await f.write(chunk);
  } catch (err) {
    if (!(err instanceof Error && /No space left|ENOSPC/i.test(err.message))) throw err;
  }
}

Deno.test({
  name:
    "a state dir on a tmpfs that fills up: nothing acknowledged or run, unhealthy, then recovers",
  async fn(t) {
    const dir = await tempDir("iris-full-disk-");
    const stateDir = `${dir}/state`;
    await Deno.mkdir(stateDir);
    if (!await mountTmpfs(stateDir, "1M")) {
      console.log("skipped: cannot mount a tmpfs here (needs root)");
      await Deno.remove(dir, { recursive: true });
      return;
    }
    const controller = spawnIris(serveArgs("0", stateDir));
    try {
      const url = (await controller.waitForLine(/Controller started at (\S+)/))[1]!;
      await using _worker = spawnWorker(url, `${dir}/worker`, "w-full");
      const client = new IrisClient(url, { retryFor: seconds(60) });
      const impatient = new IrisClient(url, { retryFor: ms(300) });
      await waitFor(async () => (await client.workers()).length === 1, {
        timeout: seconds(20),
        what: "the worker to register",
      });
      const before = await client.submit({ name: "before", command: ["true"] });
      assertEquals((await client.wait(before, { timeout: seconds(30) })).state, JobState.SUCCEEDED);
      // A task that ends (exit 3, no failure retries) while the disk is full.
      const straddleScript = `echo run >> ${dir}/straddle-runs; ` +
        `while [ ! -e ${dir}/straddle-go ]; do sleep 0.05; done; exit 3`;
      const straddle = await client.submit({
        name: "straddle",
        command: ["sh", "-c", straddleScript],
        maxRetriesFailure: 0,
      });
      await waitFor(async () => (await client.tasks(straddle))[0]?.state === TaskState.RUNNING, {
        timeout: seconds(30),
        what: "the straddling task to run",
      });

      await fill(stateDir);
      const marker = `${dir}/ran`;
      const job = { name: "during", command: ["sh", "-c", `echo x >> ${marker}`] };
      let refused = 0;
      const t0 = performance.now();
      for (let i = 0; i < 20 && refused < 3; i++) {
        try {
          await impatient.submit(job, {
            requestId: `full-${i}`,
          });
        } catch (err) {
          assert(/unavailable|unreachable/i.test(String(err)), String(err));
          refused++;
        }
      }
      assert(refused >= 3, `submits refused on a full disk (${refused})`);
      await Deno.writeTextFile(`${dir}/straddle-go`, "");
      // Longer than the heartbeat timeout (3 s): the worker must not be declared dead meanwhile.
      await new Promise((r) => setTimeout(r, 4000));
      assertEquals((await client.tasks(straddle))[0]?.state, TaskState.RUNNING, "end deferred");
      const status = await client.call((rpc) => rpc.getControllerStatus({}));
      assertEquals(status.healthy, false);
      assert(/full/i.test(status.statusMessage), status.statusMessage);
      console.log(`unhealthy while full: ${status.statusMessage}`);

      // A submit retried by the client (same request id) while the disk is full...
      const retried = client.submit({ name: "retried", command: ["true"] }, {
        requestId: "retried-req",
      });
      await new Promise((r) => setTimeout(r, 1000));
      const { jobs } = await client.list({ prefix: "/", limit: 100 });
      assertEquals(
        jobs.map((j) => leaf(j.jobId)).filter((n) => n !== "before" && n !== "straddle"),
        [],
        "nothing kept",
      );
      // ... goes through once the disk has room again; the controller recovers by itself.
      await Deno.remove(`${stateDir}/filler`);
      const retriedId = await retried;
      const recoveredAfter = performance.now() - t0;
      await waitFor(async () => (await client.call((rpc) => rpc.getControllerStatus({}))).healthy, {
        timeout: seconds(10),
        what: "the controller to report itself healthy",
      });
      assertEquals(
        (await client.wait(retriedId, { timeout: seconds(30) })).state,
        JobState.SUCCEEDED,
      );
      assertEquals(
        await client.submit({ name: "x", command: ["true"] }, {
          requestId: "retried-req",
        }),
        retriedId,
      );
      const names = (await client.list({ prefix: "/", limit: 100 })).jobs.map((j) => leaf(j.jobId));
      assertEquals(names.sort(), ["before", "retried", "straddle"]);
      // The end that came during the outage is applied once: FAILED with exit 3, one run.
      const [st] = await waitFor(async () => {
        const ts = await client.tasks(straddle);
        return ts[0]?.state === TaskState.FAILED ? ts : undefined;
      }, { timeout: seconds(10), what: "the deferred end to be applied" });
      assertEquals([st!.attempts.length, st!.exitCode], [1, 3]);
      assertEquals((await Deno.readTextFile(`${dir}/straddle-runs`)).trim().split("\n"), ["run"]);
      assertEquals((await client.workers()).map((w) => [w.workerId, w.healthy]), [[
        "w-full",
        true,
      ]]);
      assertEquals(await Deno.stat(marker).then(() => true, () => false), false, "nothing ran");
      console.log(
        `full tmpfs: ${refused} submits refused, none ran; recovered ${
          Math.round(recoveredAfter)
        } ms after the disk filled (retried submit created once)`,
      );
      await t.step("a restart keeps exactly the acknowledged jobs", async () => {
        controller.child.kill("SIGKILL");
        await controller.status;
        const again = spawnIris(serveArgs(new URL(url).port, stateDir));
        try {
          await again.waitForLine(/Controller started at/);
          const after = (await client.list({ prefix: "/", limit: 100 })).jobs;
          assertEquals(after.map((j) => [leaf(j.jobId), j.state]).sort(), [
            ["before", JobState.SUCCEEDED],
            ["retried", JobState.SUCCEEDED],
            ["straddle", JobState.FAILED],
          ]);
        } finally {
          await again.stop();
        }
      });
    } finally {
      await controller.stop();
      await umount(stateDir);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
