import assert from "node:assert/strict";
import { tpuTopology, tpuVariants, vmsPerSlice } from "../../src/tpu.ts";

Deno.test("tpuTopology() knows v5litepod-16 is 4 hosts of 4 chips in a 4x4", () => {
  assert.deepEqual(tpuTopology("v5litepod-16"), {
    variant: "v5litepod-16",
    hosts: 4,
    chipsPerHost: 4,
    chips: 16,
    topology: "4x4",
  });
});

Deno.test("tpuTopology() counts TensorCores in v4 names (v4-8 is one host, v4-32 four)", () => {
  assert.deepEqual(tpuTopology("v4-8"), {
    variant: "v4-8",
    hosts: 1,
    chipsPerHost: 4,
    chips: 4,
    topology: "2x2x1",
  });
  assert.deepEqual(tpuTopology("v4-32"), {
    variant: "v4-32",
    hosts: 4,
    chipsPerHost: 4,
    chips: 16,
    topology: "2x2x4",
  });
  assert.equal(tpuTopology("v4-16")?.hosts, 2);
  assert.equal(tpuTopology("v4-4096")?.chips, 2048);
  assert.equal(tpuTopology("v4-4096")?.hosts, 512);
  assert.equal(tpuTopology("v4-4096")?.topology, "8x16x16");
});

Deno.test("tpuTopology() keeps single-host v5e/v6e slices on one host of up to 8 chips", () => {
  for (const family of ["v5litepod", "v6e"]) {
    assert.deepEqual(
      [1, 4, 8].map((
        n,
      ) => [tpuTopology(`${family}-${n}`)?.hosts, tpuTopology(`${family}-${n}`)?.chipsPerHost]),
      [[1, 1], [1, 4], [1, 8]],
    );
    assert.equal(tpuTopology(`${family}-8`)?.topology, "2x4");
    assert.equal(tpuTopology(`${family}-32`)?.hosts, 8);
    assert.equal(tpuTopology(`${family}-256`)?.hosts, 64);
    assert.equal(tpuTopology(`${family}-256`)?.topology, "16x16");
  }
  assert.equal(tpuTopology("v6e-16")?.topology, "4x4");
  assert.equal(tpuTopology("v6e-16")?.hosts, 4);
});

Deno.test("tpuTopology() sizes v5p by cores: v5p-8 one host, v5p-128 a 4x4x4 cube of 16 hosts", () => {
  assert.deepEqual(tpuTopology("v5p-8"), {
    variant: "v5p-8",
    hosts: 1,
    chipsPerHost: 4,
    chips: 4,
    topology: "2x2x1",
  });
  assert.deepEqual(tpuTopology("v5p-128"), {
    variant: "v5p-128",
    hosts: 16,
    chipsPerHost: 4,
    chips: 64,
    topology: "4x4x4",
  });
  assert.equal(tpuTopology("v5p-12288")?.topology, "16x16x24");
});

Deno.test("tpuTopology() accepts v5e alias and any case, rejects unknown variants", () => {
  assert.equal(tpuTopology("V5E-16")?.variant, "v5litepod-16");
  assert.equal(tpuTopology(" v6e-4 ")?.chips, 4);
  for (const bad of ["v5litepod-3", "v4-7", "v4-6", "v9-8", "tpu", "", "v5litepod", "v4-8x"]) {
    assert.equal(tpuTopology(bad), undefined, bad);
  }
});

Deno.test("tpuVariants() lists every known variant and each one resolves", () => {
  const all = tpuVariants();
  assert.ok(all.includes("v4-8") && all.includes("v5litepod-16") && all.includes("v6e-256"));
  for (const v of all) assert.ok(tpuTopology(v), v);
});

Deno.test("vmsPerSlice() is the host count for TPUs and 1 for cpu/gpu", () => {
  assert.equal(vmsPerSlice("tpu", "v5litepod-16"), 4);
  assert.equal(vmsPerSlice("tpu", "v4-8"), 1);
  assert.equal(vmsPerSlice("cpu", ""), 1);
  assert.equal(vmsPerSlice("gpu", "h100"), 1);
  assert.equal(vmsPerSlice("tpu", "v5litepod-17"), undefined);
});
