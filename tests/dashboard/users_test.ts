/**
 * The dashboard's Users page (#24): its route, and how job counts and budgets combine per user.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { parseRoute, routeHash } from "../../src/dashboard/app/routes.ts";
import { userRows } from "../../src/dashboard/app/users.ts";
import {
  UserBudgetInfoSchema,
  UserJobCountsSchema,
} from "../../src/rpc/gen/iris/v1/controller_pb.ts";

Deno.test("the Users page has a route of its own", () => {
  assert.deepEqual(parseRoute("#/users"), { page: "users" });
  assert.equal(routeHash({ page: "users" }), "#/users");
});

Deno.test("userRows() joins job counts and budgets by user, sorted", () => {
  const rows = userRows(
    [
      create(UserJobCountsSchema, { user: "bob", total: 2, stateCounts: { running: 2 } }),
      create(UserJobCountsSchema, { user: "alice", total: 1 }),
    ],
    [
      create(UserBudgetInfoSchema, { user: "alice", maxCpuMillicores: 8000, source: "set" }),
      create(UserBudgetInfoSchema, { user: "*", maxTasks: 50, source: "config" }),
    ],
  );
  assert.deepEqual(
    rows.map((r) => [r.user, r.jobs?.total ?? 0, r.budget?.source ?? ""]),
    [["*", 0, "config"], ["alice", 1, "set"], ["bob", 2, ""]],
  );
});
