/**
 * A config-driven local cluster with `auth: {mode: token}`: the autoscaler's local VMs (Deno
 * Workers without env access) get the worker token in memory, register, and run a user's job;
 * unauthenticated callers are refused; the token reaches no log line.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { startCluster } from "../../src/cluster/cluster.ts";
import { parseConfig } from "../../src/config/mod.ts";
import { hashToken, newToken } from "../../src/auth/mod.ts";
import { IrisClient } from "../../src/client/client.ts";
import { JobState } from "../../src/rpc/mod.ts";
import { seconds } from "../../src/time.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";

Deno.test("local cluster with auth: VMs register with the worker token and run alice's job", async () => {
  const alice = newToken();
  const worker = newToken();
  const config = parseConfig(
    `
controller: { local: {} }
scale_groups:
  cpu:
    provider: { local: {} }
    max_slices: 1
    vm_resources: { cpu: 1, memory: 1GiB }
auth:
  mode: token
  tokens: [{ user: alice, sha256: ${hashToken(alice)} }]
`,
    "auth-local.yaml",
    { machine: { cpuCores: 2, memoryBytes: 8 * 2 ** 30 } },
  );
  const workDir = await Deno.makeTempDir({ prefix: "iris-sec-cluster-" });
  const logs: string[] = [];
  try {
    await using cluster = await startCluster(config, {
      workDir,
      workerTokenSources: { env: worker },
      log: (l) => logs.push(l),
      vmLog: (_id, l) => logs.push(l),
    });
    const anonymous = new IrisClient(cluster.url, { token: "" });
    const err = await anonymous.list().catch((e) => e);
    assert(err instanceof ConnectError);
    assertEquals(err.code, Code.Unauthenticated);
    const client = new IrisClient(cluster.url, { token: alice });
    const jobId = await client.submit({ name: "hi", command: ["sh", "-c", "echo hi $IRIS_USER"] });
    assertEquals(jobId, "/alice/hi");
    const lines: string[] = [];
    const done = await client.wait(jobId, {
      timeout: seconds(60),
      onLog: (l) => lines.push(l.text),
    });
    assertEquals(done.state, JobState.SUCCEEDED, lines.join("\n"));
    // The exposure is stated at start (#16).
    const warning = logs.find((l) => l.includes("WARNING: auth.mode token with local"));
    assert(warning, "a local cluster with auth warns what tasks can read");
    for (const what of ["worker token", "state directory", "IRIS_TOKEN"]) {
      assert(warning.includes(what), `the warning names ${what}`);
    }
    const all = logs.join("\n") + lines.join("\n");
    assert(!all.includes(worker), "the worker token is in a log");
    assert(!all.includes(alice), "alice's token is in a log");
  } finally {
    await Deno.remove(workDir, { recursive: true }).catch(() => {});
  }
});
