/**
 * DenoCommandRunner against real processes (timeouts kill whole process groups, aborts, pipes
 * held by escaped processes) and runAll's bounded, timed parallelism.
 * @module
 */
import assert from "node:assert/strict";
import { InvalidArgumentError } from "../../src/errors.ts";
import {
  DenoCommandRunner,
  describeSecretStdin,
  formatCommand,
  runAll,
  shellQuote,
} from "../../src/command/command.ts";
import { ms, seconds, waitFor } from "../../src/time.ts";
import { isAlive, liveInGroup, liveWithMarker, uniqueMarker } from "./_proc.ts";

const runner = new DenoCommandRunner();

/**
 * Waits until nothing of process group `pgid` runs. The runner returns once the leader is reaped
 * and the group got SIGKILL; the other members are not its children and take a moment to die.
 * Every such test leaves a `sleep 100` in the group, which would outlive this deadline.
 */
async function groupEnds(pgid: number): Promise<void> {
  assert.ok(pgid > 0, `a process group id: ${pgid}`);
  await waitFor(() => liveInGroup(pgid).length === 0, {
    timeout: seconds(10),
    what: `process group ${pgid} to end`,
  });
}

Deno.test("run() collects stdout, stderr and the exit code", async () => {
  const r = await runner.run({ argv: ["sh", "-c", "echo out; echo err >&2; exit 3"] }, {
    timeout: seconds(10),
  });
  assert.deepEqual(r, {
    code: 3,
    stdout: "out\n",
    stderr: "err\n",
    signal: undefined,
    timedOut: false,
  });
});

Deno.test("run() feeds stdin and passes env", async () => {
  const r = await runner.run(
    { argv: ["sh", "-c", 'cat; echo "$IRIS_X"'], stdin: "line1\nline2\n", env: { IRIS_X: "x" } },
    { timeout: seconds(10) },
  );
  assert.equal(r.stdout, "line1\nline2\nx\n");
});

Deno.test("run() reports a missing binary as exit code 127", async () => {
  const r = await runner.run({ argv: ["iris-no-such-binary"] }, { timeout: seconds(5) });
  assert.equal(r.code, 127);
  assert.match(r.stderr, /iris-no-such-binary: command not found/);
});

Deno.test("run() refuses to run without a positive timeout", async () => {
  await assert.rejects(runner.run({ argv: ["true"] }, { timeout: ms(0) }), InvalidArgumentError);
});

Deno.test("run() timeout kills the whole process group and leaves no process", async () => {
  const started = performance.now();
  const r = await runner.run({ argv: ["sh", "-c", "echo $$; sleep 100 & sleep 100"] }, {
    timeout: ms(300),
  });
  // Far below the 100 s the command would run: the timeout, not the command, ended it.
  assert.ok(performance.now() - started < 30_000, "returned after the timeout");
  assert.equal(r.timedOut, true);
  assert.equal(r.signal, "SIGTERM");
  assert.match(r.stderr, /killed after timeout/);
  await groupEnds(Number(r.stdout.trim()));
});

Deno.test("run() escalates to SIGKILL when the group ignores SIGTERM", async () => {
  const r = await runner.run({ argv: ["sh", "-c", "trap '' TERM; echo $$; sleep 100"] }, {
    timeout: ms(200),
  });
  assert.equal(r.timedOut, true);
  assert.equal(r.signal, "SIGKILL");
  await groupEnds(Number(r.stdout.trim()));
});

Deno.test("run() abort kills the process group and rejects with the abort reason", async () => {
  const marker = uniqueMarker("abort");
  const abort = new AbortController();
  // The marker is in the leader's and a background child's command line.
  const script = `sh -c 'sleep 100; : ${marker}' & sleep 100; : ${marker}`;
  const running = runner.run({ argv: ["sh", "-c", script] }, {
    timeout: seconds(60),
    signal: abort.signal,
  });
  await waitFor(() => liveWithMarker(marker).length >= 2, {
    timeout: seconds(5),
    what: "the process to start",
  });
  abort.abort(new Error("stop it"));
  await assert.rejects(running, /stop it/);
  await waitFor(() => liveWithMarker(marker).length === 0, {
    timeout: seconds(10),
    what: "the aborted processes to end",
  });
});

Deno.test("run() kills what the command left in its group once it exits", async () => {
  const r = await runner.run({ argv: ["sh", "-c", "sleep 100 & echo $!"] }, {
    timeout: seconds(10),
  });
  assert.equal(r.code, 0);
  const orphan = Number(r.stdout.trim());
  await waitFor(() => !isAlive(orphan), {
    timeout: seconds(5),
    what: "the background sleep to die",
  });
});

Deno.test("run() returns even when an escaped process keeps the output pipe open", async () => {
  const marker = uniqueMarker("escaped");
  const started = performance.now();
  const flag = await Deno.makeTempFile();
  await Deno.remove(flag);
  // The parent waits until the escaped process runs (else the group kill could win the race).
  const script = `setsid sh -c 'touch ${flag}; sleep 100; : ${marker}' & ` +
    `while [ ! -f ${flag} ]; do sleep 0.01; done; echo started`;
  const r = await runner.run({ argv: ["sh", "-c", script] }, { timeout: seconds(20) });
  await Deno.remove(flag);
  assert.equal(r.code, 0);
  assert.equal(r.stdout, "started\n");
  assert.ok(performance.now() - started < 30_000, "did not wait for the escaped process");
  // The escaped sh leads its own group (setsid): kill the group, so its sleep goes too.
  for (const pid of liveWithMarker(marker)) Deno.kill(-pid, "SIGKILL");
  await waitFor(() => liveWithMarker(marker).length === 0, {
    timeout: seconds(5),
    what: "cleanup",
  });
});

