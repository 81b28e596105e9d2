/**
 * End-to-end dashboard test in headless Chromium against a fake controller and worker.
 * Visits every page, checks the canned data renders, that hostile strings stay text, that the
 * refresh loops follow logs and pause while hidden, and saves a screenshot of each page to
 * `$IRIS_ARTIFACT_DIR/dashboard/` (default `./test-artifacts/dashboard/`).
 *
 * Needs Chromium (scripts/install_chromium.sh); fails with instructions when it is missing,
 * unless IRIS_SKIP_BROWSER=1.
 * @module
 */
import assert from "node:assert/strict";
import type { Locator, Page } from "playwright-core";
import {
  CHILD_JOB,
  DROPPED_MARKER,
  FILLER_JOBS,
  HOSTILE_ATTR,
  HOSTILE_JOB,
  HOSTILE_LOG,
  PARENT_JOB,
  PENDING_JOB,
  PENDING_REASON,
} from "./fake_cluster.ts";
import {
  artifactDir,
  assertNotPwned,
  launchChromium,
  SKIP_BROWSER,
  startDashboardFixture,
  startWorkerFixture,
  watchedPage,
} from "./fixture.ts";

const TIMEOUT = 5000;

async function textOf(loc: Locator): Promise<string> {
  await loc.first().waitFor({ state: "visible", timeout: TIMEOUT });
  return (await loc.first().textContent()) ?? "";
}

async function texts(loc: Locator): Promise<string[]> {
  await loc.first().waitFor({ state: "attached", timeout: TIMEOUT });
  return await loc.allTextContents();
}

/**
 * Polls a page-side expression until it is truthy. Expressions run through `page.evaluate`
 * (CDP Runtime.evaluate), which the page's CSP does not block, unlike string predicates given
 * to `page.waitForFunction` (they need 'unsafe-eval'). Strings also keep lib.dom out of the
 * type-checked test code.
 */
async function waitFor(page: Page, expression: string, timeout = TIMEOUT): Promise<void> {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await page.evaluate(expression)) return;
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeout} ms waiting for: ${expression}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until `selector` has exactly `n` matches. */
function waitCount(page: Page, selector: string, n: number): Promise<void> {
  return waitFor(page, `document.querySelectorAll(${JSON.stringify(selector)}).length === ${n}`);
}

/** Waits until the first match of `selector` has exactly the text `text`. */
function waitText(page: Page, selector: string, text: string): Promise<void> {
  return waitFor(
    page,
    `document.querySelector(${JSON.stringify(selector)})?.textContent === ${JSON.stringify(text)}`,
  );
}

/**
 * The text colour of the first match of `selector`, found and read in one synchronous
 * evaluation: the live refresh may re-render the list between a locator finding an element and
 * reading its style, and a detached element has no computed colour ("").
 */
function stateColor(page: Page, selector: string): Promise<string> {
  return page.evaluate<string>(
    `getComputedStyle(document.querySelector(${JSON.stringify(selector)})).color`,
  );
}

