/**
 * examples/gpu.yaml end to end (#19): a coscheduled 2-task GPU job on two 8× H100 hosts; each task
 * sees only its 4 GPUs and the torch.distributed environment.
 */
import { assert, assertEquals } from "../_helpers/assert.ts";
import { IrisClient, JobState } from "../../mod.ts";
import { loadConfig } from "../../src/config/mod.ts";
import { LocalController } from "../../src/cluster/local_controller.ts";
import { seconds } from "../../src/time.ts";

const EXAMPLE = new URL("../../examples/gpu.yaml", import.meta.url).pathname;

Deno.test("examples/gpu.yaml: a GPU gang gets 4 GPUs per task and MASTER_ADDR/PORT, RANK, LOCAL_RANK, WORLD_SIZE", async () => {
  const config = await loadConfig(EXAMPLE);
  // From zero hosts: the autoscaler scales the group up by one host per gang task (GPU groups
  // have one VM per slice), all at once, and the gang starts on them.
  config.scaleGroups.h100x8!.minSlices = 0;
  const controller = new LocalController(config);
  const url = await controller.start();
  try {
    const client = new IrisClient(url);
    // Two gangs at once on the same two hosts: each task 0's worker holds its MASTER_PORT.
    const [gang, other] = await Promise.all(["ddp", "ddp-2"].map((name) =>
      client.submit({
        name,
        command: [
          "sh",
          "-c",
          'echo "rank=$RANK world=$WORLD_SIZE local=$LOCAL_RANK/$LOCAL_WORLD_SIZE node=$NODE_RANK ' +
          'master=$MASTER_ADDR:$MASTER_PORT cuda=$CUDA_VISIBLE_DEVICES"; sleep 1',
        ],
        replicas: 2,
        cpu: 0.25,
        accelerator: { kind: "gpu", variant: "H100", count: 4 },
        groupBy: "scale-group",
      })
    ));
    const job = await client.wait(gang!, { timeout: seconds(90) });
    assertEquals(job.state, JobState.SUCCEEDED, job.error);
    assertEquals((await client.wait(other!, { timeout: seconds(90) })).state, JobState.SUCCEEDED);
    const otherPort = (await client.logs(other!)).find((l) => l.stream === "stdout")?.text
      .match(/master=[\d.]+:(\d+)/)?.[1];
    const lines = (await client.logs(gang!)).filter((l) => l.stream === "stdout").map((l) => l.text)
      .sort();
    assertEquals(lines.length, 2, lines.join("\n"));
    const parsed = lines.map((l) => {
      const m = l.match(
        /^rank=(\d) world=(\d) local=(\d)\/(\d) node=(\d) master=([\d.]+):(\d+) cuda=(\S+)$/,
      );
      assert(m, l);
      return m;
    });
    assertEquals(parsed.map((m) => m[1]), ["0", "1"]);
    assert(parsed.every((m) => m[2] === "2"));
    assertEquals(new Set(parsed.map((m) => `${m[6]}:${m[7]}`)).size, 1, "one master for all");
    const port = Number(parsed[0]![7]);
    assert(port >= 20000 && port <= 29999, `MASTER_PORT ${port}`);
    assert(otherPort && Number(otherPort) !== port, `two gangs, two ports: ${port} ${otherPort}`);
    const sets = parsed.map((m) => m[8]!.split(","));
    assert(sets.every((s) => s.length === 4), lines.join("\n"));
    const { tasks } = await client.status(gang!);
    assert(tasks[0]!.workerId !== tasks[1]!.workerId, "one task per host");
    assertEquals(parsed.map((m) => `${m[3]}/${m[4]} ${m[5]}`), ["0/1 0", "0/1 1"]);
  } finally {
    await controller.stop();
  }
});
