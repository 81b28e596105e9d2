/**
 * Load: 200 submits from 20 clients at once (10 in flight per client) against a controller
 * process with a durable state dir → exactly 200 jobs, each once, all complete. Prints the
 * controller's own memory (GetControllerStatus.rss_bytes). The 1000-submit version is
 * `deno task bench --load` (bench/bench.ts), kept out of the suite for time.
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { IrisClient, JobState } from "../../mod.ts";
import { startWorker } from "../../src/worker/mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { spawnIris } from "../_helpers/iris_process.ts";

const CLIENTS = 20;
const PER_CLIENT = 10;
const WORKERS = 2;

Deno.test("200 concurrent submits from 20 clients make 200 jobs that all complete", async () => {
  const stateDir = await Deno.makeTempDir({ prefix: "iris-load-" });
  try {
    await using controller = spawnIris([
      "controller",
      "serve",
      "--port",
      "0",
      "--state-dir",
      stateDir,
      "--quiet",
    ]);
    const url = (await controller.waitForLine(/Controller started at (\S+)/))[1]!;
    await using workers = new AsyncDisposableStack();
    for (let w = 0; w < WORKERS; w++) {
      workers.use(
        await startWorker({
          controllerUrl: url,
          resources: { cpuMillicores: 16_000, memoryBytes: 16 * 2 ** 30 },
        }),
      );
    }
    const admin = new IrisClient(url);
    await waitFor(async () => (await admin.workers()).length === WORKERS, {
      timeout: seconds(20),
      what: "the workers to register",
    });
    const rssIdle = (await admin.rpc.getControllerStatus({})).rssBytes;

    const t0 = performance.now();
    const ids = (await Promise.all(
      Array.from({ length: CLIENTS }, (_, c) => {
        const client = new IrisClient(url, { retryFor: seconds(30) });
        return Promise.all(
          Array.from(
            { length: PER_CLIENT },
            (_, i) => client.submit({ name: `load-${c}-${i}`, command: ["true"], cpu: 0.01 }),
          ),
        );
      }),
    )).flat();
    const submitMs = performance.now() - t0;
    const total = CLIENTS * PER_CLIENT;
    assertEquals(new Set(ids).size, total);

    const done = await waitFor(async () => {
      const { total: n } = await admin.list({ states: [JobState.SUCCEEDED], limit: 1 });
      return n === total ? n : undefined;
    }, { timeout: seconds(60), what: `all ${total} jobs to succeed` });
    const completeMs = performance.now() - t0;
    const { jobs, total: listed } = await admin.list({ prefix: "/", limit: 5000 });
    assertEquals(listed, total);
    assertEquals(jobs.map((j) => j.jobId).sort(), [...ids].sort());
    assertEquals(done, total);
    const status = await admin.rpc.getControllerStatus({});
    assertEquals(status.jobCount, total);
    assert(status.rssBytes > 0, "the controller reports its memory");
    const mib = (b: number) => (b / 2 ** 20).toFixed(0);
    console.log(
      `load: ${total} submits from ${CLIENTS} clients acknowledged in ${
        submitMs.toFixed(0)
      } ms, all succeeded after ${completeMs.toFixed(0)} ms; controller RSS ${
        mib(rssIdle)
      } MiB idle → ${mib(status.rssBytes)} MiB`,
    );
  } finally {
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
  }
});
