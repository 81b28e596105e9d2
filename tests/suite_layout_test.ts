/**
 * The suite's layout, which `deno task test` (scripts/all_checks.ts) relies on: `deno test` with
 * `.` collects every file named `test.ts`, `*_test.ts` or `*.test.ts` (any JS/TS extension), so
 * such a file outside tests/ would be run as a test (scripts/test.ts once ran the whole suite
 * inside itself). And the slowest files it starts first exist.
 */
import { assertEquals } from "./_helpers/assert.ts";

const ROOT = new URL("../", import.meta.url);
const TEST_NAME = /^(?:.*[_.])?test\.(?:ts|tsx|mts|cts|js|jsx|mjs|cjs)$/;
const SKIP_DIRS = new Set(["node_modules", "dist", ".git", "smoke-logs", "bench/results"]);

async function testNamedFiles(dir: URL, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const path = `${rel}${e.name}`;
    if (e.isDirectory) {
      if (SKIP_DIRS.has(path) || SKIP_DIRS.has(e.name)) continue;
      out.push(...await testNamedFiles(new URL(`${e.name}/`, dir), `${path}/`));
    } else if (e.isFile && TEST_NAME.test(e.name)) out.push(path);
  }
  return out;
}

Deno.test("only files under tests/ are named like tests (deno test . would run any other)", async () => {
  const stray = (await testNamedFiles(ROOT)).filter((p) => !p.startsWith("tests/"));
  assertEquals(stray, [], "rename these (e.g. scripts/all_checks.ts) or move them under tests/");
});

Deno.test("scripts/all_checks.ts starts files that exist and are tests", async () => {
  const source = await Deno.readTextFile(new URL("scripts/all_checks.ts", ROOT));
  const list = /const SLOWEST = \[([^\]]*)\]/.exec(source)?.[1] ?? "";
  const files = [...list.matchAll(/"([^"]+)"/g)].map((m) => m[1]!);
  assertEquals(files.length > 0, true, "SLOWEST lists files");
  for (const f of files) {
    const info = await Deno.stat(new URL(f, ROOT)).catch(() => undefined);
    assertEquals([f, info?.isFile, TEST_NAME.test(f.split("/").pop()!)], [f, true, true]);
  }
});
