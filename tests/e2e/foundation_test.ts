/**
 * End to end over real processes on loopback: `iris controller serve` + `iris worker serve`,
 * jobs submitted through the client and the CLI, and a third-party client (buf curl).
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { IrisClient, JobState, TaskState } from "../../mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { runIris, spawnIris } from "../_helpers/iris_process.ts";
import { processesIn } from "../_helpers/leftovers.ts";
import { defaultUser } from "../../src/client/user.ts";

Deno.test("a controller and a worker process run, report, and cancel jobs", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "iris-e2e-" });
  try {
    await using controller = spawnIris(["controller", "serve", "--port", "0"]);
    const url = (await controller.waitForLine(/Controller started at (\S+)/))[1]!;
    await using worker = spawnIris([
      "worker",
      "serve",
      "--controller",
      url,
      "--root-dir",
      root,
      "--cpu",
      "4",
      "--memory",
      "4GiB",
    ]);
    await worker.waitForLine(/serving at/);
    const client = new IrisClient(url);
    await waitFor(async () => (await client.workers()).length === 1, {
      timeout: seconds(20),
      what: "the worker to register",
    });
    const env = { IRIS_CONTROLLER_URL: url, USER: "tester" };

    await t.step("a job's output arrives in its logs", async () => {
      const jobId = await client.submit({
        name: "hello",
        command: ["sh", "-c", "echo hello from iris; echo oops >&2"],
      });
      assertEquals(jobId, `/${defaultUser()}/hello`);
      const job = await client.wait(jobId, { timeout: seconds(30) });
      assertEquals(job.state, JobState.SUCCEEDED);
      const lines = await client.logs(jobId);
      assert(
        lines.some((l) =>
          l.text === "hello from iris" && l.stream === "stdout" && l.timestampMs > 0
        ),
      );
      assert(lines.some((l) => l.text === "oops" && l.stream === "stderr"));
    });

    await t.step(
      "iris job run streams output and mirrors a failing exit code as FAILED",
      async () => {
        const ok = await runIris(
          ["job", "run", "--name", "cli-ok", "--", "echo", "streamed line"],
          { env },
        );
        assertEquals(ok.code, 0, ok.stderr);
        assertMatch(ok.stdout, /streamed line/);
        const bad = await runIris([
          "job",
          "run",
          "--name",
          "cli-bad",
          "--",
          "sh",
          "-c",
          "echo failing >&2; exit 7",
        ], { env });
        assertEquals(bad.code, 7, bad.stderr);
        assertMatch(bad.stderr, /failing/);
        const { job, tasks } = await client.status("/tester/cli-bad");
        assertEquals(job?.state, JobState.FAILED);
        assertEquals(tasks[0]?.exitCode, 7);
        assertEquals(tasks[0]?.state, TaskState.FAILED);
      },
    );

    await t.step("replicas: 3 runs three tasks", async () => {
      const jobId = await client.submit({
        name: "three",
        command: ["sh", "-c", "echo task $IRIS_TASK_INDEX of $IRIS_NUM_TASKS"],
        replicas: 3,
        cpu: 0.5,
      });
      const job = await client.wait(jobId, { timeout: seconds(30) });
      assertEquals(job.state, JobState.SUCCEEDED);
      assertEquals(job.taskCount, 3);
      const texts = (await client.logs(jobId)).filter((l) => l.stream === "stdout").map((l) =>
        l.text
      ).sort();
      assertEquals(texts, ["task 0 of 3", "task 1 of 3", "task 2 of 3"]);
    });

    await t.step("cancelling sleep 1000 ends it and leaves no process behind", async () => {
      const jobId = await client.submit({
        name: "sleeper",
        command: ["sh", "-c", "sleep 1000 & sleep 1000; wait"],
      });
      await waitFor(async () => (await client.status(jobId)).job?.state === JobState.RUNNING, {
        timeout: seconds(20),
        what: "sleeper to run",
      });
      // The task runs in the worker's root: its processes, not other tests' `sleep 1000`s.
      await waitFor(async () => (await processesIn(root)).length >= 3, {
        timeout: seconds(10),
        what: "sh and its two sleeps",
      });
      const cancel = await runIris(["job", "cancel", jobId], { env });
      assertEquals(cancel.code, 0, cancel.stderr);
      const job = await client.wait(jobId, { timeout: seconds(20) });
      assertEquals(job.state, JobState.KILLED);
      // KILLED is the job's state from the cancel on; the worker kills the tree just after.
      await waitFor(async () => (await processesIn(root)).length === 0, {
        timeout: seconds(15),
        what: "the task's processes to be gone",
      });
      // The worker's resources are free again: a full-size job still fits.
      const again = await client.submit({ name: "after-cancel", command: ["true"], cpu: 4 });
      assertEquals((await client.wait(again, { timeout: seconds(20) })).state, JobState.SUCCEEDED);
    });

    await t.step("a third-party client (buf curl) lists the jobs", async () => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "npm:@bufbuild/buf@1.74.0",
          "curl",
          "--protocol",
          "connect",
          "--schema",
          new URL("../../proto", import.meta.url).pathname,
          "--data",
          "{}",
          `${url}/iris.v1.ControllerService/ListJobs`,
        ],
        env: { RUST_BACKTRACE: "0" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
      const body = JSON.parse(text);
      assert(body.jobs.some((j: { jobId: string }) => j.jobId === `/${defaultUser()}/hello`), text);
    });

    await t.step("bad input gets one clear line and changes nothing", async () => {
      const before = (await client.list()).total;
      const empty = await runIris(["job", "run", "--"], { env });
      assertEquals(empty.code, 2);
      assertMatch(empty.stderr, /missing COMMAND/);
      const negative = await runIris(["job", "run", "--cpu=-1", "--", "true"], { env });
      assertEquals(negative.code, 2);
      assertMatch(negative.stderr, /--cpu must be a number between 0 and 1024/);
      const absurd = await runIris(["job", "run", "--memory", "9000PB", "--", "true"], { env });
      assertEquals(absurd.code, 2);
      const unknown = await runIris(["job", "status", "/nobody/nothing"], { env });
      assertEquals(unknown.code, 1);
      assertMatch(unknown.stderr, /No job \/nobody\/nothing/);
      const rpcBad = await client.rpc.launchJob({
        spec: { name: "x", entrypoint: { kind: { case: "command", value: { argv: [] } } } },
      }).then(() => "", (e) => String(e));
      assertMatch(rpcBad, /spec.entrypoint.command.argv: must not be empty/);
      assertEquals((await client.list()).total, before);
    });

    await t.step("a controller that is down is named with its URL", async () => {
      const down = await runIris(["job", "list", "--controller", "http://127.0.0.1:9"], {
        env: {},
      });
      assertEquals(down.code, 1);
      assertMatch(down.stderr, /Cannot reach the controller at http:\/\/127\.0\.0\.1:9/);
    });
  } finally {
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
});
