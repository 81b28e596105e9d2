/**
 * Rules of the platform layer, checked on the source: command.ts is the only caller of
 * Deno.Command, and nothing in src/platform imports src/controller.
 * @module
 */
import assert from "node:assert/strict";

const PLATFORM_DIR = new URL("../../src/platform/", import.meta.url);

async function sources(): Promise<{ name: string; text: string }[]> {
  const files: { name: string; text: string }[] = [];
  for await (const e of Deno.readDir(PLATFORM_DIR)) {
    if (e.isFile && e.name.endsWith(".ts")) {
      files.push({ name: e.name, text: await Deno.readTextFile(new URL(e.name, PLATFORM_DIR)) });
    }
  }
  return files;
}

Deno.test("only command.ts spawns processes in src/platform", async () => {
  const offenders = (await sources())
    .filter((f) => f.name !== "command.ts" && /new Deno\.Command\b|Deno\.run\(/.test(f.text))
    .map((f) => f.name);
  assert.deepEqual(offenders, []);
});

Deno.test("src/platform never imports src/controller", async () => {
  const offenders = (await sources())
    .filter((f) =>
      /from\s+["'][^"']*\/controller\//.test(f.text) ||
      /import\(["'][^"']*\/controller\//.test(f.text)
    )
    .map((f) => f.name);
  assert.deepEqual(offenders, []);
});
