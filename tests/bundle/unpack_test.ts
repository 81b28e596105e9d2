/**
 * unpackBundle / inspectBundle against hand-crafted hostile archives: every one must be rejected
 * with an error naming the entry, leaving nothing behind (no destDir, no staging dir, no escapee).
 * The tar bytes are built here by hand, independently of src/bundle/tar.ts.
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ResourceExhaustedError } from "../../src/errors.ts";
import { BundleFormatError, inspectBundle, unpackBundle } from "../../src/bundle/mod.ts";

const enc = new TextEncoder();
const MIB = 1024 * 1024;

interface Raw {
  name: string;
  type?: string;
  body?: Uint8Array;
  /** Declared size when it differs from the body (truncation, bombs). */
  size?: number;
  linkname?: string;
  mode?: number;
  badChecksum?: boolean;
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, "0") + "\0";
}

function header(e: Raw): Uint8Array {
  const b = new Uint8Array(512);
  const put = (off: number, s: string) => b.set(enc.encode(s), off);
  put(0, e.name);
  put(100, octal(e.mode ?? 0o644, 8));
  put(108, octal(0, 8));
  put(116, octal(0, 8));
  put(124, octal(e.size ?? e.body?.length ?? 0, 12));
  put(136, octal(0, 12));
  put(156, e.type ?? "0");
  put(157, e.linkname ?? "");
  put(257, "ustar\u000000");
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : b[i] ?? 0;
  put(148, octal(e.badChecksum ? sum + 1 : sum, 7) + " ");
  return b;
}

function pax(records: Record<string, string>, next: Raw): Raw[] {
  const body = Object.entries(records).map(([k, v]) => {
    const payload = ` ${k}=${v}\n`;
    const len = enc.encode(payload).length;
    let digits = 1;
    while (String(len + digits).length > digits) digits++;
    return `${len + digits}${payload}`;
  }).join("");
  return [{ name: "PaxHeader", type: "x", body: enc.encode(body) }, next];
}

function tar(entries: Raw[], end = true): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    parts.push(header(e));
    if (e.body) parts.push(e.body, new Uint8Array((512 - (e.body.length % 512)) % 512));
  }
  if (end) parts.push(new Uint8Array(1024));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

async function gzip(chunks: Iterable<Uint8Array>): Promise<Uint8Array> {
  const cs = new CompressionStream("gzip");
  const out = new Response(cs.readable).arrayBuffer();
  const w = cs.writable.getWriter();
  for (const c of chunks) await w.write(c as Uint8Array<ArrayBuffer>);
  await w.close();
  return new Uint8Array(await out);
}

const file = (name: string, text = "ok\n"): Raw => ({ name, body: enc.encode(text) });
/** Harmless entries placed before the hostile one, so the staging dir is non-empty when it fails. */
const GOOD: Raw[] = [{ name: "good/", type: "5" }, file("good/a.txt"), file("good/b.txt")];

