/**
 * The controller dashboard in headless Chromium against a REAL local cluster: examples/local.yaml
 * started in-process with startCluster, jobs submitted through IrisClient in every state
 * (succeeded, failed, running with a live log, pending with a scheduler reason) plus a job whose
 * command, environment and logs carry hostile HTML. Checks every page shows the cluster's real
 * data, the hostile text stays text, and saves `real-*.png` screenshots next to the fake-cluster
 * ones (`$IRIS_ARTIFACT_DIR/dashboard/`, default `./test-artifacts/dashboard/`).
 *
 * Needs Chromium (scripts/install_chromium.sh); fails with instructions when it is missing,
 * unless IRIS_SKIP_BROWSER=1.
 * @module
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { IrisClient, JobState } from "../../mod.ts";
import type { ResourceSnapshot } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { startCluster } from "../../src/cluster/cluster.ts";
import { loadConfig } from "../../src/config/mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import {
  artifactDir,
  assertNotPwned,
  launchChromium,
  SKIP_BROWSER,
  watchedPage,
} from "./fixture.ts";

const EXAMPLE = new URL("../../examples/local.yaml", import.meta.url).pathname;
const TIMEOUT = 15_000;

/** Markup that must show up as literal text; any of it executing sets `__pwned` or alerts. */
const HOSTILE_LOG = `<img src=x onerror=window.__pwned=1><script>window.__pwned=2</script>`;
const HOSTILE_ENV = `<svg onload="alert(1)"></svg><b>bold</b>`;
const HOSTILE_CMD =
  `echo "<img src=x onerror=alert(2)>"; echo "${HOSTILE_LOG}"; echo "$IRIS_HOSTILE"`;

/** Polls a page-side expression (CSP blocks string predicates in waitForFunction). */
async function waitPage(page: Page, expression: string, timeout = TIMEOUT): Promise<void> {
  await waitFor(async () => await page.evaluate(expression), {
    timeout: seconds(timeout / 1000),
    what: expression,
  });
}

/** Highest `tick N` visible in the page's log view. */
function maxTick(page: Page): Promise<number> {
  return page.evaluate(`Math.max(0, ...[...document.querySelectorAll(".log-text")]
    .map((e) => /^tick (\\d+)$/.exec(e.textContent)?.[1]).filter(Boolean).map(Number))`);
}

