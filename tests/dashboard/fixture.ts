/**
 * Dashboard test fixtures: a server (fake controller or worker over `serveRpc` with the
 * dashboard as fallback) and a headless Chromium launched through playwright-core.
 *
 * `startDashboardFixture()` is the seam for running the same browser checks against a real
 * local cluster later: with `IRIS_DASHBOARD_URL` set it returns that URL and no fake (tests
 * that need canned data check `fixture.fake`).
 * @module
 */
import assertStrict from "node:assert/strict";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { controllerDashboard, workerDashboard } from "../../src/dashboard/mod.ts";
import { ControllerService } from "../../src/rpc/gen/iris/v1/controller_pb.ts";
import { WorkerService } from "../../src/rpc/gen/iris/v1/worker_pb.ts";
import { serveRpc } from "../../src/rpc/server.ts";
import { FakeController, FakeWorker } from "./fake_cluster.ts";

/** A running dashboard to point a browser at. */
export interface DashboardFixture<F> extends AsyncDisposable {
  /** Origin serving the dashboard and the API, e.g. "http://127.0.0.1:41234". */
  readonly url: string;
  /** The fake behind the server, or undefined for an external cluster. */
  readonly fake: F | undefined;
  close(): Promise<void>;
}

function notFound(): Response {
  return new Response("Not found\n", { status: 404 });
}

/** Starts a fake controller serving the controller dashboard (or uses `IRIS_DASHBOARD_URL`). */
export function startDashboardFixture(): Promise<DashboardFixture<FakeController>> {
  const external = Deno.env.get("IRIS_DASHBOARD_URL");
  if (external) {
    const close = () => Promise.resolve();
    return Promise.resolve({
      url: external.replace(/\/$/, ""),
      fake: undefined,
      close,
      [Symbol.asyncDispose]: close,
    });
  }
  const fake = new FakeController();
  const server = serveRpc((router) => router.service(ControllerService, fake.impl()), {
    fallback: (req) => controllerDashboard(req) ?? notFound(),
  });
  const close = () => server.shutdown();
  return Promise.resolve({ url: server.url, fake, close, [Symbol.asyncDispose]: close });
}

/** Starts a fake worker serving the worker dashboard. */
export function startWorkerFixture(): Promise<DashboardFixture<FakeWorker>> {
  const fake = new FakeWorker();
  const server = serveRpc((router) => router.service(WorkerService, fake.impl()), {
    fallback: (req) => workerDashboard(req) ?? notFound(),
  });
  const close = () => server.shutdown();
  return Promise.resolve({ url: server.url, fake, close, [Symbol.asyncDispose]: close });
}

/** Path of the Chromium binary (`IRIS_CHROMIUM` overrides). */
export const CHROMIUM_PATH: string = Deno.env.get("IRIS_CHROMIUM") ?? "/usr/bin/chromium";

/** True when `IRIS_SKIP_BROWSER=1`: browser tests are ignored instead of failing. */
export const SKIP_BROWSER: boolean = Deno.env.get("IRIS_SKIP_BROWSER") === "1";

/** Flags for an offline, sandbox-less headless Chromium that never calls Google hosts. */
export const CHROMIUM_ARGS: readonly string[] = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** A launched browser context with a fresh profile; dispose it to close and clean up. */
export interface Browser extends AsyncDisposable {
  readonly context: BrowserContext;
  close(): Promise<void>;
}

/** Launches Chromium, or throws with installation instructions when it is missing. */
export async function launchChromium(): Promise<Browser> {
  try {
    const info = await Deno.stat(CHROMIUM_PATH);
    if (!info.isFile) throw new Deno.errors.NotFound(CHROMIUM_PATH);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}; the dashboard browser test needs it. ` +
        `Install it with scripts/install_chromium.sh (apt-get install chromium), point IRIS_CHROMIUM ` +
        `at a Chromium binary, or set IRIS_SKIP_BROWSER=1 to skip browser tests`,
    );
  }
  const profile = await Deno.makeTempDir({ prefix: "iris-dashboard-chromium-" });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [...CHROMIUM_ARGS],
    viewport: { width: 1280, height: 800 },
    timezoneId: "UTC",
    locale: "en-US",
  });
  let closed: Promise<void> | undefined;
  const close = () =>
    closed ??= (async () => {
      await context.close();
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    })();
  return { context, close, [Symbol.asyncDispose]: close };
}

/** Where screenshots go: `$IRIS_ARTIFACT_DIR/dashboard/` or `./test-artifacts/dashboard/`. */
export function artifactDir(): string {
  const base = Deno.env.get("IRIS_ARTIFACT_DIR");
  if (base) return `${base.replace(/\/$/, "")}/dashboard`;
  return decodeURIComponent(new URL("../../test-artifacts/dashboard", import.meta.url).pathname);
}

/** A page that records dialogs and console/page errors and takes full-page screenshots. */
export interface WatchedPage {
  readonly page: Page;
  /** Messages of dialogs that opened (each is dismissed). */
  readonly dialogs: string[];
  /** Console errors and uncaught page errors. */
  readonly errors: string[];
  /** Saves `<artifactDir>/<prefix><name>.png` from the top of the page. */
  shot(name: string): Promise<void>;
}

/** Opens a page in `browser` that watches for dialogs and errors (hostile-content checks). */
export async function watchedPage(
  browser: Browser,
  options: { timeout: number; prefix?: string },
): Promise<WatchedPage> {
  const page = await browser.context.newPage();
  page.setDefaultTimeout(options.timeout);
  const dialogs: string[] = [];
  const errors: string[] = [];
  page.on("dialog", (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(e.message));
  const shots = artifactDir();
  await Deno.mkdir(shots, { recursive: true });
  const shot = async (name: string) => {
    await page.evaluate("scrollTo(0, 0)");
    await page.screenshot({ path: `${shots}/${options.prefix ?? ""}${name}.png`, fullPage: true });
  };
  return { page, dialogs, errors, shot };
}

/**
 * Asserts that no hostile string became markup or script: no injected img/script/b, no SVG but
 * the dashboard's own sparklines, and the `window.__pwned` marker never set.
 */
export async function assertNotPwned(page: Page): Promise<void> {
  const state = await page.evaluate(`({
    pwned: window.__pwned,
    imgs: document.querySelectorAll("img:not([src='/favicon.svg'])").length,
    scripts: document.querySelectorAll("body script").length,
    svgs: document.querySelectorAll("body svg:not(.sparkline)").length,
    bold: document.querySelectorAll("body b").length,
  })`);
  assertStrict.deepEqual(state, { pwned: undefined, imgs: 0, scripts: 0, svgs: 0, bold: 0 });
}