/** Runs unpack in a fresh sandbox; asserts rejection naming `entry` and that nothing is left. */
async function expectRejected(
  data: Uint8Array,
  entry: string | RegExp,
  errorClass: typeof BundleFormatError | typeof ResourceExhaustedError = BundleFormatError,
): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "iris-unpack-" });
  try {
    const sandbox = join(tmp, "sandbox");
    await Deno.mkdir(sandbox);
    const dest = join(sandbox, "dest");
    const err = await unpackBundle(data, dest).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof errorClass, `expected ${errorClass.name}, got ${String(err)}`);
    if (typeof entry === "string") {
      assert.ok(
        err.message.includes(JSON.stringify(entry)),
        `error does not name ${entry}: ${err.message}`,
      );
      if (err instanceof BundleFormatError) assert.equal(err.entry, entry);
    } else {
      assert.match(err.message, entry);
    }
    assert.deepEqual(
      await listDir(sandbox),
      [],
      "sandbox must be empty: no destDir, no staging dir",
    );
    assert.deepEqual(await listDir(tmp), ["sandbox"], "nothing may escape next to the sandbox");
    await assert.rejects(inspectBundle(data), errorClass);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test("unpack: a well-formed archive unpacks; an existing destDir is a cache hit", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const data = await gzip([
      tar([...GOOD, { name: "run.sh", body: enc.encode("#!/bin/sh\n"), mode: 0o755 }, {
        name: "link",
        type: "2",
        linkname: "good/a.txt",
      }]),
    ]);
    const dest = join(tmp, "cache", "dest");
    assert.deepEqual(await unpackBundle(data, dest), { files: 4, bytes: 16, cached: false });
    assert.equal(await Deno.readTextFile(join(dest, "link")), "ok\n");
    assert.equal((await Deno.stat(join(dest, "run.sh"))).mode! & 0o777, 0o755);
    assert.equal((await Deno.stat(join(dest, "good/a.txt"))).mode! & 0o777, 0o644);
    assert.deepEqual(await unpackBundle(data, dest), { files: 0, bytes: 0, cached: true });
    assert.deepEqual(await listDir(join(tmp, "cache")), ["dest"]);
    assert.deepEqual(await inspectBundle(data), { files: 4, bytes: 16 });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("unpack: modes are 0644/0755 under a strict umask, and need no sys permission", async () => {
  const tmp = await Deno.makeTempDir();
  const data = await gzip([
    tar([...GOOD, { name: "run.sh", body: enc.encode("#!/bin/sh\n"), mode: 0o755 }]),
  ]);
  const old = Deno.umask(0o077);
  try {
    const dest = join(tmp, "strict");
    await unpackBundle(data, dest);
    assert.equal((await Deno.stat(join(dest, "run.sh"))).mode! & 0o777, 0o755);
    assert.equal((await Deno.stat(join(dest, "good/a.txt"))).mode! & 0o777, 0o644);
    assert.equal((await Deno.stat(join(dest, "good"))).mode! & 0o777, 0o755);
  } finally {
    Deno.umask(old);
  }
  try {
    // A process like a local VM: file access, but no sys permission (Deno.umask() is denied).
    await Deno.writeFile(join(tmp, "b.tar.gz"), data);
    const script = `import { unpackBundle } from ${
      JSON.stringify(new URL("../../src/bundle/unpack.ts", import.meta.url).href)
    };
const r = await unpackBundle(await Deno.readFile(Deno.args[0]), Deno.args[1]);
console.log(JSON.stringify(r));`;
    await Deno.writeTextFile(join(tmp, "unpack.ts"), script);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        `--config=${new URL("../../deno.json", import.meta.url).pathname}`,
        `--allow-read=${tmp},${new URL("../../", import.meta.url).pathname}`,
        `--allow-write=${tmp}`,
        "--allow-sys=cpus,systemMemoryInfo",
        "--no-prompt",
        join(tmp, "unpack.ts"),
        join(tmp, "b.tar.gz"),
        join(tmp, "sandboxed"),
      ],
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.match(text, /"files":3/);
    assert.equal((await Deno.stat(join(tmp, "sandboxed/run.sh"))).mode! & 0o777, 0o755);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("unpack: path traversal is rejected", async () => {
  await expectRejected(await gzip([tar([...GOOD, file("../evil")])]), "../evil");
  await expectRejected(await gzip([tar([...GOOD, file("/etc/x")])]), "/etc/x");
  await expectRejected(await gzip([tar([...GOOD, file("a/../../x")])]), "a/../../x");
  await expectRejected(await gzip([tar([...GOOD, file("a\\..\\..\\x")])]), "a\\..\\..\\x");
  await expectRejected(await gzip([tar([...GOOD, file("C:/x")])]), "C:/x");
  await expectRejected(
    await gzip([tar([...GOOD, ...pax({ path: "ok\0/../../x" }, file("ignored"))])]),
    "ok\0/../../x",
  );
  await expectRejected(
    await gzip([tar([...GOOD, ...pax({ path: "../pax-evil" }, file("fine"))])]),
    "../pax-evil",
  );
});

Deno.test("unpack: symlinks leaving the root, and writes through symlinks, are rejected", async () => {
  const link = (name: string, target: string): Raw => ({ name, type: "2", linkname: target });
  await expectRejected(
    await gzip([tar([...GOOD, link("link", "../../etc"), file("link/file")])]),
    "link",
  );
  await expectRejected(await gzip([tar([...GOOD, link("abs", "/etc/passwd")])]), "abs");
  await expectRejected(await gzip([tar([...GOOD, link("good/up", "../../x")])]), "good/up");
  // An inner symlink is fine as a link, but nothing may be written through it.
  await expectRejected(
    await gzip([tar([...GOOD, link("inner", "good"), file("inner/c.txt")])]),
    "inner/c.txt",
  );
  // Lexically inside, but physically outside once `d/l1 -> ..` is followed.
  await expectRejected(
    await gzip([
      tar([...GOOD, { name: "d/", type: "5" }, link("d/l1", ".."), link("d/l2", "l1/..")]),
    ]),
    "d/l2",
  );
  await expectRejected(await gzip([tar([...GOOD, link("x", "y"), link("y", "x")])]), "x");
});

Deno.test("unpack: hardlinks, devices, fifos, duplicates and type conflicts are rejected", async () => {
  await expectRejected(
    await gzip([tar([...GOOD, { name: "hard", type: "1", linkname: "good/a.txt" }])]),
    "hard",
  );
  await expectRejected(await gzip([tar([...GOOD, { name: "dev/null", type: "3" }])]), "dev/null");
  await expectRejected(await gzip([tar([...GOOD, { name: "disk", type: "4" }])]), "disk");
  await expectRejected(await gzip([tar([...GOOD, { name: "pipe", type: "6" }])]), "pipe");
  await expectRejected(await gzip([tar([...GOOD, { name: "sparse", type: "S" }])]), "sparse");
  await expectRejected(await gzip([tar([...GOOD, file("good/a.txt")])]), "good/a.txt");
  await expectRejected(await gzip([tar([...GOOD, file("good/a.txt/under")])]), "good/a.txt/under");
  await expectRejected(await gzip([tar([...GOOD, file("good")])]), "good");
});

Deno.test("unpack: more than 10,000 entries is rejected at the 10,001st", async () => {
  const names = Array.from({ length: 10_001 }, (_, i) => `f${String(i).padStart(5, "0")}`);
  const data = await gzip([tar(names.map((name) => ({ name })))]);
  await expectRejected(data, "f10000", ResourceExhaustedError);
  const ok = await gzip([tar(names.slice(0, 10_000).map((name) => ({ name })))]);
  assert.deepEqual(await inspectBundle(ok), { files: 10_000, bytes: 0 });
  // Implied directories count too, so deep paths cannot dodge the limit.
  await assert.rejects(
    inspectBundle(await gzip([tar([file("a/b/c/d"), file("e")])]), { maxFiles: 4 }),
    /bundle entry "e": more than 4 paths/,
  );
});

Deno.test("unpack: gzip bombs stop early without buffering the expansion", async () => {
  const zeros = new Uint8Array(MIB);
  function* bomb(head: Uint8Array[]): Generator<Uint8Array> {
    yield* head;
    for (let i = 0; i < 300; i++) yield zeros;
  }
  // 300 MiB of zeros behind a header that declares them as one file.
  const declared = await gzip(bomb([header({ name: "bomb.bin", size: 300 * MIB })]));
  assert.ok(declared.length < 2 * MIB, `bomb should be small, is ${declared.length}`);
  await expectRejected(declared, "bomb.bin", ResourceExhaustedError);
  // Files that each fit, but whose running total does not.
  const split = await gzip([
    header({ name: "part1", size: 200 * MIB }),
    ...Array.from({ length: 200 }, () => zeros),
    header({ name: "part2", size: 100 * MIB }),
    ...Array.from({ length: 100 }, () => zeros),
  ]);
  // The compression-ratio limit stops it inside part1, long before the running total would.
  await expectRejected(
    split,
    /expands past .* at entry "part1".*archive bomb/,
    ResourceExhaustedError,
  );
  // Pure zeros: an empty archive followed by 300 MiB of "padding".
  await expectRejected(
    await gzip(bomb([])),
    /after the end-of-archive marker/,
    ResourceExhaustedError,
  );
});

Deno.test("unpack: a flood of metadata headers hits the stream limit", async () => {
  const g = { name: "global", type: "g", body: enc.encode(`${"x".repeat(60_000)}`) };
  const data = await gzip([tar([...GOOD, ...Array.from({ length: 200 }, () => g)])]);
  const err = await inspectBundle(data, { maxFiles: 10, maxUnpackedBytes: 1024 }).catch((
    e: unknown,
  ) => e);
  assert.ok(err instanceof ResourceExhaustedError, String(err));
  assert.match(err.message, /bundle expands past 1.12 MiB of tar data, over the limit/);
});

Deno.test("unpack: corrupt, truncated and non-gzip archives are rejected", async () => {
  const good = await gzip([tar([...GOOD, file("c.txt", "x".repeat(5000))])]);
  const flipped = good.slice();
  flipped[Math.floor(flipped.length / 2)]! ^= 0xff;
  await expectRejected(flipped, /gzip|checksum|corrupt/);
  await expectRejected(good.slice(0, good.length - 6), /gzip stream/);
  await expectRejected(enc.encode("definitely not a tarball"), /not gzip data/);
  await expectRejected(
    await gzip([tar([...GOOD, { name: "short", size: 4096, body: enc.encode("tiny") }], false)]),
    "short",
  );
  await expectRejected(await gzip([tar(GOOD, false)]), /no end-of-archive marker/);
  await expectRejected(
    await gzip([tar([...GOOD, { ...file("bad-sum"), badChecksum: true }])]),
    "bad-sum",
  );
  await expectRejected(await gzip([tar(GOOD), enc.encode("trailing junk")]), /non-zero data after/);
  await expectRejected(
    await gzip([tar([...GOOD, { name: "dir-with-data/", type: "5", size: 10 }])]),
    "dir-with-data/",
  );
});

Deno.test("unpack: limits on compressed and unpacked size are configurable", async () => {
  const data = await gzip([tar([file("a", "x".repeat(2000))])]);
  await assert.rejects(inspectBundle(data, { maxCompressedBytes: 10 }), ResourceExhaustedError);
  await assert.rejects(
    inspectBundle(data, { maxUnpackedBytes: 1999 }),
    /bundle entry "a": 2000 B would bring the unpacked size to 2000 B, over the 1999 B limit/,
  );
  assert.deepEqual(await inspectBundle(data, { maxUnpackedBytes: 2000 }), {
    files: 1,
    bytes: 2000,
  });
  await assert.rejects(inspectBundle(data, { maxFiles: 0 }), RangeError);
});

Deno.test("unpack: a write failure after validation removes the staging dir", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    // 16 segments of 254 bytes pass the path rules but exceed PATH_MAX once under the staging dir.
    const long = Array.from({ length: 16 }, (_, i) => String(i).padStart(254, "x")).join("/");
    const data = await gzip([tar([...GOOD, ...pax({ path: long }, file("long"))])]);
    assert.deepEqual(await inspectBundle(data), { files: 3, bytes: 9 });
    const err = await unpackBundle(data, join(tmp, "dest")).catch((e: unknown) => e);
    assert.ok(err instanceof Error);
    assert.match(err.message, /^unpacking bundle entry "x+0\/x+1\/.*File name too long/);
    assert.deepEqual(await listDir(tmp), []);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("unpack: racing unpacks of one destDir both succeed and leave one copy", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const data = await gzip([tar(GOOD)]);
    const dest = join(tmp, "dest");
    const results = await Promise.all([
      unpackBundle(data, dest),
      unpackBundle(data, dest),
      unpackBundle(data, dest),
    ]);
    assert.ok(results.some((r) => !r.cached));
    assert.deepEqual(await listDir(tmp), ["dest"]);
    assert.deepEqual(await listDir(join(dest, "good")), ["a.txt", "b.txt"]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
