/**
 * Device detection and assignment (#19): recorded `nvidia-smi` outputs through a fake binary,
 * fake TPU device nodes in a temp root, per-attempt device sets and a GPU lost mid-run.
 * @module
 */
import assert from "node:assert/strict";
import { AcceleratorType, TaskState } from "../../src/rpc/gen/iris/v1/types_pb.ts";
import { FailedPreconditionError } from "../../src/errors.ts";
import { ms, seconds, waitFor } from "../../src/time.ts";
import { startWorker } from "../../src/worker/mod.ts";
import {
  advertiseDevices,
  detectDevices,
  deviceEnv,
  DevicePool,
  gpuVariant,
  parseNvidiaSmi,
  parseNvidiaSmiList,
  scanGpus,
  scanTpuChips,
} from "../../src/worker/devices.ts";
import { commandTask, startHarness } from "./harness.ts";
import { FakeController } from "./fake_controller.ts";
import { fakeNvidiaSmi, NVIDIA_SMI_FIXTURES } from "../fakes/nvidia_smi.ts";

const fixture = (name: string) => Deno.readTextFileSync(new URL(name, NVIDIA_SMI_FIXTURES));

/** A temp root with the given device nodes (plain files) under dev/. */
async function fakeRoot(nodes: string[]): Promise<{ root: string } & AsyncDisposable> {
  const root = await Deno.makeTempDir({ prefix: "iris-fake-root-" });
  for (const n of nodes) {
    await Deno.mkdir(`${root}/dev/${n}`.replace(/\/[^/]+$/, ""), { recursive: true });
    await Deno.writeTextFile(`${root}/dev/${n}`, "");
  }
  return { root, [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }) };
}

Deno.test("parseNvidiaSmi reads recorded H100×8, A100×4 and L4×1 outputs", () => {
  const h100 = parseNvidiaSmi(fixture("h100x8.csv"));
  assert.equal(h100.gpus.length, 8);
  assert.deepEqual(h100.errors, []);
  assert.equal(h100.gpus[7]?.index, 7);
  assert.match(h100.gpus[0]?.uuid ?? "", /^GPU-[0-9a-f-]{36}$/);
  assert.equal(h100.gpus[0]?.memoryMiB, 81559);
  assert.equal(gpuVariant(h100.gpus[0]?.name ?? ""), "H100");
  const a100 = parseNvidiaSmi(fixture("a100x4.csv"));
  assert.equal(a100.gpus.length, 4);
  assert.equal(gpuVariant(a100.gpus[0]?.name ?? ""), "A100");
  assert.equal(a100.gpus[0]?.memoryUsedMiB, 4);
  const l4 = parseNvidiaSmi(fixture("l4x1.csv"));
  assert.equal(l4.gpus.length, 1);
  assert.equal(gpuVariant(l4.gpus[0]?.name ?? ""), "L4");
  assert.ok(h100.gpus.every((g) => !g.problem) && a100.gpus.every((g) => !g.problem));
});

Deno.test("parseNvidiaSmi marks GPUs with '[GPU requires reset]' or 'ERR!' fields and keeps error lines", () => {
  const failed = parseNvidiaSmi(fixture("a100x4_failed.csv"));
  assert.deepEqual(failed.gpus.map((g) => Boolean(g.problem)), [false, false, true, true]);
  assert.match(failed.gpus[2]?.problem ?? "", /memory\.total \[GPU requires reset\]/);
  assert.match(failed.gpus[3]?.problem ?? "", /ERR!/);
  const lost = parseNvidiaSmi(fixture("h100x8_gpu1_lost.csv"));
  assert.equal(lost.gpus.length, 7);
  assert.match(lost.errors[0] ?? "", /Unable to determine the device handle/);
});

