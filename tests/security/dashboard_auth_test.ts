/**
 * The dashboard against a controller with auth on, in headless Chromium: the static page loads
 * without a token, the first RPC's Unauthenticated answer shows the token form, and after
 * signing in the pages show the user's jobs. The token never appears in the page.
 * Needs Chromium like tests/dashboard/browser_test.ts (IRIS_SKIP_BROWSER=1 skips it).
 */
import { startController } from "../../src/controller/server.ts";
import { controllerDashboard } from "../../src/dashboard/mod.ts";
import { IrisClient } from "../../src/client/client.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { launchChromium, SKIP_BROWSER, watchedPage } from "../dashboard/fixture.ts";
import { makeTokens, policyFor } from "./_cluster.ts";

const TIMEOUT = 10_000;

Deno.test({
  name: "dashboard: asks for a token on unauthenticated, keeps it for the tab, never shows it",
  ignore: SKIP_BROWSER,
  async fn() {
    const tokens = makeTokens();
    await using server = startController({
      auth: policyFor(tokens),
      fallback: (req) => controllerDashboard(req) ?? new Response("Not found\n", { status: 404 }),
    });
    const alice = new IrisClient(server.url, { token: tokens.alice });
    const jobId = await alice.submit({ name: "visible-to-dashboard", command: ["true"] });
    // Static assets stay public.
    const page0 = await fetch(server.url + "/");
    assertEquals(page0.status, 200);
    await page0.body?.cancel();

    await using browser = await launchChromium();
    const { page, errors } = await watchedPage(browser, { timeout: TIMEOUT, prefix: "auth-" });
    await page.goto(server.url + "/");
    const input = page.locator("#iris-token-input");
    await input.waitFor({ state: "visible", timeout: TIMEOUT });
    await input.fill("wrong-token");
    await page.locator("#iris-token-form button").click();
    await page.waitForLoadState("load");
    await page.locator("#iris-token-input").waitFor({ state: "visible", timeout: TIMEOUT });
    assert(
      ((await page.locator("#iris-token-form label").textContent()) ?? "").includes("not accepted"),
    );
    await page.locator("#iris-token-input").fill(tokens.alice);
    await page.locator("#iris-token-form button").click();
    await page.waitForLoadState("load");
    await page.getByText(jobId).first().waitFor({ state: "visible", timeout: TIMEOUT });
    assertEquals(await page.locator("#iris-token-form").count(), 0);
    const html = await page.content();
    for (const token of Object.values(tokens)) {
      assert(!html.includes(token), "a token is in the page");
    }
    // Unauthenticated console errors are expected before signing in; nothing else.
    const unexpected = errors.filter((e) =>
      !/401|Unauthorized|unauthenticated|authentication|invalid token/i.test(e)
    );
    assertEquals(unexpected, []);
  },
});
