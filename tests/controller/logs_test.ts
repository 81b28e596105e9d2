/** LogStore queries (cursor, since, substring, level, tail) and best-effort level parsing. */
import { create } from "@bufbuild/protobuf";
import assert from "node:assert/strict";
import { LogLineSchema } from "../../src/rpc/mod.ts";
import { LogStore, parseLogLevel } from "../../src/controller/logs.ts";
import { InvalidArgumentError } from "../../src/errors.ts";

function line(taskId: string, text: string, timestampMs: number, stream = "stdout") {
  return create(LogLineSchema, { taskId, text, timestampMs, stream, attemptId: 0 });
}

Deno.test("parseLogLevel() finds the level in common formats and defaults to info", () => {
  const cases: [string, string][] = [
    ["2026-11-23 10:00:00,123 - train - WARNING - loss is nan", "warning"],
    ["[ERROR] cannot open file", "error"],
    ["DEBUG step 3", "debug"],
    ["WARNING:root:disk almost full", "warning"],
    ['{"level": "error", "msg": "x"}', "error"],
    ["ts=1 level=warn msg=slow", "warning"],
    ["error: something broke", "error"],
    ["[warn] retrying", "warning"],
    ["FATAL out of memory", "critical"],
    ["CRITICAL: gone", "critical"],
    ["an error occurred in the middle of a sentence", "info"],
    ["INFORMATION is not a level", "info"],
    ["Hello from Iris!", "info"],
    ["", "info"],
  ];
  for (const [text, level] of cases) assert.equal(parseLogLevel(text), level, text);
});

Deno.test("LogStore.query() filters by level, substring and time, and tails", () => {
  const store = new LogStore();
  store.append("/a/j/0", [
    line("/a/j/0", "INFO starting", 1000),
    line("/a/j/0", "WARNING slow step", 2000),
    line("/a/j/0", "ERROR step failed", 3000, "stderr"),
    line("/a/j/0", "plain progress", 4000),
  ]);
  store.append("/a/j/1", [line("/a/j/1", "ERROR other task", 3500)]);
  const texts = (q: Parameters<LogStore["query"]>[1]) =>
    store.query(["/a/j/0", "/a/j/1"], q).lines.map((l) => l.text);
  assert.deepEqual(texts({ minLevel: "warning" }), [
    "WARNING slow step",
    "ERROR step failed",
    "ERROR other task",
  ]);
  assert.deepEqual(texts({ minLevel: "ERROR" }), ["ERROR step failed", "ERROR other task"]);
  assert.deepEqual(texts({ minLevel: "critical" }), []);
  assert.deepEqual(texts({ sinceMs: 3000, substring: "step" }), ["ERROR step failed"]);
  assert.deepEqual(texts({ maxLines: 2 }), ["INFO starting", "WARNING slow step"]);
  assert.deepEqual(texts({ maxLines: 2, tail: true }), ["plain progress", "ERROR other task"]);
  // Levels are stamped on the stored lines for clients.
  assert.deepEqual(store.query(["/a/j/0"]).lines.map((l) => l.level), [
    "info",
    "warning",
    "error",
    "info",
  ]);
  assert.throws(
    () => store.query(["/a/j/0"], { minLevel: "loud" }),
    (e: unknown) =>
      e instanceof InvalidArgumentError && /min_level: must be one of/.test(e.message),
  );
});

Deno.test("LogStore.query() cursors resume after the last line returned, also after a tail", () => {
  const store = new LogStore();
  store.append("/a/j/0", [1, 2, 3, 4, 5].map((i) => line("/a/j/0", `line ${i}`, i)));
  const first = store.query(["/a/j/0"], { maxLines: 2 });
  assert.deepEqual(first.lines.map((l) => l.text), ["line 1", "line 2"]);
  const rest = store.query(["/a/j/0"], { cursor: first.nextCursor });
  assert.deepEqual(rest.lines.map((l) => l.text), ["line 3", "line 4", "line 5"]);
  const tail = store.query(["/a/j/0"], { maxLines: 1, tail: true });
  assert.deepEqual(tail.lines.map((l) => l.text), ["line 5"]);
  store.append("/a/j/0", [line("/a/j/0", "line 6", 6)]);
  assert.deepEqual(
    store.query(["/a/j/0"], { cursor: tail.nextCursor }).lines.map((l) => l.text),
    ["line 6"],
  );
});