Deno.test("scanGpus runs a fake nvidia-smi; a missing or failing one means no driver, with a reason", async () => {
  await using smi = await fakeNvidiaSmi("l4x1.csv");
  const found = await scanGpus({ nvidiaSmi: smi.bin });
  assert.equal(found.driver, true);
  assert.equal(found.gpus.length, 1);
  const missing = await scanGpus({ nvidiaSmi: `${smi.dir}/no-such-nvidia-smi` });
  assert.equal(missing.driver, false);
  assert.match(missing.reason ?? "", /no NVIDIA driver: .*no-such-nvidia-smi/);
  // nvidia-smi(1): exit 9 when the driver is not loaded, with its message on stdout.
  smi.use("driver_error.csv", 9);
  const failing = await scanGpus({ nvidiaSmi: smi.bin });
  assert.equal(failing.driver, false);
  assert.match(
    failing.reason ?? "",
    /^no NVIDIA driver: .*nvidia-smi failed \(exit 9\): NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver/,
  );
});

Deno.test("scanGpus: 'No devices were found' (exit 6) is a driver with no GPUs, not a missing driver", async () => {
  await using smi = await fakeNvidiaSmi("no_devices.csv");
  smi.use("no_devices.csv", 6);
  const none = await scanGpus({ nvidiaSmi: smi.bin });
  assert.equal(none.driver, true);
  assert.deepEqual(none.gpus, []);
  assert.match(
    none.reason ?? "",
    /the NVIDIA driver reports no GPUs \(.*nvidia-smi: No devices were found\)/,
  );
  const ad = advertiseDevices(undefined, { gpu: none, tpu: { chips: [] } });
  assert.equal(ad.accelerator, undefined);
  assert.match(ad.reason ?? "", /No devices were found/);
});

Deno.test("MIG: a GPU in MIG mode is not handed out whole; nvidia-smi -L names its MIG devices", async () => {
  const list = parseNvidiaSmiList(fixture("a100x2_mig.L.txt"));
  assert.deepEqual(list.map((g) => [g.index, g.mig.length]), [[0, 3], [1, 0]]);
  assert.deepEqual(list[0]?.mig[0], {
    profile: "3g.20gb",
    device: 0,
    uuid: "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f",
  });
  assert.equal(list[1]?.uuid, "GPU-3a1c4bd8-0f2e-4d8a-9d51-7c64f0b6e1a2");
  await using smi = await fakeNvidiaSmi("a100x2_mig.csv");
  const scan = await scanGpus({ nvidiaSmi: smi.bin });
  assert.equal(scan.driver, true);
  assert.equal(scan.gpus[0]?.mig, true);
  assert.equal(scan.gpus[0]?.utilizationPercent, undefined, "[N/A] in MIG mode");
  assert.match(
    scan.gpus[0]?.problem ?? "",
    /MIG mode is enabled \(Iris hands out whole GPUs: disable it with nvidia-smi -i 0 -mig 0\); 3 MIG devices: 3g\.20gb, 2g\.10gb, 1g\.5gb/,
  );
  assert.equal(scan.gpus[1]?.problem, undefined);
  const ad = advertiseDevices(undefined, { gpu: scan, tpu: { chips: [] } });
  assert.deepEqual(ad.accelerator, { kind: "gpu", variant: "A100", count: 1 });
  assert.deepEqual(ad.devices.map((d) => d.index), [1]);
  assert.match(ad.reason ?? "", /GPU 0: .*MIG mode is enabled/);
});

Deno.test("the fake nvidia-smi refuses what nvidia-smi refuses (unknown fields, other formats)", async () => {
  await using smi = await fakeNvidiaSmi("l4x1.csv");
  const run = async (...args: string[]) => {
    const o = await new Deno.Command(smi.bin, { args, stdout: "piped" }).output();
    return { code: o.code, out: new TextDecoder().decode(o.stdout) };
  };
  const bad = await run("--query-gpu=index,gpu_bogus", "--format=csv,noheader,nounits");
  assert.deepEqual(bad, { code: 2, out: 'Field "gpu_bogus" is not a valid field to query.\n' });
  assert.equal((await run("--query-gpu=index", "--format=csv")).code, 2);
  assert.equal(
    (await run("-L")).out,
    "GPU 0: NVIDIA L4 (UUID: GPU-6c558429-ba5d-4f63-943f-b835196f8d86)\n",
  );
});

