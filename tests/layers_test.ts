/**
 * Enforced layers (#21): every import between units of `src/` follows the "Allowed imports" table
 * of docs/architecture.md, and goes into another folder through its `mod.ts` (or a listed entry
 * point). The checker is tests/_helpers/layers.ts; the unit tests below feed it bad graphs, so a
 * checker that lets everything through fails here too.
 * @module
 */
import {
  checkLayers,
  type ImportEdge,
  importsOf,
  parseRules,
  readImportGraph,
  readRules,
} from "./_helpers/layers.ts";
import { assert, assertEquals } from "./_helpers/assert.ts";

const ROOT = new URL("../", import.meta.url);
const edge = (from: string, to: string): ImportEdge => ({ from, to, typeOnly: false });

Deno.test("layers: every import in src/ follows docs/architecture.md", async () => {
  const [rules, graph] = await Promise.all([readRules(ROOT), readImportGraph(ROOT)]);
  assert(graph.length > 500, `read only ${graph.length} imports: is the scanner broken?`);
  const violations = checkLayers(graph, rules).map((v) => `${v.rule}: ${v.message}`);
  assertEquals(violations, [], `\n${violations.join("\n")}`);
});

Deno.test("layers: src/platform never imports src/controller or src/cluster", async () => {
  const rules = await readRules(ROOT);
  const platform = rules.allowed.get("platform");
  assert(platform !== undefined, "the table has a platform row");
  assert(!platform.has("controller") && !platform.has("cluster"), [...platform].join(", "));
});

Deno.test("layers: the local platform may start a worker, but src/worker never imports src/platform", async () => {
  const rules = await readRules(ROOT);
  const v = checkLayers([
    edge("platform/local_worker_entry.ts", "worker/mod.ts"),
    edge("worker/devices.ts", "platform/mod.ts"),
    edge("worker/devices.ts", "command/mod.ts"),
    edge("worker/kube_task.ts", "kube/mod.ts"),
  ], rules);
  assertEquals(v.map((x) => `${x.rule}: ${x.message}`).length, 1, v.map((x) => x.message).join());
  assertEquals(v[0]!.rule, "direction");
  assert(v[0]!.message.includes("worker may not import platform"), v[0]!.message);
});

const RULES = parseRules(`
# Some doc

## Allowed imports

| unit         | may import        | entry points |
| ------------ | ----------------- | ------------ |
| \`worker\`     | \`rpc\` \`time\`      | —            |
| \`dashboard\`  | \`rpc\`             | —            |
| \`controller\` | \`worker\` \`rpc\`    | —            |
| \`platform\`   | \`rpc\`             | —            |
| \`rpc\`        | —                 | \`gen/\`       |
| \`time\`       | —                 | —            |

## Next section
`);

Deno.test("layers checker: an import against the allowed direction fails", () => {
  const bad = [
    edge("worker/worker.ts", "dashboard/mod.ts"),
    edge("rpc/server.ts", "time.ts"),
    edge("platform/local.ts", "controller/mod.ts"),
  ];
  const v = checkLayers(bad, RULES);
  assertEquals(v.map((x) => x.rule), ["direction", "direction", "direction"]);
  assert(v[0]!.message.includes("worker may not import dashboard"), v[0]!.message);
  assert(v[2]!.message.includes("platform may not import controller"), v[2]!.message);
});

Deno.test("layers checker: a deep import into another folder fails; mod.ts and entry points pass", () => {
  const v = checkLayers([
    edge("controller/service.ts", "worker/attempt.ts"),
    edge("controller/service.ts", "worker/mod.ts"),
    edge("controller/sub/x.ts", "rpc/gen/iris/v1/types_pb.ts"),
    edge("worker/a.ts", "worker/sub/b.ts"), // inside one unit: anything goes
    edge("worker/a.ts", "time.ts"), // a file unit has no mod.ts
  ], RULES);
  assertEquals(v.length, 1, v.map((x) => x.message).join("\n"));
  assertEquals(v[0]!.rule, "entry point");
  assert(v[0]!.message.includes("import worker/mod.ts"), v[0]!.message);
});

Deno.test("layers checker: a unit missing from the table fails", () => {
  const v = checkLayers([edge("newthing/a.ts", "rpc/mod.ts")], RULES);
  assertEquals(v.map((x) => x.rule), ["unknown unit"]);
});

Deno.test("layers rules: a malformed table is an error naming the problem", () => {
  const fails = (md: string, re: RegExp) => {
    let msg = "";
    try {
      parseRules(md);
    } catch (e) {
      msg = e instanceof Error ? e.message : String(e);
    }
    assert(re.test(msg), `expected ${re}, got ${JSON.stringify(msg)}`);
  };
  fails("# nothing here", /no "## Allowed imports" section/);
  fails(
    "## Allowed imports\n\n| u | m | e |\n| - | - | - |\n| `a` | `b` | — |\n",
    /"b", which has no row/,
  );
  fails("## Allowed imports\n\n| u | m | e |\n| - | - | - |\n| `a` | — |\n", /3 cells/);
  fails(
    "## Allowed imports\n\n| u | m | e |\n| - | - | - |\n| `a` | `b` | — |\n| `b` | `a` | — |\n",
    /"a" and "b" may import each other/,
  );
});

Deno.test("layers scanner: finds imports, re-exports and dynamic imports, not comments", () => {
  const found = importsOf(`
    // import { x } from "./commented.ts";
    /* import { y } from "./block.ts"; */
    import { a } from "./a.ts";
    import type { B } from "../b/mod.ts";
    import {
      c,
      d,
    } from "./c.ts";
    export { e } from "./e.ts";
    export * from "./f.ts";
    const g = await import("./g.ts");
    import { h } from "@connectrpc/connect";
  `);
  assertEquals(found.map((f) => f.specifier), [
    "./a.ts",
    "../b/mod.ts",
    "./c.ts",
    "./e.ts",
    "./f.ts",
    "./g.ts",
  ]);
  assertEquals(found[1]!.typeOnly, true);
});
