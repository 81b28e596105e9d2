/**
 * The label prefix default is resolved once, when the config is loaded: the loaded config carries
 * it, every consumer reads it from there, and no module keeps a fallback of its own.
 */
import { assertEquals, assertMatch } from "../_helpers/assert.ts";
import { create } from "@bufbuild/protobuf";
import { labelPrefixOf, loadConfig, parseConfig } from "../../src/config/mod.ts";
import { ConfigError } from "../../src/errors.ts";
import { ClusterConfigSchema } from "../../src/rpc/gen/iris/v1/config_pb.ts";
import { createControllerLifecycle } from "../../src/cluster/lifecycle.ts";
import { platformFromConfig } from "../../src/cluster/platforms.ts";
import { ScriptedRunner } from "../fakes/scripted_runner.ts";

const SRC = new URL("../../src/", import.meta.url).pathname;
const GCP = new URL("../../examples/gcp.yaml", import.meta.url).pathname;

Deno.test("the loaded config has the label prefix resolved: default iris, or the configured one", async () => {
  const local = parseConfig(
    "controller: {local: {}}\nscale_groups:\n  cpu: {provider: {local: }, max_slices: 1}\n",
    "dev.yaml",
  );
  assertEquals(local.platform?.labelPrefix, "iris");
  assertEquals(labelPrefixOf(local), "iris");
  const gcp = await loadConfig(GCP);
  assertEquals(labelPrefixOf(gcp), "iris");
  const text = (await Deno.readTextFile(GCP)).replace("label_prefix: iris", "label_prefix: team-a");
  assertEquals(labelPrefixOf(parseConfig(text, "gcp.yaml")), "team-a");
});

Deno.test("consumers use the loaded prefix: controller VM name and slice labels follow it", async () => {
  const text = (await Deno.readTextFile(GCP)).replace("label_prefix: iris", "label_prefix: team-a");
  const config = parseConfig(text, "gcp.yaml");
  const runner = new ScriptedRunner().on(["gcloud"], { stdout: "[]" });
  await createControllerLifecycle(config, { runner }).discover();
  const platform = platformFromConfig(config, { runner });
  await platform.listSlices({});
  const calls = runner.transcript();
  assertMatch(calls, /labels\.team-a-controller=true/);
  assertMatch(calls, /labels\.team-a-managed=true/);
  assertEquals(/labels\.iris-/.test(calls), false, calls);
  await platform.shutdown();
});

Deno.test("a config that skipped the loader is refused with the field named, not defaulted", () => {
  const raw = create(ClusterConfigSchema, {});
  try {
    labelPrefixOf(raw);
    throw new Error("expected a ConfigError");
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    assertMatch(err.message, /platform\.label_prefix/);
  }
});

Deno.test('no module under src/ keeps its own `|| "iris"` / `?? "iris"` label prefix fallback', async () => {
  const offenders: string[] = [];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const path = `${dir}${e.name}`;
      if (e.isDirectory && e.name !== "gen") await walk(`${path}/`);
      else if (e.isFile && e.name.endsWith(".ts")) {
        const lines = (await Deno.readTextFile(path)).split("\n");
        lines.forEach((line, i) => {
          if (/(\|\||\?\?)\s*"iris"/.test(line)) offenders.push(`${path}:${i + 1}: ${line.trim()}`);
        });
      }
    }
  };
  await walk(SRC);
  assertEquals(offenders, []);
});
