/**
 * Job outputs: IRIS_OUTPUT_DIR outlives the attempt (a retry sees what the failed attempt wrote),
 * `iris job download` fetches a file (in chunks past 16 MiB) or a whole directory through the
 * controller; only the owner or an admin may; paths cannot leave the directory; retention sweeps.
 */
import assert from "node:assert/strict";
import { main } from "../../src/cli/main.ts";
import { IrisClient, JobState } from "../../mod.ts";
import { startSecureCluster } from "../security/_cluster.ts";
import { JobOutputs } from "../../src/worker/outputs.ts";
import { ms, seconds } from "../../src/time.ts";

Deno.test("job outputs: outlive attempts, download through the controller, owner or admin only", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-outputs-" });
  try {
    await using cluster = await startSecureCluster({ rootDir: `${root}/worker` });
    const url = cluster.controller.url;
    const alice = new IrisClient(url, { token: cluster.tokens.alice });
    const script = [
      'mkdir -p "$IRIS_OUTPUT_DIR/ckpt"',
      'if [ "$IRIS_ATTEMPT_ID" = 0 ]; then echo step-1 > "$IRIS_OUTPUT_DIR/ckpt/step-1.txt"; exit 1; fi',
      'cat "$IRIS_OUTPUT_DIR/ckpt/step-1.txt"',
      'head -c 17000000 /dev/zero > "$IRIS_OUTPUT_DIR/big.bin"',
    ].join("\n");
    const jobId = await alice.submit({
      name: "train",
      user: "alice",
      command: ["sh", "-c", script],
      maxRetriesFailure: 1,
      memory: 2 ** 28,
    });
    const job = await alice.wait(jobId, { timeout: seconds(60) });
    assert.equal(job.state, JobState.SUCCEEDED, job.error);
    const logs = (await alice.logs(jobId)).map((l) => l.text);
    assert.ok(logs.includes("step-1"), logs.join("\n"));

    const files: Record<string, string> = {};
    for (const [who, token] of Object.entries(cluster.tokens)) {
      await Deno.writeTextFile(`${root}/${who}.token`, token);
      files[who] = `${root}/${who}.token`;
    }
    const iris = async (who: string, argv: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await main(
        [...argv, "--controller", url, "--token-file", files[who]!],
        { out: (s) => out.push(s), err: (s) => err.push(s), isTty: false },
        new AbortController().signal,
      );
      return { code, out: out.join(""), err: err.join("") };
    };
    const one = await iris("alice", [
      "job",
      "download",
      jobId,
      "ckpt/step-1.txt",
      "-o",
      `${root}/s1.txt`,
    ]);
    assert.equal(one.code, 0, one.err);
    assert.equal(await Deno.readTextFile(`${root}/s1.txt`), "step-1\n");

    const all = await iris("admin", ["job", "download", jobId, "-o", `${root}/all`]);
    assert.equal(all.code, 0, all.err);
    assert.equal(await Deno.readTextFile(`${root}/all/ckpt/step-1.txt`), "step-1\n");
    assert.equal((await Deno.stat(`${root}/all/big.bin`)).size, 17_000_000);

    const list = await iris("alice", ["job", "download", jobId, "--list"]);
    assert.equal(list.code, 0, list.err);
    assert.match(list.out, /big\.bin/);
    assert.match(list.out, /ckpt\/step-1\.txt/);

    const bob = await iris("bob", [
      "job",
      "download",
      jobId,
      "ckpt/step-1.txt",
      "-o",
      `${root}/bob.txt`,
    ]);
    assert.notEqual(bob.code, 0);
    assert.match(bob.err, /may not download outputs of|permission/i);
    const escape = await iris("alice", ["job", "download", jobId, "../../../etc/passwd"]);
    assert.notEqual(escape.code, 0);
    assert.match(escape.err, /path/);
    const missing = await iris("alice", ["job", "download", jobId, "nope.txt"]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.err, /No output "nope\.txt" of job/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("JobOutputs.sweep removes directories unused past the retention, never in-use ones", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-outsweep-" });
  try {
    const outputs = new JobOutputs(root, seconds(3600));
    const old = await outputs.acquire("/alice/old");
    await Deno.writeTextFile(`${old}/out.txt`, "x"); // an empty one is recycled at once
    await outputs.release("/alice/old");
    const busy = await outputs.acquire("/alice/busy");
    await Deno.writeTextFile(`${busy}/out.txt`, "x");
    const past = new Date(Date.now() - 2 * 3600_000);
    await Deno.utime(old, past, past);
    await Deno.utime(busy, past, past);
    assert.deepEqual(await outputs.sweep(), ["/alice/old"]);
    await outputs.release("/alice/busy");
    assert.deepEqual(await outputs.sweep(Date.now() + 2 * 3600_000), ["/alice/busy"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("JobOutputs: attempt starts sweep at most once per sweep interval", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-outsweep-" });
  try {
    const outputs = new JobOutputs(root, seconds(3600), seconds(3600));
    await outputs.acquire("/alice/first"); // the first start sweeps (nothing to remove yet)
    const old = await outputs.acquire("/alice/old");
    await Deno.writeTextFile(`${old}/out.txt`, "x"); // an empty one is recycled at once
    await outputs.release("/alice/old");
    const past = new Date(Date.now() - 2 * 3600_000);
    await Deno.utime(old, past, past);
    await outputs.acquire("/alice/next"); // within the interval: no sweep
    assert.equal((await Deno.stat(old)).isDirectory, true);
    const eager = new JobOutputs(root, seconds(3600), ms(0));
    await eager.acquire("/alice/other"); // an interval of 0: every start sweeps
    await assert.rejects(() => Deno.stat(old), Deno.errors.NotFound);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("JobOutputs.release leaves an mtime it set moments ago (one fs op less), else sets it", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-outsweep-" });
  try {
    const past = new Date(Date.now() - 2 * 3600_000);
    // A week's retention: a release within a minute of the start keeps the directory's mtime.
    const outputs = new JobOutputs(root, seconds(7 * 24 * 3600));
    const quick = await outputs.acquire("/alice/quick");
    await Deno.writeTextFile(`${quick}/out.txt`, "x"); // an empty one is recycled at once
    await Deno.utime(quick, past, past); // stands in for "set at the start"
    await outputs.release("/alice/quick");
    assert.equal((await Deno.stat(quick)).mtime?.getTime(), past.getTime());
    // No slack (a retention of 0): the retention starts at the release.
    const strict = new JobOutputs(root, ms(0));
    const dir = await strict.acquire("/alice/strict");
    await Deno.writeTextFile(`${dir}/out.txt`, "x");
    await Deno.utime(dir, past, past);
    await strict.release("/alice/strict");
    assert.ok((await Deno.stat(dir)).mtime!.getTime() > Date.now() - 60_000);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
