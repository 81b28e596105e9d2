/**
 * `iris user budget set|get|list` against a controller with token auth (#24): only admins set
 * budgets; a resource budget is applied on the next scheduling pass (the task beyond it runs as
 * BATCH); a set budget survives a controller restart (accounts.json in the state dir).
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { IrisClient, TaskState } from "../../mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { runIris } from "../_helpers/iris_process.ts";
import { startSecureCluster } from "./_cluster.ts";

Deno.test("user budgets: admin-only set, applied each pass, kept across a restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-budget-cli-" });
  const stateDir = `${dir}/state`;
  try {
    {
      await using cluster = await startSecureCluster({ stateDir, rootDir: `${dir}/w1` });
      const env = (token: string) => ({
        IRIS_TOKEN: token,
        IRIS_CONTROLLER_URL: cluster.controller.url,
      });
      const denied = await runIris(["user", "budget", "set", "alice", "--cpu", "1"], {
        env: env(cluster.tokens.alice),
      });
      assert(denied.code !== 0, denied.stdout);
      assertMatch(denied.stderr, /user alice may not set budgets \(admins only\)/);

      const bad = await runIris(["user", "budget", "set", "alice", "--cpu", "lots"], {
        env: env(cluster.tokens.admin),
      });
      assertEquals(bad.code, 2);
      assertMatch(bad.stderr, /--cpu must be cores/);

      const set = await runIris([
        "user",
        "budget",
        "set",
        "alice",
        "--cpu",
        "1",
        "--memory",
        "2GiB",
      ], {
        env: env(cluster.tokens.admin),
      });
      assertEquals(set.code, 0, set.stderr);
      assertMatch(set.stdout, /alice +set +0\/1 +0 B\/2 GiB/);

      // Two 1-core INTERACTIVE tasks on a 4-core worker: one within the budget, one as BATCH.
      const client = new IrisClient(cluster.controller.url, { token: cluster.tokens.alice });
      const jobId = await client.submit({
        name: "two",
        command: ["sh", "-c", "sleep 30"],
        cpu: 1,
        memory: 256 * 2 ** 20,
        replicas: 2,
      });
      await waitFor(async () => {
        const tasks = await client.tasks(jobId);
        return tasks.every((t) => t.state === TaskState.RUNNING || t.state === TaskState.BUILDING);
      }, { timeout: seconds(30), what: "both tasks to start" });
      const mine = await runIris(["user", "budget", "get"], { env: env(cluster.tokens.alice) });
      assertEquals(mine.code, 0, mine.stderr);
      assertMatch(mine.stdout, /alice +set +1\/1 +256 MiB\/2 GiB +-?\S* +1 +1 /);
      await client.cancel(jobId);
    }
    // Restart on the same state dir: the budget is still there.
    await using again = await startSecureCluster({ stateDir, rootDir: `${dir}/w2` });
    const list = await runIris(["user", "budget", "list"], {
      env: { IRIS_TOKEN: again.tokens.bob, IRIS_CONTROLLER_URL: again.controller.url },
    });
    assertEquals(list.code, 0, list.stderr);
    assertMatch(list.stdout, /alice +set +0\/1 +0 B\/2 GiB/);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
