/**
 * The RPC server's transport is chosen from the CLI (`--http-server`, controller and worker) and
 * the config (`auth.http_server`); bad values are refused naming the flag or the key, and every
 * transport carries a real controller and worker (separate processes) end to end.
 */
import { main } from "../../src/cli/main.ts";
import { parseAuthDocument } from "../../src/config/mod.ts";
import { ConfigValidationError } from "../../src/config/mod.ts";
import { IrisClient } from "../../src/client/client.ts";
import { JobState } from "../../src/rpc/mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { assertEquals, assertMatch } from "../_helpers/assert.ts";
import { spawnIris } from "../_helpers/iris_process.ts";

async function run(args: string[]): Promise<{ code: number; err: string }> {
  let err = "";
  const io = { out: () => {}, err: (s: string) => void (err += s), isTty: false };
  const code = await main(args, io, new AbortController().signal);
  return { code, err };
}

Deno.test("--http-server refuses an unknown server on controller and worker, naming the flag", async () => {
  for (
    const args of [
      ["controller", "serve", "--port", "0", "--http-server", "apache"],
      ["worker", "serve", "--controller", "http://127.0.0.1:1", "--http-server", "apache"],
    ]
  ) {
    const { code, err } = await run(args);
    assertEquals(code, 2, err);
    assertMatch(err, /--http-server must be one of iris, deno, node \(got "apache"\)/);
  }
});

Deno.test("auth.http_server takes iris, deno or node and names the key otherwise", () => {
  for (const server of ["iris", "deno", "node"]) {
    assertEquals(
      parseAuthDocument(`auth:\n  http_server: ${server}\n`, "a.yaml")?.httpServer,
      server,
    );
  }
  let message = "";
  try {
    parseAuthDocument("auth:\n  http_server: apache\n", "a.yaml");
  } catch (err) {
    if (!(err instanceof ConfigValidationError)) throw err;
    message = err.message;
  }
  assertMatch(message, /auth\.http_server: .*"iris", "deno" or "node"/);
});

Deno.test("a node controller and a deno worker (processes, --http-server) run a job", async () => {
  await using ctl = spawnIris(["controller", "serve", "--port", "0", "--http-server", "node"]);
  const url = (await ctl.waitForLine(/Controller started at (http:\/\/\S+)/))[1]!;
  await using _worker = spawnIris([
    "worker",
    "serve",
    "--controller",
    url,
    "--http-server",
    "deno",
    "--cpu",
    "1",
    "--memory",
    "1GiB",
    "--task-users",
    "off",
  ]);
  const client = new IrisClient(url);
  await waitFor(async () => (await client.workers()).length === 1, {
    timeout: seconds(30),
    what: "the worker registered",
  });
  const jobId = await client.submit({ name: "via-node-and-deno", command: ["true"], cpu: 0.1 });
  const job = await client.wait(jobId, { timeout: seconds(30) });
  assertEquals(job.state, JobState.SUCCEEDED);
});