Deno.test("scanTpuChips finds /dev/accel* or /dev/vfio/<n> nodes under an injected root", async () => {
  await using accel = await fakeRoot(["accel0", "accel1", "accel2", "accel3"]);
  const a = await scanTpuChips(accel.root, "v4-16");
  assert.deepEqual(a.chips.map((c) => c.index), [0, 1, 2, 3]);
  assert.equal(a.acceleratorType, "v4-16");
  await using vfio = await fakeRoot(["vfio/0", "vfio/1", "vfio/vfio"]);
  assert.equal((await scanTpuChips(vfio.root, "v5litepod-8")).chips.length, 2);
  assert.equal((await scanTpuChips(vfio.root)).chips.length, 0, "vfio alone is no TPU");
  await using none = await fakeRoot([]);
  const n = await scanTpuChips(none.root);
  assert.equal(n.chips.length, 0);
  assert.match(n.reason ?? "", /no TPU chips/);
});

Deno.test("advertiseDevices: detected GPUs become the accelerator; claims beyond the host are refused naming both", async () => {
  await using smi = await fakeNvidiaSmi("a100x4.csv");
  await using root = await fakeRoot([]);
  const found = await detectDevices({ nvidiaSmi: smi.bin, root: root.root });
  const ad = advertiseDevices(undefined, found);
  assert.deepEqual(ad.accelerator, { kind: "gpu", variant: "A100", count: 4 });
  assert.equal(ad.attributes["device-memory-mib"], 40960);
  assert.equal(ad.devices.length, 4);
  assert.throws(
    () => advertiseDevices({ kind: "gpu", variant: "H100", count: 8 }, found),
    (err: Error) =>
      err instanceof FailedPreconditionError && /claims 8× H100/.test(err.message) &&
      /4 healthy GPUs \(4× NVIDIA A100-SXM4-40GB\)/.test(err.message),
  );
  assert.throws(
    () => advertiseDevices({ kind: "gpu", variant: "H100", count: 2 }, found),
    /claims 2× H100 but the host's GPUs are NVIDIA A100/,
  );
  // The failed host: only 2 of its 4 GPUs count.
  smi.use("a100x4_failed.csv");
  const failed = await detectDevices({ nvidiaSmi: smi.bin, root: root.root });
  assert.equal(advertiseDevices(undefined, failed).accelerator?.count, 2);
  assert.throws(
    () => advertiseDevices({ kind: "gpu", variant: "A100", count: 4 }, failed),
    /claims 4× A100 but the host has 2 healthy GPUs.*GPU 2: .*requires reset/,
  );
  // TPU chips.
  await using tpu = await fakeRoot(["accel0", "accel1"]);
  const tpuFound = await detectDevices({
    nvidiaSmi: `${smi.dir}/absent`,
    root: tpu.root,
    tpuAcceleratorType: "v4-16",
  });
  assert.throws(
    () => advertiseDevices({ kind: "tpu", variant: "v4-16", count: 4 }, tpuFound),
    /claims 4 chips of v4-16 but the host has 2 TPU chips/,
  );
  assert.throws(
    () => advertiseDevices({ kind: "tpu", variant: "v5litepod-8", count: 2 }, tpuFound),
    /metadata accelerator-type is v4-16/,
  );
});

