/**
 * The program the smoke `endpoints` job runs in its tasks, talking to the controller through
 * the client (IrisClient), never raw HTTP:
 * - `serve NAME`: serves "pong" on the task's allocated `http` port and registers NAME there;
 * - `call NAME`: looks NAME up, calls it and prints `reply=<body>` (exit 0 only for "pong").
 * Workers of gcp/manual clusters are separate machines: the server listens on every interface and
 * registers its host's first non-loopback IPv4 address, which a task on another host reaches.
 * @module
 */
import { IrisClient, jobContext } from "../client/mod.ts";
import { seconds, waitFor } from "../time.ts";

/** Runs one role; resolves to the exit code. */
export async function endpointTask(args: readonly string[]): Promise<number> {
  const [role, name] = args;
  const ctx = jobContext();
  if (!ctx || !name || (role !== "serve" && role !== "call")) {
    console.error("usage (inside an Iris task): endpoint_task.ts serve|call NAME");
    return 2;
  }
  // The token, when the cluster has auth on, comes from the task's IRIS_TOKEN.
  const client = new IrisClient(ctx.controllerUrl);
  if (role === "serve") {
    const port = ctx.ports.http;
    if (!port) {
      console.error('no allocated port named http (submit with ports: ["http"])');
      return 2;
    }
    const host = Deno.networkInterfaces().find((i) =>
      i.family === "IPv4" && !i.address.startsWith("127.")
    )?.address ?? "127.0.0.1";
    const server = Deno.serve(
      { hostname: "0.0.0.0", port, onListen() {} },
      () => new Response("pong"),
    );
    const id = await client.registerEndpoint({
      name,
      address: `http://${host}:${port}`,
      taskId: ctx.taskId,
      attemptId: ctx.attemptId,
    });
    console.log(`registered ${name} as ${id} at http://${host}:${port}`);
    await server.finished;
    return 0;
  }
  const [endpoint] = await waitFor(async () => {
    const found = await client.lookupEndpoint(name);
    return found.length ? found : undefined;
  }, { timeout: seconds(60), what: `endpoint ${name}` });
  const reply = await (await fetch(endpoint!.address)).text();
  console.log(`reply=${reply}`);
  return reply === "pong" ? 0 : 1;
}

if (import.meta.main) Deno.exit(await endpointTask(Deno.args));
