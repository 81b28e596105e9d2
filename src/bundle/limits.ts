/**
 * Size and count limits applied when reading bundles, and byte formatting for their messages.
 * @module
 */

/** Limits applied to an archive before and while it is read. */
export interface BundleLimits {
  /** Most entries (files, directories and symlinks together). Default 10,000. */
  maxFiles?: number;
  /** Most bytes of file content once unpacked. Default 256 MiB. */
  maxUnpackedBytes?: number;
  /** Most bytes of the gzip'd archive itself. Default 64 MiB. */
  maxCompressedBytes?: number;
  /**
   * Most tar bytes per compressed byte once past {@linkcode RATIO_FLOOR_BYTES}: stops archive
   * bombs well before the absolute limits. Default 200.
   */
  maxCompressionRatio?: number;
}

/** Expansion below this never trips the compression-ratio limit (small bundles compress well). */
export const RATIO_FLOOR_BYTES = 16 * 1024 * 1024;

/** MiB in bytes. */
export const MIB = 1024 * 1024;

/** The limits used when a caller gives none. */
export const DEFAULT_BUNDLE_LIMITS: Readonly<Required<BundleLimits>> = Object.freeze({
  maxFiles: 10_000,
  maxUnpackedBytes: 256 * MIB,
  maxCompressedBytes: 64 * MIB,
  maxCompressionRatio: 200,
});

/** Default cap on the uncompressed size of a packed workspace. */
export const DEFAULT_MAX_PACK_BYTES = 64 * MIB;

/** Fills in defaults and checks every limit is a positive integer. */
export function resolveLimits(limits: BundleLimits | undefined): Required<BundleLimits> {
  const out = { ...DEFAULT_BUNDLE_LIMITS, ...stripUndefined(limits ?? {}) };
  for (const [key, value] of Object.entries(out)) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new RangeError(`bundle limit ${key} must be a positive integer, got ${value}`);
    }
  }
  return out;
}

function stripUndefined(limits: BundleLimits): BundleLimits {
  const out: BundleLimits = {};
  if (limits.maxFiles !== undefined) out.maxFiles = limits.maxFiles;
  if (limits.maxUnpackedBytes !== undefined) out.maxUnpackedBytes = limits.maxUnpackedBytes;
  if (limits.maxCompressedBytes !== undefined) out.maxCompressedBytes = limits.maxCompressedBytes;
  if (limits.maxCompressionRatio !== undefined) {
    out.maxCompressionRatio = limits.maxCompressionRatio;
  }
  return out;
}

/**
 * The limits of a cluster whose `controller.max_bundle_size` is `maxBytes`: the compressed archive
 * and its file content may each reach it (content never below the 256 MiB default).
 */
export function bundleLimitsFor(maxBytes: number): BundleLimits {
  return {
    maxCompressedBytes: maxBytes,
    maxUnpackedBytes: Math.max(DEFAULT_BUNDLE_LIMITS.maxUnpackedBytes, maxBytes),
  };
}
