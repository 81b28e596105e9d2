/**
 * ListJobs over RPC: scope (roots, children), user and name filters, server-side sort and
 * paging with totals, per-user counts, and invalid_argument errors naming the bad field.
 * A real controller on loopback with no workers, so every job stays pending unless killed.
 * @module
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { smallestSorted } from "../../src/controller/job_query.ts";
import { startController } from "../../src/controller/server.ts";
import { controllerClient } from "../../src/rpc/client.ts";
import { type Clock, systemClock, type Timestamp } from "../../src/time.ts";
import { JobState } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ListJobsRequestSchema } from "../../src/rpc/gen/iris/v1/controller_pb.ts";

type Query = MessageInitShape<typeof ListJobsRequestSchema>;

Deno.test("ListJobs filters, sorts and pages on the server", async (t) => {
  // Real time, except that each submission is a second after the last: the age sort must not
  // depend on two jobs landing in the same millisecond.
  let offset = 0;
  const clock: Clock = { ...systemClock, now: () => (systemClock.now() + offset) as Timestamp };
  await using server = startController({ clock });
  const rpc = controllerClient(server.url);
  const launch = async (user: string, name: string, replicas = 1, parentJobId = "") => {
    offset += 1000;
    return (await rpc.launchJob({
      spec: {
        name,
        user,
        replicas,
        parentJobId,
        entrypoint: { kind: { case: "command", value: { argv: ["true"] } } },
      },
    })).jobId;
  };
  // Submission order: a, b, c (alice), then bob's two, then two children of /alice/b.
  await launch("alice", "a", 3);
  await launch("alice", "b", 1);
  await launch("alice", "c", 2);
  await launch("bob", "zeta", 1);
  await launch("bob", "alpha", 4);
  await launch("alice", "kid1", 1, "/alice/b");
  await launch("alice", "kid2", 1, "/alice/b");
  await rpc.terminateJob({ jobId: "/bob/zeta", reason: "test" });
  const ids = async (q: Query) => (await rpc.listJobs(q)).jobs.map((j) => j.jobId);

  await t.step("default: submission order, everything", async () => {
    const res = await rpc.listJobs({});
    assertEquals(res.jobs.map((j) => j.jobId), [
      "/alice/a",
      "/alice/b",
      "/alice/c",
      "/bob/zeta",
      "/bob/alpha",
      "/alice/b/kid1",
      "/alice/b/kid2",
    ]);
    assertEquals([res.totalCount, res.hasMore, res.users.length], [7, false, 0]);
  });

  await t.step("scope: roots only, or one job's children", async () => {
    assertEquals(await ids({ rootsOnly: true, sortBy: "name" }), [
      "/alice/a",
      "/alice/b",
      "/alice/c",
      "/bob/alpha",
      "/bob/zeta",
    ]);
    assertEquals(await ids({ parentJobId: "/alice/b", sortBy: "name", descending: true }), [
      "/alice/b/kid2",
      "/alice/b/kid1",
    ]);
  });

  await t.step("user, name and state filters", async () => {
    assertEquals(await ids({ user: "bob" }), ["/bob/zeta", "/bob/alpha"]);
    assertEquals(await ids({ nameContains: "KID" }), ["/alice/b/kid1", "/alice/b/kid2"]);
    assertEquals(await ids({ states: [JobState.KILLED] }), ["/bob/zeta"]);
    assertEquals(await ids({ prefix: "/alice/", user: "bob" }), []);
  });

  await t.step("sort by each key; ties by id, reversed with the rest when descending", async () => {
    assertEquals(await ids({ rootsOnly: true, sortBy: "tasks", descending: true }), [
      "/bob/alpha",
      "/alice/a",
      "/alice/c",
      "/bob/zeta",
      "/alice/b",
    ]);
    // Ascending state puts active jobs first; the killed one is last.
    const byState = await ids({ rootsOnly: true, sortBy: "state" });
    assertEquals(byState.at(-1), "/bob/zeta");
    // Ascending age: youngest first (the reverse of submission order among roots).
    const byAge = await ids({ rootsOnly: true, sortBy: "age" });
    assertEquals(byAge[0], "/bob/alpha");
    assertEquals(byAge.at(-1), "/alice/a");
    assertEquals((await ids({ sortBy: "user" })).slice(-2), ["/bob/alpha", "/bob/zeta"]);
    // Never-started jobs sort as duration -1, so the order is by id.
    assertEquals((await ids({ sortBy: "duration", rootsOnly: true }))[0], "/alice/a");
  });

  await t.step("paging: limit, offset, total and has_more", async () => {
    const q: Query = { sortBy: "name", limit: 3 };
    const p1 = await rpc.listJobs({ ...q, offset: 0 });
    const p2 = await rpc.listJobs({ ...q, offset: 3 });
    const p3 = await rpc.listJobs({ ...q, offset: 6 });
    assertEquals([p1.jobs.length, p2.jobs.length, p3.jobs.length], [3, 3, 1]);
    assertEquals([p1.hasMore, p2.hasMore, p3.hasMore], [true, true, false]);
    assertEquals(p1.totalCount, 7);
    const all = [...p1.jobs, ...p2.jobs, ...p3.jobs].map((j) => j.jobId);
    assertEquals(all, [...all].sort());
    assertEquals((await rpc.listJobs({ offset: 50 })).jobs, []);
    // In submission order (no sort key) a page keeps only its jobs but counts every match.
    const order = (await rpc.listJobs({})).jobs.map((j) => j.jobId);
    const middle = await rpc.listJobs({ limit: 3, offset: 2 });
    assertEquals(middle.jobs.map((j) => j.jobId), order.slice(2, 5));
    assertEquals([middle.totalCount, middle.hasMore], [7, true]);
    const last = await rpc.listJobs({ limit: 3, offset: 6 });
    assertEquals([last.jobs.map((j) => j.jobId), last.hasMore], [order.slice(6), false]);
    const back = await rpc.listJobs({ limit: 3, offset: 1, descending: true });
    assertEquals(back.jobs.map((j) => j.jobId), [...order].reverse().slice(1, 4));
  });

  await t.step("per-user counts ignore the user and state filters", async () => {
    const res = await rpc.listJobs({ includeUserCounts: true, user: "bob", limit: 1 });
    assertEquals(
      res.users.map((u) => [u.user, u.total, u.stateCounts]),
      [["alice", 5, { pending: 5 }], ["bob", 2, { pending: 1, killed: 1 }]],
    );
    assertEquals(res.totalCount, 2);
    const scoped = await rpc.listJobs({ includeUserCounts: true, prefix: "/bob/" });
    assertEquals(scoped.users.map((u) => u.user), ["bob"]);
  });

  await t.step(
    "bad fields are invalid_argument naming the field; unknown parent is not_found",
    async () => {
      const cases: [Query, string][] = [
        [{ sortBy: "size" }, "sort_by"],
        [{ sortBy: "Name" }, "sort_by"],
        [{ limit: -1 }, "limit"],
        [{ limit: 5001 }, "limit"],
        [{ offset: -5 }, "offset"],
        [{ states: [JobState.UNSPECIFIED] }, "states"],
        [{ states: [99 as JobState] }, "states"],
        [{ rootsOnly: true, parentJobId: "/alice/b" }, "roots_only"],
      ];
      for (const [q, field] of cases) {
        const err = await rpc.listJobs(q).then(() => undefined, (e) => e);
        assert(err instanceof ConnectError, `${JSON.stringify(q)} must fail`);
        assertEquals(err.code, Code.InvalidArgument, err.message);
        assert(err.rawMessage.startsWith(`${field}:`), err.rawMessage);
      }
      const missing = await rpc.listJobs({ parentJobId: "/nobody/x" }).then(
        () => undefined,
        (e) => e,
      );
      assert(missing instanceof ConnectError);
      assertEquals(missing.code, Code.NotFound);
      // State is intact after the rejected calls.
      assertEquals((await rpc.listJobs({})).totalCount, 7);
    },
  );
});

Deno.test("smallestSorted() gives the first k of a full sort, ties and duplicates included", () => {
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const cmp = (a: [number, string], b: [number, string]) =>
    a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0);
  for (const n of [0, 1, 2, 10, 1000, 5000]) {
    for (const distinct of [1, 3, 1000]) {
      const items = Array.from(
        { length: n },
        (_, i) => [Math.floor(rand() * distinct), `id-${i % 997}`] as [number, string],
      );
      const expected = [...items].sort(cmp);
      for (const k of [0, 1, 7, 50, Math.floor(n / 3), n, n + 5]) {
        assertEquals(smallestSorted([...items], k, cmp), expected.slice(0, Math.max(0, k)));
      }
    }
  }
});
