/**
 * IgnoreRules: the gitignore-like matcher behind `.irisignore`.
 * @module
 */
import assert from "node:assert/strict";
import { ALWAYS_IGNORED, IgnoreRules } from "../../src/bundle/mod.ts";

function check(rules: string, cases: [path: string, isDir: boolean, ignored: boolean][]): void {
  const parsed = IgnoreRules.parse(rules);
  for (const [path, isDir, ignored] of cases) {
    assert.equal(
      parsed.ignores(path, isDir),
      ignored,
      `${JSON.stringify(rules)} on ${path}${isDir ? "/" : ""}`,
    );
  }
}

Deno.test("ignore: comments, blanks and escapes", () => {
  assert.equal(IgnoreRules.parse("# comment\n\n   \n").size, 0);
  check("\\#hash\n\\!bang\ntrail   \n", [["#hash", false, true], ["!bang", false, true], [
    "trail",
    false,
    true,
  ]]);
});

Deno.test("ignore: unanchored names match at any depth; anchored ones from the root", () => {
  check("*.log\n/rooted\nsub/exact.txt", [
    ["a.log", false, true],
    ["deep/er/a.log", false, true],
    ["a.log.txt", false, false],
    ["rooted", false, true],
    ["x/rooted", false, false],
    ["sub/exact.txt", false, true],
    ["x/sub/exact.txt", false, false],
  ]);
});

Deno.test("ignore: trailing slash matches directories only", () => {
  check("build/", [["build", true, true], ["build", false, false], ["a/build", true, true]]);
});

Deno.test("ignore: ** forms", () => {
  check("**/cache\nlogs/**\na/**/z", [
    ["cache", true, true],
    ["x/y/cache", false, true],
    ["logs", true, false],
    ["logs/x/y", false, true],
    ["a/z", false, true],
    ["a/b/c/z", false, true],
    ["b/a/z", false, false],
  ]);
});

Deno.test("ignore: ?, classes and negation (last match wins)", () => {
  check("file?.txt\n[abc].md\n[!x]y\n*.log\n!keep.log", [
    ["file1.txt", false, true],
    ["file10.txt", false, false],
    ["b.md", false, true],
    ["d.md", false, false],
    ["ay", false, true],
    ["xy", false, false],
    ["a.log", false, true],
    ["keep.log", false, false],
  ]);
  check("!keep.log\n*.log", [["keep.log", false, true]]);
});

Deno.test("ignore: wildcards never cross a slash; regex metacharacters are literal", () => {
  check("a*b\nc?d\n(x)+.txt", [["axxb", false, true], ["c/d", false, false], [
    "(x)+.txt",
    false,
    true,
  ], [
    "xx.txt",
    false,
    false,
  ]]);
  check("/a*b", [["a/b", false, false], ["ab", false, true]]);
});

Deno.test("ignore: .git, node_modules and .iris are always ignored, even when negated", () => {
  assert.deepEqual([...ALWAYS_IGNORED], [".git", "node_modules", ".iris"]);
  check("!.git\n!node_modules/\n!.iris", [
    [".git", true, true],
    [".git", false, true],
    ["pkg/node_modules", true, true],
    [".iris", true, true],
    ["src/.gitignore", false, false],
  ]);
});
