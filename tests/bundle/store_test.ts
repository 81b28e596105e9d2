/**
 * Bundle ids, FileBundleStore (controller side) and BundleCache (worker side).
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { InvalidArgumentError, NotFoundError, ResourceExhaustedError } from "../../src/errors.ts";
import {
  BundleCache,
  BundleFormatError,
  BundleHashMismatchError,
  bundleIdOf,
  FileBundleStore,
  openBundleStore,
  packDirectory,
  validateBundleId,
} from "../../src/bundle/mod.ts";

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "iris-store-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

/** A small real bundle whose content is `text`. */
async function bundle(text: string): Promise<{ bundleId: string; data: Uint8Array }> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(dir, "main.ts"), text);
    return await packDirectory(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("id: bundleIdOf and validateBundleId", async () => {
  assert.equal(
    await bundleIdOf(new Uint8Array(0)),
    "sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
  validateBundleId(`sha256-${"0".repeat(64)}`);
  for (
    const bad of [
      "",
      "sha256-",
      `sha256-${"A".repeat(64)}`,
      `sha256-${"0".repeat(63)}`,
      `md5-${"0".repeat(64)}`,
    ]
  ) {
    assert.throws(
      () => validateBundleId(bad),
      (e: unknown) => e instanceof InvalidArgumentError && e.field === "bundle_id",
    );
  }
  assert.throws(() => validateBundleId(`../${"0".repeat(64)}`), /bundle_id: must be "sha256-"/);
});

Deno.test("store: put/get/has round trip, idempotent, no temp files left", async () => {
  await withTemp(async (tmp) => {
    const store = new FileBundleStore(pathToFileURL(join(tmp, "bundles")).href);
    assert.equal(store.dir, join(tmp, "bundles"));
    const b = await bundle("console.log(1)\n");
    assert.equal(await store.has(b.bundleId), false);
    assert.deepEqual(await store.put(b.data), { bundleId: b.bundleId, sizeBytes: b.data.length });
    assert.deepEqual(await store.put(b.data), { bundleId: b.bundleId, sizeBytes: b.data.length });
    assert.equal(await store.has(b.bundleId), true);
    assert.deepEqual(await store.get(b.bundleId), b.data);
    assert.deepEqual(await listDir(store.dir), [`${b.bundleId}.tar.gz`]);

    const missing = `sha256-${"1".repeat(64)}`;
    await assert.rejects(store.get(missing), NotFoundError);
    await assert.rejects(store.get("../../etc/passwd"), InvalidArgumentError);
    await assert.rejects(store.has("nope"), InvalidArgumentError);
  });
});

Deno.test("store: concurrent puts of the same bytes store one file", async () => {
  await withTemp(async (tmp) => {
    const store = new FileBundleStore(tmp);
    const b = await bundle("same");
    const ids = await Promise.all(Array.from({ length: 5 }, () => store.put(b.data)));
    assert.ok(ids.every((r) => r.bundleId === b.bundleId));
    assert.deepEqual(await listDir(tmp), [`${b.bundleId}.tar.gz`]);
  });
});

Deno.test("store: invalid archives are rejected and not stored", async () => {
  await withTemp(async (tmp) => {
    const store = new FileBundleStore(tmp, { maxFiles: 1 });
    await assert.rejects(store.put(new TextEncoder().encode("not a bundle")), BundleFormatError);
    const one = await bundle("x"); // main.ts alone fits the one-path limit
    assert.equal((await store.put(one.data)).bundleId, one.bundleId);
    const dir = await Deno.makeTempDir();
    await Deno.writeTextFile(join(dir, "a"), "");
    await Deno.writeTextFile(join(dir, "b"), "");
    const big = await packDirectory(dir);
    await Deno.remove(dir, { recursive: true });
    await assert.rejects(store.put(big.data), /more than 1 paths/);
    await assert.rejects(
      new FileBundleStore(tmp, { maxCompressedBytes: 10 }).put(big.data),
      ResourceExhaustedError,
    );
    assert.deepEqual(await listDir(tmp), [`${one.bundleId}.tar.gz`]);
  });
});

Deno.test("store: prefixes", () => {
  assert.equal(new FileBundleStore("file:///var/iris/bundles").dir, "/var/iris/bundles");
  assert.equal(new FileBundleStore("/var/iris/b").dir, "/var/iris/b");
  // gs:// is GcsBundleStore's (openBundleStore picks it); other schemes are refused.
  assert.throws(
    () => openBundleStore("s3://b/p"),
    /bundle_prefix: "s3:\/\/b\/p": s3:\/\/ bundle storage is not supported; use gs:\/\/bucket\/path/,
  );
  assert.throws(() => new FileBundleStore("gs://bucket/bundles"), InvalidArgumentError);
  assert.ok(openBundleStore("/var/iris/b") instanceof FileBundleStore);
  assert.throws(() => new FileBundleStore(""), /bundle_prefix: is empty/);
  assert.throws(() => new FileBundleStore("file://remote-host/x"), /not a valid file URL/);
});

Deno.test("cache: ensure unpacks once, then hits without fetching", async () => {
  await withTemp(async (tmp) => {
    const cache = new BundleCache(join(tmp, "cache"));
    const b = await bundle("export const x = 1;\n");
    let fetches = 0;
    const fetch = () => {
      fetches++;
      return Promise.resolve(b.data);
    };
    const dir = await cache.ensure(b.bundleId, fetch);
    assert.equal(dir, join(tmp, "cache", b.bundleId));
    assert.equal(await Deno.readTextFile(join(dir, "main.ts")), "export const x = 1;\n");
    assert.equal(await cache.ensure(b.bundleId, fetch), dir);
    assert.equal(fetches, 1);
  });
});

Deno.test("cache: concurrent ensures of one id share one fetch", async () => {
  await withTemp(async (tmp) => {
    const cache = new BundleCache(tmp);
    const b = await bundle("shared");
    let fetches = 0;
    const { promise, resolve } = Promise.withResolvers<Uint8Array>();
    const fetch = () => {
      fetches++;
      return promise;
    };
    const all = Promise.all(Array.from({ length: 8 }, () => cache.ensure(b.bundleId, fetch)));
    resolve(b.data);
    const dirs = await all;
    assert.equal(fetches, 1);
    assert.equal(new Set(dirs).size, 1);
    assert.deepEqual(await listDir(tmp), [b.bundleId]);
  });
});

Deno.test("cache: bytes that do not hash to the id are refused; a retry can succeed", async () => {
  await withTemp(async (tmp) => {
    const cache = new BundleCache(tmp);
    const wanted = await bundle("wanted");
    const other = await bundle("other");
    const err = await cache.ensure(wanted.bundleId, () => Promise.resolve(other.data)).catch((
      e: unknown,
    ) => e);
    assert.ok(err instanceof BundleHashMismatchError, String(err));
    assert.equal(err.expected, wanted.bundleId);
    assert.equal(err.actual, other.bundleId);
    assert.deepEqual(await listDir(tmp), []);
    await assert.rejects(
      cache.ensure(wanted.bundleId, () => Promise.reject(new Error("network down"))),
      /network down/,
    );
    assert.equal(
      await cache.ensure(wanted.bundleId, () => Promise.resolve(wanted.data)),
      join(tmp, wanted.bundleId),
    );
    await assert.rejects(
      cache.ensure("latest", () => Promise.resolve(wanted.data)),
      InvalidArgumentError,
    );
  });
});
