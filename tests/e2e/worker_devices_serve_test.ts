/**
 * `iris worker serve` finds GPUs through `nvidia-smi` on its PATH (a fake replaying a recorded
 * A100×4 output) and refuses to start when its flags claim more (#19).
 */
import assert from "node:assert/strict";
import { AcceleratorType } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { runIris, spawnIris } from "../_helpers/iris_process.ts";
import { FakeController } from "../worker/fake_controller.ts";
import { fakeNvidiaSmi } from "../fakes/nvidia_smi.ts";

const pathWith = (dir: string) => `${dir}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`;

Deno.test("iris worker serve refuses a claim of 8× H100 on a host whose nvidia-smi shows 4× A100", async () => {
  await using smi = await fakeNvidiaSmi("a100x4.csv");
  await using fake = new FakeController();
  const res = await runIris([
    "worker",
    "serve",
    "--controller",
    fake.url,
    "--task-users",
    "off",
    "--accelerator-type",
    "gpu",
    "--accelerator-variant",
    "H100",
    "--accelerator-count",
    "8",
  ], { env: { PATH: pathWith(smi.dir) }, timeout: seconds(60) });
  assert.equal(res.code, 1, res.stderr);
  assert.match(
    res.stderr,
    /claims 8× H100 but the host has 4 healthy GPUs \(4× NVIDIA A100-SXM4-40GB\)/,
  );
  assert.equal(fake.registrations.length, 0);
});

Deno.test("iris worker serve without accelerator flags advertises the GPUs nvidia-smi shows", async () => {
  await using smi = await fakeNvidiaSmi("a100x4.csv");
  await using fake = new FakeController();
  await using iris = spawnIris(
    ["worker", "serve", "--controller", fake.url, "--task-users", "off"],
    { env: { PATH: pathWith(smi.dir) } },
  );
  const reg = await waitFor(() => fake.registrations[0], {
    timeout: seconds(60),
    what: `a registration (${iris.lines.join("\n")})`,
  });
  const acc = reg.resources?.accelerator;
  assert.equal(acc?.type, AcceleratorType.GPU);
  assert.equal(acc?.variant, "A100");
  assert.equal(acc?.count, 4);
  assert.equal(reg.attributes["device-count"]?.kind.value, 4);
});
