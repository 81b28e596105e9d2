/**
 * packDirectory: round trips through unpackBundle, determinism, ignore rules, escaping symlinks
 * and size limits.
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { InvalidArgumentError, ResourceExhaustedError } from "../../src/errors.ts";
import { isBundleId, packDirectory, unpackBundle } from "../../src/bundle/mod.ts";

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "iris-pack-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Writes files ("path": text), creating parent directories. */
async function writeTree(root: string, files: Record<string, string>): Promise<void> {
  for (const [path, text] of Object.entries(files)) {
    await Deno.mkdir(join(root, path, ".."), { recursive: true });
    await Deno.writeTextFile(join(root, path), text);
  }
}

/** Every path under `root` (dirs with a trailing "/", symlinks as "path -> target"). */
async function listTree(root: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(join(root, rel))) {
    const path = rel ? `${rel}/${e.name}` : e.name;
    if (e.isSymlink) out.push(`${path} -> ${await Deno.readLink(join(root, path))}`);
    else if (e.isDirectory) out.push(`${path}/`, ...(await listTree(root, path)));
    else out.push(path);
  }
  return out.sort();
}

Deno.test("pack: round trip keeps nested dirs, empty dirs, exec bits and inner symlinks", async () => {
  await withTemp(async (tmp) => {
    const ws = join(tmp, "ws");
    await writeTree(ws, {
      "a/b/c/deep.txt": "deep\n",
      "run.sh": "#!/bin/sh\necho hi\n",
      "data/ünïcode name.txt": "ü\n",
    });
    await Deno.chmod(join(ws, "run.sh"), 0o700);
    await Deno.mkdir(join(ws, "empty"));
    await Deno.symlink("a/b/c/deep.txt", join(ws, "link"));
    await Deno.symlink("../a", join(ws, "data/dirlink"));
    await Deno.symlink(join(ws, "a/b"), join(ws, "abs-inside")); // absolute, inside: stored relative

    const packed = await packDirectory(ws);
    assert.ok(isBundleId(packed.bundleId));
    assert.equal(packed.sizeBytes, packed.data.length);
    assert.equal(packed.files, 6);
    assert.equal(packed.unpackedBytes, 5 + 18 + 3);

    const out = join(tmp, "out");
    assert.deepEqual(await unpackBundle(packed.data, out), { files: 6, bytes: 26, cached: false });
    assert.deepEqual(await listTree(out), [
      "a/",
      "a/b/",
      "a/b/c/",
      "a/b/c/deep.txt",
      "abs-inside -> a/b",
      "data/",
      "data/dirlink -> ../a",
      "data/ünïcode name.txt",
      "empty/",
      "link -> a/b/c/deep.txt",
      "run.sh",
    ]);
    assert.equal(await Deno.readTextFile(join(out, "link")), "deep\n");
    assert.equal(await Deno.readTextFile(join(out, "data/dirlink/b/c/deep.txt")), "deep\n");
    assert.equal((await Deno.stat(join(out, "run.sh"))).mode! & 0o777, 0o755);
    assert.equal((await Deno.stat(join(out, "a/b/c/deep.txt"))).mode! & 0o777, 0o644);
    assert.equal((await Deno.stat(join(out, "empty"))).mode! & 0o777, 0o755);
  });
});

Deno.test("pack: the same tree gives the same id; content changes give a new one", async () => {
  await withTemp(async (tmp) => {
    await writeTree(tmp, { "x.txt": "x", "sub/y.txt": "y" });
    const first = await packDirectory(tmp);
    // mtimes and permission bits other than "executable" are not part of the bundle.
    await Deno.utime(join(tmp, "x.txt"), 1, 1);
    await Deno.chmod(join(tmp, "sub/y.txt"), 0o600);
    const second = await packDirectory(tmp);
    assert.equal(second.bundleId, first.bundleId);
    assert.deepEqual(second.data, first.data);

    await Deno.writeTextFile(join(tmp, "x.txt"), "X");
    const edited = await packDirectory(tmp);
    assert.notEqual(edited.bundleId, first.bundleId);
    await Deno.chmod(join(tmp, "x.txt"), 0o755);
    assert.notEqual((await packDirectory(tmp)).bundleId, edited.bundleId);
  });
});

