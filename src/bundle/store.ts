/**
 * Controller-side bundle storage under the configured `bundle_prefix`: a local directory
 * (`file:///abs/dir` or a plain path) here, `gs://bucket/path` in gcs_store.ts, and
 * {@linkcode openBundleStore} to pick one from a prefix.
 * @module
 */
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { InvalidArgumentError, NotFoundError, ResourceExhaustedError } from "../errors.ts";
import { bundleIdOf, validateBundleId } from "./id.ts";
import { type BundleLimits, resolveLimits } from "./limits.ts";
import { formatBytes } from "../format.ts";
import { inspectBundle } from "./unpack.ts";
import { GcsBundleStore } from "./gcs_store.ts";

/** Result of storing a bundle. */
export interface PutResult {
  bundleId: string;
  /** Stored (compressed) size in bytes. */
  sizeBytes: number;
}

/** Where the controller keeps uploaded bundles. */
export interface BundleStore {
  /** Validates and stores `data`; idempotent for identical bytes. */
  put(data: Uint8Array): Promise<PutResult>;
  /** The bytes of a stored bundle; NotFoundError when absent. */
  get(bundleId: string): Promise<Uint8Array>;
  /** True when the bundle is stored. */
  has(bundleId: string): Promise<boolean>;
}

/** Bundles as `<dir>/<bundleId>.tar.gz` files, written via temp file + rename. */
export class FileBundleStore implements BundleStore {
  /** Absolute directory holding the bundles. */
  readonly dir: string;
  readonly #limits: Required<BundleLimits>;

  /**
   * `prefix` is "file:///abs/dir" or a plain path. Other schemes (s3://, gs:// — see
   * GcsBundleStore) throw InvalidArgumentError("bundle_prefix", ...). `limits` apply to uploaded
   * archives.
   */
  constructor(prefix: string, limits?: BundleLimits) {
    this.dir = localDirOf(prefix);
    this.#limits = resolveLimits(limits);
  }

  /** Checks the archive (same rules as unpacking, nothing written) and stores it under its id. */
  async put(data: Uint8Array): Promise<PutResult> {
    if (data.length > this.#limits.maxCompressedBytes) {
      throw new ResourceExhaustedError(
        `bundle is ${formatBytes(data.length)}, over the ${
          formatBytes(this.#limits.maxCompressedBytes)
        } limit`,
      );
    }
    const bundleId = await bundleIdOf(data);
    const result = { bundleId, sizeBytes: data.length };
    if (await this.has(bundleId)) return result;
    await inspectBundle(data, this.#limits);
    await Deno.mkdir(this.dir, { recursive: true });
    const path = this.#pathOf(bundleId);
    const tmp = `${path}.tmp-${crypto.randomUUID()}`;
    try {
      await Deno.writeFile(tmp, data, { createNew: true, mode: 0o644 });
      await Deno.rename(tmp, path);
    } catch (err) {
      await Deno.remove(tmp).catch(() => {});
      throw err;
    }
    return result;
  }

  /** The stored bytes; InvalidArgumentError for a malformed id, NotFoundError when absent. */
  async get(bundleId: string): Promise<Uint8Array> {
    validateBundleId(bundleId);
    try {
      return await Deno.readFile(this.#pathOf(bundleId));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        throw new NotFoundError(`bundle ${bundleId} not found`);
      }
      throw err;
    }
  }

  /** True when a bundle with this id is stored; InvalidArgumentError for a malformed id. */
  async has(bundleId: string): Promise<boolean> {
    validateBundleId(bundleId);
    try {
      return (await Deno.stat(this.#pathOf(bundleId))).isFile;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return false;
      throw err;
    }
  }

  #pathOf(bundleId: string): string {
    return join(this.dir, `${bundleId}.tar.gz`);
  }
}

/** Resolves a `bundle_prefix` to a local absolute directory, or throws for unsupported schemes. */
export function localDirOf(prefix: string): string {
  if (prefix.trim() === "") throw new InvalidArgumentError("bundle_prefix", "is empty");
  if (prefix.startsWith("file:")) {
    try {
      return resolve(fileURLToPath(prefix));
    } catch (err) {
      throw new InvalidArgumentError(
        "bundle_prefix",
        `${JSON.stringify(prefix)} is not a valid file URL; use file:///abs/dir`,
        { cause: err },
      );
    }
  }
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(prefix);
  if (scheme) {
    throw new InvalidArgumentError(
      "bundle_prefix",
      `${JSON.stringify(prefix)}: ${scheme[1]}:// bundle storage is not supported; ` +
        "use gs://bucket/path, file:///abs/dir or a local path",
    );
  }
  return resolve(prefix);
}

/**
 * The store a `bundle_prefix` names: GcsBundleStore for `gs://bucket/path`, else FileBundleStore
 * (`file:///abs/dir` or a plain path). InvalidArgumentError("bundle_prefix") for other schemes.
 */
export function openBundleStore(prefix: string, limits?: BundleLimits): BundleStore {
  return prefix.startsWith("gs://")
    ? new GcsBundleStore(prefix, { limits })
    : new FileBundleStore(prefix, limits);
}
