/** LogStore queries (cursor, since, substring, level, tail) and best-effort level parsing. */
import { create } from "@bufbuild/protobuf";
import assert from "node:assert/strict";
import { LogLineSchema } from "../../src/rpc/mod.ts";
import { LogStore, parseLogLevel, taskPath } from "../../src/controller/logs.ts";
import { minutes } from "../../src/time.ts";
import { InvalidArgumentError } from "../../src/errors.ts";
import { withTempDir } from "../_helpers/temp_dir.ts";

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

Deno.test("LogStore.query() filters by level, substring and time, and tails", async () => {
  const store = new LogStore();
  store.append("/a/j/0", [
    line("/a/j/0", "INFO starting", 1000),
    line("/a/j/0", "WARNING slow step", 2000),
    line("/a/j/0", "ERROR step failed", 3000, "stderr"),
    line("/a/j/0", "plain progress", 4000),
  ]);
  store.append("/a/j/1", [line("/a/j/1", "ERROR other task", 3500)]);
  const texts = async (q: Parameters<LogStore["query"]>[1]) =>
    (await store.query(["/a/j/0", "/a/j/1"], q)).lines.map((l) => l.text);
  assert.deepEqual(await texts({ minLevel: "warning" }), [
    "WARNING slow step",
    "ERROR step failed",
    "ERROR other task",
  ]);
  assert.deepEqual(await texts({ minLevel: "ERROR" }), ["ERROR step failed", "ERROR other task"]);
  assert.deepEqual(await texts({ minLevel: "critical" }), []);
  assert.deepEqual(await texts({ sinceMs: 3000, substring: "step" }), ["ERROR step failed"]);
  assert.deepEqual(await texts({ maxLines: 2 }), ["INFO starting", "WARNING slow step"]);
  assert.deepEqual(await texts({ maxLines: 2, tail: true }), [
    "plain progress",
    "ERROR other task",
  ]);
  // Levels are stamped on the stored lines for clients.
  assert.deepEqual((await store.query(["/a/j/0"])).lines.map((l) => l.level), [
    "info",
    "warning",
    "error",
    "info",
  ]);
  await assert.rejects(
    () => store.query(["/a/j/0"], { minLevel: "loud" }),
    (e: unknown) =>
      e instanceof InvalidArgumentError && /min_level: must be one of/.test(e.message),
  );
});

Deno.test("LogStore.query() cursors resume after the last line returned, also after a tail", async () => {
  const store = new LogStore();
  store.append("/a/j/0", [1, 2, 3, 4, 5].map((i) => line("/a/j/0", `line ${i}`, i)));
  const first = await store.query(["/a/j/0"], { maxLines: 2 });
  assert.deepEqual(first.lines.map((l) => l.text), ["line 1", "line 2"]);
  const rest = await store.query(["/a/j/0"], { cursor: first.nextCursor });
  assert.deepEqual(rest.lines.map((l) => l.text), ["line 3", "line 4", "line 5"]);
  const tail = await store.query(["/a/j/0"], { maxLines: 1, tail: true });
  assert.deepEqual(tail.lines.map((l) => l.text), ["line 5"]);
  store.append("/a/j/0", [line("/a/j/0", "line 6", 6)]);
  assert.deepEqual(
    (await store.query(["/a/j/0"], { cursor: tail.nextCursor })).lines.map((l) => l.text),
    ["line 6"],
  );
});

/** `n` lines "<prefix> <i>" for attempt `attemptId`, stamped `i`. */
function lines(taskId: string, prefix: string, n: number, attemptId = 0, from = 0) {
  return Array.from(
    { length: n },
    (_, i) =>
      create(LogLineSchema, {
        taskId,
        attemptId,
        stream: "stdout",
        text: `${prefix} ${from + i}`,
        timestampMs: from + i,
      }),
  );
}

function withDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  return withTempDir("iris-logs-test-", fn);
}

