/**
 * Auth on remote clusters: the health checks the manual lifecycle and platform use send the
 * worker token (and tell "up and ours" from "refused"), and gcp accepts token mode without any
 * worker token on the operator's machine (workers enrol; the controller VM makes its own token).
 * @module
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/mod.ts";
import {
  authedControllerUp,
  controllerHealthCheck,
  createControllerLifecycle,
} from "../../src/cluster/lifecycle.ts";
import { platformFromConfig, workerHealthCheck } from "../../src/cluster/platforms.ts";
import { ScriptedRunner } from "../fakes/scripted_runner.ts";
import { ConfigError } from "../../src/errors.ts";
import { gcpWorkerTokenSources } from "../../src/cluster/gcp_auth.ts";
import { startSecureCluster } from "../security/_cluster.ts";

Deno.test("health checks with auth on: only the worker token proves the controller and worker", async () => {
  await using cluster = await startSecureCluster();
  const signal = new AbortController().signal;
  const { controller, worker, tokens } = cluster;
  assert.equal(await controllerHealthCheck(tokens.worker)(controller.url, signal), true);
  assert.equal(await controllerHealthCheck()(controller.url, signal), false);
  assert.equal(await controllerHealthCheck("wrong-token")(controller.url, signal), false);
  // gcp with auth: the operator has no worker token; unauthenticated proves the controller is up.
  assert.equal(await authedControllerUp(controller.url, signal), true);
  assert.equal(await authedControllerUp("http://127.0.0.1:9", signal), false);
  assert.equal(await workerHealthCheck(tokens.worker)(worker.url, signal), true);
  assert.equal(await workerHealthCheck()(worker.url, signal), false);
  assert.equal(await workerHealthCheck(tokens.alice)(worker.url, signal), false);
});

const GCP_TOKEN_CONFIG = `
platform: { gcp: { project_id: p, zones: [europe-west4-b] } }
controller: { bundle_prefix: "gs://b/iris", gcp: { zone: europe-west4-b } }
auth:
  mode: token
  tokens: [{ user: alice, sha256: ${"a".repeat(64)} }]
scale_groups:
  tpu:
    provider: { tpu: {} }
    accelerator_type: tpu
    accelerator_variant: v5litepod-16
    zone: europe-west4-b
    max_slices: 1
    vm_resources: { cpu: 112, memory: 192GB }
`;

Deno.test("gcp with auth.mode token: no worker token needed to start; the controller makes its own", async () => {
  const config = parseConfig(GCP_TOKEN_CONFIG, "gcp.yaml");
  const runner = new ScriptedRunner();
  // Neither the lifecycle nor the platform asks for a worker token, and no gcloud call is made.
  createControllerLifecycle(config, { runner, workerTokenSources: {} });
  platformFromConfig(config, { runner });
  assert.equal(runner.calls.length, 0);
  // On the controller VM: worker.token (0600) in the state dir, created once, then reused.
  const dir = await Deno.makeTempDir({ prefix: "iris-gcp-token-" });
  try {
    const first = gcpWorkerTokenSources(config, {}, `${dir}/state`);
    assert.equal(first.envFile, `${dir}/state/worker.token`);
    const token = await Deno.readTextFile(first.envFile!);
    assert.ok(token.length >= 40);
    assert.equal((await Deno.stat(first.envFile!)).mode! & 0o777, 0o600);
    gcpWorkerTokenSources(config, {}, `${dir}/state`);
    assert.equal(await Deno.readTextFile(first.envFile!), token, "kept across restarts");
    // A token given explicitly wins.
    assert.deepEqual(gcpWorkerTokenSources(config, { env: "t0ken" }, dir), { env: "t0ken" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a manual lifecycle with auth on needs the worker token on the operator's machine", () => {
  const config = parseConfig(
    `
controller: { bundle_prefix: "file:///b", manual: { host: 10.0.0.1 } }
auth:
  mode: token
  tokens: [{ user: alice, sha256: ${"a".repeat(64)} }]
scale_groups:
  m:
    provider: { manual: { hosts: [10.0.0.2] } }
    vm_resources: { cpu: 1, memory: 1GiB }
`,
    "manual.yaml",
  );
  assert.throws(
    () =>
      createControllerLifecycle(config, { runner: new ScriptedRunner(), workerTokenSources: {} }),
    (err) => err instanceof ConfigError && err.path === "auth.worker_token_file",
  );
});
