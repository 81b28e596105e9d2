/** `iris job run|logs|list`: bad job-model flags get a usage error naming the flag; list filters. */
import assert from "node:assert/strict";
import { main } from "../../src/cli/main.ts";
import { startController } from "../../src/controller/server.ts";
import { controllerClient } from "../../src/rpc/client.ts";

async function iris(argv: string[]): Promise<{ code: number; err: string }> {
  const err: string[] = [];
  // Nothing listens here: every case must fail before the controller is contacted.
  const code = await main(
    [...argv, "--controller", "http://127.0.0.1:9"],
    { out: () => {}, err: (s) => err.push(s), isTty: false },
    new AbortController().signal,
  );
  return { code, err: err.join("") };
}

Deno.test("iris job logs rejects a bad --level, --since, --tail or --max-lines", async () => {
  const cases: [string[], RegExp][] = [
    [["--level", "loud"], /--level must be one of debug, info, warning, error, critical/],
    [["--since", "soon"], /--since must be a duration like 30s or 10m \(got "soon"\)/],
    [["--tail", "0"], /--tail/],
    [["--max-lines", "many"], /--max-lines/],
  ];
  for (const [flags, re] of cases) {
    const res = await iris(["job", "logs", "/alice/train", ...flags]);
    assert.equal(res.code, 2, res.err);
    assert.match(res.err, re);
  }
});

Deno.test("iris job run rejects a bad --scheduling-timeout, --replicas or --priority", async () => {
  const bad = await iris(["job", "run", "--scheduling-timeout", "never", "--", "true"]);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--scheduling-timeout must be a duration/);
  const zero = await iris(["job", "run", "--tpu", "v5litepod-16", "--replicas", "0", "--", "true"]);
  assert.equal(zero.code, 2);
  assert.match(zero.err, /--replicas/);
  const band = await iris(["job", "run", "--priority", "urgent", "--", "true"]);
  assert.equal(band.code, 2);
  assert.match(band.err, /--priority must be one of production, interactive, batch/);
});

Deno.test("iris job list filters by user and name and sorts on the controller", async () => {
  await using server = startController();
  const rpc = controllerClient(server.url);
  for (const [user, name] of [["alice", "b"], ["bob", "train"], ["alice", "a"], ["alice", "c"]]) {
    await rpc.launchJob({
      spec: { name, user, entrypoint: { kind: { case: "command", value: { argv: ["true"] } } } },
    });
  }
  const out: string[] = [];
  const list = async (flags: string[]) => {
    out.length = 0;
    const code = await main(
      ["job", "list", "--json", "--controller", server.url, ...flags],
      { out: (s) => out.push(s), err: (s) => out.push(s), isTty: false },
      new AbortController().signal,
    );
    assert.equal(code, 0, out.join(""));
    return out.join("").trim().split("\n").map((l) => JSON.parse(l).job_id);
  };
  assert.deepEqual(await list(["--user", "alice", "--sort", "name", "--desc"]), [
    "/alice/c",
    "/alice/b",
    "/alice/a",
  ]);
  assert.deepEqual(await list(["--name", "rai"]), ["/bob/train"]);
  const bad = await iris(["job", "list", "--sort", "size"]);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--sort must be one of name, state, user, tasks, age, duration/);
});
