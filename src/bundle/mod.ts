/**
 * Workspace bundles: packing a directory into a deterministic, content-addressed gzip'd tar,
 * storing it on the controller, and unpacking it safely into a worker cache.
 * See docs/bundles.md for the format, limits and safety guarantees.
 * @module
 */
export { BundleCache } from "./cache.ts";
export { BundleFormatError, BundleHashMismatchError } from "./errors.ts";
export { bundleIdOf, isBundleId, validateBundleId } from "./id.ts";
export { ALWAYS_IGNORED, IgnoreRules } from "./ignore.ts";
export {
  type BundleLimits,
  bundleLimitsFor,
  DEFAULT_BUNDLE_LIMITS,
  DEFAULT_MAX_PACK_BYTES,
  MIB,
} from "./limits.ts";
export { packDirectory, type PackOptions, type PackResult } from "./pack.ts";
export {
  type BundleStore,
  FileBundleStore,
  localDirOf,
  openBundleStore,
  type PutResult,
} from "./store.ts";
export {
  GcsBundleStore,
  type GcsBundleStoreOptions,
  type GcsLocation,
  parseGcsPrefix,
} from "./gcs_store.ts";
export { type BundleSummary, inspectBundle, unpackBundle, type UnpackResult } from "./unpack.ts";
export { rpcBundleFetcher } from "./fetcher.ts";
