/**
 * Reading a byte stream as text lines: the one loop behind the command runner's output lines and
 * the Kubernetes client's watch streams.
 * @module
 */

/**
 * Calls `onLine` for each line of `stream` (UTF-8, split on "\n", a trailing "\r" dropped, the
 * last line given even without its newline) until the stream ends. An error from the stream (a
 * cancelled reader, a broken pipe) propagates; the unfinished line before it is given first only
 * with `unfinishedOnError` (a command's last words matter; half a JSON event does not).
 */
export async function forEachLine(
  reader: ReadableStreamDefaultReader<string>,
  onLine: (line: string) => void,
  unfinishedOnError = false,
): Promise<void> {
  let buffer = "";
  const flush = () => {
    if (buffer !== "") onLine(buffer.replace(/\r$/, ""));
    buffer = "";
  };
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        onLine(buffer.slice(0, nl).replace(/\r$/, ""));
        buffer = buffer.slice(nl + 1);
      }
    }
  } catch (err) {
    if (unfinishedOnError) flush();
    throw err;
  }
  flush();
}

/** A reader of `stream`'s text, for {@linkcode forEachLine}; cancel it to stop reading. */
export function textReader(
  stream: ReadableStream<Uint8Array>,
): ReadableStreamDefaultReader<string> {
  return stream.pipeThrough(new TextDecoderStream()).getReader();
}