Deno.test("advertiseDevices: a host with no driver reports none with a reason; strict refuses a claim there", async () => {
  await using root = await fakeRoot([]);
  const found = await detectDevices({ nvidiaSmi: `${root.root}/absent-smi`, root: root.root });
  const ad = advertiseDevices(undefined, found);
  assert.equal(ad.accelerator, undefined);
  assert.match(ad.reason ?? "", /no NVIDIA driver.*no TPU chips/);
  const lax = advertiseDevices({ kind: "gpu", variant: "H100", count: 8 }, found);
  assert.match(lax.reason ?? "", /not verified/);
  assert.throws(
    () => advertiseDevices({ kind: "gpu", variant: "H100", count: 8 }, found, true),
    /claims 8× H100 but the host has none \(no NVIDIA driver/,
  );
});

Deno.test("DevicePool hands out disjoint devices, takes them back and never reuses a failed one", () => {
  const pool = new DevicePool([0, 1, 2].map((index) => ({ index, uuid: `GPU-${index}` })));
  const a = pool.take("a", 2)!;
  const b = pool.take("b", 1)!;
  assert.deepEqual([...a, ...b].map((d) => d.index), [0, 1, 2]);
  assert.equal(pool.take("c", 1), undefined);
  pool.release("a");
  assert.equal(pool.fail(1, "lost"), undefined);
  assert.equal(pool.fail(2, "lost"), "b");
  assert.equal(pool.healthy, 1);
  assert.deepEqual(pool.take("c", 1)?.map((d) => d.index), [0]);
  assert.deepEqual(deviceEnv("gpu", b, 3), {
    CUDA_VISIBLE_DEVICES: "GPU-2",
    NVIDIA_VISIBLE_DEVICES: "GPU-2",
  });
  assert.deepEqual(deviceEnv("tpu", [{ index: 2 }, { index: 3 }], 4), {
    TPU_VISIBLE_CHIPS: "2,3",
    TPU_PROCESS_BOUNDS: "1,1,1",
    TPU_CHIPS_PER_PROCESS_BOUNDS: "1,2,1",
  });
  assert.deepEqual(deviceEnv("tpu", [0, 1, 2, 3].map((index) => ({ index })), 4), {});
});

Deno.test("startWorker refuses a claim of more GPUs than the host has, naming both", async () => {
  await using smi = await fakeNvidiaSmi("a100x4.csv");
  await using fake = new FakeController();
  await assert.rejects(
    startWorker({
      controllerUrl: fake.url,
      resources: {
        cpuMillicores: 1000,
        memoryBytes: 1024 ** 3,
        accelerator: { kind: "gpu", variant: "H100", count: 8 },
      },
      devices: { nvidiaSmi: smi.bin, root: smi.dir },
    }),
    /claims 8× H100 but the host has 4 healthy GPUs/,
  );
});

Deno.test("two 1-GPU tasks on a fake 8-GPU host see disjoint GPUs; heartbeats carry device use; a GPU lost mid-run fails its attempt and lowers capacity", async () => {
  await using smi = await fakeNvidiaSmi("h100x8.csv");
  await using h = await startHarness({
    devices: { nvidiaSmi: smi.bin, root: smi.dir, healthInterval: ms(100) },
  });
  await h.worker.registered;
  const reg = h.fake.registrations[0]!;
  assert.equal(reg.resources?.accelerator?.type, AcceleratorType.GPU);
  assert.equal(reg.resources?.accelerator?.variant, "H100");
  assert.equal(reg.resources?.accelerator?.count, 8);
  const attr = reg.attributes["device-memory-mib"]?.kind;
  assert.equal(attr?.case === "intValue" ? Number(attr.value) : 0, 81559);
  const gpu1 = { accelerator: { type: AcceleratorType.GPU, variant: "H100", count: 1 } };
  const script = 'echo "cuda=$CUDA_VISIBLE_DEVICES nvidia=$NVIDIA_VISIBLE_DEVICES"; sleep 60';
  for (const id of ["/u/g/0", "/u/g/1"]) {
    const res = await h.client.runTask(
      commandTask(id, ["sh", "-c", script], { resources: gpu1 }),
    );
    assert.equal(res.accepted, true, res.error);
  }
  const seen = await waitFor(() => {
    const lines = ["/u/g/0", "/u/g/1"].map((id) =>
      h.fake.logsOf(id).find((l) => l.text.startsWith("cuda="))?.text
    );
    return lines.every(Boolean) ? lines as string[] : undefined;
  }, { timeout: seconds(20), what: "both tasks to print their devices" });
  const sets = seen.map((l) => /cuda=(\S+) nvidia=(\S+)/.exec(l)!);
  assert.equal(sets[0]![1], sets[0]![2]);
  assert.notEqual(sets[0]![1], sets[1]![1]);
  assert.match(sets[0]![1]!, /^GPU-[0-9a-f-]{36}$/);
  const uuids = parseNvidiaSmi(fixture("h100x8.csv")).gpus.map((g) => g.uuid);
  // Lowest free first: the first task holds GPU 0, the second GPU 1.
  assert.deepEqual(sets.map((s) => s[1]), [uuids[0], uuids[1]]);

  // Task 0 loads GPU 0: the heartbeat carries per-device use and the task's GPU memory.
  smi.use("h100x8_busy.csv");
  const MiB = 1024 * 1024;
  const busy = await waitFor(
    () =>
      h.fake.heartbeats.map((hb) => hb.snapshot).find((s) =>
        s?.devices[0]?.utilizationPercent === 97
      ),
    { timeout: seconds(10), what: "a heartbeat with GPU 0 busy" },
  );
  assert.equal(busy.devices.length, 8);
  assert.equal(busy.devices[0]?.memoryUsedBytes, 40000 * MiB);
  assert.equal(busy.devices[0]?.memoryTotalBytes, 81559 * MiB);
  const usage0 = busy.tasks.find((t) => t.taskId === "/u/g/0");
  assert.equal(usage0?.deviceMemoryBytes, 40000 * MiB);
  assert.equal(busy.tasks.find((t) => t.taskId === "/u/g/1")?.deviceMemoryBytes, 0);

  // GPU 1 falls off the bus (Xid 79): nvidia-smi can no longer reach it.
  smi.use("h100x8_gpu1_lost.csv", 15);
  const failed = await h.fake.waitForState("/u/g/1", TaskState.WORKER_FAILED, seconds(20));
  assert.match(failed.error, /GPU 1 \(GPU-[0-9a-f-]+\) failed: no longer listed by nvidia-smi/);
  assert.equal(h.fake.updatesOf("/u/g/0").some((u) => u.state === TaskState.WORKER_FAILED), false);
  // Capacity went down: the worker registers again at once, offering 7 GPUs.
  const again = await waitFor(() => h.fake.registrations[1], {
    timeout: seconds(10),
    what: "a second registration",
  });
  assert.equal(again.resources?.accelerator?.count, 7);
  // GPU 0 is idle again; task 0's peak GPU memory stays.
  const idle = await waitFor(
    () =>
      h.fake.heartbeats.map((hb) => hb.snapshot).findLast((s) =>
        s?.devices.length === 7 && s.tasks.some((t) => t.taskId === "/u/g/0")
      ),
    { timeout: seconds(10), what: "a heartbeat after GPU 1 was lost" },
  );
  const after0 = idle.tasks.find((t) => t.taskId === "/u/g/0");
  assert.equal(after0?.deviceMemoryBytes, 0);
  assert.equal(after0?.peakDeviceMemoryBytes, 40000 * MiB);
  // Six free healthy GPUs remain (GPU 0 is held): a 7-GPU task is refused.
  const big = await h.client.runTask(
    commandTask("/u/big/0", ["true"], {
      resources: { accelerator: { type: AcceleratorType.GPU, variant: "H100", count: 7 } },
    }),
  );
  assert.equal(big.accepted, false);
  assert.match(big.error, /needs 7 GPU devices, 6 free on this worker \(1 failed\)/);
  await h.client.killTask({ taskId: "/u/g/0", attemptId: 0, reason: "done" });
  await h.fake.waitForState("/u/g/0", TaskState.KILLED);
});
