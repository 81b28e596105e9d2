/**
 * The job model on a real local cluster (examples/local.yaml, in process): the job context a task
 * sees, child-job inheritance, scheduling and execution timeouts, max_task_failures, and
 * `iris job logs -f` with a level filter.
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { IrisClient, JobState, TaskState } from "../../mod.ts";
import { jobContext } from "../../src/client/mod.ts";
import { loadConfig } from "../../src/config/mod.ts";
import { startCluster } from "../../src/cluster/cluster.ts";
import { main } from "../../src/cli/main.ts";
import { seconds } from "../../src/time.ts";

const EXAMPLE = new URL("../../examples/local.yaml", import.meta.url).pathname;
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const small = { cpu: 0.2, memory: 64 * 2 ** 20 };

async function stdoutOf(client: IrisClient, id: string): Promise<string[]> {
  return (await client.logs(id)).filter((l) => l.stream === "stdout").map((l) => l.text);
}

async function workerRegion(client: IrisClient, jobId: string): Promise<unknown> {
  const task = (await client.status(jobId)).tasks[0]!;
  const worker = (await client.workers()).find((w) => w.workerId === task.workerId);
  return worker?.attributes.region?.kind.value;
}

Deno.test("job model on a local cluster: context, inheritance, timeouts, failures, logs", async (t) => {
  const config = await loadConfig(EXAMPLE);
  // Its own work dir prefix: the smoke test counts leftover "iris-local-" dirs while this runs.
  const workDir = await Deno.makeTempDir({ prefix: "iris-job-model-" });
  const cluster = await startCluster(config, { workDir });
  const url = cluster.url;
  try {
    const client = new IrisClient(url);

    await t.step("a task sees its job context in env and jobContext() reads it back", async () => {
      const id = await client.submit({
        ...small,
        name: "context",
        command: ["sh", "-c", "env | grep '^IRIS_'"],
        replicas: 2,
        ports: ["http", "grpc"],
      });
      assertEquals((await client.wait(id, { timeout: seconds(60) })).state, JobState.SUCCEEDED);
      const { tasks } = await client.status(id);
      for (const task of tasks) {
        const env: Record<string, string> = {};
        for (const line of await stdoutOf(client, task.taskId)) {
          const i = line.indexOf("=");
          if (i > 0) env[line.slice(0, i)] = line.slice(i + 1);
        }
        const ctx = jobContext(env)!;
        assert(ctx, `no context in ${JSON.stringify(env)}`);
        assertEquals(
          [ctx.jobId, ctx.taskId, ctx.taskIndex, ctx.numTasks, ctx.attemptId],
          [id, task.taskId, task.index, 2, 0],
        );
        assertEquals(ctx.controllerUrl, url);
        assertEquals(ctx.workerId, task.workerId);
        assertEquals(ctx.ports, { http: task.ports.http, grpc: task.ports.grpc });
        assert(ctx.ports.http! > 0 && ctx.ports.grpc! > 0 && ctx.ports.http !== ctx.ports.grpc);
      }
    });

    await t.step(
      "a child inherits env (own values win) and region, not device constraints",
      async () => {
        const child = [
          Deno.execPath(),
          "run",
          "-A",
          CLI,
          "job",
          "run",
          "--name",
          "child",
          "--cpu",
          "0.2",
          "--memory",
          "64MiB",
          "-e",
          "SHARED=child",
          "--",
          "sh",
          "-c",
          'echo "SHARED=$SHARED ONLY_PARENT=$ONLY_PARENT"',
        ].map((s) => `'${s.replace(/'/g, `'\\''`)}'`).join(" ");
        const parent = await client.submit({
          cpu: 0.2,
          memory: 512 * 2 ** 20,
          name: "parent",
          command: ["sh", "-c", child],
          env: {
            SHARED: "parent",
            ONLY_PARENT: "p",
            DENO_DIR: Deno.env.get("DENO_DIR") || `${Deno.env.get("HOME")}/.cache/deno`,
          },
          constraints: [
            { key: "region", op: "eq", value: "europe-west4" },
            { key: "device-type", op: "eq", value: "cpu" },
          ],
        });
        const done = await client.wait(parent, { timeout: seconds(90) });
        assertEquals(done.state, JobState.SUCCEEDED, done.error);
        const childId = `${parent}/child`;
        const status = (await client.status(childId)).job!;
        assertEquals(status.state, JobState.SUCCEEDED);
        assertEquals(status.parentJobId, parent);
        assertEquals(
          status.spec!.constraints.map((c) => [c.key, c.value?.kind.value]),
          [["region", "europe-west4"]],
        );
        assert((await stdoutOf(client, childId)).includes("SHARED=child ONLY_PARENT=p"));
        assertEquals(await workerRegion(client, parent), "europe-west4");
        assertEquals(await workerRegion(client, childId), "europe-west4");
      },
    );

    await t.step("scheduling_timeout ends task and job UNSCHEDULABLE with the reason", async () => {
      const id = await client.submit({
        ...small,
        name: "nowhere",
        command: ["true"],
        constraints: [{ key: "region", op: "eq", value: "mars-north1" }],
        schedulingTimeout: seconds(1),
      });
      const job = await client.wait(id, { timeout: seconds(30) });
      assertEquals(job.state, JobState.UNSCHEDULABLE);
      const task = (await client.status(id)).tasks[0]!;
      assertEquals(task.state, TaskState.UNSCHEDULABLE);
      assertMatch(task.error, /^not scheduled within 1\.0s: \S/);
      assertMatch(job.error, /^task 0 unschedulable: not scheduled within 1\.0s/);
    });

    await t.step("a task past its execution timeout is KILLED with the reason", async () => {
      const id = await client.submit({
        ...small,
        name: "slow",
        command: ["sleep", "30"],
        timeout: seconds(1),
      });
      const job = await client.wait(id, { timeout: seconds(30) });
      assertEquals(job.state, JobState.KILLED);
      const task = (await client.status(id)).tasks[0]!;
      assertEquals(task.state, TaskState.KILLED);
      assertMatch(task.error, /timed out after 1\.0s/);
      assertMatch(job.error, /^task 0 killed: timed out after 1\.0s/);
    });

    await t.step("max_task_failures tolerates that many FAILED tasks", async () => {
      const failTask0 = ["sh", "-c", '[ "$IRIS_TASK_INDEX" = 0 ] && exit 3; exit 0'];
      const tolerant = await client.submit({
        ...small,
        name: "tolerant",
        command: failTask0,
        replicas: 3,
        maxTaskFailures: 1,
      });
      const strict = await client.submit({
        ...small,
        name: "strict",
        command: failTask0,
        replicas: 3,
      });
      const a = await client.wait(tolerant, { timeout: seconds(60) });
      assertEquals(a.state, JobState.SUCCEEDED, a.error);
      assertEquals(a.taskStateCounts, { failed: 1, succeeded: 2 });
      const b = await client.wait(strict, { timeout: seconds(60) });
      assertEquals(b.state, JobState.FAILED);
      assertEquals(b.exitCode, 3);
    });

    await t.step("iris job logs -f --level warning follows until the job ends", async () => {
      const id = await client.submit({
        ...small,
        name: "chatty",
        command: [
          "sh",
          "-c",
          'echo "INFO start"; sleep 1; echo "WARNING careful"; echo "ERROR broken" >&2; sleep 1; echo "INFO done"',
        ],
      });
      const out: string[] = [];
      const err: string[] = [];
      const code = await main(
        ["job", "logs", id, "-f", "--level", "warning", "--controller", url],
        { out: (s) => out.push(s), err: (s) => err.push(s), isTty: false },
        new AbortController().signal,
      );
      assertEquals(code, 0);
      // -f returned only because the job ended; every WARNING+ line and nothing else came out.
      assert((await client.status(id)).job!.state === JobState.SUCCEEDED);
      assertEquals(out.join(""), "WARNING careful\n");
      // Iris's own lines (e.g. "… is pending", when -f starts before the task) go to stderr too.
      assertEquals(err.join("").replace(/^\[iris\] .*\n/gm, ""), "ERROR broken\n");
      const tail: string[] = [];
      await main(
        ["job", "logs", id, "--tail", "1", "--grep", "INFO", "--controller", url],
        { out: (s) => tail.push(s), err: (s) => tail.push(s), isTty: false },
        new AbortController().signal,
      );
      assertEquals(tail.join(""), "INFO done\n");
      const first: string[] = [];
      await main(
        ["job", "logs", id, "--max-lines", "2", "--controller", url],
        { out: (s) => first.push(s), err: (s) => first.push(s), isTty: false },
        new AbortController().signal,
      );
      // The worker's own "started pid" line comes first, then the task's.
      assertEquals(first.length, 2);
      assertEquals(first[1], "INFO start\n");
    });
  } finally {
    await cluster.stop();
    await Deno.remove(workDir, { recursive: true });
  }
});