Deno.test("pack: .irisignore rules and the always-ignored directories", async () => {
  await withTemp(async (tmp) => {
    const ws = join(tmp, "ws");
    await writeTree(ws, {
      ".irisignore": [
        "# build output",
        "",
        "*.log",
        "!keep.log",
        "build/",
        "/rooted.txt",
        "**/cache",
        "docs/**/*.tmp",
        "!node_modules/",
      ].join("\n"),
      "main.ts": "",
      "x.log": "",
      "keep.log": "",
      "sub/y.log": "",
      "build/out.js": "",
      "sub/build": "a file named build is not a directory",
      "rooted.txt": "",
      "sub/rooted.txt": "",
      "a/b/cache/z": "",
      "cache/z": "",
      "docs/a/b/x.tmp": "",
      "docs/a/b/x.md": "",
      ".git/HEAD": "",
      "node_modules/m/index.js": "",
      "sub/node_modules/m/index.js": "",
      ".iris/state": "",
    });
    const packed = await packDirectory(ws);
    const out = join(tmp, "out");
    await unpackBundle(packed.data, out);
    assert.deepEqual(await listTree(out), [
      ".irisignore",
      "a/",
      "a/b/",
      "docs/",
      "docs/a/",
      "docs/a/b/",
      "docs/a/b/x.md",
      "keep.log",
      "main.ts",
      "sub/",
      "sub/build",
      "sub/rooted.txt",
    ]);
  });
});

Deno.test("pack: a custom ignore file; ignored special files and outside links are skipped", async () => {
  await withTemp(async (tmp) => {
    await writeTree(tmp, { "keep.txt": "", "secret.env": "", "rules.txt": "*.env\nescape\n" });
    await Deno.symlink("../../etc/passwd", join(tmp, "escape"));
    const packed = await packDirectory(tmp, { ignoreFile: "rules.txt" });
    const out = join(tmp, "out");
    await unpackBundle(packed.data, join(tmp, "out"));
    assert.deepEqual(await listTree(out), ["keep.txt", "rules.txt"]);
    await assert.rejects(
      packDirectory(tmp, { ignoreFile: "missing.txt" }),
      /ignore_file: .*missing\.txt does not exist/,
    );
  });
});

Deno.test("pack: symlinks pointing outside the tree are rejected, naming the path", async () => {
  await withTemp(async (tmp) => {
    const ws = join(tmp, "ws");
    await writeTree(ws, { "lib/ok.ts": "", [join("..", "outside.txt")]: "secret" });
    await Deno.symlink("../../outside.txt", join(ws, "lib/escape"));
    const err = await packDirectory(ws).catch((e: unknown) => e);
    assert.ok(err instanceof InvalidArgumentError, String(err));
    assert.match(
      err.message,
      /symlink "lib\/escape" -> "..\/..\/outside.txt" points outside the workspace/,
    );

    await Deno.remove(join(ws, "lib/escape"));
    await Deno.symlink("/etc/passwd", join(ws, "lib/abs"));
    await assert.rejects(packDirectory(ws), /symlink "lib\/abs" -> "\/etc\/passwd" points outside/);

    // Inside lexically, outside once the other link is followed.
    await Deno.remove(join(ws, "lib/abs"));
    await Deno.symlink("..", join(ws, "lib/up"));
    await Deno.symlink("up/..", join(ws, "lib/sneaky"));
    await assert.rejects(
      packDirectory(ws),
      /workspace: "lib\/sneaky": symlink target "up\/.." resolves outside/,
    );
  });
});

Deno.test("pack: too large or too many files is ResourceExhausted naming size and limit", async () => {
  await withTemp(async (tmp) => {
    await writeTree(tmp, { "big.bin": "x".repeat(3000), "small.txt": "y" });
    const err = await packDirectory(tmp, { maxBytes: 2048 }).catch((e: unknown) => e);
    assert.ok(err instanceof ResourceExhaustedError, String(err));
    assert.match(
      err.message,
      /workspace is 3001 B; largest entries: big\.bin \(3000 B\), small\.txt \(1 B\); largest files: big\.bin \(3000 B\), small\.txt \(1 B\), over the 2048 B/,
    );
    await assert.rejects(
      packDirectory(tmp, { maxFiles: 1 }),
      /more than 1 files, directories and symlinks/,
    );
    assert.equal((await packDirectory(tmp, { maxBytes: 3001 })).files, 2);
  });
});

Deno.test({
  name: "pack: fifos are rejected unless ignored",
  ignore: Deno.build.os === "windows",
  async fn() {
    await withTemp(async (tmp) => {
      const made = await new Deno.Command("mkfifo", { args: [join(tmp, "pipe")] }).output().catch(
        () => null,
      );
      if (!made?.success) return;
      await assert.rejects(packDirectory(tmp), /"pipe" is a socket, fifo or device/);
      await Deno.writeTextFile(join(tmp, ".irisignore"), "pipe\n");
      assert.equal((await packDirectory(tmp)).files, 1);
    });
  },
});