Deno.test({
  name: "dashboard shows a real local cluster's jobs, logs, fleet and autoscaler safely",
  ignore: SKIP_BROWSER,
  async fn(t) {
    const config = await loadConfig(EXAMPLE);
    // startCluster (what LocalController wraps) with a work dir of our own: tests/e2e/smoke_test
    // watches for leftover "iris-local-*" dirs and must not see this test's.
    const workDir = await Deno.makeTempDir({ prefix: "iris-dashboard-test-" });
    const cluster = await startCluster(config, { workDir }).catch(async (err) => {
      await Deno.remove(workDir, { recursive: true });
      throw err;
    });
    const base = cluster.url;
    try {
      const client = new IrisClient(base);
      const small = { cpu: 0.1, memory: 64 * 1024 * 1024, user: "alice" };
      const succeeded = await client.submit({ name: "done", command: ["echo", "done"], ...small });
      const failed = await client.submit({
        name: "broken",
        command: ["sh", "-c", "echo broken >&2; exit 3"],
        ...small,
      });
      const running = await client.submit({
        name: "ticker",
        command: ["sh", "-c", "for i in $(seq 1 300); do echo tick $i; sleep 0.2; done"],
        ...small,
      });
      const pending = await client.submit({
        name: "huge",
        command: ["true"],
        cpu: 512,
        user: "bob",
      });
      const hostile = await client.submit({
        name: "hostile",
        command: ["sh", "-c", HOSTILE_CMD],
        env: { IRIS_HOSTILE: HOSTILE_ENV },
        ...small,
      });

      // Cluster side first: every job reaches the state the pages will show.
      const waitState = (id: string, state: JobState) =>
        waitFor(async () => (await client.status(id)).job?.state === state, {
          timeout: seconds(30),
          what: `${id} to be ${JobState[state]}`,
        });
      await waitState(succeeded, JobState.SUCCEEDED);
      await waitState(failed, JobState.FAILED);
      await waitState(hostile, JobState.SUCCEEDED);
      await waitState(running, JobState.RUNNING);
      const reason = await waitFor(async () => {
        const msg = (await client.status(pending)).job?.pendingReason?.message ?? "";
        // The settled reason (not "no workers" or a slice booting for the other jobs).
        return /512 cpu/.test(msg) ? msg : undefined;
      }, { timeout: seconds(15), what: "a CPU pending reason" });
      assert.equal((await client.status(pending)).job?.state, JobState.PENDING);

      // Per-task usage reaches the controller, and GetWorkerStatus reports it with history.
      const tickerTask = `${running}/0`;
      const usage = await waitFor(async () => {
        const t = (await client.rpc.listTasks({ jobId: running, includeUsageHistory: true }))
          .tasks[0];
        return t?.resourceUsage && t.resourceUsage.memoryBytes > 0 && t.usageHistory.length >= 2
          ? t
          : undefined;
      }, { timeout: seconds(15), what: "usage samples of the ticker task" });
      assert.ok(usage.resourceUsage!.peakMemoryBytes >= usage.resourceUsage!.memoryBytes);
      const taskWorker = usage.workerId;
      const workerStatus = await client.rpc.getWorkerStatus({ workerId: taskWorker });
      assert.equal(workerStatus.worker?.workerId, taskWorker);
      assert.ok(workerStatus.tasks.some((t) => t.taskId === tickerTask && t.usageHistory.length));
      const ended = (await Promise.all(
        (await client.workers()).map((w) => client.rpc.getWorkerStatus({ workerId: w.workerId })),
      )).flatMap((w) => w.recentAttempts.map((a) => a.taskId));
      for (const id of [succeeded, failed, hostile]) {
        assert.ok(ended.includes(`${id}/0`), `${id}/0 among recent attempts ${ended.join(",")}`);
      }
      // Host figures: local VMs (Deno Workers) may read /proc/stat and /proc/meminfo, so every
      // worker reports the shared host's CPU and memory, and the history keeps them.
      const hostKnown = (s: ResourceSnapshot | undefined) =>
        s?.hostCpuMillicores !== undefined && s.hostCpuTotalMillicores! >= 1000 &&
        s.hostMemoryTotalBytes! > 0 && s.hostMemoryUsedBytes! > 0;
      await waitFor(async () => {
        const workers = await client.workers();
        return workers.length > 0 && workers.every((w) => hostKnown(w.snapshot));
      }, { timeout: seconds(15), what: "host CPU and memory in every worker's snapshot" });
      const withHost = await client.rpc.getWorkerStatus({ workerId: taskWorker });
      assert.ok(withHost.worker!.history.some(hostKnown), "host figures in the worker history");
      const endpointAttempt = usage.currentAttemptId;
      await client.rpc.registerEndpoint({
        name: `${running}/metrics`,
        address: "127.0.0.1:9100",
        taskId: tickerTask,
        attemptId: endpointAttempt,
        metadata: { note: HOSTILE_ENV },
      });

      await using browser = await launchChromium();
      const { page, dialogs, errors, shot } = await watchedPage(browser, {
        timeout: TIMEOUT,
        prefix: "real-",
      });
      const row = (id: string) => page.locator(`.job-row[data-job-id="${id}"]`);

      await t.step("jobs list: every state and the pending reason", async () => {
        await page.goto(`${base}/#/jobs`);
        for (
          const [id, state] of [
            [succeeded, "succeeded"],
            [failed, "failed"],
            [running, "running"],
            [pending, "pending"],
            [hostile, "succeeded"],
          ]
        ) {
          await row(id!).waitFor();
          assert.equal(await row(id!).getAttribute("data-state"), state, id);
        }
        assert.equal(await row(pending).locator(".pending-reason").textContent(), reason);
        // Jobs per user: alice has four, bob the pending one; a chip filters by user.
        await page.locator('.user-chip[data-user="alice"] .user-total').filter({ hasText: /^4$/ })
          .waitFor();
        await page.locator('.user-chip[data-user="bob"] .tc-pending').waitFor();
        await page.locator('.user-chip[data-user="bob"]').click();
        await waitPage(page, `document.querySelectorAll(".job-row").length === 1`);
        await row(pending).waitFor();
        await page.locator('.user-chip[data-user="bob"]').click();
        await waitPage(page, `document.querySelectorAll(".job-row").length === 5`);
        await assertNotPwned(page);
        await shot("01-jobs");
      });

      await t.step("running job: tick lines appear and keep coming", async () => {
        await page.goto(`${base}/#/job/${encodeURIComponent(running)}`);
        await page.locator(".log-text").filter({ hasText: /^tick \d+$/ }).first().waitFor();
        const first = await maxTick(page);
        assert.ok(first >= 1);
        await waitPage(
          page,
          `[...document.querySelectorAll(".log-text")].some((e) =>
          /^tick (\\d+)$/.exec(e.textContent) && Number(e.textContent.slice(5)) >= ${first + 5})`,
        );
        assert.ok((await maxTick(page)) >= first + 5, "new tick lines without reloading");
        const usageCell = page.locator(`.task-row[data-task-id="${tickerTask}"] .usage-mem`);
        assert.match((await usageCell.textContent()) ?? "", / · peak /);
        await page.locator(`.task-row[data-task-id="${tickerTask}"] svg.sparkline-task-mem`)
          .waitFor({ state: "attached" });
        await shot("02-running-job");
      });

      await t.step("failed and pending job details", async () => {
        await page.goto(`${base}/#/job/${encodeURIComponent(failed)}`);
        await page.locator(".log-text").filter({ hasText: /^broken$/ }).waitFor();
        await page.locator(".title-badge .badge.state-failed").waitFor();
        await page.goto(`${base}/#/job/${encodeURIComponent(pending)}`);
        const shown = await page.locator(".card .pending-reason").first().textContent();
        assert.match(shown ?? "", /cpu/i);
        assert.ok(shown?.startsWith(reason), `${shown} vs ${reason}`);
        await shot("03-pending-job");
      });

      await t.step("hostile command, env and log lines stay literal text", async () => {
        await page.goto(`${base}/#/job/${encodeURIComponent(hostile)}`);
        // Exactly the echoed lines (the worker's "started pid …" line also quotes the command).
        const line = (text: string) =>
          page.locator(".log-text").filter({
            hasText: new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`),
          });
        await line(HOSTILE_ENV).waitFor();
        await line(HOSTILE_LOG).waitFor();
        await line("<img src=x onerror=alert(2)>").waitFor();
        assert.match((await page.locator("code.cmd").textContent()) ?? "", /<img src=x onerror=/);
        assert.deepEqual(await page.locator(".chip").allTextContents(), ["IRIS_HOSTILE"]);
        await assertNotPwned(page);
        await shot("04-hostile-job");
      });

      await t.step("fleet lists the cluster's workers", async () => {
        await page.goto(`${base}/#/fleet`);
        // The autoscaler may still add a worker; wait until page and API agree.
        await waitFor(async () => {
          const api = (await client.workers()).map((w) => w.workerId).sort();
          const shown = (await page.locator(".worker-row").evaluateAll((rows) =>
            rows.map((r) =>
              r.getAttribute("data-worker-id") ?? ""
            )
          )).sort();
          return api.length > 0 && JSON.stringify(api) === JSON.stringify(shown);
        }, { timeout: seconds(15), what: "fleet rows to match ListWorkers" });
        // Host gauges with non-zero totals on every row (local VMs share this machine).
        const rows = await page.locator(".worker-row").count();
        await waitPage(
          page,
          `document.querySelectorAll(".worker-row .col-cpu .gauge.host-cpu").length === ${rows} &&
          document.querySelectorAll(".worker-row .col-mem .gauge.host-mem").length === ${rows}`,
        );
        for (const label of await page.locator(".host-cpu .gauge-label").allTextContents()) {
          assert.match(label, /^[\d.]+( cpu)? \/ [1-9][\d.]* cpu$/, label);
        }
        for (const label of await page.locator(".host-mem .gauge-label").allTextContents()) {
          assert.match(label, /^[\d.]+( \w+)? \/ [1-9][\d.]* [KMGT]iB$/, label);
        }
        await shot("05-fleet");
      });

      await t.step(
        "worker detail: history sparklines, running task usage, recent attempts",
        async () => {
          await waitFor(
            async () =>
              ((await client.workers()).find((w) => w.workerId === taskWorker)?.history.length ??
                0) >= 2,
            { timeout: seconds(10), what: "two heartbeats in the worker history" },
          );
          await page.goto(`${base}/#/worker/${encodeURIComponent(taskWorker)}`);
          assert.equal(await page.locator("h1").textContent(), taskWorker);
          await page.locator("svg.sparkline-cpu polyline").waitFor({ state: "attached" });
          await page.locator("svg.sparkline-mem polyline").waitFor({ state: "attached" });
          await page.locator("svg.sparkline-host-cpu polyline").waitFor({ state: "attached" });
          await page.locator(".worker-detail-grid .gauge.host-cpu").waitFor();
          assert.match(
            (await page.locator(".worker-detail-grid .gauge.host-mem").textContent()) ?? "",
            / \/ [1-9][\d.]* [KMGT]iB$/,
          );
          const points = await page.locator("svg.sparkline-cpu polyline").getAttribute("points");
          assert.ok((points ?? "").split(" ").length >= 2, `points: ${points}`);
          assert.equal(
            await page.locator("svg.sparkline-cpu").evaluate((e) => e.namespaceURI),
            "http://www.w3.org/2000/svg",
          );
          const taskRow = page.locator(
            `.worker-detail-grid .task-row[data-task-id="${tickerTask}"]`,
          );
          assert.match((await taskRow.locator(".usage-mem").textContent()) ?? "", / · peak /);
          await taskRow.locator("svg.sparkline-task-mem").waitFor({ state: "attached" });
          if (workerStatus.recentAttempts.length > 0) {
            await page.locator(".attempt-row").first().waitFor();
          }
          await shot("06-worker-detail");
        },
      );

      await t.step("the worker's own dashboard shows task and host gauges", async () => {
        const address = workerStatus.worker!.address;
        await page.goto(`${address.startsWith("http") ? address : `http://${address}`}/`);
        await page.locator(".gauge.host-cpu").waitFor();
        assert.match(
          (await page.locator(".gauge.host-mem").textContent()) ?? "",
          / \/ [1-9][\d.]* [KMGT]iB$/,
        );
        assert.match((await page.locator(".host-note").textContent()) ?? "", /share one host/);
        await shot("06b-worker-dashboard");
      });

      await t.step("autoscaler shows every scale group", async () => {
        await page.goto(`${base}/#/autoscaler`);
        await page.locator('.group-row[data-group="tpu_v5e_16"]').waitFor();
        await page.locator('.group-row[data-group="cpu"]').waitFor();
        await page.locator('.group-row[data-group="cpu_eu"]').waitFor();
        assert.equal(await page.locator(".group-row").count(), 3);
        // Min / max from the config, a ready slice and the scale-up decision that made it.
        const cpuGroup = page.locator('.group-row[data-group="cpu"]');
        assert.equal(await cpuGroup.locator("td").nth(3).textContent(), "0 / 4");
        await cpuGroup.locator(".badge.state-ready").first().waitFor();
        await page.locator('.action-row[data-action="scale_up"]').first().waitFor();
        await page.locator(".slice-row").first().waitFor();
        await shot("07-autoscaler");
      });

      await t.step("endpoints list the registered endpoint, metadata as text", async () => {
        await page.goto(`${base}/#/endpoints`);
        const endpoint = page.locator(".endpoint-row").filter({ hasText: `${running}/metrics` });
        await endpoint.waitFor();
        assert.match((await endpoint.textContent()) ?? "", /127\.0\.0\.1:9100/);
        assert.ok((await endpoint.locator(".chip").allTextContents()).includes(
          `note=${HOSTILE_ENV}`,
        ));
        await assertNotPwned(page);
        await shot("08-endpoints");
      });

      await t.step("controller status", async () => {
        await page.goto(`${base}/#/status`);
        await page.locator(".page-status .metric-value").first().waitFor();
        await page.locator("#live-status.live-ok").waitFor();
        const metrics = await page.locator(".metric-value").allTextContents();
        assert.ok(metrics.includes("5"), `job count among ${metrics.join("|")}`);
        assert.equal(await page.locator(".alert-danger").count(), 0);
        // The controller's recent log lines.
        await page.locator(".log-line").filter({ hasText: "controller listening" }).waitFor();
        await assertNotPwned(page);
        await shot("09-status");
      });

      await t.step("transactions list who submitted what", async () => {
        await page.goto(`${base}/#/transactions`);
        await page.locator(".transaction-row").first().waitFor();
        const rows = page.locator('.transaction-row[data-action="submit"]');
        assert.ok((await rows.count()) >= 5, `${await rows.count()} submit rows`);
        await page.locator(".transaction-row").filter({ hasText: running }).first().waitFor();
        await assertNotPwned(page);
        await shot("10-transactions");
      });

      await t.step("a running task's Profile button shows a profile", async () => {
        await page.goto(`${base}/#/job/${encodeURIComponent(running)}`);
        await page.locator(`.task-row[data-task-id="${tickerTask}"] .btn-profile`).click();
        await page.locator(".profile-slot .card, .profile-slot .alert").first()
          .waitFor({ timeout: 20_000 });
        const text = (await page.locator(".profile-slot").textContent()) ?? "";
        assert.match(text, /(\/proc|ps) sampling of session \d+/);
        await shot("11-profile");
      });

      assert.deepEqual(dialogs, [], "no dialog may fire");
      assert.deepEqual(errors, [], "no console errors (CSP violations, exceptions)");
      console.log(`screenshots: ${artifactDir()}/real-*.png`);
    } finally {
      try {
        await cluster.stop();
      } finally {
        await Deno.remove(workDir, { recursive: true });
      }
    }
  },
});
