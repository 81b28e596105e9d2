/** `--gpu [TYPE:]N`, `--tpu VARIANT`, `--accelerator-count N` (#19). */
import assert from "node:assert/strict";
import { parseAcceleratorFlags } from "../../src/cli/accelerator_flags.ts";
import { UsageError } from "../../src/cli/args.ts";

Deno.test("--gpu N, --gpu TYPE:N and --gpu TYPE become a GPU request", () => {
  assert.deepEqual(parseAcceleratorFlags({ gpu: "1" }), { kind: "gpu", count: 1 });
  assert.deepEqual(parseAcceleratorFlags({ gpu: "H100:8" }), {
    kind: "gpu",
    variant: "H100",
    count: 8,
  });
  assert.deepEqual(parseAcceleratorFlags({ gpu: "A100" }), {
    kind: "gpu",
    variant: "A100",
    count: 1,
  });
  assert.deepEqual(parseAcceleratorFlags({ gpu: "L4", acceleratorCount: "2" }), {
    kind: "gpu",
    variant: "L4",
    count: 2,
  });
  assert.deepEqual(parseAcceleratorFlags({ gpu: "H100:4", acceleratorCount: "4" })?.count, 4);
});

Deno.test("--tpu VARIANT with an optional --accelerator-count; no flags, no accelerator", () => {
  assert.deepEqual(parseAcceleratorFlags({ tpu: "v5litepod-16" }), {
    kind: "tpu",
    variant: "v5litepod-16",
  });
  assert.deepEqual(parseAcceleratorFlags({ tpu: "v4-8", acceleratorCount: "4" }), {
    kind: "tpu",
    variant: "v4-8",
    count: 4,
  });
  assert.equal(parseAcceleratorFlags({}), undefined);
});

Deno.test("bad accelerator flags are usage errors naming the flag", () => {
  const cases: [Parameters<typeof parseAcceleratorFlags>[0], RegExp][] = [
    [{ gpu: "0" }, /--gpu must be a count.*from 1 to 1024 \(got "0"\)/],
    [{ gpu: "H100:x" }, /--gpu must be a count, a variant or VARIANT:COUNT/],
    [{ gpu: "8:H100" }, /--gpu must be a count, a variant or VARIANT:COUNT/],
    [{ gpu: "" }, /--gpu must be a count, a variant or VARIANT:COUNT/],
    [{ gpu: "H100:2000" }, /--gpu must be a count.*from 1 to 1024/],
    [{ gpu: "1", tpu: "v4-8" }, /--gpu and --tpu cannot be combined/],
    [{ acceleratorCount: "2" }, /--accelerator-count needs --gpu or --tpu/],
    [{ tpu: "v4-8", acceleratorCount: "-1" }, /--accelerator-count must be a whole number/],
    [{ gpu: "H100:8", acceleratorCount: "4" }, /asks for 8 GPUs but --accelerator-count says 4/],
    [{ tpu: " " }, /--tpu must name a TPU variant/],
  ];
  for (const [flags, re] of cases) {
    assert.throws(() => parseAcceleratorFlags(flags), (e: Error) => {
      assert.ok(e instanceof UsageError, String(e));
      assert.match(e.message, re);
      return true;
    });
  }
});

Deno.test("iris job run refuses a bad --gpu before contacting the controller", async () => {
  const { main } = await import("../../src/cli/main.ts");
  const err: string[] = [];
  const code = await main(
    ["job", "run", "--gpu", "H100:0", "--controller", "http://127.0.0.1:9", "--", "true"],
    { out: () => {}, err: (s) => err.push(s), isTty: false },
    new AbortController().signal,
  );
  assert.equal(code, 2, err.join(""));
  assert.match(err.join(""), /--gpu must be a count, a variant or VARIANT:COUNT.*\(got "H100:0"\)/);
});
