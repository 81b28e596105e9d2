/**
 * Dashboard usability in headless Chromium against the fake controller (issue #17): dark mode
 * (prefers-color-scheme and the toggle), a 400 px layout, the "failed" filter including worker
 * failures, an unknown job saying "not found", logs of several tasks in time order, log download,
 * Resubmit, the cluster usage page and links between the controller and worker dashboards. Screenshots go to `$IRIS_ARTIFACT_DIR/dashboard/ux-*.png`.
 * @module
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { PARENT_JOB } from "./fake_cluster.ts";
import {
  launchChromium,
  SKIP_BROWSER,
  startDashboardFixture,
  startWorkerFixture,
  watchedPage,
} from "./fixture.ts";

const TIMEOUT = 5000;

async function until(page: Page, expression: string, timeout = TIMEOUT): Promise<void> {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await page.evaluate(expression)) return;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for: ${expression}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const bodyBg = (page: Page) =>
  page.evaluate<string>("getComputedStyle(document.body).backgroundColor");

Deno.test({
  name: "dashboard: dark mode, 400 px, filters, not found, log order, download, resubmit",
  ignore: SKIP_BROWSER,
  async fn(t) {
    await using fixture = await startDashboardFixture();
    await using workerFixture = await startWorkerFixture();
    const fake = fixture.fake!;
    await using browser = await launchChromium();
    const { page, errors, shot } = await watchedPage(browser, { timeout: TIMEOUT, prefix: "ux-" });
    const base = fixture.url;

    await t.step("dark mode follows prefers-color-scheme; the toggle overrides it", async () => {
      await page.emulateMedia({ colorScheme: "dark" });
      await page.goto(`${base}/#/jobs`);
      await until(page, `document.querySelectorAll(".job-row").length > 0`);
      assert.equal(await bodyBg(page), "rgb(15, 19, 28)");
      await shot("jobs-dark");
      const toggle = page.locator("#theme-toggle");
      assert.equal(await toggle.textContent(), "Theme: auto");
      await toggle.click(); // dark
      await toggle.click(); // light
      assert.equal(await toggle.textContent(), "Theme: light");
      assert.equal(await bodyBg(page), "rgb(244, 245, 247)");
      await page.reload();
      await until(page, `document.querySelector("#theme-toggle")?.textContent === "Theme: light"`);
      assert.equal(await bodyBg(page), "rgb(244, 245, 247)", "the choice is remembered");
      await page.locator("#theme-toggle").click(); // auto again
      assert.equal(await bodyBg(page), "rgb(15, 19, 28)");
      await page.emulateMedia({ colorScheme: "light" });
      assert.equal(await bodyBg(page), "rgb(244, 245, 247)");
      await page.locator("#theme-toggle").click(); // dark, against a light system
      assert.equal(await bodyBg(page), "rgb(15, 19, 28)", "the toggle overrides the system");
      await page.locator("#theme-toggle").click(); // light
      await page.locator("#theme-toggle").click(); // auto again
      assert.equal(await bodyBg(page), "rgb(244, 245, 247)");
    });

    await t.step(
      "usable at 400 px: no page-wide horizontal scroll, names not one letter a line",
      async () => {
        await page.setViewportSize({ width: 400, height: 800 });
        await page.goto(`${base}/#/jobs`);
        await until(page, `document.querySelectorAll(".job-row").length > 0`);
        const width = await page.evaluate<number>("document.documentElement.scrollWidth");
        assert.ok(width <= 400, `page is ${width} px wide`);
        const link = await page.locator(`.job-row[data-job-id="/frank/tokenize"] .job-link`)
          .boundingBox();
        assert.ok(link && link.width >= 60, `job name box ${JSON.stringify(link)}`);
        await shot("jobs-400px");
        await page.setViewportSize({ width: 1280, height: 900 });
      },
    );

    await t.step('"failed" includes worker-failed jobs', async () => {
      await page.goto(`${base}/#/jobs`);
      await until(page, `document.querySelectorAll(".job-row").length > 0`);
      await page.locator('select[aria-label="State filter"]').selectOption({ label: "failed" });
      await until(page, `!!document.querySelector('.job-row[data-job-id="/grace/flaky"]')`);
    });

    await t.step('an unknown job says "not found" and stops polling', async () => {
      await page.goto(`${base}/#/job/${encodeURIComponent("/nobody/missing")}`);
      await until(page, `document.body.textContent.includes("Job /nobody/missing not found")`);
      await until(
        page,
        `document.querySelector(".tasks-table")?.textContent.includes("Job not found")`,
      );
      await new Promise((r) => setTimeout(r, 1500));
      const live = await page.locator("#live-status").textContent();
      assert.ok(!/Disconnected|Loading/.test(live ?? ""), `live status: ${live}`);
      await shot("job-not-found");
    });

    await t.step("logs of several tasks are shown in time order", async () => {
      const now = Date.now();
      fake.appendLog("/frank/tokenize/1", "second-by-time", "stdout", now + 2000);
      fake.appendLog("/frank/tokenize/0", "first-by-time", "stdout", now + 1000);
      await page.goto(`${base}/#/job/${encodeURIComponent("/frank/tokenize")}`);
      await until(page, `document.querySelectorAll("#log-container .log-line").length >= 2`);
      const texts = await page.locator("#log-container .log-text").allTextContents();
      assert.ok(texts.indexOf("first-by-time") < texts.indexOf("second-by-time"), texts.join("|"));
      const ts = await page.locator("#log-container .log-line").evaluateAll((rows) =>
        rows.map((r) => Number(r.getAttribute("data-ts")))
      );
      assert.deepEqual(ts, [...ts].sort((a, b) => a - b));
    });

    await t.step("logs download as a file", async () => {
      const [download] = await Promise.all([
        page.waitForEvent("download"),
        page.locator("#log-download").click(),
      ]);
      assert.equal(download.suggestedFilename(), "tokenize.log");
      const path = await download.path();
      const text = await Deno.readTextFile(path!);
      assert.match(text, /first-by-time\n.*second-by-time/s);
    });

    await t.step("Resubmit launches the same spec under a new name and opens it", async () => {
      await page.goto(`${base}/#/job/${encodeURIComponent(PARENT_JOB)}`);
      await page.locator("#resubmit-btn").click();
      await until(page, `location.hash.includes(encodeURIComponent("/alice/train-r"))`);
      assert.equal(fake.launched.length, 1);
      assert.match(fake.launched[0]!.jobId, /^\/alice\/train-r[0-9a-z]+$/);
      await shot("job-resubmitted");
    });

    await t.step("cluster usage page: committed vs free, over time, per group", async () => {
      await page.goto(`${base}/#/usage`);
      await until(page, `document.querySelectorAll(".usage-row").length > 0`);
      const cpu = page.locator(".metric").filter({ hasText: "CPU committed" });
      assert.match((await cpu.textContent()) ?? "", /\d+ %.*free/);
      const acc = page.locator(".metric").filter({ hasText: "Accelerators committed" });
      assert.match((await acc.textContent()) ?? "", /\d+ \/ \d+ chips\/GPUs/);
      // Two samples 2 s apart draw the lines.
      await until(page, `!!document.querySelector(".usage-cpu svg.sparkline")`, 8000);
      await until(page, `!!document.querySelector(".usage-accelerators svg.sparkline")`);
      assert.ok(await page.locator('.usage-row[data-group="tpu-v5e-16"]').count() === 1);
      await shot("usage");
    });

    await t.step("an unmet-demand job on the autoscaler page links to the job", async () => {
      await page.goto(`${base}/#/autoscaler`);
      const a = page.locator(".unmet-item a").first();
      await a.waitFor();
      assert.equal(await a.textContent(), "/bob/sweep-lr");
      assert.equal(await a.getAttribute("href"), `#/job/${encodeURIComponent("/bob/sweep-lr")}`);
    });

    await t.step("links both ways between the controller and worker dashboards", async () => {
      await page.goto(`${base}/#/worker/tpu-slice-a-0`);
      const toWorker = page.locator('a[href="http://10.128.0.10:10001/"]');
      await toWorker.first().waitFor();
      await page.goto(`${workerFixture.url}/`);
      const back = page.locator("#controller-link");
      await back.waitFor();
      assert.equal(
        await back.getAttribute("href"),
        "http://127.0.0.1:10000/#/worker/tpu-slice-a-0",
      );
      await shot("worker-link-back");
    });

    assert.deepEqual(errors.filter((e) => !/Failed to load resource|not found/i.test(e)), []);
  },
});
