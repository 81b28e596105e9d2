/** `--as-local`: a gcp or manual config's local variant keeps its groups and says what changed. */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { configMode, loadConfig, loadConfigAsLocal, localVmShare } from "../../src/config/mod.ts";
import { ConfigError } from "../../src/errors.ts";

const example = (name: string) => new URL(`../../examples/${name}`, import.meta.url).pathname;
const machine = { cpuCores: 8, memoryBytes: 32 * 2 ** 30 };

Deno.test("examples/gcp.yaml as local: same groups on local providers, no bundle prefix, machine-sized workers", async () => {
  // The example keeps bundles on the controller; a bucket prefix is added to show it is dropped.
  const dir = await Deno.makeTempDir({ prefix: "as-local-" });
  const path = `${dir}/gcp.yaml`;
  await Deno.writeTextFile(
    path,
    (await Deno.readTextFile(example("gcp.yaml"))).replace(
      "controller:\n",
      "controller:\n  bundle_prefix: gs://my-iris-bucket/eu-west4/bundles\n",
    ),
  );
  const original = await loadConfig(path, { machine });
  const { config, from, changes } = await loadConfigAsLocal(path, { machine }).finally(() =>
    Deno.remove(dir, { recursive: true })
  );
  assertEquals(original.controller?.bundlePrefix, "gs://my-iris-bucket/eu-west4/bundles");
  assertEquals(from, "gcp");
  assertEquals(configMode(config), "local");
  assertEquals(config.name, original.name);
  assertEquals(config.controller?.bundlePrefix, "");
  assertEquals(config.controller?.stateDir, "");
  assertEquals(config.controller?.kind.case === "local" && config.controller.kind.value.port, 0);
  assertEquals(Object.keys(config.scaleGroups), Object.keys(original.scaleGroups));
  for (const [name, g] of Object.entries(config.scaleGroups)) {
    const o = original.scaleGroups[name]!;
    assertEquals(g.provider?.kind.case, "local");
    assertEquals(
      [g.acceleratorType, g.acceleratorVariant, g.minSlices, g.maxSlices, g.priority, g.region],
      [o.acceleratorType, o.acceleratorVariant, o.minSlices, o.maxSlices, o.priority, o.region],
    );
    assertEquals(g.attributes, o.attributes);
    assertEquals(g.vmResources?.accelerator?.count, o.vmResources?.accelerator?.count);
    assertEquals(g.vmResources?.cpuMillicores, localVmShare(machine).cpuMillicores);
  }
  const text = changes.join("\n");
  assertMatch(text, /controller\.gcp → controller\.local/);
  assertMatch(text, /bundle_prefix gs:\/\/my-iris-bucket\/eu-west4\/bundles dropped/);
  assertMatch(text, /scale_groups\.tpu-v5e-16\.provider: tpu → local/);
});

Deno.test("examples/manual.yaml as local keeps each group's slice bound", async () => {
  const original = await loadConfig(example("manual.yaml"), { machine });
  const { config, from } = await loadConfigAsLocal(example("manual.yaml"), { machine });
  assertEquals(from, "manual");
  assertEquals(configMode(config), "local");
  for (const [name, g] of Object.entries(original.scaleGroups)) {
    assertEquals(config.scaleGroups[name]?.maxSlices, g.maxSlices, name);
    assertEquals(config.scaleGroups[name]?.provider?.kind.case, "local");
  }
  assertEquals(config.platform?.ssh, undefined);
});

Deno.test("a local config is unchanged; an invalid file is reported against itself", async () => {
  const local = await loadConfigAsLocal(example("local.yaml"), { machine });
  assertEquals(local.changes, []);
  assertEquals(local.config, await loadConfig(example("local.yaml"), { machine }));
  const dir = await Deno.makeTempDir({ prefix: "as-local-" });
  try {
    const bad = (await Deno.readTextFile(example("gcp.yaml"))).replace(
      "    project_id: my-gcp-project\n",
      "    project_id: my-gcp-project\n    bogus: 1\n",
    );
    await Deno.writeTextFile(`${dir}/gcp.yaml`, bad);
    const err = await loadConfigAsLocal(`${dir}/gcp.yaml`).then(
      () => undefined,
      (e) => e,
    );
    assert(err instanceof ConfigError, String(err));
    assertMatch(err.message, /platform\.gcp\.bogus: unknown key/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
