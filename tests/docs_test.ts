/**
 * CONTRIBUTING.md, docs/architecture.md and docs/performance.md stay true of the code: every repository path they name
 * exists, every `deno task` they name is defined, and the tools they name are exported where they
 * say.
 */
import { assertEquals } from "./_helpers/assert.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DOCS = ["CONTRIBUTING.md", "docs/architecture.md", "docs/performance.md"];

/** Backticked or linked repository paths in a markdown text. */
function pathsIn(text: string): string[] {
  const out = new Set<string>();
  for (const m of text.matchAll(/`([^`\s]+)`|\]\(([^)\s#]+)\)/g)) {
    const p = (m[1] ?? m[2])!.replace(/^\.\.\//, "").replace(/\/$/, "");
    if (
      /^(src|tests|proto|docs|examples|scripts|bench|\.ci)\//.test(p) ||
      /^[\w.-]+\.(md|ts)$/.test(p)
    ) {
      out.add(p);
    }
  }
  return [...out];
}

/** Every file and directory of the repository (without node_modules and .git), relative. */
async function repoPaths(dir = ROOT, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.name === "node_modules" || e.name === ".git") continue;
    const rel = `${prefix}${e.name}`;
    out.push(rel);
    if (e.isDirectory) out.push(...await repoPaths(`${dir}${e.name}/`, `${rel}/`));
  }
  return out;
}

Deno.test("every path CONTRIBUTING.md, docs/architecture.md and docs/performance.md name exists", async () => {
  const all = await repoPaths();
  const exists = (p: string) => {
    const pattern = p.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replaceAll("*", "[^/]*");
    // A bare file name (e.g. `scheduler.ts`) is named inside the folder the sentence is about.
    const re = new RegExp(p.includes("/") ? `^${pattern}$` : `(^|/)${pattern}$`);
    return all.some((a) => re.test(a));
  };
  const missing: string[] = [];
  for (const doc of DOCS) {
    const text = await Deno.readTextFile(`${ROOT}${doc}`);
    for (const p of pathsIn(text)) if (!exists(p)) missing.push(`${doc}: ${p}`);
  }
  assertEquals(missing, []);
});

Deno.test("every deno task CONTRIBUTING.md names is defined in deno.json", async () => {
  const tasks = Object.keys(JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks);
  const text = await Deno.readTextFile(`${ROOT}CONTRIBUTING.md`);
  const named = [...text.matchAll(/deno task (\w+)/g)].map((m) => m[1]!);
  assertEquals(named.filter((t) => !tasks.includes(t)), []);
});

Deno.test("the rules' named tools exist: time utilities, the command seam, labelPrefixOf, connectCluster", async () => {
  const time = await import("../src/time.ts");
  for (const name of ["ms", "seconds", "minutes", "sleep", "waitFor", "Deadline", "Backoff"]) {
    assertEquals(typeof (time as Record<string, unknown>)[name], "function", name);
  }
  const command = await import("../src/command/command.ts");
  assertEquals(typeof command.runAll, "function");
  assertEquals(typeof command.DenoCommandRunner, "function");
  const config = await import("../src/config/mod.ts");
  assertEquals(typeof config.labelPrefixOf, "function");
  const manager = await import("../src/cluster/manager.ts");
  assertEquals(typeof manager.connectCluster, "function");
  const scheduler = await import("../src/controller/scheduler/scheduler.ts");
  assertEquals(typeof scheduler.schedule, "function");
  const autoscaler = await import("../src/controller/autoscaler/autoscaler.ts");
  assertEquals(typeof autoscaler.planScaling, "function");
});
