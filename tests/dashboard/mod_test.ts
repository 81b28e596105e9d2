import assert from "node:assert/strict";
import { controllerDashboard, DASHBOARD_CSP, workerDashboard } from "../../src/dashboard/mod.ts";

const url = (path: string) => `http://127.0.0.1:1${path}`;

Deno.test("controllerDashboard() serves the page and assets with strict headers", async () => {
  const cases: Array<[string, RegExp]> = [
    ["/", /^text\/html/],
    ["/app.js", /^text\/javascript/],
    ["/app.css", /^text\/css/],
    ["/favicon.svg", /^image\/svg\+xml/],
  ];
  for (const [path, type] of cases) {
    const res = controllerDashboard(new Request(url(path)));
    assert.ok(res, path);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, type);
    assert.equal(res.headers.get("cache-control"), "no-cache");
    assert.equal(res.headers.get("content-security-policy"), DASHBOARD_CSP);
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    const body = await res.text();
    assert.ok(body.length > 0);
    assert.equal(res.headers.get("content-length"), String(new TextEncoder().encode(body).length));
  }
  for (
    const d of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self'"]
  ) {
    assert.ok(DASHBOARD_CSP.includes(d), d);
  }
  assert.ok(!DASHBOARD_CSP.includes("unsafe"));
});

Deno.test("controllerDashboard() leaves other paths and methods to the caller", () => {
  assert.equal(controllerDashboard(new Request(url("/nope"))), undefined);
  assert.equal(
    controllerDashboard(new Request(url("/iris.v1.ControllerService/ListJobs"))),
    undefined,
  );
  assert.equal(
    controllerDashboard(new Request(url("/"), { method: "POST", body: "x" })),
    undefined,
  );
});

Deno.test("controllerDashboard() answers HEAD and revalidation", async () => {
  const head = controllerDashboard(new Request(url("/app.js"), { method: "HEAD" }))!;
  assert.equal(head.status, 200);
  assert.equal(await head.text(), "");
  const etag = head.headers.get("etag")!;
  assert.match(etag, /^".+"$/);
  const cached = controllerDashboard(
    new Request(url("/app.js"), { headers: { "if-none-match": etag } }),
  )!;
  assert.equal(cached.status, 304);
  assert.equal(await cached.text(), "");
});

Deno.test("workerDashboard() serves its own bundle with the shared page and styles", async () => {
  const c = await controllerDashboard(new Request(url("/app.js")))!.text();
  const w = await workerDashboard(new Request(url("/app.js")))!.text();
  assert.notEqual(c, w);
  assert.equal(
    await workerDashboard(new Request(url("/app.css")))!.text(),
    await controllerDashboard(new Request(url("/app.css")))!.text(),
  );
  assert.equal(workerDashboard(new Request(url("/other"))), undefined);
});
