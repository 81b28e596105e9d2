/**
 * `iris smoke` as a user runs it (a real process), on every exit path: pass, failure, global
 * timeout and Ctrl-C. After each, nothing of the cluster remains: no listener on its addresses,
 * no task process, no temp dir.
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { runIris, spawnIris } from "../_helpers/iris_process.ts";
import { isListening, processesIn, tempEntries } from "../_helpers/leftovers.ts";
import { seconds } from "../../src/time.ts";
import { SMOKE_JOBS } from "../../src/smoke/jobs.ts";

const EXAMPLE = new URL("../../examples/local.yaml", import.meta.url).pathname;

async function addressesIn(logDir: string): Promise<string[]> {
  const out: string[] = [];
  const collect = async (path: string) => {
    const text = await Deno.readTextFile(path).catch(() => "");
    for (const m of text.matchAll(/http:\/\/127\.0\.0\.1:\d+/g)) out.push(m[0]);
  };
  await collect(`${logDir}/summary.md`);
  await collect(`${logDir}/controller.log`);
  let workers: Deno.DirEntry[] = [];
  try {
    workers = await Array.fromAsync(Deno.readDir(`${logDir}/workers`));
  } catch { /* no worker ever started */ }
  for (const e of workers) await collect(`${logDir}/workers/${e.name}`);
  return [...new Set(out)];
}

/**
 * A private TMPDIR for one smoke process: other tests start local clusters (and their
 * "iris-local-" dirs) in parallel, so only this directory tells what the run left behind.
 */
function privateTmp(): Promise<string> {
  return Deno.makeTempDir({ prefix: "smoke-tmp-" });
}

async function assertNothingLeft(logDir: string, tmp: string): Promise<void> {
  for (const a of await addressesIn(logDir)) {
    assertEquals(await isListening(a), false, `${a} still listens`);
  }
  const newTemp = [...tempEntries("iris-local-", tmp)];
  assertEquals(newTemp, [], "no temp dir of the run remains");
  // Task processes run under the run's work dir in `tmp`; other smoke runs in parallel (the
  // manual-platform e2e test) start the same commands, so command lines cannot tell them apart.
  assertEquals(await processesIn(tmp), [], "no task process remains");
}

Deno.test("iris smoke passes every job on the local config and leaves nothing behind", async () => {
  const logDir = await Deno.makeTempDir({ prefix: "smoke-pass-" });
  const tmp = await privateTmp();
  try {
    const res = await runIris([
      "smoke",
      "--config",
      EXAMPLE,
      "--log-dir",
      logDir,
      "--timeout",
      "240s",
    ], { timeout: seconds(260), env: { TMPDIR: tmp } });
    assertEquals(res.code, 0, res.stdout + res.stderr);
    const n = SMOKE_JOBS.length;
    assertMatch(res.stdout, new RegExp(`${n}/${n} jobs passed`));
    assertMatch(res.stdout, /\[PASS\] workspace/);
    for (
      const name of [
        "hello",
        "concurrent",
        "tpu-hello",
        "coscheduled",
        "retry",
        "endpoints",
        "cancel",
        "child-job",
        "region",
        "nested-constraint",
      ]
    ) {
      assertMatch(res.stdout, new RegExp(`\\[PASS\\] ${name}\\b`));
    }
    const summary = await Deno.readTextFile(`${logDir}/summary.md`);
    assertMatch(summary, /## Phase 0/);
    assertMatch(summary, /skipped: a local cluster/);
    assertMatch(summary, /\| PASS \| coscheduled \|/);
    assert((await Deno.stat(`${logDir}/scheduling-snapshots.jsonl`)).size > 0);
    assert((await Deno.stat(`${logDir}/controller.log`)).size > 0);
    const taskLogs = (await Array.fromAsync(Deno.readDir(`${logDir}/task-logs`))).map((e) =>
      e.name
    );
    assert(taskLogs.some((n) => n.includes("smoke-coscheduled")), taskLogs.join(","));
    await assertNothingLeft(logDir, tmp);
  } finally {
    await Deno.remove(logDir, { recursive: true });
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("iris smoke exits non-zero and cleans up when the cluster cannot start, on timeout, and on Ctrl-C", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "smoke-exits-" });
  const tmp = await privateTmp();
  try {
    await t.step("failure: the configured controller port is taken", async () => {
      using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const config = (await Deno.readTextFile(EXAMPLE)).replace(
        /port: 0/,
        `port: ${(listener.addr as Deno.NetAddr).port}`,
      );
      await Deno.writeTextFile(`${root}/busy.yaml`, config);
      const res = await runIris([
        "smoke",
        "--config",
        `${root}/busy.yaml`,
        "--log-dir",
        `${root}/fail`,
        "--only",
        "hello",
      ], { env: { TMPDIR: tmp } });
      assertEquals(res.code, 1, res.stdout + res.stderr);
      assertMatch(res.stdout, /\[FAIL\]/);
      await assertNothingLeft(`${root}/fail`, tmp);
    });

    await t.step("timeout: the global deadline cancels jobs and stops the cluster", async () => {
      // The TPU group may not scale, so the gang job waits until the deadline.
      const config = (await Deno.readTextFile(EXAMPLE)).replace(/max_slices: 4/, "max_slices: 0");
      await Deno.writeTextFile(`${root}/stuck.yaml`, config);
      const res = await runIris([
        "smoke",
        "--config",
        `${root}/stuck.yaml`,
        "--log-dir",
        `${root}/timeout`,
        "--only",
        "coscheduled",
        "--timeout",
        "3s",
      ], { env: { TMPDIR: tmp } });
      assertEquals(res.code, 1, res.stdout + res.stderr);
      assertMatch(res.stdout, /global timeout of 3\.0s reached/);
      assertMatch(res.stdout, /cancelled unfinished jobs: \/\S+\/smoke-coscheduled/);
      await assertNothingLeft(`${root}/timeout`, tmp);
    });

    await t.step("Ctrl-C: SIGINT during the jobs cancels them and stops the cluster", async () => {
      await using smoke = spawnIris([
        "smoke",
        "--config",
        `${root}/stuck.yaml`,
        "--log-dir",
        `${root}/sigint`,
        "--only",
        "hello",
        "--only",
        "coscheduled",
      ], { env: { TMPDIR: tmp } });
      await smoke.waitForLine(/coscheduled: a gang on one/, seconds(60));
      smoke.child.kill("SIGINT");
      const status = await smoke.status;
      assert(status.code !== 0, "non-zero exit after Ctrl-C");
      assert(smoke.lines.some((l) => /interrupted/.test(l)), smoke.lines.join("\n"));
      assert(smoke.lines.some((l) => /\[PASS\] hello/.test(l)), smoke.lines.join("\n"));
      await assertNothingLeft(`${root}/sigint`, tmp);
    });
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(tmp, { recursive: true });
  }
});
