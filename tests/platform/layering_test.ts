/**
 * Rules of the platform layer, checked on the source: src/command/command.ts is the only caller of
 * Deno.Command among the platform and the command and Kubernetes units below it, and nothing in
 * src/platform imports src/controller.
 * @module
 */
import assert from "node:assert/strict";

const SRC = new URL("../../src/", import.meta.url);

async function sources(dir = "platform"): Promise<{ name: string; text: string }[]> {
  const files: { name: string; text: string }[] = [];
  for await (const e of Deno.readDir(new URL(`${dir}/`, SRC))) {
    if (e.isFile && e.name.endsWith(".ts")) {
      const name = `${dir}/${e.name}`;
      files.push({ name, text: await Deno.readTextFile(new URL(name, SRC)) });
    }
  }
  return files;
}

Deno.test("only src/command/command.ts spawns processes in src/platform, src/command, src/kube", async () => {
  const files = (await Promise.all(["platform", "command", "kube"].map((d) => sources(d)))).flat();
  const spawns = (f: { text: string }) => /new Deno\.Command\b|Deno\.run\(/.test(f.text);
  assert.deepEqual(files.filter(spawns).map((f) => f.name), ["command/command.ts"]);
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
