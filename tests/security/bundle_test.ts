/**
 * Hostile bundles, end to end: uploaded to a controller (UploadBundle) and fetched into a
 * worker's bundle cache. Each is refused with a clear error, nothing is stored or left in the
 * cache, and nothing appears outside it.
 */
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { BundleCache, bundleIdOf, FileBundleStore } from "../../src/bundle/mod.ts";
import { startController } from "../../src/controller/server.ts";
import { controllerClient } from "../../src/rpc/client.ts";
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";

const enc = new TextEncoder();
const MIB = 1024 * 1024;

interface Entry {
  name: string;
  type?: string;
  body?: Uint8Array;
  size?: number;
  link?: string;
}

function header(e: Entry): Uint8Array {
  const b = new Uint8Array(512);
  const put = (off: number, s: string) => b.set(enc.encode(s), off);
  const octal = (n: number, w: number) => n.toString(8).padStart(w - 1, "0") + "\0";
  put(0, e.name);
  put(100, octal(0o644, 8));
  put(108, octal(0, 8));
  put(116, octal(0, 8));
  put(124, octal(e.size ?? e.body?.length ?? 0, 12));
  put(136, octal(0, 12));
  put(156, e.type ?? "0");
  put(157, e.link ?? "");
  put(257, "ustar\u000000");
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : b[i] ?? 0;
  put(148, octal(sum, 7) + " ");
  return b;
}

async function tgz(entries: Entry[], tail: Iterable<Uint8Array> = []): Promise<Uint8Array> {
  const cs = new CompressionStream("gzip");
  const out = new Response(cs.readable).arrayBuffer();
  const w = cs.writable.getWriter();
  for (const e of entries) {
    await w.write(header(e) as Uint8Array<ArrayBuffer>);
    if (e.body) {
      await w.write(e.body as Uint8Array<ArrayBuffer>);
      await w.write(new Uint8Array((512 - (e.body.length % 512)) % 512));
    }
  }
  for (const chunk of tail) await w.write(chunk as Uint8Array<ArrayBuffer>);
  if (entries.length > 0) await w.write(new Uint8Array(1024));
  await w.close();
  return new Uint8Array(await out);
}

const file = (name: string, text = "ok\n"): Entry => ({ name, body: enc.encode(text) });

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    out.push(e.name);
    if (e.isDirectory) {
      out.push(...(await listTree(join(dir, e.name))).map((n) => `${e.name}/${n}`));
    }
  }
  return out.sort();
}

Deno.test("bundles: traversal, escaping symlinks, oversize and bombs are refused and leave nothing", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "iris-sec-bundle-" });
  try {
    const zeros = new Uint8Array(MIB);
    const cases: [string, Uint8Array, RegExp][] = [
      [
        "dot-dot",
        await tgz([file("ok.txt"), file("../escaped.txt")]),
        /"\.\.\/escaped\.txt".*"\.\." segment/,
      ],
      ["deep dot-dot", await tgz([file("a/b/../../../escaped.txt")]), /"\.\." segment/],
      ["absolute", await tgz([file(`${tmp}/escaped.txt`)]), /is absolute/],
      [
        "symlink out",
        await tgz([{ name: "link", type: "2", link: "../../.." }, file("link/escaped.txt")]),
        /points outside the bundle/,
      ],
      [
        "symlink out via another",
        await tgz([
          { name: "a/up", type: "2", link: ".." },
          { name: "b", type: "2", link: "a/up/.." },
        ]),
        /outside the bundle/,
      ],
      [
        "absolute symlink",
        await tgz([{ name: "etc", type: "2", link: "/etc" }]),
        /symlink target is absolute/,
      ],
      ["hard link", await tgz([{ name: "h", type: "1", link: "/etc/passwd" }]), /hard links/],
      [
        "declared bomb",
        await tgz([{ name: "bomb.bin", size: 300 * MIB }], Array.from({ length: 40 }, () => zeros)),
        /"bomb\.bin".*over the .* limit/,
      ],
      [
        "ratio bomb",
        await tgz([{ name: "z.bin", size: 200 * MIB }], Array.from({ length: 40 }, () => zeros)),
        /expands past .*archive bomb/,
      ],
      [
        "too many entries",
        await tgz(Array.from({ length: 10_001 }, (_, i) => ({ name: `d${i}/`, type: "5" }))),
        /more than 10000 paths/,
      ],
      ["not gzip", enc.encode("PK\u0003\u0004 a zip"), /not gzip data/],
    ];

    // Controller side: UploadBundle refuses each; the store stays empty.
    const storeDir = join(tmp, "store");
    await using server = startController({ bundles: new FileBundleStore(storeDir) });
    const rpc = controllerClient(server.url);
    for (const [name, data, message] of cases) {
      const err = await rpc.uploadBundle({ data }).then(() => undefined, (e: unknown) => e);
      assert(err instanceof ConnectError, `${name}: upload accepted`);
      assert(
        err.code === Code.InvalidArgument || err.code === Code.ResourceExhausted,
        `${name}: ${err.code}`,
      );
      assertMatch(err.rawMessage, message, name);
    }
    assertEquals(await listTree(storeDir).catch(() => []), [], "the store holds nothing");

    // Worker side: the cache refuses each (as if a store had been bypassed) and stays empty.
    const cacheDir = join(tmp, "cache");
    const cache = new BundleCache(cacheDir);
    for (const [name, data, message] of cases) {
      const id = await bundleIdOf(data);
      const err = await cache.ensure(id, () => Promise.resolve(data)).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert(err instanceof Error, `${name}: unpacked`);
      assertMatch(err.message, message, name);
      assertEquals(await listTree(cacheDir).catch(() => []), [], `${name}: cache not empty`);
    }
    // Not even the cache or store directories needed creating.
    assertEquals(
      (await listTree(tmp)).filter((n) => n !== "cache" && n !== "store"),
      [],
      "nothing written next to the cache",
    );

    // A configurable limit on the archive itself.
    const small = new BundleCache(join(tmp, "small"), { maxCompressedBytes: 1024 });
    const big = await tgz([{
      name: "random.bin",
      body: crypto.getRandomValues(new Uint8Array(4096)),
    }]);
    const tooBig = await small.ensure(await bundleIdOf(big), () => Promise.resolve(big)).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert(tooBig instanceof Error);
    assertMatch(tooBig.message, /compressed, over the 1024 B limit/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
