/**
 * The cluster's bundle size limit (controller.max_bundle_size): clients learn it from
 * GetControllerStatus and refuse a too-big workspace before uploading, naming its largest entries;
 * workers learn it from GetBundle and unpack anything the controller accepted.
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { IrisClient, JobState } from "../../mod.ts";
import { startController } from "../../src/controller/server.ts";
import { startWorker } from "../../src/worker/mod.ts";
import { bundleLimitsFor, openBundleStore, rpcBundleFetcher } from "../../src/bundle/mod.ts";
import { ResourceExhaustedError } from "../../src/errors.ts";
import { seconds, waitFor } from "../../src/time.ts";

Deno.test("max_bundle_size: clients check it before uploading, workers unpack up to it", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-bundle-limit-" });
  try {
    const limit = 8192;
    await using controller = startController({
      bundles: openBundleStore(`${root}/bundles`, bundleLimitsFor(limit)),
      maxBundleBytes: limit,
    });
    // The worker's own limits are tiny: the cluster's (from GetBundle) apply instead.
    await using _worker = await startWorker({
      controllerUrl: controller.url,
      rootDir: `${root}/worker`,
      resources: { cpuMillicores: 2000, memoryBytes: 2 ** 31 },
      bundleFetcher: rpcBundleFetcher(controller.url, `${root}/worker/bundles`, {
        limits: { maxUnpackedBytes: 1000, maxCompressedBytes: 100 },
      }),
    });
    const client = new IrisClient(controller.url);
    assertEquals((await client.rpc.getControllerStatus({})).maxBundleBytes, limit);

    await Deno.mkdir(`${root}/big/data`, { recursive: true });
    await Deno.writeTextFile(`${root}/big/data/shard.bin`, "x".repeat(9000));
    await Deno.writeTextFile(`${root}/big/train.py`, "print('hi')\n");
    const err = await client.uploadWorkspace(`${root}/big`).catch((e: unknown) => e);
    assert(err instanceof ResourceExhaustedError, String(err));
    assertMatch(err.message, /largest entries: data\/ \(9000 B\)/);
    assertMatch(err.message, /over the 8192 B bundle limit/);

    await Deno.mkdir(`${root}/ok`);
    await Deno.writeTextFile(`${root}/ok/data.txt`, "y".repeat(5000));
    await waitFor(async () => (await client.workers()).length === 1, {
      timeout: seconds(10),
      what: "the worker",
    });
    const bundleId = await client.uploadWorkspace(`${root}/ok`);
    const jobId = await client.submit({
      name: "reads-bundle",
      command: ["sh", "-c", "wc -c < data.txt"],
      bundleId,
      memory: 2 ** 28,
    });
    const job = await client.wait(jobId, { timeout: seconds(60) });
    assertEquals(job.state, JobState.SUCCEEDED, job.error);
    const out = (await client.logs(jobId)).map((l) => l.text.trim());
    assert(out.includes("5000"), out.join("\n"));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
