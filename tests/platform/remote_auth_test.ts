/**
 * Auth on remote clusters: the health checks the manual lifecycle and platform use send the
 * worker token (and tell "up and ours" from "refused"), and gcp refuses token mode with an error
 * naming auth.mode, since its startup-script bootstrap cannot carry a secret.
 * @module
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/mod.ts";
import { ConfigError } from "../../src/errors.ts";
import { controllerHealthCheck, createControllerLifecycle } from "../../src/cluster/lifecycle.ts";
import { platformFromConfig, workerHealthCheck } from "../../src/cluster/platforms.ts";
import { ScriptedRunner } from "../fakes/scripted_runner.ts";
import { startSecureCluster } from "../security/_cluster.ts";

Deno.test("health checks with auth on: only the worker token proves the controller and worker", async () => {
  await using cluster = await startSecureCluster();
  const signal = new AbortController().signal;
  const { controller, worker, tokens } = cluster;
  assert.equal(await controllerHealthCheck(tokens.worker)(controller.url, signal), true);
  assert.equal(await controllerHealthCheck()(controller.url, signal), false);
  assert.equal(await controllerHealthCheck("wrong-token")(controller.url, signal), false);
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

Deno.test("gcp refuses auth.mode token with an error naming auth.mode, before any gcloud call", () => {
  const config = parseConfig(GCP_TOKEN_CONFIG, "gcp.yaml");
  const runner = new ScriptedRunner();
  const refused = (err: unknown) =>
    err instanceof ConfigError && err.path === "auth.mode" &&
    /not supported on gcp yet: .*startup-script metadata/.test(err.message);
  assert.throws(
    () => createControllerLifecycle(config, { runner, workerTokenSources: { env: "t0ken" } }),
    refused,
  );
  assert.throws(() => platformFromConfig(config, { runner, workerToken: "t0ken" }), refused);
  assert.equal(runner.calls.length, 0);
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
