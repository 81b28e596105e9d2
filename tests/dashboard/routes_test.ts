import assert from "node:assert/strict";
import {
  jobHref,
  parseRoute,
  parseWorkerRoute,
  routeHash,
  workerHref,
  workerRouteHash,
} from "../../src/dashboard/app/routes.ts";

Deno.test("parseRoute() maps hashes to pages, defaulting to jobs", () => {
  assert.deepEqual(parseRoute(""), { page: "jobs" });
  assert.deepEqual(parseRoute("#/"), { page: "jobs" });
  assert.deepEqual(parseRoute("#/jobs"), { page: "jobs" });
  assert.deepEqual(parseRoute("#/nope"), { page: "jobs" });
  assert.deepEqual(parseRoute("#/fleet"), { page: "fleet" });
  assert.deepEqual(parseRoute("#/autoscaler"), { page: "autoscaler" });
  assert.deepEqual(parseRoute("#/endpoints"), { page: "endpoints" });
  assert.deepEqual(parseRoute("#/status"), { page: "status" });
  assert.deepEqual(parseRoute("#/transactions"), { page: "transactions" });
  assert.deepEqual(parseRoute("#/job/"), { page: "jobs" });
  assert.deepEqual(parseRoute("#/worker/"), { page: "fleet" });
  assert.deepEqual(parseRoute("#/worker/tpu-a-0"), { page: "worker", id: "tpu-a-0" });
  assert.deepEqual(parseRoute("#/job/%2Fa%2Fb%"), { page: "job", id: "%2Fa%2Fb%" });
});

Deno.test("routeHash() round-trips ids with slashes and markup", () => {
  for (const id of ["/alice/train", "/mallory/<img src=x onerror=alert(1)>", "/a b/c#d?e%f"]) {
    const hash = jobHref(id);
    assert.ok(!hash.slice(2).includes("/", 4), hash); // One path segment after "#/job/".
    assert.deepEqual(parseRoute(hash), { page: "job", id });
  }
  assert.deepEqual(parseRoute(workerHref("w/1")), { page: "worker", id: "w/1" });
  assert.equal(routeHash({ page: "fleet" }), "#/fleet");
  assert.equal(jobHref("/a/b"), "#/job/%2Fa%2Fb");
});

Deno.test("the jobs route carries the list's view as a query, hostile values included", () => {
  const query = { user: "<b>eve</b>&x=1", state: "worker failed", sort: "name", dir: "desc" };
  const hash = routeHash({ page: "jobs", query });
  assert.equal(
    hash,
    "#/jobs?user=%3Cb%3Eeve%3C%2Fb%3E%26x%3D1&state=worker+failed&sort=name&dir=desc",
  );
  assert.deepEqual(parseRoute(hash), { page: "jobs", query });
  assert.equal(routeHash({ page: "jobs", query: { user: "" } }), "#/jobs");
  assert.deepEqual(parseRoute("#/jobs?"), { page: "jobs" });
  // A "?" inside an id is encoded, so it never starts a query.
  assert.deepEqual(parseRoute(jobHref("/a/b?c")), { page: "job", id: "/a/b?c" });
});

Deno.test("parseWorkerRoute() handles the worker dashboard routes", () => {
  assert.deepEqual(parseWorkerRoute(""), { page: "tasks" });
  assert.deepEqual(parseWorkerRoute("#/task/"), { page: "tasks" });
  const hash = workerRouteHash({ page: "task", id: "/a/b/0" });
  assert.equal(hash, "#/task/%2Fa%2Fb%2F0");
  assert.deepEqual(parseWorkerRoute(hash), { page: "task", id: "/a/b/0" });
});
