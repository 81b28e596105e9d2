/**
 * Error classes specific to workspace bundles.
 * Both extend the Iris error hierarchy so `toConnectError` (src/rpc/errors.ts) maps them to
 * sensible codes.
 * @module
 */
import { InvalidArgumentError, IrisError } from "../errors.ts";

/**
 * A bundle archive is malformed or unsafe (bad path, forbidden entry type, corrupt gzip/tar).
 * `entry` names the offending archive entry when there is one.
 * Maps to InvalidArgument on the `data` field of `UploadBundleRequest`.
 */
export class BundleFormatError extends InvalidArgumentError {
  /** The archive entry path at fault, or "" when the whole stream is at fault. */
  readonly entry: string;
  /** The rule broken, without the entry prefix. */
  readonly reason: string;
  constructor(entry: string, reason: string, options?: ErrorOptions) {
    super(
      "data",
      entry ? `bundle entry ${JSON.stringify(entry)}: ${reason}` : `bundle ${reason}`,
      options,
    );
    this.entry = entry;
    this.reason = reason;
  }
}

/** Bytes fetched for a bundle do not hash to the bundle id they were fetched for. */
export class BundleHashMismatchError extends IrisError {
  /** The id that was asked for. */
  readonly expected: string;
  /** The id the bytes actually have. */
  readonly actual: string;
  constructor(expected: string, actual: string) {
    super(`fetched bundle ${expected} hashes to ${actual}; refusing to unpack it`);
    this.expected = expected;
    this.actual = actual;
  }
}
