/**
 * The transactions log on an in-process local cluster that scales up from zero and preempts: the
 * autoscaler's scale_up and the scheduler's preempt are recorded with who and why, next to the
 * user's submits (GetTransactions, as `iris rpc` would call it).
 */
import { IrisClient } from "../../mod.ts";
import { parseConfig } from "../../src/config/mod.ts";
import { startCluster } from "../../src/cluster/cluster.ts";
import { main } from "../../src/cli/main.ts";
import { TaskState } from "../../src/rpc/mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";

const CONFIG = `
name: transactions-test
controller:
  local:
    port: 0
  heartbeat_interval: 500ms
  heartbeat_failure_threshold: 30 # no liveness test here: load must not fake a death
defaults:
  autoscaler:
    evaluation_interval: 200ms
    scale_up_cooldown: 0s
    scale_down_delay: 5m
scale_groups:
  cpu:
    provider:
      local: {}
    accelerator_type: cpu
    min_slices: 0
    max_slices: 1
    vm_resources:
      cpu: 2
      memory: 2GiB
`;

Deno.test("transactions: scale-ups and preemptions are recorded with who and why", async () => {
  const workDir = await Deno.makeTempDir({ prefix: "iris-transactions-test-" });
  // The cluster's log, shown when the test fails (a timeout under load says nothing by itself).
  const lines: string[] = [];
  const cluster = await startCluster(parseConfig(CONFIG), {
    workDir,
    log: (l) => lines.push(l) > 2000 && lines.splice(0, 1000),
  });
  try {
    const client = new IrisClient(cluster.url);
    const batch = await client.submit({
      name: "batch",
      command: ["sleep", "120"],
      cpu: 2,
      memory: 64 * 2 ** 20,
      priority: "batch",
      user: "carol",
    });
    await waitFor(
      async () => (await client.status(batch)).tasks[0]?.state === TaskState.RUNNING,
      { timeout: seconds(60), what: "the BATCH task running on the new slice" },
    );
    await client.submit({
      name: "prod",
      command: ["true"],
      cpu: 2,
      memory: 64 * 2 ** 20,
      priority: "production",
      user: "dave",
    });
    await waitFor(async () => {
      const tx = await client.rpc.getTransactions({ actions: ["preempt"] });
      return tx.transactions.length > 0 || undefined;
    }, { timeout: seconds(60), what: "a preempt transaction" });

    // Through the CLI: `iris rpc controller get-transactions`.
    let out = "";
    const code = await main(
      ["rpc", "controller", "get-transactions", "{}", "--controller", cluster.url],
      { out: (t) => out += t, err: (t) => out += t, isTty: false },
      AbortSignal.timeout(30_000),
    );
    assertEquals(code, 0, out);
    const list = JSON.parse(out).transactions as {
      action: string;
      entity: string;
      user: string;
      details: string;
    }[];
    const of = (action: string) => list.filter((t) => t.action === action);
    assertEquals(of("submit").map((t) => [t.entity, t.user]), [
      ["/carol/batch", "carol"],
      ["/dave/prod", "dave"],
    ]);
    const up = of("scale_up")[0]!;
    assertEquals(up.user, "autoscaler");
    assertMatch(up.details, /^cpu: /);
    const pre = of("preempt")[0]!;
    assertEquals([pre.entity, pre.user], ["/carol/batch/0", "scheduler"]);
    assertMatch(pre.details, /preempted for \/dave\/prod/);
    assert(list.indexOf(up) < list.indexOf(pre), "scale-up before the preemption");
  } catch (err) {
    throw new Error(`${err}\n--- cluster log (last 150 lines)\n${lines.slice(-150).join("\n")}`);
  } finally {
    await cluster.stop();
    await Deno.remove(workDir, { recursive: true }).catch(() => {});
  }
});