Deno.test("LogStore without a dir keeps at most memoryBytes, evicting least recently written tasks first", async () => {
  const store = new LogStore({ memoryBytes: 1024 * 1024, taskMemoryBytes: 256 * 1024 });
  // 40 tasks × 2,000 lines of ~200 bytes each = ~16 MiB offered.
  for (let t = 0; t < 40; t++) {
    for (let b = 0; b < 4; b++) store.append(`/u/j/${t}`, lines(`/u/j/${t}`, "x", 500, 0, b * 500));
  }
  const { memoryBytes, evictedLines } = store.stats;
  assert.ok(memoryBytes <= 1024 * 1024, `memory ${memoryBytes}`);
  assert.ok(evictedLines > 70_000, `evicted ${evictedLines}`);
  // The most recent task keeps its newest lines; the first ones are gone (no disk).
  const last = await store.query(["/u/j/39"], { tail: true, maxLines: 1 });
  assert.deepEqual(last.lines.map((l) => l.text), ["x 1999"]);
  assert.deepEqual((await store.query(["/u/j/0"])).lines, []);
  // One task alone never holds more than taskMemoryBytes.
  const one = new LogStore({ memoryBytes: 1024 * 1024, taskMemoryBytes: 64 * 1024 });
  one.append("/u/k/0", lines("/u/k/0", "y", 10_000));
  assert.ok(one.stats.memoryBytes <= 64 * 1024);
  assert.throws(() => new LogStore({ memoryBytes: 0 }), /logs.memoryBytes: must be > 0/);
});

Deno.test("LogStore with a dir serves evicted lines from the attempt files, in order, with cursors", async () => {
  await withDir(async (dir) => {
    const store = new LogStore({ dir, memoryBytes: 256 * 1024, taskMemoryBytes: 64 * 1024 });
    try {
      for (let b = 0; b < 10; b++) store.append("/u/j/0", lines("/u/j/0", "a", 1000, 0, b * 1000));
      store.append("/u/j/0", lines("/u/j/0", "b", 500, 1));
      assert.ok(store.stats.memoryBytes <= 64 * 1024);
      assert.ok(store.stats.evictedLines > 9000);
      await store.flushed();
      const files = (await Array.fromAsync(Deno.readDir(`${dir}/u/j`))).map((e) => e.name)
        .sort();
      assert.deepEqual(files, ["0@0.log", "0@1.log"]);
      // Everything, in order, across disk and memory.
      const all = await store.query(["/u/j/0"], { maxLines: 20_000 });
      assert.equal(all.lines.length, 10_500);
      assert.equal(all.lines[0]!.text, "a 0");
      assert.equal(all.lines[9999]!.text, "a 9999");
      assert.equal(all.lines[10_499]!.text, "b 499");
      // Paging with cursors from disk into memory returns each line once.
      const seen: string[] = [];
      let cursor = 0;
      for (let i = 0; i < 20; i++) {
        const page = await store.query(["/u/j/0"], { cursor, maxLines: 700 });
        seen.push(...page.lines.map((l) => l.text));
        cursor = page.nextCursor;
        if (page.lines.length === 0) break;
      }
      assert.deepEqual(seen, all.lines.map((l) => l.text));
      // Filters and tail apply to disk lines too.
      const one = await store.query(["/u/j/0"], { substring: "a 5000", attemptId: 0 });
      assert.deepEqual(one.lines.map((l) => l.text), ["a 5000"]);
      const tail = await store.query(["/u/j/0"], { attemptId: 0, tail: true, maxLines: 2 });
      assert.deepEqual(tail.lines.map((l) => l.text), ["a 9998", "a 9999"]);
    } finally {
      await store.close();
    }
  });
});

Deno.test("LogStore with a dir serves lines written before a restart, and numbers new ones after them", async () => {
  await withDir(async (dir) => {
    const before = new LogStore({ dir });
    before.append("/u/j/0", lines("/u/j/0", "old", 3));
    const cursor = (await before.query(["/u/j/0"], { maxLines: 2 })).nextCursor;
    await before.close();
    const after = new LogStore({ dir });
    try {
      after.append("/u/j/0", lines("/u/j/0", "new", 2, 1));
      const all = await after.query(["/u/j/0"]);
      assert.deepEqual(all.lines.map((l) => l.text), ["old 0", "old 1", "old 2", "new 0", "new 1"]);
      assert.deepEqual(all.lines.map((l) => [l.attemptId, l.level]), [
        [0, "info"],
        [0, "info"],
        [0, "info"],
        [1, "info"],
        [1, "info"],
      ]);
      // A follower's cursor from before the restart continues where it was.
      const rest = await after.query(["/u/j/0"], { cursor });
      assert.deepEqual(rest.lines.map((l) => l.text), ["old 2", "new 0", "new 1"]);
    } finally {
      await after.close();
    }
  });
});