Deno.test({
  name: "pack: GNU tar reads our bundles and we read GNU tar's",
  ignore: Deno.build.os === "windows",
  async fn() {
    await withTemp(async (tmp) => {
      const long = "d".repeat(120);
      const ws = join(tmp, "ws");
      await writeTree(ws, { [`${long}/${"f".repeat(150)}.txt`]: "long\n", "x.sh": "#!/bin/sh\n" });
      await Deno.symlink(`${long}/${"f".repeat(150)}.txt`, join(ws, "l"));
      const packed = await packDirectory(ws);
      await Deno.writeFile(join(tmp, "b.tgz"), packed.data);
      await Deno.mkdir(join(tmp, "gnu"));
      const x = await new Deno.Command("tar", {
        args: ["xzf", join(tmp, "b.tgz"), "-C", join(tmp, "gnu")],
      })
        .output().catch(() => null);
      if (!x) return; // no tar binary here
      assert.ok(x.success, new TextDecoder().decode(x.stderr));
      assert.deepEqual(await listTree(join(tmp, "gnu")), await listTree(ws));

      const c = await new Deno.Command("tar", {
        args: ["czf", join(tmp, "gnu.tgz"), "-C", ws, "."],
      }).output();
      assert.ok(c.success);
      await unpackBundle(await Deno.readFile(join(tmp, "gnu.tgz")), join(tmp, "ours"));
      assert.deepEqual(await listTree(join(tmp, "ours")), await listTree(ws));
    });
  },
});

Deno.test("pack: long paths and link targets round trip (ustar prefix split and pax headers)", async () => {
  await withTemp(async (tmp) => {
    const ws = join(tmp, "ws");
    const split = `${"p".repeat(90)}/${"q".repeat(90)}.txt`; // > 100 bytes, fits prefix + name
    const pax = `${"r".repeat(200)}/${"s".repeat(200)}/${"é".repeat(60)}.txt`; // needs a pax path
    await writeTree(ws, { [split]: "split\n", [pax]: "pax\n" });
    await Deno.symlink(pax, join(ws, "long-link"));
    const out = join(tmp, "out");
    await unpackBundle((await packDirectory(ws)).data, out);
    assert.deepEqual(await listTree(out), await listTree(ws));
    assert.equal(await Deno.readTextFile(join(out, "long-link")), "pax\n");
  });
});

Deno.test("pack: Python defaults and .gitignore files (nested, relative) are honoured; .irisignore re-includes", async () => {
  await withTemp(async (tmp) => {
    const ws = join(tmp, "ws");
    await writeTree(ws, {
      "train.py": "print(1)",
      ".venv/bin/python": "x",
      "pkg/__pycache__/m.cpython-312.pyc": "x",
      "pkg/m.py": "x",
      "pkg/old.pyc": "x",
      "nb/.ipynb_checkpoints/a.ipynb": "x",
      "wandb/run-1/log": "x",
      ".gitignore": "data/\n*.log\n",
      "data/big.bin": "x",
      "keep.log": "x",
      "sub/.gitignore": "/local.txt\n!important.log\n",
      "sub/local.txt": "x",
      "sub/important.log": "x",
      "sub/deeper/local.txt": "x",
      "other/local.txt": "x",
      ".irisignore": "!wandb/\n",
    });
    // A .venv that is a symlink out of the workspace is ignored too (it would not upload).
    await Deno.remove(join(ws, ".venv"), { recursive: true });
    await Deno.symlink("/usr", join(ws, ".venv"));
    const packed = await packDirectory(ws);
    const out = join(tmp, "out");
    await unpackBundle(packed.data, out);
    assert.deepEqual(await listTree(out), [
      ".gitignore",
      ".irisignore",
      "nb/",
      "other/",
      "other/local.txt",
      "pkg/",
      "pkg/m.py",
      "sub/",
      "sub/.gitignore",
      "sub/deeper/",
      "sub/deeper/local.txt",
      "sub/important.log",
      "train.py",
      "wandb/",
      "wandb/run-1/",
      "wandb/run-1/log",
    ]);
  });
});

Deno.test("pack: a too-big workspace names its largest top-level entries and the fix", async () => {
  await withTemp(async (tmp) => {
    await writeTree(tmp, {
      "data/a.bin": "x".repeat(2000),
      "data/b.bin": "x".repeat(2000),
      "ckpt.pt": "x".repeat(3000),
      "train.py": "y",
    });
    const err = await packDirectory(tmp, { maxBytes: 4096 }).catch((e: unknown) => e);
    assert.ok(err instanceof ResourceExhaustedError, String(err));
    assert.match(err.message, /largest entries: data\/ \(4000 B\), ckpt\.pt \(3000 B\), train\.py/);
    assert.match(err.message, /largest files: ckpt\.pt \(3000 B\), data\/a\.bin/);
    assert.match(err.message, /\.irisignore or \.gitignore/);
    assert.match(err.message, /controller\.max_bundle_size/);
  });
});
