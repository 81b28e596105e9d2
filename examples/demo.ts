/**
 * A demo cluster: starts the local cluster of examples/local.yaml, submits a few jobs in
 * different states, and leaves the dashboard up until Ctrl-C.
 *
 *   deno task demo            (= deno run -A examples/demo.ts)
 */
import { IrisClient, seconds } from "../mod.ts";
import { loadConfig } from "../src/config/mod.ts";
import { LocalController } from "../src/cluster/local_controller.ts";

const configPath = Deno.args[0] ?? new URL("./local.yaml", import.meta.url).pathname;
await using controller = new LocalController(await loadConfig(configPath));
const url = await controller.start();
const client = new IrisClient(url);
const demo = { user: "demo", cpu: 0.2, memory: 64 * 2 ** 20 };

await client.submit({ ...demo, name: "hello", command: ["sh", "-c", "echo hello from the demo"] });
await client.submit({
  ...demo,
  name: "gang",
  command: [
    "sh",
    "-c",
    'echo "worker $TPU_WORKER_ID of $JAX_NUM_PROCESSES on $TPU_NAME"; sleep 30',
  ],
  replicas: 4,
  accelerator: { kind: "tpu", variant: "v5litepod-16" },
  groupBy: "tpu-name",
});
await client.submit({
  ...demo,
  name: "fails",
  command: ["sh", "-c", "echo something went wrong >&2; exit 3"],
});
await client.submit({
  ...demo,
  name: "ticker",
  command: ["sh", "-c", "for i in $(seq 1 600); do echo tick $i; sleep 1; done"],
});
await client.submit({
  ...demo,
  name: "too-big",
  command: ["true"],
  cpu: 512,
  schedulingTimeout: seconds(600),
});

console.log(
  `Dashboard and API: ${url}\nJobs submitted as user 'demo'. Press Ctrl-C to stop the cluster.`,
);
const stop = Promise.withResolvers<void>();
Deno.addSignalListener("SIGINT", stop.resolve);
await stop.promise;
Deno.removeSignalListener("SIGINT", stop.resolve);
console.log("Stopping the demo cluster");