Deno.test("LogStore retention deletes files past their age, then the oldest past the size limit", async () => {
  await withDir(async (dir) => {
    // The files are written by one store and aged by hand before a second store opens the dir,
    // so the second store's own first prune sees the same files as the explicit one.
    const writer = new LogStore({ dir, diskBytes: 10_000_000, pruneInterval: minutes(60) });
    try {
      for (let t = 0; t < 4; t++) writer.append(`/u/j/${t}`, lines(`/u/j/${t}`, "z", 400));
    } finally {
      await writer.close();
    }
    const old = new Date(Date.now() - 40 * 24 * 3600_000);
    await Deno.utime(`${dir}/u/j/0@0.log`, old, old);
    const newer = new Date(Date.now() - 3600_000);
    await Deno.utime(`${dir}/u/j/1@0.log`, newer, newer);
    const size = (await Deno.stat(`${dir}/u/j/2@0.log`)).size;
    assert.ok(size > 12_500 && size < 25_000, `one file is ${size} bytes`);
    const store = new LogStore({ dir, diskBytes: 50_000, pruneInterval: minutes(60) });
    try {
      // j/0 is past 30 days; j/1 is the least recently written of the rest (3 files > 50,000 B).
      // The store's first prune runs at start; this one waits for it, and deletes what is left.
      const removed = await store.prune();
      assert.ok(removed <= 2, `removed ${removed}`);
      const left = [0, 1, 2, 3].filter((t) => {
        try {
          Deno.statSync(`${dir}/u/j/${t}@0.log`);
          return true;
        } catch {
          return false;
        }
      });
      assert.deepEqual(left, [2, 3]);
      // A task whose file was pruned starts a new one.
      store.append("/u/j/1", lines("/u/j/1", "again", 1));
      await store.flushed();
      assert.ok((await Deno.stat(`${dir}/u/j/1@0.log`)).size > 0);
    } finally {
      await store.close();
    }
  });
});

Deno.test("LogStore stops writing an attempt's file at its limit, with a marker", async () => {
  await withDir(async (dir) => {
    const store = new LogStore({ dir, attemptFileBytes: 10_000 });
    try {
      for (let b = 0; b < 10; b++) store.append("/u/j/0", lines("/u/j/0", "w", 100, 0, b * 100));
      await store.flushed();
      const text = await Deno.readTextFile(`${dir}/u/j/0@0.log`);
      assert.ok(text.length <= 10_000 + 300, `${text.length}`);
      assert.match(
        text,
        /later lines of this attempt are not kept on disk \(file limit 10000 B\)/,
      );
      // Memory still has every line.
      assert.equal((await store.query(["/u/j/0"])).lines.length, 1000);
    } finally {
      await store.close();
    }
  });
});

Deno.test("taskPath() keeps task ids inside the logs dir", () => {
  assert.equal(taskPath("/alice/train/0"), "alice/train/0");
  assert.equal(taskPath("/alice/../x/0"), "alice/%2E%2E/x/0");
  assert.equal(taskPath("/a b/c%/0"), "a%20b/c%25/0");
});

Deno.test("LogStore.query() answers at most maxChars of text, says there is more, and resumes", async () => {
  const store = new LogStore();
  store.append("/u/j/0", lines("/u/j/0", "x".repeat(95), 100)); // 100-character lines
  const first = await store.query(["/u/j/0"], { maxChars: 1000 });
  assert.equal(first.lines.length, 10);
  assert.equal(first.more, true);
  const rest = await store.query(["/u/j/0"], { cursor: first.nextCursor, maxChars: 100_000 });
  assert.equal(rest.lines.length, 90);
  assert.equal(rest.more, false);
  assert.equal(rest.lines[0]!.text, `${"x".repeat(95)} 10`);
  // A single line larger than the limit still comes, alone.
  assert.equal((await store.query(["/u/j/0"], { maxChars: 10 })).lines.length, 1);
  // A tail keeps the newest lines that fit.
  const tail = await store.query(["/u/j/0"], { tail: true, maxLines: 50, maxChars: 1000 });
  assert.deepEqual(tail.lines.map((l) => l.text.slice(-2)), [
    "90",
    "91",
    "92",
    "93",
    "94",
    "95",
    "96",
    "97",
    "98",
    "99",
  ]);
  assert.equal(tail.more, false);
  // maxLines cuts count as "more" too.
  assert.equal((await store.query(["/u/j/0"], { maxLines: 99 })).more, true);
  assert.equal((await store.query(["/u/j/0"], { maxLines: 100 })).more, false);
});