Deno.test("stream() reports lines as they come and abort stops it", async () => {
  const abort = new AbortController();
  const lines: string[] = [];
  const { done } = runner.stream({
    argv: ["sh", "-c", "echo $$; sleep 100 & while true; do echo tick; sleep 0.05; done"],
  }, {
    signal: abort.signal,
    onLine: (line, s) => {
      if (s === "stdout") lines.push(line);
    },
  });
  await waitFor(() => lines.length >= 4, { timeout: seconds(5), what: "4 lines" });
  abort.abort();
  const r = await done;
  assert.equal(r.signal, "SIGTERM");
  assert.equal(r.timedOut, false);
  assert.equal(lines[1], "tick");
  await groupEnds(Number(lines[0]));
});

Deno.test("stream() done resolves with the tail of the output when the process exits", async () => {
  const { done } = runner.stream({ argv: ["sh", "-c", "echo a; echo b >&2; exit 2"] }, {
    signal: new AbortController().signal,
    onLine: () => {},
  });
  const r = await done;
  assert.equal(r.code, 2);
  assert.equal(r.stdout, "a\n");
  assert.equal(r.stderr, "b\n");
});

Deno.test("runAll() keeps order, reports rejections and bounds concurrency", async () => {
  let inFlight = 0;
  let maxInFlight = 0;
  const task = (i: number) => async () => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    await runner.run({ argv: ["sh", "-c", "exit 0"] }, { timeout: seconds(10) });
    inFlight--;
    if (i === 2) throw new Error("task 2 failed");
    return i;
  };
  const outcomes = await runAll([0, 1, 2, 3, 4].map(task), {
    timeout: seconds(30),
    concurrency: 2,
  });
  assert.equal(maxInFlight, 2);
  assert.deepEqual(outcomes.map((o) => o.status), [
    "fulfilled",
    "fulfilled",
    "rejected",
    "fulfilled",
    "fulfilled",
  ]);
  assert.deepEqual(outcomes[4], { status: "fulfilled", value: 4 });
});

Deno.test("runAll() with one hung task returns within the overall timeout and kills it", async () => {
  let hung: Promise<unknown> | undefined;
  const started = performance.now();
  const outcomes = await runAll<string>([
    async () => (await runner.run({ argv: ["echo", "quick"] }, { timeout: seconds(10) })).stdout,
    (signal) => {
      const p = runner.run({ argv: ["sh", "-c", "echo $$; sleep 100"] }, {
        timeout: seconds(60),
        signal,
      });
      hung = p.catch((err) => err);
      return p.then((r) => r.stdout);
    },
  ], { timeout: ms(400) });
  const tookMs = performance.now() - started;
  // Far below the hung task's own 60 s timeout: runAll returned on its overall timeout.
  assert.ok(tookMs < 30_000, `runAll returned after ${tookMs}ms`);
  assert.deepEqual(outcomes, [{ status: "fulfilled", value: "quick\n" }, { status: "timedOut" }]);
  const reason = await hung;
  assert.ok(reason instanceof DOMException && reason.name === "TimeoutError", String(reason));
});

Deno.test("runAll() of nothing resolves at once", async () => {
  assert.deepEqual(await runAll([], { timeout: seconds(1) }), []);
});

Deno.test("shellQuote() leaves plain words and single-quotes the rest", () => {
  assert.equal(shellQuote("--zone=us-central2-b"), "--zone=us-central2-b");
  assert.equal(shellQuote(""), "''");
  assert.equal(shellQuote("a b"), "'a b'");
  assert.equal(shellQuote("it's"), `'it'\\''s'`);
  assert.equal(shellQuote("$HOME"), "'$HOME'");
  assert.equal(formatCommand({ argv: ["echo", "a b", "c"] }), "echo 'a b' c");
});

Deno.test("shellQuote() round-trips awkward strings through a real shell", async () => {
  const words = [
    "it's",
    'say "hi"',
    "$(rm -rf /)",
    "`id`",
    "a\nb",
    "tab\there",
    "\\",
    "*",
    "~",
    "!x",
    "é ü",
    "''",
  ];
  const script = `for w in ${words.map(shellQuote).join(" ")}; do printf '%s\\0' "$w"; done`;
  const r = await runner.run({ argv: ["sh", "-c", script] }, { timeout: seconds(10) });
  assert.deepEqual(r.stdout.split("\0").slice(0, -1), words);
});

Deno.test("DenoCommandRunner writes secretStdin before stdin; formatCommand shows neither", async () => {
  const cmd = { argv: ["cat"], secretStdin: "top-secret\n", stdin: "script\n" };
  const r = await new DenoCommandRunner().run(cmd, { timeout: seconds(10) });
  assert.equal(r.stdout, "top-secret\nscript\n");
  assert.equal(formatCommand(cmd), "cat");
  assert.equal(describeSecretStdin(cmd), "<secret: 11 bytes redacted>");
});
