import assert from "node:assert/strict";
import { buildJobTree, flattenTree, parentIds, sortTree } from "../../src/dashboard/app/tree.ts";

const job = (jobId: string, parentJobId = "", age = 0) => ({ jobId, parentJobId, age });

Deno.test("buildJobTree() nests children under parents by parent id and by path", () => {
  const jobs = [
    job("/alice/train"),
    job("/alice/train/eval", "/alice/train"),
    job("/alice/train/eval/shard-0"), // No parent id: found by path.
    job("/bob/sweep"),
  ];
  const tree = buildJobTree(jobs);
  assert.deepEqual(tree.map((n) => n.job.jobId), ["/alice/train", "/bob/sweep"]);
  assert.deepEqual(tree[0]!.children.map((n) => n.job.jobId), ["/alice/train/eval"]);
  assert.deepEqual(tree[0]!.children[0]!.children.map((n) => n.job.jobId), [
    "/alice/train/eval/shard-0",
  ]);
});

Deno.test("buildJobTree() makes jobs whose parent is missing roots (orphans)", () => {
  const tree = buildJobTree([job("/alice/train/eval", "/alice/train"), job("/alice/other")]);
  assert.deepEqual(tree.map((n) => n.job.jobId), ["/alice/train/eval", "/alice/other"]);
  const rows = flattenTree(tree, new Set());
  assert.equal(rows[0]!.orphan, true);
  assert.equal(rows[1]!.orphan, false);
});

Deno.test("buildJobTree() skips the nearest missing ancestor and survives cycles and duplicates", () => {
  const tree = buildJobTree([job("/a"), job("/a/b/c"), job("/a", "")]);
  assert.deepEqual(tree.map((n) => n.job.jobId), ["/a"]);
  assert.deepEqual(tree[0]!.children.map((n) => n.job.jobId), ["/a/b/c"]);
  // Inconsistent parent ids pointing at each other must not loop or drop jobs.
  const cyc = buildJobTree([job("/x/p", "/x/q"), job("/x/q", "/x/p")]);
  const rows = flattenTree(cyc, new Set());
  assert.deepEqual(rows.map((r) => r.job.jobId).sort(), ["/x/p", "/x/q"]);
});

Deno.test("flattenTree() indents, and hides children of collapsed parents", () => {
  const tree = buildJobTree([job("/a"), job("/a/b"), job("/a/b/c"), job("/d")]);
  assert.deepEqual(
    flattenTree(tree, new Set()).map((r) => [r.job.jobId, r.depth, r.childCount, r.expanded]),
    [["/a", 0, 1, true], ["/a/b", 1, 1, true], ["/a/b/c", 2, 0, true], ["/d", 0, 0, true]],
  );
  assert.deepEqual(flattenTree(tree, new Set(["/a/b"])).map((r) => r.job.jobId), [
    "/a",
    "/a/b",
    "/d",
  ]);
  assert.deepEqual(flattenTree(tree, new Set(["/a"])).map((r) => r.job.jobId), ["/a", "/d"]);
  assert.deepEqual(parentIds(tree), ["/a", "/a/b"]);
});

Deno.test("sortTree() sorts siblings at each level and keeps children under parents", () => {
  const tree = buildJobTree([
    job("/a", "", 3),
    job("/a/y", "", 1),
    job("/a/x", "", 2),
    job("/b", "", 9),
  ]);
  const sorted = sortTree(tree, (j) => j.age, "desc");
  assert.deepEqual(flattenTree(sorted, new Set()).map((r) => r.job.jobId), [
    "/b",
    "/a",
    "/a/x",
    "/a/y",
  ]);
  const byName = sortTree(tree, (j) => j.jobId, "asc");
  assert.deepEqual(flattenTree(byName, new Set()).map((r) => r.job.jobId), [
    "/a",
    "/a/x",
    "/a/y",
    "/b",
  ]);
});
