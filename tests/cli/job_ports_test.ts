/**
 * `iris job ports` over real processes: a job's named ports with the worker host, and --forward
 * relaying a local TCP connection to a task's port until Ctrl-C.
 */
import { assertEquals, assertMatch } from "../_helpers/assert.ts";
import { cli, startCluster } from "./_cluster.ts";

Deno.test("iris job ports shows and forwards a task's named ports", async () => {
  await using cluster = await startCluster();
  const env = { IRIS_CONTROLLER_URL: cluster.url, USER: "porter" };
  // The task answers one line on its port: a tiny TCP echo server in Deno.
  const server = [
    "const l = Deno.listen({ hostname: '0.0.0.0', port: Number(Deno.env.get('IRIS_PORT_ECHO')) });",
    "console.log('listening');",
    "for await (const c of l) { const b = new Uint8Array(64); const n = await c.read(b);",
    "  await c.write(new TextEncoder().encode('echo:' + new TextDecoder().decode(b.subarray(0, n ?? 0)))); c.close(); }",
  ].join("\n");
  await using job = cli([
    "job",
    "run",
    "--name",
    "echo",
    "--port",
    "echo",
    "--env",
    `DENO_DIR=${Deno.env.get("DENO_DIR") ?? ""}`,
    "--",
    Deno.execPath(),
    "eval",
    server,
  ], { env });
  await job.waitFor(/^listening$/, "stdout");

  await using list = cli(["job", "ports", "echo"], { env });
  assertEquals(await list.code, 0, list.stderr.join("\n"));
  assertMatch(list.stdout[0]!, /TASK +STATE +NAME +ADDRESS +WORKER/);
  const port = Number(list.stdout[1]!.match(/^0 +running +echo +127\.0\.0\.1:(\d+) /)![1]);
  assertEquals(port > 0, true);

  await using fwd = cli(["job", "ports", "echo", "--forward"], { env });
  const local = Number(
    (await fwd.waitFor(/forwarding 127\.0\.0\.1:(\d+) -> 127\.0\.0\.1:\d+ \(echo\)/))[1],
  );
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: local });
  await conn.write(new TextEncoder().encode("hi"));
  const buf = new Uint8Array(64);
  const n = await conn.read(buf);
  conn.close();
  assertEquals(new TextDecoder().decode(buf.subarray(0, n ?? 0)), "echo:hi");
  fwd.child.kill("SIGINT");
  assertEquals(await fwd.code, 0);
  await cluster.client.cancel("/porter/echo");
  job.child.kill("SIGINT");
  await job.code;
});
