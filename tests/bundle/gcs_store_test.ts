/**
 * `bundle_prefix: gs://…`: GcsBundleStore against a stand-in of the GCS JSON API and the GCE
 * metadata server that checks every request (tests/fakes/gcp_standin.ts), and a workspace job
 * whose bundle goes through the bucket end to end.
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { NotFoundError } from "../../src/errors.ts";
import {
  GcsBundleStore,
  openBundleStore,
  packDirectory,
  parseGcsPrefix,
  rpcBundleFetcher,
} from "../../src/bundle/mod.ts";
import { GceMetadata } from "../../src/gcp/metadata.ts";
import { IrisClient, JobState } from "../../mod.ts";
import { startController } from "../../src/controller/server.ts";
import { startWorker } from "../../src/worker/mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { startGcpStandIn } from "../fakes/gcp_standin.ts";

const BUCKET = "iris-test-bucket";

async function packed(files: Record<string, string>) {
  const dir = await Deno.makeTempDir({ prefix: "iris-gcs-" });
  try {
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(join(dir, name), text);
    }
    return await packDirectory(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("gs:// prefixes parse into bucket and path; bad ones name bundle_prefix", () => {
  assert.deepEqual(parseGcsPrefix("gs://b-1/lab/bundles/"), { bucket: "b-1", path: "lab/bundles" });
  assert.deepEqual(parseGcsPrefix("gs://bucket"), { bucket: "bucket", path: "" });
  for (const bad of ["gs://", "gs://UPPER/x", "gs:///x", "s3://b/x"]) {
    assert.throws(() => parseGcsPrefix(bad), /bundle_prefix: .*gs:\/\/bucket\/path/);
  }
  assert.ok(openBundleStore("gs://b-1/x") instanceof GcsBundleStore);
});

Deno.test("GcsBundleStore: upload, stat and download through the JSON API with a cached metadata token", async () => {
  await using gcp = startGcpStandIn({ bucket: BUCKET });
  const store = new GcsBundleStore(`gs://${BUCKET}/lab/bundles`, {
    endpoint: gcp.url,
    metadata: new GceMetadata({ baseUrl: gcp.url }),
  });
  const { bundleId, data } = await packed({ "main.sh": "echo hi\n" });
  const object = `lab/bundles/${bundleId}.tar.gz`;
  assert.equal(await store.has(bundleId), false);
  assert.deepEqual(await store.put(data), { bundleId, sizeBytes: data.length });
  assert.deepEqual(gcp.objects.get(object), data);
  // Idempotent: a second put finds the object and uploads nothing.
  await store.put(data);
  assert.equal(gcp.requests.filter((r) => r.method === "POST").length, 1);
  assert.equal(await store.has(bundleId), true);
  assert.deepEqual(await store.get(bundleId), data);
  // The exact requests, in order: token once, then the API calls.
  const encoded = encodeURIComponent(object);
  assert.deepEqual(gcp.requests.map((r) => `${r.method} ${r.path}${r.query}`), [
    "GET /computeMetadata/v1/instance/service-accounts/default/token",
    `GET /storage/v1/b/${BUCKET}/o/${encoded}`,
    `GET /storage/v1/b/${BUCKET}/o/${encoded}`,
    `POST /upload/storage/v1/b/${BUCKET}/o?uploadType=media&name=${encoded}`,
    `GET /storage/v1/b/${BUCKET}/o/${encoded}`,
    `GET /storage/v1/b/${BUCKET}/o/${encoded}`,
    `GET /storage/v1/b/${BUCKET}/o/${encoded}?alt=media`,
  ]);
  assert.equal(gcp.tokensIssued(), 1);
  assert.deepEqual(gcp.violations, []);

  // Errors name the object and the HTTP status; a missing bundle is NotFoundError.
  const missing = `sha256-${"a".repeat(64)}`;
  await assert.rejects(
    store.get(missing),
    (e) =>
      e instanceof NotFoundError &&
      e.message.includes(`gs://${BUCKET}/lab/bundles/${missing}.tar.gz`) &&
      e.message.includes("HTTP 404"),
  );
  const other = await packed({ "x.txt": "other" });
  gcp.failNext(403);
  await assert.rejects(
    store.put(other.data),
    new RegExp(`gs://${BUCKET}/lab/bundles/${other.bundleId}\\.tar\\.gz: stat failed: HTTP 403`),
  );
  const post = gcp.requests.length;
  // A hostile archive is refused before anything is uploaded.
  const notGzip = new TextEncoder().encode("plain text, not a bundle");
  await assert.rejects(store.put(notGzip), /not gzip data/);
  assert.equal(gcp.requests.slice(post).filter((r) => r.method === "POST").length, 0);
  assert.deepEqual(gcp.violations, []);
});

Deno.test("GcsBundleStore: a token close to expiry or refused (401) is renewed; no token is a clear error", async () => {
  await using gcp = startGcpStandIn({ bucket: BUCKET, tokenLifetimeSeconds: 30 });
  const store = new GcsBundleStore(`gs://${BUCKET}/b`, {
    endpoint: gcp.url,
    metadata: new GceMetadata({ baseUrl: gcp.url }),
  });
  const { bundleId } = await packed({ "a": "1" });
  await store.has(bundleId);
  await store.has(bundleId);
  // 30 s tokens are within the 60 s renewal margin: each call fetches a fresh one.
  assert.equal(gcp.tokensIssued(), 2);
  assert.deepEqual(gcp.violations, []);

  // A token the API stops accepting (revoked early) is replaced once, transparently.
  await using longLived = startGcpStandIn({ bucket: BUCKET });
  const lasting = new GcsBundleStore(`gs://${BUCKET}/b`, {
    endpoint: longLived.url,
    metadata: new GceMetadata({ baseUrl: longLived.url }),
  });
  assert.equal(await lasting.has(bundleId), false);
  longLived.revokeTokens();
  assert.equal(await lasting.has(bundleId), false);
  assert.equal(longLived.tokensIssued(), 2);
  assert.deepEqual(longLived.violations, []);

  const noMetadata = new GcsBundleStore(`gs://${BUCKET}/b`, {
    endpoint: gcp.url,
    metadata: new GceMetadata({ baseUrl: "http://127.0.0.1:9", timeout: seconds(2) }),
  });
  await assert.rejects(
    noMetadata.has(bundleId),
    new RegExp(`gs://${BUCKET}/b/${bundleId}\\.tar\\.gz: no access token: metadata server: GET`),
  );
});

Deno.test("a workspace job whose bundle_prefix is gs:// uploads to the bucket and runs from it", async () => {
  await using gcp = startGcpStandIn({ bucket: BUCKET });
  const root = await Deno.makeTempDir({ prefix: "iris-gcs-e2e-" });
  // As on a GCP VM: the endpoints come from the environment.
  Deno.env.set("IRIS_GCS_ENDPOINT", gcp.url);
  Deno.env.set("GCE_METADATA_HOST", gcp.host);
  try {
    await Deno.mkdir(`${root}/ws`);
    await Deno.writeTextFile(`${root}/ws/data.txt`, "from the bucket");
    await using controller = startController({
      bundles: openBundleStore(`gs://${BUCKET}/cluster/bundles`),
    });
    await using _worker = await startWorker({
      controllerUrl: controller.url,
      rootDir: `${root}/worker`,
      resources: { cpuMillicores: 1000, memoryBytes: 2 ** 30 },
      bundleFetcher: rpcBundleFetcher(controller.url, `${root}/worker/bundles`),
      taskUserIsolation: "off",
    });
    const client = new IrisClient(controller.url);
    await waitFor(async () => (await client.workers()).length === 1, {
      timeout: seconds(10),
      what: "the worker",
    });
    const bundleId = await client.uploadWorkspace(`${root}/ws`);
    assert.ok(gcp.objects.has(`cluster/bundles/${bundleId}.tar.gz`));
    const id = await client.submit({
      name: "from-gcs",
      command: ["cat", "data.txt"],
      bundleId,
      memory: 2 ** 26,
    });
    const job = await client.wait(id, { timeout: seconds(30) });
    assert.equal(job.state, JobState.SUCCEEDED, job.error);
    const out = (await client.logs(id)).filter((l) => l.stream === "stdout").map((l) => l.text);
    assert.deepEqual(out, ["from the bucket"]);
    assert.ok(gcp.requests.some((r) => r.query === "?alt=media"), "downloaded from the bucket");
    assert.deepEqual(gcp.violations, []);
  } finally {
    Deno.env.delete("IRIS_GCS_ENDPOINT");
    Deno.env.delete("GCE_METADATA_HOST");
    await Deno.remove(root, { recursive: true });
  }
});
