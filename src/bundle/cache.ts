/**
 * Worker-side cache of unpacked bundles: `<rootDir>/<bundleId>/`.
 * Fetched bytes must hash to the id; concurrent ensures of one id share a single fetch + unpack.
 * @module
 */
import { join, resolve } from "node:path";
import { BundleHashMismatchError } from "./errors.ts";
import { bundleIdOf, validateBundleId } from "./id.ts";
import type { BundleLimits } from "./limits.ts";
import { unpackBundle } from "./unpack.ts";

/** Fetched bundle bytes, optionally with the limits their source applies (the cluster's). */
export type Fetched = Uint8Array | { data: Uint8Array; limits?: BundleLimits };

/** Unpacked bundles keyed by id, shared by the tasks of one worker. */
export class BundleCache {
  /** Absolute cache root. */
  readonly rootDir: string;
  readonly #limits: BundleLimits | undefined;
  readonly #inflight = new Map<string, Promise<string>>();

  /** `limits` apply to every archive unpacked here. */
  constructor(rootDir: string, limits?: BundleLimits) {
    this.rootDir = resolve(rootDir);
    this.#limits = limits;
  }

  /** Where the bundle is (or would be) unpacked. InvalidArgumentError for a malformed id. */
  pathOf(bundleId: string): string {
    validateBundleId(bundleId);
    return join(this.rootDir, bundleId);
  }

  /**
   * Returns the unpacked directory of `bundleId`, calling `fetch` and unpacking only on a miss.
   * Throws BundleHashMismatchError when the fetched bytes have another id; a failed ensure leaves
   * nothing behind and may be retried.
   */
  ensure(bundleId: string, fetch: () => Promise<Fetched>): Promise<string> {
    let dest: string;
    try {
      dest = this.pathOf(bundleId);
    } catch (err) {
      return Promise.reject(err);
    }
    const running = this.#inflight.get(bundleId);
    if (running) return running;
    const task = this.#load(bundleId, dest, fetch).finally(() => {
      if (this.#inflight.get(bundleId) === task) this.#inflight.delete(bundleId);
    });
    this.#inflight.set(bundleId, task);
    return task;
  }

  async #load(bundleId: string, dest: string, fetch: () => Promise<Fetched>): Promise<string> {
    if (await isDirectory(dest)) return dest;
    const fetched = await fetch();
    const data = fetched instanceof Uint8Array ? fetched : fetched.data;
    const limits = fetched instanceof Uint8Array
      ? this.#limits
      : { ...this.#limits, ...fetched.limits };
    const actual = await bundleIdOf(data);
    if (actual !== bundleId) throw new BundleHashMismatchError(bundleId, actual);
    await unpackBundle(data, dest, limits);
    return dest;
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.lstat(path)).isDirectory;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}