Deno.test("LogStore writes new attempts' files under directories it made, found, or lost meanwhile", async () => {
  await withDir(async (dir) => {
    const store = new LogStore({ dir });
    try {
      store.append("/u/a/0", lines("/u/a/0", "first", 2));
      store.append("/u/b/0", lines("/u/b/0", "next job", 2));
      store.append("/u/b/1", lines("/u/b/1", "next task", 2));
      store.append("/u/b/1", lines("/u/b/1", "retry", 2, 1));
      await store.flushed();
      // The job's directory goes away behind the store's back: the next attempt makes it again.
      await Deno.remove(`${dir}/u/a`, { recursive: true });
      store.append("/u/a/0", lines("/u/a/0", "again", 2, 1));
      await store.flushed();
      const read = (path: string) => Deno.readTextFileSync(`${dir}/${path}`).trim().split("\n");
      assert.equal(read("u/b/0@0.log").length, 2);
      assert.equal(read("u/b/1@0.log").length, 2);
      assert.equal(read("u/b/1@1.log").length, 2);
      assert.equal(read("u/a/0@1.log").length, 2);
      // A restarted store appends to a file that is already there.
      const again = new LogStore({ dir });
      try {
        again.append("/u/b/0", lines("/u/b/0", "after restart", 3));
        await again.flushed();
        assert.equal(read("u/b/0@0.log").length, 5);
      } finally {
        await again.close();
      }
    } finally {
      await store.close();
    }
  });
});

Deno.test("LogStore writes files after append returns, and a query waits for lines still queued", async () => {
  await withDir(async (dir) => {
    const store = new LogStore({ dir, memoryBytes: 64 * 1024, taskMemoryBytes: 16 * 1024 });
    try {
      store.append("/u/q/0", lines("/u/q/0", "q", 2000));
      // Nothing was made on the caller's path: the attempt's file comes later.
      assert.throws(() => Deno.statSync(`${dir}/u/q/0@0.log`), Deno.errors.NotFound);
      assert.ok(store.stats.evictedLines > 1000);
      // Evicted lines not yet on disk are still served, in order.
      const all = await store.query(["/u/q/0"], { maxLines: 5000 });
      assert.equal(all.lines.length, 2000);
      assert.equal(all.lines[0]!.text, "q 0");
      assert.equal(all.lines[1999]!.text, "q 1999");
    } finally {
      await store.close();
    }
  });
});

Deno.test("LogStore reads attempt files of the layout before `<task>@<attempt>.log` too", async () => {
  await withDir(async (dir) => {
    const old = (seq: number, text: string) =>
      JSON.stringify({ s: seq, t: 1, o: "stdout", l: "info", x: text }) + "\n";
    await Deno.mkdir(`${dir}/u/old/0`, { recursive: true });
    await Deno.writeTextFile(`${dir}/u/old/0/0.log`, old(1, "before") + old(2, "upgrade"));
    await Deno.writeTextFile(`${dir}/u/old/0/1.log`, old(3, "second attempt"));
    await Deno.writeTextFile(`${dir}/seq`, "10\n");
    const store = new LogStore({ dir });
    try {
      // The same attempt goes on in a file of the new layout.
      store.append("/u/old/0", lines("/u/old/0", "after", 1, 1));
      await store.flushed();
      assert.ok((await Deno.stat(`${dir}/u/old/0@1.log`)).isFile);
      const more = new LogStore({ dir });
      try {
        const all = await more.query(["/u/old/0"]);
        assert.deepEqual(all.lines.map((l) => `${l.attemptId} ${l.text}`), [
          "0 before",
          "0 upgrade",
          "1 second attempt",
          "1 after 0",
        ]);
      } finally {
        await more.close();
      }
    } finally {
      await store.close();
    }
  });
});
