/**
 * Log streaming with real follower processes: files written per target, discovery of new
 * targets, restart of exited followers, stop() leaving no process; and the single-writer sink.
 * @module
 */
import assert from "node:assert/strict";
import { FailedPreconditionError } from "../../src/errors.ts";
import { DenoCommandRunner } from "../../src/command/command.ts";
import {
  fileLogSink,
  logFileName,
  type LogTarget,
  startLogStreaming,
  stopLogStreaming,
} from "../../src/platform/log_stream.ts";
import { ms, seconds, waitFor } from "../../src/time.ts";
import { isAlive } from "./_proc.ts";

const runner = new DenoCommandRunner();

/** A follower that prints its pid, then "x" every 0.1 s forever. */
function ticker(name: string): LogTarget {
  return {
    name,
    command: { argv: ["sh", "-c", "echo pid $$; while true; do echo x; sleep 0.1; done"] },
  };
}

async function lines(dir: string, name: string): Promise<string[]> {
  try {
    return (await Deno.readTextFile(`${dir}/${logFileName(name)}`)).split("\n").filter((l) =>
      l !== ""
    );
  } catch {
    return [];
  }
}

function pidOf(fileLines: string[]): number {
  return Number(fileLines.find((l) => l.startsWith("pid "))?.slice(4));
}

Deno.test("startLogStreaming() writes one file per target, discovers new ones and stop() leaves no process", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris_logs_" });
  const targets = [ticker("controller"), ticker("slice-1-w0")];
  const handle = startLogStreaming({
    runner,
    targets: () => Promise.resolve([...targets]),
    outputDir: `${dir}/logs`,
    discoveryInterval: ms(50),
  });
  try {
    await waitFor(async () => (await lines(`${dir}/logs`, "slice-1-w0")).length >= 3, {
      timeout: seconds(10),
      what: "the first worker's log",
    });
    targets.push(ticker("slice-2/w0"));
    await waitFor(async () => (await lines(`${dir}/logs`, "slice-2/w0")).length >= 3, {
      timeout: seconds(10),
      what: "the discovered worker's log",
    });
    assert.deepEqual(handle.discovered(), ["controller", "slice-1-w0", "slice-2/w0"]);
  } finally {
    await handle.stop();
  }
  await handle.stop();
  const names = ["controller", "slice-1-w0", "slice-2/w0"];
  for (const name of names) {
    const l = await lines(`${dir}/logs`, name);
    assert.ok(l.includes("x"), `${name} has lines`);
    assert.ok(!isAlive(pidOf(l)), `${name}'s follower is gone`);
  }
  assert.deepEqual((await Array.fromAsync(Deno.readDir(`${dir}/logs`))).map((e) => e.name).sort(), [
    "controller.log",
    "slice-1-w0.log",
    "slice-2_w0.log",
  ]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a follower that exits is restarted on the next discovery and appends to its file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris_logs_" });
  const once: LogTarget = {
    name: "w",
    command: { argv: ["sh", "-c", "echo run; echo oops >&2; exit 3"] },
  };
  const handle = startLogStreaming({
    runner,
    targets: () => Promise.resolve([once]),
    outputDir: dir,
    discoveryInterval: ms(20),
  });
  try {
    await waitFor(async () => (await lines(dir, "w")).filter((l) => l === "run").length >= 2, {
      timeout: seconds(10),
      what: "two runs",
    });
  } finally {
    await handle.stop();
  }
  const l = await lines(dir, "w");
  assert.ok(l.some((x) => /log follower exited with code 3: oops/.test(x)), l.join("\n"));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("discovery errors are reported and streaming goes on; an outer signal stops it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris_logs_" });
  const errors: unknown[] = [];
  let calls = 0;
  const outer = new AbortController();
  const handle = startLogStreaming({
    runner,
    targets: () =>
      ++calls === 1
        ? Promise.reject(new Error("gcloud list failed"))
        : Promise.resolve([ticker("a")]),
    outputDir: dir,
    discoveryInterval: ms(20),
    signal: outer.signal,
    onError: (e) => errors.push(e),
  });
  await waitFor(async () => (await lines(dir, "a")).length >= 2, {
    timeout: seconds(10),
    what: "log a",
  });
  outer.abort();
  await handle.stop();
  assert.match(String(errors[0]), /gcloud list failed/);
  assert.ok(!isAlive(pidOf(await lines(dir, "a"))));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("stop() does not wait for a hung discovery call", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris_logs_" });
  let release: (() => void) | undefined;
  const hung = new Promise<LogTarget[]>((resolve) => release = () => resolve([]));
  const handle = startLogStreaming({
    runner,
    targets: () => hung,
    outputDir: dir,
    discoveryInterval: seconds(60),
  });
  await handle.stop();
  release?.();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("stopLogStreaming() accepts null (local mode has no handle)", async () => {
  await stopLogStreaming(null);
  await stopLogStreaming(undefined);
});

Deno.test("fileLogSink() appends lines in order and allows one writer per file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris_sink_" });
  const path = `${dir}/a.log`;
  {
    await using sink = fileLogSink(path);
    assert.throws(() => fileLogSink(path), FailedPreconditionError);
    for (let i = 0; i < 1000; i++) sink.write(`line ${i}`);
    sink.write("ends with newline\n");
  }
  const again = fileLogSink(path);
  again.write("appended");
  await again.close();
  await again.close();
  again.write("ignored after close");
  const text = await Deno.readTextFile(path);
  const all = text.split("\n");
  assert.equal(all[0], "line 0");
  assert.equal(all[999], "line 999");
  assert.deepEqual(all.slice(1000), ["ends with newline", "appended", ""]);
  await Deno.remove(dir, { recursive: true });
});