Deno.test({
  name: "dashboard pages render the controller and worker APIs safely in Chromium",
  ignore: SKIP_BROWSER,
  async fn(t) {
    await using fixture = await startDashboardFixture();
    await using workerFixture = await startWorkerFixture();
    // Canned-data steps need the fake; against a real cluster (IRIS_DASHBOARD_URL) only the
    // smoke step runs.
    const fake = fixture.fake;
    const canned = (name: string, fn: () => Promise<void>) => t.step({ name, ignore: !fake, fn });
    await using browser = await launchChromium();
    const { page, dialogs, errors, shot } = await watchedPage(browser, { timeout: TIMEOUT });
    const base = fixture.url;

    await canned(
      "jobs tree with states, pending reasons, users, server sorting and paging",
      async () => {
        const resp = await page.goto(`${base}/`);
        assert.ok(resp?.ok());
        const headers = resp!.headers();
        assert.match(headers["content-security-policy"] ?? "", /script-src 'self'/);
        assert.equal(headers["cache-control"], "no-cache");
        // The server pages top-level jobs; the parent's two descendants load under it.
        const roots = 9 + FILLER_JOBS;
        const total = roots + 2;
        await waitCount(page, ".job-row", total);
        assert.equal(await textOf(page.locator(".pager-text")), `1–${roots} of ${roots}`);

        // Pending job shows its reason.
        const pending = page.locator(`.job-row[data-job-id="${PENDING_JOB}"]`);
        assert.equal(await textOf(pending.locator(".pending-reason")), PENDING_REASON);
        assert.equal(await pending.getAttribute("data-state"), "pending");

        // Tree: child right under its parent, grandchild under the child.
        const ids = await page.locator(".job-row").evaluateAll((rows) =>
          rows.map((r) => [r.getAttribute("data-job-id"), r.getAttribute("data-depth")])
        );
        const pi = ids.findIndex(([id]) => id === PARENT_JOB);
        assert.deepEqual(ids[pi + 1], [CHILD_JOB, "1"]);
        assert.deepEqual(ids[pi + 2], [`${CHILD_JOB}/shard-0`, "2"]);
        assert.equal(
          await textOf(page.locator(`.job-row[data-job-id="${CHILD_JOB}"] .job-link`)),
          "eval",
        );

        // Collapse and expand the parent.
        const toggle = page.locator(`.job-row[data-job-id="${PARENT_JOB}"] .tree-toggle`);
        await toggle.click();
        await waitCount(page, ".job-row", total - 2);
        await page.locator(`.job-row[data-job-id="${PARENT_JOB}"] .tree-toggle`).click();
        await waitCount(page, ".job-row", total);

        // Hostile job name is literal text.
        const hostile = page.locator(".job-row").filter({ hasText: "mallory" });
        assert.equal(await textOf(hostile.locator(".job-link")), HOSTILE_JOB);

        // Task counts by state and badge colours from the design tokens.
        const counts = await texts(page.locator(`.job-row[data-job-id="${PARENT_JOB}"] .tc`));
        assert.deepEqual(counts, ["3 running", "1 building"]);
        assert.equal(await stateColor(page, ".badge.state-running"), "rgb(37, 99, 235)");
        assert.equal(await stateColor(page, ".badge.state-pending"), "rgb(217, 119, 6)");
        assert.equal(await stateColor(page, ".badge.state-failed"), "rgb(220, 38, 38)");
        assert.equal(await stateColor(page, ".badge.state-killed"), "rgb(107, 114, 128)");

        // Jobs per user: a chip per user with its counts (all jobs, children included).
        const alice = page.locator('.user-chip[data-user="alice"]');
        assert.equal(await textOf(alice.locator(".user-total")), "3");
        assert.equal(await textOf(alice.locator(".tc-running")), "2 running");
        await alice.click();
        await waitCount(page, ".job-row", 3);
        assert.equal(await textOf(page.locator(".pager-text")), "1–1 of 1");
        assert.equal(await page.locator("select.user-filter").inputValue(), "alice");
        assert.match(await page.evaluate("location.hash"), /^#\/jobs\?user=alice$/);
        await page.locator('.user-chip[data-user="alice"]').click();
        await waitCount(page, ".job-row", total);

        // Sorting happens on the server over every job. User, descending: mallory's first.
        await page.locator('button[data-sort="user"]').click();
        await waitFor(
          page,
          `document.querySelector(".job-row")?.dataset.jobId === ${JSON.stringify(PARENT_JOB)}`,
        );
        await page.locator('button[data-sort="user"]').click();
        await waitFor(
          page,
          `document.querySelector(".job-row")?.dataset.jobId === ${JSON.stringify(HOSTILE_JOB)}`,
        );
        await page.locator('button[data-sort="age"]').click(); // Back to newest first.
        await waitFor(
          page,
          `document.querySelector(".job-row")?.dataset.jobId === "/frank/tokenize"`,
        );

        // A state filter switches to a flat list of every matching job, children included.
        await page.locator('select[aria-label="State filter"]').selectOption({ label: "running" });
        await waitCount(page, ".job-row", 3);
        assert.deepEqual(
          await page.locator(".job-row").evaluateAll((rows) =>
            rows.map((r) => r.getAttribute("data-depth"))
          ),
          ["0", "0", "0"],
        );
        assert.equal(
          await textOf(page.locator(`.job-row[data-job-id="${CHILD_JOB}"] .job-link`)),
          CHILD_JOB,
        );
        await page.locator('select[aria-label="State filter"]').selectOption({
          label: "all states",
        });
        await page.locator('input[aria-label="Job name filter"]').fill("shard");
        await waitCount(page, ".job-row", 1);
        await page.locator('input[aria-label="Job name filter"]').fill("");
        await waitCount(page, ".job-row", total);

        // Paging through ListJobs limit/offset.
        await page.locator("select.page-size").selectOption("25");
        await waitText(page, ".pager-text", `1–25 of ${roots}`);
        await page.getByRole("button", { name: "Next page" }).click();
        await waitText(page, ".pager-text", `26–${roots} of ${roots}`);
        await page.locator("select.page-size").selectOption("50");
        await waitText(page, ".pager-text", `1–${roots} of ${roots}`);
        await waitCount(page, ".job-row", total);
        await assertNotPwned(page);
        await shot("01-jobs");

        // The URL carries the view, so a filtered, sorted list is a shareable link.
        await page.goto(`${base}/#/jobs?user=bob&state=failed&sort=name&dir=desc`);
        await waitCount(page, ".job-row", 1);
        await page.locator('.job-row[data-job-id="/bob/preprocess"]').waitFor();
        assert.equal(await page.locator("select.user-filter").inputValue(), "bob");
        assert.equal(
          await page.locator('button[data-sort="name"]').locator("..").getAttribute("aria-sort"),
          "descending",
        );
        await page.goto(`${base}/#/jobs?sort=age`);
        await waitCount(page, ".job-row", total);
        assert.equal(await page.evaluate("location.hash"), "#/jobs");
      },
    );

    await canned("job detail with spec, tasks, children and live logs", async () => {
      await page.goto(`${base}/#/job/${encodeURIComponent(PARENT_JOB)}`);
      assert.equal(await textOf(page.locator("h1.job-title")), PARENT_JOB);
      await waitCount(page, ".task-row", 4);
      assert.match(
        await textOf(page.locator("code.cmd")),
        /^python -m train --lr 3e-4 '--run name'$/,
      );
      assert.deepEqual(await texts(page.locator(".chip-constraint")), [
        "region = us-central2",
        "tpu-name exists",
        "zone in [us-central2-a, us-central2-b] (preferred)",
      ]);
      const task1 = page.locator(`.task-row[data-task-id="${PARENT_JOB}/1"] td`);
      assert.equal(await task1.nth(3).textContent(), "2"); // attempts
      // Per-task usage; sparklines once the page knows the job is small enough to ask for them.
      const task0 = page.locator(`.task-row[data-task-id="${PARENT_JOB}/0"]`);
      assert.equal(await textOf(task0.locator(".usage-cpu")), "1.5 cpu");
      assert.equal(await textOf(task0.locator(".usage-mem")), "3 GiB · peak 4 GiB");
      await task0.locator("svg.sparkline-task-cpu").waitFor({ state: "attached" });
      assert.equal(
        await textOf(page.locator(`.task-row[data-task-id="${PARENT_JOB}/3"] .usage-cell`)),
        "—",
      );
      assert.equal(await textOf(page.locator(`.child-row[data-job-id="${CHILD_JOB}"] a`)), "eval");
      await page.locator(".log-line").filter({ hasText: "step 12002" }).waitFor();
      assert.equal(
        await textOf(page.locator(".log-text").filter({ hasText: "__pwned" })),
        HOSTILE_LOG,
      );
      // A flooding task's marker shows as a system line; a cut 16 KiB line wraps in the view.
      assert.equal(
        await textOf(page.locator(".log-system .log-text").filter({ hasText: "lines dropped" })),
        DROPPED_MARKER,
      );
      const cut = page.locator(".log-text").filter({ hasText: "bytes truncated]" });
      assert.match(await textOf(cut), /^y{16384} … \[49,151 bytes truncated\]$/);
      assert.ok(
        await page.locator(".log-view").evaluate((el) => el.scrollWidth <= el.clientWidth + 1),
        "the log view does not scroll sideways",
      );

      // Logs follow: a new line shows up without reloading.
      fake!.appendLog(`${PARENT_JOB}/2`, "step 12003 follow-marker");
      await page.locator(".log-line").filter({ hasText: "follow-marker" }).waitFor({
        timeout: 4000,
      });
      assert.equal(
        await textOf(
          page.locator(".log-line").filter({ hasText: "follow-marker" }).locator(".log-tag"),
        ),
        "2",
      );

      // One task's logs only.
      await page.locator(`.task-row[data-task-id="${PARENT_JOB}/2"] button:not(.btn-profile)`)
        .click();
      await waitCount(page, ".log-line", 2);
      await assertNotPwned(page);
      await page.locator(`.task-row[data-task-id="${PARENT_JOB}/0"] button:not(.btn-profile)`)
        .click();
      await page.locator(".log-line").filter({ hasText: "step 12002" }).waitFor();
      await shot("02-job-detail");
    });

    await canned("refresh pauses while the tab is hidden", async () => {
      let calls = 0;
      const count = (r: { url(): string }) => {
        if (r.url().includes("/GetTaskLogs") || r.url().includes("/GetJobStatus")) calls++;
      };
      page.on("request", count);
      await page.evaluate(
        `Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
        document.dispatchEvent(new Event("visibilitychange"));`,
      );
      await page.waitForTimeout(300); // In-flight calls finish.
      calls = 0;
      await page.waitForTimeout(2500);
      assert.equal(calls, 0, "no RPCs while hidden");
      assert.equal(await textOf(page.locator("#live-status")), "Paused (tab hidden)");
      await page.evaluate(
        `Object.defineProperty(document, "hidden", { configurable: true, get: () => false });
        document.dispatchEvent(new Event("visibilitychange"));`,
      );
      await page.waitForTimeout(400);
      assert.ok(calls >= 2, `RPCs resume when visible (saw ${calls})`);
      page.off("request", count);
      await page.locator("#live-status.live-ok").waitFor();
    });

    await canned("pending job detail and terminating a job", async () => {
      await page.goto(`${base}/#/job/${encodeURIComponent(PENDING_JOB)}`);
      assert.equal(
        await textOf(page.locator(".card .pending-reason").first()),
        `${PENDING_REASON} (3 workers considered)`,
      );

      await page.goto(`${base}/#/job/${encodeURIComponent(HOSTILE_JOB)}`);
      assert.equal(await textOf(page.locator("h1.job-title")), HOSTILE_JOB);
      await page.locator(".log-text").filter({ hasText: "__pwned" }).waitFor();
      await page.locator("#terminate-btn").click();
      await page.locator("#terminate-confirm").click();
      assert.equal(await textOf(page.locator(".notice")), "Terminated 1 job");
      assert.deepEqual(fake!.terminated, [HOSTILE_JOB]);
      await page.locator(".title-badge .badge.state-killed").waitFor();
      assert.equal(await page.locator("#terminate-btn").count(), 0);
      await assertNotPwned(page);
    });

    await canned("fleet with gauges and worker detail", async () => {
      await page.goto(`${base}/#/fleet`);
      await waitCount(page, ".worker-row", 6);
      // Each gauge cell stacks the tasks' gauge over the host's.
      const level = (id: string, col: number, of: "task" | "host" = "task") =>
        page.locator(`.worker-row[data-worker-id="${id}"] td`).nth(col)
          .locator(`.gauge.${of}-gauge`).getAttribute("data-level");
      assert.equal(await level("tpu-slice-a-0", 5), "ok");
      assert.equal(await level("tpu-slice-a-1", 5), "warning");
      assert.equal(await level("tpu-slice-a-2", 5), "danger");
      assert.equal(await level("tpu-slice-a-2", 6), "danger");
      // Host gauges (whole machine) beside the task gauges, same thresholds; unknown stays text.
      assert.equal(await level("tpu-slice-a-0", 5, "host"), "ok");
      assert.equal(await level("tpu-slice-a-1", 5, "host"), "warning");
      assert.equal(await level("tpu-slice-a-2", 5, "host"), "danger");
      assert.equal(await level("tpu-slice-a-1", 6, "host"), "warning");
      const cell = (id: string, col: string) =>
        page.locator(`.worker-row[data-worker-id="${id}"] .${col}`);
      assert.equal(
        await textOf(cell("tpu-slice-a-1", "col-cpu").locator(".host-cpu")),
        "90 / 112 cpu",
      );
      assert.equal(
        await textOf(cell("tpu-slice-a-3", "col-cpu").locator(".host-unknown")),
        "unknown",
      );
      assert.equal(await textOf(cell("cpu-pool-2", "col-mem").locator(".host-unknown")), "unknown");
      assert.match(await textOf(page.locator(".fleet-note")), /local VMs share one host/i);
      assert.equal(
        await textOf(page.locator('.worker-row[data-worker-id="tpu-slice-a-1"] td').nth(3)),
        "1",
      );
      assert.equal(
        await textOf(page.locator('.worker-row[data-worker-id="cpu-pool-2"] .badge')),
        "unhealthy",
      );
      assert.equal(await page.locator(".tab-btn.active").textContent(), "Fleet");
      await shot("03-fleet");

      await page.locator('.worker-link:text-is("tpu-slice-a-2")').click();
      await page.locator(".worker-detail-grid").waitFor();
      assert.equal(await textOf(page.locator("h1")), "tpu-slice-a-2");
      assert.equal(
        await page.locator(".worker-detail-grid .gauge.host-cpu").getAttribute("data-level"),
        "danger",
      );
      assert.equal(
        await textOf(page.locator(".worker-detail-grid .gauge.host-mem")),
        "180 / 192 GiB",
      );
      const attrs = await texts(page.locator(".attrs-table tr"));
      assert.ok(attrs.includes("tpu-worker-id2"), attrs.join("|"));
      // GetWorkerStatus: the running task with its usage samples, as text and sparklines.
      const taskRow = page.locator(`.worker-detail-grid .task-row[data-task-id="${PARENT_JOB}/2"]`);
      assert.equal(await textOf(taskRow.locator("a")), PARENT_JOB);
      assert.equal(await textOf(taskRow.locator(".usage-cpu")), "6.5 cpu");
      assert.equal(await textOf(taskRow.locator(".usage-mem")), "13 GiB · peak 16 GiB");
      await taskRow.locator("svg.sparkline-task-mem polyline").waitFor({ state: "attached" });
      assert.equal(await taskRow.locator(".usage-cell").getAttribute("data-samples"), "20");
      await shot("04-worker-detail");

      await page.goto(`${base}/#/worker/tpu-slice-a-1`);
      const attempt = page.locator(".attempt-row").first();
      assert.equal(await textOf(attempt.locator("a")), `${PARENT_JOB}/1`);
      assert.equal(await textOf(attempt.locator(".badge")), "preempted");
      assert.match(await textOf(attempt), /40 GiB/);

      await page.goto(`${base}/#/worker/cpu-pool-2`);
      await page.locator(".attrs-table").waitFor();
      assert.deepEqual(await texts(page.locator(".attrs-table tr td:nth-child(2)")), [
        HOSTILE_ATTR,
      ]);
      await assertNotPwned(page);
    });

    await canned("autoscaler groups, slices, actions and unmet demand", async () => {
      await page.goto(`${base}/#/autoscaler`);
      await waitCount(page, ".group-row", 3);
      assert.match(await textOf(page.locator(".unmet-demand")), new RegExp(PENDING_JOB));
      const v5p = page.locator('.group-row[data-group="tpu-v5p-8"]');
      assert.equal(await textOf(v5p.locator(".badge").last()), "backoff");
      assert.match(await textOf(v5p), /3 consecutive failures/);
      await waitCount(page, ".slice-row", 6);
      await waitCount(page, ".action-row", 4);
      assert.match(
        await textOf(page.locator('.slice-row[data-slice="tpu-slice-c"]')),
        /QUOTA_EXCEEDED/,
      );
      await shot("05-autoscaler");
    });

    await canned("endpoints", async () => {
      await page.goto(`${base}/#/endpoints`);
      await waitCount(page, ".endpoint-row", 3);
      assert.ok(
        (await texts(page.locator(".endpoint-row .chip"))).includes(`note=${HOSTILE_ATTR}`),
      );
      await page.locator("input.filter").fill(`${PARENT_JOB}/`);
      await waitCount(page, ".endpoint-row", 2);
      await assertNotPwned(page);
      await shot("06-endpoints");
    });

    await canned("controller status and logs", async () => {
      await page.goto(`${base}/#/status`);
      await page.locator(".log-line").filter({ hasText: "controller listening" }).waitFor();
      assert.ok((await texts(page.locator(".metric-value"))).includes("0.1.0 (fake)"));
      assert.equal(await page.locator(".log-text").filter({ hasText: "__pwned" }).count(), 1);
      await assertNotPwned(page);
      await shot("07-status");
    });

    await t.step({
      name: "smoke: every controller page loads without errors",
      ignore: fake !== undefined,
      fn: async () => {
        for (const route of ["jobs", "fleet", "autoscaler", "endpoints", "status"]) {
          await page.goto(`${base}/#/${route}`);
          await page.locator(`.page-${route}`).waitFor();
          await page.locator("#live-status.live-ok").waitFor();
          assert.equal(await page.locator(".alert-danger").count(), 0, `${route}: RPC error shown`);
          await assertNotPwned(page);
          await shot(`cluster-${route}`);
        }
      },
    });

    await t.step("worker dashboard: tasks, CPU, memory and logs", async () => {
      const fakeWorker = workerFixture.fake!;
      await page.goto(`${workerFixture.url}/`);
      await waitCount(page, ".task-row", 3);
      assert.equal(await textOf(page.locator("h1")), "Worker tpu-slice-a-0");
      const row = page.locator(`.task-row[data-task-id="${PARENT_JOB}/0"] td`);
      assert.equal(await row.nth(4).textContent(), "3.25 cpu");
      assert.equal(await row.nth(5).textContent(), "21 GiB");
      // Health's snapshot: task gauges and host gauges (90 % host CPU is past the danger line).
      const hostCpu = page.locator(".gauge.host-cpu");
      assert.equal(await hostCpu.getAttribute("data-level"), "danger");
      assert.equal(await textOf(hostCpu), "100.8 / 112 cpu");
      assert.equal(await textOf(page.locator(".gauge.host-mem")), "80 / 192 GiB");
      assert.match(await textOf(page.locator(".host-note")), /local VMs share one host/i);
      assert.equal(
        await textOf(
          page.locator(".task-row").filter({ hasText: "mallory" }).locator(".error-text"),
        ),
        HOSTILE_LOG,
      );
      await shot("08-worker-tasks");
      await page.locator(".task-link").first().click();
      await page.locator(".log-line").filter({ hasText: "step 2 loss" }).waitFor();
      assert.equal(await page.locator(".log-text").filter({ hasText: "__pwned" }).count(), 1);
      fakeWorker.appendLog(`${PARENT_JOB}/0`, "step 3 follow-marker");
      await page.locator(".log-line").filter({ hasText: "follow-marker" }).waitFor({
        timeout: 4000,
      });
      assert.equal(await page.locator(".log-line").count(), 5, "no duplicated lines");
      await assertNotPwned(page);
      await shot("09-worker-task");
    });

    assert.deepEqual(dialogs, [], "no dialog may fire");
    assert.deepEqual(errors, [], "no console errors (CSP violations, exceptions)");
    console.log(`screenshots: ${artifactDir()}`);
  },
});
