/**
 * lineSplitter() and RingBuffer: pure text plumbing.
 * @module
 */
import assert from "node:assert/strict";
import { lineSplitter, RingBuffer } from "../../src/worker/lines.ts";

async function split(chunks: string[], max?: number): Promise<string[]> {
  return await Array.fromAsync(ReadableStream.from(chunks).pipeThrough(lineSplitter(max)));
}

Deno.test("lineSplitter() joins lines across chunks and strips \\n and \\r\\n", async () => {
  assert.deepEqual(await split(["a", "b\nc", "\r\n", "\n", "d\ne"]), ["ab", "c", "", "d", "e"]);
});

Deno.test("lineSplitter() emits a partial last line at end of stream and nothing for a trailing newline", async () => {
  assert.deepEqual(await split(["x\ny"]), ["x", "y"]);
  assert.deepEqual(await split(["x\n"]), ["x"]);
  assert.deepEqual(await split([]), []);
});

Deno.test("lineSplitter() splits lines longer than the limit, also across chunks", async () => {
  assert.deepEqual(await split(["abcdefg\nhi"], 3), ["abc", "def", "g", "hi"]);
  assert.deepEqual(await split(["ab", "cd", "ef", "g\n"], 3), ["abc", "def", "g"]);
  assert.throws(() => lineSplitter(0), RangeError);
});

Deno.test("RingBuffer keeps the newest items and counts dropped ones", () => {
  const ring = new RingBuffer<number>(3);
  for (let i = 1; i <= 5; i++) ring.push(i);
  assert.deepEqual(ring.toArray(), [3, 4, 5]);
  assert.equal(ring.size, 3);
  assert.equal(ring.dropped, 2);
  assert.throws(() => new RingBuffer(0), RangeError);
});
