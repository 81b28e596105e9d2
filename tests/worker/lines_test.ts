/**
 * Task output plumbing: LineSplitter (bytes, truncation), decodeLine, LogBucket,
 * WorkerLogBudget, BoundedQueue and RingBuffer.
 * @module
 */
import assert from "node:assert/strict";
import {
  BoundedQueue,
  decodeLine,
  droppedMarker,
  LineSplitter,
  LogBucket,
  resolveLogLimits,
  RingBuffer,
  WorkerLogBudget,
} from "../../src/worker/lines.ts";

const enc = new TextEncoder();

function split(chunks: string[], max = 1024): string[] {
  const splitter = new LineSplitter(max);
  const out: string[] = [];
  const emit = (line: Uint8Array, cut: number) =>
    out.push(decodeLine(new TextDecoder(), line, cut));
  for (const c of chunks) splitter.push(enc.encode(c), emit);
  splitter.end(emit);
  return out;
}

Deno.test("LineSplitter joins lines across chunks and strips \\n and \\r\\n", () => {
  assert.deepEqual(split(["a", "b\nc", "\r\n", "\n", "d\ne"]), ["ab", "c", "", "d", "e"]);
  assert.deepEqual(split(["x\r", "\ny"]), ["x", "y"]);
});

Deno.test("LineSplitter emits a partial last line at end of stream and nothing for a trailing newline", () => {
  assert.deepEqual(split(["x\ny"]), ["x", "y"]);
  assert.deepEqual(split(["x\n"]), ["x"]);
  assert.deepEqual(split([]), []);
});

Deno.test("LineSplitter truncates lines longer than the limit with a marker, also across chunks", () => {
  assert.deepEqual(split(["abcdefg\nhi"], 3), ["abc … [4 bytes truncated]", "hi"]);
  assert.deepEqual(split(["ab", "cd", "ef", "g\n", "z"], 3), ["abc … [4 bytes truncated]", "z"]);
  // A 64 KiB line in 1000-byte chunks keeps 100 bytes.
  const big = "x".repeat(64 * 1024);
  const chunks = [];
  for (let i = 0; i < big.length; i += 1000) chunks.push(big.slice(i, i + 1000));
  chunks.push("\nnext\n");
  assert.deepEqual(split(chunks, 100), [
    `${"x".repeat(100)} … [${(64 * 1024 - 100).toLocaleString("en-US")} bytes truncated]`,
    "next",
  ]);
  assert.throws(() => new LineSplitter(0), RangeError);
});

Deno.test("decodeLine() does not leave half a character where a line was cut", () => {
  // "é" is 2 bytes, "€" 3: a cut after 4 bytes of "aé€" splits the euro sign.
  assert.deepEqual(split(["aé€b\n"], 4), ["aé … [4 bytes truncated]"]);
  assert.deepEqual(split(["aé€b\n"], 6), ["aé€ … [1 bytes truncated]"]);
});

Deno.test("droppedMarker() reads like '… 12,345 lines dropped (why)'", () => {
  assert.equal(droppedMarker(12345, "rate"), "… 12,345 lines dropped (rate)");
  assert.equal(droppedMarker(1, "x"), "… 1 line dropped (x)");
});

Deno.test("LogBucket lets a burst through, then the rate; refills with time", () => {
  const b = new LogBucket(10, 1000, 5, 10_000, 0);
  let passed = 0;
  for (let i = 0; i < 100; i++) {
    if (b.fits(10, 0)) {
      b.take(10);
      passed++;
    }
  }
  assert.equal(passed, 5);
  assert.equal(b.fits(10, 50), false); // 0.5 line refilled
  assert.equal(b.fits(10, 100), true); // 1 line after 100 ms at 10 lines/s
  const bytes = new LogBucket(1000, 100, 1000, 100, 0);
  assert.equal(bytes.fits(101, 0), false);
  assert.equal(bytes.fits(100, 0), true);
});

Deno.test("WorkerLogBudget: a flooding task cannot silence a quiet one", () => {
  const budget = new WorkerLogBudget({
    taskLinesPerSecond: 100,
    taskBurstLines: 100,
    workerLinesPerSecond: 150,
  });
  const flood = budget.taskBucket();
  const quiet = budget.taskBucket();
  const now = performance.now();
  let floodPassed = 0;
  for (let i = 0; i < 10_000; i++) if (budget.admit(flood, 100, now)) floodPassed++;
  assert.equal(floodPassed, 100); // its own burst, then nothing
  let quietPassed = 0;
  for (let i = 0; i < 10; i++) if (budget.admit(quiet, 100, now)) quietPassed++;
  assert.equal(quietPassed, 10);
  assert.throws(() => resolveLogLimits({ taskLinesPerSecond: 0 }), /logLimits.taskLinesPerSecond/);
  assert.throws(() => resolveLogLimits({ maxLineBytes: 10 }), /logLimits.maxLineBytes/);
});

Deno.test("BoundedQueue drops the oldest items past its count or cost bound", () => {
  const q = new BoundedQueue<number>(3, 100);
  for (let i = 1; i <= 5; i++) q.push(i, 10);
  assert.deepEqual(q.toArray(), [3, 4, 5]);
  assert.equal(q.dropped, 2);
  q.push(6, 80);
  assert.deepEqual(q.toArray(), [4, 5, 6]);
  assert.equal(q.cost, 100);
  q.push(7, 15);
  assert.deepEqual(q.toArray(), [6, 7]);
  q.push(8, 500); // the new item stays even alone over the bound
  assert.deepEqual(q.toArray(), [8]);
  for (let i = 0; i < 5000; i++) q.push(i, 1);
  assert.equal(q.size, 3);
  assert.equal(q.shift(), 4997);
});

Deno.test("RingBuffer keeps the newest items and counts dropped ones", () => {
  const ring = new RingBuffer<number>(3);
  for (let i = 1; i <= 5; i++) ring.push(i);
  assert.deepEqual(ring.toArray(), [3, 4, 5]);
  assert.equal(ring.size, 3);
  assert.equal(ring.dropped, 2);
  assert.throws(() => new RingBuffer(0), RangeError);
});
