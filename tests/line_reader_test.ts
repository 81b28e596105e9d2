import { assertEquals, assertRejects } from "./_helpers/assert.ts";
import { forEachLine, textReader } from "../src/line_reader.ts";

function streamOf(chunks: string[], error?: Error): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder();
  let next = 0;
  // One chunk per pull: an error raised at once would discard the chunks still queued.
  return new ReadableStream({
    pull(controller) {
      if (next < chunks.length) controller.enqueue(bytes.encode(chunks[next++]!));
      else if (error) controller.error(error);
      else controller.close();
    },
  });
}

Deno.test("forEachLine splits across chunks, drops a trailing CR and gives the last line", async () => {
  const lines: string[] = [];
  await forEachLine(textReader(streamOf(["a\r\nb", "c\n\nd"])), (l) => lines.push(l));
  assertEquals(lines, ["a", "bc", "", "d"]);
});

Deno.test("forEachLine gives the unfinished line before an error only when asked", async () => {
  for (const unfinishedOnError of [false, true]) {
    const lines: string[] = [];
    await assertRejects(() =>
      forEachLine(
        textReader(streamOf(["x\nhalf"], new Error("broken pipe"))),
        (l) => lines.push(l),
        unfinishedOnError,
      )
    );
    assertEquals(lines, unfinishedOnError ? ["x", "half"] : ["x"]);
  }
});
